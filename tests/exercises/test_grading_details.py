"""Finer rules of grading: the reasons a gradebook gives, its limits and defaults, and what a graded child process reports."""
from __future__ import annotations

import inspect
import os

import nbformat
import pytest

from lossbench.exercises import grading

RIGHT = """
import torch.nn.functional as F

def {name}(logits, target):
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
"""


# --- grading.py: the reasons of the gradebook rows ----------------------------------------------

def result(number: int, status: str = "pass", group: str = "basic", hint: str | None = None,
           problems: tuple[str, ...] = (), nonfinite: bool = False) -> dict:
    """One case's result as the child sends it back."""
    return {"number": number, "group": group, "status": status, "hint": hint, "problems": list(problems),
            "nonfinite": nonfinite, "expected": "1.00", "actual": "2.00" if status != "pass" else "1.00"}


def total_reason(results: list[dict], stderr: str = "", notes: tuple[str, ...] = ()) -> str:
    outcome = {"error": None, "notes": list(notes), "results": results}
    return grading._rows("ada.py", "bce", 0, {"basic": len(results)}, outcome, stderr, None)[-1]["reason"]


def test_not_attempted_is_the_reason_only_when_no_case_was_attempted():
    # a function that raises NotImplementedError for soft targets only was attempted
    skipped = result(2, "not attempted", problems=("raised NotImplementedError",))
    assert total_reason([result(1, "not attempted"), result(2, "not attempted")]) == "not attempted"
    assert total_reason([result(1), skipped]) == "1 of 2 cases fail: case 2 (basic): expected 1.00, got 2.00; raised NotImplementedError"


def test_a_single_nonfinite_case_is_one_case():
    assert total_reason([result(1), result(2, "fail", nonfinite=True)]) == "NaN/inf output in 1 case"
    assert total_reason([result(1, "fail", nonfinite=True), result(2, "fail", nonfinite=True)]) == "NaN/inf output in 2 cases"


def test_library_and_error_reasons_name_the_first_in_sorted_order_whatever_the_case_order():
    library = [result(1, "library", problems=("calls torch.nn.functional.nll_loss: the library's version",)),
               result(2, "library", problems=("calls torch.nn.functional.cross_entropy: the library's version",))]
    for order in (library, library[::-1]):
        assert total_reason(order) == "calls the library: torch.nn.functional.cross_entropy"
    errors = [result(1, "error", problems=("raised ValueError: shapes",)), result(2, "error", problems=("raised IndexError: dim",))]
    for order in (errors, errors[::-1]):
        assert total_reason(order) == "raised IndexError: dim"


def test_text_on_stderr_is_cut_to_its_first_line_and_120_characters():
    assert total_reason([result(1)], stderr="x" * 300 + "\nsecond line\n") == "wrote to stderr: " + "x" * 120


def test_notes_of_several_cells_are_joined_with_semicolons():
    notes = ("cell 2 raised NameError", "cell 5 raised SystemExit")
    assert total_reason([result(1)], notes=notes) == "cell 2 raised NameError; cell 5 raised SystemExit"


def test_why_cases_gives_each_hint_once_and_otherwise_the_first_case_s_first_problem():
    hinted = [result(1, "fail", hint="sum instead of mean?"), result(2, "fail", hint="sum instead of mean?")]
    assert grading._why_cases(hinted) == "sum instead of mean?"
    plain = [result(3, "fail", problems=("the value differs", "the gradient differs")), result(4, "fail", problems=("dtype",))]
    assert grading._why_cases(plain) == "case 3 (basic): expected 1.00, got 2.00; the value differs"


def test_the_largest_and_smallest_limits_are_accepted(tmp_path):
    # the bounds are inclusive, as the error message ("at least", "at most") says
    for timeout, memory_mb in ((grading.MAX_TIMEOUT_S, grading.MIN_MEMORY_MB), (0.5, grading.MAX_MEMORY_MB)):
        assert grading.grade(tmp_path, "bce", timeout=timeout, memory_mb=memory_mb, progress=False).empty


def test_grade_s_defaults_are_the_documented_ones():
    # a notebook user calls grade() without limits: 60 s and 1024 MiB, as the module docstring and `grade --help` say
    defaults = {name: p.default for name, p in inspect.signature(grading.grade).parameters.items()}
    assert (defaults["timeout"], defaults["memory_mb"], defaults["seed"]) == (60.0, 1024, None)
    assert (grading.DEFAULT_TIMEOUT_S, grading.DEFAULT_MEMORY_MB) == (60.0, 1024)


def _allocate_under_limits(memory_mb: int, conn) -> None:
    """In a forked process: map 3 GiB of address space (as a CUDA build of torch does), set the limits, try two allocations."""
    import mmap

    import torch

    try:
        reserved = mmap.mmap(-1, 3 * 2**30, prot=0)  # PROT_NONE: address space only, no memory is used
        grading._set_limits(30.0, memory_mb)
        outcomes = []
        for mib in (memory_mb // 2, 2 * memory_mb):
            try:
                torch.empty(mib * 2**20, dtype=torch.uint8)
                outcomes.append("allocated")
            except RuntimeError as err:
                outcomes.append("refused" if "can't allocate memory" in str(err) else str(err))
        reserved.close()
        conn.send(outcomes)
    except BaseException as err:  # said to the test, which would otherwise wait for an answer
        conn.send(repr(err))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the address space from /proc")
def test_the_memory_allowance_is_counted_from_what_the_process_maps_when_it_starts():
    # A CUDA build of torch maps about 3 GiB before a submission runs: a limit on the whole address space of
    # 2 GiB left no room, and every submission, right ones too, failed with MemoryError.
    import multiprocessing

    parent, child = multiprocessing.get_context("fork").Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_allocate_under_limits, args=(512, child))
    proc.start()
    outcomes = parent.recv() if parent.poll(60) else "no answer"
    proc.join(60)
    assert outcomes == ["allocated", "refused"]  # half the allowance fits on top of the 3 GiB, twice it does not


def test_find_submissions_skips_a_folder_named_like_a_submission(tmp_path):
    (tmp_path / "week1.py").mkdir()
    (tmp_path / "ada.py").write_text("")
    assert [p.name for p in grading.find_submissions(tmp_path)] == ["ada.py"]


# --- grading.py: what a child reports, through real child processes ---------------------------

GRADED_AS_LOSS = {  # graded with function="loss"
    "exits0.py": "import os\nos._exit(0)\n",
    "segv.py": "import os, resource, signal\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file\n"
               "os.kill(os.getpid(), signal.SIGSEGV)\n",
    "last_words.py": "import os, sys\nprint('first', file=sys.stderr)\nprint('last words', file=sys.stderr)\n"
                     "sys.stderr.flush()\nos._exit(3)\n",
    "long_error.py": "raise ValueError('x' * 300)\n",
    "missing.py": RIGHT.format(name="bce"),
    "limits.py": "import os, resource, sys\n"  # the address space left to it, to the nearest 128 MiB
                 "from lossbench.exercises.grading import _address_space\n"
                 "spare = (resource.getrlimit(resource.RLIMIT_AS)[0] - _address_space()) >> 20\n"
                 "print(f'stdout {os.readlink(\"/proc/self/fd/1\")}, {round(spare / 128) * 128} MiB to spare', file=sys.stderr)\n"
                 + RIGHT.format(name="loss"),
}


@pytest.fixture(scope="module")
def loss_gradebook(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("graded_as_loss")
    for name, source in GRADED_AS_LOSS.items():
        (folder / name).write_text(source)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline\n!pip install torch\n" + RIGHT.format(name="loss")),
                nbformat.v4.new_raw_cell("not Python: a raw cell is not run")]
    nbformat.write(nb, folder / "magic.ipynb")
    frame = grading.grade(folder, "bce", timeout=10.0, function="loss", seed=3, progress=False)
    totals = frame[frame.group == "total"]
    return dict(zip(totals.submission, zip(totals.score, totals.reason)))


@pytest.mark.parametrize("submission, reason", [
    ("exits0.py", "crashed: exit code 0: no output"),  # a clean exit without a result is a crash too
    ("segv.py", "crashed: killed by SIGSEGV (segmentation fault)"),
    ("last_words.py", "crashed: exit code 3: last words; wrote to stderr: first"),  # the last line says why it died
    ("long_error.py", "raised ValueError while loading: " + "x" * 200),
    ("missing.py", "no function `loss`: define `def loss(logits, target)`"),  # the name graded, not the exercise's
])
def test_a_failing_child_gets_zero_and_its_reason(loss_gradebook, submission, reason):
    assert loss_gradebook[submission] == (0.0, reason)


@pytest.mark.skipif(not os.path.exists("/proc/self/fd/1"), reason="reads where stdout goes from /proc")
def test_a_child_s_stdout_goes_to_dev_null_under_the_default_memory_limit(loss_gradebook):
    # a student's prints must not reach the instructor's terminal; no memory_mb given: the default, 1024 MiB on top
    # of what the process held when it started (torch's libraries: 0.6 GiB of a CPU build, 3 GiB of a CUDA build)
    assert loss_gradebook["limits.py"] == (1.0, "wrote to stderr: stdout /dev/null, 1024 MiB to spare")


def test_a_notebook_s_magics_and_raw_cells_are_not_run_as_python(loss_gradebook):
    assert loss_gradebook["magic.ipynb"] == (1.0, "")


def test_read_ends_reads_a_file_of_up_to_twice_the_size_whole_and_a_longer_one_as_its_two_ends(tmp_path):
    # rule: the first and the last `size` bytes cover a file of up to 2 * size bytes, which comes back whole, nothing doubled
    from lossbench.exercises.grading import _read_ends

    path = tmp_path / "stderr.txt"
    text = "".join(f"line {i}\n" for i in range(4))  # 28 bytes
    path.write_text(text)
    assert _read_ends(str(path), 20) == text and _read_ends(str(path), 14) == text
    path.write_text(text + "!")  # 29 bytes: more than 2 * 14
    assert _read_ends(str(path), 14) == text[:14] + "\n" + (text + "!")[-14:]
