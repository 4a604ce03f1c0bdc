"""How `lossbench` ends when something goes wrong: the exit code, the one stderr line, and nothing lost on the way out."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from lossbench import cli

NO_TRAINING = ["compare", "--task", "titanic", "--device", "cpu"]  # each test below fails before training
UNEXPECTED = "(unexpected; LOSSBENCH_TRACEBACK=1 shows where it happened)"


def error_of(argv: list[str], capsys) -> str:
    """The one stderr line of ``lossbench ARGV``, which must exit with code 2 and print nothing on stdout."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    return captured.err.rstrip("\n")


def failing_with(monkeypatch, error: BaseException) -> None:
    """Make `lossbench tasks` raise ``error`` from inside the command."""
    def command(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_tasks", command)
    monkeypatch.delenv("LOSSBENCH_TRACEBACK", raising=False)


def test_a_misspelt_option_given_with_equals_gets_the_nearest_option(capsys):
    """The hint for `--seed=VALUE` looks at the name before `=` only, so a long value does not hide --seeds."""
    assert error_of([*NO_TRAINING, "--seed=12345678"], capsys) == (
        "lossbench compare: error: unrecognized arguments: --seed=12345678; did you mean --seeds? (see `lossbench compare --help`)"
    )


def test_a_stray_word_that_spells_an_option_gets_no_hint(capsys):
    """Only a word starting with "-" is offered a nearest option: a stray `epochs` is named, not corrected."""
    assert error_of([*NO_TRAINING, "epochs", "5"], capsys) == (
        "lossbench compare: error: unrecognized arguments: epochs 5 (see `lossbench compare --help`)"
    )


@pytest.mark.parametrize("error, said", [
    pytest.param(KeyError("epochs"), "KeyError: 'epochs'", id="KeyError"),
    pytest.param(TypeError("unsupported operand"), "TypeError: unsupported operand", id="TypeError"),
    pytest.param(ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero", id="ArithmeticError"),
])
def test_an_unexpected_error_of_any_kind_is_one_line_with_exit_code_2(monkeypatch, capsys, error, said):
    """Not only RuntimeError: any Exception from a command is one stderr line naming its type, exit code 2."""
    failing_with(monkeypatch, error)
    assert error_of(["tasks"], capsys) == f"lossbench tasks: error: {said} {UNEXPECTED}"


@pytest.mark.parametrize("error, said", [
    pytest.param(OSError(36, "File name too long", "/tmp/" + "a" * 300), f"[Errno 36] File name too long: '/tmp/{'a' * 300}'", id="name-too-long"),
    pytest.param(IsADirectoryError(21, "Is a directory", "runs/x"), "[Errno 21] Is a directory: 'runs/x'", id="a-folder"),
    pytest.param(PermissionError(13, "Permission denied", "runs"), "[Errno 13] Permission denied: 'runs'", id="permission"),
])
def test_a_file_the_system_refuses_is_named_with_its_reason_not_as_unexpected(monkeypatch, capsys, error, said):
    """An OSError is the system's refusal of a path the user gave: its reason and path, exit code 2."""
    failing_with(monkeypatch, error)
    assert error_of(["tasks"], capsys) == f"lossbench tasks: error: {said}"


@pytest.mark.parametrize("code", [0, 1, "done"])
def test_a_function_that_calls_sys_exit_fails_the_command(monkeypatch, capsys, code):
    """sys.exit() inside a command (a user's loss, say) is exit code 2 and one line, never a silent exit 0."""
    failing_with(monkeypatch, SystemExit(code))
    assert error_of(["tasks"], capsys) == (
        f"lossbench tasks: error: the code the command ran (a loss function of yours, say) called sys.exit({code!r}); "
        "the command stopped there"
    )


def test_a_value_error_from_a_command_is_the_users_mistake_not_unexpected(monkeypatch, capsys):
    """A ValueError raised by the library is its own message, without the type's name or "unexpected"."""
    failing_with(monkeypatch, ValueError("Expected `epochs` to be positive, but got 0."))
    assert error_of(["tasks"], capsys) == "lossbench tasks: error: Expected `epochs` to be positive, but got 0."


def test_stopping_a_leftover_thread_keeps_the_printed_output_and_the_exit_code():
    """With a thread still running, run() exits at once, yet with stdout flushed (even to a pipe) and main's exit code."""
    program = (
        "import threading\n"
        "from lossbench import cli\n"
        "def command():\n"
        "    threading.Thread(target=threading.Event().wait, name='student-thread').start()\n"
        "    print('the report')\n"
        "    return 2\n"
        "cli.main = command\n"
        "cli.run()\n"
    )
    buffered = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # stdout to a pipe, as for a user
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=buffered)
    assert done.returncode == 2
    assert done.stdout == "the report\n"
    assert done.stderr == "lossbench: stopped 1 thread still running at the end (student-thread), started by the code the command ran\n"


def test_a_loss_that_calls_sys_exit_during_a_comparison_is_an_error_and_saves_nothing(tmp_path, monkeypatch, capsys):
    """A user's loss calling sys.exit(0) mid-comparison used to end the command with exit code 0 and no word."""
    (tmp_path / "exitloss.py").write_text("import sys\n\ndef bce(logits, target):\n    sys.exit(0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    said = error_of(["compare", "--task", "titanic", "--quick", "--seeds", "2", "--epochs", "1", "--no-plots",
                     "--impl", "bce=exitloss:bce", "--out", str(out)], capsys)
    assert said.endswith("called sys.exit(0); the command stopped there")
    assert not out.exists()


def test_a_warning_during_a_command_is_one_line_without_python_s_source_line(tmp_path, monkeypatch, capsys):
    """A loss that vmap cannot batch is warned about in one line: no file, line number or source line after it."""
    (tmp_path / "itemloss.py").write_text(
        "import torch.nn.functional as F\n\ndef bce(logits, target):\n    _ = logits.sum().item()\n"
        "    return F.binary_cross_entropy_with_logits(logits, target)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["compare", "--task", "titanic", "--quick", "--seeds", "2", "--epochs", "1", "--no-plots", "--impl", "bce=itemloss:bce",
            "--out", str(tmp_path / "run")]
    before = warnings.showwarning
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("lossbench compare: warning: loss 'bce' could not be vectorised over models (RuntimeError: vmap: ")
    assert err.endswith("; calling it once per model instead, which is slower.\n")
    assert warnings.showwarning is before  # Python's own printer again once the command is done


@pytest.mark.parametrize("task", ["titanic", "multilabel", "mammography"])
def test_a_data_path_with_a_line_break_in_its_name_stays_on_one_error_line(tmp_path, capsys, task):
    """Loaders put the --data path in their message as it is; the command line writes its line break as \\n."""
    missing = tmp_path / "a\nb"
    said = error_of(["compare", "--task", task, "--quick", "--data", str(missing)], capsys)
    assert str(missing).replace("\n", "\\n") in said
