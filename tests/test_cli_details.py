"""The command line's finer rules: what each option parser accepts and refuses, word for word, the default
run folder, the `tasks` listing, and Ctrl-C's bookkeeping; nothing here trains a model."""
from __future__ import annotations

import dataclasses
import sys
import types
from typing import Literal

import pytest

import lossbench
from lossbench import cli
from lossbench.runner import ProgressReport

NO_TRAINING = ["compare", "--task", "titanic", "--device", "cpu"]  # each test below fails before training


def error_of(argv: list[str], capsys) -> str:
    """The one stderr line of ``lossbench ARGV``, which must exit with code 2 and print nothing on stdout."""
    assert cli.main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return captured.err.rstrip("\n")


# ---------------------------------------------------------------------------------------------
# Numbers and paths given as options
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["inf", "nan"])
def test_a_rate_that_is_not_a_finite_number_is_refused_by_the_option_itself(text, capsys):
    # "inf" would otherwise reach training and fail there with another option's words
    assert error_of([*NO_TRAINING, "--lr", text], capsys) == (
        f"lossbench compare: error: Expected --lr to be a positive number, but got '{text}' (see `lossbench compare --help`)."
    )


@pytest.mark.parametrize("text", ["-inf", "-Infinity", "-nan", "-1e-3", "-1E+2", "-1e5", "-5.", "-.5", "-0.5", "-2"])
def test_a_negative_number_of_any_spelling_reaches_the_option_s_own_check(text, capsys):
    # argparse alone takes only -2 and -0.5 for numbers, and "-1e-3" for an option: "expected one argument"
    assert error_of([*NO_TRAINING, "--lr", text], capsys) == (
        f"lossbench compare: error: Expected --lr to be a positive number, but got '{text}' (see `lossbench compare --help`)."
    )


@pytest.mark.parametrize("text", ["-x", "-inform", "-1e", "--lr"])
def test_an_option_in_a_value_s_place_is_still_a_missing_value(text, capsys):
    assert error_of([*NO_TRAINING, "--lr", text], capsys) == (
        "lossbench compare: error: argument --lr: expected one argument (see `lossbench compare --help`)"
    )


@pytest.mark.parametrize("argv, message", [
    pytest.param(["--losses", "bce", "--losses", "mse"], "Expected --losses once, but got it twice ('bce', then 'mse')",
                 id="losses"),  # trained mse alone
    pytest.param(["--impl", "naive", "--impl", "reference"], "Expected --impl once, but got it twice ('naive', then 'reference')",
                 id="impl"),
    pytest.param(["--lr", "0.1", "--lr=0.2"], "Expected --lr once, but got it twice (0.1, then 0.2)", id="lr"),
    pytest.param(["--task", "multilabel"], "Expected --task once, but got it twice ('titanic', then 'multilabel')", id="task"),
])
def test_an_option_given_twice_is_refused_rather_than_the_second_silently_winning(argv, message, capsys):
    assert error_of([*NO_TRAINING, *argv], capsys) == (
        f"lossbench compare: error: {message}; the second would silently replace the first (see `lossbench compare --help`)"
    )


@pytest.mark.parametrize("argv, message", [
    pytest.param([*NO_TRAINING, "--epoch", "5"], "lossbench compare: error: unrecognized arguments: --epoch 5; did you mean "
                                                 "--epochs? (see `lossbench compare --help`)", id="abbreviation"),
    pytest.param([*NO_TRAINING, "three"], "lossbench compare: error: unrecognized arguments: three (see `lossbench compare --help`)",
                 id="stray-word"),
    pytest.param(["exercises", "list", "--flavor=plain"], "lossbench exercises list: error: unrecognized arguments: --flavor=plain "
                                                           "(see `lossbench exercises list --help`)", id="nested-command"),
])
def test_words_no_option_takes_are_named_by_the_command_they_were_given_to(argv, message, capsys):
    # `--epoch 5` used to be taken for --epochs (argparse's prefixes); `plot` has an --epoch of its own
    assert error_of(argv, capsys) == message


@pytest.mark.parametrize("task, loss, count, example", [
    ("titanic", "bce", 1, "[1]"), ("titanic", "softmax_ce", 2, "1,2"), ("multilabel", "bce", 10, "1,2,3,..."),
])
def test_the_example_of_a_weight_list_is_one_the_loss_takes(task, loss, count, example, capsys, tmp_path):
    argv = ["compare", "--task", task, "--device", "cpu", "--losses", loss, "--loss-option", f"{loss}.weight=2",
            "--quick", "--seeds", "1", "--epochs", "1", "--no-plots", "--out", str(tmp_path / "run")]
    assert error_of(argv, capsys) == (
        f"lossbench compare: error: Expected `weight` of '{loss}' to be a list of weights, one per class or output ({count} "
        f"here; on the command line: {loss}.weight={example}), but got 2.0.")
    if count > 1:  # the example itself trains
        argv[argv.index(f"{loss}.weight=2")] = f"{loss}.weight={','.join(['1'] * count)}"
        assert cli.main(argv) == 0


def test_a_user_s_module_hidden_by_one_python_has_loaded_is_named_as_hidden(capsys, tmp_path, monkeypatch):
    # ./random.py: Python's own random comes first, and "module 'random' has no attribute 'my_bce'" was untrue of the file
    import random

    monkeypatch.chdir(tmp_path)
    (tmp_path / "random.py").write_text("def my_bce(z, y):\n    return z.mean()\n")
    assert error_of([*NO_TRAINING, "--losses", "bce", "--impl", "bce=random:my_bce"], capsys) == (
        "lossbench compare: error: Expected --impl 'random:my_bce' to import a loss function as package.module:function, but your "
        f"random.py is hidden: 'random' is the name of a module Python imports instead ({random.__file__}); rename your file "
        "(e.g. my_random.py) and pass 'my_random:my_bce'.")


def test_version_names_lossbench_and_torch(capsys):
    import torch

    import lossbench

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"lossbench {lossbench.__version__} (torch {torch.__version__})\n"


@pytest.mark.parametrize("text", ["16,,32", "16,32,", ",16"])
def test_a_list_setting_with_an_empty_item_is_refused_not_closed_up(text, capsys):
    assert error_of(["compare", "--task", "multilabel", "--device", "cpu", "--set", f"channels={text}"], capsys) == (
        f"lossbench compare: error: Expected --set channels to be a comma-separated list with a value between every two "
        f"commas, but got {text!r}.")


def test_a_path_of_blanks_is_refused_like_an_empty_one(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "  " would be a folder named by two blanks, beside the user's files
    assert error_of([*NO_TRAINING, "--out", "  "], capsys) == (
        "lossbench compare: error: Expected --out to be a path, but got '  ' (see `lossbench compare --help`)."
    )
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# --losses, --impl, --loss-option, --set
# ---------------------------------------------------------------------------------------------


def test_losses_skip_blanks_and_a_trailing_comma_and_take_labels_of_digits():
    assert cli.parse_losses(" bce , mse, ") == ["bce", "mse"]
    assert cli.parse_losses("bce,bce@2,bce@pos_4") == ["bce", "bce@2", "bce@pos_4"]  # "letters, digits or _"
    assert cli.parse_losses("bce@4_weighted,bce@_") == ["bce@4_weighted", "bce@_"]  # any mix of them, a digit first too


@pytest.mark.parametrize("text, message", [
    pytest.param(",", "Expected --losses to name at least one loss among softmax_ce, bce, mse, focal, but got ','.", id="none"),
    pytest.param("bce,mse,bce", "Expected --losses to name each loss once, but got 'bce,mse,bce'; label a second variant, "
                                "as in bce,bce@weighted.", id="twice"),
    pytest.param("bce@my-label", "Expected a label after @ made of letters, digits or _, as in bce@weighted, but got 'bce@my-label'.",
                 id="label-with-a-dash"),
    pytest.param("bce@\u00e9", "Expected a label after @ made of letters, digits or _, as in bce@weighted, but got 'bce@\u00e9'.",
                 id="label-not-ascii"),  # a label names files and columns: ASCII only
])  # fmt: skip
def test_losses_that_cannot_be_compared_are_refused_word_for_word(text, message):
    with pytest.raises(cli.UsageError) as refused:
        cli.parse_losses(text)
    assert str(refused.value) == message


@pytest.mark.parametrize("text, message", [
    pytest.param(",", "Expected --impl to be one implementation for all losses or comma-separated loss=impl pairs, but got ','.",
                 id="nothing"),
    pytest.param("bce=", "Expected --impl pairs of the form loss=impl, as in bce=naive, but got 'bce='.", id="pair-without-impl"),
    pytest.param("bce=naive,mse", "Expected --impl pairs of the form loss=impl, as in bce=naive, but got 'mse'.", id="pair-and-a-name"),
    pytest.param("hinge=naive", "Expected --impl to name one of the losses bce, mse, but got 'hinge' in 'hinge=naive'.",
                 id="loss-not-compared"),
    pytest.param("mse=fast", "Expected --impl to be one of handwritten, naive, reference or an import path package.module:function, "
                             "but got 'fast'.", id="unknown-impl"),  # refused here, before the data is read
])  # fmt: skip
def test_impl_that_cannot_be_used_is_refused_word_for_word(text, message):
    with pytest.raises(cli.UsageError) as refused:
        cli.parse_impl(text, ["bce", "mse"])
    assert str(refused.value) == message


def test_impl_pairs_may_be_spaced_and_name_a_family_for_compare_to_explain():
    assert cli.parse_impl(" bce = naive , mse=reference ", ["bce", "mse"]) == {"bce": "naive", "mse": "reference"}
    assert cli.parse_impl("softmax_ce", ["bce"]) == "softmax_ce"  # compare() says to add it to the losses instead


@pytest.mark.parametrize("pair", [".pos_weight=4", "bce.=4", "bce.pos_weight"])
def test_a_loss_option_without_a_loss_a_key_or_a_value_is_refused(pair):
    with pytest.raises(cli.UsageError) as refused:
        cli.parse_loss_options([pair], ["bce"])
    assert str(refused.value) == f"Expected --loss-option LOSS.KEY=VALUE, as in bce.pos_weight=4, but got {pair!r}."


def test_loss_option_values_are_booleans_none_numbers_lists_or_text():
    pairs = ["bce.a=true", "bce.b=False", "bce.c=NULL", "bce.d=2", "bce.e=[1, 2]", "bce.f=mean", "bce.h=[1,3)", "bce@w.g=0.5",
             "bce.i=[1,,3]", "bce.j=1,,3"]
    assert cli.parse_loss_options(pairs, ["bce", "bce@w"]) == {
        "bce": {"a": True, "b": False, "c": None, "d": 2.0, "e": [1.0, 2.0], "f": "mean",
                "h": "[1,3)", "i": "[1,,3]", "j": "1,,3"},  # a typo stays text, which the loss then refuses, rather than a list it was not
        "bce@w": {"g": 0.5},
    }


@dataclasses.dataclass
class _Settings:
    """A config with the field types the command line parses that the tasks' own configs do not all have."""

    limit: int | None = None
    scale: float | None = 1.0
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    sizes: list[int] = dataclasses.field(default_factory=list)


def test_set_parses_optional_fields_booleans_and_lists():
    assert cli.parse_settings(["limit=null", "scale=None", "flag=yes", "mode=b", "sizes=1,2"], _Settings) == {
        "limit": None, "scale": None, "flag": True, "mode": "b", "sizes": [1, 2],
    }  # fmt: skip
    assert cli.parse_settings(["limit=7", "flag=on"], _Settings) == {"limit": 7, "flag": True}
    assert cli.parse_settings(["flag=off"], _Settings) == {"flag": False}
    assert cli.parse_settings(["flag=No"], _Settings) == {"flag": False}
    assert cli.parse_settings(["flag=1"], _Settings) == {"flag": True}  # 1 and 0 read as the booleans they spell
    assert cli.parse_settings(["flag=0"], _Settings) == {"flag": False}
    assert cli.parse_settings(["sizes="], _Settings) == {"sizes": []}  # nothing at all is the empty list, not a typo
    assert cli.parse_settings([" limit = 3 "], _Settings) == {"limit": 3}  # blanks around the key and the value


@pytest.mark.parametrize("pair, message", [
    pytest.param("limit=many", "Expected --set limit to be a whole number, but got 'many'.", id="optional-int"),
    pytest.param("flag=maybe", "Expected --set flag to be true or false, but got 'maybe'.", id="bool"),
    pytest.param("mode=c", "Expected --set mode to be one of a, b, but got 'c'.", id="choice"),
    pytest.param("mode=A", "Expected --set mode to be one of a, b, but got 'A'.", id="choice-in-another-case"),  # as --optimizer Adam
    pytest.param("sizes=1,x", "Expected --set sizes to be a whole number, but got 'x'.", id="list-item"),
])  # fmt: skip
def test_set_refuses_values_of_the_wrong_type_word_for_word(pair, message):
    with pytest.raises(cli.UsageError) as refused:
        cli.parse_settings([pair], _Settings)
    assert str(refused.value) == message


# ---------------------------------------------------------------------------------------------
# The parser's defaults, and what `compare` checks before training
# ---------------------------------------------------------------------------------------------


def test_compare_defaults_are_the_documented_ones():
    args = cli.build_parser().parse_args(["compare", "--task", "titanic"])
    assert (args.losses, args.impl, args.head_init, args.threshold_metric, args.device) == (
        "softmax_ce,bce,mse", "handwritten", "matched", "accuracy", "auto"
    )
    assert (args.seeds, args.epochs, args.lr, args.threads, args.out, args.baseline) == (None,) * 6  # the task's own
    assert (args.quick, args.json, args.no_plots, args.set, args.loss_option) == (False, False, False, [], [])


def test_a_baseline_that_is_not_compared_names_the_losses_as_they_were_given(capsys):
    assert error_of([*NO_TRAINING, "--losses", "bce,mse", "--baseline", "softmax_ce"], capsys) == (
        "lossbench compare: error: Expected --baseline to be one of the losses bce, mse, but got 'softmax_ce'."
    )


def test_a_data_folder_of_the_wrong_layout_is_named_as_the_option(tmp_path, capsys):
    # the library says `data`; the command line user typed --data
    missing = tmp_path / "PASCAL_2007"
    assert error_of(["compare", "--task", "multilabel", "--device", "cpu", "--data", missing, "--out", tmp_path / "run"], capsys) == (
        f"lossbench compare: error: Expected --data to be a folder holding train.csv and train/ (the fastai PASCAL_2007 layout), "
        f"but {missing} does not exist."
    )


def test_an_empty_existing_folder_may_hold_the_run_and_the_write_check_leaves_nothing(tmp_path):
    out = tmp_path / "made-beforehand"
    out.mkdir()
    cli._check_new_dir(out)  # no error: empty
    cli._check_new_dir(tmp_path / "new" / "deeper")  # no error: it can be created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made-beforehand"] and list(out.iterdir()) == []


def test_an_empty_folder_inside_the_working_folder_may_hold_the_run_but_the_folder_above_may_not(tmp_path, monkeypatch):
    """Only the working folder and the folders that hold it are refused as --out, not the empty folders inside it."""
    (tmp_path / "work" / "runs" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    cli._check_new_dir(cli.Path("runs/mine"))  # no error: empty, and inside the working folder
    with pytest.raises(cli.UsageError) as refused:
        cli._check_new_dir(cli.Path(".."))
    assert str(refused.value) == ("Expected --out to be a new folder for the run, but '..' is the current folder or holds it; "
                                  "name a folder inside it, e.g. --out runs/my-run.")


def test_the_default_run_folder_counts_up_from_2_past_the_ones_that_exist(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.time, "strftime", lambda fmt: "20250101-120000")
    assert cli.default_run_dir("titanic", tmp_path) == tmp_path / "titanic-20250101-120000"
    (tmp_path / "titanic-20250101-120000").mkdir()
    assert cli.default_run_dir("titanic", tmp_path) == tmp_path / "titanic-20250101-120000-2"
    (tmp_path / "titanic-20250101-120000-2").mkdir()
    assert cli.default_run_dir("titanic", tmp_path) == tmp_path / "titanic-20250101-120000-3"
    assert len(list(tmp_path.iterdir())) == 2  # nothing is created


# ---------------------------------------------------------------------------------------------
# What is printed where
# ---------------------------------------------------------------------------------------------


def test_tasks_lines_up_the_defaults_under_the_summaries(capsys):
    assert cli.main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    width = max(len(line.split()[0]) for line in lines[::2])
    for summary, defaults in zip(lines[::2], lines[1::2]):
        column = width + 2
        assert summary[column - 2 : column] == "  " and summary[column] != " "
        assert defaults[:column] == " " * column and defaults[column:].startswith("defaults: ")


def test_progress_bars_follow_stderr_not_stdout(monkeypatch):
    # `lossbench compare --json > out.json` in a terminal still shows the bar, on stderr; `2> log` does not
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(isatty=lambda: False))
    assert cli._show_bars() is True
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: False))
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(isatty=lambda: True))
    assert cli._show_bars() is False


def test_ctrl_c_starts_waiting_for_the_save_only_after_the_last_epoch(monkeypatch):
    monkeypatch.setattr(cli, "_show_bars", lambda: False)
    interrupts = cli._Interrupts()
    bar = cli._TrainingBar(interrupts)
    for epoch in range(3):  # epochs 0 (before training), 1, 2 of 3
        bar(ProgressReport(epoch=epoch, epochs=3, val_accuracy={}, diverged={}))
        assert interrupts.waiting is False, epoch  # Ctrl-C still stops training at once
    bar(ProgressReport(epoch=3, epochs=3, val_accuracy={}, diverged={}))
    assert interrupts.waiting is True


def test_ctrl_c_stops_the_drawing_at_once_and_waits_again_while_the_folder_is_put_in_place(tmp_path):
    """While the plots are drawn Ctrl-C interrupts at once; before and after, it waits for the results to be saved."""
    interrupts = cli._Interrupts()
    interrupts.waiting = True  # training is over
    seen = []

    class Trained:
        def save(self, target, extra=None):
            target.mkdir()
            extra(target)
            seen.append(("saving", interrupts.waiting))

    def draw(tmp):
        seen.append(("drawing", interrupts.waiting))

    saved = cli._save_run(Trained(), tmp_path / "run", "titanic", draw, interrupts)
    assert saved == (tmp_path / "run", [], False)
    assert seen == [("drawing", False), ("saving", True)]


def test_where_the_run_went_instead_is_said_before_what_failed_there(tmp_path, monkeypatch):
    """When --out cannot be written and the plots then fail too, the first problem says where the results are."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "full-disk"

    class Trained:
        def save(self, target, extra=None):
            if target == out:
                raise OSError(28, "No space left on device")
            target.mkdir(parents=True)
            extra(target)

    def draw(tmp):
        raise RuntimeError("no display")

    saved, problems, interrupted = cli._save_run(Trained(), out, "titanic", draw)
    assert saved.parent == cli.Path("runs") and saved.name.startswith("titanic-") and not interrupted
    assert problems == [
        f"could not write {str(out)!r} (OSError: [Errno 28] No space left on device); the run was saved to {str(saved)!r} instead",
        f"the plots could not be drawn (RuntimeError: no display); the results are saved without them, and "
        f"`lossbench plot {saved}` draws them",
    ]


def test_ctrl_c_pressed_twice_while_saving_says_so_once(capsys):
    interrupts = cli._Interrupts()
    with pytest.raises(KeyboardInterrupt):
        interrupts._handle(2, None)  # training: stop now
    interrupts.waiting = True
    interrupts._handle(2, None)
    interrupts._handle(2, None)
    assert interrupts.pending is True
    assert capsys.readouterr().err == "\ninterrupted: saving the trained results first, without plots\n"


@pytest.mark.parametrize("error", [FileNotFoundError(2, "No such file or directory", "runs/x/runs.csv"),
                                   PermissionError(13, "Permission denied", "runs/x")], ids=["missing", "refused"])
def test_a_file_that_cannot_be_read_is_the_users_problem_said_plainly(error, capsys, monkeypatch):
    # a file removed or locked under the command is no bug of lossbench: no "unexpected", no exception's name
    def fails(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_show", fails)
    assert error_of(["show", "runs/x"], capsys) == f"lossbench show: error: {error}"


def test_losses_says_that_a_comparison_takes_mse_on_the_probability_only(capsys):
    """`lossbench losses` lists mse's option `on`; it says that a comparison takes only 'probability', as it does."""
    assert cli.main(["losses"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "mse's `on` is 'probability' in a comparison, whose scores are sigmoid(z); on='raw' (a regression on z) is for calling the loss yourself." in said
    with pytest.raises(ValueError, match=r"^Expected `on` of 'mse' to be 'probability' in a comparison, but got 'raw'"):
        lossbench.compare("titanic", losses=("mse",), overrides={"mse": {"on": "raw"}}, seeds=2, epochs=1, device="cpu")
