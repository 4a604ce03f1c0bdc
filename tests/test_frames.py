"""The Result's tables as assemble() lays them out: one row per model (runs), per model and threshold (thresholds),
per model and calibration bin (calibration), each row under its own loss and seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lossbench
from lossbench import thresholds
from tests.conftest import tiny_task


@pytest.fixture(scope="module")
def result():
    return lossbench.compare(tiny_task("binary"), ("bce", "mse"), seeds=[3, 5], epochs=2, batch_size=16, device="cpu",
                             threshold_points=7, progress=False)


def test_each_models_threshold_rows_sweep_the_whole_grid_in_order(result):
    grid = thresholds.threshold_grid(7).numpy()
    table = result.thresholds
    assert len(table) == 2 * 4 * 7  # splits x models x thresholds
    for (split, loss, seed), rows in table.groupby(["split", "loss", "seed"]):
        np.testing.assert_array_equal(rows["threshold"].to_numpy(), grid, err_msg=f"{split} {loss} {seed}")
    # and its accuracy at each threshold is the one the runs table reports at the best threshold
    for run in result.runs.itertuples():
        rows = table[(table.split == "test") & (table.loss == run.loss) & (table.seed == run.seed)]
        assert rows.loc[np.isclose(rows.threshold, run.best_threshold), "accuracy"].item() == run.test_accuracy_best


def test_calibration_bins_run_from_low_to_high_edge(result):
    table = result.calibration
    bins = table["bin"].max() + 1
    for (loss, seed), rows in table.groupby(["loss", "seed"]):
        np.testing.assert_allclose(rows["bin_low"].to_numpy(), np.arange(bins) / bins)
        np.testing.assert_allclose(rows["bin_high"].to_numpy(), np.arange(1, bins + 1) / bins)
        assert rows["count"].sum() == 48 and rows["count"].dtype.kind == "i"  # every test example in one bin


def test_the_summary_has_a_row_per_loss_for_each_metric_and_none_for_the_identity_columns(result):
    metrics = ["diverged", "final_train_loss", "val_loss", "val_accuracy", "val_auc", "best_threshold", "val_accuracy_best",
               "test_accuracy", "test_accuracy_best", "test_auc", "test_f1", "test_f1_best", "test_sensitivity",
               "test_specificity", "test_sensitivity_best", "test_specificity_best", "test_ece"]
    for loss in ("bce", "mse"):
        assert result.summary.loc[result.summary.loss == loss, "metric"].tolist() == metrics
    assert (result.summary.loc[result.summary.metric == "diverged", "mean"] == 0).all()  # a fraction of the seeds


@pytest.mark.parametrize("value, expected", [
    pytest.param(np.int64(3), 3, id="numpy-int"),
    pytest.param(np.float32(0.5), 0.5, id="numpy-float"),
    pytest.param(np.bool_(True), True, id="numpy-bool"),
    pytest.param((1, (2, "a")), [1, [2, "a"]], id="nested-tuple"),
    pytest.param({1: range(2)}, {"1": [0, 1]}, id="int-key"),
])
def test_config_values_become_plain_json_values(value, expected):
    from lossbench.frames import _jsonable

    converted = _jsonable(value)
    assert converted == expected and type(converted) is type(expected)


def test_the_git_commit_is_none_outside_a_git_checkout(monkeypatch):
    import subprocess

    from lossbench import frames

    def not_a_repository(args, **kwargs):
        return subprocess.CompletedProcess(args, 128, stdout="", stderr="fatal: not a git repository")

    monkeypatch.setattr(frames.subprocess, "run", not_a_repository)
    assert frames.environment(torch.device("cpu"))["git_commit"] is None


def test_exact_match_is_a_column_only_with_several_outputs(result):
    from lossbench.thresholds import METRICS

    one_output = [m for m in METRICS if m != "exact_match"]
    assert result.thresholds.columns.tolist() == ["loss", "seed", "split", "threshold", *one_output]
    assert not {"test_exact_match", "test_exact_match_best"} & set(result.runs.columns)
    import dataclasses

    from lossbench.tasks.base import Split

    four = tiny_task("multilabel")
    two = dataclasses.replace(four, label_names=four.label_names[:2], **{  # the fewest outputs that are several
        name: Split(part.x, part.y[:, :2], part.source) for name in ("train", "val", "test") for part in [getattr(four, name)]})
    several = lossbench.compare(two, ("bce",), seeds=1, epochs=1, device="cpu", threshold_points=3, progress=False)
    assert several.thresholds.columns.tolist() == ["loss", "seed", "split", "threshold", *METRICS]
    assert {"test_exact_match", "test_exact_match_best"} <= set(several.runs.columns)


def test_task_notes_are_saved_as_plain_json(tmp_path):
    import dataclasses

    task = dataclasses.replace(tiny_task("binary"), notes={"left_out": ("a", "b"), "count": np.int64(2)})
    result = lossbench.compare(task, ("bce",), seeds=1, epochs=1, device="cpu", progress=False)
    assert result.config["task_notes"] == {"left_out": ["a", "b"], "count": 2}
    result.save(tmp_path / "run")
    assert lossbench.load(tmp_path / "run").config["task_notes"] == {"left_out": ["a", "b"], "count": 2}
