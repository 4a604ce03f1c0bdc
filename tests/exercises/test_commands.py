"""The exercise commands: `lossbench check` exit codes, `exercises list/export`, `grade` to a CSV."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from lossbench.cli import main as cli_main


def main(argv: list[str]) -> int:
    """The command line's exit code, whether argparse exits (SystemExit) or main returns it."""
    try:
        return cli_main(argv)
    except SystemExit as done:
        return done.code

RIGHT = """
import torch.nn.functional as F

def bce(logits, target):
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
"""
NAIVE = """
import torch

def bce(logits, target):
    p = torch.sigmoid(logits)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
"""


def test_check_exits_0_when_every_case_passes(student_dir, capsys):
    (student_dir / "student_right.py").write_text(RIGHT)
    assert main(["check", "bce", "student_right:bce"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "bce: 7 of 7 cases pass"


def test_check_exits_1_and_prints_the_report_when_a_case_fails(student_dir, capsys):
    (student_dir / "student_naive.py").write_text(NAIVE)
    assert main(["check", "bce", "student_naive:bce"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "bce: 5 of 7 cases pass"
    assert "hint: NaN/inf at large logits: use log-sigmoid" in out


def test_check_finds_a_module_in_a_package_of_the_current_directory(student_dir, capsys):
    (student_dir / "student_pkg").mkdir()
    (student_dir / "student_pkg" / "__init__.py").write_text("")
    (student_dir / "student_pkg" / "losses.py").write_text(RIGHT)
    assert main(["check", "bce", "student_pkg.losses:bce"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["check", "bcee", "student_right:bce"],
     "lossbench check: error: Expected EXERCISE to be one of 'softmax_ce', 'bce', 'bce_probs', 'mse', 'dlogits', "
     "'accuracy_multi', 'best_threshold', but got 'bcee'. List them with `lossbench exercises list`."),
    (["check", "bce", "student_absent:bce"],
     "lossbench check: error: could not import 'student_absent': ModuleNotFoundError: "
     "No module named 'student_absent'"),
    (["check", "bce", "student_right"],
     "lossbench check: error: Expected the function as package.module:function (e.g. mysolution:bce), "
     "but got 'student_right'."),
    (["check", "bce", "student_right:binary_cross_entropy"],
     "lossbench check: error: module 'student_right' has no 'binary_cross_entropy'; define "
     "`def binary_cross_entropy(...)` in {dir}/student_right.py"),
    (["check", "bce", "student_broken:bce"],
     "lossbench check: error: could not import 'student_broken': SyntaxError: "),  # the rest varies with Python
    (["check", "bce", "student_right:LIMIT"],
     "lossbench check: error: Expected 'student_right:LIMIT' to be a function, but it is of type int."),
])
def test_check_exits_2_with_one_line_for_usage_errors(student_dir, capsys, argv, message):
    (student_dir / "student_right.py").write_text(RIGHT + "\nLIMIT = 3\n")
    (student_dir / "student_broken.py").write_text("def bce(logits, target) return 0\n")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message.format(dir=student_dir))
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


@pytest.mark.parametrize("call, code", [("sys.exit(5)", "5"), ("sys.exit()", "None"), ("exit('bye')", "bye")])
def test_check_reports_a_module_that_exits_while_imported_as_a_usage_error(student_dir, capsys, call, code):
    (student_dir / "student_exits.py").write_text(f"import sys\n{call}\n" + RIGHT)
    assert main(["check", "bce", "student_exits:bce"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"lossbench check: error: could not import 'student_exits': SystemExit: {code}; the module "
                            "calls sys.exit() while it is imported: move that call under "
                            "`if __name__ == \"__main__\":`\n")


def test_check_lets_ctrl_c_while_importing_interrupt(student_dir, capsys):
    (student_dir / "student_interrupted.py").write_text("raise KeyboardInterrupt\n" + RIGHT)
    assert main(["check", "bce", "student_interrupted:bce"]) == 130
    assert capsys.readouterr().err == "lossbench check: interrupted\n"


def test_exercises_list_prints_a_line_per_exercise(capsys):
    assert main(["exercises", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["softmax_ce", "bce", "bce_probs", "mse", "dlogits",
                                                   "accuracy_multi", "best_threshold"]
    assert lines[1].split(None, 1)[1].startswith("bce(logits, target) -> scalar tensor")


@pytest.mark.parametrize("flavor", ["plain", "nbgrader", "otter"])
def test_exercises_export_writes_the_flavor(tmp_path, capsys, flavor):
    assert main(["exercises", "export", "--flavor", flavor, str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [f"wrote {tmp_path / 'losses.ipynb'}",
                                                        f"wrote {tmp_path / 'thresholds.ipynb'}"]
    nb = nbformat.read(tmp_path / "losses.ipynb", as_version=4)
    nbformat.validate(nb)
    sources = [c.source for c in nb.cells]
    if flavor == "plain":
        assert 'report("bce", bce)' in sources
    elif flavor == "nbgrader":
        assert any("nbgrader" in c.metadata for c in nb.cells)
    else:
        assert sources[0].startswith("# ASSIGNMENT CONFIG")


def test_exercises_export_rejects_an_unknown_flavor_and_a_missing_source(tmp_path, capsys):
    assert main(["exercises", "export", "--flavor", "moodle", str(tmp_path)]) == 2
    assert main(["exercises", "export", "--flavor", "plain", "--source", str(tmp_path), str(tmp_path / "o")]) == 2
    assert "Expected --source to be a folder holding *_solutions.ipynb notebooks" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # the wrong source was found before OUTDIR was made


def test_exercises_export_to_an_empty_name_is_a_usage_error_not_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["exercises", "export", "--flavor", "plain", ""]) == 2
    assert "Expected OUTDIR to be a path, but got '' (see `lossbench exercises export --help`)." in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_check_help_names_every_verdict_a_case_can_get(capsys):
    assert main(["check", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for label in ("pass", "FAIL", "ERROR", "LIBRARY", "not attempted"):
        assert label in text


def test_grade_draws_no_progress_bar_into_a_file(tmp_path, capsys):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "a_right.py").write_text(RIGHT)
    assert main(["grade", str(folder), "--exercise", "bce", "--timeout", "30", "--out", str(tmp_path / "g.csv")]) == 0
    assert "grading" not in capsys.readouterr().err  # stderr is not a terminal here


@pytest.mark.parametrize("target, fix", [
    ("./student_path.py:bce", "write student_path:bce (no folder separators and no .py)"),
    ("student_path.py:bce", "write student_path:bce (no folder separators and no .py)"),
    ("hw/student_path.py:bce", "write hw.student_path:bce (no folder separators and no .py)"),
])
def test_check_given_a_file_path_says_how_to_name_the_module(student_dir, capsys, target, fix):
    (student_dir / "student_path.py").write_text(RIGHT)
    assert main(["check", "bce", target]) == 2
    assert_one_line_error(capsys, "check", f"but got the file path {target!r}: {fix}")


def test_check_of_a_file_hidden_by_an_installed_module_says_to_rename_it(student_dir, capsys):
    import typing

    (student_dir / "typing.py").write_text(RIGHT)  # `import typing` finds Python's own, imported long before
    assert main(["check", "bce", "typing:bce"]) == 2
    assert_one_line_error(capsys, "check", f"your typing.py is hidden: 'typing' is the name of an installed module "
                                           f"({typing.__file__}), which Python imports instead; rename your file "
                                           "(e.g. typing_solution.py) and pass typing_solution:bce")


def test_grade_writes_the_gradebook_and_prints_the_totals(tmp_path, capsys):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "a_right.py").write_text(RIGHT)
    (folder / "b_naive.py").write_text(NAIVE)
    out = tmp_path / "grades.csv"
    assert main(["grade", str(folder), "--exercise", "bce", "--timeout", "30", "--out", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["submission  score  reason", "a_right.py   1.00  ", "b_naive.py   0.71  NaN/inf output in 2 cases"]
    assert lines[3] == f"wrote {out} (14 rows: a row per case group and a total per submission)"
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame[frame.group == "total"].score.tolist() == [1.0, 5 / 7]
    seed = frame.seed.iloc[0]
    assert seed > 0 and (frame.seed == seed).all()  # one fresh seed for the whole class, never the self-check's 0
    assert lines[4:] == [f"graded with seed {seed}; `--seed {seed}` grades on the same cases again"]


def test_grade_without_a_seed_grades_on_the_cases_of_the_seed_it_draws_and_prints(tmp_path, monkeypatch, capsys):
    from lossbench.exercises import grading
    from lossbench.exercises.catalog import get_exercise

    folder = tmp_path / "submissions"
    folder.mkdir()
    seen = tmp_path / "seen.txt"  # the submission writes down the logits of every case it is called on
    (folder / "ada.py").write_text(RIGHT + f"""
_right = bce

def bce(logits, target):
    with open({str(seen)!r}, "a") as fh:
        fh.write(repr(logits.flatten().tolist()) + "\\n")
    return _right(logits, target)
""")
    monkeypatch.setattr(grading, "fresh_seed", lambda: 4242)
    out = tmp_path / "grades.csv"
    assert main(["grade", str(folder), "--exercise", "bce", "--timeout", "30", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "graded with seed 4242; `--seed 4242` grades on the same cases again"
    assert pd.read_csv(out).seed.tolist() == [4242] * 7
    called_on = seen.read_text().splitlines()
    for seed, graded in ((4242, True), (0, False)):  # the drawn seed's generated cases, not the self-check's
        basic = next(c for c in get_exercise("bce").make_cases(seed) if c.group == "basic")
        assert (repr(basic.inputs[0].flatten().tolist()) in called_on) is graded


def test_grade_help_states_the_defaults_of_the_grading_module(capsys):
    from lossbench.exercises import grading

    assert main(["grade", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"at most {grading.MAX_TIMEOUT_S:g} (default {grading.DEFAULT_TIMEOUT_S:g})" in text
    assert f"{grading.MIN_MEMORY_MB} to {grading.MAX_MEMORY_MB} (default {grading.DEFAULT_MEMORY_MB})" in text


def test_grade_help_says_what_a_submission_is_and_that_out_is_overwritten(capsys):
    assert main(["grade", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert ("SUBMISSIONS_DIR the folder of submissions: every .py and .ipynb file directly in it, "
            "each run in its own process") in text
    assert "Grade every .py and .ipynb file directly in SUBMISSIONS_DIR (not in its subfolders; hidden files skipped)" in text
    assert "--out OUT the gradebook CSV to write; an existing file is overwritten" in text
    assert "lossbench grade submissions/ --exercise bce --out grades.csv (prints the seed it drew)" in text
    assert "lossbench grade late/ --exercise bce --seed 90210 --out late.csv (the same cases again)" in text
    assert "default: a fresh one, printed and written to the gradebook, since students self-check with seed 0" in text


def test_grade_rejects_a_folder_without_submissions_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "submissions"
    (folder / "week1").mkdir(parents=True)
    (folder / "week1" / "ada.py").write_text(RIGHT)  # in a subfolder: not looked at
    (folder / "notes.txt").write_text("")
    out = tmp_path / "grades.csv"
    assert main(["grade", str(folder), "--exercise", "bce", "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"lossbench grade: error: Expected SUBMISSIONS_DIR to hold .py or .ipynb files, but "
                            f"{str(folder)!r} has none; grade looks only at the files directly in it, not in its "
                            "subfolders.\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submissions"]


def test_check_of_a_function_that_leaves_a_thread_running_exits_instead_of_waiting_for_it(tmp_path):
    # Python's exit joins every non-daemon thread, and once the command is done Ctrl-C is ignored: the
    # program would wait for the thread for ever
    import os
    import subprocess
    import sys

    (tmp_path / "lingering.py").write_text(
        "import threading, time\nimport torch.nn.functional as F\n"
        "def bce(z, y):\n"
        "    threading.Thread(target=time.sleep, args=(1000,), name='sleeper').start()\n"
        "    return (F.softplus(z) - y * z).mean()\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "lossbench", "check", "bce", "lingering:bce"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "bce: 7 of 7 cases pass" in done.stdout
    assert done.stderr == ("lossbench: stopped 7 threads still running at the end (sleeper, sleeper, sleeper), started "
                           "by the code the command ran\n")


def test_check_of_a_name_missing_from_an_installed_module_points_to_a_file_of_the_student_s_own(student_dir, capsys):
    # "define `def bce(...)` in .../site-packages/torch/__init__.py" was the advice
    import torch

    assert main(["check", "bce", "torch:bce"]) == 2
    assert_one_line_error(capsys, "check", f"module 'torch' ({torch.__file__}) is installed, not a file in this folder, and has no "
                                           "'bce'; put your function in a .py file here and pass its module, e.g. mysolution:bce")


@pytest.fixture
def one_submission(tmp_path):
    """A folder holding one right submission; the grade tests that fail before grading never run it."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "ada.py").write_text(RIGHT)
    return folder


def assert_one_line_error(capsys, command: str, message: str) -> None:
    """Nothing on stdout; on stderr one line, `lossbench COMMAND: error: ...` holding `message`, no traceback."""
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"lossbench {command}: error: ") and captured.err.count("\n") == 1
    assert message in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("option, value, message", [
    ("--timeout", "inf", "Expected --timeout to be a positive number of seconds, at most 86400 (a day), but got inf."),
    ("--timeout", "nan", "Expected --timeout to be a positive number of seconds, at most 86400 (a day), but got nan."),
    ("--timeout", "1e12", "Expected --timeout to be a positive number of seconds, at most 86400 (a day), but got 1"),
    ("--timeout", "0", "Expected --timeout to be a positive number of seconds, at most 86400 (a day), but got 0.0."),
    ("--memory-mb", "255", "Expected --memory-mb to be a whole number of MiB, at least 256"),
    ("--memory-mb", "99999999999999", "and at most 1048576 (1 TiB), but got 99999999999999."),
])
def test_grade_checks_its_limits_before_grading(one_submission, tmp_path, capsys, option, value, message):
    out = tmp_path / "grades.csv"
    assert main(["grade", str(one_submission), "--exercise", "bce", option, value, "--out", str(out), "--quiet"]) == 2
    assert_one_line_error(capsys, "grade", message)
    assert not out.exists()


def test_grade_refuses_a_function_name_that_python_cannot_define(one_submission, tmp_path, capsys):
    out = tmp_path / "grades.csv"
    assert main(["grade", str(one_submission), "--exercise", "bce", "--function", "x y", "--out", str(out),
                 "--quiet"]) == 2
    assert_one_line_error(capsys, "grade", "Expected --function to be a Python function name, such as bce, "
                                           "but got 'x y'.")
    assert not out.exists()


@pytest.mark.parametrize("out, message", [
    ("marked", "Expected --out to be a file, but 'marked' is a folder; name a file in it, such as marked/grades.csv."),
    ("", "Expected --out to be the path of a CSV file, such as grades.csv, but got ''."),
    ("notes.txt/grades.csv", "Expected --out to be in a folder, but 'notes.txt' in 'notes.txt/grades.csv' is a file, "
                             "not a folder; choose another path."),
    ("notes.txt/week1/grades.csv", "but 'notes.txt' in 'notes.txt/week1/grades.csv' is a file, not a folder"),
])
def test_grade_checks_out_before_grading_and_leaves_nothing_behind(one_submission, tmp_path, monkeypatch, capsys,
                                                                   out, message):
    monkeypatch.chdir(tmp_path)  # where the temporary files of a failed write used to be left
    (tmp_path / "marked").mkdir()
    (tmp_path / "notes.txt").write_text("keep me")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["grade", str(one_submission), "--exercise", "bce", "--out", out, "--quiet"]) == 2
    assert_one_line_error(capsys, "grade", message)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["ada.py", "grades.ipynb"])
def test_grade_refuses_an_out_among_the_submissions_and_leaves_them_as_they_were(one_submission, monkeypatch, capsys, name):
    # ada.py would be graded, then replaced by the gradebook; grades.ipynb would be graded as a submission next time
    monkeypatch.chdir(one_submission.parent)
    assert main(["grade", "submissions", "--exercise", "bce", "--out", f"submissions/{name}", "--quiet"]) == 2
    assert_one_line_error(capsys, "grade", f"Expected --out to be kept apart from the submissions, but "
                                           f"'submissions/{name}' is a {Path(name).suffix} file in SUBMISSIONS_DIR, which "
                                           "would overwrite a submission or be graded as one next time; name a CSV file")
    assert [p.name for p in one_submission.iterdir()] == ["ada.py"] and (one_submission / "ada.py").read_text() == RIGHT


def test_grade_makes_the_folders_of_out_and_overwrites_an_existing_gradebook(one_submission, tmp_path, capsys):
    out = tmp_path / "course" / "week1" / "grades.csv"
    assert main(["grade", str(one_submission), "--exercise", "bce", "--out", str(out), "--quiet"]) == 0
    out.write_text("an older gradebook\n")
    assert main(["grade", str(one_submission), "--exercise", "bce", "--out", str(out), "--quiet"]) == 0
    assert out.read_text().startswith("submission,exercise,seed,group,passed,cases,score,reason\n")
    assert [p.name for p in out.parent.iterdir()] == ["grades.csv"]


@pytest.mark.parametrize("outdir", ["handout", "handout/week1"])
def test_exercises_export_to_a_file_is_a_usage_error(tmp_path, capsys, outdir):
    (tmp_path / "handout").write_text("keep me")
    assert main(["exercises", "export", "--flavor", "plain", str(tmp_path / outdir)]) == 2
    assert_one_line_error(capsys, "exercises export",
                          f"Expected OUTDIR to be a folder, but {str(tmp_path / 'handout')!r} is a file; "
                          "choose another path.")
    assert [p.name for p in tmp_path.iterdir()] == ["handout"] and (tmp_path / "handout").read_text() == "keep me"


def test_exercises_export_help_says_it_overwrites_and_keeps_its_examples(capsys):
    assert main(["exercises", "export", "--help"]) == 0
    text = capsys.readouterr().out
    assert "overwriting the notebooks of those\nnames there" in text
    assert "  lossbench exercises export --flavor plain handout/\n" in text
    assert "then: otter assign otter/losses.ipynb dist/" in text


@pytest.mark.parametrize("seed", ["99999999999999999999", str(2**63), "-1"])
@pytest.mark.parametrize("command", ["check", "grade"])
def test_a_seed_torch_cannot_take_is_a_usage_error(one_submission, student_dir, capsys, command, seed):
    (student_dir / "student_right.py").write_text(RIGHT)
    out = student_dir / "grades.csv"
    argv = (["check", "bce", "student_right:bce"] if command == "check" else
            ["grade", str(one_submission), "--exercise", "bce", "--out", str(out), "--quiet"])
    assert main(argv + ["--seed", seed]) == 2
    assert_one_line_error(capsys, command, f"Expected --seed to be a whole number from 0 to 9223372036854775807 "
                                           f"(2**63 - 1), but got {seed}.")
    assert not out.exists()


def test_the_largest_seed_torch_takes_is_accepted(student_dir, capsys):
    (student_dir / "student_right.py").write_text(RIGHT)
    assert main(["check", "bce", "student_right:bce", "--seed", str(2**63 - 1)]) == 0


def test_grade_interrupted_keeps_and_prints_the_submissions_graded_so_far(tmp_path, monkeypatch, capsys):
    from lossbench.exercises import grading

    folder = tmp_path / "submissions"
    folder.mkdir()
    for name in ("a_right.py", "b_naive.py", "c_right.py"):
        (folder / name).write_text(NAIVE if "naive" in name else RIGHT)
    run_child = grading._run_child

    def ctrl_c_on_the_third(ctx, path, *args):
        if path.name == "c_right.py":
            raise KeyboardInterrupt
        return run_child(ctx, path, *args)

    monkeypatch.setattr(grading, "_run_child", ctrl_c_on_the_third)
    out = tmp_path / "grades.csv"
    assert main(["grade", str(folder), "--exercise", "bce", "--timeout", "30", "--seed", "5", "--out", str(out), "--quiet"]) == 130
    captured = capsys.readouterr()
    assert captured.out.splitlines()[:3] == ["submission  score  reason", "a_right.py   1.00  ", "b_naive.py   0.71  NaN/inf output in 2 cases"]
    assert f"wrote {out} (14 rows: a row per case group and a total per submission)" in captured.out
    assert captured.err.strip() == "lossbench grade: interrupted after 2 of 3 submissions; the gradebook holds those graded"
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame.submission.unique().tolist() == ["a_right.py", "b_naive.py"] and (frame.seed == 5).all()


def test_grade_interrupted_before_any_grade_writes_nothing(one_submission, tmp_path, monkeypatch, capsys):
    from lossbench.exercises import grading

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(grading, "_run_child", ctrl_c)
    out = tmp_path / "grades.csv"
    assert main(["grade", str(one_submission), "--exercise", "bce", "--out", str(out), "--quiet"]) == 130
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.strip() == "lossbench grade: interrupted before the first submission was graded; nothing written"


def test_a_gradebook_that_cannot_be_written_after_grading_goes_to_the_temporary_folder(one_submission, tmp_path, monkeypatch,
                                                                                       capsys):
    from lossbench.exercises import grading

    write = grading.write_gradebook
    out = tmp_path / "grades.csv"

    def disk_full_at_out(frame, path):
        if Path(path) == out:
            raise OSError(28, "No space left on device")
        return write(frame, path)

    monkeypatch.setattr(grading, "write_gradebook", disk_full_at_out)
    spare = tmp_path / "spare"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    assert main(["grade", str(one_submission), "--exercise", "bce", "--timeout", "30", "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    (fallback,) = spare.glob("lossbench-grades-*.csv")
    assert captured.out.splitlines()[:2] == ["submission  score  reason", "ada.py       1.00  "]  # the scores, whatever the file
    assert f"wrote {fallback} (7 rows" in captured.out
    assert captured.err.strip() == (f"lossbench grade: error: could not write '{out}' (OSError: [Errno 28] No space left on "
                                    f"device); the gradebook was written to '{fallback}' instead")
    assert pd.read_csv(fallback).submission.unique().tolist() == ["ada.py"] and not out.exists()


def test_grade_of_a_missing_folder_names_the_argument(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere"), "--exercise", "bce", "--out", str(tmp_path / "g.csv"), "--quiet"]) == 2
    assert_one_line_error(capsys, "grade", f"Expected SUBMISSIONS_DIR to be a folder of .py or .ipynb files, but got "
                                           f"'{tmp_path / 'nowhere'}', which is not a folder.")


def test_check_of_a_notebook_says_to_report_from_the_notebook(student_dir, capsys):
    (student_dir / "losses.ipynb").write_text("{}")
    assert main(["check", "bce", "losses.ipynb:bce"]) == 2
    assert_one_line_error(capsys, "check", "Expected the function as package.module:function from a .py file, but got the "
                                           "notebook 'losses.ipynb': `lossbench check` imports Python files. In the notebook, "
                                           "run `lossbench.exercises.report(\"bce\", bce)`, or save the function in a .py file "
                                           "and pass its module.")


@pytest.mark.parametrize("target, name", [("mysolution: bce", "' bce'"), ("mysolution:bce:x", "'bce:x'"), ("mysolution:1bce", "'1bce'")])
def test_check_of_a_function_name_python_cannot_have_says_so(student_dir, capsys, target, name):
    (student_dir / "mysolution.py").write_text(RIGHT)
    assert main(["check", "bce", target]) == 2
    assert_one_line_error(capsys, "check", f"Expected the function as package.module:function, with a Python name after the "
                                           f"colon, but got {name} in {target!r}.")



@pytest.mark.parametrize("content, why", [("{bad\n", "Notebook does not appear to be JSON: '{bad"), (b"\xff\xfe{}", "'utf-8' codec can't decode byte 0xff")])
def test_exercises_export_names_a_broken_solution_notebook_and_writes_nothing(tmp_path, capsys, content, why):
    import shutil

    from lossbench.exercises.notebooks import solution_notebooks

    source = tmp_path / "source"
    source.mkdir()
    for path in solution_notebooks(None):
        shutil.copy(path, source / path.name)
    broken = source / "thresholds_solutions.ipynb"
    broken.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "handout"
    assert main(["exercises", "export", "--flavor", "plain", "--source", str(source), str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()  # losses.ipynb, made first, is not written either
    assert captured.err.startswith(f"lossbench exercises export: error: Expected every *_solutions.ipynb in --source to be a "
                                   f"notebook, but '{broken}' is not one (") and why in captured.err
    assert captured.err.count("\n") == 1


def test_exercises_export_into_a_folder_holding_a_folder_named_like_a_notebook_writes_nothing(tmp_path, capsys):
    (tmp_path / "thresholds.ipynb").mkdir()
    assert main(["exercises", "export", "--flavor", "plain", str(tmp_path)]) == 2
    assert_one_line_error(capsys, "exercises export", f"Expected OUTDIR to have room for thresholds.ipynb, but "
                                                      f"'{tmp_path / 'thresholds.ipynb'}' is a folder or another special file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thresholds.ipynb"]  # losses.ipynb not written either


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_exercises_export_over_a_special_file_named_like_a_notebook_writes_nothing(tmp_path, capsys):
    """A named pipe where a notebook goes is "another special file": refused, not replaced."""
    os.mkfifo(tmp_path / "losses.ipynb")
    assert main(["exercises", "export", "--flavor", "plain", str(tmp_path)]) == 2
    assert_one_line_error(capsys, "exercises export", f"Expected OUTDIR to have room for losses.ipynb, but "
                                                      f"'{tmp_path / 'losses.ipynb'}' is a folder or another special file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.ipynb"] and (tmp_path / "losses.ipynb").is_fifo()


def test_exercises_export_refused_permission_says_outdir_cannot_be_written(tmp_path, capsys, monkeypatch):
    """A folder this user may not write (tests run as root, so export stands in) is named as such, not as a full disk."""
    from lossbench.exercises import notebooks

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out"))

    monkeypatch.setattr(notebooks, "export", refused)
    assert main(["exercises", "export", "--flavor", "plain", str(tmp_path / "out")]) == 2
    assert_one_line_error(capsys, "exercises export", f"Expected OUTDIR to be a folder this user can make and write, but "
                                                      f"'{tmp_path / 'out'}' refuses it (Permission denied: {tmp_path / 'out'}).")


def test_exercises_export_that_fails_part_way_leaves_the_notebooks_there_as_they_were(tmp_path, capsys, monkeypatch):
    import errno
    import os

    (tmp_path / "losses.ipynb").write_text("the instructor's edits")
    real_replace = os.replace

    def replace(src, dst):  # the first notebook's rename fails, as on a full disk
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", replace)
    assert main(["exercises", "export", "--flavor", "plain", str(tmp_path)]) == 2
    assert_one_line_error(capsys, "exercises export", f"Expected OUTDIR to take the notebooks, but writing in '{tmp_path}' "
                                                      f"failed (No space left on device: {tmp_path / 'losses.ipynb'}); "
                                                      "the notebooks there are as they were.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.ipynb"]  # no temporary file left behind
    assert (tmp_path / "losses.ipynb").read_text() == "the instructor's edits"
    monkeypatch.setattr(os, "replace", real_replace)
    assert main(["exercises", "export", "--flavor", "plain", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.ipynb", "thresholds.ipynb"]


@pytest.mark.parametrize("flavor", ["nbgrader", "otter"])
def test_exercises_export_prints_the_seed_of_the_hidden_checks_it_drew(tmp_path, monkeypatch, capsys, flavor):
    from lossbench.exercises import cases

    monkeypatch.setattr(cases, "fresh_seed", lambda: 4242)
    assert main(["exercises", "export", "--flavor", flavor, str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == ("hidden checks on seed 4242's cases (the visible checks use seed 0's, which students see); "
                         "`--seed 4242` makes the same again")
    assert 'check(\\"bce\\", bce, seed=4242)' in (tmp_path / "out" / "losses.ipynb").read_text()
    assert main(["exercises", "export", "--flavor", flavor, "--seed", "5", str(tmp_path / "again")]) == 0
    assert "seed 5's cases" in capsys.readouterr().out
    assert 'check(\\"bce\\", bce, seed=5)' in (tmp_path / "again" / "losses.ipynb").read_text()


def test_exercises_export_plain_has_no_hidden_checks_to_seed(tmp_path, capsys):
    assert main(["exercises", "export", "--flavor", "plain", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "seed" not in out and "seed=" not in (tmp_path / "out" / "losses.ipynb").read_text()


def test_exercises_export_refuses_a_seed_torch_cannot_take(tmp_path, capsys):
    assert main(["exercises", "export", "--flavor", "nbgrader", "--seed", "-1", str(tmp_path / "out")]) == 2
    assert_one_line_error(capsys, "exercises export", "Expected --seed to be a whole number from 0 to 9223372036854775807")
    assert not (tmp_path / "out").exists()


def test_exercises_export_refuses_a_seed_the_plain_notebooks_would_not_use(tmp_path, capsys):
    assert main(["exercises", "export", "--flavor", "plain", "--seed", "5", str(tmp_path / "out")]) == 2
    assert_one_line_error(capsys, "exercises export", "Expected --seed only with --flavor 'nbgrader' or 'otter', but got 5 "
                                                      "with --flavor 'plain': the student notebooks hold no hidden checks.")
    assert not (tmp_path / "out").exists()


def test_grade_help_and_the_grading_module_say_a_score_can_be_forged(capsys):
    from lossbench.exercises import grading

    assert main(["grade", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "a determined student can forge a full score" in text
    assert "sees only the thread that calls the function, not a thread it starts" in text
    doc = " ".join(grading.__doc__.split())
    assert "a determined student can forge a full score" in doc and "not a thread the function starts" in doc
