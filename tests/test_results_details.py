"""Details of the run directory that the broader tests leave open: where and how a run is written, and how it is read back."""
from __future__ import annotations

import errno
import json
import os
import re
import stat

import numpy as np
import pandas as pd
import pytest

from lossbench import results


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


def test_config_json_is_sorted_indented_text_ending_in_a_newline_with_paths_as_strings(tmp_path):
    # rule: config.json is json.dumps(config, indent=2, sort_keys=True) plus a newline; values JSON lacks (a Path) as text
    from pathlib import PurePosixPath

    result = _result()
    result.config = {"losses": ["bce", "mse"], "baseline": "bce", "data_dir": PurePosixPath("data/titanic")}
    path = result.save(tmp_path / "run")
    expected = {"baseline": "bce", "data_dir": "data/titanic", "losses": ["bce", "mse"]}
    assert (path / "config.json").read_text() == json.dumps(expected, indent=2, sort_keys=True) + "\n"
    assert results.load(path).config == expected


def test_a_summary_lacking_many_metrics_names_four_and_counts_the_rest(tmp_path):
    # rule: the error names the first four missing metrics of the loss, in the report's order, and how many more
    result = _result()
    summary = result.summary
    kept = summary[summary["loss"] == "bce"]
    other = kept.iloc[[0, 0]].assign(loss=["bce", "mse"], metric="other")  # mse keeps a row, so the table still has the loss
    result.summary = pd.concat([kept, other], ignore_index=True)
    path = result.save(tmp_path / "run")
    with pytest.raises(ValueError) as caught:
        results.load(path)
    assert (f"{path / 'summary.csv'} is incomplete: it has no rows for the metrics test_accuracy, test_accuracy_best, "
            f"best_threshold, test_auc and 2 more of the loss 'mse'") in str(caught.value)


def test_true_or_false_targets_load(tmp_path):
    # rule: a target array of booleans holds numbers as far as load is concerned
    result = _result()
    for key in ("val_targets", "test_targets"):
        result.predictions[key] = result.predictions[key].astype(bool)
    loaded = results.load(result.save(tmp_path / "run"))
    assert loaded.predictions["val_targets"].dtype == np.bool_
    np.testing.assert_array_equal(loaded.predictions["test_targets"], [[True], [False]])


def test_epochs_of_true_in_config_json_is_not_taken_for_one_epoch(tmp_path):
    # rule: only a whole number (not a JSON true) sets how many history rows each model must have
    result = _result()
    result.config = {"losses": ["bce", "mse"], "baseline": "bce", "task_config": {"epochs": True}}
    assert results.load(result.save(tmp_path / "run")).config["task_config"] == {"epochs": True}


def test_seeds_written_as_decimals_are_named_as_whole_seeds(tmp_path):
    # rule: a history.csv whose seeds read as 0.0 and 3.0 is checked, and named, with seeds 0 and 3
    result = _result()
    result.config = {"losses": ["bce", "mse"], "baseline": "bce", "seeds": [0]}
    path = result.save(tmp_path / "run")
    history = pd.read_csv(path / "history.csv")
    extra = history[history["loss"] == "mse"].assign(seed=3)
    pd.concat([history, extra], ignore_index=True).astype({"seed": float}).to_csv(path / "history.csv", index=False)
    assert "3.0" in (path / "history.csv").read_text()
    with pytest.raises(ValueError, match=re.escape("but it has rows for the loss 'mse' with seed 3 (")):
        results.load(path)


def test_a_word_in_a_number_column_with_blank_cells_is_named_not_the_blank(tmp_path):
    # rule: blank cells are missing numbers, allowed; the error names the first cell that is not a number
    path = _result().save(tmp_path / "run")
    runs = pd.read_csv(path / "runs.csv")
    runs["test_auc"] = pd.Series([None, "abc"], dtype=object)
    runs.to_csv(path / "runs.csv", index=False)
    with pytest.raises(ValueError, match=re.escape(f"Expected the column test_auc of {path / 'runs.csv'} to hold numbers, but it holds 'abc' (")):
        results.load(path)


def test_an_error_message_ending_in_a_full_stop_is_not_given_two(tmp_path, monkeypatch):
    # rule: the cause is quoted on one line without its own closing full stop, so the message ends in exactly one
    path = _result().save(tmp_path / "run")

    def refused(*args, **kwargs):
        raise OSError("The disk\n   went away.")

    monkeypatch.setattr(results.pd, "read_csv", refused)
    with pytest.raises(ValueError) as caught:
        results.load(path)
    assert str(caught.value) == f"Expected {path / 'runs.csv'} to be a CSV table, but it could not be read: The disk went away."


def test_predictions_that_start_like_a_zip_but_are_not_one_are_said_to_be_no_zip_file(tmp_path):
    # rule: only a zip file's own first bytes (an entry, or an empty archive) count as a zip; "PK" alone does not
    path = _result().save(tmp_path / "run")
    (path / "predictions.npz").write_bytes(b"PK, said the text file")
    with pytest.raises(ValueError) as caught:
        results.load(path)
    assert str(caught.value) == (f"Expected {path / 'predictions.npz'} to be a .npz archive of the predictions (a zip file, as numpy.savez "
                                 f"writes), but it is not a zip file ({results.DAMAGED}).")
