"""The Result of a comparison (tidy pandas frames) and its run directory, written atomically.

A run directory holds:

- ``config.json``: the resolved configuration, package versions, device and git commit;
- ``runs.csv``: one row per model (loss x seed): final metrics, best validation threshold, test metrics
  at 0.5 and at that threshold, the divergence flag;
- ``history.csv``: one row per model per epoch (epoch 0 is before training): losses, validation accuracy
  and AUC, gradient allocation;
- ``thresholds.csv``: accuracy, F1, sensitivity, specificity and exact match per model, split and threshold;
- ``calibration.csv``: reliability bins per model on the test split;
- ``summary.csv``: per loss and metric, the mean and 95% interval over seeds and the paired difference to
  the baseline loss;
- ``predictions.npz``: every model's validation and test scores, and the targets, so that any metric can be
  recomputed;
- ``plots/``: the figures, when drawn.

It is written to a hidden temporary directory beside the target and renamed into place at the end, so an
interrupted run never leaves a directory that looks complete. :func:`load` checks what it reads (the JSON's
shape, each table's columns and its rows for every loss, the arrays), so that a damaged directory is a
``ValueError`` naming the file, not an error deep inside a report or a plot.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lossbench.gradients import CONFIDENCE_BINS

FRAMES = ("runs", "history", "thresholds", "calibration", "summary")

COLUMNS = {
    "runs": ("loss", "seed", "model", "diverged", "final_train_loss", "best_threshold", "test_accuracy", "test_accuracy_best",
             "test_auc", "test_ece"),
    "history": ("loss", "seed", "epoch", "model", "train_loss", "val_loss", "val_accuracy", "val_auc", "grad_negative_unit_share",
                "grad_body", "grad_positive_share", "decision_weight_change",
                *(f"grad_confidence_{which}[{b}]" for which in ("correct", "wrong") for b in CONFIDENCE_BINS)),
    "thresholds": ("loss", "seed", "split", "threshold", "accuracy", "sensitivity", "specificity"),
    "calibration": ("loss", "seed", "bin", "bin_low", "bin_high", "mean_predicted", "fraction_positive", "count"),
    "summary": ("loss", "metric", "n", "mean", "ci_low", "ci_high", "diff_mean", "diff_low", "diff_high", "diff_n"),
}  # fmt: skip
"""The columns of each table that :func:`load` checks for: those the report and the plots read (a run has more)."""

TEXT_COLUMNS = ("loss", "split", "metric")
"""The checked columns that hold names; every other checked column holds numbers."""

SUMMARY_METRICS = ("test_accuracy", "test_accuracy_best", "best_threshold", "test_auc", "final_train_loss", "test_ece")
"""The metrics that summary.csv must hold for every loss: those of the report's table and the plots."""

PREDICTIONS = ("models_loss", "models_seed", "val_scores", "val_targets", "test_scores", "test_targets")
"""The arrays of predictions.npz."""

CONFIG_TYPES = {"seeds": list, "label_names": list, "task_config": dict, "sizes": dict, "loss_setups": dict, "threshold_metric": str}
"""Keys of config.json that the report and the plots use when present, and the JSON type each must have."""

DAMAGED = "the run directory may be damaged; rerun `lossbench compare` to make it again"


@dataclass
class Result:
    """Everything one comparison produced. Frames are tidy: one row per model (and epoch, threshold, bin)."""

    runs: pd.DataFrame
    history: pd.DataFrame
    thresholds: pd.DataFrame
    calibration: pd.DataFrame
    summary: pd.DataFrame
    config: dict
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    directory: Path | None = None  # where it was saved or loaded from

    def __repr__(self) -> str:
        """One line a notebook can show: what was compared and how large each table is (not every row of every frame).

        >>> import pandas as pd
        >>> Result(*[pd.DataFrame({"a": [1, 2]})] * 5, config={"task": "titanic", "losses": ["bce", "mse"], "seeds": [0, 1]})
        Result(task='titanic', losses=['bce', 'mse'], seeds=2, runs: 2 rows, history: 2 rows, thresholds: 2 rows, calibration: 2 rows, summary: 2 rows, directory=None)
        """
        seeds = self.config.get("seeds")
        tables = ", ".join(f"{name}: {len(getattr(self, name))} rows" for name in FRAMES)
        where = str(self.directory) if self.directory is not None else None
        return (f"Result(task={self.config.get('task')!r}, losses={self.config.get('losses')!r}, "
                f"seeds={len(seeds) if isinstance(seeds, list) else seeds!r}, {tables}, directory={where!r})")

    @property
    def losses(self) -> list[str]:
        """The losses compared, in the order they were given."""
        return list(self.config["losses"])

    @property
    def baseline(self) -> str | None:
        return self.config.get("baseline")

    def save(self, directory: str | os.PathLike, extra: Callable[[Path], object] | None = None) -> Path:
        """Write the run directory atomically and return its path.

        The directory must not exist yet (or be empty): a saved run is never overwritten. ``extra`` is
        called with the temporary directory before it is renamed into place, to add files (the plots)
        that must appear together with the rest or not at all.
        """
        target = _path(directory, "directory")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            holds = "is a file" if not target.is_dir() else "already holds files"
            raise RunExistsError(f"Expected `directory` to be a new or empty directory, but {str(target)!r} {holds}.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a run directory is an ordinary folder
        try:
            for name in FRAMES:
                getattr(self, name).to_csv(tmp / f"{name}.csv", index=False)
            np.savez_compressed(tmp / "predictions.npz", **self.predictions)
            with open(tmp / "config.json", "w") as fh:
                json.dump(self.config, fh, indent=2, sort_keys=True, default=str)
                fh.write("\n")
            if extra is not None:
                extra(tmp)
            try:
                if target.exists():
                    target.rmdir()
                os.replace(tmp, target)
            except OSError as err:  # another process wrote into the folder between the check above and now
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise RunExistsError(f"Expected `directory` to be a new or empty directory, but {str(target)!r} got files "
                                     "from elsewhere while this run was saved.") from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.directory = target
        return target


class RunExistsError(FileExistsError, ValueError):
    """The directory given to :meth:`Result.save` already holds files: a ``ValueError`` (a wrong argument)
    that is also a ``FileExistsError``, so that a caller who falls back to another folder when one cannot
    be written (an ``OSError``) falls back on this too, as when another run took the folder first."""


def load(directory: str | os.PathLike) -> Result:
    """Read a run directory written by :meth:`Result.save`, checking that it is whole.

    A missing directory or file, or a file that is damaged (not valid JSON or CSV, a table without the
    columns or the rows of a loss, an archive without the predictions), is a ``ValueError`` that names it.

    >>> load("no/such/run")
    Traceback (most recent call last):
    ...
    ValueError: Expected a lossbench run directory, but 'no/such/run' does not exist.
    """
    path = _path(directory, "directory")
    if not path.is_dir():
        state = "is a file" if path.exists() else "does not exist"
        raise ValueError(f"Expected a lossbench run directory, but {str(path)!r} {state}.")
    missing = [f"{n}.csv" for n in FRAMES if not (path / f"{n}.csv").is_file()]
    missing += [n for n in ("config.json", "predictions.npz") if not (path / n).is_file()]
    if missing:
        raise ValueError(
            f"Expected a lossbench run directory, but {str(path)!r} lacks {', '.join(missing)} "
            "(was the run interrupted, or is this another folder?)."
        )
    config = _read_config(path / "config.json")
    frames = {name: _read_frame(path / f"{name}.csv", COLUMNS[name], config["losses"]) for name in FRAMES}
    _check_summary(path / "summary.csv", frames["summary"], config)
    _check_models(path, frames, config)
    predictions = _read_predictions(path / "predictions.npz")
    _check_predictions(path / "predictions.npz", predictions, frames["runs"], config)
    return Result(**frames, config=config, predictions=predictions, directory=path)


def _path(value: object, name: str) -> Path:
    """``value`` as a Path, or a ValueError naming the argument (not ``Path``'s TypeError about os.PathLike)."""
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise ValueError(f"Expected `{name}` to be the path of a folder, but got {value!r}.")
    return Path(value)


def _one_line(err: Exception) -> str:
    """An error's message on one line, without its closing full stop."""
    return " ".join(str(err).split()).rstrip(".")


def _short(value: object, limit: int = 60) -> str:
    """A JSON value as it appears in the file, cut short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _damaged(message: str) -> ValueError:
    return ValueError(f"{message} ({DAMAGED}).")


def _unreadable(file: Path, what: str, err: Exception) -> ValueError:
    """The error for a file that could not be opened or parsed as ``what``."""
    if isinstance(err, pd.errors.EmptyDataError):
        return _damaged(f"Expected {file} to be {what}, but it is empty")
    if isinstance(err, OSError):  # no permission, a read error: not damage
        return ValueError(f"Expected {file} to be {what}, but it could not be read: {_one_line(err)}.")
    return _damaged(f"Expected {file} to be {what}, but it could not be parsed: {_one_line(err)}")


def _read_config(file: Path) -> dict:
    """config.json: a JSON object whose ``losses`` is a non-empty list of names, and the keys the report uses."""
    try:
        with open(file, encoding="utf-8") as fh:
            config = json.load(fh)
    except (ValueError, OSError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors; arrays nested past Python's limit
        raise _unreadable(file, "a JSON object", err) from err
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "true or false", int: "a number", float: "a number"}
    if not isinstance(config, dict):
        kind = kinds.get(type(config), "null")
        raise _damaged(f"Expected {file} to be a JSON object with a list of losses, but it holds {kind}: {_short(config)}")
    if "losses" not in config:
        raise _damaged(f'Expected {file} to be a JSON object with a list of losses, but it has no "losses" key')
    losses = config["losses"]
    if not (isinstance(losses, list) and losses and all(isinstance(loss, str) for loss in losses)):
        raise _damaged(f'Expected "losses" in {file} to be a non-empty list of loss names, but got {_short(losses)}')
    if len(set(losses)) != len(losses):
        raise _damaged(f'Expected "losses" in {file} to name each loss once, but got {_short(losses)}')
    from lossbench.thresholds import SELECTION_METRICS  # here: reading a run needs no torch otherwise

    if config.get("threshold_metric", "accuracy") not in SELECTION_METRICS:
        raise _damaged(f'Expected "threshold_metric" in {file} to be one of {", ".join(SELECTION_METRICS)}, but got '
                       f'{_short(config.get("threshold_metric"))}')
    baseline = config.get("baseline")
    if baseline is not None and baseline not in losses:
        raise _damaged(f'Expected "baseline" in {file} to be one of the losses {", ".join(losses)} or null, but got {_short(baseline)}')
    for key, wanted in CONFIG_TYPES.items():
        if key in config and not isinstance(config[key], wanted):
            raise _damaged(f'Expected "{key}" in {file} to be {kinds[wanted]}, but got {_short(config[key])}')
    for loss, setup in config.get("loss_setups", {}).items():
        if not isinstance(setup, dict):
            raise _damaged(f'Expected "loss_setups" in {file} to map each loss to an object, but {loss!r} maps to {_short(setup)}')
        if not isinstance(setup.get("options", {}), dict):
            raise _damaged(f'Expected the options of {loss!r} in "loss_setups" of {file} to be an object, but got {_short(setup["options"])}')
    return config


def _read_frame(file: Path, columns: tuple[str, ...], losses: list[str]) -> pd.DataFrame:
    """One table: it parses, has ``columns`` (numbers but for the names) and rows for every loss."""
    try:
        frame = pd.read_csv(file)
        with open(file, "rb") as fh:  # every table is written whole, ending in a newline; a cut one lost its last row's end
            fh.seek(-1, os.SEEK_END)
            whole = fh.read(1) == b"\n"
    except (ValueError, OSError) as err:  # EmptyDataError, ParserError and UnicodeDecodeError are ValueErrors
        raise _unreadable(file, "a CSV table", err) from err
    if not whole:
        raise _damaged(f"Expected {file} to end with a newline, as written, but its last line is cut off")
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise _damaged(f"Expected {file} to have every column the report and the plots read, but it lacks {', '.join(absent)}")
    for column in columns:
        if column in TEXT_COLUMNS or pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].dropna()
        bad = values[pd.to_numeric(values, errors="coerce").isna()]
        if len(bad):
            raise _damaged(f"Expected the column {column} of {file} to hold numbers, but it holds {str(bad.iloc[0])!r}")
    present = set(frame["loss"].astype(str))
    absent = [loss for loss in losses if loss not in present]
    if absent:
        raise _damaged(f"{file} is incomplete: it has no rows for the loss{'es' if len(absent) > 1 else ''} {', '.join(map(repr, absent))}")
    return frame


def _check_summary(file: Path, summary: pd.DataFrame, config: dict) -> None:
    """summary.csv holds one row for every loss and every metric (those the report reads, and all it holds)."""
    losses = config["losses"]
    several = config.get("task_kind") in ("multilabel", "grid")  # their table shows exact match too
    metrics = list(dict.fromkeys([*SUMMARY_METRICS, *(("test_exact_match",) if several else ()), *summary["metric"].astype(str)]))
    keys = list(zip(summary["loss"].astype(str), summary["metric"].astype(str)))
    pairs = set(keys)
    if len(pairs) != len(keys):
        loss, metric = next(k for k in keys if keys.count(k) > 1)
        raise _damaged(f"Expected {file} to hold one row for each loss and metric, but the loss {loss!r} has two for {metric}")
    for column in ("n", "diff_n"):
        counts = summary[column].dropna().astype(float)
        odd = counts[~counts.map(float.is_integer) | (counts < 0)]
        if len(odd):
            raise _damaged(f"Expected the column {column} of {file} to hold counts of seeds, but it holds {float(odd.iloc[0]):g}")
    for loss in losses:
        absent = [m for m in metrics if (loss, m) not in pairs]
        if absent:
            shown = ", ".join(absent[:4]) + (f" and {len(absent) - 4} more" if len(absent) > 4 else "")
            raise _damaged(f"{file} is incomplete: it has no rows for the metrics {shown} of the loss {loss!r}")


def _check_counts(path: Path, frames: dict[str, pd.DataFrame]) -> None:
    """summary.csv's counts of seeds are runs.csv's: a summary of another run (other seeds) is not this run's."""
    runs, summary = frames["runs"], frames["summary"]
    for row in summary.itertuples():
        if row.metric in runs.columns and row.metric not in TEXT_COLUMNS:
            values = pd.to_numeric(runs.loc[runs["loss"].astype(str) == str(row.loss), row.metric], errors="coerce")
            finite = int(np.isfinite(values.astype(float)).sum())
            if row.n != finite:
                raise _damaged(f"Expected {path / 'summary.csv'} to summarise the seeds of {path / 'runs.csv'}, but its {row.metric} of "
                               f"{row.loss!r} is over {row.n:g} seeds, where runs.csv has {finite}")


def _check_models(path: Path, frames: dict[str, pd.DataFrame], config: dict) -> None:
    """Every model of the run (each loss with each seed) has its rows in each per-model table, as many as the
    run wrote: a table cut short by whole lines, or a config.json edited to other seeds or another baseline,
    would otherwise be drawn and reported as if whole."""
    seeds = config.get("seeds")
    models = {(loss, seed) for loss in config["losses"] for seed in seeds} if isinstance(seeds, list) else None
    rows_each = {"runs": 1, "history": None, "thresholds": None, "calibration": None}
    epochs = config.get("task_config", {}).get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        rows_each["history"] = epochs + 1  # epoch 0, before training, then every epoch
    points = config.get("threshold_points")
    if isinstance(points, int) and not isinstance(points, bool):
        rows_each["thresholds"] = points * frames["thresholds"]["split"].nunique()
    for name, wanted in rows_each.items():
        frame, file = frames[name], path / f"{name}.csv"
        counts = frame.groupby([frame["loss"].astype(str), frame["seed"]]).size()
        found = {(loss, int(seed)) if float(seed).is_integer() else (loss, seed) for loss, seed in counts.index}
        if models is not None and found != models:
            odd = sorted(found ^ models, key=str)[0]
            has = "none" if odd in models else "rows"
            raise _damaged(f"Expected {file} to hold rows for each loss with each seed of {path / 'config.json'} and no other, "
                           f"but it has {has} for the loss {odd[0]!r} with seed {odd[1]}")
        wanted = wanted if wanted is not None else (counts.max() if len(counts) else 0)
        short = counts[counts != wanted]
        if len(short):
            (loss, seed), got = short.index[0], int(short.iloc[0])
            what = "is incomplete" if got < wanted else "has rows twice or from elsewhere"
            raise _damaged(f"{file} {what}: the loss {loss!r} with seed {seed} has {got} row{'s' if got != 1 else ''}, where the run wrote {wanted}")
    epoch = frames["history"]["epoch"].astype(float)
    if not (epoch.map(float.is_integer) & (epoch >= 0)).all():
        raise _damaged(f"Expected the column epoch of {path / 'history.csv'} to hold epochs 0, 1, 2, ..., but it holds "
                       f"{epoch[~(epoch.map(float.is_integer) & (epoch >= 0))].iloc[0]:g}")
    _check_counts(path, frames)
    summary = frames["summary"]
    if "baseline" in summary.columns:
        written = set(summary["baseline"].dropna().astype(str))
        if written and written != {config.get("baseline")}:
            raise _damaged(f'Expected "baseline" in {path / "config.json"} to be the baseline of summary.csv\'s paired differences, '
                           f"{', '.join(sorted(written))}, but got {_short(config.get('baseline'))}")


def _read_predictions(file: Path) -> dict[str, np.ndarray]:
    """predictions.npz: a zip archive of the arrays of :data:`PREDICTIONS`, or of none (a run saved without them)."""
    what = "a .npz archive of the predictions (a zip file, as numpy.savez writes)"
    zip_starts = (b"PK\x03\x04", b"PK\x05\x06")  # a zip file's first entry, or an empty zip file
    predictions: dict[str, np.ndarray] = {}
    try:
        with open(file, "rb") as fh:
            head = fh.read(4)
        if head in zip_starts:  # else np.load would take it for a pickle and talk of allow_pickle
            with np.load(file, allow_pickle=False) as npz:
                predictions = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise _unreadable(file, what, err) from err
    if head not in zip_starts:
        raise _damaged(f"Expected {file} to be {what}, but it {'is empty' if not head else 'is not a zip file'}")
    absent = [k for k in PREDICTIONS if k not in predictions]
    if predictions and absent:
        raise _damaged(f"{file} is incomplete: it lacks the arrays {', '.join(absent)}")
    return predictions


def _check_predictions(file: Path, predictions: dict[str, np.ndarray], runs: pd.DataFrame, config: dict) -> None:
    """The arrays fit each other and the run: a score per model, example and output, for the models of runs.csv."""
    if not predictions:
        return
    p = predictions
    for key in ("val_scores", "val_targets", "test_scores", "test_targets", "models_seed"):
        if not (np.issubdtype(p[key].dtype, np.number) or np.issubdtype(p[key].dtype, np.bool_)):
            raise _damaged(f"Expected the array {key} of {file} to hold numbers, but it holds {p[key].dtype}")
    m = len(runs)
    shapes = {"models_loss": 1, "models_seed": 1, "val_scores": 3, "test_scores": 3, "val_targets": 2, "test_targets": 2}
    wrong = [k for k, ndim in shapes.items() if p[k].ndim != ndim]
    if not wrong:
        k_out = p["val_targets"].shape[1]
        wanted = {"models_loss": (m,), "models_seed": (m,), "val_scores": (m, *p["val_targets"].shape),
                  "test_scores": (m, *p["test_targets"].shape), "test_targets": (p["test_targets"].shape[0], k_out)}
        wrong = [k for k, shape in wanted.items() if p[k].shape != shape]
    if wrong:
        shown = ", ".join(f"{k} {tuple(p[k].shape)}" for k in shapes)
        raise _damaged(f"Expected the arrays of {file} to hold a score per model of runs.csv ({m}), example and output, but they "
                       f"are {shown}")
    names = config.get("label_names")
    if isinstance(names, list) and len(names) != p["val_targets"].shape[1]:
        raise _damaged(f'Expected "label_names" in {file.parent / "config.json"} to name the {p["val_targets"].shape[1]} outputs of '
                       f"{file}, but it names {len(names)}")
    models = set(zip(runs["loss"].astype(str), runs["seed"].astype(int)))
    if set(zip(p["models_loss"].astype(str), p["models_seed"].astype(int))) != models:
        raise _damaged(f"Expected the models of {file} to be those of runs.csv, but they differ")
