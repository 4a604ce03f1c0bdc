"""Recorded steps: a function's tensor operations recorded once, then replayed without Python in between.

The runner's training step for all models is about 200 small tensor operations. Launched one by one
from Python, each costs the host several microseconds, which is most of a step's time for small models:
the step is bound by launching, not by arithmetic. Two ways to record it once and replay it:

- on a GPU, :class:`CudaGraphed` records the step's kernels as a CUDA graph and replays them as a unit;
- on a CPU, :class:`Traced` traces the step, autograd's backward included, into a TorchScript graph that
  runs its operations one after another from C++.

Both wrap a function of tensors that returns tensors and keep one recording per set of input shapes.
A function that cannot be recorded runs eagerly instead, with the same results, and the wrapper's
``failed`` says why.

**CUDA graphs.** :class:`CudaGraphed`:

1. the first ``warmup`` calls with a given set of input shapes run eagerly, on a side stream (what
   PyTorch asks before a capture: lazy initialisation, cuBLAS workspaces, an optimizer's first step);
2. the next call records the function once, on copies of its inputs (recording runs nothing);
3. from then on each call copies its inputs into those recorded tensors, replays the graph and returns
   copies of the recorded outputs.

What a graph can record: only work on the GPU. Every operation must read and write the same memory on
every call (weights updated in place: yes; a new tensor assigned to a Python attribute: only if it is
made inside the function) and nothing may need the host mid-way (no ``.item()``, no boolean masks whose
size depends on the data). A function that breaks these rules fails to record.

**TorchScript traces.** :class:`Traced`:

1. the first ``warmup`` calls with a given set of input shapes run eagerly;
2. the next call traces the function (:func:`record_graph`, which writes down every aten operation the
   call runs, autograd's backward included, so the graph holds the backward pass as plain operations) and
   turns that graph into TorchScript, both times running it on copies of the inputs, so the tracing
   changes nothing;
3. from then on each call runs the TorchScript graph on its inputs.

What a trace can hold: the operations one call made. Everything the function updates must be one of
its inputs (updated in place), and nothing may depend on the *values* of tensors (no ``.item()``, no
``if`` on a tensor): a trace would replay the branch taken on the first call, so such a function must not
be traced. :func:`record_graph` refuses any operation that hands the host a tensor's value; the runner
traces only losses that ``vmap`` has already batched, which rules out the rest. Python's own side
effects (a ``print`` in a loss) happen while tracing, not at every step. TorchScript's graph executor is
used without its optimisations: it runs exactly the traced operations, so the results equal eager ones
bit for bit.

A trace of the Titanic step takes 0.04 to 0.1 s on a 2-core CPU and needs nothing beyond what
``import torch`` loads (``torch.fx.experimental.proxy_tensor.make_fx`` does the same job, but its first
use imports ``torch._dynamo`` and sympy, about 2 s); the runner traces a run long enough to win the
trace back (:data:`lossbench.runner.TRACE_FROM_STEPS`).
"""
from __future__ import annotations

import functools
import operator
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


class _Recorded:
    """What both ways of recording share: ``fn`` runs eagerly ``warmup`` times per set of input shapes, is
    then recorded once for those shapes, and every later call with them replays the recording."""

    def __init__(self, fn: Callable[..., Any], warmup: int) -> None:
        self.fn, self.warmup = fn, warmup
        self.recordings: dict[tuple, Any] = {}  # one per set of input shapes, dtypes and strides
        self.eager_calls: dict[tuple, int] = {}
        self.failed: str | None = None  # why recording failed, if it did: the function then runs eagerly
        self.replays = 0

    def __call__(self, *tensors: torch.Tensor) -> Any:
        key = tuple((t.shape, t.dtype, t.stride()) for t in tensors)
        recording = self.recordings.get(key)
        if recording is None:
            calls = self.eager_calls.get(key, 0)
            if self.failed is not None or calls < self.warmup:
                self.eager_calls[key] = calls + 1
                return self._eager(tensors)
            recording = self._record(tensors)
            if recording is None:
                return self.fn(*tensors)
            self.recordings[key] = recording
        self.replays += 1
        return self._replay(recording, tensors)

    def release(self) -> None:
        """Free the recordings and the memory they hold; a later call warms up and records again."""
        self.recordings.clear()
        self.eager_calls.clear()

    def _eager(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        return self.fn(*tensors)

    def _record(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        """A recording of ``fn`` on inputs like ``tensors``, or None (and ``failed`` set) when it cannot be recorded."""
        raise NotImplementedError

    def _replay(self, recording: Any, tensors: tuple[torch.Tensor, ...]) -> Any:
        raise NotImplementedError


@dataclass
class _Recording:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]  # the tensors the graph reads: each call copies its inputs into them
    outputs: Any  # the tensors the graph writes: a tensor, tuple or dict, as the function returns


class CudaGraphed(_Recorded):
    """``fn(*tensors)`` with its GPU work recorded once per set of input shapes and replayed after."""

    def __init__(self, fn: Callable[..., Any], warmup: int = 2) -> None:
        super().__init__(fn, warmup)

    def _replay(self, recording: _Recording, tensors: tuple[torch.Tensor, ...]) -> Any:
        for static, t in zip(recording.inputs, tensors):
            static.copy_(t)
        recording.graph.replay()
        return _clone(recording.outputs)

    def _eager(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        side = _warmup_stream(tensors[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.fn(*tensors)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _record(self, tensors: tuple[torch.Tensor, ...]) -> _Recording | None:
        inputs = [t.clone() for t in tensors]  # same strides and memory format as the real inputs
        generator = torch.cuda.default_generators[tensors[0].device.index or 0]
        rng = generator.get_state()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                outputs = self.fn(*inputs)
        except RuntimeError as err:  # e.g. "operation not permitted when stream is capturing"
            self.failed = (str(err).strip().splitlines() or [type(err).__name__])[0]
            torch.cuda.synchronize()
            _free_generator(generator, rng)
            return None
        return _Recording(graph, inputs, outputs)


@functools.lru_cache(maxsize=None)
def _warmup_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per GPU for every warm-up: cuBLAS keeps a workspace (tens of MB) for each stream it
    has seen until the program ends, so a new stream per run would leave that much behind every time."""
    return torch.cuda.Stream(device=device)


def _free_generator(generator: torch.Generator, rng: torch.Tensor) -> None:
    """Give the GPU's random-number generator back to eager work after a recording that CUDA refused.

    PyTorch puts the generator in recording mode when a recording starts and takes it out when the
    recording ends; a recording that CUDA refused (the function waited for the GPU) never ends, and every
    later random draw on the GPU would fail. A fresh state with the same seed and offset replaces it.
    """
    fresh = torch.Generator(device=generator.device)
    fresh.set_state(rng)
    generator.graphsafe_set_state(fresh.graphsafe_get_state())


def _clone(outputs: Any) -> Any:
    """A copy of every tensor in ``outputs`` (alone, or in dicts, lists and tuples, named ones too, nested).

    Anything else, such as None or a number the function returned, is handed back as it is.
    """
    if isinstance(outputs, torch.Tensor):
        return outputs.clone()
    if isinstance(outputs, dict):
        return {k: _clone(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        items = [_clone(v) for v in outputs]
        return type(outputs)(*items) if hasattr(outputs, "_fields") else type(outputs)(items)
    return outputs


class Traced(_Recorded):
    """``fn(*tensors)`` traced once per set of input shapes into a TorchScript graph, then run from it.

    >>> double = Traced(lambda x: x * 2)
    >>> [double(torch.ones(2)).tolist() for _ in range(3)]  # the first call runs eagerly, the next two from the trace
    [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]
    >>> double.replays, double.failed
    (2, None)
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 1) -> None:
        super().__init__(fn, warmup)

    def _replay(self, script: Any, tensors: tuple[torch.Tensor, ...]) -> Any:
        with torch.jit.optimized_execution(False):  # the traced operations as they are: eager's results, bit for bit
            return script(*tensors)

    def _record(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        try:
            graph = record_graph(self.fn, *[t.clone() for t in tensors])  # aten operations, autograd's backward included
            return _script(graph, tensors)
        except Exception as err:  # noqa: BLE001 - any failure to trace means: run eagerly, and say why
            message = str(err).strip()
            self.failed = f"{type(err).__name__}: {message.splitlines()[0] if message else ''}"
            return None


class _GraphRecorder(TorchDispatchMode):
    """Writes every aten operation that runs while it is active into an fx graph, with what it ran on.

    A tensor is known by the Python object that stands for it: an input, the output of a recorded
    operation, or else a constant (a tensor made before the call, such as a learning rate). Autograd's
    backward runs its operations through the same dispatcher, so they are recorded too; the tensors it
    saved for the backward come back as ``detach`` of recorded tensors.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # False: the mode's __torch_dispatch__ is left as it is; wrapping it (the default) imports torch._dynamo
        return False

    def __init__(self) -> None:
        super().__init__()
        self.graph, self.root = torch.fx.Graph(), torch.nn.Module()
        self.nodes: dict[int, torch.fx.Node] = {}  # id of a tensor -> the node that makes it
        self.seen: list[torch.Tensor] = []  # every tensor known, kept alive while recording, so no id is reused
        self.storages: set[int] = set()  # the memory of the inputs and of every tensor the call allocates
        self.constant_storages: set[int] = set()  # the memory of constants: views of it are not the call's own
        self.constants = 0

    def track(self, tensor: torch.Tensor, node: torch.fx.Node) -> None:
        self.nodes[id(tensor)] = node
        self.seen.append(tensor)
        memory = tensor.untyped_storage().data_ptr()
        if node.op == "get_attr":  # a constant's memory (and its views') may be met again under other names
            self.constant_storages.add(memory)
        elif memory not in self.constant_storages:
            self.storages.add(memory)

    def node_of(self, tensor: torch.Tensor) -> torch.fx.Node:
        node = self.nodes.get(id(tensor))
        if node is None:
            if tensor.numel() and tensor.untyped_storage().data_ptr() in self.storages:
                # a tensor in the call's own memory that no recorded operation made (torch.from_numpy of
                # x.numpy(), say): baked in as a constant, it would replay the first call's numbers
                raise RuntimeError("an operation used a tensor that shares memory with the call's tensors but was not made by a recorded operation")
            name = f"_tensor_constant{self.constants}"
            self.constants += 1
            setattr(self.root, name, tensor)
            node = self.graph.get_attr(name)
            self.track(tensor, node)
        return node

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        graph_args, graph_kwargs = pytree.tree_map_only(torch.Tensor, self.node_of, (args, kwargs))
        out = func(*args, **kwargs)
        node = self.graph.call_function(func, tuple(graph_args), graph_kwargs)
        if isinstance(out, torch.Tensor):
            self.track(out, node)
        elif isinstance(out, (tuple, list)):
            for i, item in enumerate(out):
                if isinstance(item, torch.Tensor):
                    self.track(item, self.graph.call_function(operator.getitem, (node, i)))
        elif out is not None:
            # .item(), bool(tensor) and the like: the value could steer Python, and a trace would replay the first call's branch
            raise RuntimeError(f"{func} gave the host a tensor's value ({type(out).__name__}), which a trace would fix at its first value")
        return out


def record_graph(fn: Callable[..., Any], *tensors: torch.Tensor) -> torch.fx.GraphModule:
    """``fn(*tensors)`` run once, with every aten operation it makes (autograd's backward included) written
    into an fx graph whose inputs are ``tensors``; raises if ``fn`` needs a tensor's value on the host.

    >>> def step(w, x):  # one gradient step on sum((w * x)^2)
    ...     w_ = w.detach().requires_grad_()
    ...     with torch.enable_grad():
    ...         (g,) = torch.autograd.grad(((w_ * x) ** 2).sum(), [w_])
    ...     return w.sub_(0.1 * g)
    >>> graph = record_graph(step, torch.ones(2), torch.ones(2))
    >>> graph(torch.ones(2), torch.tensor([1.0, 2.0]))   # w - 0.1 * 2 w x^2
    tensor([0.8000, 0.2000])
    """
    recorder = _GraphRecorder()
    for i, tensor in enumerate(tensors):
        recorder.track(tensor, recorder.graph.placeholder(f"arg{i}"))
    with recorder:
        out = fn(*tensors)
    recorder.graph.output(pytree.tree_map_only(torch.Tensor, recorder.node_of, out))
    return torch.fx.GraphModule(recorder.root, recorder.graph)


_SCRIPTS: dict[str, list[tuple[list[torch.Tensor], Any]]] = {}
"""The TorchScript of every distinct graph traced in this process, by the graph's code, with its constants."""


def forget_scripts() -> None:
    """Make the next run build its TorchScript anew, as the first run of a process does (for benchmarks).

    >>> forget_scripts(); len(_SCRIPTS)
    0
    """
    _SCRIPTS.clear()


def _script(graph: torch.fx.GraphModule, tensors: tuple[torch.Tensor, ...]) -> Any:
    """``graph`` as TorchScript: made once per distinct graph in a process, and found again after.

    TorchScript keeps every function it traces until the process ends (in its global compilation unit;
    2 to 3 MB for a training step), so a notebook that reruns a comparison would grow by that much with
    every run. A graph with the same code and equal constant tensors (the learning rates, say) is the
    same function: its script is reused instead.
    """
    constants = [getattr(graph, node.target) for node in graph.graph.nodes if node.op == "get_attr"]
    for known, script in _SCRIPTS.get(graph.code, []):
        if all(_same(a, b) for a, b in zip(known, constants)):
            return script
    with warnings.catch_warnings(), torch.jit.optimized_execution(False):
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, but still the one C++ runner of a graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # newer torch (2.14) also says "`torch.jit.trace_method` is deprecated" as a FutureWarning, which a
        # student would read as a problem with their run
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=FutureWarning)
        script = torch.jit.trace(graph, tuple(t.clone() for t in tensors), check_trace=False, strict=False)
    _SCRIPTS.setdefault(graph.code, []).append((constants, script))
    return script


def _same(a: Any, b: Any) -> bool:
    """Whether two constants of a graph are the same value: tensors of one dtype, shape and contents."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))
    return type(a) is type(b) and a is b
