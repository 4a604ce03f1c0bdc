"""The contract between a task and the runner: three tensor splits, a task kind and a model body."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

TaskKind = Literal["binary", "multilabel", "grid"]
"""What the outputs mean.

- ``binary``: one yes/no decision per example (K = 1).
- ``multilabel``: K independent yes/no labels per example (a digit is present or not).
- ``grid``: one yes/no decision per area of the example (K = A areas, row-major).
"""


@dataclass(frozen=True)
class TrainingDefaults:
    """Training settings every task config carries; a task overrides the defaults that suit it."""

    seeds: int | tuple[int, ...] = 10  # models per loss, one per seed; seeds 0..seeds-1 unless a list is given
    epochs: int = 100  # passes over the training split
    batch_size: int = 64  # examples per minibatch (the last batch of an epoch may be smaller)
    lr: float = 1e-3  # learning rate, the same for every loss unless an override scales it
    optimizer: Literal["adam", "sgd"] = "adam"  # lossbench.optim's Adam or plain SGD, which follow torch.optim's
    weight_decay: float = 0.0  # L2 penalty added to the gradient (both optimizers)
    momentum: float = 0.0  # SGD momentum (ignored by Adam)
    split_seed: int = 0  # seed of the train/val/test split; separate from the model seeds


@dataclass(frozen=True)
class Split:
    """One split of a task: inputs, multi-hot targets and where each example came from.

    ``x`` is float32, ``(N, features)`` for tabular tasks or ``(N, channels, height, width)`` for images.
    ``y`` is float32 with values in {0, 1}, always ``(N, K)``: K = 1 for binary tasks, the number of
    labels for multi-label tasks, the number of areas for grid tasks.
    ``source`` names, per example, the underlying real item(s) it was built from (a passenger, a
    scanned digit, a mammogram): the split tests assert that no source appears in two splits.
    """

    x: torch.Tensor
    y: torch.Tensor
    source: np.ndarray  # (N,) object/str or int array, or (N, k) for composites

    def __post_init__(self) -> None:
        if self.y.ndim != 2:
            raise ValueError(f"Expected `y` to be (N, K), one row of K targets per example, but got shape {tuple(self.y.shape)}.")
        if not self.x.shape[0] == self.y.shape[0] == len(self.source):
            raise ValueError(f"Expected `x`, `y` and `source` to have one row per example each, but got {self.x.shape[0]}, "
                             f"{self.y.shape[0]} and {len(self.source)} rows.")

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class TaskData:
    """Everything the runner needs to train and evaluate one task."""

    name: str  # "titanic", "multilabel", "mammography"
    kind: TaskKind
    label_names: tuple[str, ...]  # K names: ("survived",), ("0", ..., "9"), ("area 0,0", ...)
    train: Split
    val: Split  # the probe set for gradient allocation and the split thresholds are chosen on
    test: Split  # only ever evaluated, never used to choose anything
    body: object  # a body spec from lossbench.models (MLPBody or CNNBody)
    description: str  # one line for tables and plot titles; says "synthetic" when it is
    provenance: str  # where the data came from (file path and checksum, or generator and seed)
    notes: dict = field(default_factory=dict)  # anything else worth saving in config.json

    @property
    def n_outputs(self) -> int:
        """K: the number of scored outputs per example."""
        return self.train.y.shape[1]


class DataError(ValueError):
    """A data file or generator setting is wrong; the message names the file, row or column and the fix."""
