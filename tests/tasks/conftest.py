"""Fixtures for the task tests: the committed data files and builders of tiny real-format folders."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# A tiny PASCAL_2007 folder: (fname, labels, is_valid, colour of the solid image, size (width, height))
PASCAL_ROWS = [
    ("000005.jpg", "chair", "True", (230, 20, 20), (50, 40)),
    ("000007.jpg", "car", "True", (20, 230, 20), (40, 40)),
    ("000009.jpg", "horse person", "True", (20, 20, 230), (60, 30)),
    ("000012.jpg", "car", "False", (230, 230, 20), (40, 50)),
    ("000016.jpg", "bicycle", "False", (20, 230, 230), (33, 41)),
    ("000017.jpg", "horse person", "False", (230, 20, 230), (48, 36)),
    ("000019.jpg", "cat", "False", (128, 128, 128), (40, 40)),
    ("000020.jpg", "car person", "False", (250, 250, 250), (40, 40)),
    ("000021.jpg", "chair dog person", "False", (10, 10, 10), (40, 40)),
    ("000023.jpg", "bottle chair", "False", (200, 100, 50), (40, 40)),
]


@pytest.fixture
def pascal_rows() -> list[tuple]:
    """The rows :func:`pascal_folder` writes by default."""
    return list(PASCAL_ROWS)


@pytest.fixture
def titanic_fixture() -> Callable[[str], Path]:
    """The path of a committed Titanic fixture file: ``titanic_fixture("kaggle_train")``."""

    def path(name: str) -> Path:
        return FIXTURES / f"titanic_{name}.csv"

    return path


@pytest.fixture
def pascal_folder(tmp_path: Path) -> Callable[..., Path]:
    """A builder of PASCAL_2007-style folders (train.csv + JPEG files in train/) under ``tmp_path``.

    ``pascal_folder()`` writes :data:`PASCAL_ROWS`; ``pascal_folder(rows=..., csv_text=...)`` writes other
    rows or replaces train.csv's text outright (for broken files).
    """
    from PIL import Image

    def build(rows=PASCAL_ROWS, csv_text: str | None = None, name: str = "pascal") -> Path:
        folder = tmp_path / name
        (folder / "train").mkdir(parents=True)
        for fname, _, _, colour, size in rows:
            Image.new("RGB", size, colour).save(folder / "train" / fname, quality=95)
        if csv_text is None:
            csv_text = "fname,labels,is_valid\n" + "".join(f"{f},{l},{v}\n" for f, l, v, _, _ in rows)
        (folder / "train.csv").write_text(csv_text)
        return folder

    return build


class _ReadRecorder:
    """A task config that notes the name of every setting read from it."""

    def __init__(self, config) -> None:
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "read", set())

    def __getattr__(self, name: str):
        self.read.add(name)
        return getattr(self._config, name)


@pytest.fixture
def settings_read() -> Callable[..., set[str]]:
    """``settings_read(module, config, data)``: the names of the settings ``module.load(config, data)`` reads."""

    def read(module, config, data) -> set[str]:
        recorder = _ReadRecorder(config)
        module.load(recorder, data)
        return recorder.read

    return read
