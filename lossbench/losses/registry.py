"""The registry of loss families and their implementations, and the lookup of a user's own loss by import path.

A name is ``"family"`` (its handwritten implementation), ``"family:implementation"`` (``"bce:naive"``)
or an import path ``"package.module:function"`` to a function of the same contract,
``fn(output, target) -> scalar tensor``.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Mapping

from torch import Tensor

from lossbench.losses import bce, focal, mse, softmax_ce

IMPLEMENTATIONS: tuple[str, ...] = ("handwritten", "naive", "reference")


@dataclass(frozen=True)
class LossFamily:
    """One loss family: its implementations, the head it trains, and its loss and gradient as functions of p."""

    name: str  # "softmax_ce", "bce", "mse", "focal"
    summary: str  # one line for `lossbench losses`
    head: Literal["two_logit", "one_logit"]  # softmax_ce: 2 logits per binary decision; the others: 1 logit
    implementations: Mapping[str, Callable]  # "handwritten", "naive", "reference" -> fn(output, target, ...)
    options: tuple[str, ...]  # the settings the handwritten and reference implementations accept (besides `reduction`)
    probability_loss: Callable = field(repr=False)  # the family module's loss_of_probability(p, y, ...)
    logit_gradient: Callable = field(repr=False)  # the family module's grad_wrt_logit(p, y, ...)
    check_options: Callable = field(repr=False)  # the family module's check_options(**options): raises a ValueError
    shaping_options: tuple[str, ...] = ()  # options whose defaults change the loss from its plain form (named in legends)

    def loss_of_probability(self, p: Tensor, y: float | Tensor, **options) -> Tensor:
        """The loss of one binary decision as a function of the predicted probability ``p`` of the positive class.

        >>> import torch
        >>> family("mse").loss_of_probability(torch.tensor([0.5, 0.9]), 1.0)
        tensor([0.2500, 0.0100])
        """
        _check_keywords(self.probability_loss, options, f"{self.name}.loss_of_probability")
        return self.probability_loss(p, y, **options)

    def shaping_defaults(self) -> dict:
        """The default values of the options that shape this loss (``shaping_options``), for naming a curve.

        >>> family("focal").shaping_defaults()
        {'alpha': 0.25, 'gamma': 2.0}
        >>> family("bce").shaping_defaults()
        {}
        """
        parameters = inspect.signature(self.probability_loss).parameters
        return {name: parameters[name].default for name in self.shaping_options}

    def grad_wrt_logit(self, p: Tensor, y: float | Tensor, **options) -> Tensor:
        """Analytic dL/dz of one binary decision as a function of ``p = sigmoid(z)`` (softmax_ce: on the unit z1).

        bce: ``p - y``; softmax_ce on a 2-logit head: ``p - y`` on the positive unit (the negative one
        gets the opposite); mse: ``2 (p - y) p (1 - p)``; focal: its closed form.

        >>> import torch
        >>> p = torch.tensor([0.001, 0.999])                  # a confident right answer and a confident mistake for y = 0 ...
        >>> family("bce").grad_wrt_logit(p, 0.0)              # ... keep cross-entropy's full gradient
        tensor([0.0010, 0.9990])
        >>> family("mse").grad_wrt_logit(p, 0.0)              # ... and vanish under MSE
        tensor([1.9980e-06, 1.9960e-03])
        """
        _check_keywords(self.logit_gradient, options, f"{self.name}.grad_wrt_logit")
        return self.logit_gradient(p, y, **options)


_FAMILIES: dict[str, LossFamily] = {
    f.name: f
    for f in (
        LossFamily(
            name="softmax_ce",
            summary="softmax cross-entropy, -log softmax(z)_y, through log-sum-exp",
            head="two_logit",
            implementations={
                "handwritten": softmax_ce.cross_entropy,
                "naive": softmax_ce.cross_entropy_naive,
                "reference": softmax_ce.cross_entropy_reference,
            },
            options=("weight", "label_smoothing"),
            probability_loss=softmax_ce.loss_of_probability,
            logit_gradient=softmax_ce.grad_wrt_logit,
            check_options=softmax_ce.check_options,
        ),
        LossFamily(
            name="bce",
            summary="binary cross-entropy on logits, -[y log sigmoid(z) + (1-y) log sigmoid(-z)]",
            head="one_logit",
            implementations={
                "handwritten": bce.binary_cross_entropy_with_logits,
                "naive": bce.binary_cross_entropy_naive,
                "reference": bce.binary_cross_entropy_reference,
            },
            options=("pos_weight", "weight"),
            probability_loss=bce.loss_of_probability,
            logit_gradient=bce.grad_wrt_logit,
            check_options=bce.check_options,
        ),
        LossFamily(
            name="mse",
            summary="mean squared error on the probability, (sigmoid(z) - y)^2: "
            "its gradient vanishes on confident mistakes",
            head="one_logit",
            implementations={
                "handwritten": mse.mse,
                "naive": mse.mse_naive,
                "reference": mse.mse_reference,
            },
            options=("on",),
            probability_loss=mse.loss_of_probability,
            logit_gradient=mse.grad_wrt_logit,
            check_options=mse.check_options,
        ),
        LossFamily(
            name="focal",
            summary="focal loss (Lin et al. 2017), -alpha_t (1-p_t)^gamma log p_t: "
            "cross-entropy that down-weights easy examples",
            head="one_logit",
            implementations={
                "handwritten": focal.focal_loss,
                "naive": focal.focal_loss_naive,
                "reference": focal.focal_loss_reference,
            },
            options=("alpha", "gamma"),
            probability_loss=focal.loss_of_probability,
            logit_gradient=focal.grad_wrt_logit,
            check_options=focal.check_options,
            shaping_options=("alpha", "gamma"),
        ),
    )
}


def accepted_options(fn: Callable) -> tuple[str, ...]:
    """The keyword options a loss function accepts: its parameters after ``(output, target)``.

    A function with ``**kwargs`` accepts any option; it is reported as ``("**kwargs",)``.

    >>> accepted_options(bce.binary_cross_entropy_with_logits)
    ('pos_weight', 'weight', 'reduction')
    >>> accepted_options(bce.binary_cross_entropy_naive)
    ()
    """
    if isinstance(fn, functools.partial):
        fn = fn.func
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return ("**kwargs",)
    return tuple(p.name for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _check_keywords(fn: Callable, options: Mapping[str, object], what: str) -> None:
    accepted = accepted_options(fn)
    if accepted == ("**kwargs",):
        return
    unknown = [k for k in options if k not in accepted]
    if unknown:
        got = ", ".join(repr(k) for k in unknown)
        if not accepted:
            raise ValueError(f"Expected no options for `{what}`, which takes none, but got {got}.")
        listing = ", ".join(repr(a) for a in accepted)
        raise ValueError(f"Expected the options of `{what}` to be among {listing}, but got {got}.")


def families() -> list[LossFamily]:
    """Every loss family, in a fixed order: softmax_ce, bce, mse, focal.

    >>> [f.name for f in families()]
    ['softmax_ce', 'bce', 'mse', 'focal']
    """
    return list(_FAMILIES.values())


def names() -> list[str]:
    """Every built-in ``"family:implementation"`` name.

    >>> names()[:3]
    ['softmax_ce:handwritten', 'softmax_ce:naive', 'softmax_ce:reference']
    """
    return [f"{f.name}:{impl}" for f in families() for impl in f.implementations]


class LossNameError(ValueError):
    """A loss name or import path that names no loss function; ``detail`` says what is wrong with it, if known."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def _usage_error(got: str, detail: str = "") -> LossNameError:
    if detail:  # the reason first: the sixteen built-in names would push it off the end of the line
        return LossNameError(
            f"Expected `loss` to be a built-in name or an import path 'package.module:function', but got {got!r} "
            f"({detail}); `lossbench losses` lists them.",
            detail,
        )
    valid = ", ".join(repr(n) for n in list(_FAMILIES) + names())
    return LossNameError(
        f"Expected `loss` to be one of {valid} or an import path 'package.module:function', but got {got!r}; "
        "`lossbench losses` lists them.",
        detail,
    )


def family(name: str) -> LossFamily:
    """The loss family called ``name`` ("softmax_ce", "bce", "mse", "focal").

    >>> family("bce").head
    'one_logit'
    >>> family("cross_entropy")
    Traceback (most recent call last):
    ...
    ValueError: Expected `family` to be one of 'softmax_ce', 'bce', 'mse', 'focal', but got 'cross_entropy'; `lossbench losses` lists them.
    """
    if name not in _FAMILIES:
        valid = ", ".join(repr(n) for n in _FAMILIES)
        raise ValueError(f"Expected `family` to be one of {valid}, but got {name!r}; `lossbench losses` lists them.")
    return _FAMILIES[name]


_LOADED: dict[str, tuple[int, int]] = {}  # a user's module -> (modification time in ns, size) of its file when loaded


def _file_stamp(module: object) -> tuple[int, int] | None:
    """The modification time and size of a module's source file, or None when it has none."""
    try:
        st = os.stat(module.__file__)  # type: ignore[attr-defined]
    except (AttributeError, TypeError, OSError):
        return None
    return st.st_mtime_ns, st.st_size


def module_of_path(text: str) -> str | None:
    """The module a file path names (``"hw/week3.py"`` -> ``"hw.week3"``), or None when ``text`` is no path.

    Students often give the file where Python wants the module; the error says what to write instead.

    >>> module_of_path("mysolution.py"), module_of_path("./hw/week3.py"), module_of_path("mysolution")
    ('mysolution', 'hw.week3', None)
    """
    if not (text.endswith(".py") or "/" in text or "\\" in text):
        return None
    return text.removesuffix(".py").replace("\\", "/").strip("/").removeprefix("./").replace("/", ".")


def load_user_function(path: str) -> Callable:
    """Import ``"package.module:function"``, looking on the import path and in the current directory.

    A student who runs ``lossbench`` next to ``mysolution.py`` names their loss ``"mysolution:my_bce"``.
    A module loaded here is loaded again when its file has changed since, so an edited solution is the
    one a notebook's next call uses.
    Every mistake (malformed path, no such module, no such attribute, not callable) is a ``LossNameError``,
    a ``ValueError`` whose ``detail`` says what is wrong with the path.

    >>> load_user_function("lossbench.losses.bce:binary_cross_entropy_naive").__name__
    'binary_cross_entropy_naive'
    >>> load_user_function("lossbench.losses.bce:nothing_here")
    Traceback (most recent call last):
    ...
    lossbench.losses.registry.LossNameError: Expected `loss` to be a built-in name or an import path 'package.module:function', but got 'lossbench.losses.bce:nothing_here' (module 'lossbench.losses.bce' has no attribute 'nothing_here'); `lossbench losses` lists them.
    """
    if not isinstance(path, str) or path.count(":") != 1:
        raise _usage_error(path, "an import path has exactly one ':' between module and function")
    module_name, attr = path.split(":")
    if (dotted := module_of_path(module_name)) is not None:
        raise _usage_error(path, f"name the module, not its file: '{dotted}:{attr}', from the folder that holds it")
    if not all(part.isidentifier() for part in module_name.split(".")) or not attr.isidentifier():
        raise _usage_error(path, "module and function must be Python names, as in 'mysolution:my_loss'")

    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)  # a user's module next to where they run lossbench
    try:
        importlib.invalidate_caches()  # see files written since the last import
        module = importlib.import_module(module_name)
        if module_name in _LOADED and _LOADED[module_name] != _file_stamp(module):
            module = importlib.reload(module)  # edited since: the function as it is now
        _LOADED[module_name] = _file_stamp(module)
    except ModuleNotFoundError as err:
        top = module_name.split(".")
        if err.name is not None and err.name not in {".".join(top[: i + 1]) for i in range(len(top))}:
            raise _usage_error(path, f"module {module_name!r} was found but failed to import: {err}") from err
        raise _usage_error(
            path, f"no module named {module_name!r} on the import path or in the current directory {cwd}"
        ) from err
    except (Exception, SystemExit) as err:  # a SyntaxError, or an error or sys.exit() at the module's top level
        raise _usage_error(path, f"module {module_name!r} was found but failed to import: {type(err).__name__}: {err}") from err
    finally:
        if added:
            sys.path.remove(cwd)

    if not hasattr(module, attr):
        hidden = hidden_file(module_name, cwd)
        if hidden is not None:
            mine, found = hidden
            top = module_name.split(".")[0]
            raise _usage_error(path, f"your {mine.name} is hidden: {top!r} is the name of a module Python imports instead "
                                     f"({found}); rename your file (e.g. my_{mine.name}) and pass 'my_{module_name}:{attr}'")
        raise _usage_error(path, f"module {module_name!r} has no attribute {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise _usage_error(path, f"{module_name}.{attr} is not a function, it is of type {type(fn).__name__}")
    return fn


def hidden_file(module_name: str, cwd: str) -> tuple[Path, Path] | None:
    """The user's ``<top>.py`` in ``cwd`` and the file Python imported for ``<top>`` instead, when they differ.

    A module Python has loaded already (``random``, ``json``), or one installed under that name, comes before
    the current directory, so a function in ``./random.py`` is looked for in the standard library's.

    >>> hidden_file("lossbench_surely_not_a_module", ".") is None
    True
    """
    top = module_name.split(".")[0]
    mine = Path(cwd, f"{top}.py")
    loaded = getattr(sys.modules.get(top), "__file__", None)
    if not mine.is_file() or loaded is None or Path(loaded).resolve() == mine.resolve():
        return None
    return mine, Path(loaded)


def get(name: str, **options) -> Callable:
    """The loss function called ``name``, with ``options`` bound by ``functools.partial``.

    ``"bce"`` is the handwritten implementation, ``"bce:naive"`` / ``"bce:reference"`` the others, and
    ``"package.module:function"`` a user's own. Options must be ones the implementation accepts
    (the naive implementations accept none), with values the family accepts, checked here:

    >>> get("focal", gamma=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got -1.0.

    >>> import torch
    >>> loss = get("bce", pos_weight=4.0)
    >>> loss(torch.tensor([0.0]), torch.tensor([1.0]))        # 4 log 2
    tensor(2.7726)
    >>> get("bce:naive", pos_weight=4.0)
    Traceback (most recent call last):
    ...
    ValueError: Expected no options for `bce:naive`, which takes none, but got 'pos_weight'.
    """
    if not isinstance(name, str):
        raise _usage_error(name)
    head, sep, tail = name.partition(":")
    if not sep and head in _FAMILIES:
        label, fn = f"{head}:handwritten", _FAMILIES[head].implementations["handwritten"]
    elif sep and head in _FAMILIES:
        if tail not in _FAMILIES[head].implementations:
            clash = f"; a module of yours named {head}.py is hidden by the loss family {head!r}: rename it" if os.path.exists(f"{head}.py") else ""
            raise _usage_error(name, f"{head!r} has the implementations {', '.join(_FAMILIES[head].implementations)}{clash}")
        label, fn = name, _FAMILIES[head].implementations[tail]
    elif sep:
        label, fn = name, load_user_function(name)
    else:
        raise _usage_error(name)
    if not options:
        return fn
    _check_keywords(fn, options, label)
    if head in _FAMILIES:
        _FAMILIES[head].check_options(**options)  # a bad value fails here, not at the first training step
    return functools.partial(fn, **options)


def describe() -> list[str]:
    """One line per family for ``lossbench losses``: name, head, implementations, options, summary.

    >>> print(describe()[1])
    bce  one_logit  impl: handwritten, naive, reference  options: pos_weight, weight  binary cross-entropy on logits, ...
    """
    rows = [
        (
            f.name,
            f.head,
            "impl: " + ", ".join(f.implementations),
            "options: " + ", ".join(f.options),
            f.summary,
        )
        for f in families()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]  # align the columns
    return ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
