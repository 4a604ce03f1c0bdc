"""Details of the mammography task: settings at their edges,
split sizes and notes, the generator's geometry, and mini-MIAS parsing, tiling and labelling corner cases."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.integrate

from lossbench.tasks import DataError
from lossbench.tasks import mammography as mammo
from lossbench.tasks._mammo_mias import Lesion, lesion_maps, load_mias, read_info, read_pgm
from lossbench.tasks._mammo_synth import MASK_LEVEL, calcification_profiles, generate_patches, mass_profiles

TINY = mammo.Config(n_train=40, n_val=20, n_test=20)


# --------------------------------------------------------------------------------------------------
# Settings at their edges
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"contrast": 0.0}, id="no-contrast"),  # invisible lesions: a valid, hardest case
        pytest.param({"quantum_noise": 0.0, "mass_fraction": 0.0}, id="no-noise-no-masses"),
        pytest.param({"prevalence": 1.0, "mass_fraction": 1.0}, id="all-abnormal-masses"),
    ],
)
def test_edge_settings_of_the_generator_are_accepted(override):
    task = mammo.load(replace(TINY, **override))
    assert len(task.train) + len(task.val) + len(task.test) == 80


def test_patch_sizes_that_cannot_tile_a_film_are_refused_before_reading_it(tmp_path):
    # 1024 / 5 = 204.8 is no whole number of pixels even though 204 happens to be a multiple of 12
    config = mammo.Config(patch_size=12, channels=(8,), mias_downsample=5)
    with pytest.raises(ValueError, match=r"^Expected `patch_size` to be a power of two with mini-MIAS data .* got 12; try 8 or 16\.$"):
        mammo.load(config, data=tmp_path)


# --------------------------------------------------------------------------------------------------
# The synthetic task: splits, notes and texts
# --------------------------------------------------------------------------------------------------


def test_validation_and_test_sizes_follow_their_own_settings():
    # the defaults ask for as many validation as test patches, which would hide the two being swapped
    task = mammo.load(replace(TINY, n_train=100, n_val=60, n_test=20))
    assert abs(len(task.val) - 60) <= 1 and abs(len(task.test) - 20) <= 1


def test_lesion_notes_count_the_patches_of_each_split():
    task = mammo.load(replace(TINY, prevalence=0.4))
    for name, split in zip(("train", "val", "test"), (task.train, task.val, task.test)):
        counts = task.notes["lesions"][name]
        assert sum(counts.values()) == len(split)
        assert len(split) - counts.get("none", 0) == int(split.y.sum().item())


def test_provenance_and_description_name_the_settings_used():
    task = mammo.load(replace(TINY, target="grid", data_seed=2, split_seed=3, contrast=0.0))
    assert task.provenance.endswith("seed=2); split with split_seed=3")
    assert "generate_patches(n=80, size=32, prevalence=0.17, contrast=0.0" in task.provenance
    assert task.description.endswith("17% abnormal, lesion contrast 0 (target: grid)")


def test_a_constant_training_set_is_standardised_with_std_1():
    # dividing by a standard deviation of 0 would turn every input into nan or inf
    images = np.full((3, 4, 4), 0.25, dtype=np.float32)
    assert mammo._pixel_stats(images) == (0.25, 1.0)


# --------------------------------------------------------------------------------------------------
# The generator: counts, noise, where and how big the lesions are
# --------------------------------------------------------------------------------------------------


def test_the_number_of_abnormal_patches_is_rounded_not_truncated():
    patches = generate_patches(10, 16, prevalence=0.29, seed=0)  # 2.9 lesions asked for: 3
    assert int((patches.lesion != "none").sum()) == 3


def test_quantum_noise_is_white_noise_of_that_standard_deviation():
    # same seed, so the same background: the difference is quantum_noise times unit white noise
    quiet = generate_patches(100, 32, prevalence=0.0, quantum_noise=0.0, seed=3).images
    noisy = generate_patches(100, 32, prevalence=0.0, quantum_noise=0.5, seed=3).images
    assert (noisy - quiet).std() == pytest.approx(0.5, rel=0.02)


def test_masses_follow_the_documented_placement_share_and_size():
    patches = generate_patches(1000, 32, prevalence=1.0, mass_fraction=1.0, seed=6)
    # centres uniform in the middle 80% of the side: pixel 3 (3.2) to pixel 28 (28.8)
    rows, cols = np.nonzero(patches.centres)[1:]
    assert rows.min() >= 3 and cols.min() >= 3 and rows.max() <= 28 and cols.max() <= 28
    # half of the masses are spiculated
    assert abs((patches.lesion == "spiculated mass").mean() - 0.5) < 0.06
    # radii 8% to 15% of the side: the plain masses' visible discs stay well below a 15%-plus-edge disc
    size = patches.masks[patches.lesion == "mass"].sum(axis=(1, 2))
    assert np.percentile(size, 95) <= np.pi * (0.15 * 32 + 1.5) ** 2
    assert size.min() >= np.pi * (0.08 * 32 * 0.5) ** 2


def test_a_mass_is_drawn_around_its_centre_row_and_column():
    centres = np.array([[6.0, 20.0], [25.0, 9.0], [14.0, 27.0]])
    profiles = mass_profiles(centres, np.array([3.0, 3.0, 3.0]), 32, np.random.default_rng(0))
    for profile, (row, col) in zip(profiles, centres):
        r, c = np.nonzero(profile >= MASK_LEVEL)
        # pixel (r, c) has its centre at (r + 0.5, c + 0.5)
        assert abs(r.mean() + 0.5 - row) < 1.0 and abs(c.mean() + 0.5 - col) < 1.0


def test_spicules_radiate_outwards_from_the_mass_and_end():
    # each spicule runs from the centre out to at most 3.5 radii; nothing shows beyond that
    m, radius = 20, 2.0
    profiles = mass_profiles(np.full((m, 2), 32.0), np.full(m, radius), 64, np.random.default_rng(1), np.ones(m, bool))
    rows, cols = np.mgrid[0:64, 0:64] + 0.5
    far = np.hypot(rows - 32.0, cols - 32.0) > 3.5 * radius + 1.0
    assert profiles[:, far].max() < 0.01
    # the same masses without spicules (the same draws): the spicules only add to the blob
    plain = mass_profiles(np.full((m, 2), 32.0), np.full(m, radius), 64, np.random.default_rng(1), np.zeros(m, bool))
    assert np.all(profiles >= plain) and np.all((profiles >= MASK_LEVEL).sum(axis=(1, 2)) > (plain >= MASK_LEVEL).sum(axis=(1, 2)))


def test_calcification_specks_have_the_documented_peak_and_width():
    # with radius 0 every speck of a cluster sits at the cluster's centre
    m = 200
    on_pixel = calcification_profiles(np.full((m, 2), 8.5), np.zeros(m), 16, np.random.default_rng(0))
    peak, beside = on_pixel[:, 8, 8], on_pixel[:, 8, 9]
    assert peak.min() >= 0.7 and peak.max() <= 1.0  # peaks 0.7 to 1
    # a Gaussian of sigma 0.5 to 0.8 keeps exp(-1 / (2 sigma**2)) of its peak one pixel away
    ratio = beside / peak
    assert ratio.min() >= np.exp(-1 / (2 * 0.5**2)) - 1e-6 and ratio.max() <= np.exp(-1 / (2 * 0.8**2)) + 1e-6
    assert ratio.max() > 0.4  # some speck is near the widest
    # pixel centres are at +0.5: a cluster on a pixel corner lights the four pixels around it equally
    on_corner = calcification_profiles(np.full((m, 2), 8.0), np.zeros(m), 16, np.random.default_rng(0))
    assert np.array_equal(on_corner[:, 7, 7], on_corner[:, 8, 8]) and np.array_equal(on_corner[:, 7, 8], on_corner[:, 8, 7])


def test_a_calcification_cluster_lies_at_its_centre_row_and_column():
    centres = np.array([[3.0, 12.0], [13.0, 2.5]])
    profiles = calcification_profiles(centres, np.array([2.0, 2.0]), 16, np.random.default_rng(2))
    for profile, (row, col) in zip(profiles, centres):
        r, c = np.unravel_index(profile.argmax(), profile.shape)
        assert abs(r + 0.5 - row) <= 3.0 and abs(c + 0.5 - col) <= 3.0  # within the cluster's radius, plus a pixel


# --------------------------------------------------------------------------------------------------
# mini-MIAS: Info.txt and PGM details
# --------------------------------------------------------------------------------------------------


def _write_pgm(path: Path, pixels: np.ndarray, maxval: int = 255) -> None:
    """An 8-bit binary PGM (P5) of these pixels."""
    height, width = pixels.shape
    path.write_bytes(f"P5\n{width} {height}\n{maxval}\n".encode() + pixels.astype(np.uint8).tobytes())


def _info(tmp_path: Path, text: str | bytes) -> dict:
    path = tmp_path / "Info.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_info(path)


def test_info_txt_accepts_what_the_real_files_hold(tmp_path):
    # a byte-order mark, # comments, lower case, decimal and exponent coordinates, a lower-case note
    text = "\ufeff# mini-MIAS\nmdb001 g circ b 535.5 425 1e1\nmdb002 G CALC M *note 3*\n# mdb003 G BLOB\nmdb004 D NORM\n"
    info = _info(tmp_path, text.encode("utf-8"))
    assert list(info) == [1, 2, 4]
    lesion = info[1].lesions[0]
    assert (lesion.kind, lesion.severity, lesion.x, lesion.y, lesion.radius) == ("CIRC", "B", 535.5, 425.0, 10.0)
    assert not info[2].lesions[0].located


def test_info_txt_takes_the_edges_of_the_image(tmp_path):
    # X and Y from 0 to just below 1024, and a radius as large as the image
    info = _info(tmp_path, "mdb001 G CIRC B 0 0 1024\nmdb002 G CIRC B 1023.9 1023.9 0.5\n")
    assert (info[1].lesions[0].x, info[1].lesions[0].y, info[1].lesions[0].radius) == (0.0, 0.0, 1024.0)
    assert (info[2].lesions[0].x, info[2].lesions[0].y) == (1023.9, 1023.9)


@pytest.mark.parametrize("refnum", ["mdb01", "mdb000"])
def test_info_txt_refnums_have_three_digits_from_001(tmp_path, refnum):
    # mdb000 was taken, and then reported as a missing mdb000.pgm
    with pytest.raises(DataError, match=rf"line 1: Expected a reference number like mdb001 first, but got '{refnum} G NORM'\."):
        _info(tmp_path, f"{refnum} G NORM\n")


@pytest.mark.parametrize(
    "header, message",
    [
        pytest.param(b"P5\n2 2\n0\n", "Expected an 8-bit image (maxval 1 to 255), but got maxval 0.", id="maxval-0"),
        pytest.param(b"P5\n2 2\n256\n", "Expected an 8-bit image (maxval 1 to 255), but got maxval 256.", id="maxval-256"),
        pytest.param(b"P55\n2 2\n255\n", "Expected a binary PGM image (magic number P5), but got 'P55'.", id="magic"),
        pytest.param(b"P5\n2 1\n255\n", "Expected 2 x 2 pixels (mini-MIAS), but got 2 x 1.", id="width-then-height"),
    ],
)
def test_pgm_headers_refused_with_their_values(tmp_path, header, message):
    path = tmp_path / "mdb001.pgm"
    path.write_bytes(header + bytes(4))
    with pytest.raises(DataError) as error:
        read_pgm(path, size=2)
    assert message in str(error.value)


def test_pgm_pixels_are_divided_by_maxval_and_comments_may_end_with_a_carriage_return(tmp_path):
    path = tmp_path / "mdb001.pgm"
    path.write_bytes(b"P5\r# old Mac line ends\r2 2\r15\r" + bytes([0, 3, 12, 15]))
    np.testing.assert_allclose(read_pgm(path, size=2), [[0.0, 0.2], [0.8, 1.0]], rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# mini-MIAS: lesion maps and tiles
# --------------------------------------------------------------------------------------------------


def test_lesion_disc_at_full_scale():
    # X=5, Y=10 from the bottom-left is row 1013, column 5, its centre at (1013.5, 5.5): radius 1 takes the
    # pixel and its four neighbours, whose centres lie exactly 1 away
    mask, centres = lesion_maps((Lesion("CIRC", "B", x=5.0, y=10.0, radius=1.0, row=1),), downsample=1)
    assert np.argwhere(centres).tolist() == [[1013, 5]]
    assert np.argwhere(mask).tolist() == [[1012, 5], [1013, 4], [1013, 5], [1013, 6], [1014, 5]]


def test_a_tiny_lesion_still_marks_its_centre_pixel():
    # radius 0.2 at 1/4 scale is a disc of 0.05 pixel that holds no pixel centre; the centre pixel is marked anyway
    mask, centres = lesion_maps((Lesion("CALC", "B", x=1.0, y=1022.0, radius=0.2, row=1),), downsample=4)
    assert np.argwhere(mask).tolist() == np.argwhere(centres).tolist() == [[0, 0]]


def test_a_lesion_on_the_right_edge_stays_in_the_last_column():
    # X=1023.9 is at column (1023.9 + 0.5) / 4 = 256.1 of a 256-pixel-wide film: the last column holds it
    mask, centres = lesion_maps((Lesion("CIRC", "B", x=1023.9, y=500.0, radius=4.0, row=1),), downsample=4)
    assert np.argwhere(centres).tolist() == [[130, 255]] and mask[130, 255]


@pytest.fixture
def one_film(tmp_path) -> Path:
    """A folder with one NORM film: tissue in the top-left 544 x 576 pixels, black elsewhere."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "Info.txt").write_text("mdb001 G NORM\n")
    pixels = np.zeros((1024, 1024), dtype=np.uint8)
    pixels[:544, :576] = 150
    _write_pgm(folder / "mdb001.pgm", pixels)
    return folder


def test_tiles_are_kept_by_their_share_of_tissue(one_film):
    # at 1/4 scale the tissue is 136 rows x 144 columns: tiles (0-3, 0-3) are all tissue, tiles (0-3, 4) half
    # (exactly min_tissue 0.5: kept), tiles (4, 0-3) a quarter and (4, 4) an eighth (dropped)
    tiles = load_mias(one_film, patch=32, downsample=4, min_tissue=0.5, tissue_level=0.1)
    assert len(tiles.images) == 20
    shares = sorted(set(np.round((tiles.images > 0.1).mean(axis=(1, 2)), 3).tolist()))
    assert shares == [0.5, 1.0]


def test_file_names_are_matched_whatever_their_case(tmp_path, one_film):
    folder = tmp_path / "upper"
    folder.mkdir()
    (folder / "INFO.TXT").write_bytes((one_film / "Info.txt").read_bytes())
    (folder / "MDB001.PGM").write_bytes((one_film / "mdb001.pgm").read_bytes())
    tiles = load_mias(folder, patch=32, downsample=4, min_tissue=0.5, tissue_level=0.1)
    assert len(tiles.images) == 20 and tiles.info_path.name == "INFO.TXT"


def test_a_folder_with_only_unlocated_abnormalities_is_refused(tmp_path):
    folder = tmp_path / "unlocated"
    folder.mkdir()
    (folder / "Info.txt").write_text("mdb001 G CALC B\nmdb002 G CALC M *NOTE 3*\n")
    with pytest.raises(DataError, match="Expected at least one mammogram whose abnormalities all have a location, but got none"):
        load_mias(folder, patch=32, downsample=4, min_tissue=0.5, tissue_level=0.1)


# --------------------------------------------------------------------------------------------------
# mini-MIAS as a task: edges of its settings, notes, texts and standardisation
# --------------------------------------------------------------------------------------------------

MIAS_INFO = """mdb001 G CIRC B 200 800 30
mdb002 G NORM
mdb003 F SPIC M 600 300 20
mdb004 F NORM
mdb005 D CIRC B 700 700 16
mdb006 D NORM
mdb007 G CALC M
mdb008 G NORM
"""
# 4 women; mdb007 (no location) is dropped, so 7 films are tiled; the three lesions are each well inside one tile


@pytest.fixture(scope="module")
def mias4(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mias4")
    (folder / "Info.txt").write_text(MIAS_INFO)
    for refnum in (1, 2, 3, 4, 5, 6, 8):
        pixels = np.full((1024, 1024), 40 + 20 * refnum, dtype=np.uint8)
        pixels[:, 768:] = 0  # the right quarter is outside the breast
        _write_pgm(folder / f"mdb{refnum:03d}.pgm", pixels)
    return folder


def test_mias_notes_provenance_and_description(mias4):
    task = mammo.load(mammo.Config(), data=mias4)
    assert task.notes["women"] == {"train": 2, "val": 1, "test": 1}  # women, not tiles
    assert task.provenance.endswith("; 7 films, 4 women; split by woman with split_seed=0")
    n_tiles = len(task.train) + len(task.val) + len(task.test)
    assert n_tiles == 7 * 48  # 6 of 8 tile columns are breast
    assert task.description == (  # the film left out is named where the run's table starts, not only in config.json
        f"mini-MIAS mammograms as 32x32 tiles at 1/4 scale, {3 / n_tiles:.0%} abnormal (target: patch); "
        "mdb007 left out (an abnormality without a location)"
    )


def test_pgm_files_that_info_txt_does_not_list_are_named_as_left_out(mias4, tmp_path):
    # a cut-short Info.txt trains on fewer films: the description says so, where the run's table starts
    folder = tmp_path / "mias"
    folder.mkdir()
    for path in mias4.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "MDB009.PGM").write_bytes((mias4 / "mdb008.pgm").read_bytes())
    (folder / "notes.txt").write_text("not a film")
    task = mammo.load(mammo.Config(), data=folder)
    assert task.notes["unlisted_pgm"] == ["MDB009.PGM"]
    assert task.description.endswith("; mdb007 left out (an abnormality without a location); MDB009.PGM left out (not in Info.txt)")
    assert mammo.load(mammo.Config(), data=mias4).notes["unlisted_pgm"] == []


def test_mias_pixel_statistics_are_those_of_the_training_tiles(mias4):
    task = mammo.load(mammo.Config(), data=mias4)
    tiles = load_mias(mias4, patch=32, downsample=4, min_tissue=0.5, tissue_level=0.1)
    train = tiles.images[np.isin(tiles.refnums, task.train.source)]
    assert task.notes["pixel_mean"] == pytest.approx(float(train.mean(dtype=np.float64)))
    assert task.notes["pixel_std"] == pytest.approx(float(train.std(dtype=np.float64)))


def test_mias_tissue_settings_take_both_ends(mias4):
    # a tile is kept when its share of pixels above the level reaches min_tissue: 0 keeps every tile,
    # and a level of 1 makes no pixel breast
    task = mammo.load(mammo.Config(mias_min_tissue=0.0, mias_tissue_level=1.0), data=mias4)
    assert len(task.train) + len(task.val) + len(task.test) == 7 * 64
    task = mammo.load(mammo.Config(mias_min_tissue=1.0, mias_tissue_level=0.0), data=mias4)
    assert len(task.train) + len(task.val) + len(task.test) == 7 * 48


@pytest.mark.parametrize("header, first", [
    # netpbm allows a comment anywhere before the raster: its bytes are not pixels
    pytest.param(b"P5\n2 2\n255# scanned 1994\n", 0, id="comment-after-maxval"),
    # "255\r\n": the file holds one byte more than its pixels, so the "\n" ends the header too
    pytest.param(b"P5\r\n# converted on Windows\r\n2 2\r\n255\r\n", 0, id="windows-line-ends"),
    # a lone "\r" ends the header, and a first pixel of 10 ("\n") is a pixel: the file holds no byte more
    pytest.param(b"P5\r2 2\r255\r", 10, id="carriage-return-then-a-pixel-of-10"),
])  # fmt: skip
def test_a_pgm_header_ends_where_its_pixels_begin(tmp_path, header, first):
    path = tmp_path / "mdb001.pgm"
    path.write_bytes(header + bytes([first, 51, 204, 255]))
    np.testing.assert_allclose(read_pgm(path, size=2), [[first / 255, 0.2], [0.8, 1.0]], rtol=1e-6)


def test_a_lesion_row_without_severity_says_it_got_nothing(tmp_path):
    # "but got nothing", not "but got 'nothing'", which reads as if the file said nothing
    info = tmp_path / "Info.txt"
    info.write_text("mdb001 G NORM\nmdb002 G CIRC\n")
    with pytest.raises(DataError) as refused:
        read_info(info)
    assert str(refused.value).endswith("line 2: Expected SEVERITY to be B or M, but got nothing.")


def test_a_mammogram_or_info_file_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path):
    # read_bytes() of a named pipe waits for a writer for ever; of /dev/zero, until memory runs out
    import os

    os.mkfifo(tmp_path / "mdb001.pgm")
    with pytest.raises(DataError, match=r"^Expected the mammogram .*mdb001\.pgm to be a file, but it is a device or a pipe, not a regular file\.$"):
        read_pgm(tmp_path / "mdb001.pgm")
    (tmp_path / "Info.txt").mkdir()
    with pytest.raises(DataError, match=r"^Expected the mini-MIAS annotation file .*Info\.txt to be a file, but it is a folder\.$"):
        read_info(tmp_path / "Info.txt")


# --------------------------------------------------------------------------------------------------
# The generator's random draws, as its docstrings state them (fixed seeds, loose but failable bounds)
# --------------------------------------------------------------------------------------------------


def _grid(size: int, centre: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance and angle of each pixel centre (at +0.5) from (centre, centre)."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    return np.hypot(rows - centre, cols - centre), np.arctan2(rows - centre, cols - centre)


def test_each_background_patch_has_mean_0_and_std_1_even_though_it_is_cropped():
    """Step (2): the crop of a larger field is itself scaled to mean 0 and standard deviation 1."""
    images = generate_patches(200, 32, prevalence=0.0, quantum_noise=0.0, seed=13).images
    np.testing.assert_allclose(images.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(images.std(axis=(1, 2)), 1.0, atol=1e-5)


def test_abnormal_patches_are_at_random_places_in_the_sequence():
    """Step (1): exactly round(prevalence * n) abnormal patches, spread over the sequence, not its start."""
    abnormal = generate_patches(400, 8, prevalence=0.25, seed=3).lesion != "none"
    assert abnormal.sum() == 100
    assert 0.15 < abnormal[:200].mean() < 0.35 and 0.15 < abnormal[200:].mean() < 0.35


def test_a_mass_margin_is_a_sigmoid_of_a_fourier_series_of_orders_2_to_5():
    """mass_profiles 1-2: profile = sigmoid((r(theta) - d) / w), w = 0.15 r0 + 0.3,
    r(theta) = r0 (1 + sum_k a_k cos(k theta + phi_k)) for k = 2..5 with a_k up to 0.12."""
    m, r0, size = 20, 12.0, 64
    profiles = mass_profiles(np.full((m, 2), 32.0), np.full(m, r0), size, np.random.default_rng(0)).astype(np.float64)
    d, theta = _grid(size, 32.0)
    w = 0.15 * r0 + 0.3
    amplitudes = []
    for profile in profiles:
        band = (profile > 0.02) & (profile < 0.98)  # where the sigmoid can be inverted accurately
        margin = (d[band] + w * np.log(profile[band] / (1 - profile[band]))) / r0  # r(theta) / r0 at each pixel
        th = theta[band]
        basis = np.column_stack([np.ones_like(th)] + [f(k * th) for k in range(1, 8) for f in (np.cos, np.sin)])
        coef, *_ = np.linalg.lstsq(basis, margin, rcond=None)
        assert np.abs(basis @ coef - margin).max() < 1e-3  # every edge pixel agrees on one margin: w is right
        assert coef[0] == pytest.approx(1.0, abs=1e-3)  # the mean radius is r0
        amplitudes.append(np.hypot(coef[1::2], coef[2::2]))  # orders 1..7
    amplitudes = np.array(amplitudes)
    assert amplitudes[:, [0, 5, 6]].max() < 1e-3  # no order 1 (which would move the mass), nor 6 or 7
    assert amplitudes[:, 1:5].max() <= 0.12 + 1e-3 and amplitudes[:, 1:5].max() > 0.1  # up to 0.12


def test_spicules_have_the_documented_number_length_height_and_width():
    """mass_profiles 3: 5 to 10 ridges 0.8 (1 - t / L) exp(-(s / 0.7)**2), L uniform in 2 to 3.5 radii. Summed over
    a ring, a ridge gives 0.8 sqrt(pi) 0.7 times the integral of (1 - t / L) across the ring; the ridges' total,
    averaged over masses, is 7.5 times that mean. Where ridges cross they are not added (the profile is the
    brightest), which only lowers the sum (by about 6% here)."""
    m, r0, size, centre = 200, 8.0, 64, 32.0
    args = (np.full((m, 2), centre), np.full(m, r0), size)
    spiculated = mass_profiles(*args, np.random.default_rng(3), np.ones(m, bool)).astype(np.float64)
    plain = mass_profiles(*args, np.random.default_rng(3), np.zeros(m, bool)).astype(np.float64)  # the same draws
    d, _ = _grid(size, centre)
    lo, hi = 2.0 * r0, 2.5 * r0  # beyond the blob, inside every spicule's length
    measured = (spiculated - plain)[:, (d >= lo) & (d < hi)].sum(axis=1).mean()
    u = np.linspace(2.0, 3.5, 2001)  # L / r0
    t = np.linspace(lo, hi, 501)
    along = scipy.integrate.trapezoid(np.mean(np.clip(1 - t[:, None] / (r0 * u[None, :]), 0, None), axis=1), t)
    expected = 7.5 * 0.8 * np.sqrt(np.pi) * 0.7 * along
    assert 0.8 <= measured / expected <= 1.0


def test_calcification_clusters_hold_3_to_8_specks_spread_uniformly_over_the_disc():
    """calcification_profiles: 3 to 8 specks (5.5 on average) of peak a in 0.7..1 and sigma in 0.5..0.8, each
    holding a 2 pi sigma**2 of profile, uniform in the disc: a quarter of them within half its radius."""
    m, radius, size, centre = 400, 16.0, 64, 32.0
    profiles = calcification_profiles(np.full((m, 2), centre), np.full(m, radius), size, np.random.default_rng(4))
    profiles = profiles.astype(np.float64)
    per_speck = 0.85 * 2 * np.pi * (0.8**3 - 0.5**3) / (3 * 0.3)  # E[a] * 2 pi * E[sigma**2]
    assert profiles.sum(axis=(1, 2)).mean() / (5.5 * per_speck) == pytest.approx(1.0, abs=0.07)
    d, _ = _grid(size, centre)
    assert 0.2 < profiles[:, d < radius / 2].sum() / profiles.sum() < 0.3  # uniform in area, not in radius
    assert profiles[:, d > radius + 3].max() < 0.01  # no speck outside the disc


def _inside(masks: np.ndarray) -> np.ndarray:
    """Which (n, side, side) masks touch no edge of their patch: the lesion lies wholly inside."""
    edges = masks[:, 0].any(axis=1) | masks[:, -1].any(axis=1) | masks[:, :, 0].any(axis=1) | masks[:, :, -1].any(axis=1)
    return ~edges


def test_lesion_centres_are_uniform_over_the_middle_80_percent_and_their_pixel_is_the_floor():
    """Step (3): centres uniform in 3.2..28.8 of a 32-pixel side; the centre pixel is the one holding it."""
    size = 32
    patches = generate_patches(600, size, prevalence=1.0, mass_fraction=1.0, seed=11)
    _, rows, cols = np.nonzero(patches.centres)
    both = np.concatenate([rows, cols])
    # pixels 3..5 hold (6 - 3.2) / 25.6 = 11% of the centres, and so do pixels 26..28: the ends are reached
    assert 0.06 < (both <= 5).mean() < 0.16 and 0.06 < (both >= 26).mean() < 0.16
    # for a plain mass inside the patch, the centre pixel's middle lies within half a pixel of the mask's
    # centroid, on average right on it (rounding instead of flooring would put it half a pixel off)
    masks = patches.masks
    chosen = (patches.lesion == "mass") & _inside(masks)
    assert chosen.sum() > 100
    pixel_rows, pixel_cols = np.mgrid[0:size, 0:size] + 0.5
    area = masks[chosen].sum(axis=(1, 2))
    centroid_r = (masks[chosen] * pixel_rows).sum(axis=(1, 2)) / area
    centroid_c = (masks[chosen] * pixel_cols).sum(axis=(1, 2)) / area
    _, r, c = np.nonzero(patches.centres[chosen])
    assert abs(np.mean(r + 0.5 - centroid_r)) < 0.15 and abs(np.mean(c + 0.5 - centroid_c)) < 0.15


def test_mass_radii_are_8_to_15_percent_of_the_side():
    """Step (3): a plain mass's mask is the disc where the sigmoid reaches 1/4, d <= r0 + w ln 3 with
    w = 0.15 r0 + 0.3 (the margin's wobble averages out), so its area gives r0 back."""
    size = 32
    patches = generate_patches(600, size, prevalence=1.0, mass_fraction=1.0, seed=11)
    masks = patches.masks
    area = masks[(patches.lesion == "mass") & _inside(masks)].sum(axis=(1, 2))
    share = (np.sqrt(area / np.pi) - 0.3 * np.log(3)) / (1 + 0.15 * np.log(3)) / size
    assert 0.07 < share.min() and share.max() < 0.16
    q10, q90 = np.percentile(share, [10, 90])  # uniform in 0.08..0.15: 0.087 and 0.143
    assert q10 < 0.095 and q90 > 0.13


def test_a_calcification_cluster_is_no_wider_than_its_largest_disc():
    """Step (3): cluster radii are at most 12% of the side, and a speck's mask reaches at most
    0.8 sqrt(2 ln 4) = 1.33 pixels from it, so no two mask pixels are further apart than 2 * 0.12 * 32 + 2.67."""
    patches = generate_patches(400, 32, prevalence=1.0, mass_fraction=0.0, seed=12)
    widest = 0.0
    for mask in patches.masks:
        points = np.argwhere(mask).astype(float)
        widest = max(widest, np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).max())
    assert widest <= 2 * 0.12 * 32 + 2 * 0.8 * np.sqrt(2 * np.log(4))
    assert widest > 2 * 0.09 * 32  # some cluster is near the largest


def test_a_pgm_holding_two_bytes_a_pixel_under_an_8_bit_maxval_is_refused(tmp_path):
    # a 16-bit raster written under "255" would be read as its first half, high and low bytes as pixels
    path = tmp_path / "mdb001.pgm"
    path.write_bytes(b"P5\n2 2\n255\n" + np.array([0, 13107, 52428, 65535], dtype=">u2").tobytes())
    with pytest.raises(DataError, match=r"mdb001.pgm: Expected 4 bytes of pixels after the header \(2 x 2, one byte each under maxval 255\), but got 8"):
        read_pgm(path, size=2)
