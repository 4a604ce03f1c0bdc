"""Loading a run directory: a whole one loads, and a damaged one is a ValueError that names the file, in Python and on the command line."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lossbench
from lossbench import cli
from lossbench.results import DAMAGED


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """A tiny titanic run (3 losses x 2 seeds, 1 epoch), saved once for the module; tests damage copies of it."""
    result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})
    return result.save(tmp_path_factory.mktemp("saved") / "run")


@pytest.fixture
def run(saved_run, tmp_path) -> Path:
    """A fresh copy of the saved run, for a test to damage."""
    return Path(shutil.copytree(saved_run, tmp_path / "run"))


def _edit_config(**changes):
    def edit(path: Path) -> None:
        config = json.loads(path.read_text())
        config.update(changes)
        path.write_text(json.dumps(config))

    return edit


def _edit_csv(change):
    def edit(path: Path) -> None:
        change(pd.read_csv(path)).to_csv(path, index=False)

    return edit


def _write(data: bytes):
    return lambda path: path.write_bytes(data)


def _cut(n_bytes: int):
    return lambda path: path.write_bytes(path.read_bytes()[:n_bytes])


def _cut_lines(n_lines: int):
    return lambda path: path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:n_lines]))


def _drop_last_lines(n_lines: int):
    return lambda path: path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-n_lines]))


def _set_cell(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    frame[column] = frame[column].astype(object)
    frame.loc[0, column] = value
    return frame


def _some_predictions(path: Path) -> None:
    with np.load(path) as npz:
        kept = {"val_scores": npz["val_scores"]}
    with open(path, "wb") as fh:  # np.savez would add .npz to a name without it; the name has it already
        np.savez(fh, **kept)


def _edit_predictions(change):
    def edit(path: Path) -> None:
        with np.load(path) as npz:
            arrays = change({k: npz[k] for k in npz.files})
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    return edit


DAMAGE = [
    # config.json: not JSON, or JSON of the wrong shape
    pytest.param("config.json", _write(b'{"task": '), r"could not be parsed: Expecting value", id="config-cut-short"),
    pytest.param("config.json", _write(b"\xff\xfe\x00{}"), r"could not be parsed: 'utf-8' codec", id="config-binary"),
    pytest.param("config.json", _write(b"[1, 2]"), r"to be a JSON object with a list of losses, but it holds an array", id="config-array"),
    pytest.param("config.json", _write(b"{}"), r'has no "losses" key', id="config-empty-object"),
    pytest.param("config.json", _edit_config(losses="bce"), r'"losses" in .* to be a non-empty list of loss names, but got "bce"',
                 id="config-losses-a-string"),
    pytest.param("config.json", _edit_config(losses=[]), r'"losses" in .* non-empty list', id="config-losses-empty"),
    pytest.param("config.json", _edit_config(losses=["softmax_ce", "bce", 5]), r'"losses" in .* to be a non-empty list of loss names, but got '
                 r'\["softmax_ce", "bce", 5\]', id="config-a-loss-not-a-name"),
    pytest.param("config.json", _edit_config(baseline="hinge"), r'"baseline" in .* one of the losses', id="config-baseline-not-a-loss"),
    pytest.param("config.json", _edit_config(seeds=2), r'"seeds" in .* to be an array, but got 2', id="config-seeds-a-number"),
    pytest.param("config.json", _edit_config(loss_setups={"bce": "one_logit"}), r'"loss_setups" in .* maps to "one_logit"',
                 id="config-loss-setup-a-string"),
    # the tables
    pytest.param("summary.csv", _cut_lines(4), r"is incomplete: it has no rows for the losses 'bce', 'mse'", id="summary-cut-short"),
    pytest.param("runs.csv", lambda path: path.write_bytes(path.read_bytes()[:-150]), r"to end with a newline, as written, but its last line is cut off",
                 id="runs-last-line-cut"),
    pytest.param("summary.csv", _edit_csv(lambda f: f[~((f["loss"] == "bce") & (f["metric"] == "test_auc"))]),
                 r"is incomplete: it has no rows for the metrics test_auc of the loss 'bce'", id="summary-without-a-metric"),
    pytest.param("summary.csv", _edit_csv(lambda f: _set_cell(f, "mean", "oops")), r"column mean of .* to hold numbers, but it holds 'oops'",
                 id="summary-text-for-a-number"),
    pytest.param("runs.csv", _write(b""), r"to be a CSV table, but it is empty", id="runs-empty"),
    pytest.param("runs.csv", _edit_csv(lambda f: f[f["loss"] != "mse"]), r"is incomplete: it has no rows for the loss 'mse'",
                 id="runs-without-a-loss"),
    pytest.param("history.csv", _write(b"loss,seed\n\xff\xfe\xfa,1\n" * 20), r"could not be parsed: 'utf-8' codec", id="history-binary"),
    pytest.param("history.csv", _write(bytes(range(256)) * 4), r"could not be parsed", id="history-garbage"),
    pytest.param("history.csv", _edit_csv(lambda f: f.drop(columns="val_loss")), r"but it lacks val_loss", id="history-without-a-column"),
    pytest.param("thresholds.csv", _write(b"a,b\n1,2\n"), r"but it lacks loss, seed, split", id="thresholds-another-table"),
    pytest.param("calibration.csv", _edit_csv(lambda f: f.iloc[:0]), r"is incomplete: it has no rows for the losses", id="calibration-header-only"),
    # whole lines cut off a per-model table, or a config.json edited to other models: no longer the run that was written
    *[pytest.param(name, _drop_last_lines(cut), rf"is incomplete: the loss 'mse' with seed 1 has {left}, where the run wrote {rows}",
                   id=f"{name.split('.')[0]}-lines-cut-off")
      for name, cut, left, rows in [("history.csv", 1, "1 row", 2), ("thresholds.csv", 5, "193 rows", 198), ("calibration.csv", 5, "5 rows", 10)]],
    pytest.param("config.json", _edit_config(seeds=[0, 1, 2]), r"runs\.csv to hold rows for each loss with each seed of .*config\.json and no "
                 r"other, but it has none for the loss 'bce' with seed 2", id="config-seeds-edited"),
    pytest.param("config.json", _edit_config(baseline="mse"), r'"baseline" in .* to be the baseline of summary\.csv\'s paired differences, bce, '
                 r'but got "mse"', id="config-baseline-edited"),
    # the predictions
    pytest.param("predictions.npz", _write(b"junk junk junk"), r"\.npz archive of the predictions .* but it is not a zip file",
                 id="predictions-junk"),
    pytest.param("predictions.npz", _write(b""), r"\.npz archive of the predictions .* but it is empty", id="predictions-empty"),
    pytest.param("predictions.npz", _cut(200), r"\.npz archive of the predictions .* but it could not be parsed", id="predictions-cut-short"),
    # each of these was a wrong table or plot, or an "unexpected" error, from show, show --json or plot
    pytest.param("config.json", _edit_config(losses=["bce", "bce", "mse", "softmax_ce"]), r'"losses" in .* to name each loss once',
                 id="config-a-loss-twice"),
    pytest.param("config.json", _edit_config(loss_setups={"bce": {"options": [1]}}), r'the options of .bce. in "loss_setups" of .* to be an object, but got \[1\]',
                 id="config-options-a-list"),
    pytest.param("config.json", _edit_config(threshold_metric="bogus"), r'"threshold_metric" in .* to be one of accuracy, balanced_accuracy',
                 id="config-unknown-threshold-metric"),
    pytest.param("history.csv", _edit_csv(lambda f: f.assign(epoch=f["epoch"] + 0.5)), r"column epoch of .* to hold epochs 0, 1, 2, \.\.\., but it holds 0\.5",
                 id="history-half-epochs"),
    pytest.param("predictions.npz", _edit_predictions(lambda p: p | {"test_scores": p["test_scores"][:2]}),
                 r"to hold a score per model of runs\.csv \(6\), example and output, but they are .*test_scores \(2, ", id="predictions-of-two-models"),
    pytest.param("predictions.npz", _edit_predictions(lambda p: p | {"test_scores": p["test_scores"].astype(str)}),
                 r"the array test_scores of .* to hold numbers, but it holds <U", id="predictions-as-text"),
    pytest.param("predictions.npz", _edit_predictions(lambda p: p | {"val_targets": p["val_targets"].reshape(-1)}),
                 r"to hold a score per model of runs\.csv \(6\), example and output, but they are .*val_targets \(\d+,\)", id="predictions-flat-targets"),
    pytest.param("predictions.npz", _edit_predictions(lambda p: p | {k: np.concatenate([p[k], p[k]], axis=-1) for k in ("test_scores", "test_targets")}),
                 r"to hold a score per model of runs\.csv \(6\), example and output, but they are .*test_targets \(\d+, 2\)",
                 id="predictions-test-with-more-outputs-than-val"),
    pytest.param("predictions.npz", _edit_predictions(lambda p: p | {"val_targets": p["val_targets"].astype(str)}),
                 r"the array val_targets of .* to hold numbers, but it holds <U", id="predictions-targets-as-text"),
    pytest.param("runs.csv", _edit_csv(lambda f: f.assign(seed=f["seed"].where(f["seed"] != 1, 1.5))),
                 r"runs\.csv to hold rows for each loss with each seed of .*config\.json and no other, but it has none for the loss 'bce' with seed 1",
                 id="runs-half-seeds"),
    pytest.param("predictions.npz", _edit_predictions(lambda p: p | {"models_seed": p["models_seed"] + 5}),
                 r"the models of .* to be those of runs\.csv", id="predictions-of-other-seeds"),
    pytest.param("summary.csv", _edit_csv(lambda f: f.drop(columns="diff_mean")), r"but it lacks diff_mean", id="summary-without-differences"),
    pytest.param("summary.csv", _edit_csv(lambda f: pd.concat([f, f.iloc[[0]]])), r"one row for each loss and metric, but the loss 'softmax_ce' has two",
                 id="summary-row-twice"),
    pytest.param("summary.csv", _edit_csv(lambda f: _set_cell(f, "diff_mean", "abc")), r"column diff_mean of .* to hold numbers, but it holds 'abc'",
                 id="summary-difference-not-a-number"),
    pytest.param("summary.csv", _edit_csv(lambda f: _set_cell(f, "diff_n", 1.5)), r"column diff_n of .* to hold counts of seeds, but it holds 1\.5",
                 id="summary-half-a-seed"),
    pytest.param("summary.csv", _edit_csv(lambda f: _set_cell(f, "diff_n", -2)), r"column diff_n of .* to hold counts of seeds, but it holds -2",
                 id="summary-negative-seed-count"),
    pytest.param("history.csv", _edit_csv(lambda f: f.assign(epoch=f["epoch"] - 1)), r"column epoch of .* to hold epochs 0, 1, 2, \.\.\., but it holds -1",
                 id="history-negative-epochs"),
    pytest.param("runs.csv", _edit_csv(lambda f: pd.concat([f, f])), r"runs.csv has rows twice or from elsewhere: the loss 'bce' with seed 0 has 2 rows, where the run wrote 1",
                 id="runs-every-row-twice"),  # runs.csv has one row per model
    pytest.param("summary.csv", _edit_csv(lambda f: f.assign(n=1)), r"to summarise the seeds of .*runs\.csv, but its .* is over 1 seeds, where runs\.csv has 2",
                 id="summary-of-another-run"),
    pytest.param("predictions.npz", _some_predictions, r"is incomplete: it lacks the arrays models_loss, models_seed, val_targets",
                 id="predictions-without-arrays"),
    # a history without the columns the gradient-allocation figure draws: `plot` said "min() arg is an empty sequence"
    pytest.param("history.csv", _edit_csv(lambda f: f[[c for c in f if not c.startswith("grad_confidence")]]),
                 r"history\.csv to have every column the report and the plots read, but it lacks grad_confidence_correct\[0\.5-0\.6\], .*grad_confidence_wrong\[0\.9-1\.0\] \(",
                 id="history-without-confidence-bins"),
    pytest.param("history.csv", _edit_csv(lambda f: f.drop(columns="decision_weight_change")), r"but it lacks decision_weight_change \(",
                 id="history-without-decision-weight"),
    pytest.param("config.json", _write(b"[" * 100_000 + b"]" * 100_000), r"config\.json to be a JSON object, but it could not be parsed: ",
                 id="config-nested-past-python-s-limit"),  # a RecursionError was reported as "unexpected"
]  # fmt: skip


@pytest.mark.parametrize(("name", "damage", "what"), DAMAGE)
def test_a_damaged_file_is_a_value_error_naming_it(run, name, damage, what):
    damage(run / name)
    with pytest.raises(ValueError) as caught:
        lossbench.load(run)
    message = str(caught.value)
    assert str(run / name) in message
    assert re.search(what, message), message
    assert "\n" not in message
    if name != "predictions.npz" or "lacks" in what:
        assert DAMAGED in message


def test_a_whole_run_loads_and_one_saved_without_predictions_too_but_not_one_whose_file_is_gone(run, saved_run, tmp_path):
    loaded = lossbench.load(run)
    assert loaded.losses == ["softmax_ce", "bce", "mse"]
    assert sorted(loaded.predictions) == ["models_loss", "models_seed", "test_scores", "test_targets", "val_scores", "val_targets"]
    loaded.predictions = {}
    again = lossbench.load(loaded.save(tmp_path / "again"))
    assert again.predictions == {}
    # a run's own predictions.npz gone: the notes and reference lines read from it would vanish without a word
    (run / "predictions.npz").unlink()
    with pytest.raises(ValueError, match=r"lacks predictions\.npz \(was the run interrupted"):
        lossbench.load(run)


def test_a_missing_directory_or_file_is_still_named(run, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        lossbench.load(tmp_path / "nowhere")
    (run / "history.csv").unlink()
    with pytest.raises(ValueError, match=r"lacks history\.csv \(was the run interrupted"):
        lossbench.load(run)


@pytest.mark.parametrize("command", ["show", "plot"])
@pytest.mark.parametrize(
    ("name", "damage"),
    [
        pytest.param("config.json", _write(b"[1, 2]"), id="config-array"),
        pytest.param("summary.csv", _cut(300), id="summary-cut-short"),
    ],
)
def test_cli_reports_a_damaged_run_in_one_line_without_a_traceback(run, name, damage, command, capsys):
    damage(run / name)
    assert cli.main([command, str(run)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"lossbench {command}: error: ") and str(run / name) in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("changes", "lacking"), [
    # a multi-output task's table shows exact match: load finds it missing from summary.csv
    pytest.param({"task_kind": "multilabel"}, "{run}/summary.csv is incomplete: it has no rows for the metrics test_exact_match "
                 "of the loss 'softmax_ce'", id="task-kind"),
    pytest.param({"task_kind": "grid"}, "{run}/summary.csv is incomplete: it has no rows for the metrics test_exact_match "
                 "of the loss 'softmax_ce'", id="task-kind-grid"),  # a grid's table shows exact match, as a multi-label one's does
    pytest.param({"label_names": ["a", "b"]}, 'Expected "label_names" in {run}/config.json to name the 1 outputs of '
                 "{run}/predictions.npz, but it names 2", id="label-names"),
])
def test_plot_of_a_run_whose_config_names_what_its_tables_lack_is_one_line(run, changes, lacking, capsys):
    # load cannot foresee every column a plot reads for an edited task kind or label: the plot's KeyError
    # was reported as "unexpected"
    _edit_config(**changes)(run / "config.json")
    assert cli.main(["plot", str(run)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"lossbench plot: error: {lacking.format(run=run)} ({DAMAGED}).\n"
    assert not (run / "plots").exists()


def test_files_added_by_extra_appear_with_the_run_or_not_at_all(saved_run, tmp_path):
    """``save(extra=...)`` writes the plots into the run before it is renamed into place, never into the finished run."""
    result = lossbench.load(saved_run)
    seen = []

    def plots_that_fail(folder: Path) -> None:
        seen.append(folder)
        (folder / "plots").mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        result.save(tmp_path / "failed", extra=plots_that_fail)
    assert seen[0] != tmp_path / "failed" and not list(tmp_path.iterdir())  # neither the run nor a leftover

    written = result.save(tmp_path / "saved", extra=lambda folder: (folder / "plots").mkdir())
    assert (written / "plots").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["saved"]
