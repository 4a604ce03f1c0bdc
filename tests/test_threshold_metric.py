"""The metric the best threshold maximises on the validation split: accuracy by default, or another one."""
from __future__ import annotations

import numpy as np
import pytest

import lossbench
from lossbench import cli
from lossbench.report import format_table
from tests.conftest import tiny_task

TINY = dict(seeds=2, epochs=2, device="cpu", config={"hidden": 8})


def _best_by_hand(result, metric: str) -> np.ndarray:
    """Each model's best threshold recomputed from the saved validation sweep: the maximum closest to 0.5."""
    val = result.thresholds[result.thresholds["split"] == "val"]
    chosen = []
    for (loss, seed), sweep in val.groupby(["loss", "seed"], sort=False):
        values = (sweep["sensitivity"] + sweep["specificity"]) / 2 if metric == "balanced_accuracy" else sweep[metric]
        values = values.fillna(-1.0).to_numpy()
        t = sweep["threshold"].to_numpy()
        tied = t[values >= values.max() - 1e-12]
        chosen.append((loss, seed, min(tied, key=lambda x: (round(abs(x - 0.5), 9), x))))
    by_model = {(loss, seed): t for loss, seed, t in chosen}
    return np.array([by_model[(row.loss, row.seed)] for row in result.runs.itertuples()])


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1"])
def test_the_best_threshold_maximises_the_chosen_validation_metric(metric):
    result = lossbench.compare("titanic", threshold_metric=metric, **TINY)
    np.testing.assert_allclose(result.runs["best_threshold"].to_numpy(), _best_by_hand(result, metric), atol=1e-12)
    assert result.config["threshold_metric"] == metric


def test_another_metric_moves_the_threshold_and_the_table_says_by_what():
    by_accuracy = lossbench.compare("titanic", **TINY)
    by_balance = lossbench.compare("titanic", threshold_metric="balanced_accuracy", **TINY)
    # Titanic's positives are 38%: balancing sensitivity and specificity moves some threshold
    assert not np.allclose(by_accuracy.runs["best_threshold"], by_balance.runs["best_threshold"])
    assert "chosen on the validation split." in format_table(by_accuracy).splitlines()[2]
    assert format_table(by_balance).splitlines()[2].endswith("chosen on the validation split, by its balanced accuracy.")


def test_exact_match_selects_on_a_multilabel_task():
    result = lossbench.compare(tiny_task("multilabel"), losses=("bce", "mse"), seeds=2, epochs=2, device="cpu",
                               threshold_metric="exact_match")
    val = result.thresholds[result.thresholds["split"] == "val"]
    assert "exact_match" in val.columns
    np.testing.assert_allclose(result.runs["best_threshold"].to_numpy(), _best_by_hand(result, "exact_match"), atol=1e-12)


@pytest.mark.parametrize("metric, message", [
    ("auc", "Expected `threshold_metric` to be one of 'accuracy', 'balanced_accuracy', 'f1', 'exact_match', but got 'auc'."),
    ("exact_match", "only for a task with several outputs"),
])
def test_an_unknown_or_impossible_metric_is_refused_before_training(metric, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        lossbench.compare("titanic", threshold_metric=metric, **TINY)


def test_the_cli_passes_the_metric_on_and_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["compare", "--task", "titanic", "--quick", "--seeds", "2", "--epochs", "2", "--set", "hidden=8",
                     "--threshold-metric", "f1", "--out", str(out), "--no-plots", "--device", "cpu"])
    assert code == 0
    assert lossbench.load(out).config["threshold_metric"] == "f1"
    assert "chosen on the validation split, by its f1." in capsys.readouterr().out
    assert cli.main(["compare", "--task", "titanic", "--threshold-metric", "auc"]) == 2
    assert "invalid choice: 'auc'" in capsys.readouterr().err
