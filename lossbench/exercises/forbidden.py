"""Which library functions a student's function calls: the guard that keeps an exercise an exercise.

An exercise asks a student to write, say, binary cross-entropy themselves. Calling
`torch.nn.functional.binary_cross_entropy_with_logits` would pass every value check
without teaching anything, so the checker runs the student's function while three
recorders listen, and a call to a forbidden function fails the case:

1. a `torch.overrides.TorchFunctionMode` sees every call of a torch function at the
   Python level, under whatever name the student imported it: `F.cross_entropy`,
   `from torch.nn.functional import cross_entropy as ce`, `nn.CrossEntropyLoss()(...)`
   (the module calls `F.cross_entropy`), `torch.log_softmax`, `x.log_softmax(1)`;
2. a `torch.utils._python_dispatch.TorchDispatchMode` sees the ATen kernel that finally
   runs (`aten::_log_softmax`, `aten::binary_cross_entropy_with_logits`), so
   `torch.ops.aten...`, `torch._C._nn...` and library code that calls them are seen too;
3. a `sys.setprofile` hook sees calls of Python functions in forbidden modules
   (lossbench's own `lossbench.losses`; the checker's reference answers in
   `lossbench.exercises.references`; `torch.distributions.categorical`, whose
   `Categorical(logits=z)` is log_softmax in plain torch).

This is a learning aid, not a security boundary: a determined student can switch the
modes off, copy PyTorch's source, call code the recorders do not see (numpy, a C
extension, another thread: the recorders listen on the thread that calls the function),
or, since the function runs in the checker's process, read the expected answer from the
checker's own frames. It catches the honest shortcut, not an attack.
"""
from __future__ import annotations

import functools
import importlib
import sys
from dataclasses import dataclass
from types import CodeType, FrameType, TracebackType
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass(frozen=True)
class Forbidden:
    """What one exercise may not call: torch functions by dotted name, ATen kernels, Python modules."""

    functions: tuple[str, ...] = ()  # e.g. "torch.nn.functional.cross_entropy", "torch.Tensor.log_softmax"
    aten_ops: tuple[str, ...] = ()  # e.g. "aten::_log_softmax": the kernel, whichever alias reached it
    modules: tuple[str, ...] = ()  # e.g. "lossbench.losses": any Python function defined under it

    def __bool__(self) -> bool:
        return bool(self.functions or self.aten_ops or self.modules)


def _resolve(dotted: str) -> Any | None:
    """The object a dotted name such as `torch.Tensor.log_softmax` points to, or None if absent."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):  # longest importable module prefix first
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def _defined_under(frame: FrameType | None, modules: tuple[str, ...]) -> bool:
    """Whether the code running in `frame` belongs to one of `modules` or to a module under one.

    >>> _defined_under(sys._getframe(), ("lossbench.exercises",)), _defined_under(None, ("torch",))
    (True, False)
    """
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return any(module == m or module.startswith(m + ".") for m in modules)


def _qualname(frame: FrameType) -> str:
    """The running function's name with its class, `Categorical.__init__`, as the student would look it up.

    Python 3.11 keeps it on the code object; on 3.10 it is looked up among the names of the function's
    module (:func:`_look_up_qualname`).

    >>> class Loss:
    ...     def forward(self):
    ...         return _qualname(sys._getframe())
    >>> Loss().forward().endswith("Loss.forward")
    True
    """
    code = frame.f_code
    if hasattr(code, "co_qualname"):  # Python 3.11 and later
        return code.co_qualname
    return _look_up_qualname(code, frame.f_globals)


def _look_up_qualname(code: CodeType, names: dict[str, Any]) -> str:
    """The qualified name of the function whose code is `code`: a function in `names` (a module's globals), or a
    method, classmethod, staticmethod or property of a class in it; the bare name where none is found.

    >>> class Loss:
    ...     def forward(self): ...
    ...     @classmethod
    ...     def make(cls): ...
    ...     @property
    ...     def scale(self): ...
    >>> [_look_up_qualname(f.__code__, {"Loss": Loss}) for f in (Loss.forward, Loss.make.__func__, Loss.scale.fget)]
    ['Loss.forward', 'Loss.make', 'Loss.scale']
    >>> _look_up_qualname(Loss.forward.__code__, {})
    'forward'
    """
    for value in list(names.values()):
        for candidate in [value] + (list(vars(value).values()) if isinstance(value, type) else []):
            function = getattr(candidate, "__func__", getattr(candidate, "fget", candidate))  # a classmethod, a property
            if getattr(function, "__code__", None) is code:
                return function.__qualname__
    return code.co_name


class _FunctionRecorder(TorchFunctionMode):
    """Records every torch function called at the Python level, then lets it run."""

    def __init__(self, watched: dict[Any, str], seen: list[str]) -> None:
        super().__init__()
        self.watched, self.seen = watched, seen

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        try:
            name = self.watched.get(func)
        except TypeError:  # an unhashable callable cannot be a watched one
            name = None
        if name is not None and name not in self.seen:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


class _KernelRecorder(TorchDispatchMode):
    """Records every ATen kernel that runs (below autograd, after every alias is resolved)."""

    def __init__(self, watched: frozenset[str], seen: list[str]) -> None:
        super().__init__()
        self.watched, self.seen = watched, seen

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in torch._disable_dynamo by default, and the first call then
        # imports torch._dynamo: 4 s per process. The recorder is never compiled, so the wrapper is not needed.
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func._schema.name  # "aten::_log_softmax"
        if name in self.watched and name not in self.seen:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@functools.cache
def _modes_see_autograd_backward() -> bool:
    """Whether this torch hands `torch.autograd.backward` to a TorchFunctionMode (torch 2.13 does; 2.2 and 2.3 do not).

    >>> isinstance(_modes_see_autograd_backward(), bool)
    True
    """
    seen: list[str] = []
    x = torch.zeros(1, requires_grad=True)
    with _FunctionRecorder({torch.autograd.backward: "backward"}, seen):
        torch.autograd.backward(x.sum(), inputs=[x])
    return seen == ["backward"]


class CallRecorder:
    """Context manager: while active, records calls of the functions that `forbidden` names.

    After the block, `calls` lists what was called, Python names first (as the student
    would recognise them), then ATen kernels and Python functions of forbidden modules.

    >>> import torch.nn.functional as F
    >>> rule = Forbidden(functions=("torch.nn.functional.cross_entropy",), aten_ops=("aten::_log_softmax",))
    >>> with CallRecorder(rule) as recorder:
    ...     loss = F.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 2]))
    >>> recorder.calls
    ['torch.nn.functional.cross_entropy', 'aten::_log_softmax']
    >>> with CallRecorder(rule) as recorder:
    ...     lse = torch.logsumexp(torch.zeros(2, 3), dim=1)
    >>> recorder.calls
    []
    """

    def __init__(self, forbidden: Forbidden) -> None:
        self.forbidden = forbidden
        self._functions: list[str] = []
        self._kernels: list[str] = []
        self._python: list[str] = []
        watched: dict[Any, str] = {}
        for dotted in forbidden.functions:
            obj = _resolve(dotted)
            if obj is not None:  # a name this torch version lacks cannot be called either
                watched[obj] = dotted
        self._function_mode = _FunctionRecorder(watched, self._functions)
        self._kernel_mode = _KernelRecorder(frozenset(forbidden.aten_ops), self._kernels)
        # torch.autograd.backward reaches the function recorder only in newer torch (2.13 yes, 2.3 no): where it
        # does not, the profile hook below recognises its code
        self._by_code: dict[CodeType, str] = {}
        if "torch.autograd.backward" in forbidden.functions and not _modes_see_autograd_backward():
            self._by_code[torch.autograd.backward.__code__] = "torch.autograd.backward"
        self._previous_profiler: Any = None

    @property
    def _profiled(self) -> bool:
        """Whether the block needs the profile hook: a forbidden module, or a function known only by its code."""
        return bool(self.forbidden.modules or self._by_code)

    @property
    def calls(self) -> list[str]:
        """Forbidden functions called inside the block, in the order first seen (Python names first)."""
        return self._functions + self._kernels + self._python

    @property
    def readable(self) -> list[str]:
        """The calls as the student wrote them: Python names when seen, else the kernels that ran."""
        return self._functions + self._python or self._kernels

    def _in_forbidden_module(self, frame: FrameType | None) -> bool:
        return _defined_under(frame, self.forbidden.modules)

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        watched = self._by_code.get(frame.f_code)
        if watched is not None:  # called by the student, not by torch itself (Tensor.backward calls it too)
            if not _defined_under(frame.f_back, ("torch",)) and watched not in self._functions:
                self._functions.append(watched)
            return
        # Only where other code enters a forbidden module counts (not the helpers it calls in turn), and
        # only functions: not a module's own code run by an import, nor the code a dataclass generates.
        if self._in_forbidden_module(frame) and not self._in_forbidden_module(frame.f_back):
            code = frame.f_code
            qualname = _qualname(frame)
            if code.co_name.startswith("<") or "__create_fn__" in qualname:
                return
            name = f"{frame.f_globals['__name__']}.{qualname}"
            if name not in self._python:
                self._python.append(name)

    def __enter__(self) -> "CallRecorder":
        if self._profiled:
            self._previous_profiler = sys.getprofile()
            sys.setprofile(self._profile)
        self._function_mode.__enter__()
        self._kernel_mode.__enter__()
        return self

    def __exit__(self, kind: type | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self._kernel_mode.__exit__(kind, err, tb)
        self._function_mode.__exit__(kind, err, tb)
        if self._profiled:
            sys.setprofile(self._previous_profiler)


# The shared lists. Each exercise forbids the library's version of what it asks for.
SOFTMAX_CE_FUNCTIONS = (
    "torch.nn.functional.cross_entropy",
    "torch.nn.functional.nll_loss",
    "torch.nn.functional.log_softmax",
    "torch.log_softmax",
    "torch._log_softmax",
    "torch.Tensor.log_softmax",
    "torch.special.log_softmax",
    "torch._C._nn.cross_entropy_loss",
    "torch._C._nn.nll_loss",
    "torch._C._nn.nll_loss_nd",
)
SOFTMAX_CE_KERNELS = ("aten::_log_softmax", "aten::nll_loss_forward", "aten::nll_loss2d_forward")
SOFTMAX_CE_MODULES = (  # Categorical(logits=z) normalises with logsumexp: its .logits is log_softmax(z), and
    "torch.distributions.categorical",  # -log_prob(y).mean() is the loss; OneHotCategorical and Multinomial build one
)
BCE_FUNCTIONS = (
    "torch.nn.functional.binary_cross_entropy_with_logits",
    "torch.binary_cross_entropy_with_logits",
    "torch.nn.functional.binary_cross_entropy",
    "torch._C._nn.binary_cross_entropy",
    "torch.nn.functional.soft_margin_loss",  # log(1 + exp(-y z)): BCE from logits with y in {-1, 1}
    "torch._C._nn.soft_margin_loss",
    "torch.nn.functional.multilabel_soft_margin_loss",  # mean over labels of BCE from logits: no kernel of its own
)
BCE_KERNELS = ("aten::binary_cross_entropy_with_logits", "aten::binary_cross_entropy", "aten::soft_margin_loss")
MSE_FUNCTIONS = (
    "torch.nn.functional.mse_loss",
    "torch._C._nn.mse_loss",
    "torch.nn.functional.huber_loss",  # 0.5 (p - y)^2 for |p - y| < delta: with a large delta, half the MSE
    "torch._C._nn.huber_loss",
    "torch.nn.functional.smooth_l1_loss",  # 0.5 (p - y)^2 / beta for |p - y| < beta: the MSE over 2 beta
    "torch._C._nn.smooth_l1_loss",
    "torch.nn.functional.l1_loss",  # of (p - y)^2 against zeros: the MSE
    "torch._C._nn.l1_loss",
    "torch.nn.functional.gaussian_nll_loss",  # 0.5 (log var + (p - y)^2 / var): with var = 1, half the MSE; no kernel
)
MSE_KERNELS = ("aten::mse_loss", "aten::huber_loss", "aten::smooth_l1_loss")
AUTOGRAD_FUNCTIONS = ("torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward")
AUTOGRAD_KERNELS = ("aten::_softmax_backward_data", "aten::_log_softmax_backward_data", "aten::nll_loss_backward")
LOSSBENCH_LOSSES = ("lossbench.losses",)
LOSSBENCH_THRESHOLDS = ("lossbench.thresholds",)
LOSSBENCH_ANSWERS = (  # the checker's own answers, forbidden to every exercise: the reference functions, the
    "lossbench.exercises.references",  # cases that hold their expected values, and the catalog's mistakes,
    "lossbench.exercises.cases",  # which are the same formulas done wrong
    "lossbench.exercises.catalog",
)
