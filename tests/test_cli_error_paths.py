"""How `lossbench` ends when something goes wrong: the exit code, the one stderr line, and nothing lost on the way out."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

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
    pytest.param(IsADirectoryError(21, "Is a directory"), "IsADirectoryError: [Errno 21] Is a directory", id="other-OSError"),
])
def test_an_unexpected_error_of_any_kind_is_one_line_with_exit_code_2(monkeypatch, capsys, error, said):
    """Not only RuntimeError: any Exception from a command is one stderr line naming its type, exit code 2."""
    failing_with(monkeypatch, error)
    assert error_of(["tasks"], capsys) == f"lossbench tasks: error: {said} {UNEXPECTED}"


def test_a_value_error_from_a_command_is_the_users_mistake_not_unexpected(monkeypatch, capsys):
    """A ValueError raised by the library is its own message, without the type's name or "unexpected"."""
    failing_with(monkeypatch, ValueError("Expected `epochs` to be positive, but got 0."))
    assert error_of(["tasks"], capsys) == "lossbench tasks: error: Expected `epochs` to be positive, but got 0."


def test_a_daemon_thread_left_running_is_not_stopped_or_reported(monkeypatch, capsys):
    """run() stops and names only threads Python's exit would wait for; a daemon thread is neither."""
    release = threading.Event()
    daemon = threading.Thread(target=release.wait, name="daemon-left", daemon=True)

    def command():
        daemon.start()
        return 3

    def no_hard_exit(code):
        raise AssertionError(f"os._exit({code}) called")

    monkeypatch.setattr(cli, "main", command)
    monkeypatch.setattr(cli.signal, "signal", lambda sig, handler: None)
    monkeypatch.setattr(cli.os, "_exit", no_hard_exit)
    try:
        with pytest.raises(SystemExit) as done:
            cli.run()
    finally:
        release.set()
        daemon.join()
    assert done.value.code == 3
    assert capsys.readouterr().err == ""


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
