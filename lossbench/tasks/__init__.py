"""The task registry: each task module loads its data, splits it and names its model body.

A task module defines:

- ``Config``: a frozen dataclass (subclass of :class:`TrainingDefaults`) holding every default of the
  task, commented, data settings and training settings alike;
- ``QUICK``: a dict of ``Config`` overrides that make a seconds-long smoke run (``--quick``);
- ``SUMMARY``: one line for ``lossbench tasks``;
- ``load(config, data=None) -> TaskData``: ``data`` is a user's path for the real-format loader,
  ``None`` for the shipped or generated default data.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from lossbench.tasks.base import DataError, Split, TaskData, TaskKind, TrainingDefaults

_MODULES = {
    "titanic": "lossbench.tasks.titanic",
    "multilabel": "lossbench.tasks.multilabel",
    "mammography": "lossbench.tasks.mammography",
}

__all__ = ["DataError", "Split", "TaskData", "TaskKind", "TrainingDefaults", "get", "names"]


def names() -> list[str]:
    """The task names, in the order the docs present them."""
    return list(_MODULES)


def get(name: str) -> ModuleType:
    """The task module called ``name``.

    >>> get("titanic").__name__
    'lossbench.tasks.titanic'
    """
    if name not in _MODULES:
        raise ValueError(f"Expected `task` to be one of {', '.join(_MODULES)}, but got {name!r}.")
    return importlib.import_module(_MODULES[name])
