"""Details of the multi-label loader that the main tests leave open (from a mutation audit)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from lossbench.tasks import DataError
from lossbench.tasks._common import split_indices
from lossbench.tasks.multilabel import Config as MLConfig
from lossbench.tasks.multilabel import compose, generate
from lossbench.tasks.multilabel import load as ml_load

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
