"""The helpers the task loaders share: the strict CSV reader, the splits and the image reader."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lossbench.tasks import DataError
from lossbench.tasks._common import read_csv, read_image, split_indices


def test_a_csv_s_byte_order_mark_spaces_and_empty_rows_are_not_data(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes("\ufeffname,age\n Allen , 29\n,\n\nBob,3\n".encode("utf-8"))  # as Excel writes it
    table = read_csv(path)
    assert list(table.frame.columns) == ["name", "age"]
    assert table.frame.loc[1].tolist() == ["Allen", "29"] and table.frame.loc[2].tolist() == ["Bob", "3"]
    assert table.lines == {1: 2, 2: 5}


def test_a_row_s_line_is_where_it_starts_when_a_quoted_cell_spans_lines(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text('name,age\nBob,3\n"Allen,\nMiss"\n')  # the short row starts on line 3 and ends on line 4
    with pytest.raises(DataError, match=r"line 3\b"):
        read_csv(path)
    path.write_text('name,age\n"Allen,\nMiss",29\nBob,3\n')
    assert read_csv(path).lines == {1: 2, 2: 4}


def test_split_indices_come_back_sorted_and_cover_every_item_once():
    strata = np.array([1, 0] * 20)
    train, val, test = split_indices(40, 0.25, 0.25, seed=3, strata=strata)
    for part in (train, val, test):
        assert (np.diff(part) > 0).all()
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(40))
    assert [int(strata[part].sum()) for part in (train, val, test)] == [10, 5, 5]  # stratified: half of each is 1


def test_an_image_comes_back_as_channels_rows_columns(tmp_path):
    pixels = np.full((30, 40, 3), 200, dtype=np.uint8)
    pixels[:, :20] = 0  # the left half black
    Image.fromarray(pixels).save(tmp_path / "half.png")
    image = read_image(tmp_path / "half.png", None, "RGB", "row 1")
    assert image.shape == (3, 30, 40)
    assert (image[:, :, :20] == 0).all() and (image[:, :, 20:] == 200).all()


def test_a_32_bit_grey_image_is_scaled_like_a_16_bit_one(tmp_path):
    """Pillow opens some 16-bit scans as mode "I" (32-bit): scaled 0..65535 to 0..255 and rounded to the nearest
    level, not clipped to white (129 / 257 = 0.502 and 25829 / 257 = 100.502 round up)."""
    grey = np.array([[0, 25700], [65535, 257], [129, 25829], [128, 25828]], dtype=np.int32)
    Image.fromarray(grey, mode="I").save(tmp_path / "scan.tif")
    assert Image.open(tmp_path / "scan.tif").mode == "I"
    assert read_image(tmp_path / "scan.tif", None, "L", "row 1")[0].tolist() == [[0, 100], [255, 1], [1, 101], [0, 100]]
