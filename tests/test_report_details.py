"""Details of the report text that the other tests leave open: divergence counts, large losses, header, file list, JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lossbench import report, stats
from lossbench.results import Result


def made_result(values: dict[str, list[float]], diverged: dict[str, list[bool]] | None = None, **config) -> Result:
    """A binary Result whose runs hold the given per-seed test accuracies (other metrics fixed); summary by lossbench.stats."""
    rows = []
    for loss, acc in values.items():
        for seed, a in enumerate(acc):
            rows.append({"loss": loss, "seed": seed, "diverged": bool((diverged or {}).get(loss, [False] * len(acc))[seed]),
                         "test_accuracy": a, "test_accuracy_best": a, "best_threshold": 0.5, "test_auc": 0.8,
                         "final_train_loss": 0.4})  # fmt: skip
    runs = pd.DataFrame(rows)
    metrics = [c for c in runs.columns if c not in ("loss", "seed")]
    summary = stats.summarize(runs.assign(diverged=runs["diverged"].astype(float)), metrics, "bce")
    cfg = {
        "task": "toy", "task_kind": "binary", "task_description": "a toy task", "label_names": ["y"],
        "losses": list(values), "baseline": "bce", "seeds": list(range(len(next(iter(values.values()))))),
        "task_config": {"epochs": 7, "optimizer": "sgd", "lr": 0.002, "batch_size": 32},
        "sizes": {"train": 11, "val": 6, "test": 4}, "device": "cpu",
    }  # fmt: skip
    cfg.update(config)
    empty = pd.DataFrame()
    return Result(runs, empty, empty, empty, summary, cfg)


def test_the_diverged_column_counts_every_diverged_seed():
    # rule: "diverged" is the number of seeds that diverged (2 of 3 here), not whether any did
    result = made_result({"bce": [0.8, 0.81, 0.82], "mse": [0.7, 0.71, 0.72]}, diverged={"mse": [True, False, True]})
    assert report.loss_table(result).set_index("loss")["diverged"].to_dict() == {"bce": 0, "mse": 2}
    row = next(line for line in report.format_table(result).splitlines() if line.strip().startswith("mse"))
    assert row.split()[-1] == "2/3"


def test_a_huge_training_loss_is_shown_with_three_significant_digits():
    # rule: at 1e4 and above the train loss is written with three significant digits
    assert report._loss_value(123456.0) == "1.23e+05"
    assert report._loss_value(-2.4689e7) == "-2.47e+07"


def test_the_heading_names_epochs_optimiser_lr_batch_device_and_split_sizes_in_order():
    # rule: the second heading line reads losses x seeds, epochs, optimiser (lr, batch), device; train/val/test sizes
    result = made_result({"bce": [0.8, 0.81, 0.82], "mse": [0.7, 0.71, 0.72]})
    line = report.format_table(result).splitlines()[1]
    assert line == "2 losses x 3 seeds, 7 epochs, sgd (lr 0.002, batch 32), device cpu; train/val/test 11/6/4"


def test_the_report_words_its_file_list_with_the_given_verb():
    # rule: format_report's verb replaces "Wrote" in the files heading (the CLI's "Files in" for a loaded run)
    result = made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]})
    result.directory = Path("runs/x")
    text = report.format_report(result, [Path("runs/x/config.json")], verb="Files in")
    assert text.endswith("Files in runs/x:\n  runs/x/config.json")
    assert "Wrote" not in text
    assert report.format_report(result, [Path("runs/x/config.json")]).endswith("Wrote runs/x:\n  runs/x/config.json")


def test_json_kind_and_epochs_come_from_the_task_config():
    # rule: the JSON's "kind" is the config's task_kind and "epochs" the task_config's epochs
    doc = json.loads(report.as_json(made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]}, task_kind="grid")))
    assert doc["kind"] == "grid" and doc["epochs"] == 7


def test_json_writes_an_infinite_value_as_null():
    # rule: any non-finite number (inf as well as NaN) becomes null, so as_json stays strict JSON
    result = made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]})
    at = (result.summary["loss"] == "mse") & (result.summary["metric"] == "final_train_loss")
    result.summary.loc[at, "mean"] = float("inf")
    doc = json.loads(report.as_json(result))
    assert next(row for row in doc["table"] if row["loss"] == "mse")["final_train_loss"] is None
    assert [row["mean"] for row in doc["summary"] if row["loss"] == "mse" and row["metric"] == "final_train_loss"] == [None]


def test_a_training_loss_of_ten_thousand_is_already_huge():
    # rule: the switch to three significant digits is at 1e4 itself, not just above it
    assert report._loss_value(1e4) == "1e+04"
    assert report._loss_value(-1e4) == "-1e+04"
    assert report._loss_value(9999.9994) == "9999.999"


def test_the_heading_names_a_threshold_metric_other_than_accuracy():
    # rule: the third heading line says by what the best validation threshold was chosen, unless it is accuracy
    for metric, said in [("balanced_accuracy", "balanced accuracy"), ("f1", "f1")]:
        line = report.format_table(made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]}, threshold_metric=metric)).splitlines()[2]
        assert line == f"Test split, mean [95% CI] over 2 seeds; the best threshold is chosen on the validation split, by its {said}."
    line = report.format_table(made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]}, threshold_metric="accuracy")).splitlines()[2]
    assert line == "Test split, mean [95% CI] over 2 seeds; the best threshold is chosen on the validation split."


def test_a_summary_without_paired_differences_gives_an_empty_differences_table():
    # rule: a summary made with no baseline has no diff_* columns; differences() is then empty, not a KeyError
    result = made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]})
    result.summary = result.summary.drop(columns=["baseline", "diff_mean", "diff_low", "diff_high", "diff_n"])
    d = report.differences(result)
    assert d.empty
    assert list(d.columns) == ["loss", "metric", "baseline", "diff_mean", "diff_low", "diff_high", "n", "reading"]


def test_counts_of_none_take_the_plural():
    # rule: only exactly one takes the singular ("0 epochs", "1 epoch", "2 epochs")
    assert [report._count(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]


def test_the_report_parts_are_separated_by_one_blank_line_and_no_line_ends_in_spaces():
    # rule: table, differences and files are blocks with one empty line between; aligned rows carry no trailing padding
    result = made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]})
    result.directory = Path("runs/x")
    text = report.format_report(result, [Path("runs/x/config.json")])
    blocks = text.split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [
        "toy: a toy task", "Paired differences to bce (loss minus bce on the same seeds, mean [95% CI]):", "Wrote runs/x:"]
    assert all(line == line.rstrip() for line in text.splitlines())


def test_json_names_the_run_directory():
    # rule: "run_dir" is the directory the run was saved to or loaded from, as text
    result = made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]})
    assert json.loads(report.as_json(result))["run_dir"] is None
    result.directory = Path("runs/x")
    assert json.loads(report.as_json(result))["run_dir"] == "runs/x"


def test_predictions_that_do_not_say_whose_they_are_name_no_silent_loss():
    # rule: never_positive needs both the test scores and the models' losses; without the latter it names none
    import numpy as np

    result = made_result({"bce": [0.8, 0.81], "mse": [0.7, 0.71]})
    result.predictions = {"test_scores": np.zeros((4, 4, 1))}
    assert report.never_positive(result) == []
