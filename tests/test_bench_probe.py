"""benchmarks/bench_probe.py: the traced probe gives the runner's records bit for bit; its figures; bad input."""
from __future__ import annotations

import json

import pytest

from tests.conftest import load_script

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own imports


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_probe.py")


def _not_json(token):
    raise AssertionError(f"{token} is not JSON")


def test_the_traced_probe_gives_the_runners_records_and_consistent_figures(bench, capsys):
    assert bench.main(["--seeds", "2", "--blocks", "2", "--calls", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out, parse_constant=_not_json)  # strict JSON: no Infinity
    assert figures["identical_records"] is True
    assert (figures["models"], figures["validation_examples"], figures["default_run_probes"]) == (6, 262, 101)
    assert len(figures["eager_blocks_ms"]) == len(figures["traced_blocks_ms"]) == 2
    assert figures["speedup"] == pytest.approx(figures["eager_ms"] / figures["traced_ms"])
    saved_ms = figures["eager_ms"] - figures["traced_ms"]
    if saved_ms > 0:
        assert figures["break_even_probes"] == pytest.approx(figures["trace_s"] * 1e3 / saved_ms)
    else:
        assert figures["break_even_probes"] is None  # never won back
    assert figures["saved_in_a_default_run_s"] == pytest.approx(101 * saved_ms / 1e3 - figures["trace_s"])


def test_the_text_report_says_whether_the_records_agree(bench, capsys):
    assert bench.main(["--seeds", "1", "--blocks", "1", "--calls", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("titanic per-epoch probe on cpu") and "3 models on 262 validation examples" in lines[0]
    assert lines[3].endswith("the same records bit for bit: yes")


@pytest.mark.parametrize("args", [["--seeds", "0"], ["--calls", "many"]])
def test_bad_input_exits_2_with_one_line(bench, capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "expected a whole number of at least 1" in err and len(err.splitlines()) == 1  # not argparse's usage block too
