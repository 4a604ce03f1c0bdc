"""Helpers the task loaders share: strict CSV reading, checksums, seeded splits, standardisation, images."""
from __future__ import annotations

import csv
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from lossbench.tasks.base import DataError

DATASETS_DIR = Path(__file__).resolve().parents[2] / "datasets"
"""The repository's ``datasets/`` folder, where shipped data files live."""


# --------------------------------------------------------------------------------------------------
# Files: checksums and CSV tables
# --------------------------------------------------------------------------------------------------


def either(options: Sequence) -> str:
    """Options as words: ``"male or female"``, ``"C, Q or S"``.

    >>> either(("male", "female")), either((1, 2, 3)), either((0,))
    ('male or female', '1, 2 or 3', '0')
    """
    words = [str(option) for option in options]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def sha256_of(path: str | Path) -> str:
    """The SHA-256 checksum of a file's bytes, as 64 hex digits.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abc")
    >>> sha256_of(f.name)[:16]
    'ba7816bf8f01cfea'
    >>> os.remove(f.name)
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`DataError` unless the file's SHA-256 equals ``expected``; the message gives both.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abc")
    >>> verify_sha256(f.name, sha256_of(f.name))  # silent when they match
    >>> os.remove(f.name)
    """
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path} has sha256 {actual}, but the shipped file has sha256 {expected}: the file was changed "
            "or damaged. Restore it from the repository (git checkout), or pass your own copy as data."
        )


@dataclass(frozen=True)
class CsvTable:
    """A CSV file read as text: every cell a stripped ``str``, every row checked to have the header's width."""

    path: Path
    frame: pd.DataFrame  # index = row number: 1 is the first row after the header
    lines: dict[int, int]  # row number -> line of the file the row starts on (the header is line 1)

    def where(self, row: int) -> str:
        """Where a row is, for error messages: ``"photos/train.csv, row 3 (line 4)"``, the file as given."""
        return f"{self.path}, row {row} (line {self.lines[row]})"


def read_csv(path: str | Path) -> CsvTable:
    """Read a comma-separated file with a header line, strictly: text only, no guessing of types.

    Cells keep their text, stripped of surrounding spaces (``""`` for an empty cell); blank lines are
    skipped; a byte-order mark (as Excel writes) is ignored. Raises :class:`DataError` naming the file
    (and the line) when the file is missing, a zip or gzip archive (Kaggle's ``titanic.zip``: unpack it
    first), empty, not UTF-8 text, has a row whose number of fields
    differs from the header's, or has no rows at all.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    ...     _ = f.write('name,age\\n"Allen, Miss. Elisabeth",29\\n')
    >>> table = read_csv(f.name)
    >>> table.frame.loc[1, "name"], table.frame.loc[1, "age"]
    ('Allen, Miss. Elisabeth', '29')
    >>> os.remove(f.name)
    """
    path = Path(path)
    if not path.is_file():
        found = not_a_file(path) if path.exists() else "no such file"
        raise DataError(f"Expected a CSV file at {path}, but there is {found}.")
    with open(path, "rb") as f:
        start_bytes = f.read(4)
    for magic, archive, unpack in ((b"PK\x03\x04", "zip", "unzip"), (b"\x1f\x8b", "gzip", "gunzip")):
        if start_bytes.startswith(magic):
            raise DataError(
                f"{path} is a {archive} archive, not a CSV file: unpack it and pass the CSV file inside ({unpack} {path.name})."
            )
    rows: list[list[str]] = []
    lines: dict[int, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)  # a stray quote is an error, not a silently merged row
            header = None
            start = 1  # the line the next record starts on
            for record in reader:
                if not record or all(not cell.strip() for cell in record):
                    start = reader.line_num + 1
                    continue  # a blank line
                if header is None:
                    header = [cell.strip() for cell in record]
                else:
                    if len(record) != len(header):
                        raise DataError(_width_problem(path, start, header, record))
                    rows.append([cell.strip() for cell in record])
                    lines[len(rows)] = start
                start = reader.line_num + 1
    except UnicodeDecodeError as err:
        raise DataError(f"{path} could not be read as a CSV file: it is not UTF-8 text ({err}).") from None
    except csv.Error as err:
        raise DataError(
            f"{path}, line {reader.line_num}: could not be read as CSV ({err}); expected comma-separated "
            'values, with double quotes around a value that holds a comma or a quote (written "").'
        ) from None
    if header is None:
        raise DataError(f"{path} is empty: expected a header line and at least one row.")
    if not rows:
        raise DataError(f"{path} has a header but no rows: expected at least one row after the header.")
    frame = pd.DataFrame(rows, columns=header, index=pd.RangeIndex(1, len(rows) + 1), dtype=object)
    return CsvTable(path=path, frame=frame, lines=lines)


def _width_problem(path: Path, line: int, header: list[str], record: list[str]) -> str:
    """Why a row has another number of fields than the header: its quoting, or a file not separated by commas.

    >>> _width_problem(Path("t.csv"), 2, ["name;age"], ["Allen", " Miss.;29"])
    "t.csv, line 2: expected 1 fields like the header, but got 2. The header holds no comma but ';': expected a comma-separated file (save it as CSV with commas)."
    """
    problem = f"{path}, line {line}: expected {len(header)} fields like the header, but got {len(record)}."
    hint = _separator_hint(header)
    if hint:
        return f"{problem} {hint}"
    return f'{problem} Check the quoting of that line (a comma inside a value needs the value in double quotes, "like, this").'


def _separator_hint(header: Sequence[str]) -> str:
    """A sentence for a header that is one field holding another separator, else ''.

    >>> _separator_hint(["name|age"]), _separator_hint(["name", "age"])
    ("The header holds no comma but '|': expected a comma-separated file (save it as CSV with commas).", '')
    """
    if len(header) == 1:
        others = [sep for sep in (";", "\t", "|") if sep in str(header[0])]
        if others:
            return f"The header holds no comma but {others[0]!r}: expected a comma-separated file (save it as CSV with commas)."
    return ""


def find_columns(table: CsvTable, wanted: Sequence[str]) -> dict[str, str]:
    """Map each wanted column name to the file's own spelling, matching case-insensitively.

    Raises :class:`DataError` listing every missing column, or naming a wanted column that appears
    twice. Other columns are ignored, however they are named: blank ones (the trailing commas a
    spreadsheet may write) and repeated ones included.

    >>> import pandas as pd
    >>> table = CsvTable(Path("train.csv"), pd.DataFrame(columns=["Survived", "Age", "", "", "note", "Note"]), {})
    >>> find_columns(table, ["survived", "age"])
    {'survived': 'Survived', 'age': 'Age'}
    """
    wanted_keys = {name.lower() for name in wanted}
    by_lower: dict[str, str] = {}
    for name in table.frame.columns:
        key = str(name).lower()
        if key not in wanted_keys:
            continue
        if key in by_lower:
            raise DataError(
                f"{table.path}: the column {name!r} appears twice (as {by_lower[key]!r} too); "
                "expected each column once (names are compared case-insensitively)."
            )
        by_lower[key] = str(name)
    missing = [name for name in wanted if name.lower() not in by_lower]
    if missing:
        raise DataError(
            f"{table.path} is missing the required column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, table.frame.columns))}. {_separator_hint(list(table.frame.columns))}".rstrip()
        )
    return {name: by_lower[name.lower()] for name in wanted}


# --------------------------------------------------------------------------------------------------
# Splits and preprocessing
# --------------------------------------------------------------------------------------------------


def check_fraction(name: str, value: float) -> None:
    """Raise ``ValueError`` unless the share called ``name`` lies in (0, 1).

    >>> check_fraction("test_fraction", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: Expected `test_fraction` to be between 0 and 1 (exclusive), but got 1.0.
    """
    if not 0.0 < value < 1.0:
        raise ValueError(f"Expected `{name}` to be between 0 and 1 (exclusive), but got {value!r}.")


def check_fractions(val_fraction: float, test_fraction: float, names: tuple[str, str] = ("val_fraction", "test_fraction")) -> None:
    """Raise ``ValueError`` unless both fractions lie in (0, 1) and leave something to train on; ``names``
    are the settings' names for the message.

    >>> check_fractions(0.2, 0.2)
    >>> check_fractions(0.5, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: Expected `val_fraction + test_fraction` to be below 1, but got 1.0; ...
    """
    check_fraction(names[0], val_fraction)
    check_fraction(names[1], test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"Expected `{names[0]} + {names[1]}` to be below 1, but got {val_fraction + test_fraction!r}; "
            "the training split takes what is left."
        )


def not_a_file(path: Path) -> str:
    """What an existing path that is not a regular file is, in a few words.

    >>> not_a_file(Path("/")), not_a_file(Path("/dev/null"))
    ('a folder', 'a device or a pipe, not a regular file')
    """
    return "a folder" if path.is_dir() else "a device or a pipe, not a regular file"


def check_images_fit(n: int, side: int, what: str, instead: str, copies: float) -> None:
    """Refuse at once ``n`` generated images of ``side x side`` float32 pixels that this machine could not
    hold while making them, instead of failing deep inside numpy. ``copies``: the peak memory of making
    them, in multiples of the finished images (measured for each generator where it calls this).

    >>> check_images_fit(3000, 10**5, "synthetic patches", "lower patch_size", copies=8)
    Traceback (most recent call last):
    ...
    ValueError: Expected the synthetic patches to fit in memory, but 3,000 of 100000 x 100000 pixels need about 894,069.7 GiB to make, ...
    """
    needed = n * side * side * 4 * copies
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: nothing to compare with
        return
    if needed > available:
        raise ValueError(
            f"Expected the {what} to fit in memory, but {n:,} of {side} x {side} pixels need about {needed / 2**30:,.1f} GiB "
            f"to make, and this machine has {available / 2**30:,.1f} GiB; {instead}."
        )


def check_channels(channels: Sequence[int]) -> tuple[int, ...]:
    """The CNN's block widths as a tuple, or a ``ValueError`` unless they are one or more whole numbers >= 1.

    >>> check_channels([8, 16])
    (8, 16)
    >>> check_channels((8, 0))
    Traceback (most recent call last):
    ...
    ValueError: Expected `channels` to be a non-empty tuple of whole numbers, 1 or more, but got (8, 0).
    """
    widths = tuple(channels) if isinstance(channels, (tuple, list)) else ()
    if not widths or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1 for c in widths):
        raise ValueError(f"Expected `channels` to be a non-empty tuple of whole numbers, 1 or more, but got {channels!r}.")
    return widths


def split_indices(
    n: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    strata: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a seeded train/val/test split of ``n`` items, stratified when ``strata`` is given.

    Within each stratum (each distinct value of ``strata``; one stratum when ``None``) the items are
    shuffled with ``numpy.random.default_rng(seed)``, then ``round(n_s * test_fraction)`` go to test,
    ``round(n_s * val_fraction)`` to validation and the rest to training. So every split keeps the
    strata's proportions. Each returned array is sorted; together they hold every index exactly once.

    >>> train, val, test = split_indices(10, 0.2, 0.2, seed=0, strata=np.array([0] * 5 + [1] * 5))
    >>> len(train), len(val), len(test)
    (6, 2, 2)
    >>> sorted(np.concatenate([train, val, test]).tolist()) == list(range(10))
    True
    """
    check_fractions(val_fraction, test_fraction)
    strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    assert len(strata) == n, "one stratum label per item"
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in np.unique(strata):  # sorted, so the order of the draws does not depend on the data order
        members = rng.permutation(np.flatnonzero(strata == value))
        n_test = int(round(len(members) * test_fraction))
        n_val = int(round(len(members) * val_fraction))
        parts[2].append(members[:n_test])
        parts[1].append(members[n_test : n_test + n_val])
        parts[0].append(members[n_test + n_val :])
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


def fit_standardizer(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of the TRAINING rows (a constant column gets std 1).

    A column is constant when all its values are equal, not when its computed std is 0: the std of equal
    values can come out a rounding error above 0 (1.4e-17 for three 0.1s), which would turn the column
    into +-1 and divide any other value by 1e-17; a constant column is shifted by its value, to 0.

    .. math:: \\mu_j = \\frac{1}{n}\\sum_i x_{ij}, \\qquad \\sigma_j = \\sqrt{\\frac{1}{n}\\sum_i (x_{ij} - \\mu_j)^2}

    >>> mean, std = fit_standardizer(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> mean.tolist(), std.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    >>> fit_standardizer(np.full((3, 1), 0.1))[1].tolist()
    [1.0]
    """
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    first = x_train[0] if len(x_train) else mean
    constant = (x_train == first).all(axis=0)
    # a column that never varies in training is only shifted, by its value (its mean may be rounded too)
    mean = np.where(constant, first, mean)
    std = np.where(constant, 1.0, std)
    return mean, std


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` with statistics fitted on the training split, as float32.

    >>> standardize(np.array([[3.0]]), np.array([1.0]), np.array([2.0])).tolist()
    [[1.0]]
    """
    return ((x - mean) / std).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def read_image(path: str | Path, size: int | None, mode: str, where: str) -> np.ndarray:
    """Read an image with Pillow, convert it to ``mode`` ("RGB", "L") and resize it to ``size x size``.

    The resize squashes the whole image to a square (bilinear), the way fastai's default "squish" does,
    so nothing is cropped away. ``size=None`` keeps the original size. A 16-bit grey image (a scan, often)
    is scaled to 8 bits, 0..65535 to 0..255: Pillow's own conversion would clip everything above 255 to
    white. Floating-point images are refused, having no fixed range. Returns ``uint8`` of shape
    ``(channels, height, width)``. ``where`` says which row asked for the image; it starts the error
    message when the file is missing or cannot be decoded.

    >>> import tempfile, os
    >>> from PIL import Image
    >>> with tempfile.NamedTemporaryFile(suffix=".png", delete=False) as f:
    ...     Image.new("RGB", (40, 30), (255, 0, 0)).save(f.name)
    >>> read_image(f.name, 8, "RGB", "row 1").shape
    (3, 8, 8)
    >>> os.remove(f.name)
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        found = not_a_file(path) if path.exists() else "no such file"
        raise DataError(f"{where}: expected an image file at {path}, but there is {found}.")
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a large image is fine: it is shrunk
            if size is not None:
                image.draft(mode, (size, size))  # JPEG: decode at a reduced scale (much faster), if possible
            if image.mode == "F":
                raise DataError(f"{where}: the image {path} holds floating-point pixels; save it with 8 or 16 bits per channel.")
            if image.mode.startswith("I"):  # 16-bit grey ("I;16", or "I" as some Pillow versions open it)
                grey = np.asarray(image, dtype=np.float64) / 257  # 65535 -> 255
                image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
            image = image.convert(mode)
            if size is not None:
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{where}: the image {path} could not be read ({err}).") from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (height, width, channels) -> (channels, H, W)
