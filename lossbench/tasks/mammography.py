"""The mammography task: does a patch hold an abnormality, and which areas of it do? SYNTHETIC patches by default.

The aim, in the words of the work this task comes from, is to output "the probabilities that each area
of the image contains an abnormality", not a class. Two targets (``Config.target``):

- ``"patch"``: kind ``binary``, ``y`` is ``(N, 1)``, label ``("abnormal",)``: the patch holds a lesion;
- ``"grid"``: kind ``grid``, ``y`` is ``(N, grid * grid)``, labels ``("area r0c0", "area r0c1", ...)``
  row-major from the top-left: one yes/no per area of a ``grid x grid`` map (default 4 x 4).

An area is abnormal when the lesion covers at least ``min_area_pixels`` of its pixels or holds the
lesion's centre (:func:`area_labels`); a patch is abnormal exactly when some area is.

**Default data (``data=None``): SYNTHETIC.** No patient data ships with lossbench. The patches come from
a procedural generator (:mod:`lossbench.tasks._mammo_synth`): power-law "anatomical noise" with
spectrum ``1 / f**beta`` (``beta = 3``, as measured for breast tissue by Burgess et al. 2001), plus, in
``prevalence`` (17%) of the patches, one mass (irregular or spiculated margin) or one cluster of
microcalcifications, ``contrast`` background standard deviations bright. Each patch is item ``i`` of a
seeded sequence (``data_seed``); ``Split.source`` is that index, so the splits are disjoint by
construction. The split (``split_seed``) is stratified by the patch label.

How hard is it? With the default data, a plain PyTorch CNN of this task's shape trained with BCE (Adam
at 1e-3, 12 epochs) reached a test ROC AUC of 0.86 to 0.90 and an accuracy of 0.875 to 0.884 at threshold 0.5,
where always answering "normal" scores 0.83 (3 seeds); after 30 epochs the AUC was 0.975 to 0.983. The
grid target learns more slowly (AUC per area, averaged over the 16 areas, 0.78 to 0.91 after 12 epochs,
0.94 after 30; lossbench's own AUC of a grid pools every area's scores into one ranking): each
area is abnormal in only 2.5% of the patches. Lower ``contrast`` makes both harder. The training
defaults below (Adam at 2e-3, 10 epochs: under a minute on a 2-core CPU) gave BCE a test AUC of 0.93
[0.90, 0.96] and an accuracy of 0.898 at 0.5 over 5 seeds in ``lossbench compare --task mammography``.

**Real data (``data=PATH``): mini-MIAS.** A folder with ``Info.txt`` and ``mdb001.pgm`` ...
(:mod:`lossbench.tasks._mammo_mias`). Each 1024 x 1024 mammogram is shrunk by ``mias_downsample``
(4: to 256 x 256, 0.8 mm pixels) and cut into ``patch_size`` tiles; tiles that are mostly the dark
surroundings of the breast are dropped; tiles and areas are labelled by overlap with the annotated
lesion circles (Info.txt's origin is the bottom-left corner). A mammogram with an abnormality whose
location Info.txt omits (widely spread calcifications) is dropped whole, said in the description and
listed in ``notes["dropped_unlocated"]``; PGM files that Info.txt does not list are left out too, said in the
description and listed in ``notes["unlisted_pgm"]``. Splits keep both films of a woman (``mdb001``/``mdb002``) together,
stratified by whether she has an abnormal tile; ``Split.source`` is each tile's reference number.

Inputs are ``(N, 1, patch_size, patch_size)`` float32, standardised with the mean and standard
deviation of the training split's pixels. The body is ``CNNBody(1, patch_size, channels)``: three
3x3-conv/ReLU/2x2-max-pool blocks take 32 x 32 to 4 x 4, one map position per area for the grid target.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lossbench.models import CNNBody
from lossbench.tasks._common import check_channels, check_fractions, check_images_fit, either, sha256_of, split_indices
from lossbench.tasks._mammo_mias import load_mias
from lossbench.tasks._mammo_synth import generate_patches
from lossbench.tasks.base import DataError, Split, TaskData, TrainingDefaults

SUMMARY = (
    "abnormal or not, per patch (binary) or per area of a 4x4 map (grid): SYNTHETIC mammogram-like patches "
    "(power-law tissue noise, masses, calcifications), small CNN; --data reads mini-MIAS"
)


@dataclass(frozen=True)
class Config(TrainingDefaults):
    """Every default of the mammography task: training, target, synthetic generator and mini-MIAS tiling."""

    # --- training (TrainingDefaults' fields, set for this task) ---
    seeds: int | tuple[int, ...] = 5  # models per loss
    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # patches per minibatch
    lr: float = 2e-3  # Adam's learning rate

    # --- what the model predicts, and the model ---
    target: Literal["patch", "grid"] = "patch"  # one yes/no per patch, or one per area of a grid x grid map
    grid: int = 4  # areas per side; divides patch_size / 2**len(channels) for "grid", patch_size for "patch"
    patch_size: int = 32  # patch side in pixels (64 works too, at about 4x the cost)
    channels: tuple[int, ...] = (8, 16, 32)  # CNN blocks (3x3 conv, ReLU, 2x2 max-pool): 32 -> 4
    min_area_pixels: int = 4  # an area is abnormal if the lesion covers this many of its pixels (or its centre)

    # --- synthetic data (data=None): lossbench.tasks._mammo_synth.generate_patches ---
    n_train: int = 2400  # patches in the training split (about: the split is stratified)
    n_val: int = 800  # patches in the validation split
    n_test: int = 800  # patches in the test split
    prevalence: float = 0.17  # share of abnormal patches (the 83/17 balance of the original work)
    contrast: float = 2.5  # lesion brightness in background standard deviations (calcifications x2.5)
    beta: float = 3.0  # exponent of the background's power spectrum 1 / f**beta (breast tissue: about 3)
    quantum_noise: float = 0.1  # standard deviation of added white noise, in background standard deviations
    mass_fraction: float = 0.5  # share of lesions that are masses (half spiculated); the rest: calcifications
    data_seed: int = 0  # seed of the generator; the split uses split_seed

    # --- mini-MIAS (data=PATH) ---
    mias_downsample: int = 4  # shrink the 1024 x 1024 films by this factor (4: 256 x 256, 0.8 mm pixels)
    mias_min_tissue: float = 0.5  # keep a tile if this share of its pixels is breast (or it touches a lesion)
    mias_tissue_level: float = 0.1  # a pixel is breast if its grey level (0 to 1) is above this
    mias_val_fraction: float = 0.2  # share of women in the validation split
    mias_test_fraction: float = 0.2  # share of women in the test split


QUICK = {"seeds": 2, "epochs": 2, "n_train": 256, "n_val": 128, "n_test": 128}
"""Overrides for a seconds-long smoke run (``--quick``)."""

GENERATED_ONLY = ("n_train", "n_val", "n_test", "prevalence", "contrast", "beta", "quantum_noise", "mass_fraction", "data_seed")
"""The synthetic generator's settings (``data=None``)."""
FOLDER_ONLY = ("mias_downsample", "mias_min_tissue", "mias_tissue_level", "mias_val_fraction", "mias_test_fraction")
"""How a mini-MIAS folder (``data=PATH``) is tiled and split."""


def area_labels(masks: np.ndarray, centres: np.ndarray, grid: int, min_pixels: int) -> np.ndarray:
    """Which areas of each patch hold an abnormality: ``(N, grid * grid)`` bool, row-major from the top-left.

    The ``S x S`` patch is cut into ``grid x grid`` areas of ``S / grid`` pixels a side. Area ``(r, c)``
    is abnormal when

    .. math:: \\#\\{\\text{lesion pixels in the area}\\} \\ge \\text{min\\_pixels}
              \\quad\\text{or}\\quad \\text{the area holds a lesion's centre.}

    The centre rule makes sure that a lesion too small to fill ``min_pixels`` of any one area still
    marks the area it sits in, so a patch holding a lesion always has an abnormal area.

    >>> masks = np.zeros((1, 8, 8), dtype=bool); centres = np.zeros((1, 8, 8), dtype=bool)
    >>> masks[0, 5:8, 0:3] = True  # 9 lesion pixels in the bottom-left area ...
    >>> masks[0, 5:8, 4] = True  # ... and 3 in the bottom-right one
    >>> centres[0, 6, 1] = True
    >>> area_labels(masks, centres, grid=2, min_pixels=4).astype(int).tolist()  # r0c0, r0c1, r1c0, r1c1
    [[0, 0, 1, 0]]
    """
    n, size, _ = masks.shape
    side = size // grid
    counts = masks.reshape(n, grid, side, grid, side).sum(axis=(2, 4))  # (N, grid, grid)
    holds_centre = centres.reshape(n, grid, side, grid, side).any(axis=(2, 4))  # (N, grid, grid)
    return ((counts >= min_pixels) | holds_centre).reshape(n, grid * grid)


def label_names(config: Config) -> tuple[str, ...]:
    """The names of the K outputs: ``("abnormal",)`` or ``("area r0c0", "area r0c1", ...)`` row-major.

    >>> label_names(Config(target="grid", grid=2))
    ('area r0c0', 'area r0c1', 'area r1c0', 'area r1c1')
    """
    if config.target == "patch":
        return ("abnormal",)
    return tuple(f"area r{r}c{c}" for r in range(config.grid) for c in range(config.grid))


def body(config: Config) -> CNNBody:
    """The model body: ``CNNBody(1, patch_size, channels, grid)``, the grid only for the grid target.

    >>> body(Config(target="grid"))
    CNNBody(in_channels=1, image_size=32, channels=(8, 16, 32), grid=4, bias=True)
    """
    grid = config.grid if config.target == "grid" else None
    return CNNBody(in_channels=1, image_size=config.patch_size, channels=tuple(config.channels), grid=grid)


def check_config(config: Config, data: str | Path | None = None) -> None:
    """Raise ``ValueError`` naming the first setting that cannot work, and what would: the shared settings,
    then the synthetic generator's (``data=None``) or the mini-MIAS tiling's (``data=PATH``).

    >>> check_config(Config())
    >>> check_config(Config(target="grid", grid=3))
    Traceback (most recent call last):
    ...
    ValueError: Expected `grid` to divide 4 (patch_size 32 halved by each of the 3 CNN blocks), but got 3; ...
    >>> check_config(Config(prevalence=2.0), data="mias/")  # the generator's settings do not matter for a folder
    """
    if config.target not in ("patch", "grid"):
        raise ValueError(f"Expected `target` to be 'patch' or 'grid', but got {config.target!r}.")
    whole = ("patch_size", "grid", "min_area_pixels") + (("n_train", "n_val", "n_test") if data is None else ("mias_downsample",))
    for name in whole:
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Expected `{name}` to be a positive integer, but got {value!r}.")
    reduction = 2 ** len(check_channels(config.channels))
    if config.patch_size % reduction:
        raise ValueError(
            f"Expected `patch_size` to be a multiple of {reduction} (each of the {len(config.channels)} CNN blocks "
            f"halves it), but got {config.patch_size}; try 32 or 64."
        )
    final = config.patch_size // reduction
    if config.target == "patch" and config.patch_size % config.grid:
        divisors = [d for d in range(1, config.patch_size + 1) if config.patch_size % d == 0]
        raise ValueError(
            f"Expected `grid` to divide patch_size {config.patch_size} (a patch is abnormal when one of its "
            f"grid x grid areas is), but got {config.grid}; valid grids: {divisors}."
        )
    if config.target == "grid" and final % config.grid:
        divisors = [d for d in range(1, final + 1) if final % d == 0]
        raise ValueError(
            f"Expected `grid` to divide {final} (patch_size {config.patch_size} halved by each of the "
            f"{len(config.channels)} CNN blocks), but got {config.grid}; valid grids: {divisors}."
        )
    if data is None:
        _check_generator(config)
    else:
        _check_mias_split(config)


def _check_generator(config: Config) -> None:
    seed = config.data_seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"Expected `data_seed` to be a whole number, 0 or more, but got {seed!r}.")
    for name in ("prevalence", "mass_fraction"):
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"Expected `{name}` to be between 0 and 1, but got {value!r}.")
    if not 0 <= config.contrast < math.inf:
        raise ValueError(
            f"Expected `contrast` to be a finite number, 0 or more (background standard deviations), but got {config.contrast!r}."
        )
    if not 0 <= config.quantum_noise < math.inf:
        raise ValueError(f"Expected `quantum_noise` to be a finite number, 0 or more, but got {config.quantum_noise!r}.")
    if not math.isfinite(config.beta):
        raise ValueError(f"Expected `beta` to be a finite number (breast tissue: about 3), but got {config.beta!r}.")


def _check_mias_split(config: Config) -> None:
    for name in ("mias_min_tissue", "mias_tissue_level"):
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"Expected `{name}` to be between 0 and 1, but got {value!r}.")
    check_fractions(config.mias_val_fraction, config.mias_test_fraction, names=("mias_val_fraction", "mias_test_fraction"))


def check_mias_tiling(config: Config) -> None:
    """Raise ``ValueError`` unless the shrunk 1024 x 1024 films cut into whole patches (checked with ``data`` only).

    The shrunk side, 1024 / ``mias_downsample``, is a power of two, so ``patch_size`` has to be one too.

    >>> check_mias_tiling(Config(patch_size=64, mias_downsample=32))
    Traceback (most recent call last):
    ...
    ValueError: Expected `mias_downsample` to shrink 1024 pixels to a multiple of patch_size 64, but got 32 (1024 / 32 = 32); try 1, 2, 4, 8 or 16.
    >>> check_mias_tiling(Config(patch_size=48))
    Traceback (most recent call last):
    ...
    ValueError: Expected `patch_size` to be a power of two with mini-MIAS data (it must divide 1024 / mias_downsample, itself a power of two), but got 48; try 32 or 64.
    """
    if 1024 % config.mias_downsample == 0 and (1024 // config.mias_downsample) % config.patch_size == 0:
        return
    working = [d for d in (2**k for k in range(11)) if (1024 // d) % config.patch_size == 0]
    if not working and config.patch_size > 1024:
        raise ValueError(f"Expected `patch_size` to fit in a 1024 x 1024 film, but got {config.patch_size}; try 32 or 64.")
    if not working:
        below = 2 ** max(int(config.patch_size).bit_length() - 1, 0)
        raise ValueError(
            "Expected `patch_size` to be a power of two with mini-MIAS data (it must divide 1024 / mias_downsample, "
            f"itself a power of two), but got {config.patch_size}; try {below} or {2 * below}."
        )
    shrunk = f"{1024 / config.mias_downsample:g}"
    raise ValueError(
        f"Expected `mias_downsample` to shrink 1024 pixels to a multiple of patch_size {config.patch_size}, "
        f"but got {config.mias_downsample} (1024 / {config.mias_downsample} = {shrunk}); try {either(working)}."
    )


def load(config: Config, data: str | Path | None = None) -> TaskData:
    """The mammography task: SYNTHETIC patches (``data=None``) or tiles of a mini-MIAS folder (``data=PATH``).

    >>> task = load(Config(n_train=60, n_val=20, n_test=20))
    >>> task.kind, task.label_names, tuple(task.train.x.shape), tuple(task.train.y.shape)
    ('binary', ('abnormal',), (60, 1, 32, 32), (60, 1))
    >>> task.description
    'SYNTHETIC mammogram-like patches, 32x32, 17% abnormal, lesion contrast 2.5 (target: patch)'
    """
    check_config(config, data)
    if data is None:
        return _load_synthetic(config)
    check_mias_tiling(config)
    return _load_mias(config, Path(data))


def _load_synthetic(config: Config) -> TaskData:
    """Generate the patches, label them, split them (stratified) and standardise them."""
    n = config.n_train + config.n_val + config.n_test
    # loading 2,000 patches of 256 x 256 (524 MB) peaked at 2.47 GB more RSS: 4.7 copies, 6 with a margin
    check_images_fit(n, config.patch_size, "synthetic patches", "lower patch_size (32 or 64) or n_train, n_val, n_test", copies=6)
    settings = dict(
        prevalence=config.prevalence,
        contrast=config.contrast,
        beta=config.beta,
        quantum_noise=config.quantum_noise,
        mass_fraction=config.mass_fraction,
        seed=config.data_seed,
    )
    patches = generate_patches(n, config.patch_size, **settings)
    areas = area_labels(patches.masks, patches.centres, config.grid, config.min_area_pixels)  # (n, A)
    assert np.array_equal(areas.any(axis=1), patches.lesion != "none"), "every lesion marks an area"
    parts = split_indices(n, config.n_val / n, config.n_test / n, seed=config.split_seed, strata=areas.any(axis=1))
    train, val, test = _splits(config, patches.images, areas, np.arange(n), parts)

    call = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    return _task_data(
        config,
        (train, val, test),
        description=(
            f"SYNTHETIC mammogram-like patches, {config.patch_size}x{config.patch_size}, "
            f"{config.prevalence:.0%} abnormal, lesion contrast {config.contrast:g} (target: {config.target})"
        ),
        provenance=(
            f"SYNTHETIC, generated at run time: lossbench.tasks._mammo_synth.generate_patches(n={n}, "
            f"size={config.patch_size}, {call}); split with split_seed={config.split_seed}"
        ),
        notes={
            "synthetic": True,
            "lesions": {
                split: {str(k): int(v) for k, v in zip(*np.unique(patches.lesion[idx], return_counts=True))}
                for split, idx in zip(("train", "val", "test"), parts)
            },
            **_standardisation_note(patches.images[parts[0]]),
        },
    )


def _load_mias(config: Config, folder: Path) -> TaskData:
    """Tile the mini-MIAS mammograms, label the tiles, split by woman (stratified) and standardise."""
    tiles = load_mias(
        folder,
        patch=config.patch_size,
        downsample=config.mias_downsample,
        min_tissue=config.mias_min_tissue,
        tissue_level=config.mias_tissue_level,
    )
    areas = area_labels(tiles.masks, tiles.centres, config.grid, config.min_area_pixels)  # (n, A)
    patients = (tiles.refnums - 1) // 2  # mdb001 and mdb002 are one woman
    women, tile_woman = np.unique(patients, return_inverse=True)
    woman_abnormal = np.zeros(len(women), dtype=bool)
    np.logical_or.at(woman_abnormal, tile_woman, areas.any(axis=1))
    parts = split_indices(
        len(women), config.mias_val_fraction, config.mias_test_fraction, seed=config.split_seed, strata=woman_abnormal
    )
    if any(len(p) == 0 for p in parts):
        sizes = ", ".join(f"{name} {len(p)}" for name, p in zip(("train", "val", "test"), parts))
        raise DataError(
            f"{tiles.info_path}: Expected enough women (pairs of films mdb001/mdb002, ...) for a train, validation "
            f"and test split, but got {len(women)} women ({sizes}). Add mammograms or change "
            "mias_val_fraction / mias_test_fraction."
        )
    tile_parts = tuple(np.flatnonzero(np.isin(tile_woman, p)) for p in parts)
    train, val, test = _splits(config, tiles.images, areas, tiles.refnums, tile_parts)

    info_sum = sha256_of(tiles.info_path)
    n_films = len(np.unique(tiles.refnums))
    return _task_data(
        config,
        (train, val, test),
        description=(
            f"mini-MIAS mammograms as {config.patch_size}x{config.patch_size} tiles at 1/{config.mias_downsample} "
            f"scale, {areas.any(axis=1).mean():.0%} abnormal (target: {config.target})"
            + _left_out_words([f"mdb{refnum:03d}" for refnum in tiles.dropped], "films", "an abnormality without a location")
            + _left_out_words(tiles.unlisted, "PGM files", "not in Info.txt")
        ),
        provenance=(
            f"mini-MIAS folder {folder}: {tiles.info_path.name} sha256 {info_sum}; {n_films} films, "
            f"{len(women)} women; split by woman with split_seed={config.split_seed}"
        ),
        notes={
            "synthetic": False,
            "dropped_unlocated": [f"mdb{r:03d}" for r in tiles.dropped],
            "unlisted_pgm": list(tiles.unlisted),
            "women": {name: len(p) for name, p in zip(("train", "val", "test"), parts)},
            **_standardisation_note(tiles.images[tile_parts[0]]),
        },
    )


def _left_out_words(names: Sequence[str], kind: str, why: str) -> str:
    """The description's note on what the loader left out and why, '' for nothing; up to three are named
    (the task's notes list them all: ``dropped_unlocated``, ``unlisted_pgm``).

    >>> _left_out_words([], "films", "an abnormality without a location")
    ''
    >>> _left_out_words(["mdb007"], "films", "an abnormality without a location")
    '; mdb007 left out (an abnormality without a location)'
    >>> _left_out_words(["mdb321.pgm", "mdb322.pgm"], "PGM files", "not in Info.txt")
    '; 2 PGM files left out (not in Info.txt: mdb321.pgm, mdb322.pgm)'
    >>> _left_out_words([f"mdb{n}" for n in range(7, 11)], "films", "an abnormality without a location")
    '; 4 films left out (an abnormality without a location)'
    """
    if not names:
        return ""
    if len(names) == 1:
        return f"; {names[0]} left out ({why})"
    listed = f": {', '.join(names)}" if len(names) <= 3 else ""
    return f"; {len(names)} {kind} left out ({why}{listed})"


def _task_data(config: Config, splits: tuple[Split, Split, Split], description: str, provenance: str, notes: dict) -> TaskData:
    """The task from its three splits: kind, label names and CNN body follow the config's target."""
    train, val, test = splits
    return TaskData(
        name="mammography",
        kind="binary" if config.target == "patch" else "grid",
        label_names=label_names(config),
        train=train,
        val=val,
        test=test,
        body=body(config),
        description=description,
        provenance=provenance,
        notes=notes,
    )


def _splits(
    config: Config, images: np.ndarray, areas: np.ndarray, source: np.ndarray, parts: tuple[np.ndarray, ...]
) -> tuple[Split, Split, Split]:
    """Three Splits: pixels standardised with the training split's statistics, targets per the config."""
    mean, std = _pixel_stats(images[parts[0]])
    y = areas.any(axis=1, keepdims=True) if config.target == "patch" else areas  # (n, K)
    return tuple(
        Split(
            x=torch.from_numpy(((images[idx] - mean) / std).astype(np.float32)[:, None]),  # (N, 1, S, S)
            y=torch.from_numpy(y[idx].astype(np.float32)),  # (N, K)
            source=source[idx],
        )
        for idx in parts
    )


def _pixel_stats(train_images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of every training pixel (a constant image set gets std 1)."""
    mean = float(train_images.mean(dtype=np.float64))
    std = float(train_images.std(dtype=np.float64))
    return mean, std if std > 0 else 1.0


def _standardisation_note(train_images: np.ndarray) -> dict:
    """The standardisation statistics, for config.json."""
    mean, std = _pixel_stats(train_images)
    return {"pixel_mean": mean, "pixel_std": std}

