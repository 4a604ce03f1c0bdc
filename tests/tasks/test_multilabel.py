"""Tests for the multi-label task: composed digit canvases (scans split first) and the PASCAL_2007 loader."""
from __future__ import annotations

import dataclasses

import shutil

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lossbench.models import CNNBody
from lossbench.tasks import DataError, multilabel
from lossbench.tasks.multilabel import Config, compose, generate, load, read_pascal

SMALL = dict(n_train=300, n_val=100, n_test=100)  # enough canvases to see every property, fast to make
DIGITS = load_digits()


def small(**overrides) -> Config:
    return Config(**{**SMALL, **overrides})


# --------------------------------------------------------------------------------------------------
# Generated canvases
# --------------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_value_range():
    config = small()
    task = load(config)
    assert task.name == "multilabel" and task.kind == "multilabel"
    assert task.label_names == tuple("0123456789") and task.n_outputs == 10
    assert task.body == CNNBody(in_channels=1, image_size=config.grid * 8, channels=config.channels, bias=True)
    assert "synthetic" in task.description
    side = config.grid * 8 * config.upscale
    for split, n in ((task.train, 300), (task.val, 100), (task.test, 100)):
        assert split.x.shape == (n, 1, side, side) and split.x.dtype == torch.float32
        assert split.y.shape == (n, 10) and split.y.dtype == torch.float32
        assert split.source.shape == (n, config.max_digits) and split.source.dtype == np.int64
        assert split.x.min() >= 0 and split.x.max() <= 1
        assert set(split.y.unique().tolist()) == {0.0, 1.0}
        counts = split.y.sum(1)
        assert counts.min() >= config.min_digits and counts.max() <= config.max_digits
        # every count from min to max occurs, and empty slots are exactly the missing digits
        assert set(counts.long().tolist()) == set(range(config.min_digits, config.max_digits + 1))
        np.testing.assert_array_equal((split.source >= 0).sum(1), counts.numpy())


def test_labels_name_exactly_the_classes_of_the_scans_used():
    task = load(small())
    for split in (task.train, task.val, task.test):
        for y, source in zip(split.y.numpy(), split.source):
            used = source[source >= 0]
            np.testing.assert_array_equal(DIGITS.target[used], np.flatnonzero(y))  # distinct, increasing


@pytest.mark.parametrize("upscale", [pytest.param(1, id="8px-cells"), pytest.param(2, id="upscaled-16px-cells")])
def test_without_jitter_each_cell_holds_one_scan_exactly(upscale):
    config = small(jitter=0, upscale=upscale, grid=3)
    train, _, _ = generate(config)
    side = 8 * upscale
    scans = np.kron(DIGITS.images / 16.0, np.ones((upscale, upscale)))  # (1797, side, side)
    for x, source in zip(train.x[:50].numpy(), train.source[:50]):
        cells = [x[0, r * side : (r + 1) * side, c * side : (c + 1) * side] for r in range(3) for c in range(3)]
        filled = [cell for cell in cells if cell.any()]
        used = source[source >= 0]
        assert len(filled) == len(used)  # (every scan has some ink)
        for scan_id in used:  # each scan sits, pixel for pixel, in one cell
            assert sum(np.allclose(cell, scans[scan_id]) for cell in filled) >= 1


def test_jitter_moves_digits_by_at_most_jitter_pixels():
    config = small(jitter=2, min_digits=1, max_digits=1, grid=3)  # a 24 x 24 canvas, cells at 0, 8, 16
    train, _, _ = generate(config)
    moved, shifts = 0, []
    for x, source in zip(train.x[:60].numpy(), train.source[:60]):
        scan = DIGITS.images[source[0]] / 16.0
        found = [
            (top, left)
            for top in range(24 - 8 + 1)
            for left in range(24 - 8 + 1)
            if np.allclose(x[0, top : top + 8, left : left + 8], scan) and np.isclose(x.sum(), scan.sum())
        ]
        assert found, "the scan is pasted whole, inside the canvas"
        top, left = found[0]
        nearest_corner = min(abs(top - r) + abs(left - c) for r in (0, 8, 16) for c in (0, 8, 16))
        assert max(min(abs(top - r) for r in (0, 8, 16)), min(abs(left - c) for c in (0, 8, 16))) <= 2
        moved += nearest_corner > 0
        shifts.append((min((top - r for r in (0, 8, 16)), key=abs), min((left - c for c in (0, 8, 16)), key=abs)))
    assert moved > 0
    rows, cols = zip(*shifts)  # up and down, left and right
    assert min(rows) < 0 < max(rows) and min(cols) < 0 < max(cols), shifts


def test_the_three_splits_are_different_canvases():
    train, val, test = generate(small())
    assert not torch.equal(val.x, test.x) and not torch.equal(val.y, test.y)
    assert not torch.equal(train.x[: len(val)], val.x)


def test_same_split_seed_gives_identical_tensors():
    a, b = generate(small()), generate(small())
    for sa, sb in zip(a, b):
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
        np.testing.assert_array_equal(sa.source, sb.source)
    c = generate(small(split_seed=1))
    assert not torch.equal(a[0].x, c[0].x)
    d = generate(small(seeds=2, epochs=1, lr=1.0))  # training settings do not touch the data
    assert torch.equal(a[2].x, d[2].x)


def test_more_training_canvases_leave_validation_and_test_as_they_were():
    a = generate(small())
    b = generate(small(n_train=500))
    assert torch.equal(a[1].x, b[1].x) and torch.equal(a[2].x, b[2].x)
    assert torch.equal(a[0].x, b[0].x[:300])  # the first 300 training canvases are the same too


def test_no_scanned_digit_is_in_two_splits():
    train, val, test = generate(Config(n_train=2000, n_val=800, n_test=800))
    scans = [set(s.source[s.source >= 0].tolist()) for s in (train, val, test)]
    assert not (scans[0] & scans[1]) and not (scans[0] & scans[2]) and not (scans[1] & scans[2])
    for used in scans:  # and every split has scans of every class
        assert set(DIGITS.target[sorted(used)].tolist()) == set(range(10))


def test_the_scan_split_is_stratified_by_class():
    # with many canvases every scan of a split gets used, so the used scans are the split itself
    train, val, test = generate(Config(n_train=6000, n_val=2000, n_test=2000))
    sizes = [len(np.unique(s.source[s.source >= 0])) for s in (train, val, test)]
    assert sum(sizes) == 1797 and abs(sizes[1] - 0.2 * 1797) <= 10 and abs(sizes[2] - 0.2 * 1797) <= 10
    for split in (val, test):
        classes = DIGITS.target[np.unique(split.source[split.source >= 0])]
        per_class = np.bincount(classes, minlength=10)
        expected = np.round(np.bincount(DIGITS.target, minlength=10) * 0.2)
        np.testing.assert_array_equal(per_class, expected)


def test_compose_uses_only_the_scans_it_is_given():
    scans, classes = DIGITS.images[:50] / 16.0, DIGITS.target[:50]
    x, y, source = compose(scans, classes, np.arange(1000, 1050), n=40, rng=np.random.default_rng(0), grid=3)
    for labels, row in zip(y, source):
        used = row[row >= 0]
        assert used.min() >= 1000 and used.max() < 1050
        np.testing.assert_array_equal(classes[used - 1000], np.flatnonzero(labels))


@pytest.mark.parametrize(
    "overrides, message",
    [
        pytest.param({"max_digits": 5, "grid": 2}, "Expected `max_digits` to be from min_digits (1) to 4", id="more-digits-than-cells"),
        pytest.param({"max_digits": 11, "grid": 4}, "to 10 (distinct digit classes", id="more-than-10-classes"),
        pytest.param({"min_digits": 3, "max_digits": 2}, "Expected `max_digits` to be from min_digits (3)", id="min-above-max"),
        pytest.param({"min_digits": 5, "grid": 2}, "Expected `min_digits` to be at most 4 (distinct digit classes, one per cell of a 2 x 2 "
                     "grid), but got 5.", id="min-above-cells"),
        pytest.param({"min_digits": 0}, "Expected `min_digits` to be a whole number, 1 or more, but got 0", id="no-digits"),
        pytest.param({"jitter": 8}, "Expected `jitter` to be a whole number from 0 to 7", id="jitter-a-cell"),
        pytest.param({"n_val": 0}, "Expected `n_val` to be a whole number, 1 or more, but got 0", id="no-val-canvases"),
        pytest.param({"grid": 1, "max_digits": 1, "channels": (8, 16, 32, 64)}, "Expected the image side (grid x 8 x upscale = 1 x 8 x 1) to be at "
                     "least 2 ** len(channels) = 16", id="too-small-for-cnn"),
        *[pytest.param({name: 0}, f"Expected `{name}` to be a whole number, 1 or more, but got 0.", id=f"{name}-0") for name in ("grid", "upscale")],
        pytest.param({"channels": ()}, "Expected `channels` to be a non-empty tuple", id="no-channels"),
        pytest.param({"val_fraction": 0.6, "test_fraction": 0.5}, "to be below 1", id="no-training-scans"),
        pytest.param({"val_fraction": 0.002}, "the validation split of the scans to hold every digit, but its 0 of the 1797 scans",
                     id="no-validation-scans"),
        pytest.param({"test_fraction": 0.001}, "include no 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; raise test_fraction", id="too-few-test-scans"),
        pytest.param({"val_fraction": 0.5, "test_fraction": 0.499}, "its 3 of the 1797 scans", id="three-training-scans"),
    ],
)
def test_bad_generator_settings_are_refused(overrides, message):
    with pytest.raises(ValueError) as err:
        load(small(**overrides))
    assert message in str(err.value)


def test_config_defaults_quick_and_summary():
    config = Config()
    assert config.seeds == 5 and config.optimizer == "adam"
    names = {f.name for f in dataclasses.fields(Config)}
    assert set(multilabel.QUICK) <= names
    quick = load(dataclasses.replace(config, **multilabel.QUICK))
    assert len(quick.train) == multilabel.QUICK["n_train"] and multilabel.QUICK["epochs"] <= 2
    assert "\n" not in multilabel.SUMMARY and multilabel.SUMMARY


# --------------------------------------------------------------------------------------------------
# The PASCAL_2007 layout
# --------------------------------------------------------------------------------------------------



VOCABULARY = ("bicycle", "bottle", "car", "cat", "chair", "dog", "horse", "person")


def test_pascal_folder_loads(pascal_folder, pascal_rows):
    folder = pascal_folder()
    config = Config(image_size=16)
    task = load(config, data=folder)
    assert task.kind == "multilabel" and task.label_names == VOCABULARY  # from the data, sorted
    assert task.body == CNNBody(in_channels=3, image_size=16, channels=config.channels, bias=True)
    rows = {fname: (labels.split(), valid == "True", colour) for fname, labels, valid, colour, _ in pascal_rows}
    assert sorted(task.val.source.tolist()) == sorted(f for f, (_, valid, _) in rows.items() if valid)
    others = sorted(f for f, (_, valid, _) in rows.items() if not valid)
    assert len(task.test) == round(len(others) * config.test_fraction) == 1
    assert sorted(task.train.source.tolist() + task.test.source.tolist()) == others
    for split in (task.train, task.val, task.test):
        assert split.x.shape == (len(split), 3, 16, 16) and split.x.dtype == torch.float32
        assert split.y.shape == (len(split), len(VOCABULARY)) and split.y.dtype == torch.float32
        for x, y, fname in zip(split.x, split.y, split.source):
            labels, _, colour = rows[fname]
            assert [VOCABULARY[j] for j in np.flatnonzero(y.numpy())] == sorted(labels)
            # a solid-colour JPEG, squashed to 16 x 16, keeps its colour (JPEG is lossy: within 4%)
            np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), np.array(colour) / 255, atol=0.04)


def test_lossless_pascal_images_keep_their_exact_grey_levels(pascal_folder, pascal_rows):
    rows = [(fname.replace(".jpg", ".png"), *rest) for fname, *rest in pascal_rows]  # PNG: no JPEG rounding
    task = load(Config(image_size=16), data=pascal_folder(rows=rows))
    colour = {fname: c for fname, _, _, c, _ in rows}
    for split in (task.train, task.val, task.test):
        for x, fname in zip(split.x, split.source):
            np.testing.assert_allclose(x[:, 0, 0].numpy(), np.array(colour[fname]) / 255, rtol=0, atol=1e-7)
            assert torch.equal(x, x[:, :1, :1].expand_as(x))  # a solid image stays solid when resized


def test_pascal_split_is_seeded(pascal_folder):
    folder = pascal_folder()
    a, b = load(Config(image_size=8), data=folder), load(Config(image_size=8), data=folder)
    assert torch.equal(a.train.x, b.train.x) and (a.test.source == b.test.source).all()
    picks = {load(Config(image_size=8, split_seed=s), data=folder).test.source[0] for s in range(8)}
    assert len(picks) > 1  # the test rows come from the split seed


@pytest.mark.parametrize("true, false", [("1", "0"), ("true", "false"), ("TRUE", "FALSE")])
def test_is_valid_spellings(pascal_folder, true, false):
    text = "fname,labels,is_valid\n000005.jpg,chair,{t}\n000007.jpg,car,{f}\n000009.jpg,horse person,{f}\n"
    folder = pascal_folder(csv_text=text.format(t=true, f=false))
    images, labels, is_valid, fnames = read_pascal(folder, image_size=8)
    assert is_valid.tolist() == [True, False, False] and labels[2] == ["horse", "person"]
    assert images.shape == (3, 3, 8, 8) and images.dtype == np.uint8
    assert fnames.tolist() == ["000005.jpg", "000007.jpg", "000009.jpg"]


HEADER = "fname,labels,is_valid\n"
GOOD = "000005.jpg,chair,True\n000007.jpg,car,True\n000009.jpg,horse person,True\n000012.jpg,car,False\n"


def _remove_image(folder):
    (folder / "train" / "000012.jpg").unlink()


def _remove_train_folder(folder):
    shutil.rmtree(folder / "train")


def _train_folder_a_file(folder):
    shutil.rmtree(folder / "train")
    (folder / "train").write_text("not a folder")


def _damage_image(folder):
    (folder / "train" / "000007.jpg").write_text("not a picture")


def _truncate_image(folder):
    data = (folder / "train" / "000009.jpg").read_bytes()
    (folder / "train" / "000009.jpg").write_bytes(data[:40])


BROKEN = [
    pytest.param(None, _remove_image, ["train.csv, row 4 (line 5): expected an image file at", "000012.jpg, but there is no such file"], id="missing-image"),
    pytest.param(None, _remove_train_folder, ["train to be the folder of the images that train.csv names", "but there is none"], id="no-train-folder"),
    pytest.param(None, _train_folder_a_file, ["train to be the folder of the images that train.csv names", "but it is a file"], id="train-is-a-file"),
    pytest.param(None, _damage_image, ["train.csv, row 2 (line 3): the image", "000007.jpg could not be read"], id="not-an-image"),
    pytest.param(None, _truncate_image, ["train.csv, row 3 (line 4): the image", "000009.jpg could not be read"], id="truncated-jpeg"),
    pytest.param(HEADER + GOOD.replace("car,True", ",True"), None, ["train.csv, row 2 (line 3): `labels` is empty for 000007.jpg"], id="empty-labels"),
    pytest.param(HEADER + GOOD.replace("car,True", "  ,True"), None, ["row 2 (line 3): `labels` is empty"], id="blank-labels"),
    pytest.param(HEADER + GOOD.replace("car,True", '"car,person",True'), None,
                 ["row 2 (line 3): the label 'car,person' of 000007.jpg holds a separator; expected label names separated by spaces, e.g. 'car person'"],
                 id="comma-separated-labels"),
    pytest.param("fname,labels\n000005.jpg,chair\n", None, ["train.csv is missing the required column(s) is_valid"], id="missing-column"),
    pytest.param("", None, ["train.csv is empty"], id="empty-file"),
    pytest.param(HEADER, None, ["train.csv has a header but no rows"], id="header-only"),
    pytest.param(HEADER + GOOD.replace("car,True", "car,maybe"), None, ["row 2 (line 3): expected `is_valid` to be True, False, 1 or 0, but got 'maybe'"], id="bad-is-valid"),
    pytest.param(HEADER + GOOD + "000005.jpg,dog,False\n", None, ["row 5 (line 6): the image '000005.jpg' is listed twice (first in row 1)"], id="repeated-image"),
    *[pytest.param(HEADER + GOOD.replace("000007.jpg", fname), None, [f"row 2 (line 3): `fname` {fname!r} leads out of train/"], id=kind)
      for kind, fname in [("fname-up-and-out", "../000007.jpg"), ("fname-absolute", "/etc/hostname")]],
    pytest.param(HEADER + GOOD.replace("True", "False"), None, ["the is_valid (validation) split is empty"], id="no-validation-rows"),
    pytest.param(HEADER + GOOD.replace("False", "True"), None, ["the test split is empty"], id="nothing-to-train-on"),
    pytest.param(HEADER + GOOD.replace("000007.jpg,car,True", "000007.jpg,car"), None, ["train.csv, line 3: expected 3 fields like the header, but got 2"], id="short-row"),
    pytest.param(HEADER + "000005.jpg,car,True\n000007.jpg,car,True\n000009.jpg,car,False\n000012.jpg,car,False\n", None,
                 ["every row has the one label 'car'; expected at least two distinct labels"], id="one-label"),
]


@pytest.mark.parametrize("csv_text, damage, expected", BROKEN)
def test_broken_pascal_folders_give_their_message(pascal_folder, pascal_rows, csv_text, damage, expected):
    folder = pascal_folder(rows=pascal_rows[:4], csv_text=csv_text)
    if damage is not None:
        damage(folder)
    with pytest.raises(DataError) as err:
        load(Config(image_size=8), data=folder)
    for piece in expected:
        assert piece in str(err.value)
    assert str(folder) in str(err.value)  # the file is named with its folder: a class's folders differ


def test_pascal_folder_that_is_not_there(tmp_path):
    with pytest.raises(DataError, match="Expected `data` to be a folder holding train.csv and train/"):
        load(Config(), data=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Expected a CSV file at .*train.csv, but there is no such file"):
        load(Config(), data=tmp_path / "empty")


def test_pascal_image_size_must_fit_the_cnn(pascal_folder):
    with pytest.raises(ValueError, match="at least 2 \\*\\* len\\(channels\\) = 8"):
        load(Config(image_size=4), data=pascal_folder())


def test_a_16_bit_grey_image_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    from PIL import Image

    from lossbench.tasks._common import read_image

    ramp = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # 16-bit greyscale PNG
    Image.fromarray((ramp / 257).round().astype(np.uint8)).save(tmp_path / "plain.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    deep, plain = read_image(tmp_path / "deep.png", None, "RGB", "row 1"), read_image(tmp_path / "plain.png", None, "RGB", "row 1")
    np.testing.assert_array_equal(deep, plain)  # Pillow's own convert("RGB") would give 255 almost everywhere
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(DataError, match="row 2: the image .*float.tiff holds floating-point pixels"):
        read_image(tmp_path / "float.tiff", 8, "L", "row 2")


def test_an_image_too_large_to_decode_safely_names_its_row(tmp_path, monkeypatch):
    from PIL import Image

    from lossbench.tasks._common import read_image

    Image.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels is then more than twice the limit
    with pytest.raises(DataError, match="row 3: the image .*big.png could not be read .*decompression bomb"):
        read_image(tmp_path / "big.png", 8, "L", "row 3")


def test_quick_shrinks_the_generated_canvases_but_reads_a_data_folder_whole(pascal_folder, pascal_rows):
    """What --quick's help says: fewer generated examples, but every row of a --data folder."""
    import lossbench
    from lossbench.tasks.multilabel import GENERATED_ONLY, QUICK

    result = lossbench.compare("multilabel", quick=True, data=pascal_folder(), device="cpu", config={"image_size": 16}, progress=False)
    assert sum(result.config["sizes"].values()) == len(pascal_rows)
    assert result.config["task_config_unused"] == list(GENERATED_ONLY)  # n_train, ... of --quick included: config.json says so
    quick = lossbench.compare("multilabel", quick=True, device="cpu", seeds=1, epochs=1, progress=False).config["sizes"]
    assert quick["train"] == QUICK["n_train"] < Config().n_train


def test_the_settings_said_to_apply_to_one_kind_of_data_are_the_ones_it_reads(pascal_folder, settings_read):
    """GENERATED_ONLY and FOLDER_ONLY, which decide what compare() refuses and config.json lists as unused, hold
    exactly the settings read by one loader and not the other."""
    import lossbench.tasks.multilabel as module

    generated = settings_read(module, small(), None)
    folder = settings_read(module, Config(image_size=16), pascal_folder())
    assert set(module.GENERATED_ONLY) == generated - folder
    assert set(module.FOLDER_ONLY) == folder - generated


def test_a_folder_splits_by_test_fraction_alone(pascal_folder):
    """Its validation rows are the is_valid ones: val_fraction plays no part, so it cannot make test_fraction too big."""
    task = load(Config(image_size=8, test_fraction=0.9), data=pascal_folder())
    assert len(task.test) > len(task.train) >= 1
    with pytest.raises(ValueError, match=r"^Expected `test_fraction` to be between 0 and 1 \(exclusive\), but got 1\.0\.$"):
        load(Config(image_size=8, test_fraction=1.0), data=pascal_folder(name="again"))
    with pytest.raises(ValueError, match=r"val_fraction \+ test_fraction"):
        load(small(test_fraction=0.9))  # generated canvases split their scans by both


def test_photos_that_would_not_fit_in_memory_are_refused_before_any_is_read(pascal_folder):
    # np.zeros of (N, 3, 100000, 100000) failed as an "unexpected" MemoryError, or swapped for a middling size
    folder = pascal_folder()
    with pytest.raises(ValueError, match=r"^Expected the photos of .*train\.csv to fit in memory, but .* of 100000 x 100000 "
                                         r"pixels need about .* GiB to make, and this machine has .* GiB; lower image_size\.$"):
        load(Config(image_size=100_000), data=folder)


def test_a_csv_path_that_is_a_device_is_not_called_missing(tmp_path):
    from lossbench.tasks._common import read_csv

    with pytest.raises(DataError, match=r"^Expected a CSV file at /dev/null, but there is a device or a pipe, not a regular file\.$"):
        read_csv("/dev/null")
