"""The exercise commands of the `lossbench` command line: check, grade, exercises list and export.

    lossbench check EXERCISE package.module:function      # exit 0 pass, 1 fail, 2 usage error
    lossbench grade SUBMISSIONS_DIR --exercise NAME [--timeout S] [--memory-mb MB] --out grades.csv
    lossbench exercises list
    lossbench exercises export --flavor plain|nbgrader|otter [--source DIR] OUTDIR

Heavy imports (torch, pandas, nbformat) happen inside the commands, so that registering
them costs nothing to the other `lossbench` commands.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from lossbench.cli import _FORMATTER, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, _named, _named_as_typed, _show_bars


def load_function(target: str, exercise: str | None = None) -> Callable[..., Any]:
    """Import `package.module:function`, looking in the current directory first; UsageError if it fails.

    `exercise`, the exercise it is checked on, is named in the advice for a notebook given as the module.

    >>> load_function("lossbench.exercises.references:bce").__name__
    'bce'
    >>> load_function("lossbench.exercises.references")
    Traceback (most recent call last):
    ...
    lossbench.cli.UsageError: Expected the function as package.module:function (e.g. mysolution:bce), but got 'lossbench.exercises.references'.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"Expected the function as package.module:function (e.g. mysolution:bce), but got {target!r}.")
    if not attr.isidentifier():  # "mysolution: bce", "mysolution:bce:x"
        raise UsageError(f"Expected the function as package.module:function, with a Python name after the colon, but got "
                         f"{attr!r} in {target!r}.")
    if module_name.endswith(".ipynb"):
        raise UsageError(f"Expected the function as package.module:function from a .py file, but got the notebook "
                         f"{module_name!r}: `lossbench check` imports Python files. In the notebook, run "
                         f"`lossbench.exercises.report(\"{exercise or 'EXERCISE'}\", {attr})`, or save the function in a .py "
                         "file and pass its module.")
    from lossbench.losses.registry import hidden_file, module_of_path

    if (dotted := module_of_path(module_name)) is not None:
        raise UsageError(f"Expected the function as package.module:function, but got the file path {target!r}: write "
                         f"{dotted}:{attr} (no folder separators and no .py), from the folder that holds it.")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except SystemExit as err:  # sys.exit() or exit() at the top level of the student's file; Ctrl-C still interrupts
        raise UsageError(f"could not import {module_name!r}: SystemExit: {err.code}; the module calls sys.exit() "
                         "while it is imported: move that call under `if __name__ == \"__main__\":`") from None
    except Exception as err:  # a syntax error or a failing import in the student's file: one line, no traceback
        detail = str(err).splitlines()[0] if str(err) else ""
        raise UsageError(f"could not import {module_name!r}: {type(err).__name__}: {detail}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        top = module_name.split(".")[0]
        hidden = hidden_file(module_name, cwd)
        if hidden is not None:  # typing.py next to the student: Python's comes first
            raise UsageError(f"your {top}.py is hidden: {top!r} is the name of an installed module ({hidden[1]}), which "
                             f"Python imports instead; rename your file (e.g. {top}_solution.py) and pass "
                             f"{top}_solution{module_name[len(top):]}:{attr}")
        where = getattr(module, "__file__", None)
        if where is not None and not Path(where).resolve().is_relative_to(Path(cwd).resolve()):  # torch:bce
            raise UsageError(f"module {module_name!r} ({where}) is installed, not a file in this folder, and has no {attr!r}; put your function in a "
                             f".py file here and pass its module, e.g. mysolution:{attr}")
        raise UsageError(f"module {module_name!r} has no {attr!r}; define `def {attr}(...)` in "
                         f"{where or module_name}")
    if not callable(fn):
        raise UsageError(f"Expected {target!r} to be a function, but it is of type {type(fn).__name__}.")
    return fn


def check_gradebook_path(text: str) -> Path:
    """The --out of `grade` as a Path, if a CSV can be written there; UsageError otherwise, before any grading.

    It must name a file (an existing one is overwritten) whose folder exists or can be made, and is writable.

    >>> check_gradebook_path("grades.csv")
    PosixPath('grades.csv')
    >>> check_gradebook_path(".")
    Traceback (most recent call last):
    ...
    lossbench.cli.UsageError: Expected --out to be a file, but '.' is a folder; name a file in it, such as grades.csv.
    """
    if not text.strip():
        raise UsageError(f"Expected --out to be the path of a CSV file, such as grades.csv, but got {text!r}.")
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"Expected --out to be a file, but {text!r} is a folder; name a file in it, "
                         f"such as {path / 'grades.csv'}.")
    if path.exists() and not path.is_file():
        raise UsageError(f"Expected --out to be a regular file, but {text!r} is not one; choose another path.")
    folder = path.parent
    while not folder.exists():  # the folders that write_gradebook would make
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"Expected --out to be in a folder, but {str(folder)!r} in {text!r} is a file, not a folder; "
                         "choose another path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"Expected --out to be in a folder you can write to, but {str(folder)!r} is not writable.")
    return path




def _cmd_check(args: argparse.Namespace) -> int:
    from lossbench.exercises.cases import check_seed
    from lossbench.exercises.catalog import get_exercise
    from lossbench.exercises.checker import evaluate, format_report

    with _named_as_typed({"name": "EXERCISE", "seed": "--seed"}):
        get_exercise(args.exercise)  # an unknown exercise is a ValueError: exit 2 before importing anything
        check_seed(args.seed)  # so is a seed torch.Generator cannot take
    fn = load_function(args.function, args.exercise)
    results = evaluate(args.exercise, fn, seed=args.seed)
    print(format_report(args.exercise, results))
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAIL


def _cmd_grade(args: argparse.Namespace) -> int:
    from lossbench.exercises import grading

    out = check_gradebook_path(args.out)  # a path that cannot be written must not cost the grading
    timeout = grading.DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout
    memory_mb = grading.DEFAULT_MEMORY_MB if args.memory_mb is None else args.memory_mb
    with _named_as_typed({"submissions": "SUBMISSIONS_DIR"}):
        found = grading.find_submissions(args.submissions)
    if not found:  # a wrong folder, not a class that handed nothing in
        raise UsageError(f"Expected SUBMISSIONS_DIR to hold .py or .ipynb files, but {str(args.submissions)!r} has "
                         "none; grade looks only at the files directly in it, not in its subfolders.")
    if out.suffix in grading.SUFFIXES and out.resolve().parent == Path(args.submissions).resolve():
        raise UsageError(f"Expected --out to be kept apart from the submissions, but {args.out!r} is a {out.suffix} file in "
                         "SUBMISSIONS_DIR, which would overwrite a submission or be graded as one next time; name a CSV "
                         "file, such as grades.csv.")
    seed = grading.fresh_seed() if args.seed is None else args.seed
    stopped = None
    with _named_as_typed({"name": "--exercise", "timeout": "--timeout", "memory_mb": "--memory-mb", "seed": "--seed",
                          "function": "--function", "submissions": "SUBMISSIONS_DIR"}):
        try:
            frame = grading.grade(args.submissions, args.exercise, timeout=timeout, memory_mb=memory_mb,
                                  function=args.function, seed=seed, progress=not args.quiet and _show_bars())
        except grading.GradingInterrupted as interrupted:  # Ctrl-C: the submissions graded so far are kept
            frame, stopped = interrupted.gradebook, interrupted
    totals = frame[frame["group"] == "total"]
    if stopped is not None and totals.empty:
        print("lossbench grade: interrupted before the first submission was graded; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    width = max([len("submission")] + [len(s) for s in totals["submission"]])
    print(f"{'submission':<{width}}  score  reason")  # the scores first: on screen whatever happens to the file
    for row in totals.itertuples():
        print(f"{row.submission:<{width}}  {row.score:5.2f}  {row.reason}")
    path, problem = _write_gradebook(frame, out)
    print(f"wrote {path} ({len(frame)} rows: a row per case group and a total per submission)")
    print(f"graded with seed {seed}; `--seed {seed}` grades on the same cases again")
    if problem:
        print(f"lossbench grade: error: {problem}", file=sys.stderr)
    if stopped is not None:
        print(f"lossbench grade: interrupted after {len(totals)} of {stopped.total} submissions; the gradebook holds "
              "those graded", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE if problem else EXIT_OK


def _write_gradebook(frame, out: Path) -> tuple[Path, str | None]:
    """Write the gradebook to ``out``, or where that fails (a full disk, a folder gone meanwhile) to a new file in
    the system's temporary folder; returns where, and what went wrong, if anything."""
    from lossbench.exercises import grading

    try:
        return grading.write_gradebook(frame, out), None
    except OSError as err:
        handle, fallback = tempfile.mkstemp(prefix="lossbench-grades-", suffix=".csv")
        os.close(handle)
        return grading.write_gradebook(frame, fallback), (
            f"could not write {str(out)!r} ({type(err).__name__}: {err}); the gradebook was written to {fallback!r} instead")


def _cmd_list(args: argparse.Namespace) -> int:
    from lossbench.exercises.catalog import EXERCISES

    for ex in EXERCISES.values():
        print(f"{ex.name:<15} {ex.signature:<55} {ex.topic}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    try:
        from lossbench.exercises.notebooks import export
    except ImportError as err:  # nbformat comes with the dev extra, not with the core install
        raise UsageError(f"exporting notebooks needs nbformat ({err}): pip install nbformat") from None

    from lossbench.exercises.cases import fresh_seed

    seed = fresh_seed() if args.seed is None and args.flavor != "plain" else args.seed
    try:
        with _named_as_typed({"outdir": "OUTDIR", "source": "--source", "seed": "--seed", "flavor": "--flavor"}):
            for path in export(args.flavor, args.outdir, source=args.source, seed=seed):
                print(f"wrote {path}")
    except (FileNotFoundError, PermissionError, NotADirectoryError) as err:
        raise UsageError(f"Expected OUTDIR to be a folder this user can make and write, but {str(args.outdir)!r} refuses it "
                         f"({err.strerror}: {err.filename}).") from None
    except OSError as err:  # a full disk, say: the notebooks are written whole before any is renamed into place
        raise UsageError(f"Expected OUTDIR to take the notebooks, but writing in {str(args.outdir)!r} failed "
                         f"({err.strerror}: {err.filename}); the notebooks there are as they were.") from None
    if args.flavor != "plain":
        print(f"hidden checks on seed {seed}'s cases (the visible checks use seed 0's, which students see); "
              f"`--seed {seed}` makes the same again")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the exercise subcommands on the `lossbench` parser.

    >>> parser = argparse.ArgumentParser(prog="lossbench")
    >>> add_commands(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["check", "bce", "mysolution:bce"])
    >>> args.exercise, args.function, args.func.__name__
    ('bce', 'mysolution:bce', '_cmd_check')
    """
    p = sub.add_parser("check", help="check your function for an exercise: prints a report, exit 0 when all pass",
                       formatter_class=_FORMATTER,
                       description="Run the cases of EXERCISE on your function and print the report: a line per case\n"
                                   "(expected, actual, errors, and pass, FAIL, ERROR when it raised, LIBRARY when it\n"
                                   "called the library function the exercise rebuilds, or not attempted while it\n"
                                   "raises NotImplementedError) and, under a case that did not pass, what went wrong and a hint.\n"
                                   "Exit code 0 when every case passes, 1 otherwise, 2 for a usage error.\n\n"
                                   "examples:\n"
                                   "  lossbench check bce mysolution:bce           bce() from mysolution.py in this folder\n"
                                   "  lossbench check best_threshold hw.week3:best  best() from hw/week3.py\n"
                                   "  lossbench exercises list                      the exercises and their signatures")
    p.add_argument("exercise", metavar="EXERCISE", help="the exercise name (see `lossbench exercises list`)")
    p.add_argument("function", metavar="FUNCTION",
                   help="your function as package.module:function, from a .py file in the current directory or an "
                        "installed package (a file named like a module Python has, such as random.py, is hidden by it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated cases, 0 to 2**63 - 1 (default 0)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("grade", help="grade a folder of submissions into a CSV gradebook",
                       formatter_class=_FORMATTER,
                       description="Grade every .py and .ipynb file directly in SUBMISSIONS_DIR (not in its subfolders;\n"
                                   "hidden files skipped): each is a submission, run in its own process with time and\n"
                                   "memory limits. It writes the gradebook to --out, a row per submission per case\n"
                                   "group plus a total, and prints each submission's score (the fraction of cases\n"
                                   "passed) and why it lost points; a submission that fails to import, hangs or\n"
                                   "crashes scores 0 with the reason. The generated cases come from a fresh seed, not\n"
                                   "the seed 0 students self-check with; the seed is printed and in the gradebook.\n\n"
                                   "A score is not proof: a submission runs in the same process as the checker, so a\n"
                                   "determined student can forge a full score (by replacing the checker's functions\n"
                                   "from the submission), and the check for library calls sees only the thread that\n"
                                   "calls the function, not a thread it starts. Read the code of a surprising score.\n\n"
                                   "examples:\n"
                                   "  lossbench grade submissions/ --exercise bce --out grades.csv   (prints the seed it drew)\n"
                                   "  lossbench grade late/ --exercise bce --seed 90210 --out late.csv   (the same cases again)\n"
                                   "  lossbench grade submissions/ --exercise best_threshold --function best --timeout 30 --out grades.csv")
    p.add_argument("submissions", metavar="SUBMISSIONS_DIR", type=Path,
                   help="the folder of submissions: every .py and .ipynb file directly in it, each run in its own process")
    p.add_argument("--exercise", required=True, help="the exercise name (see `lossbench exercises list`)")
    p.add_argument("--function", default=None,
                   help="the function each submission defines (default: the exercise name, e.g. bce)")
    # The defaults live in grading.py (importing it here would import torch for every command).
    p.add_argument("--timeout", type=float, default=None, help="seconds per submission, at most 86400 (default 60)")
    p.add_argument("--memory-mb", type=int, default=None,
                   help="memory each submission may take in MiB, 256 to 1048576 (default 1024), on top of what its\n"
                        "process maps when it starts (0.6 GiB with a CPU build of torch, 3.1 GiB with a CUDA build)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the generated cases, 0 to 2**63 - 1 (default: a fresh one, printed and written to the "
                        "gradebook, since students self-check with seed 0 and their reports print its expected values; "
                        "pass it again to grade a late submission on the same cases; the fixed edge cases are the same "
                        "for every seed)")
    p.add_argument("--out", required=True, help="the gradebook CSV to write; an existing file is overwritten")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=_cmd_grade)

    p = sub.add_parser("exercises", help="list the exercises, or export them as an assignment", formatter_class=_FORMATTER,
                       description="List the exercises students self-check with `lossbench check`, or export the\n"
                                   "exercise notebooks as an assignment.\n\n"
                                   "examples:\n"
                                   "  lossbench exercises list\n"
                                   "  lossbench exercises export --flavor nbgrader course/source/lossbench")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    q = actions.add_parser("list", help="the exercises, a line each: name, signature, notebook", formatter_class=_FORMATTER,
                           description="The exercises, a line each: the name `lossbench check` takes, the function's\n"
                                       "signature, and the notebook (topic) that holds it.\n\nexample:\n  lossbench exercises list")
    q.set_defaults(func=_cmd_list)
    q = actions.add_parser("export", help="write the assignment notebooks: plain (student), nbgrader or otter",
                           formatter_class=_FORMATTER,
                           description="Make the assignment from the solution notebooks: `plain` writes the student\n"
                                       "notebooks, `nbgrader` the nbgrader source notebooks, `otter` the otter-grader\n"
                                       "master notebooks (assign format v1). It writes a notebook per topic (losses.ipynb,\n"
                                       "thresholds.ipynb) into OUTDIR, made if missing, overwriting the notebooks of those\n"
                                       "names there, and prints each path written. The nbgrader and otter notebooks also hold\n"
                                       "a hidden check per exercise on a fresh seed's cases (printed), as students' own\n"
                                       "reports show seed 0's.\n\n"
                                       "examples:\n"
                                       "  lossbench exercises export --flavor plain handout/\n"
                                       "  lossbench exercises export --flavor nbgrader course/source/lossbench   then: nbgrader generate_assignment lossbench\n"
                                       "  lossbench exercises export --flavor otter otter/                      then: otter assign otter/losses.ipynb dist/")
    q.add_argument("--flavor", required=True, choices=["plain", "nbgrader", "otter"],
                   help="plain: student notebooks to hand out; nbgrader: nbgrader's source notebooks; otter: otter-grader's")
    q.add_argument("--seed", type=int, default=None,
                   help="seed of the hidden checks' generated cases in the nbgrader and otter notebooks, 0 to 2**63 - 1 "
                        "(default: a fresh one, printed; the visible checks use seed 0, whose expected values students see)")
    q.add_argument("--source", type=Path, default=None,
                   help="folder of *_solutions.ipynb (default: notebooks/exercises of this checkout)")
    q.add_argument("outdir", metavar="OUTDIR", type=_named("OUTDIR"),
                   help="the folder to write the notebooks to; notebooks of the same name there are overwritten")
    q.set_defaults(func=_cmd_export)
