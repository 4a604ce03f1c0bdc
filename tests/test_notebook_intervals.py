"""The walk-through notebooks cut a chosen threshold's interval where summary.csv cuts it: at the sweep's ends."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from lossbench import stats

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WITH_A_THRESHOLD_TABLE = ("02_titanic.ipynb", "03_multilabel_images.ipynb", "04_mammography.ipynb")


def _threshold_intervals(name: str) -> list[ast.Call]:
    """Every ``mean_ci(...)`` or ``interval(...)`` call of the notebook whose first argument is ``<frame>["best_threshold"]``."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    calls = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if called in ("mean_ci", "interval") and isinstance(first, ast.Subscript) and isinstance(first.slice, ast.Constant) \
                    and first.slice.value == "best_threshold":
                calls.append(node)
    return calls


def test_a_chosen_thresholds_range_is_the_sweeps_not_the_unit_interval():
    # why it matters: two seeds' thresholds give a t-interval past both ends, and the cut is what the table prints
    assert stats.mean_ci([0.3, 0.7], within=stats.metric_range("best_threshold"))[1:3] == (0.01, 0.99)


@pytest.mark.parametrize("name", WITH_A_THRESHOLD_TABLE)
def test_notebook_cuts_a_chosen_thresholds_interval_at_the_ends_of_the_sweep(name):
    # they cut it at 0 and 1, so a notebook's table could say [0.00, 1.00] where the run's own table says [0.01, 0.99]
    calls = _threshold_intervals(name)
    assert calls, f"{name} no longer tabulates the chosen threshold"
    for call in calls:
        within = {k.arg: k.value for k in call.keywords}.get("within")
        assert within is not None and ast.unparse(within) == "stats.metric_range('best_threshold')", ast.unparse(call)
