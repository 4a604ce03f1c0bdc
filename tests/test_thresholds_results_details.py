"""Details of the threshold metrics and of the run directory that the broader tests leave open: undefined rates,
tie-breaking of the best threshold, pooled calibration of several outputs, and where and how a run is written."""
from __future__ import annotations

import errno
import os
import re
import stat

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import recall_score

from lossbench import results
from lossbench import thresholds as thr


# ---------------------------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------------------------


def test_sensitivity_with_no_positive_to_find_is_undefined_not_zero():
    # sensitivity = TP / (TP + FN) is 0 / 0 when y has no positives: NaN, as scikit-learn's recall with zero_division=nan
    scores = torch.tensor([[[0.2], [0.7]]], dtype=torch.float64)
    y = torch.zeros(2, 1)
    m = thr.sweep(scores, y, torch.tensor([0.5]))
    expected = recall_score([0, 0], [0, 1], zero_division=np.nan)
    assert np.isnan(expected) and np.isnan(m["sensitivity"][0, 0].item())
    assert m["specificity"][0, 0].item() == 0.5  # one of the two negatives is called negative


def test_specificity_with_no_negative_to_find_is_undefined_not_zero():
    # specificity = TN / (TN + FP) is 0 / 0 when y has no negatives: NaN, as scikit-learn's recall of class 0
    scores = torch.tensor([[[0.2], [0.7]]], dtype=torch.float64)
    y = torch.ones(2, 1)
    m = thr.sweep(scores, y, torch.tensor([0.5]))
    expected = recall_score([1, 1], [0, 1], pos_label=0, zero_division=np.nan)
    assert np.isnan(expected) and np.isnan(m["specificity"][0, 0].item())
    assert m["sensitivity"][0, 0].item() == 0.5


def test_an_undefined_metric_is_never_the_best_threshold():
    # a NaN metric (0 / 0) counts below every real value: the best threshold is the largest defined one
    metric = torch.tensor([[0.6, torch.nan, 0.8, torch.nan, 0.7]], dtype=torch.float64)
    grid = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    assert thr.best_threshold_index(metric, grid).tolist() == [2]
    metric = torch.tensor([[0.2, torch.nan, torch.nan, torch.nan, 0.3]], dtype=torch.float64)  # NaN at 0.5 too
    assert thr.best_threshold_index(metric, grid).tolist() == [4]


def test_maxima_equal_but_for_float_rounding_are_a_tie_broken_towards_one_half():
    # balanced accuracy (0.3 + 0) / 2 and (0.1 + 0.2) / 2 are both 0.15 (the second is one bit above): a tie, so 0.5 wins
    sweep = {"sensitivity": torch.tensor([[0.3, 0.1]], dtype=torch.float64),
             "specificity": torch.tensor([[0.0, 0.2]], dtype=torch.float64)}
    metric = thr.selection_metric(sweep, "balanced_accuracy")
    assert metric[0, 0].item() != metric[0, 1].item()  # the floats differ, the values do not
    assert thr.best_threshold_index(metric, torch.tensor([0.5, 0.7], dtype=torch.float64)).tolist() == [0]


@pytest.mark.parametrize("low, high", [(0.3, 0.7), (0.04, 0.96), (0.42, 0.58)])
def test_maxima_equally_far_from_one_half_go_to_the_lower_threshold_on_the_default_grid(low, high):
    # 0.7 - 0.5 is 0.19999999999999996 in floats, 0.5 - 0.3 is 0.2: the distances are equal to 9 decimals, so the lower wins
    grid = thr.threshold_grid()
    metric = torch.zeros(1, len(grid), dtype=torch.float64)
    metric[0, round(low * 100) - 1] = metric[0, round(high * 100) - 1] = 1.0
    assert grid[thr.best_threshold_index(metric, grid)].item() == low
    descending = grid.flip(0)  # the lower threshold by its value, not the first index: any order of the grid
    assert descending[thr.best_threshold_index(metric.flip(1), descending)].item() == low


def test_calibration_pools_the_outputs_of_each_example_in_the_order_of_the_scores():
    # with K outputs the bins hold every (example, output) pair: scikit-learn's calibration_curve on the flattened arrays
    g = torch.Generator().manual_seed(3)
    n, k = 60, 4
    scores = torch.rand(2, n, k, generator=g, dtype=torch.float64)
    y = (torch.rand(n, k, generator=g) < torch.tensor([0.1, 0.4, 0.7, 0.95])).float()  # labels of very different rates
    cal = thr.calibration(scores, y, bins=5)
    for m in range(2):
        s, t = scores[m].numpy().reshape(-1), y.numpy().reshape(-1)
        prob_true, prob_pred = calibration_curve(t, s, n_bins=5, strategy="uniform")
        filled = cal["count"][m] > 0
        np.testing.assert_allclose(cal["fraction_positive"][m][filled].numpy(), prob_true, atol=1e-12)
        np.testing.assert_allclose(cal["mean_predicted"][m][filled].numpy(), prob_pred, atol=1e-12)
        counts = cal["count"][m][filled].numpy()
        assert cal["ece"][m].item() == pytest.approx(np.sum(counts / (n * k) * np.abs(prob_true - prob_pred)))


# ---------------------------------------------------------------------------------------------
# results: a small Result made by hand, so that saving and loading are tested without training
# ---------------------------------------------------------------------------------------------


def _result() -> results.Result:
    losses = ["bce", "mse"]
    frames = {}
    for name, columns in results.COLUMNS.items():
        rows = []
        for i, loss in enumerate(losses):
            row = {c: float(i) + 0.25 for c in columns}
            row.update(loss=loss, seed=0)
            if "epoch" in columns:
                row["epoch"] = 0
            if "split" in columns:
                row["split"] = "val"
            if "metric" in columns:
                row["metric"] = None
            rows.append(row)
        frames[name] = pd.DataFrame(rows)
    frames["summary"] = pd.DataFrame(
        [{"loss": loss, "metric": m, "n": 1, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "diff_mean": 0.0, "diff_low": float("nan"),
          "diff_high": float("nan"), "diff_n": 1} for loss in losses for m in results.SUMMARY_METRICS]
    )
    predictions = {
        "models_loss": np.array(losses),
        "models_seed": np.array([0, 0], dtype=np.int64),
        "val_scores": np.array([[[0.125], [0.75]], [[0.5], [0.25]]], dtype=np.float32),
        "val_targets": np.array([[0.0], [1.0]], dtype=np.float32),
        "test_scores": np.array([[[0.375], [0.875]], [[0.625], [0.0625]]], dtype=np.float32),
        "test_targets": np.array([[1.0], [0.0]], dtype=np.float32),
    }
    return results.Result(**frames, config={"losses": losses, "baseline": "bce"}, predictions=predictions)


def test_load_gives_back_the_arrays_with_their_dtypes(tmp_path):
    # the predictions round-trip exactly, dtype included: float32 scores stay float32, int64 seeds stay int64
    result = _result()
    loaded = results.load(result.save(tmp_path / "run"))
    for key, array in result.predictions.items():
        assert loaded.predictions[key].dtype == array.dtype, key
        np.testing.assert_array_equal(loaded.predictions[key], array)


def test_save_and_load_record_the_run_directory(tmp_path):
    # Result.directory is where the run was saved or loaded from
    result = _result()
    path = result.save(tmp_path / "run")
    assert path == tmp_path / "run" and result.directory == path
    assert results.load(path).directory == path


def test_the_temporary_directory_is_hidden_beside_the_target(tmp_path):
    # the run is written to ".<name>.partial-*" in the target's parent, then renamed into place
    seen = []
    _result().save(tmp_path / "run", extra=seen.append)
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".run.partial-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_save_creates_missing_parent_folders(tmp_path):
    # a run may be saved under folders that do not exist yet
    path = _result().save(tmp_path / "a" / "b" / "run")
    assert results.load(path).losses == ["bce", "mse"]


def test_save_onto_a_file_is_a_run_exists_error(tmp_path):
    # a path that is a file is not a new or empty directory: RunExistsError, and the file is left alone
    target = tmp_path / "run"
    target.write_text("keep me")
    with pytest.raises(results.RunExistsError, match="run. is a file"):
        _result().save(target)
    assert target.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_save_into_an_existing_empty_directory(tmp_path):
    # an empty directory is accepted and filled
    (tmp_path / "run").mkdir()
    path = _result().save(tmp_path / "run")
    assert results.load(path).losses == ["bce", "mse"] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("name", ["runs.csv", "summary.csv", "config.json"])
def test_a_missing_file_is_named_as_missing(tmp_path, name):
    # every table and the config are required: a missing one is reported as lacking, not as unreadable
    path = _result().save(tmp_path / "run")
    (path / name).unlink()
    with pytest.raises(ValueError, match=rf"lacks {name.replace('.', chr(92) + '.')} \(was the run interrupted"):
        results.load(path)


def test_a_result_shows_as_one_line_of_what_it_holds():
    # the dataclass's own repr printed every row of every frame: about 22 KB for a quick comparison in a notebook cell
    result = _result()
    text = repr(result)
    assert "\n" not in text and len(text) < 400
    assert text.startswith(f"Result(task={result.config.get('task')!r}, losses={result.config['losses']!r}, seeds=")
    assert f"history: {len(result.history)} rows" in text and text.endswith("directory=None)")


def test_a_folder_another_run_fills_while_this_one_is_saved_is_a_run_exists_error(tmp_path):
    # two runs with the same --out: the one that lost at the final rename said "OSError: Directory not empty"
    target = tmp_path / "run"
    target.mkdir()

    def the_other_run_writes(_tmp):
        (target / "runs.csv").write_text("the other run's table\n")

    with pytest.raises(results.RunExistsError, match="got files from elsewhere while this run was saved"):
        _result().save(target, extra=the_other_run_writes)
    assert [p.name for p in target.iterdir()] == ["runs.csv"] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("directory", [None, 5, ""])
def test_save_and_load_name_a_directory_that_is_not_a_path(directory):
    with pytest.raises(ValueError, match=re.escape(f"Expected `directory` to be the path of a folder, but got {directory!r}.")):
        _result().save(directory)
    with pytest.raises(ValueError, match=re.escape(f"Expected `directory` to be the path of a folder, but got {directory!r}.")):
        results.load(directory)


def test_a_saved_run_directory_has_the_users_usual_permissions_not_mkdtemps_private_ones(tmp_path):
    # the run is written in a mkdtemp folder (mode 0o700) and renamed into place: it must end up as mkdir would make it
    umask = os.umask(0o022)
    try:
        path = _result().save(tmp_path / "run")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    os.umask(0o027)
    try:
        path = _result().save(tmp_path / "other")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o750


def test_load_of_a_file_says_it_is_a_file(tmp_path):
    # a file where a run directory was expected is named as a file, not as a folder that lacks every table
    (tmp_path / "run").write_text("not a run")
    with pytest.raises(ValueError, match=re.escape(f"Expected a lossbench run directory, but {str(tmp_path / 'run')!r} is a file.")):
        results.load(tmp_path / "run")


def test_a_rename_refused_with_eexist_is_a_run_exists_error_too(tmp_path, monkeypatch):
    # POSIX lets rename() onto a non-empty folder fail with EEXIST as well as ENOTEMPTY: both mean another run took it
    def refused(src, dst):
        raise OSError(errno.EEXIST, "File exists", str(dst))

    monkeypatch.setattr(results.os, "replace", refused)
    with pytest.raises(results.RunExistsError, match="got files from elsewhere while this run was saved"):
        _result().save(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []  # the partial folder is removed


def test_save_into_a_folder_that_holds_files_is_refused_before_writing_anything(tmp_path):
    # a saved run is never overwritten, and the refusal says why: the folder already holds files (not a race with another run)
    target = tmp_path / "run"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    seen = []
    with pytest.raises(results.RunExistsError, match=re.escape(f"{str(target)!r} already holds files.")):
        _result().save(target, extra=seen.append)
    assert seen == [] and [p.name for p in target.iterdir()] == ["notes.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_metric_that_is_infinite_on_a_seed_is_not_counted_by_the_summary_and_the_run_loads(tmp_path):
    # summarize counts the finite values (inf is missing, like NaN); load's check that summary.csv counts runs.csv's seeds must agree
    from lossbench import stats

    result = _result()
    result.runs["final_train_loss"] = result.runs["final_train_loss"].astype(float)
    result.runs.loc[result.runs["loss"] == "mse", "final_train_loss"] = float("inf")
    n = stats.summarize(result.runs, ["final_train_loss"], None).set_index("loss")["n"]
    assert n.to_dict() == {"bce": 1, "mse": 0}
    at = (result.summary["loss"] == "mse") & (result.summary["metric"] == "final_train_loss")
    result.summary.loc[at, ["n", "mean", "ci_low", "ci_high"]] = [0, float("nan"), float("nan"), float("nan")]
    loaded = results.load(result.save(tmp_path / "run"))
    assert np.isinf(loaded.runs.set_index("loss").at["mse", "final_train_loss"])


def test_a_table_that_cannot_be_read_is_not_called_damaged(tmp_path, monkeypatch):
    # no permission or a read error is said as such: rerunning the comparison would not help, so DAMAGED's advice is left out
    path = _result().save(tmp_path / "run")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results.pd, "read_csv", refused)
    with pytest.raises(ValueError) as caught:
        results.load(path)
    message = str(caught.value)
    assert message == f"Expected {path / 'runs.csv'} to be a CSV table, but it could not be read: [Errno 13] Permission denied."
    assert results.DAMAGED not in message
