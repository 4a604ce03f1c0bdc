"""Solution notebooks, the generated student notebooks, and the nbgrader and otter exports, read back."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lossbench.exercises import EXERCISES
from lossbench.exercises import notebooks as nbx

SOLUTIONS = nbx.solution_notebooks()
NBGRADER_KEYS = {"schema_version", "grade", "locked", "solution", "task", "grade_id", "points", "checksum",
                 "cell_type"}  # nbgrader's cell metadata schema v3 ("additionalProperties": false)


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def run_cells(nb: nbformat.NotebookNode) -> str:
    """Execute a notebook's code cells in one namespace, in order; returns what they printed."""
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in nb.cells:
            if cell.cell_type == "code":
                exec(compile(cell.source, "<cell>", "exec"), namespace)
    return out.getvalue()


# --- the solution notebooks ----------------------------------------------------------------------

def test_every_exercise_sits_in_exactly_one_solution_notebook():
    found = [ex.name for path in SOLUTIONS for ex in nbx.find_exercises(read(path))]
    assert sorted(found) == sorted(EXERCISES)
    for path in SOLUTIONS:
        topic = nbx.topic_of(path)
        assert {ex.name for ex in nbx.find_exercises(read(path))} == \
            {name for name, ex in EXERCISES.items() if ex.topic == topic}


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_notebooks_have_a_python3_kernel_and_no_outputs(path):
    nb = read(path)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_the_solutions_pass_their_checks(path):
    assert run_cells(read(path)) == ""  # every check(...) returns None silently


# --- the plain (student) flavour -----------------------------------------------------------------

@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_the_committed_student_notebook_is_what_the_generator_makes(path):
    committed = path.with_name(nbx.topic_of(path) + ".ipynb")
    generated = nbformat.writes(nbx.student_notebook(read(path))) + "\n"
    assert committed.read_text(encoding="utf-8") == generated, \
        "regenerate with: lossbench exercises export --flavor plain notebooks/exercises"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_student_notebooks_hold_no_answer_and_report_not_attempted(path):
    solution = read(path)
    student = nbx.student_notebook(solution)
    nbformat.validate(student)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    for ex in nbx.find_exercises(solution):
        answer, check = student.cells[ex.answer].source, student.cells[ex.check].source
        assert answer.splitlines()[-2:] == ["    # YOUR CODE HERE", "    raise NotImplementedError()"]
        assert check == f'report("{ex.name}", {ex.function})'
        assert solution.cells[ex.answer].source.splitlines()[:2] == answer.splitlines()[:2]  # def and docstring kept
    printed = run_cells(student)  # runs top to bottom
    for ex in nbx.find_exercises(solution):
        assert f"{ex.name}: not attempted (the function raises NotImplementedError)" in printed
    assert [c.id for c in student.cells] == [c.id for c in solution.cells]  # stable ids: reproducible files


def test_strip_solution_keeps_the_indentation_of_the_markers():
    source = "def f(x):\n    y = 1\n    # BEGIN SOLUTION\n    return x + y\n    # END SOLUTION\n"
    assert nbx.strip_solution(source) == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()"


@pytest.mark.parametrize("source, message", [
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION",
     "Expected `# END SOLUTION` before line 2, but got a second `# BEGIN SOLUTION`."),
    ("x = 1\n# END SOLUTION", "Expected `# BEGIN SOLUTION` before line 2, but got `# END SOLUTION` alone."),
    ("# BEGIN SOLUTION\nx = 1", "Expected `# END SOLUTION` after `# BEGIN SOLUTION`, but the cell ended first."),
])
def test_unbalanced_solution_markers_are_errors(source, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        nbx.strip_solution(source)


def _notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_a_check_cell_without_its_answer_is_an_error():
    nb = _notebook("import torch", 'check("bce", bce)')
    with pytest.raises(ValueError, match=r"^Expected a cell defining `bce` with a BEGIN SOLUTION region"):
        nbx.find_exercises(nb)


def test_a_check_cell_of_another_function_than_the_answer_s_is_an_error():
    """check("bce", my_bce) after `def bce` checks a function the notebook does not answer: refused."""
    nb = _notebook("def bce(z, y):\n    # BEGIN SOLUTION\n    pass\n    # END SOLUTION", 'check("bce", my_bce)')
    with pytest.raises(ValueError, match=r"^Expected a cell defining `my_bce` with a BEGIN SOLUTION region before the check cell 1"):
        nbx.find_exercises(nb)


def test_a_check_cell_naming_an_unknown_exercise_is_an_error():
    nb = _notebook("def bce(z, y):\n    # BEGIN SOLUTION\n    pass\n    # END SOLUTION", 'check("bcee", bce)')
    with pytest.raises(ValueError, match=r"^Expected `name` to be one of .* but got 'bcee'"):
        nbx.find_exercises(nb)


ANSWER = "def bce(z, y):\n    # BEGIN SOLUTION\n    return z.sum()\n    # END SOLUTION"


def test_a_check_cell_may_end_with_a_comment_and_is_still_replaced():
    nb = _notebook(ANSWER, 'check("bce", bce)  # must pass')
    assert nbx.find_exercises(nb) == [nbx.ExerciseCells("bce", "bce", None, 0, 1)]
    assert nbx.student_notebook(nb).cells[1].source == 'report("bce", bce)'


@pytest.mark.parametrize("sources, what", [
    pytest.param((ANSWER, 'check("bce", bce)\nprint("done")'), "the notebook ends first", id="check-cell-with-more-code"),
    pytest.param((ANSWER, 'check("bce", bce)  # must pass\nprint("done")'), "the notebook ends first",
                 id="commented-check-cell-with-more-code"),  # the comment ends at its line
    pytest.param((ANSWER,), "the notebook ends first", id="no-check-cell"),
    pytest.param((ANSWER, ANSWER.replace("bce", "mse"), 'check("mse", mse)'), "cell 1 begins another answer first",
                 id="next-answer-first"),
])
@pytest.mark.parametrize("flavor", nbx.FLAVORS)
def test_an_answer_without_its_check_cell_is_refused_by_every_flavour(tmp_path, sources, what, flavor):
    # the plain flavour would otherwise hand the answer to the students as it is
    nbformat.write(_notebook(*sources), tmp_path / "hw_solutions.ipynb")
    message = (f"{tmp_path / 'hw_solutions.ipynb'}: Expected the answer in cell 0 (`def bce`) to be followed by its check "
               f'cell, `check("<exercise>", bce)`, but {what}; without it the answer would reach the student notebook as it is.')
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        nbx.export(flavor, tmp_path / "out", tmp_path)
    assert not (tmp_path / "out").exists()


def test_the_question_is_the_markdown_cell_before_the_answer_and_only_a_markdown_one():
    """A code cell just before the answer is setup, not the question: it stays out of the exercise's blocks."""
    nb = _notebook("import torch", ANSWER, 'check("bce", bce)')
    assert nbx.find_exercises(nb) == [nbx.ExerciseCells("bce", "bce", None, 1, 2)]
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("Write `bce`."))
    assert nbx.find_exercises(nb) == [nbx.ExerciseCells("bce", "bce", 1, 2, 3)]


def test_an_answer_cell_may_import_before_its_def():
    """The answer's function is the cell's top-level def, wherever it starts in the cell."""
    nb = _notebook("import torch\n\n" + ANSWER, 'check("bce", bce)')
    assert nbx.find_exercises(nb) == [nbx.ExerciseCells("bce", "bce", None, 0, 1)]
    assert nbx.student_notebook(nb).cells[0].source == (
        "import torch\n\ndef bce(z, y):\n    # YOUR CODE HERE\n    raise NotImplementedError()")


def test_a_marker_is_a_line_of_its_own_not_words_quoted_in_a_line():
    """Only a line that is exactly `# BEGIN SOLUTION` opens an answer; text that quotes it does not."""
    assert not nbx.has_solution("print('# BEGIN SOLUTION')\nx = 1  # BEGIN SOLUTION goes in the next cell")
    nb = _notebook(ANSWER, 'check("bce", bce)')
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("Write your answer between the `# BEGIN SOLUTION` and `# END SOLUTION` lines."))
    assert nbx.find_exercises(nb) == [nbx.ExerciseCells("bce", "bce", 0, 1, 2)]


@pytest.mark.parametrize("flavor", nbx.FLAVORS)
def test_every_flavour_clears_outputs_and_execution_counts(flavor):
    """An export holds no outputs and no execution counts from the instructor's run."""
    nb = _notebook("import torch", ANSWER, 'check("bce", bce)')
    for number, cell in enumerate(nb.cells, start=1):
        cell.execution_count = number
        cell.outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    build = {"plain": nbx.student_notebook, "nbgrader": nbx.nbgrader_notebook,
             "otter": lambda nb: nbx.otter_notebook(nb, "hw")}[flavor]
    code = [c for c in build(nb).cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_nbgrader_locks_the_setup_code_before_the_first_exercise_and_no_other_cell():
    """The read-only setup is the code before the first exercise's question: not its markdown, not the code after it."""
    nb = _notebook("import torch", ANSWER, 'check("bce", bce)', "print('after')")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# Losses"))
    nb.cells.insert(2, nbformat.v4.new_markdown_cell("Write `bce`."))
    out = nbx.nbgrader_notebook(nb)
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in out.cells] == [
        None, "setup_1", None, "bce_answer", "bce_check", None]
    assert out.cells[1].metadata.nbgrader["locked"] is True


def test_an_exercise_checked_twice_in_a_notebook_is_refused():
    nb = _notebook(ANSWER, 'check("bce", bce)', ANSWER, 'check("bce", bce)')
    with pytest.raises(ValueError, match=r"^Expected each exercise once in a notebook, but 'bce' is checked in cell 1 and again in cell 3\.$"):
        nbx.find_exercises(nb)


def test_a_solution_region_outside_a_code_cell_is_refused():
    nb = _notebook(ANSWER, 'check("bce", bce)')
    nb.cells.append(nbformat.v4.new_markdown_cell("The answer:\n# BEGIN SOLUTION\nsoftplus(-y z)\n# END SOLUTION"))
    with pytest.raises(ValueError, match=r"^Expected `# BEGIN SOLUTION` only in code cells, but markdown cell 2 holds one"):
        nbx.find_exercises(nb)


@pytest.mark.parametrize("flavor", nbx.FLAVORS)
def test_unbalanced_markers_are_refused_by_every_flavour_naming_the_cell(flavor):
    nb = _notebook("import torch", ANSWER.replace("    # END SOLUTION", ""), 'check("bce", bce)')
    build = {"plain": nbx.student_notebook, "nbgrader": nbx.nbgrader_notebook,
             "otter": lambda nb: nbx.otter_notebook(nb, "hw")}[flavor]
    with pytest.raises(ValueError, match=r"^In cell 1: Expected `# END SOLUTION` after `# BEGIN SOLUTION`, but the cell ended first\.$"):
        build(nb)


def test_a_solution_notebook_without_exercises_is_refused(tmp_path):
    nbformat.write(_notebook("import torch"), tmp_path / "hw_solutions.ipynb")
    with pytest.raises(ValueError, match=r"hw_solutions\.ipynb: Expected at least one exercise \(an answer cell with "):
        nbx.export("plain", tmp_path / "out", tmp_path)


# --- the nbgrader flavour ------------------------------------------------------------------------

@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_nbgrader_metadata_follows_the_schema(path):
    solution = read(path)
    nb = nbx.nbgrader_notebook(solution)
    nbformat.validate(nb)
    ids = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            continue
        assert set(meta) <= NBGRADER_KEYS
        assert {"schema_version", "grade", "locked", "solution"} <= set(meta)
        assert meta["schema_version"] == 3
        assert all(isinstance(meta[k], bool) for k in ("grade", "locked", "solution"))
        assert re.fullmatch(r"[a-zA-Z0-9_\-]+", meta["grade_id"])
        ids.append(meta["grade_id"])
        if meta["grade"]:
            assert isinstance(meta["points"], (int, float)) and meta["points"] > 0
        if cell.cell_type == "markdown":
            assert meta["grade"] == meta["solution"]
    assert len(ids) == len(set(ids))
    for ex in nbx.find_exercises(solution):
        answer, check = nb.cells[ex.answer], nb.cells[ex.check]
        assert answer.metadata.nbgrader == {"grade": False, "solution": True, "locked": False,
                                            "grade_id": f"{ex.name}_answer", "schema_version": 3}
        assert "# BEGIN SOLUTION" in answer.source  # nbgrader replaces the region itself
        assert check.metadata.nbgrader == {"grade": True, "solution": False, "locked": True, "points": 1,
                                           "grade_id": f"{ex.name}_check", "schema_version": 3}
        assert check.source == f'check("{ex.name}", {ex.function})'
    setup = nb.cells[1]
    assert "from lossbench.exercises import" in setup.source and setup.metadata.nbgrader["locked"] is True


def test_nbgrader_itself_accepts_the_export_and_clears_the_solutions():
    pytest.importorskip("nbgrader")
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3
    from nbgrader.preprocessors import ClearSolutions

    for path in SOLUTIONS:
        nb = nbx.nbgrader_notebook(read(path))
        MetadataValidatorV3().validate_nb(nb)
        broken = nbx.nbgrader_notebook(read(path))  # the validator is not vacuous: a grade cell needs points
        check_cell = next(c for c in broken.cells if c.metadata.get("nbgrader", {}).get("grade"))
        del check_cell.metadata.nbgrader["points"]
        with pytest.raises(Exception, match="does not have points"):
            MetadataValidatorV3().validate_nb(broken)
        cleared, _ = ClearSolutions().preprocess(nb, {})
        assert "BEGIN SOLUTION" not in "\n".join(c.source for c in cleared.cells)
        for ex in nbx.find_exercises(read(path)):  # nbgrader's stub is the plain flavour's stub
            assert cleared.cells[ex.answer].source == nbx.student_notebook(read(path)).cells[ex.answer].source


def _run_solution_with(nb, cell_index: int) -> None:
    """Run the solution notebook's code cells up to each exercise's answer, then the source of cell `cell_index`."""
    namespace: dict = {}
    for cell in nb.cells[:cell_index]:
        if cell.cell_type == "code" and not cell.source.startswith("# HIDDEN"):
            exec(cell.source, namespace)
    exec(nb.cells[cell_index].source, namespace)  # raises ExerciseFailed if a check fails


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_nbgrader_check_cells_end_with_a_hidden_check_on_the_export_seed(path):
    nb = nbx.nbgrader_notebook(read(path), seed=90210)
    for ex in nbx.find_exercises(read(path)):
        assert nb.cells[ex.check].source == (f'check("{ex.name}", {ex.function})\n### BEGIN HIDDEN TESTS\n'
                                             f'check("{ex.name}", {ex.function}, seed=90210)\n### END HIDDEN TESTS')
        _run_solution_with(nb, ex.check)  # the answer passes the hidden check too


def test_nbgrader_itself_hides_the_hidden_checks_from_students():
    pytest.importorskip("nbgrader")
    from nbgrader.preprocessors import ClearHiddenTests

    for path in SOLUTIONS:
        released, _ = ClearHiddenTests().preprocess(nbx.nbgrader_notebook(read(path), seed=5), {})
        for ex in nbx.find_exercises(read(path)):
            assert released.cells[ex.check].source.strip() == f'check("{ex.name}", {ex.function})'


# --- the otter flavour ---------------------------------------------------------------------------

def _config(cell) -> dict[str, str]:
    lines = cell.source.splitlines()[1:]
    return dict(line.split(": ", 1) for line in lines if line.strip())


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_otter_export_has_the_v1_assign_blocks(path):
    solution = read(path)
    nb = nbx.otter_notebook(solution, nbx.topic_of(path))
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "raw" and first.source.splitlines()[0] == "# ASSIGNMENT CONFIG"
    assert _config(first) == {"name": nbx.topic_of(path), "export_cell": "false", "check_all_cell": "false"}
    raw = [(i, c.source.splitlines()[0]) for i, c in enumerate(nb.cells) if c.cell_type == "raw"][1:]
    exercises = nbx.find_exercises(solution)
    expected = ["# BEGIN QUESTION", "# BEGIN SOLUTION", "# END SOLUTION", "# BEGIN TESTS", "# END TESTS",
                "# END QUESTION"] * len(exercises)
    assert [line for _, line in raw] == expected
    for k, ex in enumerate(exercises):
        (q, _), (s, _), (se, _), (t, _), (te, _), (qe, _) = raw[6 * k: 6 * k + 6]
        assert _config(nb.cells[q]) == {"name": ex.name, "points": "1"}
        assert nb.cells[q + 1].cell_type == "markdown"  # the question's prompt
        assert se == s + 2 and "# BEGIN SOLUTION" in nb.cells[s + 1].source  # the answer, its region inside
        assert te == t + 2 and nb.cells[t + 1].source == f'check("{ex.name}", {ex.function})'
        assert qe == te + 1


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_otter_test_blocks_hold_a_hidden_check_on_the_export_seed(path):
    nb = nbx.otter_notebook(read(path), nbx.topic_of(path), seed=90210)
    nbformat.validate(nb)
    starts = [i for i, c in enumerate(nb.cells) if c.cell_type == "raw" and c.source == "# BEGIN TESTS"]
    exercises = nbx.find_exercises(read(path))
    assert len(starts) == len(exercises)
    for t, ex in zip(starts, exercises):
        assert [c.cell_type for c in nb.cells[t + 1: t + 4]] == ["code", "code", "raw"] and nb.cells[t + 3].source == "# END TESTS"
        assert nb.cells[t + 1].source == f'check("{ex.name}", {ex.function})'
        assert nb.cells[t + 2].source == f'# HIDDEN\ncheck("{ex.name}", {ex.function}, seed=90210)'
        _run_solution_with(nb, t + 2)


def test_otter_assign_accepts_the_export(tmp_path):
    pytest.importorskip("otter")
    otter = shutil.which("otter") or str(Path(sys.executable).with_name("otter"))
    nbx.export("otter", tmp_path / "master", seed=77)
    result = subprocess.run([otter, "assign", "--no-run-tests", str(tmp_path / "master" / "losses.ipynb"),
                             str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    student = read(tmp_path / "dist" / "student" / "losses.ipynb")
    assert "BEGIN SOLUTION" not in "\n".join(c.source for c in student.cells)
    tests = student.metadata["otter"]["tests"]
    assert sorted(tests) == sorted(n for n, ex in EXERCISES.items() if ex.topic == "losses")
    assert tests["bce"]["suites"][0]["cases"] == [{"code": ">>> check('bce', bce)\n", "hidden": False, "locked": False}]
    graded = read(tmp_path / "dist" / "autograder" / "losses.ipynb").metadata["otter"]["tests"]  # what otter grades with
    assert graded["bce"]["suites"][0]["cases"][1] == {"code": ">>> check('bce', bce, seed=77)\n", "hidden": True, "locked": False}


# --- export --------------------------------------------------------------------------------------

@pytest.mark.parametrize("flavor", nbx.FLAVORS)
def test_export_writes_a_valid_notebook_per_topic(flavor, tmp_path):
    seed = None if flavor == "plain" else 11  # the plain notebooks have no hidden checks to seed
    written = nbx.export(flavor, tmp_path / flavor, seed=seed)
    assert [p.name for p in written] == ["losses.ipynb", "thresholds.ipynb"]
    for p in written:
        nbformat.validate(read(p))
    again = nbx.export(flavor, tmp_path / "again", seed=seed)
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]  # reproducible, given the seed


def test_export_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"^Expected `flavor` to be one of 'plain', 'nbgrader', 'otter', "
                                         r"but got 'moodle'\.$"):
        nbx.export("moodle", tmp_path)
    with pytest.raises(ValueError, match=r"^Expected `source` to be a folder holding \*_solutions.ipynb notebooks"):
        nbx.export("plain", tmp_path / "out", source=tmp_path)


def test_the_thresholds_notebook_states_floats_as_python_and_torch_give_them():
    # the tie-breaking lesson quotes float values; each must be what the line it names gives
    import torch

    text = "".join(cell.source for cell in nbformat.read(
        Path(__file__).parents[2] / "notebooks" / "exercises" / "thresholds_solutions.ipynb", as_version=4).cells)
    grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    stated = {
        f"0.55 - 0.5 is {0.55 - 0.5!r}": "0.55 - 0.5 is 0.050000000000000044",
        f"0.5 - 0.45 is {0.5 - 0.45!r}": "0.5 - 0.45 is 0.04999999999999999",
        f"`torch.linspace(0.01, 0.99, 99, dtype=torch.float64)` holds {grid[54].item()!r}":
            "`torch.linspace(0.01, 0.99, 99, dtype=torch.float64)` holds 0.5499999999999999",
    }
    for computed, written in stated.items():
        assert computed == written and " ".join(written.split()) in " ".join(text.split())


# --- export: folders, files that are no notebooks, what is written -----------------------------------


def test_export_makes_every_missing_parent_of_outdir(tmp_path):
    """OUTDIR and each missing folder above it are made, as the docstring promises."""
    out = tmp_path / "course" / "week1" / "handout"
    written = nbx.export("plain", out)
    assert written == [out / "losses.ipynb", out / "thresholds.ipynb"]
    assert sorted(p.name for p in out.iterdir()) == ["losses.ipynb", "thresholds.ipynb"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_export_to_a_special_file_is_refused_as_not_a_folder(tmp_path):
    """An OUTDIR that exists but is no folder (a named pipe, not only a regular file) is refused before anything is made."""
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match=r"^Expected `outdir` to be a folder, but '.*/pipe' is a file; choose another path\.$"):
        nbx.export("plain", tmp_path / "pipe")
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


@pytest.mark.parametrize("message, said", [("", "ValueError"), ("the first line\nthe second line", "the first line")],
                         ids=["no-text", "several-lines"])
def test_a_solution_notebook_that_cannot_be_read_is_named_in_one_line(tmp_path, monkeypatch, message, said):
    """The refusal quotes the first line of the reader's error, or the error's type when it has no text."""
    def unreadable(*args, **kwargs):
        raise ValueError(message)

    monkeypatch.setattr(nbformat, "read", unreadable)
    with pytest.raises(ValueError, match=r"^Expected every \*_solutions\.ipynb in `source` to be a notebook, but "
                                         rf"'.*losses_solutions\.ipynb' is not one \({said}\)\.$"):
        nbx.export("plain", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_invalid_generated_notebook_is_never_written(tmp_path, monkeypatch):
    """Every notebook is validated before any is written: an invalid one stops the export and OUTDIR stays as it was."""
    def invalid(solution):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.from_dict({"id": "bogus", "cell_type": "bogus", "metadata": {}, "source": ""}))
        return nb

    monkeypatch.setattr(nbx, "student_notebook", invalid)
    with pytest.raises(nbformat.ValidationError):
        nbx.export("plain", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_exported_notebook_is_utf8_and_ends_with_a_newline(tmp_path):
    """The file holds nbformat's text of the generated notebook, non-ASCII text as UTF-8, with a final newline."""
    source = tmp_path / "source"
    source.mkdir()
    solution = nbformat.read(nbx.solution_notebooks()[0], as_version=4)
    solution.cells.insert(0, nbformat.v4.new_markdown_cell("Week 1 — naïve losses → better ones", id="intro"))
    nbformat.write(solution, source / "losses_solutions.ipynb")
    (path,) = nbx.export("plain", tmp_path / "out", source=source)
    assert path.read_bytes() == (nbformat.writes(nbx.student_notebook(solution)) + "\n").encode("utf-8")
    assert nbformat.read(path, as_version=4).cells[0].source == "Week 1 — naïve losses → better ones"


@pytest.mark.parametrize("text", ["{}", "[1, 2]", '"a notebook"', '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": 3}'])
def test_a_solution_file_of_json_that_is_not_a_notebook_is_refused_by_name(tmp_path, text):
    """JSON that is no notebook (a schema error, or a list or string where nbformat expects a mapping) is named too."""
    source = tmp_path / "source"
    source.mkdir()
    for path in nbx.solution_notebooks():
        (source / path.name).write_bytes(path.read_bytes())
    (source / "thresholds_solutions.ipynb").write_text(text)
    with pytest.raises(ValueError, match=r"^Expected every \*_solutions\.ipynb in `source` to be a notebook, but "
                                         r"'.*thresholds_solutions\.ipynb' is not one \(.+\)\.$"):
        nbx.export("plain", tmp_path / "out", source=source)
    assert not (tmp_path / "out").exists()
