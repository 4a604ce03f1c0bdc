"""docs/make_figures.py: the README figures in quick mode, and one clear line for bad input."""
from __future__ import annotations

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def make_figures():
    return load_script("docs/make_figures.py")


def test_quick_run_writes_both_readme_figures(make_figures, tmp_path):
    assert make_figures.main(["--quick", "--out", str(tmp_path), "--device", "cpu"]) == 0
    for name in ("gradient_allocation_titanic.png", "accuracy_vs_threshold_multilabel.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "Expected `device` to be 'auto', 'cpu', 'cuda' or 'cuda:N', but got 'tpu'."),
        (["--out", __file__], "Expected --out to be a folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(make_figures, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        make_figures.main(["--quick", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
