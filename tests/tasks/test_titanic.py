"""Tests for the Titanic task: the shipped file, both real formats, the split, train-only preprocessing, errors."""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from lossbench.models import MLPBody
from lossbench.tasks import DataError, titanic
from lossbench.tasks._common import sha256_of
from lossbench.tasks.titanic import FEATURES, Config, load, read_passengers, title_of

SHIPPED = titanic.SHIPPED_PATH


def raw_features(split: titanic.Split, task) -> np.ndarray:
    """Undo the standardisation: the filled, encoded features before scaling."""
    prep = task.notes["preprocessing"]
    return split.x.double().numpy() * np.array(prep["std"]) + np.array(prep["mean"])


def row_of(split, source: int) -> int:
    """The position of the passenger with file row ``source`` in a split."""
    return int(np.flatnonzero(split.source == source)[0])


# --------------------------------------------------------------------------------------------------
# The shipped file
# --------------------------------------------------------------------------------------------------


def test_shipped_file_is_the_documented_one():
    assert sha256_of(SHIPPED) == titanic.SHIPPED_SHA256
    assert titanic.SHIPPED_SHA256 in (SHIPPED.parent / "README.md").read_text()
    reference = pd.read_csv(SHIPPED, na_values=["?"], keep_default_na=False)  # an independent reader
    assert reference.shape == (1309, 14)
    passengers, file_format = read_passengers(SHIPPED)
    assert file_format == "titanic3" and len(passengers) == titanic.SHIPPED_ROWS == 1309
    assert passengers.index.tolist() == list(range(1, 1310))
    for column in ("pclass", "survived", "sibsp", "parch"):
        assert passengers[column].tolist() == reference[column].tolist()
    for column in ("age", "fare"):
        np.testing.assert_array_equal(passengers[column].to_numpy(), reference[column].to_numpy())
    assert passengers["age"].isna().sum() == 263 and passengers["fare"].isna().sum() == 1
    assert passengers["embarked"].isna().sum() == 2 and int(passengers["survived"].sum()) == 500


def test_shipped_load_shapes_dtypes_and_split_sizes():
    task = load(Config())
    assert task.name == "titanic" and task.kind == "binary" and task.label_names == ("survived",)
    assert task.body == MLPBody(in_features=15, hidden=128, bias=True)
    assert task.n_outputs == 1 and task.notes["format"] == "titanic3"
    assert titanic.SHIPPED_SHA256 in task.provenance
    assert (len(task.train), len(task.val), len(task.test)) == (785, 262, 262)
    for split in (task.train, task.val, task.test):
        assert split.x.dtype == torch.float32 and split.x.shape == (len(split), len(FEATURES))
        assert split.y.dtype == torch.float32 and split.y.shape == (len(split), 1)
        assert set(split.y.unique().tolist()) == {0.0, 1.0}
        assert torch.isfinite(split.x).all()
        # stratified: each split's survival rate is the file's (500 / 1309), to within one passenger
        assert abs(split.y.mean().item() - 500 / 1309) < 1.5 / len(split)


def test_a_tampered_copy_of_the_shipped_file_is_refused(tmp_path, monkeypatch):
    tampered = tmp_path / "titanic.csv"
    text = SHIPPED.read_text()
    tampered.write_text(text.replace('"Allen, Miss. Elisabeth Walton","female",29', '"Allen, Miss. Elisabeth Walton","female",30', 1))
    monkeypatch.setattr(titanic, "SHIPPED_PATH", tampered)
    with pytest.raises(DataError) as err:
        load(Config())
    message = str(err.value)
    assert str(tampered) in message and titanic.SHIPPED_SHA256 in message and sha256_of(tampered) in message
    # the same bytes passed as the user's own data are read (only the shipped file is pinned)
    assert load(Config(), data=tampered).notes["rows"] == 1309


def test_a_missing_shipped_file_says_where_it_should_be(tmp_path, monkeypatch):
    monkeypatch.setattr(titanic, "SHIPPED_PATH", tmp_path / "nowhere.csv")
    with pytest.raises(DataError, match="shipped Titanic file .*nowhere.csv is missing"):
        load(Config())


# --------------------------------------------------------------------------------------------------
# The split
# --------------------------------------------------------------------------------------------------


def test_same_split_seed_gives_identical_tensors_and_a_new_one_a_new_split():
    a, b = load(Config()), load(Config())
    for name in ("train", "val", "test"):
        sa, sb = getattr(a, name), getattr(b, name)
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
        np.testing.assert_array_equal(sa.source, sb.source)
    c = load(Config(split_seed=1))
    assert not np.array_equal(a.test.source, c.test.source)
    # the model seeds and training settings do not move the split
    d = load(Config(seeds=3, epochs=1, lr=0.5))
    np.testing.assert_array_equal(a.test.source, d.test.source)


def test_no_passenger_is_in_two_splits_and_none_is_lost():
    task = load(Config(split_seed=7))
    train, val, test = (set(s.source.tolist()) for s in (task.train, task.val, task.test))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(1, 1310))
    assert task.train.source.dtype == np.int64


def test_split_fractions_are_configurable():
    task = load(Config(val_fraction=0.1, test_fraction=0.3))
    assert (len(task.val), len(task.test)) == (131, 393)


# --------------------------------------------------------------------------------------------------
# Features and training-split-only preprocessing
# --------------------------------------------------------------------------------------------------


def test_features_of_known_passengers():
    task = load(Config())
    prep = task.notes["preprocessing"]
    found = 0
    for split in (task.train, task.val, task.test):
        raw = raw_features(split, task)
        if 1 in split.source:  # Allen, Miss. Elisabeth Walton: 1st class, female, 29, fare 211.3375, S
            expected = [1, 1, 29, 0, 0, 0, math.log1p(211.3375), 0, 0, 1, 0, 0, 1, 0, 0]
            np.testing.assert_allclose(raw[row_of(split, 1)], expected, atol=1e-5)
            found += 1
        if 16 in split.source:  # Baumann, Mr. John D: age missing -> the training median, flagged
            expected = [1, 0, prep["age_fill"], 1, 0, 0, math.log1p(25.925), 0, 0, 1, 1, 0, 0, 0, 0]
            np.testing.assert_allclose(raw[row_of(split, 16)], expected, atol=1e-4)
            found += 1
        if 1226 in split.source:  # Storey, Mr. Thomas: fare missing -> the training median fare
            assert raw[row_of(split, 1226), FEATURES.index("log_fare")] == pytest.approx(
                math.log1p(prep["fare_fill"]), abs=1e-5
            )
            found += 1
    assert found == 3


def test_fill_values_and_scaling_are_the_training_splits_own():
    task = load(Config())
    reference = pd.read_csv(SHIPPED, na_values=["?"], keep_default_na=False)
    train_rows = reference.iloc[task.train.source - 1]
    prep = task.notes["preprocessing"]
    assert prep["age_fill"] == train_rows["age"].median()
    assert prep["fare_fill"] == train_rows["fare"].median()
    assert prep["embarked_fill"] == train_rows["embarked"].mode()[0] == "S"
    # standardised with training statistics: train columns have mean 0 and std 1, the others do not
    np.testing.assert_allclose(task.train.x.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(task.train.x.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    assert task.val.x.mean(0).abs().max() > 1e-3


@pytest.mark.parametrize("ports, fill", [("CQQS", "Q"), ("SQCS", "S"), ("QSCC", "C"), ("SQ", "Q"), ("CQS", "C"), ("QS", "Q")])
def test_the_missing_port_is_the_most_common_one_ties_going_to_the_first_of_c_q_s(ports, fill):
    passengers, _ = titanic.read_passengers(SHIPPED)
    some = passengers.iloc[: len(ports)].assign(embarked=list(ports))
    assert titanic.fit_preprocessing(some).embarked_fill == fill


@pytest.mark.parametrize("column", ["age", "fare", "embarked"])
def test_a_column_missing_for_every_training_passenger_is_refused_not_filled_with_a_guess(column):
    passengers, _ = titanic.read_passengers(SHIPPED)
    with pytest.raises(titanic.DataError, match=f"Every training passenger's `{column}` is missing, so there is nothing to fill it with"):
        titanic.fit_preprocessing(passengers.assign(**{column: None}))  # embarked: it was filled with C, first of a 0-0-0 tie


def test_the_boat_column_leaks_as_documented():
    reference = pd.read_csv(SHIPPED, na_values=["?"], keep_default_na=False)
    with_boat = reference[reference["boat"].notna()]
    assert (len(with_boat), int((with_boat["survived"] == 0).sum())) == (486, 9)  # "all but 9 of the 486"
    # age_missing carries some of the outcome: "28% of the passengers without an age survived, 41% of those with one"
    rates = reference.groupby(reference["age"].isna())["survived"].mean()
    assert (round(rates[True], 2), round(rates[False], 2)) == (0.28, 0.41)
    assert titanic.SUMMARY.endswith("--data reads a titanic3 CSV or Kaggle's train.csv")


def test_changing_validation_and_test_rows_changes_nothing_learned_from_training(tmp_path):
    task = load(Config())
    held_out = set(task.val.source.tolist()) | set(task.test.source.tolist())
    original = tmp_path / "original.csv"
    shutil.copy(SHIPPED, original)
    frame = pd.read_csv(SHIPPED, dtype=str, keep_default_na=False)
    rows = [r - 1 for r in sorted(held_out)]
    frame.loc[rows, "age"] = "?"  # every held-out age unknown ...
    frame.loc[rows, "fare"] = "500"  # ... every held-out fare huge ...
    frame.loc[rows, "embarked"] = "Q"  # ... and every held-out passenger from Queenstown
    corrupted = tmp_path / "corrupted.csv"
    frame.to_csv(corrupted, index=False)

    a, b = load(Config(), data=original), load(Config(), data=corrupted)
    assert a.notes["preprocessing"] == b.notes["preprocessing"]
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    np.testing.assert_array_equal(a.val.source, b.val.source)
    assert not torch.equal(a.val.x, b.val.x) and not torch.equal(a.test.x, b.test.x)  # the change is real

    # and the converse: changing training rows does change what is learned
    frame = pd.read_csv(SHIPPED, dtype=str, keep_default_na=False)
    frame.loc[task.train.source - 1, "fare"] = "500"
    frame.to_csv(corrupted, index=False)
    assert load(Config(), data=corrupted).notes["preprocessing"] != a.notes["preprocessing"]


@pytest.mark.parametrize(
    "name, title",
    [
        pytest.param("Allen, Miss. Elisabeth Walton", "Miss", id="miss"),
        pytest.param("Allison, Master. Hudson Trevor", "Master", id="master"),
        pytest.param("Cumings, Mrs. John Bradley (Florence Briggs Thayer)", "Mrs", id="mrs"),
        pytest.param("Braund, Mr. Owen Harris", "Mr", id="mr"),
        pytest.param("Aubart, Mme. Leontine Pauline", "Mrs", id="mme-is-mrs"),
        pytest.param("Sagesser, Mlle. Emma", "Miss", id="mlle-is-miss"),
        pytest.param("Reynaldo, Ms. Encarnacion", "Miss", id="ms-is-miss"),
        pytest.param("Minahan, Dr. William Edward", "rare", id="dr"),
        pytest.param("Uruchurtu, Don. Manuel E", "rare", id="don"),
        pytest.param("Rothes, the Countess. of (Lucy Noel Martha Dyer-Edwards)", "rare", id="countess"),
        pytest.param("Nobody without a title", "rare", id="no-title"),
        pytest.param(None, "rare", id="missing"),
    ],
)
def test_title_of(name, title):
    assert title_of(name) == title


def test_the_leaking_columns_are_not_features():
    for leak in ("boat", "body", "home.dest", "ticket", "cabin"):
        assert not any(leak in feature for feature in FEATURES)
    assert "boat" in titanic.__doc__ and "body" in titanic.__doc__ and "home.dest" in titanic.__doc__


# --------------------------------------------------------------------------------------------------
# Real formats
# --------------------------------------------------------------------------------------------------


def test_kaggle_train_csv(titanic_fixture):
    passengers, file_format = read_passengers(titanic_fixture("kaggle_train"))
    assert file_format == "kaggle" and len(passengers) == 16
    assert passengers.loc[13, "name"] == "O'Dwyer, Miss. Ellen \"Nellie\""  # Kaggle's doubled quotes
    assert title_of(passengers.loc[13, "name"]) == "Miss"
    assert math.isnan(passengers.loc[6, "age"]) and passengers.loc[8, "age"] == 2.0
    assert passengers.loc[15, "embarked"] is None or pd.isna(passengers.loc[15, "embarked"])  # Icard: empty
    assert passengers["survived"].tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0]

    task = load(Config(), data=titanic_fixture("kaggle_train"))
    assert task.notes["format"] == "kaggle" and "kaggle" in task.provenance
    sources = np.concatenate([task.train.source, task.val.source, task.test.source])
    assert sorted(sources.tolist()) == list(range(1, 17))
    assert all(len(s) > 0 for s in (task.train, task.val, task.test))
    assert task.train.x.shape[1] == 15 and torch.isfinite(task.train.x).all()


def test_titanic3_sample_with_question_marks(titanic_fixture):
    passengers, file_format = read_passengers(titanic_fixture("titanic3_sample"))
    assert file_format == "titanic3" and len(passengers) == 14
    assert passengers["age"].isna().sum() == 1 and passengers["fare"].isna().sum() == 1
    assert passengers["embarked"].isna().sum() == 2
    task = load(Config(), data=titanic_fixture("titanic3_sample"))
    for split in (task.train, task.val, task.test):
        assert torch.isfinite(split.x).all()


def test_formats_are_told_apart_case_insensitively(tmp_path, titanic_fixture):
    lines = titanic_fixture("titanic3_sample").read_text().splitlines(keepends=True)
    upper = tmp_path / "upper.csv"
    upper.write_text(lines[0].upper() + "".join(lines[1:]))
    assert read_passengers(upper)[1] == "titanic3"
    lines = titanic_fixture("kaggle_train").read_text().splitlines(keepends=True)
    lower = tmp_path / "lower.csv"
    lower.write_text(lines[0].lower() + "".join(lines[1:]))
    passengers, file_format = read_passengers(lower)
    assert file_format == "kaggle" and len(passengers) == 16


def test_kaggle_test_csv_is_refused_for_having_no_labels(titanic_fixture):
    with pytest.raises(DataError, match=r"titanic_kaggle_test.csv looks like the Kaggle competition test.csv.*no labels"):
        load(Config(), data=titanic_fixture("kaggle_test"))


# --------------------------------------------------------------------------------------------------
# Broken files: each gives its message
# --------------------------------------------------------------------------------------------------

KAGGLE_ROW_3 = '3,1,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S'


def _replace_row_3(new: str):
    return lambda text: text.replace(KAGGLE_ROW_3, new)


def _rewrite_rows(transform):
    """Pass every row (the header too) through ``transform(row) -> row``, reading and writing real CSV."""

    def corrupt(text: str) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(transform(row) for row in csv.reader(io.StringIO(text)))
        return out.getvalue()

    return corrupt


BROKEN = [
    pytest.param(lambda text: "", ["broken.csv is empty"], id="empty-file"),
    pytest.param(lambda text: "\n\n", ["broken.csv is empty"], id="blank-lines-only"),
    pytest.param(lambda text: text.splitlines()[0] + "\n", ["broken.csv has a header but no rows"], id="header-only"),
    pytest.param(
        _rewrite_rows(lambda row: row[:1] + row[2:]),
        ["broken.csv looks like the Kaggle competition test.csv", "no labels"],
        id="kaggle-without-survived",
    ),
    pytest.param(
        _rewrite_rows(lambda row: row[:4]),
        ["broken.csv is missing the required column(s) sex, age, sibsp, parch, fare, embarked", "titanic3 columns"],
        id="missing-columns",
    ),
    pytest.param(
        _replace_row_3('3,2,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["broken.csv, row 3 (line 4): expected `Survived` to be 0 or 1, but got '2'"],
        id="survived-not-binary",
    ),
    pytest.param(
        _replace_row_3('3,yes,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `Survived` to be 0 or 1, but got 'yes'"],
        id="survived-a-word",
    ),
    pytest.param(
        _replace_row_3('3,,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): `Survived` is empty", "expected 0 or 1"],
        id="survived-empty",
    ),
    pytest.param(
        _replace_row_3('3,NaN,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): `Survived` is empty ('NaN')"],
        id="survived-nan",
    ),
    pytest.param(
        _replace_row_3('3,1,4,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `Pclass` to be 1, 2 or 3, but got '4'"],
        id="pclass-4",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,twenty,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `Age` to be a number (or empty when unknown), but got 'twenty'"],
        id="age-not-numeric",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,-26,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `Age` to be between 0 and 120, but got '-26'"],
        id="age-negative",
    ),
    pytest.param(  # below 0 by less than 1: the bound is 0, not -1
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,-0.5,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `Age` to be between 0 and 120, but got '-0.5'"],
        id="age-just-below-0",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,£7.925,,S'),
        ["row 3 (line 4): expected `Fare` to be a number (or empty when unknown), but got '£7.925'"],
        id="fare-not-numeric",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",F,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): unknown `Sex` value 'F'; expected male or female"],
        id="sex-unknown",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): `Sex` is empty; expected male or female"],
        id="sex-empty",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,Southampton'),
        ["row 3 (line 4): unknown `Embarked` value 'Southampton'; expected C, Q or S (or empty when unknown)"],
        id="embarked-unknown",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,26,0.5,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `SibSp` to be a whole number from 0 to 100, but got '0.5'"],
        id="sibsp-fraction",
    ),
    pytest.param(  # as an int64 it would wrap round to -9223372036854775808
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,26,1e19,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `SibSp` to be a whole number from 0 to 100, but got '1e19'"],
        id="sibsp-huge",
    ),
    pytest.param(  # finite, but its square overflows the standard deviation to inf
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,1e300,0,0,STON/O2. 3101282,7.925,,S'),
        ["row 3 (line 4): expected `Age` to be between 0 and 120, but got '1e300'"],
        id="age-huge",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,20000,,S'),
        ["row 3 (line 4): expected `Fare` to be between 0 and 10000, but got '20000'"],
        id="fare-huge",
    ),
    pytest.param(
        _replace_row_3('3,1,3,Heikkinen, Miss. Laina,female,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["broken.csv, line 4: expected 12 fields like the header, but got 13", "double quotes"],
        id="unquoted-comma",
    ),
    pytest.param(
        _replace_row_3('3,1,3,"Heikkinen, "Miss" Laina",female,26,0,0,STON/O2. 3101282,7.925,,S'),
        ["broken.csv, line 4: could not be read as CSV"],
        id="stray-quote",
    ),
    pytest.param(
        _rewrite_rows(lambda row: row[:6] + [row[5].lower()] + row[6:]),
        ["the column 'age' appears twice (as 'Age' too)"],
        id="duplicate-column",
    ),
    pytest.param(
        lambda text: text.replace(",", ";").replace("7.25", "7,25"),  # the decimal comma of such locales
        ["broken.csv, line 2: expected 1 fields like the header, but got 2.", "The header holds no comma but ';'"],
        id="semicolon-separated",
    ),
    pytest.param(
        lambda text: text.replace(",", "\t"),
        ["broken.csv is missing the required column(s)", "The header holds no comma but '\\t'"],
        id="tab-separated",
    ),
]


@pytest.mark.parametrize("corrupt, expected", BROKEN)
def test_broken_files_give_their_message(tmp_path, titanic_fixture, corrupt, expected):
    text = titanic_fixture("kaggle_train").read_text()
    broken = tmp_path / "broken.csv"
    broken.write_text(corrupt(text))
    with pytest.raises(DataError) as err:
        load(Config(), data=broken)
    for piece in expected:
        assert piece in str(err.value)


def test_unreadable_and_absent_files(tmp_path):
    binary = tmp_path / "passengers.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="passengers.csv could not be read as a CSV file: it is not UTF-8 text"):
        load(Config(), data=binary)
    with pytest.raises(DataError, match="Expected a CSV file at .*absent.csv, but there is no such file"):
        load(Config(), data=tmp_path / "absent.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match="Expected a CSV file at .*folder.csv, but there is a folder"):
        load(Config(), data=tmp_path / "folder.csv")


def test_columns_it_does_not_use_may_be_blank_or_repeated(tmp_path, titanic_fixture):
    # a spreadsheet's trailing empty columns, and two notes columns, are none of the loader's business
    text = titanic_fixture("kaggle_train").read_text()
    padded = tmp_path / "padded.csv"
    lines = text.splitlines()
    padded.write_text("\n".join([lines[0] + ",,,Note,note"] + [line + ",,,a,b" for line in lines[1:]]) + "\n")
    plain, extra = load(Config(), data=titanic_fixture("kaggle_train")), load(Config(), data=padded)
    for a, b in zip((plain.train, plain.val, plain.test), (extra.train, extra.val, extra.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_too_few_passengers_for_three_splits(tmp_path, titanic_fixture):
    lines = titanic_fixture("kaggle_train").read_text().splitlines(keepends=True)
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("".join(lines[:3]))
    with pytest.raises(DataError, match="tiny.csv has only 2 passengers: too few for a train/val/test split"):
        load(Config(), data=tiny)


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


def test_config_defaults_quick_and_summary():
    config = Config()
    assert (config.seeds, config.epochs, config.batch_size, config.lr, config.optimizer) == (10, 100, 64, 1e-3, "adam")
    assert (config.val_fraction, config.test_fraction, config.hidden, config.bias) == (0.2, 0.2, 128, True)
    names = {f.name for f in dataclasses.fields(Config)}
    assert set(titanic.QUICK) <= names and titanic.QUICK["epochs"] < config.epochs
    assert "\n" not in titanic.SUMMARY and titanic.SUMMARY


def test_model_settings_reach_the_body():
    task = load(Config(hidden=32, bias=False))
    assert task.body == MLPBody(in_features=15, hidden=32, bias=False)


@pytest.mark.parametrize(
    "overrides, message",
    [
        pytest.param({"val_fraction": 0.0}, "Expected `val_fraction` to be between 0 and 1 (exclusive), but got 0.0", id="val-0"),
        pytest.param({"test_fraction": 1.5}, "Expected `test_fraction` to be between 0 and 1", id="test-1.5"),
        pytest.param({"val_fraction": 0.5, "test_fraction": 0.5}, "to be below 1, but got 1.0", id="no-train"),
        pytest.param({"hidden": 0}, "Expected `hidden` to be a whole number of units, 1 or more, but got 0", id="hidden-0"),
    ],
)
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(ValueError) as err:
        load(Config(**overrides))
    assert message in str(err.value)


def test_a_passenger_file_uses_the_same_settings_as_the_shipped_one(titanic_fixture, settings_read):
    """So no Titanic setting is refused with --data, and none is listed as unused."""
    assert settings_read(titanic, Config(), None) == settings_read(titanic, Config(), titanic_fixture("kaggle_train"))
    assert not hasattr(titanic, "GENERATED_ONLY") and not hasattr(titanic, "FOLDER_ONLY")


def test_a_column_missing_for_every_training_passenger_names_the_file(tmp_path):
    passengers = pd.read_csv(SHIPPED)
    passengers.assign(age=None).to_csv(tmp_path / "no_ages.csv", index=False)
    with pytest.raises(titanic.DataError, match=rf"^{re.escape(str(tmp_path / 'no_ages.csv'))}: Every training passenger's `age` is missing"):
        titanic.load(titanic.Config(), data=tmp_path / "no_ages.csv")
