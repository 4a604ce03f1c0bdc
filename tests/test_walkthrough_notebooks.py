"""Structure of the walk-through notebooks: python3 kernel, no stored outputs, a quick mode every comparison obeys.

Running them is pytest's job (``--nbmake`` executes ``notebooks/*.ipynb`` with ``LOSSBENCH_QUICK=1``);
these tests check what running cannot: what is stored in git and how each notebook reads its mode.
"""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from lossbench import stats

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WALK_THROUGH = (
    "01_losses_from_scratch.ipynb",
    "02_titanic.ipynb",
    "03_multilabel_images.ipynb",
    "04_mammography.ipynb",
)
QUICK_LINE = 'QUICK = os.environ.get("LOSSBENCH_QUICK") == "1"'


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[str]:
    """Each code cell's source with IPython magics (``%matplotlib inline``) dropped, so that ``ast`` can parse it."""
    return ["\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%")) for cell in nb.cells if cell.cell_type == "code"]


def _compare_calls(source: str) -> list[ast.Call]:
    """Every call of ``compare(...)`` or ``lossbench.compare(...)`` in one cell."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "compare":
                calls.append(node)
    return calls


def test_the_four_notebooks_are_there():
    present = sorted(p.name for p in NOTEBOOKS.glob("0*.ipynb"))
    assert present == sorted(WALK_THROUGH)


@pytest.mark.parametrize("name", WALK_THROUGH)
def test_valid_notebook_with_python3_kernel(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.metadata["kernelspec"]["language"] == "python"


@pytest.mark.parametrize("name", WALK_THROUGH)
def test_no_outputs_stored(name):
    for i, cell in enumerate(_read(name).cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {i} stores outputs; clear them before committing"
            assert cell.execution_count is None, f"{name}: cell {i} stores an execution count"


@pytest.mark.parametrize("name", WALK_THROUGH)
def test_opens_with_a_titled_story(name):
    cells = _read(name).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), f"{name}: the first cell must be a markdown title"
    markdown = sum(cell.cell_type == "markdown" for cell in cells)
    assert markdown >= len(cells) / 3, f"{name}: {markdown} prose cells of {len(cells)}; the story is told in prose first"


@pytest.mark.parametrize("name", WALK_THROUGH)
def test_reads_lossbench_quick_before_anything_runs(name):
    sources = _code(_read(name))
    assert any(QUICK_LINE in s for s in sources[:1]), f"{name}: the first code cell must set {QUICK_LINE!r}"
    for source in sources:
        ast.parse(source)  # every code cell is valid Python once magics are dropped


@pytest.mark.parametrize("name", WALK_THROUGH[1:])
def test_every_comparison_obeys_quick_mode(name):
    calls = [call for source in _code(_read(name)) for call in _compare_calls(source)]
    assert calls, f"{name}: expected at least one lossbench.compare call"
    for call in calls:
        quick = [k for k in call.keywords if k.arg == "quick"]
        assert quick and isinstance(quick[0].value, ast.Name) and quick[0].value.id == "QUICK", (
            f"{name}: line {call.lineno}: every compare(...) must pass quick=QUICK, so that LOSSBENCH_QUICK=1 keeps the run short"
        )


def test_compare_call_finder_sees_both_spellings():
    calls = _compare_calls("import lossbench\nlossbench.compare('titanic', quick=QUICK)\ncompare('x')\nprint(1)")
    assert [len(c.keywords) for c in calls] == [1, 0]


WITH_A_THRESHOLD_TABLE = ("02_titanic.ipynb", "03_multilabel_images.ipynb", "04_mammography.ipynb")


def _threshold_intervals(name: str) -> list[ast.Call]:
    """Every ``mean_ci(...)`` or ``interval(...)`` call of the notebook whose first argument is ``<frame>["best_threshold"]``."""
    nb = _read(name)
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
