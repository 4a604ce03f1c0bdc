"""The Result of a comparison (tidy pandas frames) and its run directory, written atomically.

A run directory holds:

- ``config.json``: the resolved configuration, package versions, device and git commit;
- ``runs.csv``: one row per model (loss x seed): final metrics, best validation threshold, test metrics
  at 0.5 and at that threshold, the divergence flag;
- ``history.csv``: one row per model per epoch (epoch 0 is before training): losses, validation accuracy
  and AUC, gradient allocation;
- ``thresholds.csv``: accuracy, F1, sensitivity, specificity and exact match per model, split and threshold;
- ``calibration.csv``: reliability bins per model on the test split;
- ``summary.csv``: per loss and metric, the mean and 95% interval over seeds and the paired difference to
  the baseline loss;
- ``predictions.npz``: every model's validation and test scores, and the targets, so that any metric can be
  recomputed;
- ``plots/``: the figures, when drawn.

It is written to a hidden temporary directory beside the target and renamed into place at the end, so an
interrupted run never leaves a directory that looks complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

FRAMES = ("runs", "history", "thresholds", "calibration", "summary")


@dataclass
class Result:
    """Everything one comparison produced. Frames are tidy: one row per model (and epoch, threshold, bin)."""

    runs: pd.DataFrame
    history: pd.DataFrame
    thresholds: pd.DataFrame
    calibration: pd.DataFrame
    summary: pd.DataFrame
    config: dict
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    directory: Path | None = None  # where it was saved or loaded from

    @property
    def losses(self) -> list[str]:
        """The losses compared, in the order they were given."""
        return list(self.config["losses"])

    @property
    def baseline(self) -> str | None:
        return self.config.get("baseline")

    def save(self, directory: str | os.PathLike, extra: Callable[[Path], object] | None = None) -> Path:
        """Write the run directory atomically and return its path.

        The directory must not exist yet (or be empty): a saved run is never overwritten. ``extra`` is
        called with the temporary directory before it is renamed into place, to add files (the plots)
        that must appear together with the rest or not at all.
        """
        target = Path(directory)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ValueError(f"Expected `directory` to be a new or empty directory, but {str(target)!r} already holds files.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a run directory is an ordinary folder
        try:
            for name in FRAMES:
                getattr(self, name).to_csv(tmp / f"{name}.csv", index=False)
            np.savez_compressed(tmp / "predictions.npz", **self.predictions)
            with open(tmp / "config.json", "w") as fh:
                json.dump(self.config, fh, indent=2, sort_keys=True, default=str)
                fh.write("\n")
            if extra is not None:
                extra(tmp)
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.directory = target
        return target


def load(directory: str | os.PathLike) -> Result:
    """Read a run directory written by :meth:`Result.save`.

    >>> load("no/such/run")
    Traceback (most recent call last):
    ...
    ValueError: Expected a lossbench run directory, but 'no/such/run' does not exist.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"Expected a lossbench run directory, but {str(path)!r} does not exist.")
    missing = [f"{n}.csv" for n in FRAMES if not (path / f"{n}.csv").is_file()]
    missing += [n for n in ("config.json",) if not (path / n).is_file()]
    if missing:
        raise ValueError(
            f"Expected a lossbench run directory, but {str(path)!r} lacks {', '.join(missing)} "
            "(was the run interrupted, or is this another folder?)."
        )
    with open(path / "config.json") as fh:
        config = json.load(fh)
    frames = {name: pd.read_csv(path / f"{name}.csv") for name in FRAMES}
    predictions: dict[str, np.ndarray] = {}
    if (path / "predictions.npz").is_file():
        with np.load(path / "predictions.npz", allow_pickle=False) as npz:
            predictions = {k: npz[k] for k in npz.files}
    return Result(**frames, config=config, predictions=predictions, directory=path)
