"""What `lossbench compare` does when something goes wrong: fail before training, or keep what was trained."""
from __future__ import annotations

import os
import sys
import typing
from pathlib import Path

import pytest

import lossbench
from lossbench import cli, plots
from lossbench.results import Result

QUICK = ["compare", "--task", "titanic", "--quick", "--seeds", "2", "--epochs", "1", "--set", "hidden=8", "--device", "cpu"]
CSVS = {"config.json", "runs.csv", "history.csv", "thresholds.csv", "calibration.csv", "summary.csv", "predictions.npz"}


def _one_error_line(err: str) -> str:
    lines = [line.split("\r")[-1] for line in err.split("\n") if line.strip()]  # past the progress bar's \r
    assert "Traceback" not in err
    return lines[-1]


@pytest.mark.parametrize("where, message", [
    ("afile", "Expected --out to be a new or empty directory, but '{tmp}/afile' is a file."),
    ("afile/run", "Expected --out to be a directory that can be created, but '{tmp}/afile' is a file."),
])
def test_an_out_that_cannot_be_written_fails_before_training(tmp_path, capsys, where, message):
    (tmp_path / "afile").write_text("not a folder")
    assert cli.main([*QUICK, "--out", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert "training" not in err  # no progress bar: nothing was trained
    assert _one_error_line(err) == "lossbench compare: error: " + message.format(tmp=tmp_path)


@pytest.mark.parametrize("target", ["empty", "missing"])
def test_an_out_that_is_a_symbolic_link_fails_before_training(tmp_path, capsys, target):
    """A run is renamed into place, which a link (to an empty folder, or to nothing) would refuse after training."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / target)
    assert cli.main([*QUICK, "--out", str(tmp_path / "link")]) == 2
    err = capsys.readouterr().err
    assert "training" not in err
    assert _one_error_line(err) == (f"lossbench compare: error: Expected --out to be a new or empty directory, but "
                                    f"'{tmp_path}/link' is a symbolic link; name the folder it points to, or a new one.")
    assert not any((tmp_path / "empty").iterdir())


def _refuse_new_folders(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


def test_a_working_directory_that_refuses_the_default_run_folder_says_so_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.tempfile, "mkdtemp", _refuse_new_folders)
    assert cli.main(QUICK) == 2
    err = capsys.readouterr().err
    assert "training" not in err
    assert _one_error_line(err) == (f"lossbench compare: error: Expected 'runs', where a run goes without --out, to be somewhere this user "
                                    f"can write, but '{tmp_path}' refuses it (Permission denied).")


def test_plot_in_a_run_directory_that_refuses_writing_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert cli.main([*QUICK, "--out", str(out), "--no-plots"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(cli.tempfile, "mkdtemp", _refuse_new_folders)
    assert cli.main(["plot", str(out)]) == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"lossbench plot: error: Expected RUN_DIR to be a folder this user can write, to draw its plots in, but '{out}' refuses it "
        "(Permission denied)."
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(CSVS)


@pytest.mark.skipif(os.geteuid() != 0 and not os.path.isdir("/proc"), reason="needs a folder nobody can write into")
def test_a_place_that_refuses_new_folders_fails_before_training(capsys):
    assert cli.main([*QUICK, "--out", "/proc/lossbench-run"]) == 2
    err = capsys.readouterr().err
    assert "training" not in err
    assert "Expected --out to be somewhere this user can write, but '/proc' refuses it" in _one_error_line(err)


def test_a_plotting_failure_keeps_the_results_and_says_how_to_draw_them(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "save_plots", broken)
    out = tmp_path / "run"
    assert cli.main([*QUICK, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert {p.name for p in out.iterdir()} == CSVS  # every result, no half-drawn plots folder
    assert lossbench.load(out).runs.shape[0] == 6
    assert "test acc @0.5" in captured.out  # the table is printed all the same
    assert _one_error_line(captured.err) == (
        f"lossbench compare: error: the plots could not be drawn (RuntimeError: no display); the results are saved "
        f"without them, and `lossbench plot {out}` draws them"
    )


def test_a_run_that_cannot_be_written_after_training_is_saved_under_runs_instead(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    save = Result.save

    def disk_full_at_out(self, directory, extra=None):
        if str(directory) == str(out):
            raise OSError(28, "No space left on device")
        return save(self, directory, extra)

    monkeypatch.setattr(Result, "save", disk_full_at_out)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*QUICK, "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    (fallback,) = (tmp_path / "runs").iterdir()
    assert fallback.name.startswith("titanic-")
    assert lossbench.load(fallback).runs.shape[0] == 6
    assert _one_error_line(err) == (
        f"lossbench compare: error: could not write '{out}' (OSError: [Errno 28] No space left on device); "
        f"the run was saved to 'runs/{fallback.name}' instead"
    )
    assert len(err.strip().splitlines()) == 1


def test_a_run_whose_folder_another_run_took_meanwhile_is_saved_under_a_new_name(tmp_path, capsys, monkeypatch):
    # two runs started in the same second get the same default folder; the one that finishes second saves beside it
    monkeypatch.chdir(tmp_path)
    names = iter(["runs/titanic-20261123-120000", "runs/titanic-20261123-120000-2"])
    monkeypatch.setattr(cli, "default_run_dir", lambda task: Path(next(names)))
    taken, compare = tmp_path / "runs" / "titanic-20261123-120000", lossbench.compare

    def the_other_run_saves_first(*args, **kwargs):
        result = compare(*args, **kwargs)
        taken.mkdir(parents=True)
        (taken / "runs.csv").write_text("the other run's table\n")
        return result

    monkeypatch.setattr(lossbench, "compare", the_other_run_saves_first)
    assert cli.main([*QUICK, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert (taken / "runs.csv").read_text() == "the other run's table\n"  # untouched
    assert lossbench.load(tmp_path / "runs" / "titanic-20261123-120000-2").runs.shape[0] == 6
    assert err.strip().splitlines() == [
        "lossbench compare: error: could not write 'runs/titanic-20261123-120000' (another run wrote files there meanwhile); "
        "the run was saved to 'runs/titanic-20261123-120000-2' instead"
    ]


def test_plots_that_failed_for_a_folder_that_failed_are_not_reported_once_drawn_for_the_next(tmp_path, capsys, monkeypatch):
    out, scratch = tmp_path / "run", tmp_path / "scratch"
    save, draw, drawn = Result.save, plots.save_plots, []

    def fails_the_first_time(result, path, **kwargs):
        drawn.append(path)
        if len(drawn) == 1:
            raise RuntimeError("no display")
        return draw(result, path, **kwargs)

    def disk_full_at_out(self, directory, extra=None):
        if str(directory) == str(out):
            scratch.mkdir()
            extra(scratch)  # the plots fail here, and then the folder too
            raise OSError(28, "No space left on device")
        return save(self, directory, extra)

    monkeypatch.setattr(plots, "save_plots", fails_the_first_time)
    monkeypatch.setattr(Result, "save", disk_full_at_out)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*QUICK, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    (fallback,) = (tmp_path / "runs").iterdir()
    assert len(drawn) == 2 and len(list((fallback / "plots").glob("*.png"))) == 5
    assert "could not be drawn" not in err  # they were drawn, where the run was saved
    assert _one_error_line(err) == (
        f"lossbench compare: error: could not write '{out}' (OSError: [Errno 28] No space left on device); "
        f"the run was saved to 'runs/{fallback.name}' instead"
    )


def test_the_working_folder_as_out_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: it passed as "a new or empty directory", then could not be renamed into
    assert cli.main([*QUICK, "--out", "."]) == 2
    err = capsys.readouterr().err
    assert "training" not in err and list(tmp_path.iterdir()) == []
    assert _one_error_line(err) == (
        "lossbench compare: error: Expected --out to be a new folder for the run, but '.' is the current folder or holds it; "
        "name a folder inside it, e.g. --out runs/my-run."
    )


def test_a_file_where_runs_go_without_out_is_named_as_such(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    assert cli.main(QUICK) == 2
    assert _one_error_line(capsys.readouterr().err) == (
        f"lossbench compare: error: Expected 'runs', where a run goes without --out, to be a folder, but '{tmp_path}/runs' is a file."
    )


@pytest.mark.parametrize("argv, name", [
    ([*QUICK, "--out", ""], "--out"), ([*QUICK, "--data", ""], "--data"), (["show", ""], "RUN_DIR"), (["plot", ""], "RUN_DIR"),
], ids=["out", "data", "show", "plot"])
def test_an_empty_path_is_refused_rather_than_taken_for_the_current_folder(capsys, argv, name):
    assert cli.main(argv) == 2
    command = "compare" if argv[0] == "compare" else argv[0]
    assert capsys.readouterr().err == f"lossbench {command}: error: Expected {name} to be a path, but got '' (see `lossbench {command} --help`).\n"


def test_an_option_error_ends_once_with_the_help_to_see(capsys):
    assert cli.main([*QUICK, "--seeds", "0"]) == 2
    assert capsys.readouterr().err == (
        "lossbench compare: error: Expected --seeds to be a positive whole number, but got '0' (see `lossbench compare --help`).\n"
    )


def test_ctrl_c_while_the_commands_are_being_set_up_is_one_line(capsys, monkeypatch):
    def interrupted():  # building the parser imports torch, which takes seconds
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["tasks"]) == 130
    assert capsys.readouterr().err == "lossbench: interrupted\n"


def test_more_threads_than_make_sense_are_refused(capsys):
    assert cli.main([*QUICK, "--threads", str(cli.MAX_THREADS + 1)]) == 2
    assert f"Expected --threads to be a positive whole number of at most {cli.MAX_THREADS}" in capsys.readouterr().err
    assert cli.build_parser().parse_args([*QUICK, "--threads", str(cli.MAX_THREADS)]).threads == cli.MAX_THREADS  # the most


def test_a_reader_that_closes_early_ends_the_command_quietly_with_exit_0(capsys, monkeypatch, tmp_path):
    """`lossbench tasks | head -1`: the pipe breaks under the print; nothing was lost, so no error and no traceback."""
    def closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    dup2 = []
    monkeypatch.setattr(cli, "_cmd_tasks", closed_pipe)
    monkeypatch.setattr(cli.os, "dup2", lambda fd, fd2: dup2.append(fd2))  # leave this process's stdout alone
    with open(tmp_path / "stdout", "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert cli.main(["tasks"]) == 0
        assert dup2 == [stdout.fileno()]  # stdout now points at /dev/null: Python's exit flush does not complain
    assert capsys.readouterr().err == ""


def test_an_unexpected_error_is_one_line_with_exit_code_2(capsys, monkeypatch):
    def crash(args):
        raise RuntimeError("something unforeseen")

    monkeypatch.setattr(cli, "_cmd_tasks", crash)
    monkeypatch.delenv("LOSSBENCH_TRACEBACK", raising=False)
    assert cli.main(["tasks"]) == 2
    assert _one_error_line(capsys.readouterr().err) == (
        "lossbench tasks: error: RuntimeError: something unforeseen (unexpected; LOSSBENCH_TRACEBACK=1 shows where it happened)"
    )
    monkeypatch.setenv("LOSSBENCH_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="something unforeseen"):
        cli.main(["tasks"])


def test_the_program_ignores_ctrl_c_once_its_command_is_done(monkeypatch):
    # a Ctrl-C while Python shuts down (exit handlers, threads) would print "Exception ignored" and a traceback
    events = []
    monkeypatch.setattr(cli, "main", lambda: events.append("main") or 3)
    monkeypatch.setattr(cli.signal, "signal", lambda sig, handler: events.append((sig, handler)))
    _only_these_threads(monkeypatch, [])
    monkeypatch.setattr(cli.os, "_exit", _hard_exit)
    with pytest.raises(SystemExit) as done:
        cli.run()
    assert done.value.code == 3
    assert events == ["main", (cli.signal.SIGINT, cli.signal.SIG_IGN)]  # only after the command


class _HardExit(Exception):
    """os._exit(code), raised instead, so that the test process lives on."""


def _hard_exit(code: int) -> typing.NoReturn:
    raise _HardExit(code)


def _only_these_threads(monkeypatch, threads: list) -> None:
    """run() sees the main thread and ``threads`` only. The test process may hold threads of its own: torch.compile,
    with a cold cache, leaves a thread pool running; seen by run(), it made run() call the real os._exit(3)."""
    import threading

    everything = threading.enumerate
    monkeypatch.setattr(cli.threading, "enumerate",
                        lambda: [t for t in everything() if t is threading.main_thread() or t in threads])


def _run_leaving(monkeypatch, names: list[str], daemon: bool = False, code: int = 0) -> tuple[str, int]:
    """cli.run() with a command that starts threads called ``names`` and returns ``code``; how the program ended:
    ("os._exit", code) when it stopped the threads, ("sys.exit", code) when Python's own exit was left to it."""
    import threading

    release = threading.Event()
    threads = [threading.Thread(target=release.wait, name=name, daemon=daemon) for name in names]

    def command():
        for thread in threads:
            thread.start()
        return code

    monkeypatch.setattr(cli, "main", command)
    monkeypatch.setattr(cli.signal, "signal", lambda sig, handler: None)
    monkeypatch.setattr(cli.os, "_exit", _hard_exit)
    _only_these_threads(monkeypatch, threads)
    try:
        cli.run()
    except _HardExit as done:
        return "os._exit", done.args[0]
    except SystemExit as done:
        return "sys.exit", done.code
    finally:
        release.set()
        for thread in threads:
            thread.join()
    raise AssertionError("cli.run() returned instead of exiting")


@pytest.mark.parametrize("count, said", [
    pytest.param(1, "1 thread still running at the end (left-0)", id="one"),
    pytest.param(4, "4 threads still running at the end (left-0, left-1, left-2)", id="four-names-three"),
])
def test_the_program_names_the_threads_it_stops_in_the_singular_or_the_plural(monkeypatch, capsys, count, said):
    """run() counts the threads the command left, in words that agree with the count, and names the first three."""
    assert _run_leaving(monkeypatch, [f"left-{i}" for i in range(count)]) == ("os._exit", 0)
    assert capsys.readouterr().err == f"lossbench: stopped {said}, started by the code the command ran\n"


def test_a_daemon_thread_left_running_is_not_stopped_or_reported(monkeypatch, capsys):
    """run() stops and names only threads Python's exit would wait for; a daemon thread is neither."""
    assert _run_leaving(monkeypatch, ["daemon-left"], daemon=True, code=3) == ("sys.exit", 3)
    assert capsys.readouterr().err == ""


def test_python_m_lossbench_and_the_console_script_run_the_same_function():
    import subprocess
    import sys
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "lossbench"]
    assert script.value == "lossbench.cli:run"
    done = subprocess.run([sys.executable, "-m", "lossbench", "tasks", "--nonsense"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "lossbench tasks: error: unrecognized arguments: --nonsense (see `lossbench tasks --help`)\n"


@pytest.mark.parametrize("setting, said", [
    ("seeds=0", "Expected --set seeds to be a positive whole number or a list of seeds, but got 0."),
    ("hidden=0", "Expected --set hidden to be a whole number of units, 1 or more, but got 0."),
])
def test_a_bad_set_value_is_named_as_it_was_given(capsys, setting, said):
    """A setting given as --set KEY=VALUE is named so in its error, not as the option of that name (--seeds) or the API's `key`."""
    assert cli.main(["compare", "--task", "titanic", "--quick", "--set", setting]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"lossbench compare: error: {said}"
