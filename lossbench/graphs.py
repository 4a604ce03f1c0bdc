"""CUDA graphs: record a function's GPU work once, then replay it with one launch per call.

The runner's training step for all models is about 200 small tensor operations. Launched one by one
from Python, each costs the host several microseconds while the GPU, done in one or two, waits: on a GPU
the step is bound by launching, not by arithmetic. A CUDA graph records the kernels of one call and
replays them as a unit, so the host's cost per step no longer grows with the number of operations.

:class:`CudaGraphed` wraps a function of tensors that returns tensors (a tensor, a tuple or a dict):

1. the first ``warmup`` calls with a given set of input shapes run eagerly, on a side stream (what
   PyTorch asks before a capture: lazy initialisation, cuBLAS workspaces, an optimizer's first step);
2. the next call records the function once, on copies of its inputs (recording runs nothing);
3. from then on each call copies its inputs into those recorded tensors, replays the graph and returns
   copies of the recorded outputs.

What a graph can record: only work on the GPU. Every operation must read and write the same memory on
every call (weights updated in place: yes; a new tensor assigned to a Python attribute: only if it is
made inside the function) and nothing may need the host mid-way (no ``.item()``, no boolean masks whose
size depends on the data). A function that breaks these rules fails to record; the wrapper then says
why in :attr:`CudaGraphed.failed` and runs it eagerly from then on, with the same results.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass
class _Recording:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]  # the tensors the graph reads: each call copies its inputs into them
    outputs: Any  # the tensors the graph writes: a tensor, tuple or dict, as the function returns


class CudaGraphed:
    """``fn(*tensors)`` with its GPU work recorded once per set of input shapes and replayed after."""

    def __init__(self, fn: Callable[..., Any], warmup: int = 2) -> None:
        self.fn, self.warmup = fn, warmup
        self.recordings: dict[tuple, _Recording] = {}
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
        for static, t in zip(recording.inputs, tensors):
            static.copy_(t)
        recording.graph.replay()
        self.replays += 1
        return _clone(recording.outputs)

    def release(self) -> None:
        """Free the recorded graphs and the GPU memory they hold; a later call warms up and records again."""
        self.recordings.clear()
        self.eager_calls.clear()

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
