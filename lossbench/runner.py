"""The shared runner: trains M = losses x seeds identical models as one batched program; ``compare()`` is the entry point.

What "identical" means: for one seed, every loss starts from the same body weights, sees the
same minibatches in the same order and uses the same optimizer and hyperparameters. Only the head
differs, because the loss decides the head, and by default the heads are *function-matched*: a 2-logit
head starts at w1 = w/2, w0 = -w/2, so its first predictions equal those of the 1-logit head.

One training step, for all M models at once:

1. gather each seed's minibatch: ``x`` is ``(seeds, batch, ...)``, repeated for every loss -> ``(models, ...)``;
2. run the M bodies (batched matmuls / grouped convolutions) -> ``h (models, batch, positions, features)``;
3. for each loss (a loop over the handful of losses, never over models): its heads on its slice of ``h``,
   then its loss function vectorised over seeds with ``torch.func.vmap`` -> one loss per model ``(models,)``;
4. a model whose loss is not finite is frozen from now on (its loss is left out of the sum, and the
   optimizer gives its row of weights a learning rate of zero), and flagged; the others go on;
5. one backward pass through the sum of the M losses (each model's gradient depends on its own loss only)
   and one optimizer step over the stacked parameters. Autograd differentiates the loss functions, the
   code under study, always; for an MLP body it stops at the heads' outputs z, and the rest (three
   batched matmuls, :func:`lossbench.models.mlp_gradients`, tested equal to autograd) is written out,
   because for so small a network autograd's bookkeeping costs more than the arithmetic.

After each epoch the models are probed on the validation split (losses, accuracy, AUC and the gradient
allocation of :mod:`lossbench.gradients`); the records stay on the device until the epoch's one transfer to the host.
Before training, :mod:`lossbench.settings` checks every setting; after it, :mod:`lossbench.frames` turns the
records and the trained models' scores into the Result's tables.

On a GPU, steps 2 to 5 and the probe are each recorded once as a CUDA graph and then replayed
(:mod:`lossbench.graphs`): the same operations, launched as one instead of about 200 one by one. On a
CPU, steps 2 to 5 of an MLP are traced once into a TorchScript graph and run from it
(:class:`TracedStep`): the same operations in the same order, without Python between them, so the
numbers are equal bit for bit and a step takes about half the time (the whole Titanic grid, probe
included, runs 1.3x to 1.7x as fast); a run is traced when it wins the tracing back (:data:`TRACE_FROM_STEPS`).
A user's loss function is never recorded either way: it runs as written at every step.
"""
from __future__ import annotations

import math
import numbers
import re
import typing
import warnings
import zlib
from dataclasses import dataclass
from typing import Callable, Collection, Iterator, Literal, Mapping, Sequence

import numpy as np
import torch

from lossbench import gradients, losses as loss_registry, optim, thresholds as thr
from lossbench.graphs import CudaGraphed, Traced
from lossbench.models import (
    Head,
    MLPBody,
    Params,
    chunked_body_forward,
    head_forward,
    init_body,
    init_head,
    mlp_gradients,
    shared_body_forward,
    stack,
)
from lossbench.frames import assemble
from lossbench.results import Result
from lossbench.settings import (
    RUN,
    HeadInit,
    Precision,
    check_arguments,
    check_fits,
    check_representable,
    check_run_options,
    check_task_data,
    configured,
    resolve_config,
    resolve_device,
    seed_list,
)
from lossbench.tasks import TaskData, TrainingDefaults, check_settings_apply, get as get_task, names as task_names, unused_settings

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BUILT_IN_IMPLS = ("handwritten", "naive", "reference")

OVERRIDE_KEYS = ("head_lr_scale",)
"""Per-loss settings besides the loss family's own options (``pos_weight``, ``gamma``, ...)."""

_TENSOR_OPTIONS = ("pos_weight", "weight")


@dataclass(frozen=True)
class LossSetup:
    """One loss of a comparison, resolved: its family, implementation, options and head."""

    name: str  # as given: "bce", or "bce@weighted" for a second variant of the same family
    family: str  # "softmax_ce", "bce", "mse", "focal"
    impl: str  # "handwritten", "naive", "reference" or "package.module:function"
    fn: LossFn  # fn(output, target) -> scalar, options already bound
    options: dict  # the family options bound into fn (as given, for the record)
    head_lr_scale: float  # the head's learning rate is lr * head_lr_scale
    head: Head
    class_weight: torch.Tensor | None = None  # softmax_ce's `weight`, whose mean over class indices divides by the summed weight

    def mean_divisor(self, target: torch.Tensor) -> torch.Tensor | int:
        """What this loss's mean over ``target`` (one model's, in the loss's form) divides by.

        torch's losses divide by the number of terms (:attr:`Head.terms_per_example` per example), except
        cross-entropy with class weights on class indices, which divides by the targets' summed weight
        (on class probabilities it divides by the examples again).

        >>> import dataclasses
        >>> setup = LossSetup("softmax_ce", "softmax_ce", "reference", None, {}, 1.0, Head("two_logit", "binary", 1),
        ...                   class_weight=torch.tensor([1.0, 4.0]))
        >>> setup.mean_divisor(torch.tensor([0, 1, 1])), dataclasses.replace(setup, class_weight=None).mean_divisor(torch.tensor([0, 1, 1]))
        (tensor(9.), 3)
        """
        if self.class_weight is not None and not target.is_floating_point():
            return self.class_weight[target].sum()
        return target.shape[0] * self.head.terms_per_example


@dataclass
class ProgressReport:
    """What a progress callback receives after each epoch."""

    epoch: int
    epochs: int
    val_accuracy: dict[str, float]  # mean over seeds, per loss
    diverged: dict[str, int]  # models frozen so far, per loss


# ---------------------------------------------------------------------------------------------
# Resolving a comparison's losses (its settings are checked in lossbench.settings)
# ---------------------------------------------------------------------------------------------


def resolve_losses(
    losses: Sequence[str],
    impl: str | Mapping[str, str],
    overrides: Mapping[str, Mapping] | None,
    task: TaskData,
    device: torch.device,
    dtype: torch.dtype,
) -> list[LossSetup]:
    """Turn loss names, implementations and per-loss overrides into :class:`LossSetup` records.

    A name is a family (``"bce"``) or a labelled variant of one (``"bce@weighted"``), so that one
    comparison can hold two settings of the same family. ``impl`` is one implementation for all losses or
    a mapping from loss name to implementation. ``overrides[name]`` may hold ``head_lr_scale`` and the
    family's options (``pos_weight``, ``weight``, ``label_smoothing``, ``alpha``, ``gamma``).
    """
    if isinstance(losses, str):
        losses = [losses]
    if len(losses) == 0:
        raise ValueError("Expected at least one loss, but got none.")
    if len(set(losses)) != len(losses):
        raise ValueError(f"Expected distinct loss names, but got {list(losses)!r}.")
    impls = {name: impl for name in losses} if isinstance(impl, str) else dict(impl)
    overrides = dict(overrides or {})
    for name in list(impls) + list(overrides):
        if name not in losses:
            raise ValueError(f"Expected an implementation or override for one of the losses {list(losses)}, but got {name!r}.")
    setups = []
    family_names = [f.name for f in loss_registry.families()]
    for name in losses:
        family_name, at, label = name.partition("@")
        if family_name not in family_names or (at and not re.fullmatch(r"[A-Za-z0-9_]+", label)):
            raise ValueError(
                f"Expected each of `losses` to be a loss family among {', '.join(family_names)}, or one with a label "
                f"of letters, digits or _ (bce@weighted), but got {name!r}; `lossbench losses` lists them."
            )
        family = loss_registry.family(family_name)
        chosen = impls.get(name, "handwritten")
        settings = dict(overrides.get(name, {}))
        head_lr_scale = settings.pop("head_lr_scale", 1.0)
        if isinstance(head_lr_scale, (bool, np.bool_)) or not (isinstance(head_lr_scale, numbers.Real) and math.isfinite(head_lr_scale) and head_lr_scale > 0):
            raise ValueError(f"Expected `head_lr_scale` of {name!r} to be a positive number, but got {head_lr_scale!r}.")
        head_lr_scale = float(head_lr_scale)  # a numpy number too, recorded as a plain one
        unknown = [k for k in settings if k not in family.options]
        if unknown:
            valid = ", ".join(OVERRIDE_KEYS + tuple(family.options))
            raise ValueError(f"Expected the options of {name!r} (overrides, or --loss-option) to be among {valid}, but got {', '.join(map(repr, unknown))}.")
        if family_name == "mse" and settings.get("on", "probability") != "probability":
            raise ValueError(
                f"Expected `on` of {name!r} to be 'probability' in a comparison, but got {settings['on']!r}: a comparison "
                "scores every model by sigmoid(output), while MSE on the raw output regresses the output itself onto "
                "0 and 1 (deciding yes at 0.5, not 0), so every metric would read it on the wrong scale."
            )
        head = Head(family.head, task.kind, task.n_outputs)
        weighed = head.units if head.style == "two_logit" else head.k  # classes, or outputs each with its own term
        bound = {k: _option_tensor(name, k, v, device, dtype, weighed) if k in _TENSOR_OPTIONS else v for k, v in settings.items()}
        if chosen in BUILT_IN_IMPLS:
            fn = loss_registry.get(f"{family_name}:{chosen}", **bound)
        elif chosen.split(":", 1)[0] in {f.name for f in loss_registry.families()}:
            # 'softmax_ce:reference' for bce would train bce's head with another family's loss, which fits
            # neither its outputs nor its targets
            other, own = chosen.split(":", 1)
            if other != family_name:
                fix = f": to train {other}, add it to the losses instead"
            else:
                fix = f": write the implementation as {own!r}" if own in BUILT_IN_IMPLS else ""
            raise ValueError(
                f"Expected the implementation of {name!r} to be one of {', '.join(BUILT_IN_IMPLS)} or an import path "
                f"'package.module:function', but got {chosen!r}, which names the built-in loss family {other}{fix}."
            )
        elif ":" in chosen:
            if bound:
                raise ValueError(f"Expected no options for a user's loss function {chosen!r}, but got {', '.join(bound)}.")
            fn = loss_registry.get(chosen)  # a user's package.module:function
        else:
            raise ValueError(
                f"Expected the implementation of {name!r} to be one of {', '.join(BUILT_IN_IMPLS)} "
                f"or an import path 'package.module:function', but got {chosen!r}."
            )
        class_weight = bound.get("weight") if family_name == "softmax_ce" else None
        setups.append(LossSetup(name, family_name, chosen, fn, settings, head_lr_scale, head, class_weight))
    return setups


def _option_tensor(loss: str, key: str, value, device: torch.device, dtype: torch.dtype, count: int = 2) -> torch.Tensor:
    """A loss's weight option (``pos_weight``, ``weight``) as a tensor, or a ValueError if it cannot weigh anything.

    A weight is one finite number per output (or one for all): ``pos_weight`` positive, as it multiplies
    the positives' terms, and class ``weight`` non-negative and not all zero (softmax_ce's each positive), a list of ``count`` (the
    loss's classes, or its outputs per example), which the message's example shows.

    >>> _option_tensor("bce", "pos_weight", -4, torch.device("cpu"), torch.float32)
    Traceback (most recent call last):
    ...
    ValueError: Expected `pos_weight` of 'bce' to be positive, but got -4.
    """
    try:
        if isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)):
            raise TypeError("true/false is not a weight")
        weights = torch.as_tensor(value, dtype=torch.float64)  # as given; then in the training dtype, checked to be the same
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"Expected `{key}` of {loss!r} to be a number or a list of numbers, but got {value!r}.") from None
    if not torch.isfinite(weights).all():
        raise ValueError(f"Expected `{key}` of {loss!r} to be finite, but got {value!r}.")
    if key == "pos_weight" and not (weights > 0).all():
        raise ValueError(f"Expected `{key}` of {loss!r} to be positive, but got {value!r}.")
    info = torch.finfo(dtype)
    nonzero = weights[weights != 0].abs()
    if len(nonzero) and (nonzero.max() > info.max or nonzero.min() < info.tiny):
        raise ValueError(f"Expected `{key}` of {loss!r} to be within {str(dtype).removeprefix('torch.')}'s range, "
                         f"{info.tiny:.2g} to {info.max:.2g}, but got {value!r}.")
    weights = weights.to(dtype=dtype, device=device)
    if key == "weight" and weights.ndim != 1:
        example = ",".join(str(i + 1) for i in range(min(count, 3))) + (",..." if count > 3 else "")
        raise ValueError(f"Expected `{key}` of {loss!r} to be a list of weights, one per class or output ({count} here; on the "
                         f"command line: {loss}.weight={'[1]' if count == 1 else example}), but got {value!r}.")
    if weights.ndim == 1 and len(weights) not in (1, count):  # the loss's own message names only the minibatch's shape
        wanted = "one number (the task has one output)" if count == 1 else f"one number or a list of {count}, one per class or output"
        raise ValueError(f"Expected `{key}` of {loss!r} to be {wanted}, but got {len(weights)} numbers: {value!r}.")
    if key == "weight" and (not (weights >= 0).all() or not (weights > 0).any()):
        raise ValueError(f"Expected `{key}` of {loss!r} to be non-negative and not all zero, but got {value!r}.")
    if key == "weight" and loss.partition("@")[0] == "softmax_ce" and (weights == 0).any():
        raise ValueError(f"Expected every class `weight` of {loss!r} to be positive, but got {value!r}: cross-entropy's mean "
                         "divides by the summed weight of a minibatch's classes, 0 / 0 for a minibatch of zero-weight classes.")
    return weights


# ---------------------------------------------------------------------------------------------
# The models: one stack of bodies (models, ...) and one stack of heads per loss (seeds, ...)
# ---------------------------------------------------------------------------------------------


def _generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for one purpose of one seed, independent of every other purpose and seed."""
    return torch.Generator().manual_seed(zlib.crc32(f"{stream}:{seed}".encode()))


def _named(body: Params, head: Params) -> Params:
    """Body and head tensors under the matrix's column names: "body.w1", ..., "head.w", "head.b"."""
    return {**{f"body.{k}": v for k, v in body.items()}, **{f"head.{k}": v for k, v in head.items()}}


@dataclass
class Models:
    """The weights of M = losses x seeds models as one matrix: row m holds every weight of model m.

    Model ``l * S + s`` is loss l, seed s. With all weights in one ``(models, parameters)`` matrix, the
    optimizer is a few elementwise operations on one tensor (:mod:`lossbench.optim`), and freezing a
    model is giving its row a learning rate of zero. :meth:`parts` views the matrix as the named tensors
    that the forward pass uses (body ``w1``, ``conv0.w``, ...; head ``w``, ``b``), each ``(models, ...)``.

    Every loss's head has as many units as the widest head of the comparison; a narrower head uses its
    first units and leaves the rest at zero (they never get a gradient). So all heads run as one batched
    matmul.
    """

    flat: torch.Tensor  # (models, parameters)
    shapes: dict[str, tuple[int, ...]]  # per model, in column order: "body.w1": (d, hidden), ..., "head.w": (features, units)
    n_losses: int

    @classmethod
    def from_parts(cls, body: Params, head: Params, n_losses: int) -> "Models":
        """Pack (models, ...) tensors into the matrix."""
        named = _named(body, head)
        flat = torch.cat([v.reshape(v.shape[0], -1) for v in named.values()], dim=1)
        return cls(flat, {k: tuple(v.shape[1:]) for k, v in named.items()}, n_losses)

    def parts(self) -> tuple[Params, Params]:
        """The body's and the head's tensors, views of the matrix, each ``(models, ...)``."""
        pieces = self.flat.split([math.prod(shape) for shape in self.shapes.values()], dim=1)
        body: Params = {}
        head: Params = {}
        for (name, shape), piece in zip(self.shapes.items(), pieces):
            part, key = name.split(".", 1)
            (body if part == "body" else head)[key] = piece.view(-1, *shape)
        return body, head

    def pack(self, body: Params, head: Params) -> torch.Tensor:
        """The inverse of :meth:`parts`: named ``(models, ...)`` tensors (gradients, say) as one matrix like ``flat``."""
        named = _named(body, head)
        return torch.cat([named[name].reshape(self.flat.shape[0], -1) for name in self.shapes], dim=1)

    @property
    def body(self) -> Params:
        return self.parts()[0]

    @property
    def heads(self) -> list[Params]:
        """Each loss's heads, ``(seeds, ...)``."""
        head, s = self.parts()[1], self.flat.shape[0] // self.n_losses
        return [{k: v[i * s : (i + 1) * s] for k, v in head.items()} for i in range(self.n_losses)]

    def head_columns(self) -> slice:
        """The columns of the matrix that hold the head."""
        start = sum(math.prod(shape) for name, shape in self.shapes.items() if name.startswith("body."))
        return slice(start, self.flat.shape[1])

    def detached(self) -> "Models":
        return Models(self.flat.detach(), self.shapes, self.n_losses)


def init_models(
    task: TaskData, setups: list[LossSetup], seeds: list[int], head_init: HeadInit, device: torch.device, dtype: torch.dtype
) -> Models:
    """Initial weights: one body per seed, copied for every loss; heads matched or independent.

    ``head_init="matched"`` draws one 1-logit head per seed and derives every loss's head from it
    (:meth:`Head.from_one_logit`), so that every loss starts from the same predictions; softmax across the
    labels of a multi-label task, which no set of sigmoids equals, starts from the same logits instead.
    ``"independent"`` draws each loss's head on its own, as a naive comparison would.
    """
    if head_init not in ("matched", "independent"):
        raise ValueError(f"Expected `head_init` to be 'matched' or 'independent', but got {head_init!r}.")
    spec = task.body
    bodies = [init_body(spec, _generator(seed, "body")) for seed in seeds]
    one_logit = Head("one_logit", task.kind, task.n_outputs)
    width = max(s.head.units for s in setups)
    heads = []
    for setup in setups:
        for seed in seeds:
            if head_init == "matched":
                one = init_head(spec.features, one_logit.units, spec.bias, _generator(seed, "head"))
                head = setup.head.from_one_logit(one)
            else:
                head = init_head(spec.features, setup.head.units, spec.bias, _generator(seed, f"head:{setup.name}"))
            heads.append({k: torch.nn.functional.pad(v, (0, width - v.shape[-1])) for k, v in head.items()})
    packed = Models.from_parts(stack(bodies * len(setups)), stack(heads), len(setups))  # the same bodies for every loss
    return Models(packed.flat.to(device=device, dtype=dtype).requires_grad_(), packed.shapes, len(setups))


def batch_order(seeds: list[int], epochs: int, n: int, device: torch.device) -> torch.Tensor:
    """Every epoch's shuffled example order for every seed, built at once: ``(epochs, seeds, n)``.

    The order depends on the seed only, so every loss sees the same minibatches in the same order.

    >>> order = batch_order([0, 1], epochs=3, n=5, device=torch.device("cpu"))
    >>> order.shape, sorted(order[2, 1].tolist())  # each epoch of each seed: every example once
    (torch.Size([3, 2, 5]), [0, 1, 2, 3, 4])
    >>> torch.equal(batch_order([1], epochs=3, n=5, device=torch.device("cpu"))[:, 0], order[:, 1])  # seed 1's, whatever else trains
    True
    """
    orders = [torch.rand(epochs, n, generator=_generator(seed, "batches")).argsort(dim=1) for seed in seeds]
    return torch.stack(orders, dim=1).to(device)


def forward(task: TaskData, models: Models, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All models on their inputs: x (models, batch, ...) -> h (models, batch, positions, features) and
    z (models, batch, positions, widest head's units)."""
    body, head = models.parts()
    h = chunked_body_forward(task.body, body, x)
    return h, head_forward(head, h)


def loss_outputs(setups: list[LossSetup], z: torch.Tensor) -> list[torch.Tensor]:
    """Each loss's head outputs, ``(seeds, batch, ...)`` in the loss's layout: views of its models' rows of z."""
    return [setup.head.output(part) for setup, part in zip(setups, z.split(z.shape[0] // len(setups)))]


# ---------------------------------------------------------------------------------------------
# Losses for many models at once
# ---------------------------------------------------------------------------------------------


def _naming_the_loss(batched: Callable, setup: LossSetup) -> Callable:
    """A user's batched loss whose errors later in a run (the last, smaller minibatch; the validation split)
    name the function and the shapes it got, as its first call's do."""

    def named(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        try:
            value = batched(output, target)
        except Exception as err:
            raise ValueError(
                f"Expected the loss function {setup.impl} (for {setup.name!r}) to run on every minibatch and on the "
                f"validation split, but on outputs {tuple(output.shape[1:])} and targets {tuple(target.shape[1:])} of each "
                f"model it raised {type(err).__name__}: {err}"
            ) from err
        if value.shape != output.shape[:1]:  # a scalar per model, on every minibatch, not only on the first
            raise ValueError(
                f"Expected the loss function {setup.impl} (for {setup.name!r}) to return a scalar tensor (the mean over "
                f"the batch) on every minibatch and on the validation split, but on outputs {tuple(output.shape[1:])} "
                f"and targets {tuple(target.shape[1:])} of each model it returned {tuple(value.shape[1:])}."
            )
        return value

    return named


def vectorise(setup: LossSetup, output: torch.Tensor, target: torch.Tensor) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], str]:
    """The loss of ``setup`` for a stack of models: (seeds, batch, ...) outputs and targets -> (seeds,) losses.

    Returns the batched function and how it batches:

    1. The loss is first called once, plainly, on one model's minibatch with every check switched on, so
       a wrong target or a broken user function fails here with its own message.
    2. ``"vmap"``: ``torch.func.vmap`` runs it for every model at once. Any loss written with tensor
       operations works this way.
    3. ``"flatten"``: a built-in loss that is a plain mean of per-element terms is computed once on all
       models' examples with ``reduction="none"``, and each model's terms are averaged: the same numbers
       with less overhead. It is used only when it agrees with ``vmap`` on this first minibatch.
    4. ``"loop"``: a user's function that cannot be vectorised (``.item()``, an ``if`` on a tensor)
       falls back to one call per model, with a warning.
    """
    fn, name = setup.fn, setup.name
    first = output[0].detach().requires_grad_()  # a leaf, to see that the loss lets the gradient through
    try:
        with torch.enable_grad():
            value = fn(first, target[0])
    except Exception as err:
        if ":" not in setup.impl:  # a built-in loss: its own message (a target of the wrong form, say)
            raise
        raise ValueError(
            f"Expected the loss function {setup.impl} (for {name!r}) to run on one model's minibatch, output "
            f"{tuple(first.shape)} and target {tuple(target[0].shape)}, but it raised {type(err).__name__}: {err}"
        ) from err
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        which = f"the loss function {setup.impl} (for {name!r})" if ":" in setup.impl else f"loss {name!r}"
        raise ValueError(f"Expected {which} to return a scalar tensor (the mean over the batch), but got {shape}.")
    if ":" in setup.impl and not torch.isfinite(value):
        raise ValueError(
            f"Expected the loss function {setup.impl} (for {name!r}) to be finite on one model's first minibatch, "
            f"before any training, but it returned {value.item()}: every model would be frozen at once."
        )
    no_gradient = ValueError(
        f"Expected loss {name!r} to be differentiable in the model's output, but its value carries no gradient "
        "(.detach(), .item(), .data, torch.tensor(...), numpy or torch.no_grad inside?): its models would never train."
    )
    if not value.requires_grad:
        raise no_gradient
    try:  # the backward pass too: an in-place change to a tensor autograd saved fails only there
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(value, first, allow_unused=True)
    except RuntimeError as err:
        if ":" not in setup.impl:
            raise
        raise ValueError(
            f"Expected the loss function {setup.impl} (for {name!r}) to have a gradient autograd can compute, but its "
            f"backward pass on one model's minibatch raised RuntimeError: {str(err).splitlines()[0]} (an in-place "
            "operation such as clamp_, += or x[...] = on a tensor the gradient needs? its out-of-place form, "
            "x = x.clamp(...), keeps it)"
        ) from err
    if grad is None:  # a value made anew (torch.tensor(..., requires_grad=True)), cut off from the output
        raise no_gradient
    if ":" in setup.impl:  # a user's function: a gradient that cannot train is its mistake, not the loss's verdict
        bad = int((~torch.isfinite(grad)).sum())
        if bad:
            raise ValueError(
                f"Expected the loss function {setup.impl} (for {name!r}) to have a finite gradient on one model's first "
                f"minibatch, before any training, but it is NaN or infinite at {bad} of its {grad.numel()} outputs "
                "(torch.where with a NaN in the branch it does not pick, or sqrt or log at 0?): every model would be frozen at once."
            )
        if not grad.any():
            raise ValueError(
                f"Expected the loss function {setup.impl} (for {name!r}) to send a gradient to the model's output, but it "
                "is zero at every output of one model's first minibatch (round, sign, argmax or a comparison inside, "
                "whose gradient is zero?): its models would never train."
            )
    value = value.detach()
    batched = torch.func.vmap(fn)
    try:  # vmap's own error: the function ran plainly above, only batching it failed
        with loss_registry.value_checks(False):
            reference = batched(output, target)
    except Exception as err:  # noqa: BLE001 - any failure to vectorise falls back to the plain loop
        warnings.warn(
            f"loss {name!r} could not be vectorised over models ({type(err).__name__}: {err}); "
            "calling it once per model instead, which is slower.",
            stacklevel=2,
        )

        def one_at_a_time(out: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            return torch.stack([fn(o, t) for o, t in zip(out, tgt)])

        return (_naming_the_loss(one_at_a_time, setup) if ":" in setup.impl else one_at_a_time), "loop"
    if ":" in setup.impl:
        batched = _naming_the_loss(batched, setup)

    elementwise = setup.impl in BUILT_IN_IMPLS and "reduction" in loss_registry.accepted_options(fn)
    if elementwise and not (setup.family == "softmax_ce" and "weight" in setup.options):  # class weights: a weighted mean

        def flattened(out: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            terms = fn(out.flatten(0, 1), tgt.flatten(0, 1), reduction="none")  # every model's examples at once
            return terms.reshape(out.shape[0], -1).mean(dim=1)  # (seeds,)

        with loss_registry.value_checks(False):
            if torch.allclose(flattened(output, target), reference, rtol=1e-5, atol=1e-6, equal_nan=True):
                return flattened, "flatten"
    return batched, "vmap"


# ---------------------------------------------------------------------------------------------
# Training and probing
# ---------------------------------------------------------------------------------------------


def make_optimizer(models: Models, setups: list[LossSetup], cfg: TrainingDefaults) -> optim.Adam | optim.SGD:
    """The optimizer for the matrix of weights, with a learning rate per element.

    Bodies learn at ``lr``; each loss's head at ``lr * head_lr_scale`` (the head's columns in that
    loss's rows).
    """
    lr = torch.full_like(models.flat, cfg.lr).detach()
    s = models.flat.shape[0] // len(setups)
    for i, setup in enumerate(setups):
        lr[i * s : (i + 1) * s, models.head_columns()] = cfg.lr * setup.head_lr_scale
    if cfg.optimizer == "adam":
        return optim.Adam(models.flat, lr, weight_decay=cfg.weight_decay)
    return optim.SGD(models.flat, lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def probe(
    task: TaskData, models: Models, setups: list[LossSetup], loss_fns: list, x: torch.Tensor, y: torch.Tensor, targets: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Validation losses, scores and the gradient allocation of every model on one probe set (no parameter update).

    Only dL/dz at the heads is taken by autograd (z is made a leaf): each loss's output is a view of z, and
    the gradient into the body follows from dL/dz and the head's weights (:func:`gradients.body_gradient_norms`).
    """
    s = models.flat.shape[0] // len(setups)
    body, head = models.detached().parts()
    z = head_forward(head, shared_body_forward(task.body, body, x)).requires_grad_()  # (models, N, positions, units)
    with torch.enable_grad():
        outputs = loss_outputs(setups, z)
        per_model = torch.cat([fn(out, tgt.unsqueeze(0).expand(s, *tgt.shape)) for fn, out, tgt in zip(loss_fns, outputs, targets)])
        (d_z,) = torch.autograd.grad(per_model.sum(), [z])
    d_outputs = loss_outputs(setups, d_z)  # the same views of dL/dz
    scores = torch.cat([setup.head.scores(out.detach()) for setup, out in zip(setups, outputs)])  # (models, N, K)
    body_norms = gradients.body_gradient_norms(d_z, head["w"])
    divisors = [setup.mean_divisor(tgt) for setup, tgt in zip(setups, targets)]
    allocation = gradients.stacked_allocation([setup.head for setup in setups], d_outputs, body_norms, scores, y, divisors)
    return {"scores": scores, "val_loss": per_model.detach(), **{f"grad_{k}": v for k, v in allocation.items()}}


@dataclass
class Prepared:
    """What both training engines start from: data on the device, targets, initial models, batch order, losses."""

    xs: dict[str, torch.Tensor]  # "train", "val": (N, ...)
    ys: dict[str, torch.Tensor]  # "train", "val": (N, K)
    targets: dict[str, list[torch.Tensor]]  # per split, each loss's target in the form it expects
    models: Models
    order: torch.Tensor  # (epochs, seeds, N_train)
    loss_fns: list  # each loss vectorised over seeds
    batching: list[str]  # how each loss is vectorised: "flatten", "vmap" or "loop"


def prepare(
    task: TaskData, setups: list[LossSetup], cfg: TrainingDefaults, seeds: list[int], head_init: HeadInit, device: torch.device, dtype: torch.dtype
) -> Prepared:
    """Move the data to the device once, build the initial models and every epoch's batch order, check the losses."""
    xs = {name: getattr(task, name).x.to(device=device, dtype=dtype) for name in ("train", "val")}
    ys = {name: getattr(task, name).y.to(device=device, dtype=dtype) for name in ("train", "val")}
    targets = {name: [s.head.target(ys[name]) for s in setups] for name in ("train", "val")}
    models = init_models(task, setups, seeds, head_init, device, dtype)
    order = batch_order(seeds, cfg.epochs, xs["train"].shape[0], device)
    first = order[0, :, : min(cfg.batch_size, xs["train"].shape[0])]  # each seed's first minibatch
    with torch.no_grad():
        outputs = loss_outputs(setups, forward(task, models, xs["train"][first].repeat(len(setups), *[1] * xs["train"].ndim))[1])
    batched = [vectorise(s, out, tgt[first]) for s, out, tgt in zip(setups, outputs, targets["train"])]
    return Prepared(xs, ys, targets, models, order, [fn for fn, _ in batched], [mode for _, mode in batched])


def _to_host(tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Tensors on the device as float64 arrays on the host, in one transfer (one synchronisation on a GPU).

    >>> _to_host({"a": torch.tensor([1.5, 2.0]), "b": torch.ones(2, 2)})["b"].shape
    (2, 2)
    """
    joined = torch.cat([v.detach().reshape(-1) for v in tensors.values()]).to("cpu", torch.float64).numpy()  # cat promotes dtypes
    sizes = np.cumsum([v.numel() for v in tensors.values()])[:-1]
    return {k: part.reshape(v.shape) for (k, v), part in zip(tensors.items(), np.split(joined, sizes))}


def accuracy_at_half(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each model's accuracy at the threshold 0.5, (models,); NaN for a model with a NaN score (:func:`thr.unscored`).

    >>> accuracy_at_half(torch.tensor([[[0.9], [0.2]], [[0.5], [0.7]], [[0.9], [torch.nan]]]), torch.tensor([[1.0], [0.0]]))
    tensor([1.0000, 0.5000,    nan], dtype=torch.float64)
    """
    right = ((scores >= 0.5) == y.bool()).sum(dim=(1, 2)).to(torch.float64) / (scores.shape[1] * scores.shape[2])  # exact, as runs.csv's
    return right.masked_fill(thr.unscored(scores), torch.nan)


class Recorder:
    """Probes every model after each epoch and keeps the records, moving them to the host once per epoch."""

    def __init__(
        self,
        task: TaskData,
        setups: list[LossSetup],
        prepared: Prepared,
        epochs: int,
        progress: Callable[[ProgressReport], None] | None,
        cuda_graphs: bool = False,
    ) -> None:
        self.task, self.setups, self.prepared, self.epochs, self.progress = task, setups, prepared, epochs, progress
        self.history: dict[str, list[np.ndarray]] = {}
        self.initial = [s.head.decision_weight(h).detach().clone() for s, h in zip(setups, prepared.models.heads)]
        # on a GPU, the probe of the prepared models (trained in place) recorded once and replayed every epoch
        self.graphed = CudaGraphed(lambda train_loss, diverged: self.measure(prepared.models, train_loss, diverged)) if cuda_graphs else None

    def __call__(self, epoch: int, models: Models, train_loss: torch.Tensor, diverged_epoch: torch.Tensor) -> None:
        if self.graphed is not None:
            assert models is self.prepared.models, "a recorded probe reads the prepared models' memory"
            row = self.graphed(train_loss, diverged_epoch)
        else:
            row = self.measure(models, train_loss, diverged_epoch)
        self.keep(epoch, row)

    def measure(self, models: Models, train_loss: torch.Tensor, diverged_epoch: torch.Tensor) -> dict[str, torch.Tensor]:
        """This epoch's records, on the device: GPU work only, so that it can be recorded as a CUDA graph."""
        p = self.prepared
        probed = probe(self.task, models, self.setups, p.loss_fns, p.xs["val"], p.ys["val"], p.targets["val"])
        scores, y = probed.pop("scores"), p.ys["val"]
        return {
            "train_loss": train_loss,
            "val_loss": probed.pop("val_loss"),
            "val_accuracy": accuracy_at_half(scores, y),
            "val_auc": thr.auc(scores, y, average=thr.auc_average(self.task.kind)),
            **probed,
            "decision_weight_change": torch.cat(
                [(s.head.decision_weight(h).detach() - w0).flatten(1).norm(dim=1) for s, h, w0 in zip(self.setups, models.heads, self.initial)]
            ),
            "diverged_epoch": diverged_epoch,
        }

    def keep(self, epoch: int, row: dict[str, torch.Tensor]) -> None:
        """Move one epoch's records to the host (one transfer) and report progress."""
        host = _to_host(row)
        diverged = host.pop("diverged_epoch")
        for k, v in host.items():
            self.history.setdefault(k, []).append(v)
        if self.progress is not None:
            n_losses = len(self.setups)
            accuracy = host["val_accuracy"].reshape(n_losses, -1)
            dead = (diverged > 0).reshape(n_losses, -1).sum(axis=1)
            names = [s.name for s in self.setups]
            # a loss whose every model has NaN scores has no accuracy to show: NaN, without numpy's "Mean of empty slice"
            means = {n: float(np.nanmean(a)) if np.isfinite(a).any() else float("nan") for n, a in zip(names, accuracy)}
            self.progress(ProgressReport(epoch, self.epochs, means, dict(zip(names, dead.tolist()))))

    def records(self) -> dict[str, np.ndarray]:
        """Every record, ``(epochs + 1, models, ...)``."""
        return {k: np.stack(v) for k, v in self.history.items()}


GATHER_EPOCH_AT_ONCE = 2**22
"""Inputs of at most this many numbers per epoch, over all models (16 MB in float32), are gathered once per epoch."""


def minibatches(
    x_train: torch.Tensor, targets: list[torch.Tensor], order: torch.Tensor, batch_size: int, n_losses: int
) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """One epoch's steps: each seed's minibatch repeated for every loss, ``(models, batch, ...)``, and each
    loss's targets for it, ``(seeds, batch, ...)``.

    ``order`` is the epoch's example order per seed, ``(seeds, N)``. Small inputs (a table) are gathered
    for the whole epoch at once, laid out step by step so that each step takes a contiguous block (the
    losses then flatten their targets without a copy), which saves a few operations per step; large ones
    (images) are gathered step by step, so that memory holds one minibatch, not an epoch. Either way a
    last, smaller batch (N not a multiple of the batch size) is gathered on its own.
    """
    seeds, n = order.shape
    gathered = 0  # examples already served from the epoch gathered at once
    if n_losses * seeds * x_train.numel() <= GATHER_EPOCH_AT_ONCE:
        # the full batches in step order, (steps, seeds, batch): each step's batch is one contiguous block
        steps = n // batch_size
        flat = order[:, : steps * batch_size].reshape(seeds, steps, batch_size).transpose(0, 1).flatten()
        x_epoch = x_train.index_select(0, flat).view(steps, seeds, batch_size, *x_train.shape[1:])
        x_epoch = torch.cat([x_epoch] * n_losses, dim=1)  # (steps, models, batch, ...)
        t_epoch = [t.index_select(0, flat).view(steps, seeds, batch_size, *t.shape[1:]) for t in targets]
        for i in range(steps):
            yield x_epoch[i], [t[i] for t in t_epoch]
        gathered = steps * batch_size  # a last, smaller batch is gathered on its own below
    for start in range(gathered, n, batch_size):
        idx = order[:, start : start + batch_size]  # (seeds, batch)
        yield torch.cat([x_train[idx]] * n_losses), [t[idx] for t in targets]


class TrainStep:
    """Steps 2 to 5 of the module docstring for one minibatch: every model's loss, gradient and update.

    Autograd differentiates the loss functions; for an MLP body it stops at the heads' outputs z (a leaf)
    and the weights' gradients are written out (:func:`lossbench.models.mlp_gradients`); a CNN body is
    differentiated by autograd all the way down. The weights and the optimizer's state are updated in place.
    """

    def __init__(self, task: TaskData, setups: list[LossSetup], loss_fns: list, models: Models, optimizer: optim.Adam | optim.SGD) -> None:
        self.task, self.setups, self.loss_fns, self.models, self.optimizer = task, setups, loss_fns, models, optimizer
        self.written_out = isinstance(task.body, MLPBody)
        self.body, self.head = models.detached().parts()  # views that follow the optimizer's in-place updates

    def __call__(self, x: torch.Tensor, alive: torch.Tensor, *batch_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (models, batch, ...), ``alive`` (models,) and each loss's targets -> each model's loss and ``alive`` after it.

        Tensors in, tensors out, so that on a GPU the whole call can be recorded as one CUDA graph.
        """
        models = self.models
        # 2.-3. bodies, heads and one loss per model
        if self.written_out:
            h = chunked_body_forward(self.task.body, self.body, x)
            z = head_forward(self.head, h).requires_grad_()  # a leaf: the backward pass stops here
        else:
            h, z = forward(self.task, models, x)
        outputs = loss_outputs(self.setups, z)
        per_model = torch.cat([fn(out, tgt) for fn, out, tgt in zip(self.loss_fns, outputs, batch_targets)])  # (models,)
        # 4. freeze models whose loss is no longer finite
        alive = alive & torch.isfinite(per_model.detach())
        # 5. one backward pass and one optimizer step for all models; frozen rows do not move
        objective = torch.where(alive, per_model, 0).sum()
        if self.written_out:
            (d_z,) = torch.autograd.grad(objective, [z])
            models.flat.grad = models.pack(*mlp_gradients(self.body, self.head, x, h, d_z))
        else:
            models.flat.grad = None
            objective.backward()
        self.optimizer.step(alive)
        return per_model.detach(), alive

    def on(self, flat: torch.Tensor, state: list[torch.Tensor]) -> "TrainStep":
        """The same step on other tensors: weights ``flat`` and the optimizer's ``state``, updated in place.

        With every tensor it updates passed in, the step is a function of its inputs alone, which is what a
        trace needs (:class:`TracedStep`).
        """
        models = Models(flat, self.models.shapes, self.models.n_losses)
        return TrainStep(self.task, self.setups, self.loss_fns, models, self.optimizer.on(flat, state))


class TracedStep:
    """A :class:`TrainStep` on a CPU, traced once into a TorchScript graph and run from it (:class:`lossbench.graphs.Traced`).

    The weights and the optimizer's state are passed in as inputs, so the trace updates the runner's own
    tensors in place. Each size of minibatch in ``sizes`` has its own trace: the full minibatches, and the
    epoch's last, smaller one when the run has enough epochs to win its trace back; a size not in ``sizes``
    runs eagerly. A run is traced only when it wins the tracing back (:data:`TRACE_FROM_STEPS`).
    """

    def __init__(self, step: TrainStep, sizes: Collection[int]) -> None:
        self.step, self.sizes = step, frozenset(sizes)
        self.traced = Traced(self.pure)

    def pure(self, flat: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step as a function of the tensors it updates in place (the weights, then the optimizer's state),
        then ``x``, ``alive`` and the targets: what a trace takes as its inputs."""
        n_state = len(self.step.optimizer.state())  # then x, alive and the targets
        return self.step.on(flat, list(tensors[:n_state]))(*tensors[n_state:])

    def __call__(self, x: torch.Tensor, alive: torch.Tensor, *batch_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] not in self.sizes:
            return self.step(x, alive, *batch_targets)
        return self.traced(self.step.models.flat.detach(), *self.step.optimizer.state(), x, alive, *batch_targets)


TRACE_FROM_STEPS = 100
"""Tracing the step costs 0.04 to 0.1 s and saves about 1 ms a step (Titanic grid, 2-core CPU), so a run is
traced from this many full minibatches on (benchmarks/RESULTS.md: a run of 36 is slower traced, one of 72
about even, one of 120 faster), and the epoch's last, smaller minibatch, which has a trace of its own,
from this many epochs on."""


def traced_sizes(n: int, batch_size: int, epochs: int) -> set[int]:
    """The minibatch sizes whose steps a run of ``epochs`` epochs over ``n`` examples would run often enough
    to win their trace back: each size has its own trace.

    >>> sorted(traced_sizes(785, 64, 100)), sorted(traced_sizes(785, 64, 10))  # Titanic: 12 of 64 and 1 of 17 an epoch
    ([17, 64], [64])
    """
    steps = {batch_size: epochs * (n // batch_size), n % batch_size: epochs}
    return {size for size, count in steps.items() if size and count >= TRACE_FROM_STEPS}


def _yours(setups: list[LossSetup]) -> str | None:
    """Why a step with a user's loss is neither traced nor recorded as a CUDA graph, or None without one: a function
    of yours may keep state in Python (a call count, random numbers), which a recording would freeze at its first call."""
    yours = [s.name for s in setups if s.impl not in BUILT_IN_IMPLS]
    return f"{yours[0]} is a function of yours, run as written at every step" if yours else None


def _cpu_trace(step: TrainStep, setups: list[LossSetup], batching: list[str], device: torch.device, full_steps: int, wanted: bool) -> str | None:
    """Why the step will not be traced on this run, or None when it will: what cannot be traced first, then what would not pay."""
    if not wanted:
        return "turned off"
    if device.type != "cpu":
        return "not on a CPU"
    if not step.written_out:
        return "a CNN's step is its convolutions' arithmetic, not its launches"
    looped = [s.name for s, mode in zip(setups, batching) if mode == "loop"]
    if looped:
        return f"{looped[0]} runs one model at a time, and a trace would replay its first call's branches"
    if (yours := _yours(setups)) is not None:
        return yours
    if full_steps < TRACE_FROM_STEPS:
        return f"{full_steps} full minibatches, too few to win back the tracing (from {TRACE_FROM_STEPS} on)"
    return None


def train(
    task: TaskData,
    setups: list[LossSetup],
    cfg: TrainingDefaults,
    seeds: list[int],
    head_init: HeadInit = "matched",
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    progress: Callable[[ProgressReport], None] | None = None,
    cuda_graphs: bool = True,
    cpu_trace: bool = True,
) -> dict:
    """Train every model of the comparison as one batched program (see the module docstring for one step).

    Returns the per-epoch records (``history[name]`` is ``(epochs + 1, models, ...)``, epoch 0 before
    training), ``diverged_epoch`` ``(models,)`` (0 where a model never diverged), the final models,
    ``cuda_graphs``: on a GPU (unless ``cuda_graphs=False``) the step and the epoch's probe are recorded as
    CUDA graphs and replayed (:mod:`lossbench.graphs`; the same operations, launched as one); this says
    whether they were, or why not; and ``cpu_trace``: on a CPU (unless ``cpu_trace=False``) whether an
    MLP's step ran from a TorchScript trace (:class:`TracedStep`), or why not.
    """
    prepared = prepare(task, setups, cfg, seeds, head_init, device, dtype)
    models, order, loss_fns = prepared.models, prepared.order, prepared.loss_fns
    x_train, targets = prepared.xs["train"], prepared.targets["train"]
    n_losses, m = len(setups), len(setups) * len(seeds)
    optimizer = make_optimizer(models, setups, cfg)
    alive = torch.ones(m, dtype=torch.bool, device=device)
    diverged_epoch = torch.zeros(m, dtype=torch.long, device=device)
    graphed = cuda_graphs and device.type == "cuda" and _yours(setups) is None
    recorder = Recorder(task, setups, prepared, cfg.epochs, progress, cuda_graphs=graphed)
    step = TrainStep(task, setups, loss_fns, models, optimizer)
    n = x_train.shape[0]
    batch_size = min(cfg.batch_size, n)  # a minibatch larger than the split is the whole split, once an epoch
    untraced = _cpu_trace(step, setups, prepared.batching, device, cfg.epochs * (n // batch_size), cpu_trace)
    if graphed:
        step = CudaGraphed(step)
    elif untraced is None:
        step = TracedStep(step, traced_sizes(n, batch_size, cfg.epochs))

    with loss_registry.value_checks(False):
        recorder(0, models, torch.full((m,), torch.nan, dtype=dtype, device=device), diverged_epoch)
        for epoch in range(1, cfg.epochs + 1):
            alive_before = alive
            step_losses, step_alive = [], []
            # 1. each seed's minibatch, repeated for every loss, and each loss's targets
            for x, batch_targets in minibatches(x_train, targets, order[epoch - 1], batch_size, n_losses):
                per_model, alive = step(x, alive, *batch_targets)  # 2.-5.
                step_losses.append(per_model)
                step_alive.append(alive)
            diverged_epoch = torch.where(alive_before & ~alive, epoch, diverged_epoch)
            counted = torch.stack(step_alive)  # (steps, models): the steps each model trained on
            train_loss = torch.where(counted, torch.stack(step_losses), 0).sum(dim=0) / counted.sum(dim=0)  # nan: no step
            recorder(epoch, models, train_loss, diverged_epoch)
    if graphed:
        used = _graphs_used(step, recorder.graphed)
    else:
        used = "no: " + (("turned off" if not cuda_graphs else _yours(setups)) if device.type == "cuda" else "not on a GPU")
    traced = f"no: {untraced}" if untraced is not None else _trace_used(step.traced)
    if graphed:  # free the graphs' memory now, not when the garbage collector next runs
        step.release()
        recorder.graphed.release()
        models.flat.grad = None  # it lived in the step's recorded memory
    return {
        "history": recorder.records(), "diverged_epoch": diverged_epoch.cpu().numpy(), "models": models, "batching": prepared.batching,
        "cuda_graphs": used, "cpu_trace": traced,
    }


def _trace_used(traced: Traced) -> str:
    """How many steps ran from the TorchScript trace, or why the step could not be traced (it then ran eagerly)."""
    return f"no: {traced.failed}" if traced.failed is not None else f"yes: {traced.replays} steps run from the trace"


def _graphs_used(step: CudaGraphed, measure: CudaGraphed) -> str:
    """How often the recorded graphs were replayed, or why a function could not be recorded (it then ran eagerly)."""
    failures = [g.failed for g in (step, measure) if g.failed is not None]
    return f"no: {failures[0]}" if failures else f"yes: {step.replays} steps and {measure.replays} probes replayed"


@torch.no_grad()
def predict(task: TaskData, models: Models, setups: list[LossSetup], x: torch.Tensor) -> torch.Tensor:
    """Scores of every model on the same examples: (models, N, K)."""
    body, head = models.parts()
    z = head_forward(head, shared_body_forward(task.body, body, x))
    return torch.cat([s.head.scores(out) for s, out in zip(setups, loss_outputs(setups, z))])


# ---------------------------------------------------------------------------------------------
# compare(): the one entry point
# ---------------------------------------------------------------------------------------------


def compare(
    task: str | TaskData = "titanic",
    losses: Sequence[str] = RUN.losses,
    impl: str | Mapping[str, str] = RUN.impl,
    *,
    seeds: int | Sequence[int] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: Literal["adam", "sgd"] | None = None,
    weight_decay: float | None = None,
    momentum: float | None = None,
    head_init: HeadInit = RUN.head_init,
    overrides: Mapping[str, Mapping] | None = None,
    baseline: str | None = None,
    data: str | None = None,
    config: Mapping | None = None,
    quick: bool = False,
    device: str = RUN.device,
    dtype: Precision = RUN.dtype,
    threshold_points: int = RUN.threshold_points,
    threshold_metric: thr.SelectionMetric = RUN.threshold_metric,
    progress: bool | Callable[[ProgressReport], None] = False,
    engine: Literal["batched", "loop"] = "batched",
    threads: int | None = None,
    cuda_graphs: bool = True,
    cpu_trace: bool = True,
) -> Result:
    """Train every loss on identical models over several seeds and return the :class:`~lossbench.results.Result`.

    ``task`` is a task name (its defaults come from the task's ``Config`` dataclass, then ``quick``, then
    ``config`` overrides, then the explicit training arguments) or a ready :class:`TaskData`.
    ``losses`` are family names (``"softmax_ce"``, ``"bce"``, ``"mse"``, ``"focal"``), optionally labelled
    (``"bce@weighted"``) to compare two settings of one family. ``impl`` is ``"handwritten"``, ``"naive"``,
    ``"reference"`` or a user's ``"package.module:function"``, for all losses or per loss (a mapping).
    ``overrides`` sets per-loss options, e.g. ``{"softmax_ce": {"head_lr_scale": 0.5}}`` or
    ``{"bce@weighted": {"pos_weight": 4.0}}``. ``baseline`` is the loss that paired differences refer to
    (default: ``"bce"`` when compared, else the first loss). The best threshold is the one of the
    ``threshold_points`` swept from 0.01 to 0.99 with the highest validation ``threshold_metric``
    (:data:`~lossbench.thresholds.SELECTION_METRICS`; ties go to the threshold closest to 0.5), and it is
    applied to the test split. ``engine="loop"`` trains one model at a time
    with plain ``torch.nn`` modules instead: the slow reference the tests and benchmarks hold the batched
    program against. ``threads`` sets torch's CPU threads for the run (``None``: torch's default); on a
    busy machine one thread avoids the threads waiting on each other. On a GPU the batched engine records
    its training step and its per-epoch probe as CUDA graphs and replays them (:mod:`lossbench.graphs`);
    ``cuda_graphs=False`` launches every operation on its own instead (the same results, slower); the
    config's ``cuda_graphs`` entry says whether graphs were used. On a CPU, the training step of an MLP
    body is traced once into a TorchScript graph and run from it (about twice as fast a step, 1.3x to
    1.7x as fast a Titanic run, the same numbers) when the run is long enough to win the tracing back
    (:data:`TRACE_FROM_STEPS`; the default and quick Titanic runs are); ``cpu_trace=False`` always runs it eagerly,
    and the config's ``cpu_trace`` entry says which, and why.

    >>> result = compare("titanic", quick=True, seeds=2, epochs=2, device="cpu")  # doctest: +SKIP
    >>> result.summary.query("metric == 'test_accuracy'")[["loss", "mean", "ci_low", "ci_high"]]  # doctest: +SKIP
    """
    check_arguments(losses=losses, impl=impl, overrides=overrides, quick=quick, device=device, threshold_points=threshold_points,
                     progress=progress, threads=threads, data=data)
    training = dict(seeds=seeds, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay, momentum=momentum)
    if isinstance(task, TaskData):
        if quick or data is not None:
            raise ValueError("Expected `quick` and `data` only with a task name: a TaskData is already loaded; set its "
                             "training through `config` or the training arguments.")
        check_task_data(task)
        task_data = task
        cfg = configured(TrainingDefaults(), {}, config, training)
        unused: tuple[str, ...] = ()
    elif isinstance(task, str):
        cfg = resolve_config(task, quick, config, **training)
        check_settings_apply(get_task(task), config or {}, data)
        unused = unused_settings(get_task(task), data)
        task_data = get_task(task).load(cfg, data)
        try:  # what the loader made of the data or the settings
            check_task_data(task_data)
        except ValueError as err:
            source = f"from {data}" if data is not None else "with these settings"
            raise ValueError(f"The {task} task loaded {source} cannot be trained on: {err}") from None
    else:
        raise ValueError(f"Expected `task` to be a task name ({', '.join(task_names())}) or a TaskData, but got {task!r}.")
    if dtype not in typing.get_args(Precision):
        raise ValueError(f"Expected `dtype` to be 'float32' or 'float64', but got {dtype!r}.")
    torch_dtype = getattr(torch, dtype)
    dev = resolve_device(str(device))
    losses = [losses] if isinstance(losses, str) else list(losses)
    setups = resolve_losses(losses, impl, overrides, task_data, dev, torch_dtype)
    if baseline is None:
        baseline = "bce" if "bce" in losses else losses[0]
    if baseline not in losses:
        raise ValueError(f"Expected `baseline` to be one of the losses {losses}, but got {baseline!r}.")
    if any(s.head.style == "two_logit" for s in setups) and task_data.kind == "multilabel":
        for split in ("train", "val"):  # its target y / y.sum() is 0 / 0 without one; the probe takes val's loss
            empty = int((getattr(task_data, split).y.sum(dim=1) == 0).sum())
            if empty:
                what = "training" if split == "train" else "validation"
                raise ValueError(
                    f"Expected every {what} example to have a label for softmax across labels (its target shares "
                    f"the labels out), but {empty} of the {split} split's have none."
                )
    check_fits(task_data, setups, cfg, dev, torch_dtype)
    check_representable(cfg, setups, torch_dtype)
    seed_values = seed_list(cfg.seeds)
    check_run_options(threshold_points, threshold_metric, task_data.n_outputs, engine, cuda_graphs, cpu_trace, threads)
    if engine == "loop":
        from lossbench.loop import train_one_at_a_time as trainer
    else:
        trainer = train
    callback = ProgressBar(cfg.epochs) if progress is True else (progress or None)
    previous_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        threads_used = torch.get_num_threads()
        graphs = {} if engine == "loop" else {"cuda_graphs": cuda_graphs, "cpu_trace": cpu_trace}
        trained = trainer(task_data, setups, cfg, seed_values, head_init, dev, torch_dtype, callback, **graphs)
    finally:
        torch.set_num_threads(previous_threads)
        if progress is True and callback is not None:
            callback.close()
    options = dict(
        losses=losses, impl=impl, overrides=overrides, head_init=head_init, device=str(dev), dtype=dtype, data=data,
        task_config_unused=list(unused), quick=quick, threshold_points=threshold_points, threshold_metric=threshold_metric, baseline=baseline, engine=engine, threads=threads_used,
        cuda_graphs=trained.get("cuda_graphs", "no: the plain loop"), cpu_trace=trained.get("cpu_trace", "no: the plain loop"),
    )
    scores = {name: predict(task_data, trained["models"], setups, getattr(task_data, name).x.to(device=dev, dtype=torch_dtype))
              for name in ("val", "test")}
    return assemble(task_data, setups, cfg, seed_values, trained, scores, dev, torch_dtype, threshold_points, baseline, options)


class ProgressBar:
    """A tqdm bar over epochs showing the current mean validation accuracy per loss."""

    def __init__(self, epochs: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epochs, desc="training", unit="epoch", leave=False)

    def __call__(self, report: ProgressReport) -> None:
        if report.epoch == 0:
            return
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in report.val_accuracy.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

