"""Recorded steps' finer rules: the copies of a CUDA graph's outputs, and the one line ``failed`` keeps
of a recording's error (CPU only: the CUDA calls of a recording are stood in for)."""
from __future__ import annotations

import collections
import contextlib

import pytest
import torch

from lossbench import graphs
from lossbench.graphs import CudaGraphed, Traced, _clone


def test_clone_copies_every_tensor_of_nested_dicts_tuples_and_lists():
    # a replay returns copies of the graph's outputs: the next replay overwrites the originals in place
    outputs = {"loss": torch.tensor(0.5), "parts": (torch.arange(3.0), [torch.ones(2, 2, dtype=torch.float64)])}
    copies = _clone(outputs)
    assert type(copies) is dict and type(copies["parts"]) is tuple and type(copies["parts"][1]) is list
    pairs = [
        (outputs["loss"], copies["loss"]),
        (outputs["parts"][0], copies["parts"][0]),
        (outputs["parts"][1][0], copies["parts"][1][0]),
    ]
    for original, copy in pairs:
        assert copy.data_ptr() != original.data_ptr()
        assert torch.equal(copy, original) and copy.dtype == original.dtype
    for original, _ in pairs:
        original.add_(10)  # the next replay writes into the graph's outputs
    assert copies["loss"].item() == 0.5 and copies["parts"][0].tolist() == [0.0, 1.0, 2.0]
    assert copies["parts"][1][0].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    alone = torch.arange(4)
    assert _clone(alone).data_ptr() != alone.data_ptr() and torch.equal(_clone(alone), alone)


def test_clone_hands_back_what_is_not_a_tensor_and_keeps_named_tuples():
    # a graphed function may return None, a number or a string beside its tensors, or a named tuple
    Pair = collections.namedtuple("Pair", "loss extra")
    outputs = [Pair(torch.ones(2), None), 3, "text", (torch.zeros(1), 2.5)]
    copies = _clone(outputs)
    assert type(copies[0]) is Pair and copies[0].extra is None and torch.equal(copies[0].loss, torch.ones(2))
    assert copies[0].loss.data_ptr() != outputs[0].loss.data_ptr()
    assert copies[1:3] == [3, "text"] and copies[3][1] == 2.5
    assert _clone(None) is None


def _fails_when_recorded(error: Exception):
    """A function that raises ``error`` on its first call (the recording, with warmup=0) and doubles after."""
    calls = []

    def fn(x):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return x * 2

    return fn


@pytest.mark.parametrize(
    "error, failed",
    [
        (RuntimeError("could not trace this\nsecond line\nthird line"), "RuntimeError: could not trace this"),
        (ValueError("\n  first line after blank ones\nsecond line"), "ValueError: first line after blank ones"),
        (RuntimeError(""), "RuntimeError: "),
        (AssertionError(), "AssertionError: "),
    ],
    ids=["several-lines", "leading-blank-lines", "empty-message", "no-message"],
)
def test_a_failed_trace_keeps_the_type_and_first_line_of_its_error(error, failed):
    # `failed` is shown in a run's config: one line, the error's first non-blank one (none for an empty message)
    traced = Traced(_fails_when_recorded(error), warmup=0)
    assert torch.equal(traced(torch.ones(2)), torch.full((2,), 2.0))  # then run eagerly
    assert traced.failed == failed and traced.replays == 0


def test_a_failed_cuda_graph_recording_keeps_the_first_line_of_its_error(monkeypatch):
    # CUDA's capture errors run over several lines (a hint to set CUDA_LAUNCH_BLOCKING, say); the CUDA
    # calls around the recording are stood in for, so the rule is tested on the CPU too
    class Generator:
        def get_state(self):
            return "rng state"

    freed = []
    monkeypatch.setattr(torch.cuda, "default_generators", (Generator(),))
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: "graph")
    monkeypatch.setattr(torch.cuda, "graph", lambda graph: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(graphs, "_free_generator", lambda generator, rng: freed.append(rng))
    messages = {"operation not permitted when stream is capturing\nCUDA kernel errors might be asynchronously reported":
                "operation not permitted when stream is capturing",
                "\n  after a blank line\n": "after a blank line",
                "": "RuntimeError"}  # an empty message: the error's type, not an IndexError
    for message, failed in messages.items():
        freed.clear()
        graphed = CudaGraphed(_fails_when_recorded(RuntimeError(message)), warmup=0)
        assert torch.equal(graphed(torch.ones(2)), torch.full((2,), 2.0))  # then run eagerly
        assert graphed.failed == failed
        assert graphed.replays == 0 and not graphed.recordings and freed == ["rng state"]
