"""The Titanic task: did a passenger survive? One binary label, 1,309 real passengers, an MLP on 15 features.

Data
----
By default the full passenger list known as "titanic3" (1,309 rows), shipped in
``datasets/titanic/titanic.csv`` and checked against its SHA-256 on every load (see
``datasets/titanic/README.md`` for provenance and columns). ``load(config, data=PATH)`` reads your own
copy instead, in either of two formats, told apart by their column names (compared case-insensitively):

- **Kaggle** competition ``train.csv``: has a ``PassengerId`` column (PassengerId, Survived, Pclass, Name,
  Sex, Age, SibSp, Parch, Ticket, Fare, Cabin, Embarked). Kaggle's ``test.csv`` has no ``Survived``
  column, so no labels, and is refused;
- **titanic3**: any other file with the columns used below (pclass, survived, name, sex, age, sibsp,
  parch, fare, embarked); its other columns are ignored.

A cell that is empty, ``?`` (titanic3's marker), ``NA`` or ``NaN`` is missing. Missing values are allowed
in ``age``, ``fare``, ``embarked`` and ``name`` only; everything else is checked, and a bad value stops
the load with a :class:`DataError` naming the file, row and column.
A passenger listed twice (a repeated ``PassengerId``; in a titanic3 file, which has no id, a row equal
to an earlier one in every column) is refused too: the two copies could land in different splits.

Features (d = 15, in this order)
--------------------------------
1. ``pclass``: ticket class 1, 2 or 3 (a proxy for wealth), as a number.
2. ``sex``: 1 for female, 0 for male.
3. ``age``: in years (fractional under one); a missing age gets the median age of the TRAINING split.
4. ``age_missing``: 1 where the age was missing, so the model can tell a filled-in age from a known one.
   It carries some of the outcome too: titanic3's ages were recorded more often for survivors (28% of
   the passengers without an age survived, 41% of those with one).
5. ``sibsp``: number of siblings and spouses aboard.
6. ``parch``: number of parents and children aboard.
7. ``log_fare``: ``log(1 + fare)``, fare in pounds (the log tames a long tail up to 512); a missing fare
   gets the median fare of the TRAINING split.
8. - 10. ``embarked_C``, ``embarked_Q``, ``embarked_S``: the port of embarkation one-hot (Cherbourg,
   Queenstown, Southampton); a missing port gets the TRAINING split's most common port.
11. - 15. ``title_Mr``, ``title_Mrs``, ``title_Miss``, ``title_Master``, ``title_rare``: the title in the
   name ("Allen, Miss. Elisabeth Walton" -> Miss), one-hot. Mlle and Ms count as Miss, Mme as Mrs; every
   other title (Dr, Rev, Col, Major, Capt, Sir, Lady, the Countess, ...) and a name without one as rare.

Then every column is standardised with the mean and standard deviation of the TRAINING split. Nothing
is ever fitted on validation or test rows.

Dropped on purpose: ``boat`` (all but 9 of the 486 passengers with a lifeboat number survived) and
``body`` (only the dead have a body identification number) give the answer away; ``home.dest`` does not by itself, but it is free text
that identifies families, whose members share a fate across the splits; ``ticket``, ``cabin`` and
``PassengerId`` are identifiers (and ``cabin`` is missing for 77% of passengers).

Split and model
---------------
A train/val/test split of 60/20/20 by default, stratified by survival, from ``config.split_seed``.
``Split.source`` holds each passenger's row number in the file (1 is the first row after the header).
The body is the classic notebook's MLP: d -> ``hidden`` (128) ReLU -> head.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
import torch

from lossbench.models import MLPBody
from lossbench.tasks._common import (
    DATASETS_DIR,
    CsvTable,
    check_fractions,
    either,
    find_columns,
    fit_standardizer,
    read_csv,
    sha256_of,
    split_indices,
    standardize,
    verify_sha256,
)
from lossbench.tasks.base import DataError, Split, TaskData, TrainingDefaults

SHIPPED_PATH = DATASETS_DIR / "titanic" / "titanic.csv"
SHIPPED_SHA256 = "c617db2c7470716250f6f001be51304c76bcc8815527ab8bae734bdca0735737"
SHIPPED_ROWS = 1309

USED_COLUMNS = ("pclass", "survived", "name", "sex", "age", "sibsp", "parch", "fare", "embarked")
TITANIC3_COLUMNS = ("pclass", "survived", "name", "sex", "age", "sibsp", "parch", "ticket", "fare", "cabin",
                    "embarked", "boat", "body", "home.dest")  # fmt: skip
KAGGLE_COLUMNS = ("PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket", "Fare",
                  "Cabin", "Embarked")  # fmt: skip
MISSING = frozenset({"", "?", "na", "nan"})  # cell texts that mean "unknown" (compared lower-case)

PORTS = ("C", "Q", "S")  # Cherbourg, Queenstown, Southampton
TITLES = ("Mr", "Mrs", "Miss", "Master", "rare")
_TITLE_ALIASES = {"Mlle": "Miss", "Ms": "Miss", "Mme": "Mrs"}  # French and modern forms of the same title
FEATURES = (
    ("pclass", "sex", "age", "age_missing", "sibsp", "parch", "log_fare")
    + tuple(f"embarked_{p}" for p in PORTS)
    + tuple(f"title_{t}" for t in TITLES)
)


@dataclass(frozen=True)
class Config(TrainingDefaults):
    """Every default of the Titanic task: training (the classic notebook's), data and model."""

    # training
    seeds: int | tuple[int, ...] = 10  # models per loss (seeds 0..9)
    epochs: int = 100  # passes over the ~785 training passengers
    batch_size: int = 64  # passengers per minibatch
    lr: float = 1e-3  # Adam's learning rate
    optimizer: Literal["adam", "sgd"] = "adam"  # Adam, as in the notebook (lossbench.optim's, which follows torch.optim.Adam)
    # data (the split seed is TrainingDefaults.split_seed)
    val_fraction: float = 0.2  # share of passengers in the validation split (stratified by survival)
    test_fraction: float = 0.2  # share of passengers in the test split (stratified by survival)
    # model
    hidden: int = 128  # width of the MLP's one hidden layer: d -> hidden ReLU -> head
    bias: bool = True  # biases in the hidden layer and the head


QUICK = {"seeds": 3, "epochs": 10}
"""Overrides for a seconds-long smoke run."""

SUMMARY = ("survived or not (binary): 1,309 real Titanic passengers, 15 tabular features, MLP d -> 128 -> head; "
           "--data reads a titanic3 CSV or Kaggle's train.csv")


# --------------------------------------------------------------------------------------------------
# Reading and checking a passenger file
# --------------------------------------------------------------------------------------------------


def read_passengers(path: str | Path) -> tuple[pd.DataFrame, Literal["titanic3", "kaggle"]]:
    """Read and check a passenger file; return one clean row per passenger and the file's format.

    The frame's index is the row number in the file (1 = the first row after the header) and its
    columns are :data:`USED_COLUMNS`: ``pclass``, ``survived``, ``sibsp``, ``parch`` as int64; ``age``
    and ``fare`` as float64 (NaN when missing); ``sex`` "male"/"female"; ``embarked`` "C"/"Q"/"S" or
    missing (``pd.isna``); ``name`` str or None. Raises :class:`DataError` naming the file, row and
    column of the first problem.

    >>> passengers, file_format = read_passengers(SHIPPED_PATH)
    >>> file_format, len(passengers)
    ('titanic3', 1309)
    >>> row = passengers.loc[1]
    >>> row["name"], row["sex"], int(row["pclass"]), float(row["age"]), row["embarked"]
    ('Allen, Miss. Elisabeth Walton', 'female', 1, 29.0, 'S')
    """
    table = read_csv(path)
    lower = {str(c).lower() for c in table.frame.columns}
    file_format: Literal["titanic3", "kaggle"] = "kaggle" if "passengerid" in lower else "titanic3"
    if file_format == "kaggle" and "survived" not in lower:
        raise DataError(
            f"{table.path} looks like the Kaggle competition test.csv: it has no `Survived` column, so it "
            "has no labels to train or evaluate on. Pass the competition's train.csv instead."
        )
    try:
        names = find_columns(table, USED_COLUMNS)
    except DataError as err:
        raise DataError(
            f"{err} Expected the titanic3 columns ({', '.join(TITANIC3_COLUMNS)}) or the Kaggle train.csv "
            f"columns ({', '.join(KAGGLE_COLUMNS)})."
        ) from None

    def column(name: str) -> pd.Series:
        return table.frame[names[name]]

    survived = _integers(table, column("survived"), names["survived"], allowed=(0, 1))
    pclass = _integers(table, column("pclass"), names["pclass"], allowed=(1, 2, 3))
    sibsp = _integers(table, column("sibsp"), names["sibsp"])
    parch = _integers(table, column("parch"), names["parch"])
    age = _numbers(table, column("age"), names["age"], at_most=120)  # the oldest passenger was 80
    fare = _numbers(table, column("fare"), names["fare"], at_most=10_000)  # pounds of 1912; the dearest ticket was 512
    sex = _choices(table, column("sex"), names["sex"], ("male", "female"), str.lower, required=True)
    embarked = _choices(table, column("embarked"), names["embarked"], PORTS, str.upper, required=False)
    name = column("name").where(~_is_missing(column("name")), None)
    _check_listed_once(table, file_format)  # after the cells' own checks, which name a bad cell's row first
    passengers = pd.DataFrame(
        {"pclass": pclass, "survived": survived, "name": name, "sex": sex, "age": age,
         "sibsp": sibsp, "parch": parch, "fare": fare, "embarked": embarked},
        index=table.frame.index,
    )  # fmt: skip
    return passengers, file_format


def _check_listed_once(table: CsvTable, file_format: Literal["titanic3", "kaggle"]) -> None:
    """Refuse a passenger listed twice, who could train in one split and be tested on in another.

    A Kaggle file says who is who by its ``PassengerId``: a repeated id is refused. A titanic3 file has no
    id, so a row equal to an earlier one in every column is refused (titanic3 itself has no such rows).
    """
    if file_format == "kaggle":
        ids = table.frame[find_columns(table, ("PassengerId",))["PassengerId"]]
        repeated = ids.duplicated(keep="first") & (ids != "")
        if (row := _first_bad(repeated)) is not None:
            first = int(ids.index[(ids == ids[row]).to_numpy()][0])
            raise DataError(
                f"{table.where(row)}: `PassengerId` {ids[row]} is listed twice (first in row {first}); expected each "
                "passenger once, or the same passenger could be trained on and tested on."
            )
        return
    repeated = table.frame.duplicated(keep="first")
    if (row := _first_bad(repeated)) is not None:
        same = (table.frame.to_numpy() == table.frame.loc[row].to_numpy()).all(axis=1)
        first = int(table.frame.index[same][0])
        raise DataError(
            f"{table.where(row)}: the passenger of row {first} is listed again, equal in every column; expected each "
            "passenger once, or the same passenger could be trained on and tested on."
        )


def _is_missing(cells: pd.Series) -> pd.Series:
    """True where a cell's text means "unknown"."""
    return cells.str.lower().isin(MISSING)


def _first_bad(bad: pd.Series) -> int | None:
    """The row number of the first True in ``bad``, or None."""
    rows = bad.index[bad.to_numpy()]
    return int(rows[0]) if len(rows) else None


def _numbers(table: CsvTable, cells: pd.Series, name: str, at_most: float) -> pd.Series:
    """Parse a column of non-negative numbers up to ``at_most`` (a bound no passenger comes near), missing allowed (NaN)."""
    missing = _is_missing(cells)
    values = pd.to_numeric(cells.where(~missing, None), errors="coerce").astype(np.float64)
    bad = ~missing & ~np.isfinite(values)
    if (row := _first_bad(bad)) is not None:
        raise DataError(
            f"{table.where(row)}: expected `{name}` to be a number (or empty when unknown), "
            f"but got {cells[row]!r}."
        )
    if (row := _first_bad((values < 0) | (values > at_most))) is not None:
        raise DataError(f"{table.where(row)}: expected `{name}` to be between 0 and {at_most:g}, but got {cells[row]!r}.")
    return values


def _integers(table: CsvTable, cells: pd.Series, name: str, allowed: tuple[int, ...] | None = None, at_most: int = 100) -> pd.Series:
    """Parse a column of required whole numbers (0 to ``at_most``, or one of ``allowed``)."""
    expected = either(allowed) if allowed else f"a whole number from 0 to {at_most}"
    if (row := _first_bad(_is_missing(cells))) is not None:
        raise DataError(
            f"{table.where(row)}: `{name}` is empty ({cells[row]!r}), but every passenger needs one; "
            f"expected {expected}."
        )
    values = pd.to_numeric(cells, errors="coerce").astype(np.float64)
    ok = np.isfinite(values) & (values == np.round(values)) & (values >= 0) & (values <= at_most)
    if allowed:
        ok &= values.isin(allowed)
    if (row := _first_bad(~ok)) is not None:
        raise DataError(f"{table.where(row)}: expected `{name}` to be {expected}, but got {cells[row]!r}.")
    return values.astype(np.int64)


def _choices(
    table: CsvTable,
    cells: pd.Series,
    name: str,
    options: tuple[str, ...],
    normalise: Callable[[str], str],
    required: bool,
) -> pd.Series:
    """Parse a categorical column into one of ``options`` (compared after ``normalise``), or missing."""
    missing = _is_missing(cells)
    if required and (row := _first_bad(missing)) is not None:
        raise DataError(f"{table.where(row)}: `{name}` is empty; expected {either(options)}.")
    values = cells.map(normalise).where(~missing, None)
    bad = ~missing & ~values.isin(options)
    if (row := _first_bad(bad)) is not None:
        raise DataError(
            f"{table.where(row)}: unknown `{name}` value {cells[row]!r}; expected {either(options)}"
            f"{'' if required else ' (or empty when unknown)'}."
        )
    return values


# --------------------------------------------------------------------------------------------------
# Features, fitted on the training split only
# --------------------------------------------------------------------------------------------------

_TITLE_RE = re.compile(r",\s*([^.,]+?)\s*\.")  # "Surname, Title. Given names"


def title_of(name: str | None) -> str:
    """The passenger's title, one of :data:`TITLES`: the word between the comma and the first full stop.

    >>> title_of("Allen, Miss. Elisabeth Walton"), title_of("Aubart, Mme. Leontine Pauline")
    ('Miss', 'Mrs')
    >>> title_of("Rothes, the Countess. of (Lucy Noel Martha Dyer-Edwards)"), title_of(None)
    ('rare', 'rare')
    """
    match = _TITLE_RE.search(name) if isinstance(name, str) else None
    if match is None:
        return "rare"
    title = _TITLE_ALIASES.get(match.group(1), match.group(1))
    return title if title in TITLES else "rare"


@dataclass(frozen=True)
class Preprocessing:
    """Everything learned from the training passengers: fill values and standardisation statistics."""

    age_fill: float  # median age of the training passengers with a known age
    fare_fill: float  # median fare of the training passengers with a known fare
    embarked_fill: str  # the training split's most common port
    mean: tuple[float, ...]  # per feature (FEATURES order), after filling
    std: tuple[float, ...]  # per feature; 1 for a feature constant in training


def _encode(passengers: pd.DataFrame, age_fill: float, fare_fill: float, embarked_fill: str) -> np.ndarray:
    """The raw (unstandardised) feature matrix, ``(N, 15)`` float64, with missing values filled."""
    age_missing = passengers["age"].isna().to_numpy()
    age = passengers["age"].fillna(age_fill).to_numpy()
    fare = passengers["fare"].fillna(fare_fill).to_numpy()
    port = passengers["embarked"].fillna(embarked_fill).to_numpy()
    title = passengers["name"].map(title_of).to_numpy()
    columns = [
        passengers["pclass"].to_numpy(),
        (passengers["sex"] == "female").to_numpy(),
        age,
        age_missing,
        passengers["sibsp"].to_numpy(),
        passengers["parch"].to_numpy(),
        np.log1p(fare),
        *[port == p for p in PORTS],
        *[title == t for t in TITLES],
    ]
    return np.stack(columns, axis=1).astype(np.float64)  # (N, 15)


def fit_preprocessing(train: pd.DataFrame) -> Preprocessing:
    """Learn the fill values and the standardisation from the TRAINING passengers only.

    Steps: (1) medians of the known ages and fares and the most common port (ties: first of C, Q, S);
    (2) encode the training passengers with those fills; (3) per feature mean and standard deviation.

    >>> passengers, _ = read_passengers(SHIPPED_PATH)
    >>> prep = fit_preprocessing(passengers)
    >>> prep.age_fill, prep.embarked_fill
    (28.0, 'S')
    """
    for name in ("age", "fare", "embarked"):
        if train[name].isna().all():
            raise DataError(f"Every training passenger's `{name}` is missing, so there is nothing to fill it with.")
    age_fill = float(train["age"].median())
    fare_fill = float(train["fare"].median())
    counts = train["embarked"].value_counts()
    embarked_fill = max(PORTS, key=lambda p: (counts.get(p, 0), -PORTS.index(p)))
    mean, std = fit_standardizer(_encode(train, age_fill, fare_fill, embarked_fill))
    return Preprocessing(age_fill, fare_fill, embarked_fill, tuple(map(float, mean)), tuple(map(float, std)))


def transform(passengers: pd.DataFrame, prep: Preprocessing) -> np.ndarray:
    """The model's input: fill with the training values, encode, standardise. ``(N, 15)`` float32.

    >>> passengers, _ = read_passengers(SHIPPED_PATH)
    >>> x = transform(passengers, fit_preprocessing(passengers))
    >>> x.shape, x.dtype, bool(abs(x.mean(axis=0)).max() < 1e-5)
    ((1309, 15), dtype('float32'), True)
    """
    raw = _encode(passengers, prep.age_fill, prep.fare_fill, prep.embarked_fill)
    return standardize(raw, np.array(prep.mean), np.array(prep.std))


# --------------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------------


def load(config: Config, data: str | Path | None = None) -> TaskData:
    """Load the Titanic task: read and check the file, split it, fit the preprocessing on training rows.

    ``data=None`` reads the shipped titanic3 file and verifies its SHA-256; ``data=PATH`` reads your
    own titanic3 or Kaggle ``train.csv`` file.

    >>> task = load(Config())
    >>> task.kind, task.label_names, task.train.x.shape[1], task.body
    ('binary', ('survived',), 15, MLPBody(in_features=15, hidden=128, bias=True))
    >>> len(task.train), len(task.val), len(task.test)
    (785, 262, 262)
    """
    check_fractions(config.val_fraction, config.test_fraction)
    if not (isinstance(config.hidden, int) and config.hidden >= 1):
        raise ValueError(f"Expected `hidden` to be a whole number of units, 1 or more, but got {config.hidden!r}.")
    if data is None:
        path = SHIPPED_PATH
        if not path.is_file():
            raise DataError(
                f"The shipped Titanic file {path} is missing; it comes with the repository "
                "(install with `pip install -e .` from a checkout), or pass your own file as data."
            )
        verify_sha256(path, SHIPPED_SHA256)
        sha256 = SHIPPED_SHA256
    else:
        path = Path(data)
        sha256 = sha256_of(path) if path.is_file() else ""
    passengers, file_format = read_passengers(path)

    # 1. the split: stratified by survival, from the split seed only
    labels = passengers["survived"].to_numpy()
    parts = split_indices(len(passengers), config.val_fraction, config.test_fraction, config.split_seed, labels)
    if any(len(p) == 0 for p in parts):
        raise DataError(
            f"{path} has only {len(passengers)} passengers: too few for a train/val/test split with "
            f"val_fraction={config.val_fraction} and test_fraction={config.test_fraction}."
        )
    frames = [passengers.iloc[p] for p in parts]

    # 2. preprocessing learned from the training passengers only, then applied to all three splits
    try:
        prep = fit_preprocessing(frames[0])
    except DataError as err:  # "every training passenger's `age` is missing": in which file
        raise DataError(f"{path}: {err}") from None

    def to_split(frame: pd.DataFrame) -> Split:
        x = torch.from_numpy(transform(frame, prep))  # (N, 15)
        y = torch.from_numpy(frame["survived"].to_numpy(np.float32)).unsqueeze(1)  # (N, 1)
        return Split(x=x, y=y, source=frame.index.to_numpy(np.int64))

    train, val, test = (to_split(f) for f in frames)
    shown = "datasets/titanic/titanic.csv" if data is None else str(path)
    return TaskData(
        name="titanic",
        kind="binary",
        label_names=("survived",),
        train=train,
        val=val,
        test=test,
        body=MLPBody(in_features=len(FEATURES), hidden=config.hidden, bias=config.bias),
        description=f"Titanic: survived or not, {len(passengers):,} real passengers, {len(FEATURES)} features",
        provenance=f"{shown} ({file_format} format, sha256 {sha256})",
        notes={
            "file": shown,
            "format": file_format,
            "sha256": sha256,
            "rows": len(passengers),
            "features": list(FEATURES),
            "preprocessing": asdict(prep),
            "dropped_columns": "boat and body (leak the answer), home.dest (identifies families), "
            "ticket, cabin, PassengerId (identifiers)",
        },
    )
