"""The task registry: each task module loads its data, splits it and names its model body.

A task module defines:

- ``Config``: a frozen dataclass (subclass of :class:`TrainingDefaults`) holding every default of the
  task, commented, data settings and training settings alike;
- ``QUICK``: a dict of ``Config`` overrides that make a seconds-long smoke run (``--quick``);
- ``SUMMARY``: one line for ``lossbench tasks``;
- ``load(config, data=None) -> TaskData``: ``data`` is a user's path for the real-format loader,
  ``None`` for the shipped or generated default data;
- optionally ``GENERATED_ONLY`` and ``FOLDER_ONLY``: the ``Config`` fields that only the generated data
  (``data=None``) or only a folder read with ``data=PATH`` uses. Setting one that the run's data does
  not use is refused (:func:`check_settings_apply`), and ``config.json`` lists those left unused.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType

from lossbench.tasks.base import DataError, Split, TaskData, TaskKind, TrainingDefaults

_MODULES = {
    "titanic": "lossbench.tasks.titanic",
    "multilabel": "lossbench.tasks.multilabel",
    "mammography": "lossbench.tasks.mammography",
}

__all__ = ["DataError", "Split", "TaskData", "TaskKind", "TrainingDefaults", "check_settings_apply", "get", "names",
           "unused_settings"]


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


def unused_settings(module: ModuleType, data: object) -> tuple[str, ...]:
    """The ``Config`` fields of task ``module`` that a run with this ``data`` does not use.

    >>> unused_settings(get("multilabel"), data=None)
    ('image_size',)
    >>> unused_settings(get("titanic"), data="passengers.csv")
    ()
    """
    return tuple(getattr(module, "GENERATED_ONLY" if data is not None else "FOLDER_ONLY", ()))


def check_settings_apply(module: ModuleType, keys: Iterable[str], data: object, spell: Callable[[str], str] = "`{}`".format,
                         data_name: str = "`data`") -> None:
    """Raise ``ValueError`` when ``keys`` (the settings a user chose) name one this ``data`` leaves unused.

    ``spell`` writes a setting's name as the user wrote it, ``data_name`` the data argument's.

    >>> check_settings_apply(get("multilabel"), ["epochs", "image_size"], data="photos/")
    >>> check_settings_apply(get("multilabel"), ["epochs", "n_train"], data="photos/")
    Traceback (most recent call last):
    ...
    ValueError: Expected settings that apply to a folder read with `data`, but got `n_train`: it shapes the generated data only, ...
    """
    unused = unused_settings(module, data)
    clash = [key for key in keys if key in unused]
    if not clash:
        return
    names = ", ".join(spell(key) for key in clash)
    one = len(clash) == 1
    if data is not None:
        raise ValueError(
            f"Expected settings that apply to a folder read with {data_name}, but got {names}: "
            f"{'it shapes' if one else 'they shape'} the generated data only, and {data_name} is read as it is, with its "
            f"own split. Leave {'it' if one else 'them'} out, or leave out {data_name}."
        )
    raise ValueError(
        f"Expected settings that apply to the generated data, but got {names}: {'it applies' if one else 'they apply'} "
        f"only to a folder read with {data_name}. Leave {'it' if one else 'them'} out, or give {data_name}."
    )
