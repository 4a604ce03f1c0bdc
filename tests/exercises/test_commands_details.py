"""Finer rules of the exercise commands: check's default seed, what `lossbench grade` passes on and prints, loading a function, the gradebook path, `exercises list`."""
from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

from lossbench.cli import UsageError
from lossbench.exercises import commands, grading
from tests.exercises.test_commands import main


def test_check_uses_seed_0_by_default_the_seed_of_the_notebooks_visible_checks():
    """`lossbench check` without --seed checks seed 0's cases, as `check --help` and the student notebooks' reports say."""
    from lossbench.cli import build_parser

    assert build_parser().parse_args(["check", "bce", "mysolution:bce"]).seed == 0


@pytest.fixture
def fake_grade(monkeypatch):
    """grading.grade replaced by one that records its arguments and returns a two-submission gradebook."""
    seen: dict = {}

    def grade(submissions, exercise, **kwargs):
        seen.update(kwargs, exercise=exercise)
        return pd.DataFrame([
            {"submission": "a_very_long_submission_name.py", "exercise": exercise, "seed": kwargs["seed"], "group": "total",
             "passed": 1, "cases": 3, "score": 1 / 3, "reason": "raised ValueError: no"},
            {"submission": "b.py", "exercise": exercise, "seed": kwargs["seed"], "group": "total", "passed": 3, "cases": 3,
             "score": 1.0, "reason": ""},
        ], columns=grading.COLUMNS)

    monkeypatch.setattr(grading, "grade", grade)
    return seen


def test_grade_passes_the_grading_defaults_and_the_options_on(tmp_path, fake_grade, capsys):
    (tmp_path / "a.py").write_text("")
    out = str(tmp_path / "g.csv")
    assert main(["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--out", out]) == 0
    assert fake_grade == {"exercise": "bce", "timeout": grading.DEFAULT_TIMEOUT_S, "memory_mb": grading.DEFAULT_MEMORY_MB,
                          "function": None, "seed": 4, "progress": False}
    assert main(["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--timeout", "0.5", "--memory-mb", "4096",
                 "--function", "loss", "--quiet", "--out", out]) == 0
    assert fake_grade == {"exercise": "bce", "timeout": 0.5, "memory_mb": 4096, "function": "loss", "seed": 4,
                          "progress": False}


def test_grade_writes_a_gradebook_named_like_a_submission_outside_the_submissions(tmp_path, fake_grade):
    """Only an --out among the submissions is refused for its suffix: grades.py elsewhere is the user's choice."""
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "a.py").write_text("")
    out = tmp_path / "records" / "grades.py"
    assert main(["grade", str(tmp_path / "submissions"), "--exercise", "bce", "--seed", "4", "--out", str(out)]) == 0
    assert pd.read_csv(out)["submission"].tolist() == ["a_very_long_submission_name.py", "b.py"]


def test_grade_with_quiet_draws_no_bar_even_on_a_terminal(tmp_path, fake_grade, monkeypatch):
    (tmp_path / "a.py").write_text("")
    monkeypatch.setattr(commands, "_show_bars", lambda: True)
    argv = ["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--out", str(tmp_path / "g.csv")]
    assert main(argv) == 0 and fake_grade["progress"] is True
    assert main(argv + ["--quiet"]) == 0 and fake_grade["progress"] is False


def test_grade_aligns_the_scores_under_a_long_submission_name(tmp_path, fake_grade, capsys):
    (tmp_path / "a.py").write_text("")
    assert main(["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--out", str(tmp_path / "g.csv")]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == [
        "submission                      score  reason",
        "a_very_long_submission_name.py   0.33  raised ValueError: no",
        "b.py                             1.00  ",
    ]


def test_load_function_without_a_module_name_is_the_format_error():
    with pytest.raises(UsageError, match=r"^Expected the function as package.module:function \(e.g. mysolution:bce\), "
                                         r"but got ':bce'.$"):
        commands.load_function(":bce")


def test_load_function_of_a_notebook_without_an_exercise_names_a_placeholder():
    with pytest.raises(UsageError, match=r'run `lossbench.exercises.report\("EXERCISE", bce\)`'):
        commands.load_function("losses.ipynb:bce")


def test_load_function_looks_in_the_current_folder_first(student_dir, tmp_path_factory):
    # the file the student is working on, not a same-named one elsewhere on sys.path
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "student_first.py").write_text("def bce(z, y):\n    return 'elsewhere'\n")
    (student_dir / "student_first.py").write_text("def bce(z, y):\n    return 'here'\n")
    sys.path.append(str(elsewhere))
    assert commands.load_function("student_first:bce")(None, None) == "here"


def test_load_function_of_a_module_that_raises_a_long_error_keeps_its_first_line(student_dir):
    (student_dir / "student_raises.py").write_text("raise RuntimeError('line one\\nline two')\n")
    with pytest.raises(UsageError) as err:
        commands.load_function("student_raises:bce")
    assert str(err.value) == "could not import 'student_raises': RuntimeError: line one"


@pytest.mark.parametrize("text, message", [
    ("   ", "Expected --out to be the path of a CSV file, such as grades.csv, but got '   '."),
    ("/dev/null", "Expected --out to be a regular file, but '/dev/null' is not one; choose another path."),
])
def test_check_gradebook_path_refuses_blank_names_and_what_is_not_a_regular_file(text, message):
    with pytest.raises(UsageError) as err:
        commands.check_gradebook_path(text)
    assert str(err.value) == message


def test_check_gradebook_path_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    # tests run as root, who may write anywhere: os.access stands in for a read-only folder
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)
    with pytest.raises(UsageError) as err:
        commands.check_gradebook_path(str(tmp_path / "grades.csv"))
    assert str(err.value) == f"Expected --out to be in a folder you can write to, but {str(tmp_path)!r} is not writable."


def test_exercises_list_ends_each_line_with_the_notebook(capsys):
    from lossbench.exercises.catalog import EXERCISES

    assert main(["exercises", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == [ex.topic for ex in EXERCISES.values()]
    assert {ex.topic for ex in EXERCISES.values()} == {"losses", "thresholds"}


def test_exercises_list_lines_up_its_three_columns(capsys):
    """Name, signature and notebook each start at one column on every line, past the longest entry before it."""
    from lossbench.exercises.catalog import EXERCISES

    assert main(["exercises", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exercises = list(EXERCISES.values())
    signature_at = {line.index(ex.signature) for line, ex in zip(lines, exercises)}
    topic_at = {line.rindex(ex.topic) for line, ex in zip(lines, exercises)}
    assert len(signature_at) == 1 and len(topic_at) == 1, lines
    assert signature_at.pop() > max(len(ex.name) for ex in exercises)
    assert topic_at.pop() > max(line.index(ex.signature) + len(ex.signature) for line, ex in zip(lines, exercises))


