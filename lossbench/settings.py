"""Checking a comparison's settings before anything trains: the task config, the training numbers, the task data, the device and memory.

Every check here raises a ValueError with one line that names the setting, what it must be and what it
got, so that a mistake costs a moment, not a run. :func:`lossbench.runner.compare` calls them in order.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

import numpy as np
import torch

from lossbench import thresholds as thr
from lossbench.models import CNNBody, MLPBody, body_shapes
from lossbench.tasks import TaskData, TrainingDefaults, get as get_task

if TYPE_CHECKING:
    from lossbench.runner import LossSetup

HeadInit = Literal["matched", "independent"]
"""How heads start: ``matched`` (every loss's first predictions equal) or ``independent`` (each drawn on its own)."""

Precision = Literal["float32", "float64"]
"""The models' floating-point type: float32, or float64 where a test compares engines to 1e-6."""


@dataclass(frozen=True)
class RunDefaults:
    """compare()'s settings besides training (which each task's ``Config`` holds); the command line's defaults too."""

    losses: tuple[str, ...] = ("softmax_ce", "bce", "mse")  # the three families every output layer is taught with
    impl: str = "handwritten"  # from first principles; "naive" or "reference" (torch.nn.functional) to compare
    head_init: HeadInit = "matched"  # every loss's first predictions equal
    device: str = "auto"  # CUDA when present, else the CPU
    dtype: Precision = "float32"
    threshold_points: int = 99  # thresholds 0.01, 0.02, ..., 0.99
    threshold_metric: thr.SelectionMetric = "accuracy"  # what the best threshold maximises


RUN = RunDefaults()


MAX_THREADS = 8 * (os.cpu_count() or 1)  # as the command line's --threads; torch crashes the process for a count in the millions
MAX_SEED = 2**63 - 1
MAX_THRESHOLD_POINTS = 9_801  # 0.01 to 0.99 in steps of 0.0001


def resolve_config(task: str, quick: bool = False, config: Mapping | None = None, **training) -> TrainingDefaults:
    """The task's config dataclass with the quick preset, then ``config`` overrides, then training arguments applied.

    Overrides may only name fields that exist. ``training`` holds compare()'s own arguments (``epochs``,
    ``lr``, ...); ``None`` keeps the task default.

    >>> resolve_config("titanic", epochs=3).epochs
    3
    >>> resolve_config("titanic", config={"epoch": 3})
    Traceback (most recent call last):
    ...
    ValueError: Expected config keys among ..., but got 'epoch'.
    """
    module = get_task(task)
    return configured(module.Config(), dict(module.QUICK) if quick else {}, config, training)


def configured(cfg: TrainingDefaults, changes: dict, config: Mapping | None, training: Mapping) -> TrainingDefaults:
    """``cfg`` with ``changes`` (a preset), then ``config``, then the non-None ``training`` arguments applied, each
    value checked against its field's type (a whole number is not a bool; numpy numbers count as numbers).

    >>> configured(TrainingDefaults(), {}, {"epochs": 3}, {"lr": np.float32(0.5)}).lr
    0.5
    >>> configured(TrainingDefaults(), {}, {"epochs": True}, {})
    Traceback (most recent call last):
    ...
    ValueError: Expected `epochs` to be a whole number, but got True.
    """
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"Expected `config` to be a mapping of setting names to values, but got {config!r}.")
    hints = typing.get_type_hints(type(cfg))
    fields = [f.name for f in dataclasses.fields(cfg)]
    changes = dict(changes)
    for key, value in (config or {}).items():
        if key not in fields:
            raise ValueError(f"Expected config keys among {', '.join(fields)}, but got {key!r}.")
        changes[key] = value
    changes.update({k: v for k, v in training.items() if v is not None})
    cfg = dataclasses.replace(cfg, **{k: v if k == "seeds" else _typed(k, v, hints[k]) for k, v in changes.items()})
    validate_training(cfg)
    # seeds as plain Python: an int, or a list of ints (not a numpy array or a range), so that config.json
    # records them as given and can be passed back as `config`
    seeds = int(cfg.seeds) if isinstance(cfg.seeds, (int, np.integer)) else [int(s) for s in cfg.seeds]
    return dataclasses.replace(cfg, seeds=seeds)


def _typed(key: str, value, hint):
    """``value`` as the type ``hint`` of config field ``key`` asks for, or a ValueError saying what it should be."""
    if hint is bool:
        ok, expected = isinstance(value, (bool, np.bool_)), "True or False"
        value = bool(value) if ok else value
    elif hint is int:
        ok, expected = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)), "a whole number"
        value = int(value) if ok else value
    elif hint is float:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        expected, value = "a number", float(value) if ok else value
    elif hint is str:
        ok, expected = isinstance(value, str), "a string"
    elif typing.get_origin(hint) is Literal:
        ok, expected = value in typing.get_args(hint), "one of " + ", ".join(map(repr, typing.get_args(hint)))
    else:  # tuples and other compound settings: the task's loader checks them
        ok, expected = True, ""
    if not ok:
        raise ValueError(f"Expected `{key}` to be {expected}, but got {value!r}.")
    return value


def check_arguments(**given) -> None:
    """compare()'s arguments that are not training settings: each of the type it must be, or a ValueError saying so."""
    rules = {
        "losses": (lambda v: isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v)),
                   "a loss name or a list of loss names"),
        "impl": (lambda v: isinstance(v, str) or (isinstance(v, Mapping) and all(isinstance(i, str) for i in v.values())),
                 "an implementation name or import path ('__main__:my_loss' for a function defined in a notebook), or a "
                 "mapping from loss name to one"),
        "overrides": (lambda v: v is None or (isinstance(v, Mapping) and all(isinstance(o, Mapping) for o in v.values())),
                      "None or a mapping from loss name to a mapping of options"),
        "quick": (lambda v: isinstance(v, bool), "True or False"),
        "device": (lambda v: isinstance(v, (str, torch.device)), "'auto', 'cpu', 'cuda' or a torch.device"),
        "threshold_points": (lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool), "a whole number, 2 or more"),
        "progress": (lambda v: isinstance(v, bool) or callable(v), "True, False or a function taking a ProgressReport"),
        "threads": (lambda v: v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)), "None or a whole number, 1 or more"),
        "data": (lambda v: v is None or (isinstance(v, (str, os.PathLike)) and str(v) != ""),
                 "None (the shipped or generated data) or the path of a file or folder"),
    }
    for name, value in given.items():
        ok, expected = rules[name]
        if not ok(value):
            raise ValueError(f"Expected `{name}` to be {expected}, but got {value!r}.")


def check_task_data(task: TaskData) -> None:
    """A ready :class:`TaskData` the runner can train on, or a ValueError naming what is wrong with it.

    The splits must be non-empty, their inputs finite and of one shape, their targets ``(N, K)`` labels, 0 or 1,
    with the same K (and for a binary task, both classes in every split), the kind one the heads know and
    the body a body spec.

    >>> import dataclasses
    >>> task = get_task("titanic").load(resolve_config("titanic"))
    >>> check_task_data(dataclasses.replace(task, body=MLPBody(in_features=14, hidden=8)))
    Traceback (most recent call last):
    ...
    ValueError: Expected the body to take the inputs' shape (15,), but MLPBody(in_features=14, ...) takes (14,).
    """
    if task.kind not in ("binary", "multilabel", "grid"):
        raise ValueError(f"Expected the task's kind to be 'binary', 'multilabel' or 'grid', but got {task.kind!r}.")
    k = task.train.y.shape[1]
    if task.kind == "binary" and k != 1:
        raise ValueError(f"Expected a binary task to have one output, but its targets have {k}; use kind 'multilabel'.")
    if task.kind != "binary" and k < 2:
        raise ValueError(f"Expected a {task.kind} task to have several outputs, but its targets have {k}; use kind 'binary'.")
    if len(task.label_names) != k:
        raise ValueError(f"Expected one label name per output ({k}), but got {len(task.label_names)}.")
    if not isinstance(task.body, (MLPBody, CNNBody)):
        raise ValueError(f"Expected the task's body to be an MLPBody or a CNNBody, but got {task.body!r}.")
    _check_body_fits(task.body, tuple(task.train.x.shape[1:]), task.kind, k)
    for name in ("train", "val", "test"):
        split = getattr(task, name)
        if len(split) == 0:
            raise ValueError(f"Expected the {name} split to hold examples, but it is empty.")
        if split.x.shape[1:] != task.train.x.shape[1:] or split.y.shape[1] != k:
            raise ValueError(
                f"Expected every split to have inputs {tuple(task.train.x.shape[1:])} and {k} targets per example, but the "
                f"{name} split has {tuple(split.x.shape[1:])} and {split.y.shape[1]}."
            )
        if not torch.isfinite(split.x).all():
            raise ValueError(f"Expected the {name} split's inputs to be finite, but some are NaN or infinite.")
        if not ((split.y == 0) | (split.y == 1)).all():
            # accuracy, AUC, sensitivity and the positive/negative gradient shares all score labels; a soft target
            # (0.3) would count as positive in one and negative in another (softmax's class index rounds it)
            raise ValueError(f"Expected the {name} split's targets to be labels, 0 or 1, but some are not (soft targets "
                             "belong to a loss option, such as softmax_ce's label_smoothing).")
        positives = int(split.y.sum())
        if task.kind == "binary" and positives in (0, len(split)):
            raise ValueError(
                f"Expected the {name} split to hold both classes (a model needs both to learn from, and AUC, sensitivity "
                f"and specificity need both to be measured), but its {len(split)} example{'s are all' if len(split) > 1 else ' is'} "
                f"{'positive' if positives else 'negative'}; give more data, or data with both labels."
            )
        if task.kind != "binary" and positives in (0, split.y.numel()):
            unit = "area" if task.kind == "grid" else "label"
            raise ValueError(
                f"Expected the {name} split to hold both answers among its {unit}s (a model needs both to learn from, and AUC "
                f"and sensitivity need both to be measured), but every {unit} of its {len(split)} example"
                f"{'s' if len(split) > 1 else ''} is {'positive' if positives else 'negative'}; give more data, or data with both labels."
            )


def _check_body_fits(body: MLPBody | CNNBody, example: tuple[int, ...], kind: str, k: int) -> None:
    """A ValueError unless ``body`` takes inputs of shape ``example`` and gives the task's ``k`` outputs a place each.

    >>> _check_body_fits(MLPBody(5, 8), (4,), "binary", 1)
    Traceback (most recent call last):
    ...
    ValueError: Expected the body to take the inputs' shape (4,), but MLPBody(in_features=5, ...) takes (5,).
    """
    if isinstance(body, MLPBody):
        takes, name = (body.in_features,), f"MLPBody(in_features={body.in_features}, ...)"
    else:
        takes = (body.in_channels, body.image_size, body.image_size)
        name = f"CNNBody(in_channels={body.in_channels}, image_size={body.image_size}, ...)"
    if example != takes:
        raise ValueError(f"Expected the body to take the inputs' shape {example}, but {name} takes {takes}.")
    if kind == "grid" and body.positions != k:
        raise ValueError(
            f"Expected the body of a grid task to give one position per area ({k}), a CNNBody with grid={math.isqrt(k)} "
            f"for a square map, but it gives {body.positions}."
        )
    if kind != "grid" and body.positions != 1:
        raise ValueError(f"Expected the body of a {kind} task to give one position (grid=None), but it gives {body.positions}.")


def validate_training(cfg: TrainingDefaults) -> None:
    """Raise ValueError for impossible training settings (zero epochs, a negative learning rate, ...).

    >>> validate_training(TrainingDefaults(optimizer="adam", momentum=0.9))
    Traceback (most recent call last):
    ...
    ValueError: Expected `momentum` only with optimizer 'sgd' (Adam keeps its own running averages), but got momentum=0.9 with optimizer 'adam'.
    """
    for name in ("epochs", "batch_size"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Expected `{name}` to be a positive whole number, but got {value!r}.")
    seeds = cfg.seeds

    def whole(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if whole(seeds):
        if seeds < 1:
            raise ValueError(f"Expected `seeds` to be a positive whole number or a list of seeds, but got {seeds!r}.")
    elif (not isinstance(seeds, (list, tuple, range, np.ndarray)) or len(seeds) == 0 or not all(whole(v) for v in seeds)
          or len(set(int(v) for v in seeds)) != len(seeds) or any(v < 0 for v in seeds)):
        raise ValueError(f"Expected `seeds` to be a positive whole number or distinct non-negative whole numbers, but got {seeds!r}.")
    else:
        too_large = [int(v) for v in seeds if v > MAX_SEED]
        if too_large:  # torch's generators and the saved tables hold 64-bit integers
            raise ValueError(f"Expected each seed to be at most 2**63 - 1 = {MAX_SEED}, but got {too_large[0]}.")
    if not (isinstance(cfg.lr, (int, float)) and not isinstance(cfg.lr, bool) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"Expected `lr` to be a positive number, but got {cfg.lr!r}.")
    if cfg.optimizer not in ("adam", "sgd"):
        raise ValueError(f"Expected `optimizer` to be 'adam' or 'sgd', but got {cfg.optimizer!r}.")
    for name in ("weight_decay", "momentum"):
        value = getattr(cfg, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
            raise ValueError(f"Expected `{name}` to be a non-negative number, but got {value!r}.")
    if cfg.momentum >= 1:  # the buffer b = momentum * b + g would never forget a gradient, or would grow without end
        raise ValueError(f"Expected `momentum` to be below 1 (0.9 is usual), but got {cfg.momentum!r}: the momentum "
                         "buffer would keep every gradient forever, or grow without end.")
    if cfg.momentum and cfg.optimizer != "sgd":
        raise ValueError(f"Expected `momentum` only with optimizer 'sgd' (Adam keeps its own running averages), but got "
                         f"momentum={cfg.momentum!r} with optimizer {cfg.optimizer!r}.")
    if not whole(cfg.split_seed) or cfg.split_seed < 0:
        raise ValueError(f"Expected `split_seed` to be a whole number, 0 or more, but got {cfg.split_seed!r}.")


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """Seeds 0..n-1 for a count, or the given seeds.

    >>> seed_list(3), seed_list([7, 11])
    ([0, 1, 2], [7, 11])
    """
    if isinstance(seeds, (int, np.integer)):
        return list(range(int(seeds)))
    return [int(s) for s in seeds]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; asking for CUDA without it is an error, and so is
    any other kind of device (the runner is built and tested for these two).

    >>> resolve_device("mps")
    Traceback (most recent call last):
    ...
    ValueError: Expected `device` to be 'auto', 'cpu', 'cuda' or 'cuda:N', but got 'mps'.

    ``"cpu:1"`` is refused too: torch takes it, but there is one CPU device, and the run would record the index.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda") or (resolved.type == "cpu" and resolved.index is not None):
        raise ValueError(f"Expected `device` to be 'auto', 'cpu', 'cuda' or 'cuda:N', but got {device!r}.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Expected a CUDA device for `device={device!r}`, but CUDA is not available here; use 'cpu' or 'auto'.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"Expected `device={device!r}` to name one of the {torch.cuda.device_count()} CUDA devices here, counted from 0.")
    return resolved


def check_representable(cfg: TrainingDefaults, setups: list[LossSetup], dtype: torch.dtype) -> None:
    """The optimizer's settings must be numbers of the training dtype: past its largest (3.4e38 in
    float32) a learning rate would be inf.

    >>> from lossbench.runner import resolve_losses
    >>> cpu = torch.device("cpu")
    >>> setups = resolve_losses(["bce"], "handwritten", None, get_task("titanic").load(resolve_config("titanic")), cpu, torch.float32)
    >>> check_representable(resolve_config("titanic", lr=1e39), setups, torch.float32)
    Traceback (most recent call last):
    ...
    ValueError: Expected `lr` to be at most 3.4e+38, the largest float32, but got 1e+39.
    """
    largest = torch.finfo(dtype).max
    values = {"`lr`": cfg.lr, "`weight_decay`": cfg.weight_decay, "`momentum`": cfg.momentum}
    values |= {f"`lr x head_lr_scale of {s.name!r}`": cfg.lr * s.head_lr_scale for s in setups}
    values |= {f"`{k}` of {s.name!r}": v for s in setups for k, v in s.options.items()  # focal's gamma 1e39 is inf in float32
               if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))}
    for name, value in values.items():
        if abs(value) > largest:
            raise ValueError(f"Expected {name} to be at most {largest:.2g}, the largest {str(dtype).removeprefix('torch.')}, but got {value:.3g}.")


def _memory_of(device: torch.device) -> int | None:
    """The bytes of memory ``device`` has (a GPU's own memory; the machine's for the CPU), or None if unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def check_fits(task: TaskData, setups: list[LossSetup], cfg: TrainingDefaults, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse at once a comparison that cannot fit in memory, instead of working towards it for hours.

    The lower bound counted: every model's weights, gradients and two optimizer moments, every epoch's
    example order for every seed (int64), and the per-epoch probe's inputs and body outputs (with their
    pre-activations and gradients) for every model on the whole validation split. A CNN's inner
    activations come on top (the probe runs them in chunks).

    >>> from lossbench.runner import resolve_losses
    >>> from lossbench.tasks import get
    >>> cfg = resolve_config("titanic", seeds=10**8)
    >>> task, cpu = get("titanic").load(cfg), torch.device("cpu")
    >>> check_fits(task, resolve_losses(["bce"], "handwritten", None, task, cpu, torch.float32), cfg, cpu, torch.float32)
    Traceback (most recent call last):
    ...
    ValueError: Expected the comparison to fit in memory, but 100,000,000 models of 2,177 parameters need at least 108.1 TB ...
    """
    seeds = cfg.seeds if isinstance(cfg.seeds, (int, np.integer)) else len(cfg.seeds)
    spec = task.body
    width = max(s.head.units for s in setups)
    per_model = sum(math.prod(shape) for shape, _ in body_shapes(spec).values())  # counted, not made: a huge body fits nowhere
    per_model += spec.features * width + (width if spec.bias else 0)  # the head's w and b
    models = int(seeds) * len(setups)
    positions = task.n_outputs if task.kind == "grid" else 1
    probe = models * len(task.val) * (3 * spec.features * positions + task.val.x[0].numel()) * dtype.itemsize
    needed = models * per_model * dtype.itemsize * 4 + int(seeds) * cfg.epochs * len(task.train) * 8 + probe
    available = _memory_of(device)
    if available is not None and needed > available:
        size = f"{needed / 1e12:,.1f} TB" if needed >= 1e12 else f"{needed / 1e9:.0f} GB"
        raise ValueError(
            f"Expected the comparison to fit in memory, but {models:,} model{'s' if models != 1 else ''} of {per_model:,} "
            f"parameters need at least {size} for weights, gradients, optimizer state, batch order and probe, and this "
            f"{device.type.upper()} has {available / 2**30:.0f} GiB; use fewer seeds or epochs, or a smaller model."
        )


def check_run_options(threshold_points: int, threshold_metric: str, n_outputs: int, engine: str, cuda_graphs: bool,
                      cpu_trace: bool, threads: int | None) -> None:
    """compare()'s settings of how it runs and scores: each possible, or a ValueError saying what it must be.

    >>> check_run_options(99, "exact_match", 1, "batched", True, True, None)
    Traceback (most recent call last):
    ...
    ValueError: Expected the threshold metric exact_match (threshold_metric, --threshold-metric) only for a task with several outputs ...
    """
    if threshold_points < 2:
        raise ValueError(f"Expected `threshold_points` to be at least 2, but got {threshold_points}.")
    if threshold_points > MAX_THRESHOLD_POINTS:
        raise ValueError(f"Expected `threshold_points` to be at most {MAX_THRESHOLD_POINTS:,} (thresholds 0.0001 apart from 0.01 "
                         f"to 0.99, finer than any split here can tell apart), but got {threshold_points:,}.")
    if threshold_metric not in thr.SELECTION_METRICS:
        valid = ", ".join(repr(m) for m in thr.SELECTION_METRICS)
        raise ValueError(f"Expected `threshold_metric` to be one of {valid}, but got {threshold_metric!r}.")
    if threshold_metric == "exact_match" and n_outputs == 1:
        raise ValueError("Expected the threshold metric exact_match (threshold_metric, --threshold-metric) only for a task with several outputs (multilabel, "
                         "mammography's grid); with one output it is accuracy.")
    if engine not in ("batched", "loop"):
        raise ValueError(f"Expected `engine` to be 'batched' or 'loop', but got {engine!r}.")
    for name, value in (("cuda_graphs", cuda_graphs), ("cpu_trace", cpu_trace)):
        if not isinstance(value, bool):
            raise ValueError(f"Expected `{name}` to be True or False, but got {value!r}.")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"Expected `threads` to be a whole number from 1 to {MAX_THREADS} (8 per core of this machine), "
                         f"but got {threads!r}.")
