"""Assignments from solution notebooks: the student version, and nbgrader and otter-grader sources.

The instructor edits one kind of notebook, `notebooks/exercises/<topic>_solutions.ipynb`,
in which each exercise is three cells:

1. a markdown cell with the question (the cell just before the answer);
2. a code cell defining the function, its answer between `# BEGIN SOLUTION` and
   `# END SOLUTION` lines;
3. a check cell whose whole source is `check("<exercise>", <function>)` (a comment may follow it).

An answer without its check cell, or a solution region outside a code cell, is an error: it
would otherwise reach the student notebook as it is, answer and all.

Every other cell passes through unchanged. From that notebook come three flavours:

- `plain`: the student notebook. Answers become `raise NotImplementedError()`, check cells
  become `report(...)` cells, so the notebook runs top to bottom and says "not attempted"
  until the student writes the answer. It is committed next to the solutions as
  `notebooks/exercises/<topic>.ipynb`; a test keeps it identical to what this module makes.
- `nbgrader`: the source notebook for `nbgrader generate_assignment`. Answer cells are
  solution cells, check cells are locked autograder test cells worth `points`, the setup
  cell is read-only (cell metadata `nbgrader`, schema version 3). nbgrader itself replaces
  the `BEGIN SOLUTION` regions. Each check cell also holds a hidden check on another seed's
  generated cases (`### BEGIN HIDDEN TESTS`), which nbgrader leaves out of the students'
  version and runs when it grades.
- `otter`: the master notebook for `otter assign` (v1 format): an `# ASSIGNMENT CONFIG` raw
  cell, and per exercise raw cells `# BEGIN QUESTION` (name, points), `# BEGIN SOLUTION`,
  `# END SOLUTION`, `# BEGIN TESTS`, `# END TESTS`, `# END QUESTION` around the question,
  answer and check cells. The check cell is an OK-format test: `check` prints nothing and
  returns None on success, so its expected output is empty. A second test cell, marked
  `# HIDDEN`, checks another seed's generated cases when otter grades.

The hidden checks exist because the visible ones use seed 0, whose expected values every
student's report prints; their seed is drawn afresh for each export unless one is given.

The solution notebooks live in the repository, not in the installed package. The package still
holds answers that students who `pip install` lossbench can read: the checker's reference
functions (`lossbench.exercises.references`: dlogits, accuracy_multi and best_threshold written
out, the losses as calls of torch's own) and lossbench's hand-written losses (`lossbench.losses`).
The check fails a submission that calls them (see `catalog.py`), not one that copies them.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nbformat
from nbformat import NotebookNode

from lossbench.exercises.cases import check_seed, fresh_seed
from lossbench.exercises.catalog import get_exercise

Flavor = Literal["plain", "nbgrader", "otter"]
FLAVORS: tuple[str, ...] = ("plain", "nbgrader", "otter")

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")  # what nbgrader's ClearSolutions writes, too
CHECK_CELL = re.compile(r"""^\s*check\(\s*["'](?P<name>\w+)["']\s*,\s*(?P<fn>\w+)\s*\)\s*(\#[^\n]*)?\s*$""")
SOLUTIONS_SUFFIX = "_solutions.ipynb"
NBGRADER_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class ExerciseCells:
    """Where one exercise sits in a solution notebook: indices of its question, answer and check cells."""

    name: str
    function: str
    question: int | None  # the markdown cell just before the answer, if any
    answer: int
    check: int


def default_source() -> Path:
    """The folder of solution notebooks in a checkout of the repository: notebooks/exercises.

    >>> default_source().parts[-2:]
    ('notebooks', 'exercises')
    """
    return Path(__file__).resolve().parents[2] / "notebooks" / "exercises"


def solution_notebooks(source: Path | str | None = None) -> list[Path]:
    """The solution notebooks (`*_solutions.ipynb`) in `source`, sorted; a ValueError if there are none.

    >>> [p.name for p in solution_notebooks()]
    ['losses_solutions.ipynb', 'thresholds_solutions.ipynb']
    """
    folder = Path(source) if source is not None else default_source()
    found = sorted(folder.glob(f"*{SOLUTIONS_SUFFIX}"))
    if not found:
        raise ValueError(f"Expected `source` to be a folder holding *{SOLUTIONS_SUFFIX} notebooks, but got "
                         f"{str(folder)!r}, which has none. Pass --source with the repository's "
                         "notebooks/exercises folder.")
    return found


def topic_of(path: Path | str) -> str:
    """The topic of a solution notebook: `losses` for `losses_solutions.ipynb`.

    >>> topic_of("notebooks/exercises/losses_solutions.ipynb")
    'losses'
    """
    name = Path(path).name
    if not name.endswith(SOLUTIONS_SUFFIX):
        raise ValueError(f"Expected a notebook named <topic>{SOLUTIONS_SUFFIX}, but got {name!r}.")
    return name[: -len(SOLUTIONS_SUFFIX)]


def has_solution(source: str) -> bool:
    """True when a cell's source holds a `# BEGIN SOLUTION` line.

    >>> has_solution("def f():\\n    # BEGIN SOLUTION\\n    return 1\\n    # END SOLUTION"), has_solution("x = 1")
    (True, False)
    """
    return any(line.strip() == BEGIN for line in source.splitlines())


def strip_solution(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region by `raise NotImplementedError()`, indented like the markers.

    >>> print(strip_solution("def f(x):\\n    # BEGIN SOLUTION\\n    return 2 * x\\n    # END SOLUTION"))
    def f(x):
        # YOUR CODE HERE
        raise NotImplementedError()
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"Expected `# END SOLUTION` before line {number}, but got a second `# BEGIN SOLUTION`.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + stub for stub in STUB]
        elif marker == END:
            if not inside:
                raise ValueError(f"Expected `# BEGIN SOLUTION` before line {number}, but got `# END SOLUTION` alone.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("Expected `# END SOLUTION` after `# BEGIN SOLUTION`, but the cell ended first.")
    return "\n".join(out)


def find_exercises(nb: NotebookNode) -> list[ExerciseCells]:
    """The exercises of a solution notebook, each an answer cell followed (later) by its check cell.

    >>> nb = nbformat.read(solution_notebooks()[1], as_version=4)
    >>> find_exercises(nb)[0]
    ExerciseCells(name='accuracy_multi', function='accuracy_multi', question=2, answer=3, check=4)
    """
    found: list[ExerciseCells] = []
    pending: tuple[int, str] | None = None  # (answer cell index, function name) waiting for its check

    def unchecked(answer: int, function: str, what: str) -> ValueError:
        return ValueError(f"Expected the answer in cell {answer} (`def {function}`) to be followed by its check cell, "
                          f"`check(\"<exercise>\", {function})`, but {what}; without it the answer would reach the "
                          "student notebook as it is.")

    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            if has_solution(cell.source):
                raise ValueError(f"Expected `{BEGIN}` only in code cells, but {cell.cell_type} cell {i} holds one; "
                                 "a student notebook would show it as it is.")
            continue
        if has_solution(cell.source):
            match = re.search(r"^def (\w+)\(", cell.source, flags=re.MULTILINE)
            if match is None:
                raise ValueError(f"Expected cell {i} to define the answer's function (`def name(...)`), "
                                 "but it has no top-level def.")
            if pending is not None:
                raise unchecked(*pending, f"cell {i} begins another answer first")
            try:
                strip_solution(cell.source)  # unbalanced markers: refused by every flavour, not by the plain one alone
            except ValueError as err:
                raise ValueError(f"In cell {i}: {err}") from None
            pending = (i, match.group(1))
            continue
        check = CHECK_CELL.match(cell.source)
        if check is None:
            continue
        name, function = check.group("name"), check.group("fn")
        get_exercise(name)  # an unknown name is a ValueError listing the valid ones
        if pending is None or pending[1] != function:
            raise ValueError(f"Expected a cell defining `{function}` with a BEGIN SOLUTION region before the "
                             f"check cell {i} (`{cell.source.strip()}`), but found none.")
        answer = pending[0]
        twice = [ex.check for ex in found if ex.name == name]
        if twice:  # two answers graded under one name: nbgrader's grade ids and otter's cell ids would collide
            raise ValueError(f"Expected each exercise once in a notebook, but {name!r} is checked in cell {twice[0]} and again in cell {i}.")
        question = answer - 1 if answer > 0 and nb.cells[answer - 1].cell_type == "markdown" else None
        found.append(ExerciseCells(name, function, question, answer, i))
        pending = None
    if pending is not None:
        raise unchecked(*pending, "the notebook ends first")
    return found


def _blank_outputs(nb: NotebookNode) -> NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _raw(text: str, cell_id: str) -> NotebookNode:
    cell = nbformat.v4.new_raw_cell(text)
    cell.id = cell_id  # deterministic ids keep exports reproducible
    return cell


def student_notebook(solution: NotebookNode) -> NotebookNode:
    """The plain student version: answers replaced by `raise NotImplementedError()`, checks by reports.

    >>> student = student_notebook(nbformat.read(solution_notebooks()[1], as_version=4))
    >>> print(student.cells[3].source)  # doctest: +NORMALIZE_WHITESPACE
    def accuracy_multi(probs, target, threshold=0.5):
        \"\"\"Fraction of all N x K labels predicted right by probs >= threshold.\"\"\"
        # YOUR CODE HERE
        raise NotImplementedError()
    >>> student.cells[4].source
    'report("accuracy_multi", accuracy_multi)'
    """
    nb = _blank_outputs(copy.deepcopy(solution))
    for ex in find_exercises(nb):
        nb.cells[ex.answer].source = strip_solution(nb.cells[ex.answer].source)
        nb.cells[ex.check].source = f'report("{ex.name}", {ex.function})'
    return nb


def _hidden_check(ex: ExerciseCells, seed: int) -> str:
    """The check on seed ``seed``'s generated cases, which students never see before grading."""
    return f'check("{ex.name}", {ex.function}, seed={seed})'


def nbgrader_notebook(solution: NotebookNode, seed: int | None = None) -> NotebookNode:
    """The nbgrader source: solution cells, locked test cells worth points, a read-only setup cell.

    With ``seed``, each test cell ends with a hidden check on that seed's cases, between nbgrader's
    `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` lines.

    >>> nb = nbgrader_notebook(nbformat.read(solution_notebooks()[1], as_version=4))
    >>> dict(nb.cells[4].metadata.nbgrader)  # doctest: +NORMALIZE_WHITESPACE
    {'grade': True, 'solution': False, 'locked': True, 'grade_id': 'accuracy_multi_check', 'schema_version': 3,
     'points': 1}
    """
    nb = _blank_outputs(copy.deepcopy(solution))

    def meta(grade: bool, solution_cell: bool, locked: bool, grade_id: str, points: int | None = None) -> dict:
        data = {"grade": grade, "solution": solution_cell, "locked": locked, "grade_id": grade_id,
                "schema_version": NBGRADER_SCHEMA_VERSION}
        if points is not None:
            data["points"] = points
        return data

    exercises = find_exercises(nb)
    for ex in exercises:
        nb.cells[ex.answer].metadata["nbgrader"] = meta(False, True, False, f"{ex.name}_answer")
        nb.cells[ex.check].metadata["nbgrader"] = meta(True, False, True, f"{ex.name}_check",
                                                       get_exercise(ex.name).points)
        if seed is not None:
            nb.cells[ex.check].source += f"\n### BEGIN HIDDEN TESTS\n{_hidden_check(ex, seed)}\n### END HIDDEN TESTS"
    first = min((ex.question if ex.question is not None else ex.answer) for ex in exercises) if exercises else 0
    for i in range(first):  # the setup before the first exercise: read-only for students
        if nb.cells[i].cell_type == "code":
            nb.cells[i].metadata["nbgrader"] = meta(False, False, True, f"setup_{i}")
    return nb


def otter_notebook(solution: NotebookNode, assignment: str, seed: int | None = None) -> NotebookNode:
    """The otter-grader master notebook (assign format v1): config, question, solution and test blocks.

    With ``seed``, each test block holds a second, hidden test cell (first line `# HIDDEN`): the check on
    that seed's cases.

    >>> nb = otter_notebook(nbformat.read(solution_notebooks()[1], as_version=4), "thresholds")
    >>> [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "raw"][:7]  # doctest: +NORMALIZE_WHITESPACE
    ['# ASSIGNMENT CONFIG', '# BEGIN QUESTION', '# BEGIN SOLUTION', '# END SOLUTION', '# BEGIN TESTS',
     '# END TESTS', '# END QUESTION']
    """
    nb = _blank_outputs(copy.deepcopy(solution))
    exercises = find_exercises(nb)
    starts = {(ex.question if ex.question is not None else ex.answer): ex for ex in exercises}
    cells: list[NotebookNode] = [_raw(f"# ASSIGNMENT CONFIG\nname: {assignment}\nexport_cell: false\n"
                                      "check_all_cell: false", "assignment-config")]
    current = None
    for i, cell in enumerate(nb.cells):
        if i in starts:
            current = starts[i]
            points = get_exercise(current.name).points
            cells.append(_raw(f"# BEGIN QUESTION\nname: {current.name}\npoints: {points}", f"{current.name}-question"))
        if current is not None and i == current.answer:
            cells += [_raw("# BEGIN SOLUTION", f"{current.name}-solution"), cell,
                      _raw("# END SOLUTION", f"{current.name}-solution-end")]
        elif current is not None and i == current.check:
            hidden = [] if seed is None else [nbformat.v4.new_code_cell(f"# HIDDEN\n{_hidden_check(current, seed)}",
                                                                         id=f"{current.name}-hidden-check")]
            cells += [_raw("# BEGIN TESTS", f"{current.name}-tests"), cell, *hidden,
                      _raw("# END TESTS", f"{current.name}-tests-end"),
                      _raw("# END QUESTION", f"{current.name}-question-end")]
            current = None
        else:
            cells.append(cell)
    nb.cells = cells
    return nb


def export(flavor: Flavor, outdir: Path | str, source: Path | str | None = None, seed: int | None = None) -> list[Path]:
    """Write every solution notebook of `source` in the chosen flavour to `outdir`; returns the paths.

    Every flavour writes `<topic>.ipynb` (losses, thresholds), replacing a notebook of that name
    in `outdir`; `outdir` and its parents are made if missing. For nbgrader, copy them into your
    course's `source/<assignment>/` folder; for otter, run `otter assign <topic>.ipynb dist/`.
    `seed` draws the cases of the nbgrader and otter flavours' hidden checks (default: a fresh one,
    :func:`lossbench.exercises.cases.fresh_seed`); the plain flavour has none.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     [p.name for p in export("plain", tmp)]
    ['losses.ipynb', 'thresholds.ipynb']
    """
    if flavor not in FLAVORS:
        raise ValueError(f"Expected `flavor` to be one of {', '.join(map(repr, FLAVORS))}, but got {flavor!r}.")
    if flavor == "plain" and seed is not None:  # a setting the export would not use is refused, not ignored
        raise ValueError(f"Expected `seed` only with `flavor` 'nbgrader' or 'otter', but got {seed!r} with `flavor` "
                         "'plain': the student notebooks hold no hidden checks.")
    if flavor != "plain":
        seed = fresh_seed() if seed is None else seed
        check_seed(seed)
    out = Path(outdir)
    existing = next(p for p in (out, *out.parents) if p.exists())  # the current folder, at the latest
    if not existing.is_dir():
        raise ValueError(f"Expected `outdir` to be a folder, but {str(existing)!r} is a file; choose another path.")
    made = {}  # every notebook made before any is written: a broken solution notebook leaves OUTDIR as it was
    for path in solution_notebooks(source):  # a wrong --source fails before OUTDIR is made
        try:
            solution = nbformat.read(path, as_version=4)
        # not JSON or not UTF-8 (ValueError), or JSON but not a notebook: nbformat's schema error, or its reader
        # failing on a list, a string or a number where a notebook holds a mapping
        except (ValueError, nbformat.ValidationError, AttributeError, TypeError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"Expected every *{SOLUTIONS_SUFFIX} in `source` to be a notebook, but {str(path)!r} is not "
                             f"one ({first}).") from None
        topic = topic_of(path)
        try:
            if not find_exercises(solution):
                raise ValueError(f"Expected at least one exercise (an answer cell with `{BEGIN}`, then its check "
                                 "cell), but found none.")
            if flavor == "plain":
                nb = student_notebook(solution)
            elif flavor == "nbgrader":
                nb = nbgrader_notebook(solution, seed)
            else:
                nb = otter_notebook(solution, topic, seed)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        nbformat.validate(nb)
        made[topic] = nb
    targets = {topic: out / f"{topic}.ipynb" for topic in made}
    for target in targets.values():
        if target.is_dir() or (target.exists() and not target.is_file()):
            raise ValueError(f"Expected `outdir` to have room for {target.name}, but {str(target)!r} is a folder "
                             "or another special file; move it, or choose another folder.")
    out.mkdir(parents=True, exist_ok=True)
    # each notebook is written whole under a temporary name, and all are renamed into place only when every
    # one is written: a failure part-way (a full disk) leaves OUTDIR's notebooks as they were
    temporary = {topic: out / f".{topic}.ipynb.{os.getpid()}.tmp" for topic in made}
    try:
        for topic, nb in made.items():
            temporary[topic].write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        for topic in made:
            os.replace(temporary[topic], targets[topic])
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
    return list(targets.values())
