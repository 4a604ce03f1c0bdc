"""Tests for the mammography task: the synthetic generator, the labels, the splits and the mini-MIAS loader."""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lossbench.models import CNNBody
from lossbench.tasks import DataError
from lossbench.tasks import mammography as mammo
from lossbench.tasks._mammo_mias import load_mias, read_info, read_pgm
from lossbench.tasks._mammo_synth import CALCIFICATION_GAIN, MASK_LEVEL, generate_patches, power_law_noise

SMALL = mammo.Config(n_train=300, n_val=100, n_test=100)


def _source_sets(task):
    return [set(split.source.tolist()) for split in (task.train, task.val, task.test)]


# --------------------------------------------------------------------------------------------------
# The synthetic task
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["patch", "grid"])
def test_default_task_shapes_dtypes_and_body(target):
    task = mammo.load(mammo.Config(target=target))
    k = 1 if target == "patch" else 16
    assert task.name == "mammography"
    assert task.kind == ("binary" if target == "patch" else "grid")
    assert task.body == CNNBody(in_channels=1, image_size=32, channels=(8, 16, 32), grid=None if k == 1 else 4)
    # the 2,400 / 800 / 800 split, stratified: sizes within one patch of the request
    for split, size in ((task.train, 2400), (task.val, 800), (task.test, 800)):
        assert abs(len(split) - size) <= 1
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.float32
        assert split.x.shape == (len(split), 1, 32, 32) and split.y.shape == (len(split), k)
        assert set(split.y.unique().tolist()) <= {0.0, 1.0}
        assert torch.isfinite(split.x).all()
    assert task.n_outputs == k
    if target == "patch":
        assert task.label_names == ("abnormal",)
    else:
        assert task.label_names[:5] == ("area r0c0", "area r0c1", "area r0c2", "area r0c3", "area r1c0")
        assert task.label_names[-1] == "area r3c3" and len(task.label_names) == 16
    # it says plainly that it is synthetic
    assert "SYNTHETIC" in task.description and "SYNTHETIC" in task.provenance and task.notes["synthetic"]


def test_deterministic_in_its_seeds():
    a, b = mammo.load(SMALL), mammo.load(SMALL)
    for sa, sb in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y) and np.array_equal(sa.source, sb.source)
    other_data = mammo.load(replace(SMALL, data_seed=1))
    assert not torch.equal(a.train.x, other_data.train.x)
    # the split seed moves patches between splits but not what a patch is
    other_split = mammo.load(replace(SMALL, split_seed=1))
    assert _source_sets(a) != _source_sets(other_split)
    assert set.union(*_source_sets(a)) == set.union(*_source_sets(other_split)) == set(range(500))


def test_splits_are_disjoint_and_cover_every_patch():
    train, val, test = _source_sets(mammo.load(SMALL))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(500))


@pytest.mark.parametrize("prevalence", [0.17, 0.3, 0.05])
def test_prevalence_matches_the_setting_in_every_split(prevalence):
    task = mammo.load(mammo.Config(prevalence=prevalence, n_train=1200, n_val=400, n_test=400))
    for split in (task.train, task.val, task.test):
        assert abs(split.y.mean().item() - prevalence) < 0.005  # stratified: each split keeps the balance


def test_no_lesions_without_prevalence():
    task = mammo.load(replace(SMALL, prevalence=0.0, target="grid"))
    assert all(split.y.sum() == 0 for split in (task.train, task.val, task.test))


def test_grid_labels_agree_with_patch_labels():
    patch = mammo.load(replace(SMALL, target="patch", prevalence=0.4))
    grid = mammo.load(replace(SMALL, target="grid", prevalence=0.4))
    for p, g in zip((patch.train, patch.val, patch.test), (grid.train, grid.val, grid.test)):
        assert torch.equal(p.x, g.x)  # same patches, only the target differs
        assert torch.equal(p.y[:, 0].bool(), g.y.bool().any(dim=1))  # abnormal iff some area is
    abnormal = grid.train.y[grid.train.y.any(dim=1)]
    assert abnormal.sum(dim=1).min() >= 1
    assert abnormal.sum(dim=1).max() < 16  # a lesion covers a few areas, never the whole patch


def test_grid_labels_mark_the_areas_the_lesion_covers():
    config = replace(SMALL, target="grid", prevalence=0.5)
    n = config.n_train + config.n_val + config.n_test
    patches = generate_patches(n, 32, prevalence=0.5, contrast=config.contrast, seed=config.data_seed)
    areas = mammo.area_labels(patches.masks, patches.centres, grid=4, min_pixels=config.min_area_pixels)
    for i in np.flatnonzero(patches.lesion != "none"):
        r, c = np.argwhere(patches.centres[i])[0]
        assert areas[i].reshape(4, 4)[r // 8, c // 8]  # the area holding the centre (a lesion pixel)
        counts = patches.masks[i].reshape(4, 8, 4, 8).sum(axis=(1, 3)).ravel()
        assert np.all(areas[i][counts >= 4])  # every area with 4+ lesion pixels
        assert not np.any(areas[i][counts == 0])  # never an area the lesion misses


@pytest.mark.parametrize(
    "cells, centre, expected",
    [
        pytest.param([(1, 1), (1, 2), (2, 1), (2, 2)], (1, 1), [1, 0, 0, 0], id="inside-one-area"),
        pytest.param([(3, 2), (3, 3), (4, 2), (4, 3), (5, 2), (5, 3)], (4, 2), [0, 0, 1, 0], id="small-near-centre"),
        pytest.param([(2, r) for r in range(8)] + [(3, r) for r in range(8)], (2, 5), [1, 1, 0, 0], id="straddles"),
        pytest.param([(6, 6), (6, 7), (7, 7)], None, [0, 0, 0, 0], id="too-few-pixels-no-centre"),
        pytest.param([(6, 6), (6, 7), (7, 7)], (7, 7), [0, 0, 0, 1], id="too-few-pixels-with-centre"),
    ],
)
def test_area_labels_by_hand(cells, centre, expected):
    masks = np.zeros((1, 8, 8), dtype=bool)
    centres = np.zeros((1, 8, 8), dtype=bool)
    for r, c in cells:
        masks[0, r, c] = True
    if centre is not None:
        centres[0, centre[0], centre[1]] = True
    assert mammo.area_labels(masks, centres, grid=2, min_pixels=4).astype(int).tolist() == [expected]


def test_inputs_standardised_with_training_statistics_only():
    task = mammo.load(SMALL)
    assert abs(task.train.x.mean().item()) < 1e-4 and abs(task.train.x.std().item() - 1) < 1e-3
    raw = generate_patches(500, 32, prevalence=SMALL.prevalence, contrast=SMALL.contrast, seed=SMALL.data_seed)
    train_raw = raw.images[np.sort(task.train.source)]
    assert task.notes["pixel_mean"] == pytest.approx(float(train_raw.mean(dtype=np.float64)))
    assert task.notes["pixel_std"] == pytest.approx(float(train_raw.std(dtype=np.float64)))
    expected = (raw.images[task.test.source] - task.notes["pixel_mean"]) / task.notes["pixel_std"]
    torch.testing.assert_close(task.test.x[:, 0], torch.from_numpy(expected.astype(np.float32)))


def test_larger_patches_and_other_grids_work():
    task = mammo.load(mammo.Config(patch_size=64, target="grid", grid=2, n_train=40, n_val=20, n_test=20))
    assert task.train.x.shape == (len(task.train), 1, 64, 64) and task.train.y.shape == (len(task.train), 4)
    assert task.body == CNNBody(in_channels=1, image_size=64, channels=(8, 16, 32), grid=2)


def test_quick_config_is_small():
    task = mammo.load(replace(mammo.Config(), **mammo.QUICK))
    assert len(task.train) + len(task.val) + len(task.test) == 512
    assert set(mammo.QUICK) <= {f.name for f in fields(mammo.Config)}  # overrides name real settings


def test_notes_are_plain_python():
    import json

    json.dumps(mammo.load(SMALL).notes)  # they are saved in config.json


# --------------------------------------------------------------------------------------------------
# The generator: background spectrum, lesions, contrast
# --------------------------------------------------------------------------------------------------


def _spectral_slope(fields: np.ndarray, window: bool, k_min: float, k_max: float) -> float:
    """Fit log P(f) = c - beta log f over the 2-D frequency bins with k_min <= f * size <= k_max."""
    size = fields.shape[-1]
    taper = np.outer(np.hanning(size), np.hanning(size)) if window else np.ones((size, size))
    centred = (fields - fields.mean(axis=(1, 2), keepdims=True)) * taper
    power = (np.abs(np.fft.fft2(centred)) ** 2).mean(axis=0)  # (size, size), averaged over fields
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    band = (f >= k_min / size) & (f <= k_max / size)
    return -np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]


@pytest.mark.parametrize("beta", [2.0, 3.0, 4.0])
def test_power_law_noise_has_the_requested_spectral_slope(beta):
    fields = power_law_noise(200, 32, beta, np.random.default_rng(0))
    assert _spectral_slope(fields, window=False, k_min=1, k_max=16) == pytest.approx(beta, abs=0.1)
    assert np.allclose(fields.mean(axis=(1, 2)), 0, atol=1e-5) and np.allclose(fields.std(axis=(1, 2)), 1)


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_generated_background_keeps_the_slope(beta):
    # the patches are crops of larger fields, so they are not periodic: a Hann window keeps the strong
    # low frequencies from leaking into the high ones, as in measurements on real mammograms
    patches = generate_patches(400, 32, prevalence=0.0, beta=beta, quantum_noise=0.0, seed=2)
    assert _spectral_slope(patches.images, window=True, k_min=3, k_max=12.8) == pytest.approx(beta, abs=0.2)
    assert not patches.masks.any() and not patches.centres.any()


def test_contrast_scales_the_lesion_and_nothing_else():
    kwargs = dict(prevalence=0.5, mass_fraction=0.5, seed=4)
    plain = generate_patches(200, 32, contrast=0.0, **kwargs)
    bright = generate_patches(200, 32, contrast=2.0, **kwargs)
    added = bright.images - plain.images  # contrast * gain * profile, with the same background
    normal = plain.lesion == "none"
    assert np.array_equal(plain.lesion, bright.lesion) and np.array_equal(plain.masks, bright.masks)
    assert np.all(added[normal] == 0) and np.all(added >= 0)
    for kind, gain in (("mass", 1.0), ("spiculated mass", 1.0), ("calcifications", CALCIFICATION_GAIN)):
        chosen = plain.lesion == kind
        assert chosen.any()
        assert np.all(added[chosen][plain.masks[chosen]] >= 2.0 * gain * MASK_LEVEL - 1e-5)
        assert added[chosen].max() <= 2.0 * gain + 1e-5


def test_lesion_kinds_and_sizes():
    patches = generate_patches(2000, 32, prevalence=0.5, seed=5)
    kinds, counts = np.unique(patches.lesion, return_counts=True)
    counts = dict(zip(kinds.tolist(), counts.tolist()))
    assert counts["none"] == 1000
    assert abs(counts["mass"] + counts["spiculated mass"] - counts["calcifications"]) < 150  # mass_fraction 0.5
    size = patches.masks.sum(axis=(1, 2))
    assert np.median(size[patches.lesion == "calcifications"]) < np.median(size[patches.lesion == "mass"])
    assert np.median(size[patches.lesion == "spiculated mass"]) > np.median(size[patches.lesion == "mass"])
    assert (patches.centres.sum(axis=(1, 2)) == (patches.lesion != "none")).all()  # one centre per lesion ...
    assert not (patches.centres & ~patches.masks).any()  # ... and it is a lesion pixel
    only_masses = generate_patches(400, 32, prevalence=0.5, mass_fraction=1.0, seed=5)
    assert "calcifications" not in set(only_masses.lesion.tolist())


@pytest.mark.parametrize(
    "override, message",
    [
        pytest.param({"target": "area"}, "Expected `target` to be 'patch' or 'grid', but got 'area'", id="target"),
        pytest.param({"target": "grid", "grid": 3}, "Expected `grid` to divide 4", id="grid"),
        pytest.param({"patch_size": 30}, "Expected `patch_size` to be a multiple of 8", id="patch-size"),
        pytest.param({"prevalence": 1.5}, "Expected `prevalence` to be between 0 and 1, but got 1.5", id="prevalence"),
        pytest.param({"contrast": -1.0}, "Expected `contrast` to be a finite number, 0 or more", id="contrast"),
        pytest.param({"n_val": 0}, "Expected `n_val` to be a positive integer, but got 0", id="n-val"),
        pytest.param({"grid": 5}, "Expected `grid` to divide patch_size 32 (a patch is abnormal when one of its", id="patch-grid"),
        pytest.param({"channels": ()}, "Expected `channels` to be a non-empty tuple of whole numbers, 1 or more", id="no-channels"),
        pytest.param({"channels": (8, 0)}, "but got (8, 0)", id="zero-channels"),
        pytest.param({"data_seed": -1}, "Expected `data_seed` to be a whole number, 0 or more, but got -1", id="data-seed"),
        pytest.param({"beta": float("nan")}, "Expected `beta` to be a finite number", id="beta"),
        pytest.param({"contrast": float("inf")}, "Expected `contrast` to be a finite number, 0 or more", id="contrast-inf"),
        pytest.param({"quantum_noise": -0.1}, "Expected `quantum_noise` to be a finite number, 0 or more", id="noise"),
        # 0 would make every area of every patch abnormal (0 lesion pixels is "enough")
        pytest.param({"min_area_pixels": 0}, "Expected `min_area_pixels` to be a positive integer, but got 0.", id="min-area-0"),
        pytest.param({"grid": True}, "Expected `grid` to be a positive integer, but got True.", id="grid-bool"),
        pytest.param({"data_seed": 1.5}, "Expected `data_seed` to be a whole number, 0 or more, but got 1.5.", id="seed-float"),
        pytest.param({"data_seed": True}, "Expected `data_seed` to be a whole number, 0 or more, but got True.", id="seed-bool"),
        pytest.param({"mass_fraction": 1.5}, "Expected `mass_fraction` to be between 0 and 1, but got 1.5.", id="mass-fraction"),
        pytest.param({"quantum_noise": float("inf")}, "Expected `quantum_noise` to be a finite number, 0 or more", id="noise-inf"),
        # the message lists every grid that would work, the side itself included
        pytest.param({"grid": 5}, "but got 5; valid grids: [1, 2, 4, 8, 16, 32].", id="patch-grids"),
        pytest.param({"target": "grid", "grid": 3}, "but got 3; valid grids: [1, 2, 4].", id="map-grids"),
    ],
)
def test_bad_settings_are_refused(override, message):
    with pytest.raises(ValueError) as error:
        mammo.load(replace(SMALL, **override))
    assert message in str(error.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"mias_test_fraction": 0.9}, "Expected `mias_val_fraction + mias_test_fraction` to be below 1, but got 1.1"),
        ({"mias_val_fraction": 0.0}, "Expected `mias_val_fraction` to be between 0 and 1 (exclusive), but got 0.0"),
        ({"mias_min_tissue": 1.5}, "Expected `mias_min_tissue` to be between 0 and 1, but got 1.5"),
        ({"mias_tissue_level": -0.1}, "Expected `mias_tissue_level` to be between 0 and 1, but got -0.1"),
        ({"mias_downsample": 0}, "Expected `mias_downsample` to be a positive integer, but got 0"),
        ({"target": "grid", "grid": 3}, "Expected `grid` to divide 4"),  # the shared settings too
    ],
)
def test_bad_mini_mias_settings_are_refused_with_a_folder(mias, override, message):
    with pytest.raises(ValueError) as error:
        mammo.load(replace(mammo.Config(), **override), data=mias)
    assert message in str(error.value)


def test_each_kind_of_data_checks_only_its_own_settings(mias):
    """A generator setting cannot break a mini-MIAS run, nor a tiling setting a synthetic one: neither is used."""
    assert len(mammo.load(replace(mammo.Config(), prevalence=2.0, n_val=0, data_seed=-1), data=mias).train) > 0
    assert len(mammo.load(replace(SMALL, mias_min_tissue=2.0, mias_test_fraction=0.9, mias_downsample=0)).train) > 0


def test_patch_sizes_that_do_not_tile_a_film_are_fine_for_synthetic_patches():
    for size in (24, 48):
        assert mammo.load(replace(SMALL, patch_size=size)).train.x.shape[-1] == size


# --------------------------------------------------------------------------------------------------
# mini-MIAS: a tiny folder in exactly the real format (1024 x 1024 binary PGM files and Info.txt)
# --------------------------------------------------------------------------------------------------

INFO = """REFNUM BG CLASS SEVERITY X Y RADIUS 
mdb001 G CIRC B 20 20 8
mdb002 G NORM 
mdb003 F SPIC M 1000 1000 12
mdb003 F CALC B 300 700 10
mdb004 D NORM 
mdb005 F CALC M
mdb006 G NORM 
mdb007 G MISC B 828 448 20
mdb008 F NORM 
mdb009 D NORM 
mdb010 D NORM 
"""
# mdb001: a lesion near the bottom-left corner (origin of Info.txt's coordinates)
# mdb003: two lesions, one near the top-right corner
# mdb005: calcifications without a location: the film is dropped (and its PGM never read)
# mdb004, mdb007: the right half of the film is black (outside the breast); mdb007's lesion lies there
HALF_BLACK = {4, 7}


def write_pgm(path: Path, pixels: np.ndarray, comment: bool = True) -> None:
    """Write an 8-bit binary PGM (P5) as mini-MIAS does, optionally with a comment line."""
    height, width = pixels.shape
    note = b"# written by the lossbench tests\n" if comment else b""
    header = b"P5\n" + note + f"{width} {height}\n255\n".encode()
    path.write_bytes(header + pixels.astype(np.uint8).tobytes())


def film(refnum: int) -> np.ndarray:
    """A stand-in mammogram: uniform grey tissue, the right half black for the films in HALF_BLACK."""
    pixels = np.full((1024, 1024), 100 + refnum, dtype=np.uint8)
    if refnum in HALF_BLACK:
        pixels[:, 512:] = 0
    return pixels


@pytest.fixture(scope="module")
def mias(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mias")
    (folder / "Info.txt").write_text(INFO)
    for refnum in range(1, 11):
        if refnum != 5:
            write_pgm(folder / f"mdb{refnum:03d}.pgm", film(refnum), comment=refnum % 2 == 0)
    return folder


def _all(task):
    """Every tile of a task with its refnum and target, in split order."""
    splits = (task.train, task.val, task.test)
    return (
        torch.cat([s.x for s in splits]),
        torch.cat([s.y for s in splits]),
        np.concatenate([s.source for s in splits]),
    )


def test_read_pgm_reads_the_real_format(mias):
    image = read_pgm(mias / "mdb002.pgm")  # with a comment line in the header
    assert image.shape == (1024, 1024) and image.dtype == np.float32
    assert np.allclose(image, 102 / 255)
    assert np.allclose(read_pgm(mias / "mdb007.pgm")[:, 512:], 0)


def test_read_info_parses_rows(mias):
    info = read_info(mias / "Info.txt")  # a header line, trailing spaces, several rows for one film
    assert list(info) == list(range(1, 11))
    assert info[2].lesions == () and info[2].patient == 0 and info[3].patient == 1
    spic, calc = info[3].lesions
    assert (spic.kind, spic.severity, spic.x, spic.y, spic.radius, spic.row) == ("SPIC", "M", 1000, 1000, 12, 4)
    assert (calc.kind, calc.x, calc.y, calc.located) == ("CALC", 300, 700, True)
    assert [(l.kind, l.severity, l.located) for l in info[5].lesions] == [("CALC", "M", False)]


def test_mias_lesion_near_the_bottom_left_corner_lands_in_the_bottom_left_tile_and_area(mias):
    # mdb001: X=20, Y=20 (origin bottom-left) is image row 1003, column 20; at 1/4 scale row 250.9, column
    # 5.1: tile row 7 (of 8), tile column 0; inside the tile row 26.9, column 5.1: area r3c0.
    x, y, source = _all(mammo.load(mammo.Config(target="grid"), data=mias))
    film1 = np.flatnonzero(source == 1)
    assert len(film1) == 64  # uniform tissue: every tile kept, row-major
    abnormal = film1[y[film1].any(dim=1).numpy()]
    assert abnormal.tolist() == [film1[56]]  # tile (7, 0): the bottom-left one
    areas = [name for name, v in zip(mammo.label_names(mammo.Config(target="grid")), y[abnormal[0]]) if v]
    assert areas == ["area r3c0"]


def test_mias_lesion_near_the_top_right_corner_lands_in_the_top_right_tile_and_area(mias):
    # mdb003: X=1000, Y=1000 is image row 23, column 1000; at 1/4 scale row 5.9, column 250.1: tile (0, 7),
    # inside it row 5.9, column 26.1: area r0c3 (the disc, radius 3, puts fewer than 4 pixels anywhere else).
    # Its second lesion, X=300, Y=700, is at 1/4 scale row 80.9, column 75.1: tile (2, 2), inside it row 16.9,
    # column 11.1: area r2c1, and the disc (radius 2.5) covers 6 pixels of area r1c1 above it.
    x, y, source = _all(mammo.load(mammo.Config(target="grid"), data=mias))
    film3 = np.flatnonzero(source == 3)
    abnormal = film3[y[film3].any(dim=1).numpy()]
    assert abnormal.tolist() == [film3[7], film3[18]]
    names = mammo.label_names(mammo.Config(target="grid"))
    assert [n for n, v in zip(names, y[film3[7]]) if v] == ["area r0c3"]
    assert [n for n, v in zip(names, y[film3[18]]) if v] == ["area r1c1", "area r2c1"]


def test_mias_patch_target_agrees_with_the_grid(mias):
    patch = _all(mammo.load(mammo.Config(target="patch"), data=mias))
    grid = _all(mammo.load(mammo.Config(target="grid"), data=mias))
    assert torch.equal(patch[0], grid[0]) and np.array_equal(patch[2], grid[2])
    assert torch.equal(patch[1][:, 0].bool(), grid[1].bool().any(dim=1))
    assert patch[1].sum().item() == 4  # mdb001's, mdb003's two, mdb007's


def test_mias_split_keeps_each_woman_in_one_split(mias):
    for split_seed in range(5):
        task = mammo.load(mammo.Config(split_seed=split_seed), data=mias)
        women = [set(((split.source - 1) // 2).tolist()) for split in (task.train, task.val, task.test)]
        assert all(women)  # no empty split
        assert not (women[0] & women[1] or women[0] & women[2] or women[1] & women[2])
        assert set.union(*women) == {0, 1, 2, 3, 4}
        assert task.val.y.any() and task.test.y.any()  # stratified: 3 women with lesions, one per split


def test_mias_drops_films_whose_abnormality_has_no_location(mias):
    task = mammo.load(mammo.Config(), data=mias)
    assert task.notes["dropped_unlocated"] == ["mdb005"]
    assert 5 not in set(_all(task)[2].tolist())  # and mdb005.pgm was never needed: it is not in the folder
    assert 6 in set(_all(task)[2].tolist())  # the woman's other film stays


def test_mias_note_3_means_no_location(mias, tmp_path):
    folder = tmp_path / "mias"
    folder.mkdir()
    for p in mias.iterdir():
        (folder / p.name).symlink_to(p)
    (folder / "Info.txt").unlink()
    (folder / "Info.txt").write_text(INFO.replace("mdb005 F CALC M\n", "mdb005 F CALC M *NOTE 3*\n"))
    assert mammo.load(mammo.Config(), data=folder).notes["dropped_unlocated"] == ["mdb005"]


def test_mias_drops_background_tiles_but_not_lesions(mias):
    source = _all(mammo.load(mammo.Config(), data=mias))[2]
    assert (source == 4).sum() == 32  # the black half of mdb004 holds no breast
    assert (source == 7).sum() == 33  # mdb007's lesion lies in its black half: that tile stays


def test_mias_inputs_standardised_with_training_tiles(mias):
    task = mammo.load(mammo.Config(), data=mias)
    assert abs(task.train.x.mean().item()) < 1e-4 and abs(task.train.x.std().item() - 1) < 1e-3
    assert "mini-MIAS" in task.description and "sha256" in task.provenance and not task.notes["synthetic"]
    assert task.body == CNNBody(in_channels=1, image_size=32, channels=(8, 16, 32), grid=None)


def test_mias_loader_returns_maps_at_the_working_scale(mias):
    tiles = load_mias(mias, patch=64, downsample=8, min_tissue=0.5, tissue_level=0.1)
    # 1024 / 8 = 128 pixels: 2 x 2 tiles of 64 per film; mdb001's lesion in the bottom-left one
    film1 = np.flatnonzero(tiles.refnums == 1)
    assert len(film1) == 4 and tiles.images.shape[1:] == (64, 64)
    assert [bool(tiles.centres[i].any()) for i in film1] == [False, False, True, False]
    r, c = np.argwhere(tiles.centres[film1[2]])[0]
    assert (r, c) == (int((1023 - 20 + 0.5) / 8) - 64, int((20 + 0.5) / 8))


# --------------------------------------------------------------------------------------------------
# mini-MIAS: broken folders, each with its own message
# --------------------------------------------------------------------------------------------------


def _folder(tmp_path: Path, info: str | None, films: dict[int, bytes | np.ndarray] | None = None) -> Path:
    """A folder with this Info.txt text (none if None) and these PGM files (bytes are written as they are)."""
    folder = tmp_path / "broken"
    folder.mkdir()
    if info is not None:
        (folder / "Info.txt").write_text(info)
    for refnum, content in (films or {}).items():
        path = folder / f"mdb{refnum:03d}.pgm"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            write_pgm(path, content)
    return folder


SIX_FILMS = "".join(f"mdb{r:03d} G NORM\n" for r in range(1, 7))
GOOD = {r: film(r) for r in range(1, 7)}


@pytest.mark.parametrize(
    "info, message",
    [
        pytest.param(
            "mdb001 G CIRC B 535 425\n" + SIX_FILMS[14:],
            "line 1: Expected 4 fields (REFNUM BG CLASS SEVERITY) or 7 (REFNUM BG CLASS SEVERITY X Y RADIUS) "
            "for a CIRC row, but got 6",
            id="six-fields",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G NORM B\n",
            "line 7: Expected 3 fields for a NORM row (REFNUM BG NORM), but got 4",
            id="norm-with-severity",
        ),
        pytest.param("mdb001 G\n", "line 1: Expected 3 fields (REFNUM BG NORM)", id="two-fields"),
        pytest.param(
            SIX_FILMS + "mdb007 G BLOB B 10 10 5\n",
            "line 7: Expected CLASS to be one of CALC, CIRC, SPIC, MISC, ARCH, ASYM or NORM, but got 'BLOB'",
            id="unknown-class",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC X 10 10 5\n", "line 7: Expected SEVERITY to be B or M, but got 'X'", id="severity"
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC 535 425 197\n",
            "line 7: Expected SEVERITY (B or M) between CLASS and X Y RADIUS, but got the coordinates straight after 'CIRC'",
            id="severity-left-out",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC B 1024 10 5\n",
            "line 7: Expected the centre X Y inside the 1024 x 1024 image (0 to 1023, origin at the bottom-left "
            "corner), but got X=1024 Y=10",
            id="outside-x",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC B 10 -3 5\n", "line 7: Expected the centre X Y inside", id="outside-y"
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC B 10 ten 5\n",
            "line 7: Expected X Y RADIUS to be numbers, but got '10 ten 5'",
            id="not-a-number",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC B 10 10 0\n",
            "line 7: Expected RADIUS to be a positive number of pixels, at most the image's 1024, but got 0",
            id="radius",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC B 10 10 inf\n", "line 7: Expected X Y RADIUS to be numbers, but got '10 10 inf'",
            id="radius-inf",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC B 10 10 1e9\n", "line 7: Expected RADIUS to be a positive number of pixels, at most",
            id="radius-huge",
        ),
        pytest.param(
            SIX_FILMS + "mdb007 G CIRC B 1_0 10 5\n", "line 7: Expected X Y RADIUS to be numbers, but got '1_0 10 5'",
            id="underscore",
        ),
        pytest.param(
            "REFNUM BG CLASS SEVERITY X Y RADIUS\n" + SIX_FILMS + "mdb007 G BLOB B 10 10 5\n",
            "line 8: Expected CLASS to be one of", id="line-counts-the-header",
        ),
        pytest.param(
            "image1 G NORM\n",
            "line 1: Expected a reference number like mdb001 first, but got 'image1 G NORM'",
            id="refnum",
        ),
        pytest.param(
            SIX_FILMS + "mdb001 G CIRC B 10 10 5\n",
            "lines 1 and 7: Expected mdb001 to be either NORM or abnormal, but got both",
            id="norm-and-abnormal",
        ),
        pytest.param("REFNUM BG CLASS SEVERITY X Y RADIUS\n\n", "Expected rows like", id="no-rows"),
    ],
)
def test_broken_info_txt_is_refused_with_file_and_row(tmp_path, info, message):
    folder = _folder(tmp_path, info, GOOD)
    with pytest.raises(DataError) as error:
        mammo.load(mammo.Config(), data=folder)
    assert message in str(error.value)
    assert str(folder / "Info.txt") in str(error.value)


def test_info_txt_that_is_not_text(tmp_path):
    folder = _folder(tmp_path, None, GOOD)
    (folder / "Info.txt").write_bytes(b"mdb001 G NORM\n\xff\xfe\n")
    with pytest.raises(DataError, match="Info.txt: Expected plain text, but got a byte that is not UTF-8"):
        mammo.load(mammo.Config(), data=folder)


def test_missing_info_txt(tmp_path):
    folder = _folder(tmp_path, None, GOOD)
    with pytest.raises(DataError, match="Info.txt to exist, but it is missing"):
        mammo.load(mammo.Config(), data=folder)


def test_data_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="Expected `data` to be a folder holding mini-MIAS's Info.txt"):
        mammo.load(mammo.Config(), data=tmp_path / "nowhere")


def _bad_film(content: bytes | np.ndarray) -> dict:
    return {**GOOD, 2: content}


@pytest.mark.parametrize(
    "films, message",
    [
        pytest.param(
            {r: v for r, v in GOOD.items() if r != 2},
            "mdb002.pgm to exist (Info.txt lists it), but it is missing",
            id="missing",
        ),
        pytest.param(
            _bad_film(b"P2\n1024 1024\n255\n0 0 0\n"),
            "Expected a binary PGM image (a header starting P5), but got 'P2'",
            id="ascii-pgm",
        ),
        pytest.param(_bad_film(b"\x89PNG\r\n\x1a\n"), "Expected a binary PGM image", id="png"),
        pytest.param(_bad_film(b""), "Expected a binary PGM image", id="empty"),
        pytest.param(
            _bad_film(np.zeros((512, 512))), "Expected 1024 x 1024 pixels (mini-MIAS), but got 512 x 512", id="size"
        ),
        pytest.param(
            _bad_film(b"P5\n1024 1024\n255\n" + bytes(1000)),
            "Expected 1048576 bytes of pixels, but got 1000: the file is cut short",
            id="cut-short",
        ),
        pytest.param(
            _bad_film(b"P5\n1024 1024\n65535\n" + bytes(2 << 20)),
            "Expected an 8-bit image (maxval 1 to 255), but got maxval 65535",
            id="16-bit",
        ),
        pytest.param(
            _bad_film(b"P5\n1024 wide\n255\n"), "Expected width, height and maxval to be integers", id="header"
        ),
        pytest.param(
            _bad_film(b"P5\n1024 1024"),
            "Expected a PGM header of 4 fields (P5 width height maxval), but the file ends after 3: 'P5 1024 1024'",
            id="header-cut-short",
        ),
        pytest.param(_bad_film(b"P5"), "but the file ends after 1: 'P5'", id="magic-only"),
        pytest.param(
            _bad_film(b"P5\n1024 1024\n15\n" + bytes([200]) * (1 << 20)),
            "Expected pixels from 0 to the header's maxval 15, but got 200",
            id="above-maxval",
        ),
    ],
)
def test_broken_pgm_is_refused_with_its_file(tmp_path, films, message):
    folder = _folder(tmp_path, SIX_FILMS, films)
    with pytest.raises(DataError) as error:
        mammo.load(mammo.Config(), data=folder)
    assert message in str(error.value)
    assert "mdb002.pgm" in str(error.value)


def test_too_few_women_for_three_splits(tmp_path):
    folder = _folder(tmp_path, "mdb001 G NORM\nmdb002 G NORM\nmdb003 G NORM\n", {r: film(r) for r in (1, 2, 3)})
    with pytest.raises(DataError, match=r"Expected enough women .* but got 2 women \(train 2, val 0, test 0\)"):
        mammo.load(mammo.Config(), data=folder)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"mias_downsample": 3}, r"shrink 1024 pixels to a multiple of patch_size 32, but got 3 \(1024 / 3 = 341.333\); try 1, 2, 4, 8, 16 or 32\.$"),
        ({"mias_downsample": 64}, r"shrink 1024 pixels to a multiple of patch_size 32, but got 64 \(1024 / 64 = 16\); try 1, 2, 4, 8, 16 or 32\.$"),
        ({"patch_size": 48}, r"^Expected `patch_size` to be a power of two with mini-MIAS data .* but got 48; try 32 or 64\.$"),
        ({"patch_size": 2048}, r"^Expected `patch_size` to fit in a 1024 x 1024 film, but got 2048"),
    ],
)
def test_mias_films_must_cut_into_whole_patches(mias, override, message):
    with pytest.raises(ValueError, match=message):
        mammo.load(replace(mammo.Config(), **override), data=mias)


def test_the_same_seed_gives_the_same_patches_with_any_number_of_threads():
    """torch's FFT rounds differently on 1 and on 2 threads; the generator must not depend on --threads."""
    before = torch.get_num_threads()
    try:
        made = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            made.append(power_law_noise(64, 32, 3.0, np.random.default_rng(7)))
    finally:
        torch.set_num_threads(before)
    assert made[0].tobytes() == made[1].tobytes()


def test_the_background_made_a_few_fields_at_a_time_equals_it_made_at_once(monkeypatch):
    from lossbench.tasks import _mammo_synth

    monkeypatch.setattr(_mammo_synth, "NOISE_CHUNK_BYTES", 4 * 64 * 64 * 7)  # 7 fields of 64 x 64 at a time
    chunked = _mammo_synth._cropped_noise(50, 32, 3.0, np.random.default_rng(3))
    whole = _mammo_synth._filtered_noise(50, 64, 3.0, np.random.default_rng(3))[:, :32, :32]
    assert chunked.tobytes() == _mammo_synth._unit_std(whole).tobytes()


def test_the_settings_said_to_apply_to_one_kind_of_data_are_the_ones_it_reads(mias, settings_read):
    """GENERATED_ONLY and FOLDER_ONLY, which decide what compare() refuses and config.json lists as unused, hold
    exactly the settings read by one loader and not the other."""
    generated = settings_read(mammo, SMALL, None)
    folder = settings_read(mammo, mammo.Config(), mias)
    assert set(mammo.GENERATED_ONLY) == generated - folder
    assert set(mammo.FOLDER_ONLY) == folder - generated
