"""Reading mini-MIAS: the ``Info.txt`` annotations, the 1024x1024 binary PGM mammograms, and their lesion maps.

The mini-MIAS database (Mammographic Image Analysis Society; Suckling et al. 1994) holds 322 mammograms
``mdb001.pgm`` ... ``mdb322.pgm``, 161 women with a left and a right film each (``mdb001``/``mdb002``
is one woman: patient ``(refnum - 1) // 2``), scanned at 200 micron and padded to 1024 x 1024 pixels,
8 bits per pixel. ``Info.txt`` has one row per abnormality, whitespace separated::

    REFNUM BG CLASS SEVERITY X Y RADIUS
    mdb001 G CIRC B 535 425 197
    mdb003 D NORM

- ``BG``, the background tissue: F (fatty), G (fatty-glandular), D (dense-glandular); not used here.
- ``CLASS``: CALC (calcification), CIRC (circumscribed mass), SPIC (spiculated mass), MISC (ill-defined
  mass), ARCH (architectural distortion), ASYM (asymmetry) or NORM (normal; the row stops there).
- ``SEVERITY``: B (benign) or M (malignant).
- ``X Y``: the centre of the abnormality in pixels, with the origin at the **bottom-left** corner, so
  the image row is ``1023 - Y`` and the column is ``X``. ``RADIUS``: of a circle enclosing it.
- An image with several abnormalities has several rows. Where calcifications are spread over the
  whole breast, the row has no ``X Y RADIUS`` (some copies of the file write ``*NOTE 3*`` there
  instead): the abnormality's location is unknown.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.tasks._common import not_a_file
from lossbench.tasks.base import DataError

MIAS_SIZE = 1024  # every mini-MIAS image is MIAS_SIZE x MIAS_SIZE pixels
ABNORMAL_CLASSES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM")
SEVERITIES = ("B", "M")
_REFNUM = re.compile(r"^mdb(\d{3})$", re.IGNORECASE)
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")  # 535, 425.5, 1e2


@dataclass(frozen=True)
class Lesion:
    """One abnormality of one mammogram, as Info.txt gives it."""

    kind: str  # CLASS: CALC, CIRC, SPIC, MISC, ARCH or ASYM
    severity: str  # B (benign) or M (malignant)
    x: float | None  # centre column, pixels from the LEFT edge; None where Info.txt gives no location
    y: float | None  # centre height, pixels from the BOTTOM edge
    radius: float | None  # radius of the enclosing circle, pixels
    row: int  # line of Info.txt it came from, for messages

    @property
    def located(self) -> bool:
        """Whether Info.txt says where the abnormality is."""
        return self.x is not None


@dataclass(frozen=True)
class Mammogram:
    """One mammogram's entry in Info.txt: its reference number and its abnormalities (none if NORM)."""

    refnum: int  # 1 for mdb001
    lesions: tuple[Lesion, ...]

    @property
    def name(self) -> str:
        """The file stem, ``mdb001``."""
        return f"mdb{self.refnum:03d}"

    @property
    def patient(self) -> int:
        """The woman the film belongs to: mdb001 and mdb002 are patient 0, mdb003 and mdb004 patient 1."""
        return (self.refnum - 1) // 2


def read_info(path: str | Path) -> dict[int, Mammogram]:
    """Parse a mini-MIAS ``Info.txt`` into ``{refnum: Mammogram}``, sorted by reference number.

    Blank lines, lines starting with ``#`` and the header line (``REFNUM BG CLASS ...``) are skipped.
    A row has 3 fields (``REFNUM BG NORM``), 4 (an abnormality without location), or 7 (with
    ``X Y RADIUS``). Raises :class:`DataError` naming the file and the line for a missing file, a
    wrong number of fields, an unknown CLASS or SEVERITY, a number that is not a plain decimal one, a
    centre outside the 1024 x 1024 image, a radius that is not positive or larger than the image, or an
    image listed both as NORM and abnormal.

    >>> import tempfile, os
    >>> text = "REFNUM BG CLASS SEVERITY X Y RADIUS\\nmdb001 G CIRC B 535 425 197\\nmdb002 G NORM \\n"
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    ...     _ = f.write(text)
    >>> info = read_info(f.name)
    >>> info[1].lesions[0].kind, info[1].lesions[0].y, info[2].lesions, info[2].patient
    ('CIRC', 425.0, (), 0)
    >>> os.remove(f.name)
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise DataError(f"Expected the mini-MIAS annotation file {path} to be a file, but it is {not_a_file(path)}.")
    if not path.is_file():
        raise DataError(
            f"Expected the mini-MIAS annotation file {path} to exist, but it is missing. "
            "The data folder must hold Info.txt (REFNUM BG CLASS SEVERITY X Y RADIUS) next to the mdbNNN.pgm files."
        )
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark, if any, is dropped
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: Expected plain text, but got a byte that is not UTF-8 ({error}).") from None

    norm_rows: dict[int, int] = {}
    lesions: dict[int, list[Lesion]] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0].upper() == "REFNUM":
            continue
        where = f"{path}, line {number}"
        match = _REFNUM.match(fields[0])
        if match is None or int(match.group(1)) == 0:  # mini-MIAS counts its films from mdb001
            raise DataError(f"{where}: Expected a reference number like mdb001 first, but got {line.strip()!r}.")
        refnum = int(match.group(1))
        if len(fields) < 3:
            raise DataError(
                f"{where}: Expected 3 fields (REFNUM BG NORM), 4 (REFNUM BG CLASS SEVERITY) or 7 "
                f"(REFNUM BG CLASS SEVERITY X Y RADIUS), but got {len(fields)}: {line.strip()!r}."
            )
        kind = fields[2].upper()
        if kind == "NORM":
            if len(fields) != 3:
                raise DataError(
                    f"{where}: Expected 3 fields for a NORM row (REFNUM BG NORM), "
                    f"but got {len(fields)}: {line.strip()!r}."
                )
            norm_rows[refnum] = number
            continue
        if kind not in ABNORMAL_CLASSES:
            raise DataError(
                f"{where}: Expected CLASS to be one of {', '.join(ABNORMAL_CLASSES)} or NORM, but got {fields[2]!r}."
            )
        if len(fields) == 6 and all(_DECIMAL.match(value) for value in fields[3:]):
            raise DataError(
                f"{where}: Expected SEVERITY (B or M) between CLASS and X Y RADIUS, but got the coordinates "
                f"straight after {fields[2]!r}: {line.strip()!r}."
            )
        tail = fields[4:]
        if tail and "NOTE" in " ".join(tail).upper():
            tail = []  # "*NOTE 3*": calcifications spread over the image, no location
        if len(tail) not in (0, 3):
            raise DataError(
                f"{where}: Expected 4 fields (REFNUM BG CLASS SEVERITY) or 7 (REFNUM BG CLASS SEVERITY X Y RADIUS) "
                f"for a {kind} row, but got {len(fields)}: {line.strip()!r}."
            )
        severity = fields[3].upper() if len(fields) > 3 else ""
        if severity not in SEVERITIES:
            raise DataError(f"{where}: Expected SEVERITY to be B or M, but got {repr(severity) if severity else 'nothing'}.")
        x = y = radius = None
        if tail:
            if not all(_DECIMAL.match(value) for value in tail):  # float() would also take "1_0", "inf" and "nan"
                raise DataError(f"{where}: Expected X Y RADIUS to be numbers, but got {' '.join(tail)!r}.")
            x, y, radius = (float(value) for value in tail)
            if not (0 <= x < MIAS_SIZE and 0 <= y < MIAS_SIZE):
                raise DataError(
                    f"{where}: Expected the centre X Y inside the {MIAS_SIZE} x {MIAS_SIZE} image "
                    f"(0 to {MIAS_SIZE - 1}, origin at the bottom-left corner), but got X={tail[0]} Y={tail[1]}."
                )
            if not 0 < radius <= MIAS_SIZE:
                raise DataError(
                    f"{where}: Expected RADIUS to be a positive number of pixels, at most the image's {MIAS_SIZE}, "
                    f"but got {tail[2]}."
                )
        lesions.setdefault(refnum, []).append(Lesion(kind, severity, x, y, radius, number))

    both = sorted(set(norm_rows) & set(lesions))
    if both:
        refnum = both[0]
        raise DataError(
            f"{path}, lines {norm_rows[refnum]} and {lesions[refnum][0].row}: Expected mdb{refnum:03d} to be either "
            "NORM or abnormal, but got both."
        )
    if not norm_rows and not lesions:
        raise DataError(f"{path}: Expected rows like 'mdb001 G CIRC B 535 425 197', but got none.")
    refnums = sorted(set(norm_rows) | set(lesions))
    return {r: Mammogram(r, tuple(lesions.get(r, ()))) for r in refnums}


def read_pgm(path: str | Path, size: int = MIAS_SIZE) -> np.ndarray:
    """Read a binary (P5) 8-bit PGM image of ``size x size`` pixels as float32 grey levels in [0, 1].

    The header is four whitespace-separated fields, ``P5 width height maxval``, with ``#`` comments
    running to the end of a line (one right after maxval too), then one whitespace byte and
    ``width * height`` bytes of pixels, row
    by row from the top (a header written with Windows line ends, ``255\r\n``, is read as it was meant
    when the file holds exactly one byte more than its pixels). Pixels are divided by ``maxval``. Raises
    :class:`DataError` naming the file when it is missing, not P5, not 8-bit, not ``size x size``, cut
    short in its header or its pixels, holds twice the bytes of its pixels or more (a 16-bit image under
    an 8-bit header), or holds a pixel above ``maxval``.

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(suffix=".pgm", delete=False) as f:
    ...     _ = f.write(b"P5\\n# a comment\\n2 2\\n255\\n" + bytes([0, 51, 204, 255]))
    >>> read_pgm(f.name, size=2).tolist()
    [[0.0, 0.20000000298023224], [0.800000011920929, 1.0]]
    >>> os.remove(f.name)
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a pipe or a device that reading would wait on for ever
        raise DataError(f"Expected the mammogram {path} to be a file, but it is {not_a_file(path)}.")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"Expected the mammogram {path} to exist (Info.txt lists it), but it is missing. "
            "Put the mini-MIAS .pgm files next to Info.txt."
        ) from None
    except OSError as error:
        raise DataError(f"Expected the mammogram {path} to be readable, but got {error}.") from None

    # 1. the header: four fields, each maybe preceded by whitespace and comments
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if pos < len(data) and data[pos : pos + 1] == b"#":
            while pos < len(data) and data[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace() and data[pos : pos + 1] != b"#":
            pos += 1
        if pos == start and pos >= len(data) and fields:
            raise DataError(
                f"{path}: Expected a PGM header of 4 fields (P5 width height maxval), but the file ends after "
                f"{len(fields)}: {b' '.join(fields).decode('latin-1')!r}."
            )
        if pos == start or (len(fields) == 0 and data[start : start + 2] != b"P5"):
            magic = data[:2].decode("latin-1")
            raise DataError(
                f"{path}: Expected a binary PGM image (a header starting P5), but got {magic!r}. "
                "mini-MIAS images are 8-bit binary PGM; convert the file, e.g. with Pillow: "
                "Image.open(f).convert('L').save('mdbNNN.pgm')."
            )
        fields.append(data[start:pos])
    if fields[0] != b"P5":
        magic = fields[0].decode("latin-1")
        raise DataError(f"{path}: Expected a binary PGM image (magic number P5), but got {magic!r}.")
    try:
        width, height, maxval = (int(f) for f in fields[1:])
    except ValueError:
        header = b" ".join(fields[1:]).decode("latin-1")
        raise DataError(f"{path}: Expected width, height and maxval to be integers, but got {header!r}.") from None
    if not 0 < maxval < 256:
        raise DataError(f"{path}: Expected an 8-bit image (maxval 1 to 255), but got maxval {maxval}.")
    if (width, height) != (size, size):
        raise DataError(f"{path}: Expected {size} x {size} pixels (mini-MIAS), but got {width} x {height}.")
    if data[pos : pos + 1] == b"#":  # a comment right after maxval ("255# scanned 1994"): the header ends with its line
        while pos < len(data) and data[pos : pos + 1] not in (b"\n", b"\r"):
            pos += 1
    pos += 1  # the single whitespace byte that ends the header
    if data[pos - 1 : pos + 1] == b"\r\n" and len(data) - pos == width * height + 1:
        pos += 1  # a header written with Windows line ends: its last "\n" is not the first pixel

    # 2. the pixels, row by row from the top
    pixels = data[pos : pos + width * height]
    if len(pixels) < width * height:
        raise DataError(
            f"{path}: Expected {width * height} bytes of pixels, but got {len(pixels)}: the file is cut short."
        )
    if len(data) - pos >= 2 * width * height:  # a few bytes more (a final newline) are harmless
        raise DataError(
            f"{path}: Expected {width * height} bytes of pixels after the header ({width} x {height}, one byte each "
            f"under maxval {maxval}), but got {len(data) - pos}: two bytes a pixel are a 16-bit image, whose header "
            "needs a maxval above 255 (mini-MIAS images are 8-bit)."
        )
    raw = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width)
    if raw.max() > maxval:
        raise DataError(f"{path}: Expected pixels from 0 to the header's maxval {maxval}, but got {raw.max()}.")
    return (raw / np.float32(maxval)).astype(np.float32)


def lesion_maps(lesions: tuple[Lesion, ...], downsample: int, size: int = MIAS_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Where the lesions are, at the downsampled resolution: their discs and their centre pixels.

    The centre ``(X, Y)`` (origin bottom-left) is at image row ``size - 1 - Y`` and column ``X``;
    taking pixel centres at ``+0.5``, it is at ``((size - 1 - Y + 0.5) / d, (X + 0.5) / d)`` after
    downsampling by ``d``, with radius ``RADIUS / d``. A pixel belongs to a lesion when its centre lies
    in the disc; the pixel holding the lesion's centre always does. Lesions without a location are
    skipped (the caller decides what to do with their image).

    Returns two bool arrays ``(size // d, size // d)``: the union of the discs, and the centre pixels.

    >>> lesion = Lesion("CIRC", "B", x=2.0, y=1.0, radius=1.0, row=1)  # near the bottom-left corner
    >>> mask, centres = lesion_maps((lesion,), downsample=2, size=8)
    >>> np.argwhere(centres).tolist(), int(mask.sum())
    ([[3, 1]], 1)
    """
    side = size // downsample
    rows, cols = np.mgrid[0:side, 0:side] + 0.5  # pixel centres, downsampled coordinates
    mask = np.zeros((side, side), dtype=bool)
    centres = np.zeros((side, side), dtype=bool)
    for lesion in lesions:
        if not lesion.located:
            continue
        row = (size - 1 - lesion.y + 0.5) / downsample
        col = (lesion.x + 0.5) / downsample
        radius = lesion.radius / downsample
        mask |= (rows - row) ** 2 + (cols - col) ** 2 <= radius**2
        r, c = min(int(row), side - 1), min(int(col), side - 1)
        centres[r, c] = True
        mask[r, c] = True
    return mask, centres


def downsample_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Shrink an image by an integer ``factor``: each output pixel is the mean of a factor x factor block.

    >>> downsample_mean(np.arange(16, dtype=np.float32).reshape(4, 4), 2).tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    h, w = image.shape
    return image.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def tiles(image: np.ndarray, patch: int) -> np.ndarray:
    """Cut an image into non-overlapping ``patch x patch`` tiles, row-major: ``(n_rows * n_cols, patch, patch)``.

    >>> tiles(np.arange(16).reshape(4, 4), 2)[1].tolist()  # the top-right tile
    [[2, 3], [6, 7]]
    """
    h, w = image.shape
    blocks = image.reshape(h // patch, patch, w // patch, patch).swapaxes(1, 2)  # (rows, cols, patch, patch)
    return blocks.reshape(-1, patch, patch)


@dataclass(frozen=True)
class MiasPatches:
    """Tiles of the mini-MIAS mammograms with their lesion maps, before labelling and splitting."""

    images: np.ndarray  # (n, patch, patch) float32 grey levels in [0, 1]
    masks: np.ndarray  # (n, patch, patch) bool: inside a lesion's circle
    centres: np.ndarray  # (n, patch, patch) bool: the pixel holding a lesion's centre
    refnums: np.ndarray  # (n,) int: the mammogram each tile was cut from
    info_path: Path  # the Info.txt that was read
    dropped: tuple[int, ...]  # mammograms left out: an abnormality without a location
    unlisted: tuple[str, ...] = ()  # PGM files of the folder that Info.txt does not list, so not read (names, sorted)


def load_mias(
    folder: str | Path, patch: int, downsample: int, min_tissue: float, tissue_level: float
) -> MiasPatches:
    """Read a mini-MIAS folder and cut every usable mammogram into labelled-to-be tiles.

    Steps, per mammogram listed in Info.txt:

    1. an image with an abnormality whose location Info.txt omits (calcifications spread over the
       breast) is **dropped**, since no tile or area of it can be labelled honestly; its PGM is not read;
    2. read the PGM (1024 x 1024), shrink it by ``downsample`` (block means) and draw the lesion
       circles at that resolution (:func:`lesion_maps`, which flips Y: the origin is bottom-left);
    3. cut image and maps into ``patch x patch`` tiles, row-major from the top-left;
    4. keep a tile when at least ``min_tissue`` of its pixels are breast (grey level above
       ``tissue_level``; the film's surroundings are near black) or when it touches a lesion.

    PGM files that Info.txt does not list are not read (a cut-short Info.txt shows in ``unlisted``).

    File names are matched case-insensitively (``Info.txt``, ``mdb001.pgm``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"Expected `data` to be a folder holding mini-MIAS's Info.txt and mdbNNN.pgm files, but got {folder} "
            "(not a folder)."
        )
    entries = {p.name.lower(): p for p in folder.iterdir()}
    info_path = entries.get("info.txt", folder / "Info.txt")
    info = read_info(info_path)

    images, masks, centres, refnums, dropped = [], [], [], [], []
    for refnum, mammogram in info.items():
        # 1. an abnormality without a location: nothing in this image can be labelled
        if not all(lesion.located for lesion in mammogram.lesions):
            dropped.append(refnum)
            continue
        # 2. the image and its lesion maps at the working resolution
        pgm = entries.get(f"{mammogram.name}.pgm", folder / f"{mammogram.name}.pgm")
        image = downsample_mean(read_pgm(pgm), downsample)  # (1024 / d, 1024 / d)
        mask, centre = lesion_maps(mammogram.lesions, downsample)
        # 3. tiles
        image_tiles, mask_tiles, centre_tiles = tiles(image, patch), tiles(mask, patch), tiles(centre, patch)
        # 4. keep breast tissue and anything touching a lesion
        tissue = (image_tiles > tissue_level).mean(axis=(1, 2))
        keep = (tissue >= min_tissue) | mask_tiles.any(axis=(1, 2))
        images.append(image_tiles[keep])
        masks.append(mask_tiles[keep])
        centres.append(centre_tiles[keep])
        refnums.append(np.full(int(keep.sum()), refnum))
    if not images:
        raise DataError(
            f"{info_path}: Expected at least one mammogram whose abnormalities all have a location, but got none."
        )
    listed = {f"{mammogram.name}.pgm".lower() for mammogram in info.values()}
    unlisted = sorted(entry.name for name, entry in entries.items() if name.endswith(".pgm") and name not in listed)
    return MiasPatches(
        images=np.concatenate(images).astype(np.float32),
        masks=np.concatenate(masks),
        centres=np.concatenate(centres),
        refnums=np.concatenate(refnums),
        info_path=info_path,
        dropped=tuple(dropped),
        unlisted=tuple(unlisted),
    )
