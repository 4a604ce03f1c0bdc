"""Details of the Titanic loader that the main tests leave open (from a mutation audit)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lossbench.tasks import DataError
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
# Titanic: a passenger listed twice would sit in two splits
# --------------------------------------------------------------------------------------------------

KAGGLE_HEADER = "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked\r\n"
KAGGLE_ROWS = [
    '1,0,3,"Braund, Mr. Owen Harris",male,22,1,0,A/5 21171,7.25,,S\r\n',
    '2,1,1,"Cumings, Mrs. John Bradley (Florence Briggs Thayer)",female,38,1,0,PC 17599,71.2833,C85,C\r\n',
    '3,1,3,"Heikkinen, Miss. Laina",female,26,0,0,STON/O2. 3101282,7.925,,S\r\n',
]


def test_a_repeated_passenger_id_is_refused_naming_both_rows(tmp_path):
    # two copies of Kaggle's train.csv pasted together: the same passenger would train and test
    path = tmp_path / "train.csv"
    path.write_bytes(("\ufeff" + KAGGLE_HEADER + "".join(KAGGLE_ROWS) + KAGGLE_ROWS[1]).encode())
    with pytest.raises(DataError, match=r"train.csv, row 4 \(line 5\): `PassengerId` 2 is listed twice \(first in row 2\)"):
        read_passengers(path)


def test_distinct_passenger_ids_with_equal_details_are_kept(tmp_path):
    # Kaggle's ids decide, not the details: two rows alike but for the id are two passengers
    path = tmp_path / "train.csv"
    path.write_text(KAGGLE_HEADER + "".join(KAGGLE_ROWS) + "4" + KAGGLE_ROWS[2][1:])
    passengers, file_format = read_passengers(path)
    assert file_format == "kaggle" and len(passengers) == 4


def test_a_titanic3_row_repeated_in_every_column_is_refused(tmp_path):
    # titanic3 has no id column; a row equal to an earlier one in every column is the same passenger twice
    other = '3,0,"A, Mr. B",male,30,0,0,7,S\n'
    with pytest.raises(DataError, match=r"passengers.csv, row 3 \(line 4\): the passenger of row 1 is listed again"):
        read_passengers(_titanic3(tmp_path, GOOD, other, GOOD))
