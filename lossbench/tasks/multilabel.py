"""The multi-label image task: which digits (or objects) are in this picture? K independent yes/no labels.

Default data: canvases of real handwriting
-------------------------------------------
Composed deterministically at run time from scikit-learn's bundled scanned digits
(:func:`sklearn.datasets.load_digits`: 1,797 8x8 scans, values 0 to 16). Each canvas is a ``grid x grid``
board of 8-pixel cells (2 x 2 by default, a 16 x 16 canvas) holding 1 to 4 digits of DISTINCT classes
in random cells; its label is the multi-hot vector over the 10 digit classes, so K = 10 and
``label_names = ("0", ..., "9")``.

1. The scans are split into train/val/test FIRST (stratified by digit class, from ``split_seed``), and
   each split's canvases use only that split's scans: no scan appears in two splits.
2. Each canvas draws a number of digits k (uniform in ``min_digits..max_digits``), k distinct classes,
   k distinct cells, and for each class one scan of that class from the split's scans.
3. A scan is upscaled (each pixel becomes ``upscale x upscale``) and pasted in its cell, shifted by up
   to ``jitter`` pixels each way (kept inside the canvas); where a shifted digit overlaps a neighbour's
   blank margin the brighter pixel wins, so nothing is erased.
4. Values are scaled to [0, 1], float32, shape ``(N, 1, H, W)`` with ``H = W = grid * 8 * upscale``.

``Split.source`` is ``(N, max_digits)``: the indices (into ``load_digits()``) of the scans a canvas
holds, in increasing digit class, ``-1`` in empty slots. With the defaults each label is present in
about a quarter of the canvases (2.5 digits of 10 on average).

Why these defaults: the budget is 3 losses x 5 seeds trained in about a minute on a 2-core CPU. A
16 x 16 canvas costs less than half a 24 x 24 one, and a small CNN learns it much sooner (on 3 x 3
canvases it stays at "no digit anywhere" for most of 10 epochs); minibatches of 32 give 630 Adam steps
in 10 epochs, which takes the models past that plateau (with 128 they never leave it).

Real data: the fastai PASCAL_2007 layout
-----------------------------------------
``load(config, data=FOLDER)``: ``FOLDER/train.csv`` has the columns ``fname`` (an image file in
``FOLDER/train/``), ``labels`` (space-separated label names) and ``is_valid`` (True/False or 1/0). Each
image is read with Pillow, converted to RGB and squashed (bilinear) to ``image_size x image_size``,
scaled to [0, 1]. The label vocabulary is every label in the file, sorted. The ``is_valid`` rows are the
validation split; a seeded random ``test_fraction`` of the other rows is the test split (a multi-label
split cannot be stratified on every label at once); the rest trains. ``Split.source`` holds the
``fname`` of each row.

Model: the small CNN of :class:`lossbench.models.CNNBody` (3x3 conv, ReLU, 2x2 max-pool per entry of
``channels``, then a global average), the same body for every loss.
"""
from __future__ import annotations

import re

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lossbench.models import CNNBody
from lossbench.tasks._common import (
    check_channels,
    check_fraction,
    check_fractions,
    check_images_fit,
    find_columns,
    read_csv,
    read_image,
    split_indices,
)
from lossbench.tasks.base import DataError, Split, TaskData, TrainingDefaults

DIGIT_SIDE = 8  # load_digits scans are 8 x 8 pixels
DIGIT_MAX = 16.0  # ... with values 0 to 16
N_CLASSES = 10


@dataclass(frozen=True)
class Config(TrainingDefaults):
    """Every default of the multi-label task: training, generated canvases, real photos and model."""

    # training
    seeds: int | tuple[int, ...] = 5  # models per loss (seeds 0..4)
    epochs: int = 10  # passes over the training canvases
    batch_size: int = 32  # canvases per minibatch: small, so 10 epochs make 630 steps (128 barely learns)
    lr: float = 3e-3  # Adam's learning rate (1e-2 stalls some softmax-across-labels models)
    optimizer: Literal["adam", "sgd"] = "adam"
    # generated canvases (data=None); the split seed (TrainingDefaults.split_seed) seeds everything
    grid: int = 2  # cells per side of a canvas: 2 -> 2 x 2 cells of 8 px, a 16 x 16 canvas
    upscale: int = 1  # each scan pixel becomes upscale x upscale pixels; cell side = 8 * upscale
    jitter: int = 1  # a digit is shifted by up to this many pixels each way from its cell's corner
    min_digits: int = 1  # fewest digits on a canvas
    max_digits: int = 4  # most digits on a canvas (distinct classes, so at most 10 and grid * grid)
    n_train: int = 2000  # canvases composed from the training scans
    n_val: int = 500  # canvases composed from the validation scans
    n_test: int = 500  # canvases composed from the test scans
    val_fraction: float = 0.2  # share of the 1,797 scans kept for validation canvases (stratified by class)
    test_fraction: float = 0.2  # share of the scans for test canvases; with data=FOLDER: of the non-is_valid rows
    # real photos (data=FOLDER)
    image_size: int = 32  # photos are squashed to image_size x image_size RGB
    # model
    channels: tuple[int, ...] = (16, 32, 64)  # output channels of the CNN blocks, one 2x2 pool each
    bias: bool = True  # biases in the convolutions and the head


QUICK = {"seeds": 2, "epochs": 2, "n_train": 128, "n_val": 64, "n_test": 64}
"""Overrides for a seconds-long smoke run."""

GENERATED_ONLY = ("grid", "upscale", "jitter", "min_digits", "max_digits", "n_train", "n_val", "n_test", "val_fraction")
"""The canvases' settings: a PASCAL_2007 folder (``data=PATH``) validates on its ``is_valid`` rows."""
FOLDER_ONLY = ("image_size",)
"""The photos' size: generated canvases are ``grid * 8 * upscale`` pixels a side."""

SUMMARY = ("which digits are present (multi-label, K=10): canvases of 1-4 real scanned digits, small CNN; "
           "--data reads a PASCAL_2007 folder (train.csv and train/)")


# --------------------------------------------------------------------------------------------------
# Generated canvases
# --------------------------------------------------------------------------------------------------


def compose(
    scans: np.ndarray,
    classes: np.ndarray,
    scan_ids: np.ndarray,
    n: int,
    rng: np.random.Generator,
    grid: int = 3,
    upscale: int = 1,
    jitter: int = 1,
    min_digits: int = 1,
    max_digits: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compose ``n`` canvases of distinct digits from the given scans (those of ONE split).

    ``scans`` is ``(M, 8, 8)`` in [0, 1], ``classes`` their digit classes ``(M,)``, ``scan_ids`` the
    indices to record in ``source``. Returns ``x`` ``(n, 1, H, W)`` float32 in [0, 1], ``y`` ``(n, 10)``
    float32 multi-hot and ``source`` ``(n, max_digits)`` int64 (-1 in empty slots), H = W = grid * 8 * upscale.

    >>> scans = np.ones((10, 8, 8)); classes = np.arange(10)
    >>> x, y, source = compose(scans, classes, classes + 100, n=2, rng=np.random.default_rng(0), grid=2, jitter=0)
    >>> x.shape, y.shape, source.shape
    ((2, 1, 16, 16), (2, 10), (2, 4))
    >>> bool((x.sum(axis=(1, 2, 3)) == 64 * y.sum(axis=1)).all())  # each digit paints 8 x 8 pixels
    True
    """
    side = DIGIT_SIDE * upscale
    height = grid * side
    digits = np.kron(scans, np.ones((upscale, upscale))) if upscale > 1 else scans  # (M, side, side)
    by_class = [np.flatnonzero(classes == c) for c in range(N_CLASSES)]
    x = np.zeros((n, height, height), dtype=np.float32)
    y = np.zeros((n, N_CLASSES), dtype=np.float32)
    source = np.full((n, max_digits), -1, dtype=np.int64)
    for i in range(n):
        # 1. how many digits, which classes (distinct, in increasing order), which cells
        k = int(rng.integers(min_digits, max_digits + 1))
        present = np.sort(rng.permutation(N_CLASSES)[:k])
        cells = rng.permutation(grid * grid)[:k]
        for slot, (digit, cell) in enumerate(zip(present, cells)):
            # 2. one scan of that class, pasted at the cell's corner plus a jitter, inside the canvas
            pick = by_class[digit][rng.integers(len(by_class[digit]))]
            dy, dx = rng.integers(-jitter, jitter + 1, size=2).tolist()
            top = min(max((cell // grid) * side + dy, 0), height - side)
            left = min(max((cell % grid) * side + dx, 0), height - side)
            patch = x[i, top : top + side, left : left + side]
            np.maximum(patch, digits[pick], out=patch)  # overlaps keep the brighter pixel
            y[i, digit] = 1.0
            source[i, slot] = scan_ids[pick]
    return x[:, None], y, source  # (n, 1, H, W), (n, 10), (n, max_digits)


def _check_generator(config: Config) -> None:
    """Raise ``ValueError`` for generator settings that cannot work."""
    for name in ("grid", "upscale", "min_digits", "n_train", "n_val", "n_test"):
        value = getattr(config, name)
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"Expected `{name}` to be a whole number, 1 or more, but got {value!r}.")
    if not (isinstance(config.jitter, int) and 0 <= config.jitter < DIGIT_SIDE * config.upscale):
        raise ValueError(
            f"Expected `jitter` to be a whole number from 0 to {DIGIT_SIDE * config.upscale - 1} "
            f"(less than the cell side), but got {config.jitter!r}."
        )
    most = min(N_CLASSES, config.grid * config.grid)
    if config.min_digits > most:  # the setting to change is min_digits, whatever max_digits is
        raise ValueError(
            f"Expected `min_digits` to be at most {most} (distinct digit classes, one per cell of a {config.grid} x "
            f"{config.grid} grid), but got {config.min_digits!r}."
        )
    if not (isinstance(config.max_digits, int) and config.min_digits <= config.max_digits <= most):
        raise ValueError(
            f"Expected `max_digits` to be from min_digits ({config.min_digits}) to {most} (distinct digit "
            f"classes, one per cell of a {config.grid} x {config.grid} grid), but got {config.max_digits!r}."
        )


def generate(config: Config) -> tuple[Split, Split, Split]:
    """The three splits of digit canvases: scans split first (stratified by class), then composed.

    Everything comes from ``config.split_seed``: the scan split from ``default_rng(split_seed)``, the
    canvases of split s (0 train, 1 val, 2 test) from ``default_rng((split_seed, s))``, so changing the
    number of training canvases leaves the validation and test canvases as they were.

    >>> train, val, test = generate(Config(n_train=8, n_val=4, n_test=4))
    >>> train.x.shape, train.y.shape, train.source.shape, train.x.dtype
    (torch.Size([8, 1, 16, 16]), torch.Size([8, 10]), (8, 4), torch.float32)
    """
    from sklearn.datasets import load_digits

    _check_generator(config)
    digits = load_digits()
    scans = digits.images / DIGIT_MAX  # (1797, 8, 8) in [0, 1]
    classes = digits.target  # (1797,)
    parts = split_indices(len(scans), config.val_fraction, config.test_fraction, config.split_seed, classes)
    remedies = ("lower val_fraction or test_fraction", "raise val_fraction", "raise test_fraction")
    for name, ids, remedy in zip(("training", "validation", "test"), parts, remedies):
        absent = sorted(set(range(N_CLASSES)) - set(classes[ids].tolist()))
        if absent:  # a canvas may ask for any digit, so every split needs scans of all ten
            raise ValueError(
                f"Expected the {name} split of the scans to hold every digit, but its {len(ids)} of the {len(scans)} "
                f"scans (val_fraction={config.val_fraction}, test_fraction={config.test_fraction}) include no "
                f"{', '.join(map(str, absent))}; {remedy}."
            )
    splits = []
    for s, (ids, n) in enumerate(zip(parts, (config.n_train, config.n_val, config.n_test))):
        x, y, source = compose(
            scans[ids], classes[ids], ids, n, np.random.default_rng((config.split_seed, s)),
            grid=config.grid, upscale=config.upscale, jitter=config.jitter,
            min_digits=config.min_digits, max_digits=config.max_digits,
        )  # fmt: skip
        splits.append(Split(x=torch.from_numpy(x), y=torch.from_numpy(y), source=source))
    return splits[0], splits[1], splits[2]


# --------------------------------------------------------------------------------------------------
# Real photos: the fastai PASCAL_2007 layout
# --------------------------------------------------------------------------------------------------

_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


def read_pascal(
    folder: str | Path, image_size: int
) -> tuple[np.ndarray, list[list[str]], np.ndarray, np.ndarray]:
    """Read a PASCAL_2007-style folder: ``train.csv`` plus the images in ``train/``, strictly checked.

    Returns ``images`` ``(N, 3, image_size, image_size)`` uint8, each row's label names, ``is_valid``
    ``(N,)`` bool and ``fnames`` ``(N,)`` str. Raises :class:`DataError` naming the file and row for an
    empty or headerless file, missing columns, an empty label row, an ``is_valid`` that is not
    True/False/1/0, a repeated ``fname``, and a missing or unreadable image.

    >>> import tempfile
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp()); (folder / "train").mkdir()
    >>> Image.new("RGB", (50, 40), (200, 30, 30)).save(folder / "train" / "000005.jpg")
    >>> _ = (folder / "train.csv").write_text("fname,labels,is_valid\\n000005.jpg,chair person,True\\n")
    >>> images, labels, is_valid, fnames = read_pascal(folder, image_size=16)
    >>> images.shape, labels, is_valid.tolist(), fnames.tolist()
    ((1, 3, 16, 16), [['chair', 'person']], [True], ['000005.jpg'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"Expected `data` to be a folder holding train.csv and train/ (the fastai PASCAL_2007 layout), "
            f"but {folder} {'is a file' if folder.exists() else 'does not exist'}."
        )
    table = read_csv(folder / "train.csv")
    names = find_columns(table, ("fname", "labels", "is_valid"))
    if not (folder / "train").is_dir():
        raise DataError(
            f"Expected {folder / 'train'} to be the folder of the images that train.csv names (the fastai "
            f"PASCAL_2007 layout), but {'it is a file' if (folder / 'train').exists() else 'there is none'}."
        )
    frame = table.frame
    labels: list[list[str]] = []
    is_valid = np.zeros(len(frame), dtype=bool)
    fnames = frame[names["fname"]].to_numpy(dtype=object)
    seen: dict[str, int] = {}
    # at the peak: the uint8 photos (3 bytes a pixel), their float32 copy (12) and its split copies (12), in
    # units of one float32 channel (4 bytes): about 7
    check_images_fit(len(frame), image_size, f"photos of {folder / 'train.csv'}", "lower image_size", copies=7)
    images = np.zeros((len(frame), 3, image_size, image_size), dtype=np.uint8)
    for i, row in enumerate(frame.index):
        fname = str(fnames[i])
        if not fname:
            raise DataError(f"{table.where(row)}: `fname` is empty; expected the name of an image in train/.")
        if Path(fname).is_absolute() or ".." in Path(fname).parts:  # the data are train/'s images, not any file
            raise DataError(f"{table.where(row)}: `fname` {fname!r} leads out of train/; expected the name of an image in train/.")
        if fname in seen:
            raise DataError(f"{table.where(row)}: the image {fname!r} is listed twice (first in row {seen[fname]}).")
        seen[fname] = row
        row_labels = frame.at[row, names["labels"]].split()
        if not row_labels:
            raise DataError(
                f"{table.where(row)}: `labels` is empty for {fname}; expected at least one label name "
                "(space-separated, e.g. 'chair person')."
            )
        joined = [name for name in row_labels if any(sep in name for sep in ",;|")]
        if joined:
            raise DataError(
                f"{table.where(row)}: the label {joined[0]!r} of {fname} holds a separator; expected label names "
                f"separated by spaces, e.g. {' '.join(n for n in re.split('[,;|]', joined[0]) if n)!r}."
            )
        labels.append(row_labels)
        flag = frame.at[row, names["is_valid"]].lower()
        if flag not in _TRUE | _FALSE:
            raise DataError(
                f"{table.where(row)}: expected `is_valid` to be True, False, 1 or 0, "
                f"but got {frame.at[row, names['is_valid']]!r}."
            )
        is_valid[i] = flag in _TRUE
        images[i] = read_image(folder / "train" / fname, image_size, "RGB", table.where(row))
    return images, labels, is_valid, fnames.astype(str)


def _pascal_splits(config: Config, folder: Path) -> tuple[tuple[str, ...], Split, Split, Split]:
    """Read the folder, build multi-hot targets over the sorted vocabulary and split the rows."""
    images, labels, is_valid, fnames = read_pascal(folder, config.image_size)
    vocabulary = tuple(sorted({name for row in labels for name in row}))
    if len(vocabulary) < 2:
        raise DataError(
            f"{folder / 'train.csv'}: every row has the one label {vocabulary[0]!r}; expected at least two "
            "distinct labels, since a multi-label task learns which of several labels each image holds."
        )
    column = {name: j for j, name in enumerate(vocabulary)}
    y = np.zeros((len(labels), len(vocabulary)), dtype=np.float32)  # (N, K) multi-hot
    for i, row in enumerate(labels):
        y[i, [column[name] for name in row]] = 1.0
    x = images.astype(np.float32) / 255.0  # (N, 3, S, S) in [0, 1]

    # is_valid rows validate; a seeded random test_fraction of the others tests; the rest trains
    val = np.flatnonzero(is_valid)
    rest = np.random.default_rng(config.split_seed).permutation(np.flatnonzero(~is_valid))
    n_test = int(round(len(rest) * config.test_fraction))
    test, train = np.sort(rest[:n_test]), np.sort(rest[n_test:])
    for name, part in (("is_valid (validation)", val), ("test", test), ("training", train)):
        if len(part) == 0:
            raise DataError(
                f"{folder / 'train.csv'}: the {name} split is empty ({len(val)} rows have is_valid True, "
                f"{len(is_valid) - len(val)} False, test_fraction={config.test_fraction}); expected rows of both "
                "kinds and enough non-validation rows to carve a test split from."
            )

    def split(rows: np.ndarray) -> Split:
        return Split(x=torch.from_numpy(x[rows]), y=torch.from_numpy(y[rows]), source=fnames[rows])

    return vocabulary, split(train), split(val), split(test)


# --------------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------------


def load(config: Config, data: str | Path | None = None) -> TaskData:
    """Load the multi-label task: composed digit canvases (``data=None``) or a PASCAL_2007 folder.

    >>> task = load(Config(n_train=16, n_val=8, n_test=8))
    >>> task.kind, task.label_names[:3], task.train.x.shape
    ('multilabel', ('0', '1', '2'), torch.Size([16, 1, 16, 16]))
    >>> task.body
    CNNBody(in_channels=1, image_size=16, channels=(16, 32, 64), grid=None, bias=True)
    """
    if data is None:
        check_fractions(config.val_fraction, config.test_fraction)
    else:  # a folder's validation split is its is_valid rows
        check_fraction("test_fraction", config.test_fraction)
    channels = check_channels(config.channels)
    if data is None:
        _check_generator(config)  # grid=0 is named as grid=0, not as an image side of 0
        side = config.grid * DIGIT_SIDE * config.upscale
        in_channels, label_names = 1, tuple(str(d) for d in range(N_CLASSES))
        settings = f"grid x {DIGIT_SIDE} x upscale = {config.grid} x {DIGIT_SIDE} x {config.upscale}"
    else:
        side = config.image_size
        in_channels = 3
        settings = "image_size"
    if not (isinstance(side, int) and side >= 2 ** len(channels)):
        raise ValueError(
            f"Expected the image side ({settings}) to be at least 2 ** len(channels) = {2 ** len(channels)} "
            f"(one 2x2 pool per CNN block), but got {side!r}; use larger images or fewer channels."
        )

    if data is None:
        # making 3,000 canvases of 128 x 128 (188 MB) peaked at 275 MB more RSS: 1.5 copies, 2 with a margin
        check_images_fit(config.n_train + config.n_val + config.n_test, side, "digit canvases", "lower upscale or grid, or n_train, n_val, n_test",
                         copies=2)
        train, val, test = generate(config)
        description = (
            f"synthetic canvases of 1-{config.max_digits} real scanned digits ({side}x{side}), which digits "
            "are present (K=10)"
        )
        provenance = (
            f"composed from sklearn.datasets.load_digits (1,797 8x8 scans) with split_seed={config.split_seed}: "
            f"grid={config.grid}, upscale={config.upscale}, jitter={config.jitter}, "
            f"{config.min_digits}-{config.max_digits} digits, {config.n_train}/{config.n_val}/{config.n_test} canvases"
        )
        scans_used = [len(np.unique(s.source[s.source >= 0])) for s in (train, val, test)]
        notes = {"generator": "digit canvases", "image_size": side, "distinct_scans_per_split": scans_used}
    else:
        folder = Path(data)
        label_names, train, val, test = _pascal_splits(config, folder)
        description = f"photos from {folder.name} ({side}x{side} RGB), which of {len(label_names)} labels are present"
        provenance = (
            f"{folder} (fastai PASCAL_2007 layout: train.csv + train/), "
            f"test rows carved with split_seed={config.split_seed}"
        )
        notes = {"folder": str(folder), "image_size": side, "rows": len(train) + len(val) + len(test)}
    return TaskData(
        name="multilabel",
        kind="multilabel",
        label_names=label_names,
        train=train,
        val=val,
        test=test,
        body=CNNBody(in_channels=in_channels, image_size=side, channels=channels, bias=config.bias),
        description=description,
        provenance=provenance,
        notes=notes,
    )
