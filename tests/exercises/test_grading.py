"""Grading a folder of submissions: each in a limited child process, a row per case group, never stopping."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from lossbench.exercises import cases, grading
from lossbench.exercises.notebooks import solution_notebooks

TIMEOUT_S = 10.0  # a right submission takes well under a second once the forkserver holds torch

SUBMISSIONS = {
    "right.py": """
import torch.nn.functional as F

def bce(logits, target):
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
""",
    "wrong.py": """
import torch

def bce(logits, target):  # sums instead of averaging, and overflows at large logits
    p = torch.sigmoid(logits)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).sum()
""",
    "raises.py": """
def bce(logits, target):
    raise ValueError("I give up")
""",
    "loops.py": """
def bce(logits, target):
    while True:
        pass
""",
    "library.py": """
from torch.nn.functional import binary_cross_entropy_with_logits as f

def bce(logits, target):
    return f(logits, target)
""",
    "noisy.py": """
import sys
import torch.nn.functional as F

def bce(logits, target):
    print("debug: computing", file=sys.stderr)
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
""",
    "hog.py": """
import torch

def bce(logits, target):
    return torch.ones(2**29, dtype=torch.float64).sum()  # 4 GiB: over the default allowance of 1 GiB
""",
    "crash.py": """
import os
os._exit(3)
""",
    "missing.py": """
def binary_cross_entropy(logits, target):
    return logits.mean()
""",
    "spawns.py": """
import subprocess
from pathlib import Path
import torch.nn.functional as F

sleeper = subprocess.Popen(["sleep", "77"])  # a background process that would outlive the grading
Path(__file__).with_suffix(".pid").write_text(str(sleeper.pid))

def bce(logits, target):
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
""",
}


@pytest.fixture(scope="module")
def submissions_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("submissions")


@pytest.fixture(scope="module")
def gradebook(submissions_folder):
    folder = submissions_folder
    for name, source in SUBMISSIONS.items():
        (folder / name).write_text(source)
    shutil.copy(solution_notebooks()[0], folder / "notebook.ipynb")  # losses_solutions defines bce
    exits = nbformat.v4.new_notebook()
    exits.cells = [nbformat.v4.new_code_cell(SUBMISSIONS["right.py"]), nbformat.v4.new_code_cell("exit()")]
    nbformat.write(exits, folder / "exits.ipynb")
    (folder / "notes.txt").write_text("not a submission")
    start = time.perf_counter()
    frame = grading.grade(folder, "bce", timeout=TIMEOUT_S, progress=False)
    return frame, time.perf_counter() - start


def total(frame: pd.DataFrame, submission: str) -> pd.Series:
    rows = frame[(frame.submission == submission) & (frame.group == "total")]
    assert len(rows) == 1
    return rows.iloc[0]


def test_every_submission_gets_a_row_per_group_and_a_total_in_time(gradebook):
    frame, seconds = gradebook
    assert list(frame.columns) == ["submission", "exercise", "seed", "group", "passed", "cases", "score", "reason"]
    names = sorted(list(SUBMISSIONS) + ["notebook.ipynb", "exits.ipynb"])
    assert frame.submission.unique().tolist() == names  # sorted, notes.txt ignored
    groups = ["basic", "multi-label", "soft targets", "float32", "stability", "logit exactly 0", "total"]
    for name in names:
        rows = frame[frame.submission == name]
        assert rows.group.tolist() == groups
        assert rows.cases.tolist() == [1, 1, 1, 1, 2, 1, 7]  # a submission that never ran still owes every case
        assert rows.passed.iloc[-1] == rows.passed.iloc[:-1].sum()
    assert seconds < TIMEOUT_S + 40  # the hanging submission costs one timeout, the others about a second each


def test_right_answers_score_full_marks(gradebook):
    frame, _ = gradebook
    for name in ("right.py", "notebook.ipynb"):
        row = total(frame, name)
        assert (row.passed, row.score, row.reason) == (7, 1.0, "")


def test_a_wrong_answer_scores_its_passed_cases_with_hints(gradebook):
    frame, _ = gradebook
    row = total(frame, "wrong.py")
    assert row.score == 0.0 and row.reason == "NaN/inf output in 2 cases"
    basic = frame[(frame.submission == "wrong.py") & (frame.group == "basic")].iloc[0]
    assert basic.reason == "about 12 times the expected value: sum instead of mean?"


def test_a_wrong_answer_without_hints_says_which_case_fails_and_how():
    outcome = {"results": [
        {"number": 1, "group": "basic", "status": "pass", "hint": None, "problems": [], "nonfinite": False, "expected": "1", "actual": "1"},
        {"number": 2, "group": "basic", "status": "fail", "hint": None, "problems": ["the gradient differs from the reference's"],
         "nonfinite": False, "expected": "1.14", "actual": "-0.94"},
    ]}  # fmt: skip
    rows = grading._rows("neg.py", "bce", 0, {"basic": 2}, outcome, "", None)
    assert [r["reason"] for r in rows] == [
        "case 2 (basic): expected 1.14, got -0.94; the gradient differs from the reference's",
        "1 of 2 cases fail: case 2 (basic): expected 1.14, got -0.94; the gradient differs from the reference's",
    ]
    assert rows[-1]["score"] == 0.5
    noisy = grading._rows("neg.py", "bce", 0, {"basic": 2}, outcome, "debug: here\n", None)[-1]["reason"]
    assert noisy == rows[-1]["reason"] + "; wrote to stderr: debug: here"  # the cases are still named


@pytest.mark.parametrize("submission, reason", [
    ("raises.py", "raised ValueError: I give up"),
    ("loops.py", f"timed out after {TIMEOUT_S:g} s, while checking the function"),
    ("library.py", "calls the library: torch.nn.functional.binary_cross_entropy_with_logits"),
    ("crash.py", "crashed: exit code 3: no output"),
    ("missing.py", "no function `bce`: define `def bce(logits, target)`"),
])
def test_failures_give_zero_and_the_reason(gradebook, submission, reason):
    frame, _ = gradebook
    row = total(frame, submission)
    assert row.score == 0.0 and row.reason == reason


def test_a_notebook_that_calls_exit_in_a_later_cell_keeps_its_function(gradebook):
    frame, _ = gradebook
    row = total(frame, "exits.ipynb")
    assert (row.score, row.reason) == (1.0, "cell 2 raised SystemExit")


def _running(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie (killed, waiting for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_process_a_submission_starts_does_not_outlive_its_grading(gradebook, submissions_folder):
    frame, _ = gradebook
    assert total(frame, "spawns.py").score == 1.0
    pid = int((submissions_folder / "spawns.pid").read_text())
    deadline = time.monotonic() + 5
    while _running(pid) and time.monotonic() < deadline:  # SIGKILL is sent before grade returns; allow the kernel a moment
        time.sleep(0.05)
    assert not _running(pid)


def test_the_memory_limit_stops_a_hog_without_stopping_the_batch(gradebook):
    frame, _ = gradebook
    row = total(frame, "hog.py")
    assert row.score == 0.0
    assert row.reason.startswith("raised RuntimeError:") and "can't allocate memory" in row.reason
    assert "(the memory limit, 1024 MiB)" in row.reason  # the error alone does not say which limit


def test_writing_to_stderr_is_reported_but_costs_no_points(gradebook):
    frame, _ = gradebook
    row = total(frame, "noisy.py")
    assert row.score == 1.0 and row.reason == "wrote to stderr: debug: computing"


def test_a_timeout_fills_every_group_row_with_the_reason(gradebook):
    frame, _ = gradebook
    rows = frame[frame.submission == "loops.py"]
    assert rows.reason.unique().tolist() == [f"timed out after {TIMEOUT_S:g} s, while checking the function"]
    assert rows.passed.sum() == 0


def test_the_gradebook_round_trips_through_csv(gradebook, tmp_path):
    frame, _ = gradebook
    path = grading.write_gradebook(frame, tmp_path / "out" / "grades.csv")
    back = pd.read_csv(path, keep_default_na=False)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert [p.name for p in path.parent.iterdir()] == ["grades.csv"]  # no temporary file left


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    (tmp_path / "grades.csv").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(IsADirectoryError):
        grading.write_gradebook(pd.DataFrame({"submission": ["ada.py"], "score": [1.0]}), tmp_path / "grades.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["grades.csv"]


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^Expected `submissions` to be a folder of .py or .ipynb files"):
        grading.grade(tmp_path / "absent", "bce")
    for timeout in (0, float("nan"), float("inf"), 1e12):
        with pytest.raises(ValueError, match=r"^Expected `timeout` to be a positive number of seconds, at most 86400 "
                                             r"\(a day\), but got "):
            grading.grade(tmp_path, "bce", timeout=timeout)
    for memory_mb in (255, 2**40, 2048.0, True):  # a float reached setrlimit in every child: all scored 0
        with pytest.raises(ValueError, match=r"^Expected `memory_mb` to be a whole number of MiB, at least 256 .* and at most 1048576"):
            grading.grade(tmp_path, "bce", memory_mb=memory_mb)
    with pytest.raises(ValueError, match=r"^Expected `name` to be one of"):
        grading.grade(tmp_path, "bcee")
    with pytest.raises(ValueError, match=r"^Expected `seed` to be a whole number from 0 to 9223372036854775807"):
        grading.grade(tmp_path, "bce", seed=-1)
    for function in ("x y", "", "def", "bce(z, y)"):
        with pytest.raises(ValueError, match=r"^Expected `function` to be a Python function name, such as bce, but got "):
            grading.grade(tmp_path, "bce", function=function)
    assert grading.grade(tmp_path, "bce", progress=False).empty  # an empty folder is an empty gradebook


def test_a_notebook_s_own_failing_checks_of_other_exercises_are_not_reasons(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Exercises"),
        nbformat.v4.new_code_cell(SUBMISSIONS["right.py"]),
        nbformat.v4.new_code_cell("from lossbench.exercises import check\ncheck('mse', lambda p, y: p.sum())  # not done yet"),
        nbformat.v4.new_code_cell("undefined_name + 1"),
    ]
    nbformat.write(nb, tmp_path / "student.ipynb")
    row = total(grading.grade(tmp_path, "bce", timeout=TIMEOUT_S, progress=False), "student.ipynb")
    assert (row.score, row.reason) == (1.0, "cell 4 raised NameError")


@pytest.mark.parametrize("drawn, seed", [(0, 1), (cases.SEED_MAX - 1, cases.SEED_MAX)])
def test_a_fresh_grading_seed_is_never_the_self_checks_0(monkeypatch, drawn, seed):
    monkeypatch.setattr(cases.secrets, "randbelow", lambda n: drawn if n == cases.SEED_MAX else -1)
    assert cases.fresh_seed() == seed  # randbelow(SEED_MAX) gives 0 to SEED_MAX - 1: every seed but 0


def test_grade_records_the_seed_it_was_given_or_drew(tmp_path, monkeypatch):
    (tmp_path / "ada.py").write_text(SUBMISSIONS["right.py"])
    assert grading.grade(tmp_path, "bce", timeout=TIMEOUT_S, seed=7, progress=False).seed.unique().tolist() == [7]
    monkeypatch.setattr(grading, "fresh_seed", lambda: 90210)
    assert grading.grade(tmp_path, "bce", timeout=TIMEOUT_S, progress=False).seed.unique().tolist() == [90210]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_ctrl_c_while_a_submission_runs_kills_it_and_keeps_the_grades_so_far(tmp_path, monkeypatch):
    import multiprocessing.process

    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "a.py").write_text(SUBMISSIONS["right.py"])
    pid_file = tmp_path / "pid"
    # the pid is written whole, then renamed into place: the file never exists empty, even if b.py is killed mid-write
    (folder / "b.py").write_text(f"import os, time\nopen({str(pid_file)!r} + '.part', 'w').write(str(os.getpid()))\n"
                                 f"os.replace({str(pid_file)!r} + '.part', {str(pid_file)!r})\ntime.sleep(600)\n")
    join = multiprocessing.process.BaseProcess.join
    joins = []

    def join_or_ctrl_c(self, timeout=None):
        joins.append(self)
        if len(joins) == 1:  # a.py: graded as usual
            return join(self, timeout)
        deadline = time.monotonic() + 120  # generous: a busy machine may take long to start b.py
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt  # as Ctrl-C would, while the parent waits for b.py

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "join", join_or_ctrl_c)
    with pytest.raises(grading.GradingInterrupted) as stopped:
        grading.grade(folder, "bce", timeout=TIMEOUT_S, seed=3, progress=False)
    assert stopped.value.total == 2 and stopped.value.gradebook.submission.unique().tolist() == ["a.py"]
    assert isinstance(stopped.value, KeyboardInterrupt)  # what Ctrl-C is, to a caller that does not know grading
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 60
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)  # killed, not left sleeping for ten minutes


def test_an_error_without_a_message_while_loading_says_no_more_than_its_type_or_the_memory_limit(tmp_path):
    (tmp_path / "hog.py").write_text("buffer = bytearray(10**12)  # a terabyte: refused under the address-space limit\n")
    (tmp_path / "quiet.py").write_text("raise ValueError()\n")
    (tmp_path / "hungry.py").write_text("def bce(logits, target):\n    return bytearray(10**12)\n")  # in the function
    (tmp_path / "wordy.py").write_text("raise ValueError('first line\\nsecond line')\n")
    frame = grading.grade(tmp_path, "bce", timeout=TIMEOUT_S, memory_mb=2048, seed=1, progress=False)
    reasons = dict(zip(frame[frame.group == "total"].submission, frame[frame.group == "total"].reason))
    assert reasons == {"hog.py": "raised MemoryError while loading (the memory limit, 2048 MiB)",
                       "hungry.py": "raised MemoryError (the memory limit, 2048 MiB)",
                       "quiet.py": "raised ValueError while loading", "wordy.py": "raised ValueError while loading: first line"}


def test_a_submission_cannot_flood_stderr_past_the_file_limit_and_its_grading_reads_only_the_ends(tmp_path, monkeypatch):
    # a submission writing hundreds of MB to stderr filled the disk and the grader's memory with it
    assert grading.FILE_LIMIT_MB == 64  # the child process reads the module's own value, not a monkeypatched one
    (tmp_path / "flood.py").write_text(
        "import os\nos.write(2, b'first words\\n')\n"
        "for _ in range(66):\n    os.write(2, b'x' * 2**20)\n")  # 66 MiB: the 65th is refused
    (tmp_path / "after.py").write_text(  # a submission that catches the error still has its function graded
        SUBMISSIONS["right.py"] + "\nimport sys\ntry:\n    sys.stderr.write('y' * 65 * 2**20); sys.stderr.flush()\n"
                                  "except OSError as err:\n    pass\n")
    read = []
    real_read_ends = grading._read_ends
    monkeypatch.setattr(grading, "_read_ends", lambda path, size: read.append(os.path.getsize(path)) or real_read_ends(path, size))
    frame = grading.grade(tmp_path, "bce", timeout=TIMEOUT_S, seed=1, progress=False)
    reasons = dict(zip(frame[frame.group == "total"].submission, frame[frame.group == "total"].reason))
    assert reasons["flood.py"] == ("raised OSError while loading: [Errno 27] File too large; wrote to stderr: first words")
    assert total(frame, "after.py").score == 1.0
    assert max(read) <= 64 * 2**20  # no file past the limit
    assert len(grading._read_ends(str(tmp_path / "flood.py"), 8)) <= 8 + 1 + 8


def test_a_notebook_without_cell_ids_is_graded_without_nbformat_s_warning_blamed_on_the_student(tmp_path):
    # nbformat warns (MissingIDFieldWarning) on a 4.5 notebook whose cells have no id: the grader's text, not the student's
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SUBMISSIONS["right.py"])]
    raw = json.loads(nbformat.writes(nb))
    for cell in raw["cells"]:
        del cell["id"]
    (tmp_path / "old.ipynb").write_text(json.dumps(raw))
    frame = grading.grade(tmp_path, "bce", timeout=TIMEOUT_S, seed=1, progress=False)
    assert (total(frame, "old.ipynb").score, total(frame, "old.ipynb").reason) == (1.0, "")


@pytest.mark.parametrize("content, why", [
    ('{"hello": 1}', "could not be read as a notebook (ValidationError: "),
    ("[1, 2, 3]", "could not be read as a notebook (AttributeError: "),
    ("{not json", "could not be read as a notebook (NotJSONError: Notebook does not appear to be JSON"),
])
def test_a_file_that_is_not_a_notebook_says_so(tmp_path, content, why):
    (tmp_path / "odd.ipynb").write_text(content)
    frame = grading.grade(tmp_path, "bce", timeout=TIMEOUT_S, seed=1, progress=False)
    row = total(frame, "odd.ipynb")
    assert row.score == 0.0 and row.reason.startswith(why), row.reason


def test_a_timeout_says_where_the_time_ran_out(tmp_path):
    # a notebook's hanging cell zeroes every exercise of it: the reason names the cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# bce"), nbformat.v4.new_code_cell(SUBMISSIONS["right.py"]),
                nbformat.v4.new_code_cell("while True:\n    pass")]
    nbformat.write(nb, tmp_path / "stuck.ipynb")
    (tmp_path / "stuck.py").write_text("while True:\n    pass\n")
    frame = grading.grade(tmp_path, "bce", timeout=6.0, seed=1, progress=False)  # loading takes well under that
    assert total(frame, "stuck.ipynb").reason == "timed out after 6 s, in cell 3"
    assert total(frame, "stuck.py").reason == "timed out after 6 s, while loading"
