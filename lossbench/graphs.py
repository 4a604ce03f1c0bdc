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
2. the next call traces the function with ``make_fx`` (which runs autograd while it traces, so the graph
   holds the backward pass as plain operations) and turns that graph into TorchScript, both times running
   it on copies of the inputs, so the tracing changes nothing;
3. from then on each call runs the TorchScript graph on its inputs.

What a trace can hold: the operations one call made. Everything the function updates must be one of
its inputs (updated in place), and nothing may depend on the *values* of tensors (no ``.item()``, no
``if`` on a tensor): a trace would replay the branch taken on the first call, so such a function must not
be traced. ``make_fx`` refuses ``.item()`` and the like; the runner traces only losses that ``vmap`` has
already batched, which rules out the rest. Python's own side effects (a ``print`` in a loss) happen
while tracing, not at every step. TorchScript's graph executor is used without its optimisations: it
runs exactly the traced operations, so the results equal eager ones bit for bit.

The first trace in a process imports ``torch._dynamo`` (``make_fx`` needs it): about 1.7 s on a 2-core
CPU, paid once per process (benchmarks/RESULTS.md); the runner decides whether a run pays for it
(:func:`lossbench.runner.trace_threshold`).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.fx.experimental.proxy_tensor import make_fx


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
            self.failed = str(err).splitlines()[0]
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
    if isinstance(outputs, torch.Tensor):
        return outputs.clone()
    if isinstance(outputs, dict):
        return {k: _clone(v) for k, v in outputs.items()}
    return type(outputs)(_clone(v) for v in outputs)


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
            graph = make_fx(self.fn)(*[t.clone() for t in tensors])  # aten operations, autograd's backward included
            return _script(graph, tensors)
        except Exception as err:  # noqa: BLE001 - any failure to trace means: run eagerly, and say why
            message = str(err).strip()
            self.failed = f"{type(err).__name__}: {message.splitlines()[0] if message else ''}"
            return None


_SCRIPTS: dict[str, list[tuple[list[torch.Tensor], Any]]] = {}
"""The TorchScript of every distinct graph traced in this process, by the graph's code, with its constants."""


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
        script = torch.jit.trace(graph, tuple(t.clone() for t in tensors), check_trace=False, strict=False)
    _SCRIPTS.setdefault(graph.code, []).append((constants, script))
    return script


def _same(a: Any, b: Any) -> bool:
    """Whether two constants of a graph are the same value: tensors of one dtype, shape and contents."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))
    return type(a) is type(b) and a is b
