"""benchmarks/bench_runner.py: its figures on a tiny grid, and one clear line for bad input."""
from __future__ import annotations

import json
import re

import pytest
import torch

from tests.conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_runner.py")


def test_json_figures_of_a_tiny_titanic_grid(bench, capsys):
    threads = torch.get_num_threads()
    try:
        code = bench.main(["--task", "titanic", "--seeds", "2", "--epochs", "2", "--repeats", "2", "--loop-epochs", "1", "--threads", "1", "--json"])
    finally:
        torch.set_num_threads(threads)  # --threads set it for this whole process
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["models"], figures["epochs"], figures["threads"]) == (6, 2, 1)
    assert len(figures["batched"]["walls_s"]) == 2 and figures["loop"]["epochs"] == 1
    assert len(figures["loop"]["walls_s"]) == 3  # the loop's figure is a median too, by default
    assert figures["batched"]["warmup_s"] > 0 and figures["loop"]["warmup_s"] > 0
    assert figures["batched"]["model_epochs_per_s"] == pytest.approx(6 * 2 / figures["batched"]["median_s"])
    assert figures["loop"]["model_epochs_per_s"] == pytest.approx(6 * 1 / figures["loop"]["median_s"])
    assert figures["speedup"] == pytest.approx(figures["batched"]["model_epochs_per_s"] / figures["loop"]["model_epochs_per_s"])
    assert 0 <= figures["batched"]["record_share"] <= 1 and figures["peak_rss_mb"] > 0
    assert figures["batched"]["cpu_trace"].startswith("no: 24 full minibatches")  # too short a run to trace


def test_each_timed_run_makes_its_own_torchscript_as_a_one_off_run_does(bench, capsys, monkeypatch):
    from lossbench import graphs

    made = []
    trace = torch.jit.trace
    monkeypatch.setattr(graphs.torch.jit, "trace", lambda *a, **k: made.append(1) or trace(*a, **k))
    # 10 epochs of 12 full minibatches: the step is traced; the warm-up and two timed runs
    assert bench.main(["--task", "titanic", "--seeds", "1", "--epochs", "10", "--repeats", "2", "--skip-loop"]) == 0
    assert len(made) == 3
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"  peak RSS \d+ MiB \(the whole process\)", lines[-1])


def test_small_throughputs_keep_their_digits(bench):
    assert (bench._rate(12345.6), bench._rate(41.27), bench._rate(0.0123)) == ("12,346", "41.3", "0.0123")


def test_the_header_says_whether_the_step_ran_from_its_trace(bench, capsys):
    # 10 epochs of 12 full minibatches, the first one warms up
    assert bench.main(["--task", "titanic", "--seeds", "2", "--epochs", "10", "--repeats", "1", "--skip-loop"]) == 0
    header, batched = capsys.readouterr().out.splitlines()[:2]
    assert "; CPU trace: yes: 119 steps run from the trace" in header
    assert re.search(r"warm-up \d+\.\d{3} s: ", batched)  # one warm-up run
    assert bench.main(["--task", "titanic", "--seeds", "1", "--epochs", "1", "--repeats", "1", "--skip-loop", "--no-cpu-trace"]) == 0
    assert "; CPU trace: no: turned off" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0"], "argument --seeds: expected a whole number of at least 1, but got '0'"),
        (["--repeats", "-1"], "argument --repeats: expected a whole number of at least 1"),
        (["--threads", "two"], "argument --threads: expected a whole number of at least 1, but got 'two'"),
        (["--losses", "bce,nope"], "Expected each of `losses` to be a loss family among"),
        (["--task", "mnist"], "invalid choice: 'mnist'"),
        # torch.set_num_threads ends the process for a count in the millions, and raises past 64 bits
        (["--threads", "99999999999999999999"], "argument --threads: expected at most "),
        # refused at once, as `lossbench compare` refuses it, not a MemoryError after minutes
        (["--seeds", "100000000"], "Expected the comparison to fit in memory, but 300,000,000 models"),
    ],
)
def test_bad_input_exits_2_with_the_error(bench, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--skip-loop", "--epochs", "1", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1  # not argparse's usage block too
    assert err.endswith("(see bench_runner.py --help)\n")


def test_ctrl_c_is_one_line_and_exit_code_130(bench, capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert bench.run_script(interrupted, "bench_runner.py") == 130
    assert capsys.readouterr().err == "bench_runner.py: interrupted\n"
