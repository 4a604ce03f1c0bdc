"""The `lossbench` command line: quick runs of every task, the table, --json, show and plot, bad input, Ctrl-C."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import lossbench
from lossbench import cli, plots, runner
from lossbench.tasks import titanic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = ["--seeds", "2", "--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread than on two that wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(argv: list[str]) -> tuple[int, str, str]:
    """``lossbench ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert len(data) > 10_000, f"{path} is only {len(data)} bytes"


def leftovers(parent: Path) -> list[str]:
    """Hidden partial directories that an interrupted save could leave behind."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def copy_of_run(out: Path, tmp_path: Path) -> Path:
    """The files of the run in `out` (its tables and config, not its plots), copied into tmp_path/copy."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    return copy


def table_rows(stdout: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the per-loss table (cells are separated by two or more spaces)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("loss "))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return header, rows


# ---------------------------------------------------------------------------------------------
# A quick Titanic run, shared by the tests that read its output
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def titanic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "titanic-run"
    code, stdout, stderr = run(["compare", "--task", "titanic", "--quick", *FAST, "--out", out])
    assert code == 0, stderr
    return out, stdout, stderr


def test_compare_prints_one_row_per_loss_with_the_run_s_numbers(titanic_run):
    out, stdout, _ = titanic_run
    header, rows = table_rows(stdout)
    assert header == ["loss", "test acc @0.5", "test acc @best thr", "best thr (val)", "test AUC", "train loss", "diverged"]
    assert [r[0] for r in rows] == ["softmax_ce", "bce", "mse"]
    summary = pd.read_csv(out / "summary.csv").set_index(["loss", "metric"])
    for row in rows:
        loss = row[0]
        for cell, metric in zip(row[1:5], ["test_accuracy", "test_accuracy_best", "best_threshold", "test_auc"]):
            mean, low, high = (float(v) for v in re.findall(r"-?\d+\.\d+", cell))
            digits = 2 if metric == "best_threshold" else 3
            expected = summary.loc[(loss, metric), ["mean", "ci_low", "ci_high"]].to_numpy(dtype=float)
            np.testing.assert_allclose([mean, low, high], expected, atol=0.51 * 10**-digits)
        assert float(row[5]) == pytest.approx(summary.loc[(loss, "final_train_loss"), "mean"], abs=5e-4)
        assert row[6] == "0/2"
    assert "the best threshold is chosen on the validation split" in stdout
    assert "2 seeds" in stdout


def test_compare_prints_paired_differences_with_a_plain_reading(titanic_run):
    out, stdout, _ = titanic_run
    section = stdout.split("Paired differences to bce")[1].split("\n\n")[0].splitlines()[1:]
    assert len(section) == 2 * 3  # softmax_ce and mse, three metrics each
    summary = pd.read_csv(out / "summary.csv").set_index(["loss", "metric"])
    for line in section:
        loss, label, interval, words = re.split(r"\s{2,}", line.strip())
        metric = {"test acc @0.5": "test_accuracy", "test acc @best thr": "test_accuracy_best", "test AUC": "test_auc"}[label]
        low, high = summary.loc[(loss, metric), ["diff_low", "diff_high"]]
        if low == high != 0:
            assert words.startswith("the same difference on every seed"), line
        elif low > 0 or high < 0:
            assert words.startswith("interval excludes 0"), line
        else:
            assert words == "interval includes 0: no clear difference", line


def test_compare_writes_the_run_directory_with_real_plots(titanic_run):
    out, stdout, stderr = titanic_run
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "runs.csv", "history.csv", "thresholds.csv", "calibration.csv", "summary.csv", "predictions.npz", "plots"} <= names
    pngs = sorted((out / "plots").iterdir())
    assert [p.name for p in pngs] == sorted(f"{name}.png" for name in plots.PLOT_NAMES)
    for png in pngs:
        assert_png(png)
        assert str(png) in stdout  # the paths are printed
    assert f"Wrote {out}:" in stdout
    listed = stdout.split(f"Wrote {out}:\n")[1].split("\n\n")[0].splitlines()
    data = sorted(str(p) for p in out.iterdir() if p.is_file())
    assert [line.strip() for line in listed] == data + [str(p) for p in pngs]  # every file once: data by name, plots last
    assert leftovers(out.parent) == []
    assert "Traceback" not in stderr
    config = json.loads((out / "config.json").read_text())
    assert config["seeds"] == [0, 1] and config["task_config"]["epochs"] == 2 and config["quick"] is True


def test_show_reprints_the_table_of_a_saved_run(titanic_run):
    out, stdout, _ = titanic_run
    code, shown, stderr = run(["show", out])
    assert code == 0, stderr
    before, after = stdout.split("Paired differences")[0], shown.split("Paired differences")[0]
    assert after == before  # the same table, read back from the CSV files
    assert f"Files in {out}:" in shown


def test_show_json_parses_and_holds_the_summary(titanic_run):
    out, _, _ = titanic_run
    code, shown, _ = run(["show", out, "--json"])
    assert code == 0
    doc = json.loads(shown)
    summary = pd.read_csv(out / "summary.csv")
    assert len(doc["summary"]) == len(summary)
    assert [row["loss"] for row in doc["table"]] == ["softmax_ce", "bce", "mse"]
    assert doc["run_dir"] == str(out)
    assert len(doc["plots"]) == len(plots.PLOT_NAMES)


def test_plot_redraws_the_plots_of_a_saved_run(titanic_run, tmp_path):
    out, _, _ = titanic_run
    copy = copy_of_run(out, tmp_path)
    code, stdout, stderr = run(["plot", copy, "--epoch", "1"])
    assert code == 0, stderr
    pngs = sorted((copy / "plots").glob("*.png"))
    assert len(pngs) == len(plots.PLOT_NAMES)
    for png in pngs:
        assert_png(png)
    assert stdout.split() == [str(p) for p in pngs]
    assert leftovers(copy) == []


def test_plot_replaces_its_own_figures_and_leaves_the_users_files_and_permissions(titanic_run, tmp_path):
    out, _, _ = titanic_run
    copy = copy_of_run(out, tmp_path)
    (copy / "plots").mkdir()
    (copy / "plots" / "my_annotated.png").write_bytes(b"mine")  # a file of the user's own beside the figures
    (copy / "plots" / "calibration.png").write_bytes(b"old")  # an old figure: replaced
    os.chmod(copy / "plots", 0o755)
    code, stdout, stderr = run(["plot", copy])
    assert code == 0, stderr
    assert (copy / "plots" / "my_annotated.png").read_bytes() == b"mine"
    assert_png(copy / "plots" / "calibration.png")
    assert stat.S_IMODE((copy / "plots").stat().st_mode) == 0o755  # the folder as it was, not a private new one
    assert stdout.split() == sorted(str(copy / "plots" / f"{name}.png") for name in plots.PLOT_NAMES)
    assert leftovers(copy) == []


def test_plot_into_a_new_plots_folder_gives_it_the_users_usual_permissions(titanic_run, tmp_path):
    out, _, _ = titanic_run
    copy = copy_of_run(out, tmp_path)
    umask = os.umask(0o022)
    try:
        code, _, stderr = run(["plot", copy])
    finally:
        os.umask(umask)
    assert code == 0, stderr
    assert stat.S_IMODE((copy / "plots").stat().st_mode) == 0o755  # as `compare` makes it (mkdtemp would give 0o700)
    assert stat.S_IMODE((copy / "plots" / "calibration.png").stat().st_mode) == 0o644


def test_plot_where_plots_is_a_file_is_one_line_and_touches_nothing(titanic_run, tmp_path):
    out, _, _ = titanic_run
    copy = copy_of_run(out, tmp_path)
    (copy / "plots").write_text("not a folder")
    code, _, stderr = run(["plot", copy])
    assert code == 2
    assert _last_line(stderr) == (f"lossbench plot: error: Expected RUN_DIR/plots to be the folder of the run's plots, but "
                                  f"'{copy / 'plots'}' is a file; move it away and draw again.")
    assert (copy / "plots").read_text() == "not a folder" and leftovers(copy) == []


@pytest.mark.parametrize("has_plots", [True, False], ids=["plots-folder", "no-plots-folder"])
def test_plot_into_a_folder_that_refuses_files_draws_nothing(titanic_run, tmp_path, monkeypatch, has_plots):
    """The refusal comes before the seconds of drawing, in one line, and leaves the run as it was."""
    out, _, _ = titanic_run
    copy = copy_of_run(out, tmp_path)
    if has_plots:
        (copy / "plots").mkdir()
    refused = copy / "plots"
    real_mkstemp = cli.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # as a read-only folder would answer (the tests may run as root)
        if Path(dir) == refused:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    drawn = []
    monkeypatch.setattr(cli.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(plots, "save_plots", lambda *args, **kwargs: drawn.append(args))
    code, stdout, stderr = run(["plot", copy])
    assert code == 2 and stdout == "" and drawn == []
    assert _last_line(stderr) == (f"lossbench plot: error: Expected RUN_DIR/plots to be a folder this user can write, but "
                                  f"'{refused}' refuses it (Permission denied); nothing was drawn.")
    assert refused.is_dir() == has_plots and leftovers(copy) == []


def test_plot_that_fails_into_a_new_plots_folder_removes_it(titanic_run, tmp_path):
    out, _, _ = titanic_run
    copy = copy_of_run(out, tmp_path)
    code, _, _ = run(["plot", copy, "--epoch", "99"])
    assert code == 2
    assert not (copy / "plots").exists() and leftovers(copy) == []


def _last_line(stderr: str) -> str:
    """What a terminal shows last: the progress bar (cleared with \\r) is not part of the message."""
    assert "Traceback" not in stderr
    return stderr.strip().split("\n")[-1].split("\r")[-1]


def test_plot_of_an_unrecorded_epoch_is_a_usage_error(titanic_run):
    out, _, _ = titanic_run
    code, _, stderr = run(["plot", out, "--epoch", "99"])
    assert code == 2
    assert _last_line(stderr) == "lossbench plot: error: Expected --epoch to be a recorded epoch, 0 to 2, but got 99."
    assert leftovers(out) == []  # the hidden folder it drew into is gone


def test_interrupted_redraw_keeps_the_old_plots(titanic_run, tmp_path, monkeypatch):
    out, _, _ = titanic_run
    copy = copy_of_run(out, tmp_path)
    (copy / "plots").mkdir()
    for png in (out / "plots").iterdir():
        (copy / "plots" / png.name).write_bytes(png.read_bytes())

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "accuracy_vs_threshold", interrupt)  # the second plot: the first one is drawn
    code, _, stderr = run(["plot", copy])
    assert code == 130 and _last_line(stderr) == "lossbench plot: interrupted"
    assert sorted(p.name for p in (copy / "plots").iterdir()) == sorted(p.name for p in (out / "plots").iterdir())
    assert leftovers(copy) == []


# ---------------------------------------------------------------------------------------------
# The other tasks, --json, and options that reach the run
# ---------------------------------------------------------------------------------------------


def test_multilabel_quick_run_with_json(tmp_path):
    out = tmp_path / "ml"
    code, stdout, stderr = run(["compare", "--task", "multilabel", "--quick", *FAST, "--json", "--out", out])
    assert code == 0, stderr
    doc = json.loads(stdout)  # nothing but JSON on stdout
    assert doc["task"] == "multilabel" and doc["kind"] == "multilabel"
    assert [row["loss"] for row in doc["table"]] == ["softmax_ce", "bce", "mse"]
    assert all("test_exact_match" in row for row in doc["table"])
    assert {Path(p).name for p in doc["plots"]} == {f"{name}.png" for name in plots.PLOT_NAMES}
    for p in doc["plots"]:
        assert_png(Path(p))
    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary.loss == "bce") & (summary.metric == "test_exact_match")].iloc[0]
    table = {r["loss"]: r for r in doc["table"]}
    assert table["bce"]["test_exact_match"] == pytest.approx(row["mean"])
    # the text report of the same run says the accuracy is Hamming accuracy, and adds exact match
    code, shown, _ = run(["show", out])
    header, rows = table_rows(shown)
    assert "exact match @0.5" in header
    assert "Accuracy is Hamming accuracy" in shown


def test_mammography_grid_quick_run(tmp_path):
    out = tmp_path / "mammo"
    code, stdout, stderr = run(["compare", "--task", "mammography", "--quick", *FAST, "--target", "grid", "--out", out])
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["task_kind"] == "grid" and config["task_config"]["target"] == "grid"
    header, rows = table_rows(stdout)
    assert [r[0] for r in rows] == ["softmax_ce", "bce", "mse"]
    assert "areas" in stdout  # Hamming accuracy over areas
    assert len(list((out / "plots").glob("*.png"))) == len(plots.PLOT_NAMES)


def test_options_reach_the_run_and_the_default_folder_is_new(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "compare", "--task", "titanic", "--quick", *FAST, "--no-plots", "--json",
        "--losses", "bce,bce@weighted", "--impl", "bce=reference", "--loss-option", "bce@weighted.pos_weight=4",
        "--set", "hidden=16", "--lr", "0.01", "--optimizer", "sgd", "--baseline", "bce@weighted",
    ]  # fmt: skip
    code, stdout, stderr = run(argv)
    assert code == 0, stderr
    doc = json.loads(stdout)
    run_dir = Path(doc["run_dir"])
    assert run_dir.parent == Path("runs") and re.fullmatch(r"titanic-\d{8}-\d{6}", run_dir.name)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["loss_setups"]["bce"]["impl"] == "reference"
    assert config["loss_setups"]["bce@weighted"] == {**config["loss_setups"]["bce@weighted"], "impl": "handwritten", "options": {"pos_weight": 4.0}}
    assert config["task_config"]["hidden"] == 16 and config["body"]["hidden"] == 16
    assert config["task_config"]["lr"] == 0.01 and config["task_config"]["optimizer"] == "sgd"
    assert doc["baseline"] == "bce@weighted" and doc["plots"] == []
    assert not (run_dir / "plots").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2, nothing written
# ---------------------------------------------------------------------------------------------

BAD_DATA = "name,age\nsomeone,3\n"

BAD = [
    pytest.param(["--task", "nope"], "invalid choice: 'nope' (choose from 'titanic', 'multilabel', 'mammography')", id="unknown-task"),
    pytest.param(["--task", "titanic", "--losses", "bce,hinge"], "among softmax_ce, bce, mse, focal", id="unknown-loss"),
    pytest.param(["--task", "titanic", "--impl", "bogus"], "one of handwritten, naive, reference", id="unknown-impl"),
    pytest.param(["--task", "titanic", "--impl", "mse=no_such_module:fn"], "Expected --impl 'no_such_module:fn' to import a loss function as package.module:function, but no module named 'no_such_module'", id="impl-not-importable"),
    pytest.param(["--task", "titanic", "--impl", "json:no_such_function"], "Expected --impl 'json:no_such_function' to import a loss function as package.module:function, but module 'json' has no attribute 'no_such_function'.", id="impl-no-function"),
    pytest.param(["--task", "titanic", "--impl", "hinge=naive"], "one of the losses softmax_ce, bce, mse, but got 'hinge'", id="impl-for-unknown-loss"),
    pytest.param(["--task", "titanic", "--data", "{bad_data}"], "bad.csv is missing the required column(s) pclass, survived", id="bad-data-file"),
    pytest.param(["--task", "titanic", "--data", "{missing}"], "there is no such file", id="missing-data-file"),
    pytest.param(["--task", "titanic", "--epochs", "0"], "Expected --epochs to be a positive whole number, but got '0'", id="epochs-0"),
    pytest.param(["--task", "titanic", "--seeds", "-1"], "Expected --seeds to be a positive whole number, but got '-1'", id="seeds-negative"),
    pytest.param(["--task", "titanic", "--lr", "-1"], "Expected --lr to be a positive number, but got '-1'", id="lr-negative"),
    pytest.param(["--task", "titanic", "--batch-size", "2.5"], "Expected --batch-size to be a positive whole number", id="batch-size-fraction"),
    pytest.param(["--task", "titanic", "--target", "grid"], "Expected --target only with a task that has one (mammography)", id="target-on-titanic"),
    pytest.param(["--task", "titanic", "--set", "hiden=3"], "one of seeds, epochs, batch_size, lr, optimizer", id="unknown-set-key"),
    pytest.param(["--task", "titanic", "--set", "optimizer=rmsprop"], "Expected --set optimizer to be one of adam, sgd, but got 'rmsprop'", id="set-bad-choice"),
    pytest.param(["--task", "titanic", "--set", "seeds=0"], "Expected --set seeds to be a positive whole number", id="set-zero-seeds"),
    pytest.param(["--task", "titanic", "--seeds", "3,3"], "Expected --seeds to be a count, as in 5 (seeds 0..4), or distinct seeds 0 or more separated by commas, as in 3,7, but got '3,3'", id="seeds-repeated"),
    pytest.param(["--task", "titanic", "--seeds", "1,-2"], "or distinct seeds 0 or more separated by commas, as in 3,7, but got '1,-2'", id="seeds-list-negative"),
    pytest.param(["--task", "titanic", "--set", "seeds=1,x"], "Expected --set seeds to be a whole number, but got 'x'.", id="set-seeds-list-typo"),
    pytest.param(["--task", "titanic", "--set", "seeds=4,4"], "Expected --set seeds to be a positive whole number or distinct non-negative whole numbers, but got (4, 4).", id="set-seeds-repeated"),
    pytest.param(["--task", "titanic", "--loss-option", "bce.gamma=2"], "Expected the options of 'bce' (overrides, or --loss-option) to be among head_lr_scale, pos_weight, weight, but got 'gamma'.", id="unknown-loss-option"),
    pytest.param(["--task", "titanic", "--loss-option", "mse.on=raw"], "Expected `on` of 'mse' to be 'probability' in a comparison, but got 'raw'", id="mse-on-raw"),
    pytest.param(["--task", "titanic", "--loss-option", "hinge.gamma=2"], "name one of the losses", id="loss-option-for-unknown-loss"),
    pytest.param(["--task", "titanic", "--baseline", "focal"], "Expected --baseline to be one of the losses", id="baseline-not-compared"),
    pytest.param(["--task", "titanic", "--device", "tpu"], "Expected --device to be 'auto', 'cpu', 'cuda' or 'cuda:N', but got 'tpu'", id="unknown-device"),
    pytest.param(["--task", "titanic", "--device", "mps"], "Expected --device to be 'auto', 'cpu', 'cuda' or 'cuda:N', but got 'mps'", id="other-torch-device"),
    pytest.param(["--task", "titanic", "--device", "cpu:1"], "Expected --device to be 'auto', 'cpu', 'cuda' or 'cuda:N', but got 'cpu:1'", id="cpu-with-an-index"),
    pytest.param(["--task", "titanic", "--epochs", "0"], "lossbench compare: error: Expected --epochs to be", id="option-named-once"),
    pytest.param(["--task", "titanic", "--lr", "1e39"], "Expected --lr to be at most 3.4e+38, the largest float32, but got 1e+39.", id="lr-past-float32"),
    pytest.param(["--task", "titanic", "--loss-option", "bce.head_lr_scale=1e300"], "Expected `lr x head_lr_scale of 'bce'` to be at most 3.4e+38",
                 id="head-lr-past-float32"),
    *[pytest.param(["--task", "mammography" if key == "target" else "titanic", option, value, "--set", f"{key}={other}"],
                   f"Expected {option} or --set {key}=, not both, but got {option} {value} and --set {key}={other}.", id=f"option-and-set-{key}")
      for key, option, value, other in [("seeds", "--seeds", "3", "5"), ("epochs", "--epochs", "1", "3"), ("lr", "--lr", "0.1", "0.2"),
                                        ("batch_size", "--batch-size", "16", "32"), ("optimizer", "--optimizer", "sgd", "adam"),
                                        ("target", "--target", "grid", "patch")]],
    pytest.param(["--task", "titanic", "--set", "hidden=3", "--set", "hidden=4"], "Expected each setting once, but got --set hidden= twice.", id="set-twice"),
    pytest.param(["--task", "titanic", "--loss-option", "bce.pos_weight=1", "--loss-option", "bce.pos_weight=9"],
                 "Expected each loss option once, but got --loss-option bce.pos_weight= twice.", id="loss-option-twice"),
    pytest.param(["--task", "mammography", "--set", "patch_size=1048576"], "Expected the synthetic patches to fit in memory, but", id="patches-past-memory"),
    pytest.param(["--task", "titanic", "--data", "{one_class}"], "cannot be trained on: Expected the train split to hold both classes", id="one-class-data"),
    pytest.param(["--task", "titanic", "--impl", "bce=softmax_ce:reference"], "'softmax_ce:reference', which names the built-in loss family softmax_ce: to train softmax_ce, add it to the losses instead.",
                 id="impl-of-another-family"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_DATA)
    shipped = pd.read_csv(titanic.SHIPPED_PATH)
    shipped.assign(survived=1).to_csv(tmp_path / "one_class.csv", index=False)  # every passenger survived
    argv = [a.format(bad_data=bad, missing=tmp_path / "missing.csv", one_class=tmp_path / "one_class.csv") for a in argv]
    out = tmp_path / "run"
    device = [] if "--device" in argv else ["--device", "cpu"]  # an option given twice is a mistake of its own
    code, stdout, stderr = run(["compare", "--quick", *device, *argv, "--out", out])
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("lossbench compare: error: ")
    assert message in stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists()


@pytest.mark.parametrize("how", [["--seeds", "3,1"], ["--set", "seeds=3,1"]], ids=["--seeds", "--set"])
def test_a_list_of_seeds_reruns_those_seeds_of_a_larger_run(how, tmp_path):
    """--seeds 3,1 trains seeds 3 and 1 only, and each gives the numbers it gave in a run of seeds 0..3."""
    tiny = ["--task", "titanic", "--epochs", "2", "--device", "cpu", "--set", "hidden=8"]
    code, stdout, stderr = run(["compare", *tiny, *how, "--out", tmp_path / "some"])
    assert code == 0, stderr
    assert "3 losses x 2 seeds (3, 1), 2 epochs" in stdout.splitlines()[1]
    assert json.loads((tmp_path / "some" / "config.json").read_text())["seeds"] == [3, 1]
    code, _, stderr = run(["compare", *tiny, "--seeds", "4", "--out", tmp_path / "all"])
    assert code == 0, stderr
    some = pd.read_csv(tmp_path / "some" / "runs.csv").set_index(["loss", "seed"]).sort_index()
    every = pd.read_csv(tmp_path / "all" / "runs.csv").set_index(["loss", "seed"]).sort_index()
    assert sorted(set(some.index.get_level_values("seed"))) == [1, 3]
    numbers = some.select_dtypes("number").columns.drop("model")  # the model's row in the run, not a result
    np.testing.assert_allclose(some[numbers].to_numpy(float), every.loc[some.index, numbers].to_numpy(float), rtol=0, atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_without_cuda_is_one_line_and_exit_2(tmp_path):
    code, _, stderr = run(["compare", "--task", "titanic", "--device", "cuda", "--out", tmp_path / "run"])
    assert code == 2
    assert stderr.strip() == (
        "lossbench compare: error: Expected a CUDA device for `device='cuda'`, but CUDA is not available here; use 'cpu' or 'auto'."
    )


def test_an_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    code, _, stderr = run(["compare", "--task", "titanic", "--out", out])
    assert code == 2
    assert "already holds files" in stderr and len(stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["config.json"]


def test_show_of_a_folder_that_is_not_a_run(tmp_path):
    code, _, stderr = run(["show", tmp_path])
    assert code == 2
    assert stderr.startswith("lossbench show: error: Expected a lossbench run directory") and "lacks" in stderr


# ---------------------------------------------------------------------------------------------
# Ctrl-C: exit 130; during training no run directory (not even a hidden partial one), during the plots the results
# ---------------------------------------------------------------------------------------------


def test_ctrl_c_during_training(tmp_path, monkeypatch):
    calls = []
    original = runner.Recorder.__call__

    def record_then_interrupt(self, epoch, *args, **kwargs):
        calls.append(epoch)
        if epoch == 1:  # after the first training epoch: the progress bar is open
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(runner.Recorder, "__call__", record_then_interrupt)
    out = tmp_path / "runs" / "run"
    code, stdout, stderr = run(["compare", "--task", "titanic", "--quick", *FAST, "--out", out])
    assert calls == [0, 1]
    assert code == 130
    assert stderr.strip().splitlines()[-1] == "lossbench compare: interrupted"
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists()
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2], ids=["drawn-here", "drawn-in-processes"])
def test_ctrl_c_during_plotting_keeps_the_trained_results_without_plots(tmp_path, monkeypatch, workers):
    drawn = tmp_path / "drawn.txt"  # written by the drawing, wherever it runs

    def interrupt(result, *args, **kwargs):
        drawn.write_text(type(result).__name__)
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "accuracy_vs_threshold", interrupt)  # one of five plots
    monkeypatch.setattr(plots, "plot_workers", lambda: workers)
    out = tmp_path / "runs" / "run"
    code, stdout, stderr = run(["compare", "--task", "titanic", "--quick", *FAST, "--out", out])
    assert drawn.read_text() == "Result"
    assert code == 130
    assert stderr.strip().splitlines()[-1] == (
        f"lossbench compare: interrupted while drawing the plots: the results are saved without them, and `lossbench plot {out}` draws them"
    )
    assert "test acc @0.5" in stdout  # the table is printed all the same
    assert list((tmp_path / "runs").iterdir()) == [out]  # no hidden partial directory is left
    assert {p.name for p in out.iterdir()} == {"config.json", "runs.csv", "history.csv", "thresholds.csv", "calibration.csv",
                                              "summary.csv", "predictions.npz"}  # fmt: skip
    assert lossbench.load(out).runs.shape[0] == 6


@pytest.mark.parametrize("terminal", [False, True], ids=["log-file", "terminal"])
def test_progress_bars_go_to_a_terminal_only(tmp_path, monkeypatch, terminal):
    monkeypatch.setattr(cli, "_show_bars", lambda: terminal)
    code, _, stderr = run(["compare", "--task", "titanic", "--quick", *FAST, "--out", tmp_path / "run"])
    assert code == 0
    assert ("\r" in stderr and "training" in stderr and "plots" in stderr) is terminal
    if not terminal:
        assert stderr == ""  # a log file gets no bar updates


def test_ctrl_c_after_training_waits_until_the_results_are_saved(tmp_path, monkeypatch):
    assemble = runner.assemble

    def interrupted_while_assembling(*args, **kwargs):  # Ctrl-C once every epoch is trained
        os.kill(os.getpid(), signal.SIGINT)
        return assemble(*args, **kwargs)

    monkeypatch.setattr(runner, "assemble", interrupted_while_assembling)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if these tests run under nohup
    out = tmp_path / "runs" / "run"
    try:
        code, stdout, stderr = run(["compare", "--task", "titanic", "--quick", *FAST, "--out", out])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the command's handler is gone again
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 130
    assert "interrupted: saving the trained results first, without plots" in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"lossbench compare: interrupted after training: the results are saved without plots, and `lossbench plot {out}` draws them"
    )
    assert "test acc @0.5" in stdout
    assert not (out / "plots").exists() and lossbench.load(out).runs.shape[0] == 6


def test_a_process_that_ignores_ctrl_c_goes_on_ignoring_it(tmp_path):
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup, or a job started in the background
    try:
        with cli._Interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)  # nothing happens
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


# ---------------------------------------------------------------------------------------------
# Listing, help, and the option parsers
# ---------------------------------------------------------------------------------------------


def test_tasks_print_what_each_is_and_its_defaults_and_losses_a_line_each():
    code, stdout, _ = run(["tasks"])
    assert code == 0
    lines = stdout.splitlines()
    assert [line.split()[0] for line in lines[::2]] == lossbench.tasks.names()
    assert all(len(line.split(None, 1)[1]) > 20 for line in lines[::2])
    assert all("--data reads" in line for line in lines[::2])  # every task reads a real data set's own format
    from lossbench.tasks import multilabel

    assert lines[3].split() == ["defaults:", *(f"{k}={getattr(multilabel.Config(), k)}" for k in ("seeds", "epochs", "batch_size", "lr")),
                                "optimizer=adam;", "--quick:", *(f"{k}={v}" for k, v in multilabel.QUICK.items())]
    code, stdout, _ = run(["losses"])
    assert code == 0
    lines = stdout.splitlines()
    assert [line.split()[0] for line in lines[:4]] == [f.name for f in lossbench.losses.families()]
    assert lines[4] == "" and "--impl bce=naive" in lines[5]


@pytest.mark.parametrize("command", [[], ["compare"], ["tasks"], ["losses"], ["show"], ["plot"], ["check"], ["grade"], ["exercises"],
                                     ["exercises", "list"], ["exercises", "export"]])
def test_help_teaches_with_an_example(command):
    code, stdout, _ = run([*command, "--help"])
    assert code == 0
    assert "example" in stdout
    assert stdout.startswith("usage: lossbench")


def test_compare_help_says_what_it_prints_and_writes():
    _, stdout, _ = run(["compare", "--help"])
    for words in ("prints:", "writes", "paired differences", "runs/<task>-<YYYYmmdd-HHMMSS>", "--loss-option", "--set", "--target"):
        assert words in stdout


def test_parse_settings_follows_the_field_types():
    from lossbench.tasks import mammography, multilabel, titanic

    assert cli.parse_settings(["channels=4,8", "upscale=2"], multilabel.Config) == {"channels": (4, 8), "upscale": 2}
    assert cli.parse_settings(["target=grid", "contrast=3"], mammography.Config) == {"target": "grid", "contrast": 3.0}
    assert cli.parse_settings(["bias=false", "lr=0.5"], titanic.Config) == {"bias": False, "lr": 0.5}
    # a count or a list of seeds; a list in brackets, as Python or JSON writes it, as --seeds and --loss-option take it
    assert cli.parse_settings(["seeds=3"], titanic.Config) == {"seeds": 3}
    assert cli.parse_settings(["seeds=3,7"], titanic.Config) == cli.parse_settings(["seeds=[3, 7]"], titanic.Config) == {"seeds": (3, 7)}
    assert cli.parse_settings(["seeds=[5]"], titanic.Config) == {"seeds": (5,)}
    assert cli.parse_settings(["channels=[4,8]"], multilabel.Config) == {"channels": (4, 8)}
    with pytest.raises(cli.UsageError, match=r"^Expected --set upscale to be a whole number, but got '1.5'\.$"):
        cli.parse_settings(["upscale=1.5"], multilabel.Config)
    with pytest.raises(cli.UsageError, match=r"^Expected --set KEY=VALUE, as in --set epochs=20, but got 'epochs'\.$"):
        cli.parse_settings(["epochs"], multilabel.Config)


def test_parse_impl_and_loss_options():
    assert cli.parse_impl("reference", ["bce"]) == "reference"
    assert cli.parse_impl("bce=lossbench.losses.bce:binary_cross_entropy_naive", ["bce", "mse"]) == {
        "bce": "lossbench.losses.bce:binary_cross_entropy_naive"
    }
    with pytest.raises(cli.UsageError, match="one implementation for all losses or comma-separated loss=impl pairs"):
        cli.parse_impl("naive,reference", ["bce", "mse"])
    assert cli.parse_loss_options(["softmax_ce.weight=1,3", "focal.alpha=none"], ["softmax_ce", "focal"]) == {
        "softmax_ce": {"weight": [1.0, 3.0]},
        "focal": {"alpha": None},
    }
    for written in ("[1,3]", "[1, 3]", " [ 1 , 3 ] "):  # as Python or JSON writes a list
        assert cli.parse_loss_options([f"softmax_ce.weight={written}"], ["softmax_ce"]) == {"softmax_ce": {"weight": [1.0, 3.0]}}
    with pytest.raises(cli.UsageError, match=r"LOSS\.KEY=VALUE"):
        cli.parse_loss_options(["pos_weight=4"], ["bce"])


def test_threads_option_is_checked_and_restored(tmp_path):
    before = torch.get_num_threads()
    code, _, _ = run(["compare", "--task", "titanic", "--quick", *FAST, "--threads", "2", "--no-plots", "--out", tmp_path / "run"])
    assert code == 0
    assert torch.get_num_threads() == before
    assert lossbench.load(tmp_path / "run").config["threads"] == 2
    code, _, err = run(["compare", "--task", "titanic", "--threads", "0"])
    assert code == 2 and "--threads" in err


def test_a_students_loss_beside_the_built_in_one_gets_its_own_row_under_it(tmp_path, monkeypatch):
    # the README's `--losses bce,bce@mine --impl bce@mine=mysolution:...` and the loss exercises' "the table
    # then has a row `bce@mine` under `bce`"; a right answer trains the same models as the built-in loss
    (tmp_path / "mysolution.py").write_text(
        "import torch.nn.functional as F\n\n\ndef bce(logits, target):\n"
        "    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, stdout, stderr = run(["compare", "--task", "titanic", "--quick", *FAST, "--no-plots", "--out", tmp_path / "run",
                                "--losses", "bce,bce@mine", "--impl", "bce@mine=mysolution:bce"])
    assert code == 0, stderr
    rows = [line.split() for line in stdout.splitlines() if line.startswith("  bce")]
    assert [r[0] for r in rows[:2]] == ["bce", "bce@mine"]
    assert rows[0][1:] == rows[1][1:]  # the same numbers: the same models, trained with the same loss
    assert "Implementations: bce handwritten, bce@mine mysolution:bce." in stdout
    root = Path(__file__).resolve().parents[1]
    assert "--losses bce,bce@mine --impl bce@mine=mysolution:" in (root / "README.md").read_text()
    exercise = " ".join((root / "notebooks" / "exercises" / "losses_solutions.ipynb").read_text(encoding="utf-8").split())
    assert "(the table then has a row `bce@mine` under `bce`)" in exercise
