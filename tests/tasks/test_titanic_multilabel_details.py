"""Details of the Titanic and multi-label loaders that the main tests leave open (from a mutation audit)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from lossbench.tasks import DataError
from lossbench.tasks._common import split_indices
from lossbench.tasks.multilabel import Config as MLConfig
from lossbench.tasks.multilabel import compose, generate
from lossbench.tasks.multilabel import load as ml_load
from lossbench.tasks.titanic import read_passengers, title_of

# --------------------------------------------------------------------------------------------------
# Titanic: reading and checking a titanic3 file
# --------------------------------------------------------------------------------------------------

HEADER = "pclass,survived,name,sex,age,sibsp,parch,fare,embarked\n"
GOOD = '1,1,"Allen, Miss. Elisabeth Walton",female,29,0,0,211.3375,S\n'


def _titanic3(tmp_path, *rows: str):
    path = tmp_path / "passengers.csv"
    path.write_text(HEADER + "".join(rows))
    return path


def test_bounds_are_inclusive(tmp_path):
    # age may be 0..120 and fare 0..10000, both ends included
    passengers, _ = read_passengers(_titanic3(tmp_path, GOOD, '3,0,"A, Mr. B",male,120,0,0,10000,S\n'))
    assert passengers.loc[2, "age"] == 120.0 and passengers.loc[2, "fare"] == 10000.0


def test_age_just_over_the_bound_is_refused(tmp_path):
    # a number above at_most (120 for age) is refused, naming the column
    with pytest.raises(DataError, match=r"expected `age` to be between 0 and 120"):
        read_passengers(_titanic3(tmp_path, GOOD, '3,0,"A, Mr. B",male,120.5,0,0,7,S\n'))


def test_whole_number_columns_accept_up_to_100_inclusive(tmp_path):
    # sibsp and parch are whole numbers from 0 to 100, 100 included
    passengers, _ = read_passengers(_titanic3(tmp_path, GOOD, '3,0,"A, Mr. B",male,30,100,100,7,S\n'))
    assert passengers.loc[2, "sibsp"] == 100 and passengers.loc[2, "parch"] == 100
    with pytest.raises(DataError, match=r"expected `sibsp` to be a whole number from 0 to 100, but got '101'"):
        read_passengers(_titanic3(tmp_path, GOOD, '3,0,"A, Mr. B",male,30,101,0,7,S\n'))


def test_pclass_zero_is_refused(tmp_path):
    # pclass must be 1, 2 or 3: 0 is not a ticket class
    with pytest.raises(DataError, match=r"row 2.*`pclass`.*'0'"):
        read_passengers(_titanic3(tmp_path, GOOD, '0,0,"A, Mr. B",male,30,0,0,7,S\n'))


def test_lower_case_port_is_read_as_its_letter(tmp_path):
    # embarked is compared after upper-casing: "c" is Cherbourg
    passengers, _ = read_passengers(_titanic3(tmp_path, GOOD, '3,0,"A, Mr. B",male,30,0,0,7,c\n'))
    assert passengers.loc[2, "embarked"] == "C"


def test_the_error_names_the_first_bad_row(tmp_path):
    # of several bad cells in a column, the message names the first row
    rows = [GOOD, '3,0,"A, Mr. B",male,abc,0,0,7,S\n', GOOD, '3,0,"C, Mr. D",male,xyz,0,0,7,S\n']
    with pytest.raises(DataError, match=r"row 2\b.*'abc'") as err:
        read_passengers(_titanic3(tmp_path, *rows))
    assert "xyz" not in str(err.value)


def test_a_missing_name_is_none(tmp_path):
    # a name cell of "?" (titanic3's unknown marker) becomes None, as read_passengers documents
    passengers, _ = read_passengers(_titanic3(tmp_path, GOOD, '3,0,?,male,30,0,0,7,S\n'))
    assert passengers.loc[2, "name"] is None and passengers.loc[1, "name"] == "Allen, Miss. Elisabeth Walton"


@pytest.mark.parametrize("marker", ["", "?", "NA", "na", "NaN", "nan"])
def test_every_unknown_marker_reads_as_missing(tmp_path, marker):
    # empty (Kaggle), "?" (titanic3), "NA" (R's write.csv) and "nan" (pandas' to_csv of NaN) all mean unknown
    passengers, _ = read_passengers(_titanic3(tmp_path, GOOD, f'3,0,"A, Mr. B",male,{marker},0,0,{marker},{marker}\n'))
    assert np.isnan(passengers.at[2, "age"]) and np.isnan(passengers.at[2, "fare"])
    assert pd.isna(passengers.at[2, "embarked"])


def test_an_infinite_fare_is_not_a_number(tmp_path):
    # "inf" is refused as not a number (not as a number out of range)
    with pytest.raises(DataError, match=r"expected `fare` to be a number \(or empty when unknown\), but got 'inf'"):
        read_passengers(_titanic3(tmp_path, GOOD, '3,0,"A, Mr. B",male,30,0,0,inf,S\n'))


def test_the_title_ends_at_the_first_full_stop():
    # the title is the word between the comma and the FIRST full stop, even with initials after it
    assert title_of("Smith, Mr. J. Clinch") == "Mr"
    assert title_of("Brown, Mrs. J. J (Margaret Tobin)") == "Mrs"


# --------------------------------------------------------------------------------------------------
# Multi-label: composing canvases
# --------------------------------------------------------------------------------------------------


def test_overlapping_digits_erase_nothing():
    # where a jittered digit's blank margin lands on a neighbour, the brighter pixel wins
    scans = np.zeros((10, 8, 8))
    scans[:, 1:7, 1:7] = 1.0  # a 6 x 6 bright block with a one-pixel blank margin; interiors never overlap
    classes = np.arange(10)
    x, y, _ = compose(scans, classes, classes, n=300, rng=np.random.default_rng(0), grid=2, jitter=1)
    assert (x.sum(axis=(1, 2, 3)) == 36 * y.sum(axis=1)).all()


def test_the_two_jitters_are_independent():
    # dy and dx are drawn separately: a centre-cell digit takes all 9 shifts in -1..1 x -1..1
    scans = np.zeros((10, 8, 8))
    scans[:, 3, 3] = 1.0  # one bright pixel: where it lands gives the shift
    classes = np.arange(10)
    x, _, _ = compose(scans, classes, classes, n=300, rng=np.random.default_rng(0), grid=3, jitter=1,
                      max_digits=9)  # fmt: skip
    shifts = set()
    for canvas in x[:, 0]:
        for r, c in zip(*np.nonzero(canvas)):
            if r // 8 == 1 and c // 8 == 1:  # the centre cell: never clamped
                shifts.add((int(r % 8 - 3), int(c % 8 - 3)))
    assert shifts == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def test_split_canvases_come_from_the_documented_generators():
    # split s is composed from default_rng((split_seed, s)) over that split's scans
    config = MLConfig(n_train=6, n_val=5, n_test=4, split_seed=3)
    splits = generate(config)
    digits = load_digits()
    scans, classes = digits.images / 16.0, digits.target
    parts = split_indices(len(scans), config.val_fraction, config.test_fraction, config.split_seed, classes)
    for s, (ids, split) in enumerate(zip(parts, splits)):
        x, y, source = compose(scans[ids], classes[ids], ids, len(split), np.random.default_rng((3, s)), grid=2)
        np.testing.assert_array_equal(split.source, source)
        np.testing.assert_array_equal(split.x.numpy(), x)


# --------------------------------------------------------------------------------------------------
# Multi-label: PASCAL_2007 folders
# --------------------------------------------------------------------------------------------------


def test_test_rows_are_rounded_not_floored(pascal_folder, pascal_rows):
    # n_test = round(7 non-valid rows * 0.4) = round(2.8) = 3 (flooring would give 2)
    folder = pascal_folder()
    assert len(ml_load(MLConfig(image_size=16, test_fraction=0.4), data=folder).test) == 3


def test_splits_keep_the_files_row_order(pascal_folder, pascal_rows):
    # train and test rows are listed in file order, whatever the shuffle picked
    task = ml_load(MLConfig(image_size=16, test_fraction=0.4), data=pascal_folder())
    order = [fname for fname, *_ in pascal_rows]
    for split in (task.train, task.val, task.test):
        names = split.source.tolist()
        assert names == sorted(names, key=order.index)


def test_a_label_joined_by_a_bar_is_refused(pascal_folder, pascal_rows):
    # labels are space-separated; ",", ";" and "|" inside a label are refused
    rows = [(f, "chair|person" if f == "000021.jpg" else l, v, c, s) for f, l, v, c, s in pascal_rows]
    with pytest.raises(DataError, match=r"the label 'chair\|person' of 000021.jpg holds a separator"):
        ml_load(MLConfig(image_size=16), data=pascal_folder(rows=rows))
