"""The report tables: values from the summary, divergence counts, plain readings of paired intervals, strict JSON."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossbench import report, stats
from lossbench.results import Result

METRICS = ["test_accuracy", "test_accuracy_best", "best_threshold", "test_auc", "final_train_loss", "diverged"]


def made_result(values: dict[str, dict[str, list[float]]], diverged: dict[str, list[bool]] | None = None,
                baseline: str = "bce", labels: tuple[str, ...] = ("survived",), kind: str = "binary") -> Result:  # fmt: skip
    """A Result whose runs hold the given per-seed values; its summary is computed by lossbench.stats."""
    rows = []
    for loss, metrics in values.items():
        n = len(next(iter(metrics.values())))
        for seed in range(n):
            row = {"loss": loss, "seed": seed, "diverged": bool((diverged or {}).get(loss, [False] * n)[seed])}
            row.update({m: v[seed] for m, v in metrics.items()})
            rows.append(row)
    runs = pd.DataFrame(rows)
    metrics = [c for c in runs.columns if c not in ("loss", "seed")]
    summary = stats.summarize(runs.assign(diverged=runs["diverged"].astype(float)), metrics, baseline)
    config = {
        "task": "toy", "task_kind": kind, "task_description": "a toy task", "label_names": list(labels),
        "losses": list(values), "baseline": baseline, "seeds": list(range(len(runs[runs.loss == baseline]))),
        "task_config": {"epochs": 5, "optimizer": "adam", "lr": 0.001, "batch_size": 64},
        "sizes": {"train": 10, "val": 5, "test": 5}, "device": "cpu",
    }  # fmt: skip
    empty = pd.DataFrame()
    return Result(runs, empty, empty, empty, summary, config)


def metrics(acc, best=None, thr=None, auc=None, loss=None):
    n = len(acc)
    return {
        "test_accuracy": acc,
        "test_accuracy_best": best or acc,
        "best_threshold": thr or [0.5] * n,
        "test_auc": auc or [0.8] * n,
        "final_train_loss": loss or [0.4] * n,
    }


@pytest.fixture
def result() -> Result:
    return made_result(
        {
            "softmax_ce": metrics([0.80, 0.82, 0.81], auc=[0.85, 0.86, 0.87]),
            "bce": metrics([0.80, 0.81, 0.80], auc=[0.84, 0.85, 0.86]),
            "mse": metrics([0.70, 0.72, 0.71], auc=[0.80, 0.80, 0.81], loss=[0.1, float("nan"), 0.12]),
        },
        diverged={"mse": [False, True, False]},
    )


def test_loss_table_takes_means_and_intervals_from_the_summary(result):
    table = report.loss_table(result).set_index("loss")
    assert list(table.index) == ["softmax_ce", "bce", "mse"]
    mean, low, high, n = stats.mean_ci([0.80, 0.82, 0.81])
    assert table.loc["softmax_ce", ["test_accuracy", "test_accuracy_low", "test_accuracy_high"]].tolist() == pytest.approx([mean, low, high])
    assert table.loc["mse", "final_train_loss"] == pytest.approx(0.11)  # the diverged seed's NaN is left out
    assert table["diverged"].tolist() == [0, 0, 1] and table["seeds"].tolist() == [3, 3, 3]


def test_text_table_has_a_row_per_loss_and_the_divergence_count(result):
    text = report.format_table(result)
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("loss"))
    assert [c.strip() for c in header.strip().split("  ") if c.strip()] == [
        "loss", "test acc @0.5", "test acc @best thr", "best thr (val)", "test AUC", "train loss", "diverged",
    ]  # fmt: skip
    rows = lines[lines.index(header) + 1 : lines.index(header) + 4]
    assert [r.split()[0] for r in rows] == ["softmax_ce", "bce", "mse"]
    assert rows[0].split()[1:4] == ["0.810", "[0.785,", "0.835]"]  # 0.81 -+ 4.303 * 0.01 / sqrt(3)
    assert rows[2].split()[-1] == "1/3" and rows[0].split()[-1] == "0/3"
    assert rows[0].split()[7:10] == ["0.50", "[0.50,", "0.50]"]  # a threshold of the 0.01 grid, in two decimals
    assert "3 seeds" in text and "Hamming" not in text


def test_paired_differences_read_in_plain_words(result):
    d = report.differences(result).set_index(["loss", "metric"])
    assert set(d.index.get_level_values(0)) == {"softmax_ce", "mse"}  # the baseline is not compared with itself
    # mse is 0.1 below bce on every seed: the interval is far from 0
    assert d.loc[("mse", "test_accuracy"), "diff_mean"] == pytest.approx(-0.0933333, abs=1e-6)
    assert d.loc[("mse", "test_accuracy"), "reading"] == "interval excludes 0: mse is lower"
    # softmax_ce: +0.00, +0.01, +0.01 -> the interval includes 0
    assert d.loc[("softmax_ce", "test_accuracy"), "reading"] == "interval includes 0: no clear difference"
    # softmax_ce's AUC is 0.01 higher on every seed: a zero-width interval, read as such
    assert d.loc[("softmax_ce", "test_auc"), "reading"] == "the same difference on every seed: softmax_ce is higher on each"
    text = report.format_differences(result)
    assert text.splitlines()[0] == "Paired differences to bce (loss minus bce on the same seeds, mean [95% CI]):"
    assert "  mse         test acc @0.5" in text and "-0.093 [" in text
    (auc_row,) = [line for line in text.splitlines() if line.startswith("  softmax_ce  test AUC")]
    assert "+0.010 [+0.010, +0.010]" in auc_row  # a positive difference carries its sign


@pytest.mark.parametrize(
    "low, high, expected",
    [
        pytest.param(0.01, 0.05, "interval excludes 0: x is higher", id="above"),
        pytest.param(-0.05, -0.01, "interval excludes 0: x is lower", id="below"),
        pytest.param(0.0, 0.05, "interval includes 0: no clear difference", id="touches-0"),
        pytest.param(-0.05, 0.05, "interval includes 0: no clear difference", id="around-0"),
        pytest.param(float("nan"), float("nan"), "no interval (fewer than 2 seeds with a value)", id="one-seed"),
        pytest.param(-0.02, -0.02, "the same difference on every seed: x is lower on each", id="no-spread"),
        pytest.param(0.0, 0.0, "interval includes 0: no clear difference", id="no-difference"),
        pytest.param(0.0, 1e-17, "interval includes 0: no clear difference", id="no-difference-up-to-rounding"),
        pytest.param(0.004, 0.0041, "interval excludes 0: x is higher", id="narrow-but-spread"),
        pytest.param(0.0100, 0.0101, "interval excludes 0: x is higher", id="one-percent-wide-is-spread-not-rounding"),
        pytest.param(0.0100, 0.010001, "interval excludes 0: x is higher", id="a-ten-thousandth-wide-is-spread-not-rounding"),
        pytest.param(0.0004, 0.0004, "the same difference on every seed: x is higher on each", id="small-but-not-zero-no-spread"),
        pytest.param(-0.02, float("nan"), "no interval (fewer than 2 seeds with a value)", id="one-bound-missing"),
        pytest.param(float("nan"), 0.02, "no interval (fewer than 2 seeds with a value)", id="other-bound-missing"),
    ],
)
def test_reading(low, high, expected):
    assert report.reading(low, high, "x") == expected


def test_one_more_right_answer_on_every_seed_reads_as_the_same_difference_despite_rounding():
    # 205/262 - 204/262 and 210/262 - 209/262 differ in their last bit: an interval about 1e-17 wide
    right = np.array([205, 207, 210])
    result = made_result({"mse": metrics(list(right / 262)), "bce": metrics(list((right - 1) / 262))})
    d = report.differences(result).set_index(["loss", "metric"]).loc[("mse", "test_accuracy")]
    assert 0 < d["diff_high"] - d["diff_low"] < 1e-15
    assert d["reading"] == "the same difference on every seed: mse is higher on each"


def test_an_auc_wholly_under_half_is_explained_under_the_table():
    # the default mammography grid's mse ends at a test AUC of about 0.11: no chance ranking, an inverted one
    result = made_result({"mse": metrics([0.97, 0.97, 0.97], auc=[0.10, 0.12, 0.11]), "bce": metrics([0.97] * 3, auc=[0.85, 0.9, 0.88])})
    text = report.format_table(result)
    assert ("Test AUC under 0.5, its whole interval: mse. Its models rank the positives below the negatives, a ranking that "
            "training made (chance gives 0.5): epochs that push every score down") in text
    result = made_result({"mse": metrics([0.97] * 3, auc=[0.30, 0.62, 0.45]), "bce": metrics([0.97] * 3)})
    assert "Test AUC under 0.5" not in report.format_table(result)  # an interval reaching over 0.5 is not below chance


def test_an_auc_of_exactly_one_half_on_every_seed_is_chance_not_below_it():
    # a model that scores every example alike (stuck, or not yet trained) has an AUC of exactly 0.5 on each seed:
    # its interval [0.5, 0.5] does not lie under 0.5, so it is not said to rank the positives below the negatives
    result = made_result({"mse": metrics([0.97] * 3, auc=[0.5, 0.5, 0.5]), "bce": metrics([0.97] * 3, auc=[0.85, 0.9, 0.88])})
    assert report.loss_table(result).set_index("loss").loc["mse", "test_auc_high"] == 0.5
    assert report.below_chance_auc(result) == []
    assert "Test AUC under 0.5" not in report.format_table(result)


def test_a_loss_with_no_value_on_any_seed_shows_n_a_not_nan():
    # every seed of mse has NaN predictions: its test metrics have no mean, and the table says n/a, not "nan [nan, nan]"
    nan = float("nan")
    result = made_result({"mse": metrics([nan, nan], thr=[nan, nan], auc=[nan, nan], loss=[nan, nan]), "bce": metrics([0.8, 0.81])})
    row = next(line for line in report.format_table(result).splitlines() if line.strip().startswith("mse"))
    assert row.split()[1:6] == ["n/a"] * 5 and "nan" not in row
    assert row.split()[-1] == "0/2"


def test_a_single_output_run_shows_no_exact_match_column_even_when_its_runs_hold_one():
    # exact match is a column of multi-label and grid tables only: for one label it is the accuracy again
    result = made_result({loss: {**metrics([0.9, 0.92]), "test_exact_match": [0.9, 0.92]} for loss in ("mse", "bce")})
    assert "test_exact_match" in set(result.summary["metric"])
    assert "test_exact_match" not in report.loss_table(result).columns
    assert "exact match" not in report.format_table(result)
    assert "test_exact_match" not in set(report.differences(result)["metric"])


def test_models_with_nan_predictions_are_counted_under_the_table_for_their_loss_only():
    # mse has no test accuracy on 1 of its 3 seeds (NaN predictions); bce has all: only mse is named, with its count
    nan = float("nan")
    result = made_result({"mse": metrics([0.7, nan, 0.72]), "bce": metrics([0.8, 0.81, 0.8])})
    notes = [n for n in report.table_notes(result) if n.startswith("Models whose predictions are NaN")]
    assert notes == ["Models whose predictions are NaN (their weights blew up) have no test metrics and are left out of the "
                     "means: mse 1 of 3."]
    whole = made_result({"mse": metrics([0.7, 0.71, 0.72]), "bce": metrics([0.8, 0.81, 0.8])})
    assert not any(n.startswith("Models whose predictions are NaN") for n in report.table_notes(whole))


def test_the_differences_heading_promises_intervals_when_some_difference_has_one():
    # bce has a test accuracy on one seed only, so that difference has no interval; the AUC differences (4 seeds) do
    nan = float("nan")
    result = made_result({"mse": metrics([0.80, 0.81, 0.80, 0.80]), "bce": metrics([0.79, nan, nan, nan])})
    d = report.differences(result).set_index("metric")
    assert d.loc["test_accuracy", "n"] == 1 and d.loc["test_auc", "n"] == 4
    heading = report.format_differences(result).splitlines()[0]
    assert heading == "Paired differences to bce (loss minus bce on the same seeds, mean [95% CI]):"


def test_json_names_accuracy_as_the_threshold_metric_of_a_run_that_does_not_record_one():
    # a config without threshold_metric (a run from before the option) chose its thresholds by accuracy, as the text says
    result = made_result({"mse": metrics([0.7, 0.71]), "bce": metrics([0.8, 0.81])})
    assert "threshold_metric" not in result.config
    assert json.loads(report.as_json(result))["threshold_metric"] == "accuracy"
    assert report.format_table(result).splitlines()[2].endswith("chosen on the validation split.")


def test_a_difference_from_fewer_seeds_than_were_trained_says_so():
    # bce has no test accuracy on seeds 2 and 3 (NaN predictions): the difference pairs seeds 0 and 1 only
    result = made_result({"mse": metrics([0.80, 0.81, 0.80, 0.80]), "bce": metrics([0.79, 0.80, float("nan"), float("nan")])})
    line = next(x for x in report.format_differences(result).splitlines() if "test acc @0.5 " in x)
    assert line.endswith("; from 2 of 4 seeds, where both have a value")
    full = next(x for x in report.format_differences(result).splitlines() if "test AUC" in x)
    assert "seeds, where" not in full


def test_a_loss_that_never_answers_yes_is_named_under_the_table():
    result = made_result({"mse": metrics([0.62, 0.62]), "bce": metrics([0.80, 0.81])})
    assert "Never a positive answer" not in report.format_table(result)  # no predictions to look at: nothing said
    scores = np.array([[0.1, 0.4, 0.49], [0.2, 0.3, 0.45], [0.1, 0.7, 0.2], [0.6, 0.1, 0.3]])[:, :, None]  # (models, examples, 1)
    result.predictions = {"test_scores": scores, "models_loss": np.array(["mse", "mse", "bce", "bce"])}
    text = report.format_table(result)
    assert "Never a positive answer at 0.5 on the test split, from any seed: mse. " in text  # bce says yes on some
    scores[0, 0, 0] = 0.5  # one yes, from one seed: it has started
    assert "Never a positive answer" not in report.format_table(result)
    scores[0, 0, 0], scores[1, 2, 0] = 0.1, 0.5  # the yes from the last seed, on the last example
    assert "Never a positive answer" not in report.format_table(result)
    scores[1, 2, 0], scores[2, 1, 0], scores[3, 0, 0] = 0.45, 0.2, 0.2  # no yes anywhere: both named, in the table's order
    assert "from any seed: mse, bce. " in report.format_table(result)


def test_implementations_other_than_the_handwritten_ones_are_named():
    result = made_result({"mse": metrics([0.7, 0.71]), "bce": metrics([0.8, 0.81])})
    assert "Implementations" not in report.format_table(result)  # no impl column: the built-in default
    result.runs["impl"] = np.where(result.runs["loss"] == "bce", "mysolution:bce", "handwritten")
    assert "\nImplementations: mse handwritten, bce mysolution:bce.\n" in report.format_table(result)


def test_multi_label_tables_say_hamming_and_add_exact_match():
    values = {loss: {**metrics([0.9, 0.92]), "test_exact_match": [0.5, 0.6]} for loss in ("softmax_ce", "bce")}
    result = made_result(values, labels=tuple("0123456789"), kind="multilabel")
    text = report.format_table(result)
    assert "exact match @0.5" in text
    assert "Hamming accuracy: the share of all 10 labels" in text
    d = report.differences(result)
    assert "test_exact_match" in set(d["metric"])
    assert "AUC is the mean of the 10 labels' own AUCs (macro-averaged" in text  # as the runner computes it
    grid = made_result(values, labels=tuple(f"area r{i}c{j}" for i in range(4) for j in range(4)), kind="grid")
    assert "all 16 areas" in report.format_table(grid)
    assert "AUC pools the scores of all 16 areas into one ranking (micro-averaged)." in report.format_table(grid)


def test_one_seed_gives_means_without_intervals_and_strict_json():
    result = made_result({"bce": metrics([0.8]), "mse": metrics([0.7])})
    text = report.format_table(result)
    row = next(line for line in text.splitlines() if line.strip().startswith("bce"))
    assert row.split()[1] == "0.800" and "[" not in row
    assert "Test split, 1 seed, so no interval; " in text and "95% CI" not in text
    differences = report.format_differences(result)
    assert "no interval (fewer than 2 seeds with a value)" in differences and "95% CI" not in differences
    assert differences.splitlines()[0].endswith("on the same seeds, mean; one seed gives no interval):")

    def no_nan(token):
        raise AssertionError(f"{token} is not JSON")

    doc = json.loads(report.as_json(result, [Path("r/config.json"), Path("r/plots/calibration.png")]), parse_constant=no_nan)
    bce = next(row for row in doc["table"] if row["loss"] == "bce")
    assert bce["test_accuracy"] == 0.8 and bce["test_accuracy_low"] is None
    assert doc["files"] == ["r/config.json"] and doc["plots"] == ["r/plots/calibration.png"]
    assert len(doc["summary"]) == len(result.summary)
    assert doc["differences"][0]["reading"] == "no interval (fewer than 2 seeds with a value)"


def test_json_summary_matches_the_frame(result):
    doc = json.loads(report.as_json(result))
    frame = pd.DataFrame(doc["summary"])
    for column in ("mean", "ci_low", "ci_high", "diff_mean"):
        np.testing.assert_allclose(frame[column].astype(float), result.summary[column].astype(float), equal_nan=True)
    assert doc["task"] == "toy" and doc["baseline"] == "bce" and doc["run_dir"] is None
    assert all(not (isinstance(v, float) and math.isnan(v)) for row in doc["summary"] for v in row.values())


def test_json_holds_what_the_text_report_says_besides_the_table():
    # --json is documented as "all of it": the notes, the threshold metric and the implementations were only in the text
    result = made_result({"mse": metrics([0.97, 0.97, 0.97], auc=[0.10, 0.12, 0.11]), "bce": metrics([0.97] * 3, auc=[0.85, 0.9, 0.88])})
    result.config["threshold_metric"] = "f1"
    doc = json.loads(report.as_json(result))
    text = report.format_table(result)
    assert doc["notes"] and all(note in text for note in doc["notes"])
    assert any(note.startswith("Test AUC under 0.5, its whole interval: mse.") for note in doc["notes"])
    assert doc["threshold_metric"] == "f1" and "by its f1" in text
    assert set(doc["training"]) == {"optimizer", "lr", "batch_size"}
