"""Shared test helpers: tiny tasks of every kind that train in a fraction of a second, and the repository's scripts as modules."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from lossbench.models import CNNBody, MLPBody
from lossbench.tasks import Split, TaskData


ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path: str) -> ModuleType:
    """A script of the repository that is not part of the package (``benchmarks/...``, ``docs/...``) as a module."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_task(kind: str = "binary", n: int = 48, seed: int = 0, image: bool = False, bias: bool = True) -> TaskData:
    """A small learnable task: y depends on the inputs through a random linear rule. ``bias``: the model's."""
    g = torch.Generator().manual_seed(seed)
    k = {"binary": 1, "multilabel": 4, "grid": 4}[kind]
    if image or kind == "grid":
        x = torch.rand(3 * n, 1, 8, 8, generator=g)
        if kind == "grid":  # an area is positive when its 4x4 quarter is bright
            y = (x.unfold(2, 4, 4).unfold(3, 4, 4).mean(dim=(-1, -2)).reshape(3 * n, 4) > 0.5).float()
        else:
            w = torch.randn(64, k, generator=g)
            y = (x.reshape(3 * n, 64) @ w > 0).float()
        body = CNNBody(in_channels=1, image_size=8, channels=(3, 4), grid=2 if kind == "grid" else None, bias=bias)
    else:
        x = torch.randn(3 * n, 5, generator=g)
        w = torch.randn(5, k, generator=g)
        y = (x @ w + 0.3 * torch.randn(3 * n, k, generator=g) > 0).float()
        body = MLPBody(in_features=5, hidden=8, bias=bias)
    if kind == "multilabel":
        y[y.sum(dim=1) == 0, 0] = 1.0  # every example has at least one label
    source = np.arange(3 * n)
    parts = [Split(x[i * n : (i + 1) * n], y[i * n : (i + 1) * n], source[i * n : (i + 1) * n]) for i in range(3)]
    labels = ("y",) if k == 1 else tuple(f"l{i}" for i in range(k))
    return TaskData(f"tiny-{kind}", kind, labels, *parts, body=body, description="tiny synthetic test task", provenance="tests/conftest.py")


@pytest.fixture
def make_task():
    return tiny_task
