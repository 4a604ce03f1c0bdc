"""Grade a folder of submissions: each in its own process, with a time and a memory limit, into a gradebook.

A submission is a `.py` file or a notebook (`.ipynb`) in the folder that defines the
exercise's function under the exercise's name (`def bce(logits, target)` for `bce`;
`function=` picks another name). Each one runs in a child process:

1. the child is forked from a server that has already imported torch and the checker
   (multiprocessing's forkserver), so a submission costs a fraction of a second, not the
   seconds of importing torch;
2. the child sets its limits with `resource.setrlimit`: address space (what the child maps when it
   starts, plus `memory_mb` for the submission, default 1024 MiB; measured, the child starts at
   648 MiB with a CPU build of torch 2.13 and at 3,200 MiB with a CUDA build of torch 2.14, whose
   libraries map more) and CPU time (the timeout plus one second, a backstop); the parent kills its
   process group when the wall-clock `timeout` runs out, counted from the moment the child is ready (so a slow start is never the student's),
   and kills that group after every submission, so that no process it started outlives it;
   The size of any file it writes, its stderr included, is limited too (`FILE_LIMIT_MB`), so that
   a submission that floods stderr neither fills the disk nor the parent's memory;
3. it sends its stdout to /dev/null and its stderr to a file, loads the submission (a
   notebook's code cells run in order; a cell that raises is skipped and noted), and runs
   the checker; the results come back as JSON.

A crash, a hang, a missing function, NaN output, a library call or text on stderr gives the
submission a reason in its rows and never stops the batch. Text on stderr (a warning, a
debug print) is reported but does not cost points; the cases decide the score.

The generated cases come from a seed. Students self-check with seed 0 and their reports print the
expected values, so grading draws a fresh seed unless it is given one (the fixed edge cases are the
same for every seed); the gradebook records the seed, and passing it again grades a late submission
on the same cases.

The limits and the separate process protect the batch from a submission, not the score from a
student: the checker runs in the submission's own process, so a determined student can forge a
full score (replace `lossbench.exercises.checker`'s comparisons from the submission, say), and the
check for library calls (`forbidden.py`) sees only the thread that calls the function, not a
thread the function starts. A score is a learning aid's verdict; read the code of a surprising one.

The gradebook has one row per submission per case group, plus a `total` row:
`submission, exercise, seed, group, passed, cases, score, reason`.
Grading needs a POSIX system (fork, `resource`).
"""
from __future__ import annotations

import contextlib
import json
import keyword
import math
import multiprocessing
import numbers
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch  # imported here so that the forkserver holds it before any child forks

from lossbench.exercises.cases import check_seed, fresh_seed
from lossbench.exercises.catalog import get_exercise
from lossbench.exercises.checker import ExerciseFailed, evaluate

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 86400.0  # a day; far larger values overflow the waits and the CPU-time limit
DEFAULT_MEMORY_MB = 1024  # a submission's allowance, on top of the address space its process starts with
MIN_MEMORY_MB = 256  # the checker's own cases need some of it
MAX_MEMORY_MB = 2**20  # 1 TiB; far larger values overflow the address-space limit
FILE_LIMIT_MB = 64  # the largest file a submission may write, its stderr included: past it a write fails ("File too large")
STDERR_READ_BYTES = 64 * 1024  # of a submission's stderr the parent reads only the start and the end, this much of each
STARTUP_LIMIT_S = 120.0  # for a child to start (forked: milliseconds; spawned where fork is missing: an import of torch)
COLUMNS = ["submission", "exercise", "seed", "group", "passed", "cases", "score", "reason"]
SUFFIXES = (".py", ".ipynb")


class GradingInterrupted(KeyboardInterrupt):
    """Ctrl-C while grading: ``gradebook`` holds the rows of the submissions graded before it, of ``total``."""

    def __init__(self, gradebook: pd.DataFrame, total: int) -> None:
        super().__init__()
        self.gradebook, self.total = gradebook, total


def find_submissions(folder: Path | str) -> list[Path]:
    """The `.py` and `.ipynb` files directly in `folder`, sorted by name (hidden files skipped).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name in ("b.py", "a.ipynb", "notes.txt", ".hidden.py"):
    ...         _ = (Path(tmp) / name).write_text("")
    ...     [p.name for p in find_submissions(tmp)]
    ['a.ipynb', 'b.py']
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"Expected `submissions` to be a folder of .py or .ipynb files, but got {str(path)!r}, "
                         "which is not a folder.")
    return sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith("."))


# --- the child: load one submission and run the checker ------------------------------------------

def _load_python(path: Path) -> dict[str, Any]:
    """Run a .py submission as a module; returns its namespace."""
    namespace: dict[str, Any] = {"__name__": f"submission_{path.stem}", "__file__": str(path)}
    code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
    exec(code, namespace)
    return namespace


def _load_notebook(path: Path, notes: list[str], where: Callable[[str], None] = lambda stage: None) -> dict[str, Any]:
    """Run a notebook's code cells in order in one namespace; a cell that raises is skipped and noted."""
    import warnings

    import nbformat

    try:
        with warnings.catch_warnings():  # nbformat's own warnings (a cell without an id) are not the student's stderr
            warnings.simplefilter("ignore")
            nb = nbformat.read(path, as_version=4)
    except Exception as err:  # not JSON, not UTF-8, JSON that is not a notebook
        lines = str(err).strip().splitlines()
        raise _Unreadable(f"could not be read as a notebook ({type(err).__name__}: {lines[0][:160] if lines else ''})") from None
    namespace: dict[str, Any] = {"__name__": f"submission_{path.stem}"}
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        lines = [("# " + line) if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines()]
        where(f"in cell {number}")
        try:
            exec(compile("\n".join(lines), f"{path.name}, cell {number}", "exec"), namespace)
        except ExerciseFailed:  # the student's own check of an exercise: the graded one's cases say it all
            continue
        except (Exception, SystemExit) as err:  # a typo, a cell that needs what failed before, exit(): the
            notes.append(f"cell {number} raised {type(err).__name__}")  # function may still be defined
    return namespace


def _memory_limit_named(problem: str, memory_mb: int) -> str:
    """A case's problem, with the memory limit named when it is an allocation the limit refused.

    >>> _memory_limit_named("raised MemoryError: ", 2048)
    'raised MemoryError (the memory limit, 2048 MiB)'
    >>> _memory_limit_named("raised RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried", 2048)
    "raised RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried (the memory limit, 2048 MiB)"
    """
    if problem.startswith("raised MemoryError") or "can't allocate memory" in problem:
        return f"{problem.rstrip(': ')} (the memory limit, {memory_mb} MiB)"
    return problem


class _Unreadable(Exception):
    """A submission file that is not a notebook at all: nothing of it ran."""


def _address_space() -> int:
    """The bytes of address space this process maps now (Linux's /proc/self/statm; 0 where it cannot be read).

    >>> _address_space() > 2**20  # a Python process with torch loaded maps hundreds of MiB
    True
    """
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _set_limits(timeout: float, memory_mb: int) -> None:
    import resource

    # counted from what the process maps already: 0.6 GiB with a CPU build of torch, 3.1 GiB with a CUDA build
    limit = _address_space() + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file limit fails with an error instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_MB * 2**20, FILE_LIMIT_MB * 2**20))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(math.ceil(usage.ru_utime + usage.ru_stime + timeout)) + 1  # on top of what starting up used
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _child(path: str, exercise: str, function: str, seed: int, timeout: float, memory_mb: int,
           stderr_path: str, result_path: str, ready: Any, stage_path: str = os.devnull) -> None:
    """Entry point of the child process: limits, redirections, load, check, write JSON."""
    os.setsid()  # its own process group, so that the parent can kill whatever it starts
    ready.send(True)  # torch is imported: the submission's time starts now
    ready.close()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(err, 2)
    torch.set_num_threads(1)
    _set_limits(timeout, memory_mb)
    outcome: dict[str, Any] = {"error": None, "notes": [], "results": []}
    try:
        source = Path(path)
        def where(stage: str) -> None:  # what the parent names if the time runs out: a notebook's cell, or the checking
            with open(stage_path, "w", encoding="utf-8") as fh:
                fh.write(stage)

        where("while loading")
        namespace = _load_notebook(source, outcome["notes"], where) if source.suffix == ".ipynb" else _load_python(source)
        where("while checking the function")
        fn = namespace.get(function)
        if not callable(fn):
            signature = get_exercise(exercise).signature.split(" ->")[0].replace(exercise, function, 1)
            outcome["error"] = f"no function `{function}`: define `def {signature}`"
        else:
            results = evaluate(exercise, fn, seed)
            for r in results:  # an allocation refused under the limit says so, where the error itself does not
                r.problems = [_memory_limit_named(p, memory_mb) for p in r.problems]
            outcome["results"] = [{"number": r.number, "group": r.group, "status": r.status, "hint": r.hint, "problems": r.problems,
                                   "nonfinite": r.nonfinite, "expected": r.expected, "actual": r.actual} for r in results]
    except _Unreadable as exc:
        outcome["error"] = str(exc)
    except BaseException as exc:  # import-time errors of the submission, SystemExit, MemoryError
        lines = str(exc).strip().splitlines()
        why = f": {lines[0][:200]}" if lines else f" (the memory limit, {memory_mb} MiB)" if isinstance(exc, MemoryError) else ""
        outcome["error"] = f"raised {type(exc).__name__} while loading{why}"
    with contextlib.suppress(OSError):  # a stderr already at the file limit cannot take the rest
        sys.stdout.flush()
        sys.stderr.flush()
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump(outcome, fh)
    os._exit(0)  # skip interpreter teardown: nothing the submission registered runs after this


# --- the parent: one child per submission, rows for the gradebook ---------------------------------

def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["lossbench.exercises.grading", "nbformat"])  # nbformat, when installed: notebooks
    return ctx


def _run_child(ctx: Any, path: Path, exercise: str, function: str, seed: int, timeout: float,
               memory_mb: int) -> tuple[dict[str, Any] | None, str, str | None]:
    """Run one submission; returns (outcome or None, text on stderr, failure reason or None)."""
    with tempfile.TemporaryDirectory(prefix="lossbench-grade-") as tmp:
        stderr_path, result_path = os.path.join(tmp, "stderr.txt"), os.path.join(tmp, "result.json")
        stage_path = os.path.join(tmp, "stage.txt")
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(str(path.resolve()), exercise, function, seed, timeout, memory_mb,
                                                 stderr_path, result_path, send, stage_path), daemon=True)
        proc.start()
        send.close()
        try:
            if receive.poll(STARTUP_LIMIT_S):  # a child that never gets going is judged like one that hangs
                proc.join(timeout)
        finally:  # Ctrl-C too: the child has its own process group, which the terminal's Ctrl-C does not reach
            receive.close()
            timed_out = proc.is_alive()
            try:  # always: what the submission started in the background (subprocess.Popen) must not outlive it
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # nothing left in the group, or a child that never set it up
                if timed_out:
                    proc.kill()
        failure = None
        if timed_out:
            proc.join()
            stage = Path(stage_path).read_text(encoding="utf-8") if os.path.exists(stage_path) else ""
            failure = f"timed out after {timeout:g} s{', ' + stage if stage else ''}"
        stderr = _read_ends(stderr_path, STDERR_READ_BYTES)
        outcome = None
        if os.path.exists(result_path):
            try:
                outcome = json.loads(Path(result_path).read_text())
            except json.JSONDecodeError:
                outcome = None
        if outcome is None and failure is None:
            code = proc.exitcode
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                why = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (memory or time limit?)",
                       "SIGSEGV": " (segmentation fault)"}.get(name, "")
                failure = f"crashed: killed by {name}{why}"
            else:
                last = stderr.strip().splitlines()[-1][:200] if stderr.strip() else "no output"
                failure = f"crashed: exit code {code}: {last}"
        return outcome, stderr, failure


def _read_ends(path: str, size: int) -> str:
    r"""The text of a file, or of its first and last ``size`` bytes when it is longer; "" when there is none.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt") as fh:
    ...     _ = fh.write("first line\n" + "x" * 100 + "\nlast line\n"); fh.flush()
    ...     text = _read_ends(fh.name, 16)
    >>> text.splitlines()[0], text.splitlines()[-1], len(text)  # 16 bytes, a line break, 16 bytes
    ('first line', 'last line', 33)
    """
    if not os.path.exists(path):
        return ""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size <= 2 * size:
            return fh.read().decode(errors="replace")
        head = fh.read(size)
        fh.seek(-size, os.SEEK_END)
        return (head + b"\n" + fh.read(size)).decode(errors="replace")


def _rows(name: str, exercise: str, seed: int, sizes: dict[str, int], outcome: dict[str, Any] | None, stderr: str,
          failure: str | None) -> list[dict[str, Any]]:
    """The gradebook rows of one submission: one per case group and a total."""
    results = (outcome or {}).get("results", [])
    reasons: list[str] = []
    if failure:
        reasons.append(failure)
    if outcome and outcome.get("error"):
        reasons.append(outcome["error"])
    if results and all(r["status"] == "not attempted" for r in results):
        reasons.append("not attempted")
    library = sorted({p for r in results if r["status"] == "library" for p in r["problems"] if p.startswith("calls ")})
    if library:
        reasons.append(library[0].split(":")[0].replace("calls ", "calls the library: "))
    nonfinite = sum(r["nonfinite"] for r in results)
    if nonfinite:
        reasons.append(f"NaN/inf output in {nonfinite} case{'s' if nonfinite > 1 else ''}")
    errors = sorted({p for r in results if r["status"] == "error" for p in r["problems"]})
    if errors:
        reasons.append(errors[0])
    failing = [r for r in results if r["status"] != "pass"]
    if failing and not reasons:  # nothing wrong with the submission as a whole: which cases fail, and why
        reasons.append(f"{len(failing)} of {len(results)} cases fail: {_why_cases(failing)}")
    if stderr.strip():
        reasons.append(f"wrote to stderr: {stderr.strip().splitlines()[0][:120]}")
    if outcome and outcome.get("notes"):
        reasons.append("; ".join(outcome["notes"]))
    rows = []
    for group, size in sizes.items():
        in_group = [r for r in results if r["group"] == group]
        total = len(in_group) or size  # a submission that never ran still owes every case
        passed = sum(r["status"] == "pass" for r in in_group)
        why = _why_cases([r for r in in_group if r["status"] != "pass"]) if in_group else "; ".join(reasons)
        rows.append({"submission": name, "exercise": exercise, "seed": seed, "group": group, "passed": passed, "cases": total,
                     "score": passed / total, "reason": why})
    passed = sum(row["passed"] for row in rows)
    cases = sum(row["cases"] for row in rows)
    rows.append({"submission": name, "exercise": exercise, "seed": seed, "group": "total", "passed": passed, "cases": cases,
                 "score": passed / cases, "reason": "; ".join(reasons)})
    return rows


def _why_cases(failing: list[dict[str, Any]]) -> str:
    """Why these cases fail: their hints, or where none has one, the first case's value against the expected one."""
    hints = list(dict.fromkeys(r["hint"] for r in failing if r["hint"]))
    return "; ".join(hints) or (_case_failure(failing[0]) if failing else "")


def _case_failure(result: dict[str, Any]) -> str:
    """Why one case failed, for a case with no hint: its value against the expected one, and its first problem.

    >>> _case_failure({"number": 1, "group": "basic", "expected": "1.14", "actual": "-0.94", "problems": ["the gradient differs"]})
    'case 1 (basic): expected 1.14, got -0.94; the gradient differs'
    """
    what = f"case {result['number']} ({result['group']}): expected {result['expected']}, got {result['actual']}"
    return "; ".join([what, *result["problems"][:1]])


def _group_sizes(exercise: str) -> dict[str, int]:
    """How many cases each group of an exercise has, in the order the cases come."""
    sizes: dict[str, int] = {}
    for case in get_exercise(exercise).make_cases(0):
        sizes[case.group] = sizes.get(case.group, 0) + 1
    return sizes


def grade(submissions: Path | str, exercise: str, timeout: float = DEFAULT_TIMEOUT_S,
          memory_mb: int = DEFAULT_MEMORY_MB, function: str | None = None, seed: int | None = None,
          progress: bool = True) -> pd.DataFrame:
    r"""Grade every `.py`/`.ipynb` file in `submissions` on `exercise`; returns the gradebook frame.

    The frame has the columns `submission, exercise, seed, group, passed, cases, score, reason`:
    a row per case group and a `total` row per submission, in submission order. The score of
    a row is passed / cases. `seed` draws the generated cases; None (the default) draws a fresh
    one (:func:`fresh_seed`), never 0, the seed students self-check with. Ctrl-C raises
    :class:`GradingInterrupted`, which holds the gradebook of the submissions graded until then.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "ada.py").write_text("import torch\n"
    ...                                           "def mse(z, y):\n"
    ...                                           "    return ((torch.sigmoid(z) - y) ** 2).sum()\n")
    ...     book = grade(tmp, "mse", timeout=30, seed=90210, progress=False)
    >>> [(row.group, row.passed, row.cases) for row in book.itertuples()]  # doctest: +NORMALIZE_WHITESPACE
    [('basic', 0, 1), ('multi-label', 0, 1), ('soft targets', 0, 1), ('float32', 0, 1), ('stability', 0, 1),
     ('total', 0, 5)]
    >>> book.reason[0]
    'about 12 times the expected value: sum instead of mean?'
    """
    import pandas as pd
    from tqdm.auto import tqdm

    get_exercise(exercise)  # an unknown name is a ValueError listing the valid ones
    if not 0 < timeout <= MAX_TIMEOUT_S:  # also rejects nan
        raise ValueError(f"Expected `timeout` to be a positive number of seconds, at most {MAX_TIMEOUT_S:g} (a day), "
                         f"but got {timeout!r}.")
    whole = isinstance(memory_mb, numbers.Integral) and not isinstance(memory_mb, bool)
    if not (whole and MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB):  # a whole number: setrlimit takes no float
        raise ValueError(f"Expected `memory_mb` to be a whole number of MiB, at least {MIN_MEMORY_MB} (the checker's own cases need "
                         f"some of it) and at most {MAX_MEMORY_MB} (1 TiB), but got {memory_mb!r}.")
    memory_mb = int(memory_mb)  # numpy's integers too
    seed = fresh_seed() if seed is None else seed
    check_seed(seed)  # not in each child: a seed torch cannot take is the grader's mistake, not the students'
    if function is not None and not (function.isidentifier() and not keyword.iskeyword(function)):
        raise ValueError(f"Expected `function` to be a Python function name, such as {exercise}, but got {function!r}.")
    files = find_submissions(submissions)
    function = function or exercise
    sizes = _group_sizes(exercise)  # {group: number of cases}, in case order
    ctx = _context()
    rows: list[dict[str, Any]] = []
    try:
        for path in tqdm(files, desc=f"grading {exercise}", unit="submission", disable=not progress):
            outcome, stderr, failure = _run_child(ctx, path, exercise, function, seed, timeout, memory_mb)
            rows += _rows(path.name, exercise, seed, sizes, outcome, stderr, failure)
    except KeyboardInterrupt:  # the grades so far are kept: a class of 200 need not be graded again from the start
        raise GradingInterrupted(pd.DataFrame(rows, columns=COLUMNS), len(files)) from None
    return pd.DataFrame(rows, columns=COLUMNS)


def write_gradebook(frame: pd.DataFrame, path: Path | str) -> Path:
    """Write the gradebook CSV atomically (a temporary file renamed into place); returns the path.

    An existing file at `path` is replaced; if writing fails, the temporary file is removed.

    >>> import pandas as pd, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_gradebook(pd.DataFrame({"submission": ["ada.py"], "score": [1.0]}), Path(tmp) / "g.csv")
    ...     print(path.read_text().strip())
    submission,score
    ada.py,1.0
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fh = tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False,
                                     newline="")
    try:
        with fh:
            frame.to_csv(fh, index=False)
        os.replace(fh.name, target)
    except BaseException:
        os.unlink(fh.name)  # a failed write (target a folder, disk full, Ctrl-C) leaves no temporary file behind
        raise
    return target
