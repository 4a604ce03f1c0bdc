"""benchmarks/bench_compile.py: the traced step replays the runner's step exactly; its figures; bad input."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from tests.conftest import load_script

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own imports


@pytest.fixture(scope="module")
def bench():
    yield load_script("benchmarks/bench_compile.py")
    torch._dynamo.reset()  # drop the compiled graphs' caches


def run_json(bench, capsys, *args: str) -> dict:
    assert bench.main(["--seeds", "2", "--blocks", "2", "--steps", "2", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out, parse_constant=_not_json)  # strict JSON: no Infinity


def _not_json(token):
    raise AssertionError(f"{token} is not JSON")


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_traced_step_is_the_runners_step(bench, capsys, optimizer):
    """Backend "eager" runs the traced graph without compiling it: the same operations, so the same bits."""
    figures = run_json(bench, capsys, "--backend", "eager", "--optimizer", optimizer)
    assert figures["max_weight_difference"] == 0.0 and figures["max_loss_difference"] == 0.0
    assert (figures["models"], figures["optimizer"], figures["steps_per_epoch"]) == (6, optimizer, math.ceil(785 / 64))
    assert 100 < figures["step_operations"] < 400  # three losses forward and backward, the MLP, Adam
    assert figures["trace_s"] > 0 and figures["script_s"] > 0
    assert len(figures["eager_blocks_us"]) == len(figures["compiled_blocks_us"]) == 2
    assert figures["speedup"] == pytest.approx(figures["eager_us"] / figures["compiled_us"])
    saved = figures["eager_us"] - figures["compiled_us"]
    if saved > 0:
        start_up_us = (figures["trace_s"] + figures["compile_s"]) * 1e6
        assert figures["break_even_steps"] == pytest.approx(start_up_us / saved)
    else:
        assert figures["break_even_steps"] is None and figures["break_even_epochs"] is None  # never won back


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor needs a C++ compiler on a CPU")
def test_the_compiled_step_agrees_with_the_eager_step(bench, capsys):
    """Inductor fuses the step's operations: float32 rounding differs a little, nothing more."""
    figures = run_json(bench, capsys)
    assert figures["max_weight_difference"] < 1e-5 and figures["max_loss_difference"] < 1e-5
    assert figures["compile_s"] > 0 and figures["compiled_us"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "nope"], "Expected `--backend` to be one of torch.compile's backends"),
        (["--steps", "0"], "argument --steps: expected a whole number of at least 1, but got '0'"),
        (["--device", "tpu"], "Expected `device` to be"),
    ],
)
def test_bad_input_exits_2_with_the_error(bench, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1  # not argparse's usage block too


def test_the_default_run_it_compares_with_is_the_default_whatever_batch_is_timed(bench, capsys):
    # 100 epochs of ceil(785 / 64) = 13 minibatches, though the step timed here has batch 32
    assert bench.main(["--seeds", "1", "--blocks", "1", "--steps", "2", "--batch-size", "32", "--backend", "eager", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["default_run_steps"] == 1300


@pytest.mark.parametrize("raised, why", [
    ("InvalidCxxCompiler: No working C++ compiler found\nmore detail", "InvalidCxxCompiler: No working C++ compiler found more detail"),
    # torch's own shape: the reason on the line after "raised:", then where to read more
    ("backend='tvm' raised:\nImportError: Please install apache-tvm.\n\nSet TORCHDYNAMO_VERBOSE=1 for the internal stack trace",
     "backend='tvm' raised: ImportError: Please install apache-tvm."),
])
def test_a_failed_compile_is_one_line_that_says_why_and_exit_2(bench, capsys, monkeypatch, raised, why):
    """No C++ compiler, say: the script says so in one line instead of inductor's traceback."""

    def fails(*args, **kwargs):
        raise RuntimeError(raised)

    monkeypatch.setattr(bench.torch, "compile", lambda graph, **options: fails)
    assert bench.main(["--seeds", "1", "--blocks", "1", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err == f"bench_compile.py: error: torch.compile (backend 'inductor') cannot compile the step here: RuntimeError: {why}\n"