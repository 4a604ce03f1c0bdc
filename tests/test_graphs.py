"""Recorded steps: CUDA graphs and CPU traces replay the same numbers as eager runs (GPU tests skip without one)."""
from __future__ import annotations

import gc
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import lossbench
from lossbench import graphs, runner
from lossbench.graphs import CudaGraphed, Traced
from tests.conftest import tiny_task
from tests.test_runner import LOSSES, USER_MODULE, assert_same_numbers

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ---------------------------------------------------------------------------------------------
# TorchScript traces on the CPU
# ---------------------------------------------------------------------------------------------


def test_a_traced_function_runs_from_its_trace_and_updates_its_inputs_in_place():
    def fn(weights, count, x):
        count.add_(1)
        weights.mul_(0.5).add_(x.exp().sum(dim=0))  # in place on an input: the trace does the same
        return {"out": weights * x, "count": count * 1}

    traced = Traced(fn, warmup=1)
    w_eager, c_eager = torch.ones(3), torch.zeros(())
    w_traced, c_traced = torch.ones(3), torch.zeros(())
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        x = torch.randn(1 + i % 2, 3, generator=g)  # two shapes: one trace each
        expected = fn(w_eager, c_eager, x)
        got = traced(w_traced, c_traced, x)
        assert torch.equal(got["out"], expected["out"]) and torch.equal(got["count"], expected["count"])
        assert torch.equal(w_traced, w_eager)  # bit for bit, not approximately
    assert traced.failed is None
    assert len(traced.recordings) == 2
    assert traced.replays == 6 - 2  # per shape, one eager warm-up call; the others run from the trace


@pytest.mark.parametrize("branch", ["item", "bool"])
def test_a_function_whose_work_depends_on_tensor_values_is_not_traced_and_runs_eagerly(branch):
    # a trace would replay the branch of the call it was made on; the recorder refuses instead, and the
    # wrapper says why and runs the function eagerly from then on, with the right branch every time
    def fn(x):
        positive = x.sum().item() > 0 if branch == "item" else bool(x.sum() > 0)
        return x * 2 if positive else x * -3

    traced = Traced(fn, warmup=1)
    for sign in (1, 1, -1, 1, -1):
        x = sign * torch.ones(4)
        assert torch.equal(traced(x), fn(x))
    assert traced.failed is not None and traced.replays == 0


def test_a_tensor_that_no_recorded_operation_made_but_that_shares_the_calls_memory_is_not_baked_in():
    # a round trip through numpy makes a second tensor of x's memory without an operation the recorder
    # sees; as a constant it would hold the first call's x at every replay, so the function is not traced
    # and runs eagerly
    def fn(x):
        return torch.from_numpy(x.numpy()) * 2

    traced = Traced(fn, warmup=1)
    for value in (1.0, 2.0, 3.0):
        assert torch.equal(traced(torch.full((3,), value)), torch.full((3,), 2 * value))
    assert traced.replays == 0 and "shares memory" in traced.failed


def test_tracing_and_replaying_warn_nothing():
    # TorchScript is deprecated, and torch says so (DeprecationWarning, and from torch 2.14 a FutureWarning
    # for torch.jit.trace_method); a default comparison traces its step, and must not print that at a student
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the trace, and the function would run eagerly
        traced = Traced(lambda x, w: w.add_(x.relu().sum(0)), warmup=1)
        w = torch.zeros(3)
        for _ in range(3):
            traced(torch.ones(4, 3), w)
    assert traced.failed is None and traced.replays == 2 and torch.equal(w, torch.full((3,), 12.0))


def test_tracing_loads_nothing_beyond_torch():
    # make_fx's first use imports torch._dynamo and sympy (about 2 s on a 2-core CPU), more than a default
    # Titanic run wins back by tracing; the runner's own recorder needs neither
    code = (
        "import sys, torch\n"
        "from lossbench.graphs import Traced\n"
        "step = Traced(lambda w, x: w.sub_(0.1 * x.sum(0)))\n"
        "w = torch.zeros(3)\n"
        "for _ in range(3): step(w, torch.ones(4, 3))\n"
        "assert step.replays == 2 and torch.allclose(w, torch.full((3,), -1.2)), (step.replays, step.failed, w)\n"
        "print(sorted(m for m in ('torch._dynamo', 'torch._inductor', 'sympy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_same_graph_traced_again_reuses_its_script_and_other_constants_do_not():
    # TorchScript keeps every traced function for the life of the process, so a rerun must not add one
    def scale_by(c):
        weights = torch.full((3,), c)  # a constant of the trace
        return lambda x: x * weights

    x = torch.arange(3.0)
    first, again, other = (Traced(scale_by(c), warmup=0) for c in (2.0, 2.0, 5.0))
    assert torch.equal(first(x), 2 * x) and torch.equal(again(x), 2 * x) and torch.equal(other(x), 5 * x)
    (script,), (script_again,), (script_other,) = (list(t.recordings.values()) for t in (first, again, other))
    assert script_again is script
    assert script_other is not script


def test_a_script_is_reused_only_when_every_constant_is_equal():
    def affine(a, b):
        scale, shift = torch.full((3,), a), torch.full((3,), b)  # two constants of the same graph
        return lambda x: x * scale + shift

    x = torch.ones(3)
    assert torch.equal(Traced(affine(0.1, 0.0), warmup=0)(x), torch.full((3,), 0.1))
    assert torch.equal(Traced(affine(0.1, 0.5), warmup=0)(x), torch.full((3,), 0.6))  # the first matches, the second not
    w64, w32 = torch.full((3,), 2.0, dtype=torch.float64), torch.full((3,), 2.0)  # equal values, other dtypes
    graphs.forget_scripts()  # so that the float32 script of another test (x * 2.0) cannot stand in for the float64 one
    assert Traced(lambda x: x * w64, warmup=0)(x.double()).dtype == torch.float64
    assert Traced(lambda x: x * w32, warmup=0)(x).dtype == torch.float32


def test_inputs_of_another_dtype_or_layout_get_their_own_trace():
    to_float = Traced(lambda x: x.float() * 2, warmup=0)
    assert to_float(torch.ones(2, 2)).dtype == torch.float32
    assert to_float(torch.ones(2, 2, dtype=torch.float64)).dtype == torch.float32
    flat = Traced(lambda x: x.reshape(-1) * 1, warmup=0)
    rows, columns = torch.arange(6.0).reshape(3, 2), torch.arange(6.0).reshape(2, 3).t()  # both (3, 2), other strides
    assert torch.equal(flat(rows), rows.reshape(-1))
    assert torch.equal(flat(columns), columns.reshape(-1))  # a trace of a view of rows would fail or mix them up
    assert len(to_float.recordings) == 2 and len(flat.recordings) == 2


def test_a_function_that_cannot_be_traced_is_tried_once_then_runs_eagerly():
    runs = []

    def needs_the_host(x):
        runs.append(1)
        return x * 2 if x.sum().item() > 0 else x

    traced = Traced(needs_the_host, warmup=1)
    for _ in range(5):
        traced(torch.ones(3))
    assert traced.failed is not None and len(runs) == 5 + 1  # five calls and the one failed recording


def test_after_release_the_next_call_warms_up_again():
    traced = Traced(lambda x: x * 2, warmup=1)
    traced(torch.ones(3)), traced(torch.ones(3))
    assert traced.replays == 1
    traced.release()
    traced(torch.ones(3))
    assert traced.replays == 1 and not traced.recordings  # eager, as a first call is


def test_constants_that_share_memory_with_each_other_but_not_with_the_call_are_traced():
    w = torch.arange(4.0)
    w2 = w[:2]  # made before the call: a constant that shares memory with another constant
    empty = torch.empty(0)
    traced = Traced(lambda x: torch.cat([x * w[:2] + x * w2, torch.empty(0), empty]), warmup=0)
    assert torch.equal(traced(torch.ones(2)), 2 * w[:2])
    assert traced.failed is None and traced.replays == 1


@pytest.fixture
def trace_every_run(monkeypatch):
    """Trace even the tiny runs of these tests (the runner traces only runs long enough to win the time back)."""
    monkeypatch.setattr(runner, "TRACE_FROM_STEPS", 0)


def _traced_and_eager(task, **kwargs):
    traced = lossbench.compare(task, LOSSES, **kwargs)
    eager = lossbench.compare(task, LOSSES, cpu_trace=False, **kwargs)
    return traced, eager


@pytest.mark.parametrize(
    "kind, options",
    [
        pytest.param("binary", dict(optimizer="adam", lr=0.01, weight_decay=1e-3), id="binary-adam"),
        pytest.param("binary", dict(optimizer="sgd", lr=0.3, momentum=0.9), id="binary-sgd-momentum"),
        pytest.param("binary", dict(optimizer="sgd", lr=0.3), id="binary-sgd"),
        pytest.param("multilabel", dict(optimizer="adam", lr=0.01), id="multilabel-adam"),
        pytest.param("binary", dict(optimizer="adam", lr=0.01, dtype="float64"), id="binary-adam-float64"),
        # torch.nn.functional's losses (their own fused kernels and backward operations) and the naive ones (vmapped)
        pytest.param("binary", dict(optimizer="adam", lr=0.05, impl="reference"), id="binary-reference"),
        pytest.param("multilabel", dict(optimizer="adam", lr=0.05, impl="naive"), id="multilabel-naive"),
    ],
)
def test_the_traced_step_trains_exactly_as_the_eager_step(trace_every_run, kind, options):
    # the trace runs the same operations in the same order, so every number is equal, in float32 too
    kwargs = dict(seeds=2, epochs=3, batch_size=20, device="cpu", overrides={"softmax_ce": {"head_lr_scale": 0.5}}, **options)
    traced, eager = _traced_and_eager(tiny_task(kind), **kwargs)
    # 48 examples: two full minibatches and one of 8 per epoch, each size traced on its own after one
    # eager call: 5 full steps and 2 of the last ones from the trace
    assert traced.config["cpu_trace"] == "yes: 7 steps run from the trace"
    assert eager.config["cpu_trace"] == "no: turned off"
    for name in ("history", "runs", "thresholds", "calibration", "summary"):
        assert_same_numbers(getattr(traced, name), getattr(eager, name), atol=0.0)
    np.testing.assert_array_equal(traced.predictions["test_scores"], eager.predictions["test_scores"])


def test_a_model_diverging_inside_the_traced_step_is_frozen_as_in_the_eager_step(trace_every_run):
    kwargs = dict(impl={"bce@naive": "naive"}, seeds=3, epochs=6, batch_size=16, optimizer="sgd", lr=10.0, device="cpu")
    traced = lossbench.compare(tiny_task("binary"), ("bce", "bce@naive"), **kwargs)
    eager = lossbench.compare(tiny_task("binary"), ("bce", "bce@naive"), cpu_trace=False, **kwargs)
    assert traced.config["cpu_trace"].startswith("yes")
    runs = traced.runs.set_index(["loss", "seed"])
    assert runs.loc["bce@naive"].diverged.any() and not runs.loc["bce"].diverged.any()
    assert (runs.loc["bce@naive"].diverged_epoch >= 2).all()  # after epoch 1: every full step there runs from the trace
    assert_same_numbers(traced.runs, eager.runs, atol=0.0)
    assert_same_numbers(traced.history, eager.history, atol=0.0)


COUNTING_LOSS = '''
import torch.nn.functional as F

calls = 0

def counted_bce(output, target):  # state in Python: a trace would run this line once, and replay the rest
    global calls
    calls += 1
    return F.binary_cross_entropy_with_logits(output, target)
'''


def test_a_users_loss_runs_as_written_at_every_step_never_from_a_trace(trace_every_run, tmp_path, monkeypatch):
    """A function of the user's may keep state in Python; the step that calls it is never traced (or graphed) and replayed."""
    (tmp_path / "counting_losses.py").write_text(COUNTING_LOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import counting_losses

    kwargs = dict(impl={"bce": "counting_losses:counted_bce"}, seeds=2, epochs=3, batch_size=16, device="cpu")
    result = lossbench.compare(tiny_task("binary"), ("bce", "mse"), **kwargs)  # 48 examples: 3 steps an epoch
    assert result.config["cpu_trace"] == "no: bce is a function of yours, run as written at every step"
    assert result.config["loss_setups"]["bce"]["batched_by"] == "vmap"
    three = counting_losses.calls
    lossbench.compare(tiny_task("binary"), ("bce", "mse"), **dict(kwargs, epochs=6))
    six = counting_losses.calls - three
    assert six - three >= 3 * 3  # 3 epochs more: 9 steps more, each a call (the probe and a first check call it too)


@cuda
def test_on_a_gpu_a_users_loss_is_not_recorded_as_a_cuda_graph(tmp_path, monkeypatch):
    """The README's claim for the GPU: a user's loss runs as written at every step there too, not from a graph."""
    (tmp_path / "counting_losses.py").write_text(COUNTING_LOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import counting_losses

    kwargs = dict(impl={"bce": "counting_losses:counted_bce"}, seeds=2, batch_size=16, device="cuda")
    before = counting_losses.calls
    result = lossbench.compare(tiny_task("binary"), ("bce", "mse"), epochs=3, **kwargs)
    three = counting_losses.calls - before
    assert result.config["cuda_graphs"] == "no: bce is a function of yours, run as written at every step"
    lossbench.compare(tiny_task("binary"), ("bce", "mse"), epochs=6, **kwargs)
    six = counting_losses.calls - before - three
    assert six - three >= 3 * 3  # 3 epochs more: 9 steps more, each a call


@pytest.mark.parametrize("epochs, replays", [(60, 119), (100, 199 + 99)])
def test_the_last_smaller_minibatch_is_traced_only_in_a_run_with_epochs_enough_to_win_its_trace_back(epochs, replays):
    # 48 examples in minibatches of 20: two full ones and one of 8 an epoch; each size warms up once, and
    # the size of 8 (one step an epoch) is traced from runner.TRACE_FROM_STEPS (100) epochs on
    result = lossbench.compare(tiny_task("binary"), LOSSES, seeds=1, epochs=epochs, batch_size=20, device="cpu")
    assert result.config["cpu_trace"] == f"yes: {replays} steps run from the trace"


def test_the_config_says_why_a_step_was_not_traced(tmp_path, monkeypatch):
    small = dict(seeds=1, epochs=1, batch_size=16, device="cpu")
    assert lossbench.compare(tiny_task("binary"), LOSSES, **small).config["cpu_trace"] == (
        "no: 3 full minibatches, too few to win back the tracing (from 100 on)"
    )
    monkeypatch.setattr(runner, "TRACE_FROM_STEPS", 0)
    assert lossbench.compare(tiny_task("grid", image=True), LOSSES, **small).config["cpu_trace"].startswith("no: a CNN's step")
    assert lossbench.compare(tiny_task("binary"), LOSSES, engine="loop", **small).config["cpu_trace"] == "no: the plain loop"
    (tmp_path / "student_losses.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="could not be vectorised"):
        mine = lossbench.compare(tiny_task("binary"), ("bce",), impl={"bce": "student_losses:not_vectorisable"}, **small)
    assert mine.config["cpu_trace"].startswith("no: bce runs one model at a time")


# ---------------------------------------------------------------------------------------------
# CUDA graphs
# ---------------------------------------------------------------------------------------------


def test_on_the_cpu_the_config_says_no_graphs_were_used():
    result = lossbench.compare(tiny_task("binary"), LOSSES, seeds=1, epochs=1, batch_size=16, device="cpu")
    assert result.config["cuda_graphs"] == "no: not on a GPU"
    loop = lossbench.compare(tiny_task("binary"), LOSSES, seeds=1, epochs=1, batch_size=16, device="cpu", engine="loop")
    assert loop.config["cuda_graphs"] == "no: the plain loop"


@cuda
def test_a_recorded_function_replays_on_new_inputs_and_updates_its_state_in_place():
    state = torch.zeros(3, device="cuda")

    def fn(x, y):
        state.add_(x.sum())  # in place: the graph writes the same memory at every replay
        return {"product": x * y, "state": state * 1}

    graphed = CudaGraphed(fn, warmup=2)
    total = 0.0
    for i in range(6):
        x, y = torch.randn(4, device="cuda"), torch.randn(4, device="cuda")
        out = graphed(x, y)
        total += float(x.sum())
        torch.testing.assert_close(out["product"], x * y)
        torch.testing.assert_close(out["state"], torch.full((3,), total, device="cuda"), rtol=1e-5, atol=1e-5)
    assert graphed.replays == 4 and graphed.failed is None  # 2 eager calls, then recorded and replayed
    first = graphed(torch.ones(4, device="cuda"), torch.ones(4, device="cuda"))
    second = graphed(torch.full((4,), 2.0, device="cuda"), torch.ones(4, device="cuda"))
    assert first["product"].tolist() == [1.0] * 4  # each call gets its own copy of the outputs
    assert second["product"].tolist() == [2.0] * 4
    graphed(torch.ones(7, device="cuda"), torch.ones(7, device="cuda"))  # a new shape: its own warm-up
    assert graphed.replays == 6 and len(graphed.recordings) == 1


@cuda
def test_released_graphs_give_their_memory_back_and_record_again():
    weights, x = torch.randn(256, 256, device="cuda"), torch.randn(512, 256, device="cuda")
    expected = (x @ weights).relu() @ weights
    for _ in range(2):  # the first recording in a process also sets up cuBLAS's workspaces for its streams
        graphed = CudaGraphed(lambda x: (x @ weights).relu() @ weights, warmup=1)
        gc.collect()
        before = torch.cuda.memory_allocated()
        graphed(x)
        torch.testing.assert_close(graphed(x), expected)  # recorded: its inputs and outputs live in the graph's memory
        assert graphed.replays == 1 and torch.cuda.memory_allocated() > before
        graphed.release()
        gc.collect()
    assert torch.cuda.memory_allocated() == before  # the graph's memory is back
    for _ in range(2):
        torch.testing.assert_close(graphed(x), expected)
    assert graphed.replays == 2  # warmed up and recorded again


@cuda
def test_training_with_graphs_leaves_no_gpu_memory_behind():
    kwargs = dict(seeds=2, epochs=3, batch_size=16, device="cuda")
    lossbench.compare(tiny_task("binary"), LOSSES, **kwargs)  # the first run on a GPU sets up CUDA's libraries
    gc.collect()
    before = torch.cuda.memory_allocated()
    for _ in range(3):
        assert lossbench.compare(tiny_task("binary"), LOSSES, **kwargs).config["cuda_graphs"].startswith("yes")
    gc.collect()
    assert torch.cuda.memory_allocated() - before < 2**20


@cuda
def test_a_function_that_needs_the_host_runs_eagerly_and_says_why():
    def fn(x):
        return x * 2 if x.sum().item() > 0 else x  # .item() waits for the GPU: it cannot be recorded

    graphed = CudaGraphed(fn, warmup=1)
    for _ in range(4):
        x = torch.rand(5, device="cuda")
        torch.testing.assert_close(graphed(x), x * 2)
    assert graphed.failed is not None and graphed.replays == 0
    torch.testing.assert_close(torch.ones(2, device="cuda") + 1, torch.full((2,), 2.0, device="cuda"))  # the GPU still works


GPU_CASES = [
    pytest.param("binary", False, True, dict(optimizer="adam", lr=0.01), id="binary-mlp-adam"),
    pytest.param("binary", False, True, dict(optimizer="sgd", lr=0.3, momentum=0.9, weight_decay=1e-3), id="binary-mlp-sgd-momentum"),
    pytest.param("multilabel", False, True, dict(optimizer="adam", lr=0.01), id="multilabel-mlp-adam"),
    pytest.param("multilabel", True, True, dict(optimizer="adam", lr=0.01), id="multilabel-cnn-adam"),
    pytest.param("grid", True, False, dict(optimizer="sgd", lr=0.1, momentum=0.9), id="grid-cnn-no-bias-sgd"),
]


@cuda
@pytest.mark.parametrize("kind, image, bias, options", GPU_CASES)
def test_batched_run_on_a_gpu_with_graphs_equals_the_plain_loop(kind, image, bias, options):
    task = tiny_task(kind, image=image, bias=bias)
    kwargs = dict(seeds=2, epochs=4, batch_size=16, device="cuda", dtype="float64", **options, overrides={"softmax_ce": {"head_lr_scale": 0.5}})
    batched = lossbench.compare(task, LOSSES, **kwargs)
    loop = lossbench.compare(task, LOSSES, engine="loop", **kwargs)
    assert batched.config["cuda_graphs"].startswith("yes"), batched.config["cuda_graphs"]
    for name in ("history", "runs", "thresholds", "calibration", "summary"):
        assert_same_numbers(getattr(batched, name), getattr(loop, name))
    h = batched.history
    assert (h[h.epoch == 4].decision_weight_change > 0).all()


@cuda
@pytest.mark.parametrize("kind, image", [("binary", False), ("grid", True)], ids=["mlp", "cnn"])
def test_graphs_on_and_off_give_the_same_float32_run(kind, image):
    task = tiny_task(kind, image=image)
    kwargs = dict(seeds=3, epochs=5, batch_size=16, device="cuda")
    on = lossbench.compare(task, LOSSES, **kwargs)
    off = lossbench.compare(task, LOSSES, cuda_graphs=False, **kwargs)
    assert on.config["cuda_graphs"] == "yes: 13 steps and 4 probes replayed"  # of 5 x 3 steps and 6 probes, 2 of each eager
    assert off.config["cuda_graphs"] == "no: turned off"
    for name in ("history", "runs", "summary"):
        assert_same_numbers(getattr(on, name), getattr(off, name), atol=1e-5)


@cuda
def test_a_diverging_model_is_frozen_inside_the_recorded_step():
    task = tiny_task("binary", n=64)
    kwargs = dict(impl={"bce@naive": "naive"}, seeds=3, epochs=6, batch_size=16, optimizer="sgd", lr=10.0, device="cuda", dtype="float64")
    gpu = lossbench.compare(task, ("bce", "bce@naive"), **kwargs)
    cpu = lossbench.compare(task, ("bce", "bce@naive"), **{**kwargs, "device": "cpu"})
    assert gpu.config["cuda_graphs"].startswith("yes")
    runs = gpu.runs.set_index(["loss", "seed"])
    assert runs.loc["bce@naive"].diverged.all() and not runs.loc["bce"].diverged.any()
    np.testing.assert_array_equal(gpu.runs.diverged_epoch, cpu.runs.diverged_epoch)


@cuda
def test_a_users_loss_that_needs_the_host_trains_eagerly_on_a_gpu(tmp_path, monkeypatch):
    (tmp_path / "student_losses.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    kwargs = dict(seeds=2, epochs=3, batch_size=16, device="cuda", dtype="float64")
    with pytest.warns(UserWarning, match="could not be vectorised"):
        mine = lossbench.compare(tiny_task("binary"), ("bce",), impl={"bce": "student_losses:not_vectorisable"}, **kwargs)
    ref = lossbench.compare(tiny_task("binary"), ("bce",), impl="reference", **kwargs)
    assert mine.config["cuda_graphs"].startswith("no: ")
    np.testing.assert_allclose(mine.history.val_loss, ref.history.val_loss, atol=1e-9)
