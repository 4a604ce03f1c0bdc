"""The shared runner: batched training equals the plain loop, identical models, divergence, determinism, save/load."""
from __future__ import annotations

import dataclasses
import filecmp

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats
from torch.utils._python_dispatch import TorchDispatchMode

import lossbench
from lossbench import models, results, runner
from lossbench.models import Head
from lossbench.tasks import TrainingDefaults
from tests.conftest import tiny_task

SMALL = dict(seeds=2, epochs=3, batch_size=16, device="cpu", dtype="float64")
LOSSES = ("softmax_ce", "bce", "mse")


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.select_dtypes(include=[np.number, bool]).astype(float)


def assert_same_numbers(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-6) -> None:
    assert list(a.columns) == list(b.columns)
    assert (a.select_dtypes(exclude=[np.number, bool]) == b.select_dtypes(exclude=[np.number, bool])).all().all()
    np.testing.assert_allclose(_numeric(a).to_numpy(), _numeric(b).to_numpy(), atol=atol, rtol=1e-9, equal_nan=True)


@pytest.mark.parametrize(
    "kind, image, bias, options",
    [
        pytest.param("binary", False, True, dict(optimizer="adam", lr=0.01), id="binary-mlp-adam"),
        pytest.param("binary", False, True, dict(optimizer="sgd", lr=0.3, momentum=0.9, weight_decay=1e-3), id="binary-mlp-sgd-momentum"),
        pytest.param("binary", False, False, dict(optimizer="adam", lr=0.01), id="binary-mlp-no-bias-adam"),
        # 48 examples in minibatches of 20: a last, shorter one of 8 every epoch
        pytest.param("binary", False, True, dict(optimizer="adam", lr=0.01, weight_decay=1e-2, batch_size=20), id="binary-mlp-adam-decay-short-batch"),
        pytest.param("multilabel", False, True, dict(optimizer="sgd", lr=0.3, weight_decay=1e-2, batch_size=20), id="multilabel-mlp-sgd-decay-short-batch"),
        pytest.param("multilabel", False, True, dict(optimizer="adam", lr=0.01), id="multilabel-mlp-adam"),
        pytest.param("multilabel", True, True, dict(optimizer="adam", lr=0.01), id="multilabel-cnn-adam"),
        pytest.param("grid", True, True, dict(optimizer="adam", lr=0.01), id="grid-cnn-adam"),
        pytest.param("grid", True, False, dict(optimizer="sgd", lr=0.1, momentum=0.9), id="grid-cnn-no-bias-sgd"),
    ],
)
def test_batched_run_equals_the_plain_one_model_at_a_time_loop(kind, image, bias, options):
    task = tiny_task(kind, image=image, bias=bias)
    kwargs = dict(SMALL, **options, overrides={"softmax_ce": {"head_lr_scale": 0.5}})
    batched = lossbench.compare(task, LOSSES, **kwargs)
    loop = lossbench.compare(task, LOSSES, engine="loop", **kwargs)
    for name in ("history", "runs", "thresholds", "calibration", "summary"):
        assert_same_numbers(getattr(batched, name), getattr(loop, name))
    # the training really moved the models (so the equality above is not about untouched weights)
    h = batched.history
    assert (h[h.epoch == 3].decision_weight_change > 0).all()


def test_batched_run_in_chunks_of_the_batch_equals_the_plain_loop(monkeypatch):
    # cache-sized chunks (models.chunked_body_forward) of 5 examples: minibatches of 16 run as 5 + 5 + 5 + 1
    task = tiny_task("grid", image=True)
    monkeypatch.setattr(models, "CHUNK_ACTIVATIONS", len(LOSSES) * SMALL["seeds"] * task.body.activations * 5)
    assert models.chunk_size(task.body, len(LOSSES) * SMALL["seeds"]) == 5
    sizes = []
    forward = models.body_forward
    monkeypatch.setattr(models, "body_forward", lambda spec, params, x: sizes.append(x.shape[1]) or forward(spec, params, x))
    batched = lossbench.compare(task, LOSSES, **SMALL, optimizer="adam", lr=0.01)
    assert sizes[:4] == [5, 5, 5, 1]  # the first training step really ran in chunks
    monkeypatch.setattr(models, "body_forward", forward)
    loop = lossbench.compare(task, LOSSES, engine="loop", **SMALL, optimizer="adam", lr=0.01)
    for name in ("history", "runs", "thresholds", "calibration", "summary"):
        assert_same_numbers(getattr(batched, name), getattr(loop, name))


@pytest.mark.parametrize("batch_size, starts", [(4, (0, 4, 8)), (5, (0, 5)), (16, (0,))], ids=["4+4+2", "5+5", "one-short-batch"])
def test_minibatches_gathered_per_epoch_or_per_step_are_the_same_steps(monkeypatch, batch_size, starts):
    x = torch.randn(10, 3, dtype=torch.float64)
    targets = [torch.arange(10.0), torch.arange(10) % 2]
    order = torch.stack([torch.randperm(10), torch.randperm(10)])  # 2 seeds
    at_once = list(runner.minibatches(x, targets, order, batch_size=batch_size, n_losses=3))
    monkeypatch.setattr(runner, "GATHER_EPOCH_AT_ONCE", 0)
    by_step = list(runner.minibatches(x, targets, order, batch_size=batch_size, n_losses=3))
    assert len(at_once) == len(by_step) == len(starts)
    for start, (xa, ta), (xb, tb) in zip(starts, at_once, by_step):
        idx = order[:, start : start + batch_size]
        assert torch.equal(xa, xb) and torch.equal(xa, torch.cat([x[idx]] * 3))  # model l * seeds + s: seed s's batch
        for a, b, t in zip(ta, tb, targets):
            assert torch.equal(a, b) and torch.equal(a, t[idx])
    assert all(xa.is_contiguous() and all(t.is_contiguous() for t in ta) for xa, ta in at_once)


def test_batched_run_gathering_each_step_equals_the_plain_loop(monkeypatch):
    # the image tasks' inputs are too large to gather an epoch at once: each step gathers its own batch
    monkeypatch.setattr(runner, "GATHER_EPOCH_AT_ONCE", 0)
    task = tiny_task("binary")
    batched = lossbench.compare(task, LOSSES, **SMALL, optimizer="adam", lr=0.01)
    loop = lossbench.compare(task, LOSSES, engine="loop", **SMALL, optimizer="adam", lr=0.01)
    for name in ("history", "runs"):
        assert_same_numbers(getattr(batched, name), getattr(loop, name))


def test_batched_equals_loop_when_a_model_diverges():
    task = tiny_task("binary")
    kwargs = dict(SMALL, epochs=4, optimizer="sgd", lr=10.0, impl={"bce@naive": "naive"})
    batched = lossbench.compare(task, ("bce", "bce@naive"), **kwargs)
    loop = lossbench.compare(task, ("bce", "bce@naive"), engine="loop", **kwargs)
    assert batched.runs.diverged.any()
    assert_same_numbers(batched.history, loop.history)
    assert_same_numbers(batched.runs, loop.runs)


def test_matched_heads_give_identical_first_predictions_for_every_loss():
    task = tiny_task("binary")
    result = lossbench.compare(task, LOSSES, **dict(SMALL, epochs=1))
    start = result.history[result.history.epoch == 0]
    for column in ("val_accuracy", "val_auc"):
        per_seed = start.pivot(index="seed", columns="loss", values=column)
        np.testing.assert_allclose(per_seed.to_numpy(), per_seed[["bce"]].to_numpy().repeat(3, axis=1), atol=1e-12)
    # and the scores themselves, straight from the initial models
    setups = runner.resolve_losses(LOSSES, "handwritten", None, task, torch.device("cpu"), torch.float64)
    models = runner.init_models(task, setups, [0, 1], "matched", torch.device("cpu"), torch.float64)
    scores = runner.predict(task, models, setups, task.val.x.double()).reshape(3, 2, -1)
    torch.testing.assert_close(scores[0], scores[1], atol=1e-12, rtol=0)
    torch.testing.assert_close(scores[2], scores[1], atol=1e-12, rtol=0)


def test_independent_heads_start_from_different_predictions():
    task = tiny_task("binary")
    setups = runner.resolve_losses(LOSSES, "handwritten", None, task, torch.device("cpu"), torch.float64)
    models = runner.init_models(task, setups, [0], "independent", torch.device("cpu"), torch.float64)
    scores = runner.predict(task, models, setups, task.val.x.double())
    assert not torch.allclose(scores[0], scores[1])
    # but the bodies are the same for every loss
    torch.testing.assert_close(models.body["w1"][0], models.body["w1"][2])


def test_every_loss_sees_the_same_batches_so_two_copies_of_one_loss_train_identically():
    task = tiny_task("binary")
    result = lossbench.compare(task, ("bce", "bce@copy", "mse"), **dict(SMALL, lr=0.05, optimizer="adam"))
    h = result.history
    a = h[h.loss == "bce"].drop(columns=["loss", "model"]).reset_index(drop=True)
    b = h[h.loss == "bce@copy"].drop(columns=["loss", "model"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # while different seeds see different batches and start from different weights
    assert not np.allclose(a[a.seed == 0].val_loss.to_numpy(), a[a.seed == 1].val_loss.to_numpy())


def test_batch_order_depends_on_the_seed_only():
    both = runner.batch_order([3, 5], epochs=4, n=10, device=torch.device("cpu"))
    alone = runner.batch_order([5], epochs=4, n=10, device=torch.device("cpu"))
    assert both.shape == (4, 2, 10)
    assert torch.equal(both[:, 1], alone[:, 0])
    assert all(sorted(row.tolist()) == list(range(10)) for row in both.reshape(-1, 10))


def test_sgd_at_half_the_head_lr_makes_softmax_ce_follow_bce_exactly():
    """A 2-logit head moves its decision weight w1 - w0 twice as fast; halving its lr removes the difference."""
    task = tiny_task("binary")
    kwargs = dict(SMALL, epochs=5, optimizer="sgd", lr=0.5)
    halved = lossbench.compare(task, ("softmax_ce", "bce"), overrides={"softmax_ce": {"head_lr_scale": 0.5}}, **kwargs)
    h = halved.history
    for column in ("val_loss", "train_loss", "val_accuracy", "grad_body", "decision_weight_change"):
        ce = h[h.loss == "softmax_ce"][column].to_numpy()
        bce = h[h.loss == "bce"][column].to_numpy()
        np.testing.assert_allclose(ce, bce, atol=1e-9, rtol=0, equal_nan=True, err_msg=column)
    # at the full learning rate they part ways: after one epoch the 2-logit decision weight moved further
    full = lossbench.compare(task, ("softmax_ce", "bce"), **dict(kwargs, epochs=1)).history
    moved = full[full.epoch == 1].pivot(index="seed", columns="loss", values="decision_weight_change")
    assert (moved.softmax_ce > 1.5 * moved.bce).all()
    # with weight decay the halved rate also halves the head's decay steps, so the two part (as the docs say)
    decayed = lossbench.compare(task, ("softmax_ce", "bce"), overrides={"softmax_ce": {"head_lr_scale": 0.5}},
                                weight_decay=0.1, **kwargs).history  # fmt: skip
    last = decayed[decayed.epoch == 5].pivot(index="seed", columns="loss", values="decision_weight_change")
    assert ((last.softmax_ce - last.bce).abs() > 1e-3 * last.bce).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_two_logit_decision_weight_first_step_is_twice_bces(optimizer):
    """w1 and w0 get opposite gradients, so from the matched start w1 - w0 takes exactly twice BCE's step."""
    task = tiny_task("binary")  # 48 training examples: one full-batch step per epoch
    one_step = lossbench.compare(task, ("softmax_ce", "bce"), **dict(SMALL, epochs=1, batch_size=48, optimizer=optimizer, lr=0.1))
    moved = one_step.history[one_step.history.epoch == 1].pivot(index="seed", columns="loss", values="decision_weight_change")
    assert (moved.bce > 0).all()
    np.testing.assert_allclose(moved.softmax_ce, 2 * moved.bce, rtol=1e-9)


def test_two_logit_gradient_halves_on_units_but_the_body_receives_the_same_signal():
    task = tiny_task("binary")
    h = lossbench.compare(task, ("softmax_ce", "bce"), **dict(SMALL, epochs=1)).history
    start = h[h.epoch == 0]
    assert np.allclose(start[start.loss == "softmax_ce"].grad_negative_unit_share, 0.5)
    assert start[start.loss == "bce"].grad_negative_unit_share.isna().all()
    body = start.pivot(index="seed", columns="loss", values="grad_body")
    np.testing.assert_allclose(body.softmax_ce, body.bce, atol=1e-12)


def test_naive_bce_diverges_at_a_high_learning_rate_while_the_handwritten_one_trains():
    task = tiny_task("binary", n=64)
    result = lossbench.compare(
        task, ("bce", "bce@naive"), impl={"bce@naive": "naive"}, seeds=3, epochs=6, batch_size=16, optimizer="sgd", lr=10.0, device="cpu"
    )
    runs = result.runs.set_index(["loss", "seed"])
    assert runs.loc["bce@naive"].diverged.all()
    assert (runs.loc["bce@naive"].diverged_epoch >= 1).all()
    assert not runs.loc["bce"].diverged.any()
    assert np.isfinite(runs.loc["bce"].final_train_loss).all()
    assert runs.loc["bce@naive"].final_train_loss.isna().all()  # no last epoch to average over
    h = result.history
    dead = h[(h.loss == "bce@naive") & (h.epoch > runs.loc["bce@naive"].diverged_epoch.max())]
    assert dead.train_loss.isna().all()  # a frozen model no longer trains
    # the frozen model's weights stop moving
    after = h[(h.loss == "bce@naive") & (h.epoch >= runs.loc["bce@naive"].diverged_epoch.max())]
    assert after.groupby("seed").decision_weight_change.nunique().eq(1).all()


def test_same_config_gives_byte_identical_csv_files(tmp_path):
    task = tiny_task("binary")
    a = lossbench.compare(task, LOSSES, seeds=2, epochs=2, batch_size=16, device="cpu").save(tmp_path / "a")
    b = lossbench.compare(task, LOSSES, seeds=2, epochs=2, batch_size=16, device="cpu").save(tmp_path / "b")
    for name in results.FRAMES:
        assert filecmp.cmp(a / f"{name}.csv", b / f"{name}.csv", shallow=False), name


def test_save_and_load_round_trip(tmp_path):
    result = lossbench.compare(tiny_task("multilabel"), LOSSES, seeds=2, epochs=2, batch_size=16, device="cpu")
    path = result.save(tmp_path / "run")
    loaded = lossbench.load(path)
    for name in results.FRAMES:
        pd.testing.assert_frame_equal(getattr(result, name).reset_index(drop=True), getattr(loaded, name), check_dtype=False, atol=1e-12)
    assert loaded.config["losses"] == list(LOSSES)
    assert loaded.config["environment"]["torch"] == torch.__version__
    np.testing.assert_array_equal(loaded.predictions["test_scores"], result.predictions["test_scores"])
    assert loaded.predictions["test_scores"].shape == (6, 48, 4)


def test_interrupted_save_leaves_no_directory_that_looks_complete(tmp_path, monkeypatch):
    result = lossbench.compare(tiny_task("binary"), LOSSES, seeds=2, epochs=1, batch_size=16, device="cpu")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        result.save(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="does not exist"):
        lossbench.load(tmp_path / "run")


def test_save_refuses_to_overwrite_a_run(tmp_path):
    result = lossbench.compare(tiny_task("binary"), LOSSES, seeds=2, epochs=1, batch_size=16, device="cpu")
    result.save(tmp_path / "run")
    with pytest.raises(ValueError, match="already holds files"):
        result.save(tmp_path / "run")


def test_summary_matches_a_hand_computation():
    result = lossbench.compare(tiny_task("binary"), LOSSES, seeds=4, epochs=2, batch_size=16, device="cpu")
    runs, summary = result.runs, result.summary.set_index(["loss", "metric"])
    mse = runs[runs.loss == "mse"].sort_values("seed").test_auc.to_numpy()
    bce = runs[runs.loss == "bce"].sort_values("seed").test_auc.to_numpy()
    half = scipy_stats.t.ppf(0.975, 3) * mse.std(ddof=1) / 2
    row = summary.loc[("mse", "test_auc")]
    assert row["mean"] == pytest.approx(mse.mean())
    assert row["ci_low"] == pytest.approx(mse.mean() - half)
    assert row["ci_high"] == pytest.approx(mse.mean() + half)
    d = mse - bce
    assert row["diff_mean"] == pytest.approx(d.mean())
    assert row["diff_high"] - row["diff_mean"] == pytest.approx(scipy_stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2)
    assert row["baseline"] == "bce"


def test_runs_frame_has_one_row_per_loss_and_seed_with_test_metrics_at_both_thresholds():
    result = lossbench.compare(tiny_task("multilabel"), LOSSES, seeds=3, epochs=2, batch_size=16, device="cpu")
    runs = result.runs
    assert len(runs) == 9 and set(runs.loss) == set(LOSSES) and set(runs.seed) == {0, 1, 2}
    for column in ("test_accuracy", "test_accuracy_best", "best_threshold", "test_auc", "test_exact_match", "test_exact_match_best"):
        assert runs[column].between(0, 1).all(), column
    # the threshold chosen on validation maximises validation accuracy
    sweep = result.thresholds[result.thresholds.split == "val"]
    best = sweep.groupby(["loss", "seed"]).accuracy.max()
    chosen = runs.set_index(["loss", "seed"]).val_accuracy_best
    pd.testing.assert_series_equal(best.sort_index(), chosen.sort_index(), check_names=False)


def test_metrics_at_one_half_are_measured_at_one_half_whatever_the_threshold_grid():
    result = lossbench.compare(tiny_task("multilabel"), LOSSES, seeds=2, epochs=2, batch_size=16, device="cpu", threshold_points=4)
    assert 0.5 not in set(result.thresholds.threshold)  # 0.01, 0.3367, 0.6633, 0.99
    p = result.predictions
    y = p["test_targets"].astype(bool)
    pred = p["test_scores"] >= 0.5  # (models, examples, K)
    np.testing.assert_allclose(result.runs.test_accuracy, (pred == y).mean(axis=(1, 2)))
    np.testing.assert_allclose(result.runs.test_exact_match, (pred == y).all(axis=2).mean(axis=1))
    tp, fn = (pred & y).sum(axis=(1, 2)), (~pred & y).sum(axis=(1, 2))
    np.testing.assert_allclose(result.runs.test_sensitivity, tp / (tp + fn))
    val = result.predictions["val_scores"] >= 0.5
    np.testing.assert_allclose(result.runs.val_accuracy, (val == p["val_targets"].astype(bool)).mean(axis=(1, 2)))


def _auc_by_hand(scores: np.ndarray, y: np.ndarray, pooled: bool) -> float:
    """scikit-learn's AUC of one model: the outputs pooled (a grid's areas), or the mean over the outputs with both classes."""
    from sklearn.metrics import roc_auc_score

    if pooled:
        return roc_auc_score(y.ravel(), scores.ravel())
    return float(np.mean([roc_auc_score(y[:, k], scores[:, k]) for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]))


def _ece_by_hand(scores: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over 10 equal bins, a score on an edge going to the lower bin (scikit-learn's binning)."""
    s, t = scores.ravel().astype(np.float64), y.ravel()
    index = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], s, side="left")
    return sum((index == b).sum() / len(s) * abs(t[index == b].mean() - s[index == b].mean()) for b in range(bins) if (index == b).any())


@pytest.mark.parametrize("kind", ["binary", "multilabel", "grid"])
def test_every_recorded_metric_recomputes_from_the_saved_predictions(kind):
    """runs.csv and the last epoch of history.csv, each column from the split and the scores it names."""
    result = lossbench.compare(tiny_task(kind), LOSSES, seeds=2, epochs=2, batch_size=16, device="cpu", dtype="float64")
    p, runs = result.predictions, result.runs
    last = result.history[result.history["epoch"] == result.history["epoch"].max()].set_index(["loss", "seed"])
    last = last.loc[list(zip(runs["loss"], runs["seed"]))]  # the runs' order
    for split in ("val", "test"):
        scores, y = p[f"{split}_scores"], p[f"{split}_targets"]  # (models, examples, K), (examples, K)
        pred, truth = scores >= 0.5, y.astype(bool)
        np.testing.assert_allclose(runs[f"{split}_accuracy"], (pred == truth).mean(axis=(1, 2)))
        tn, fp = (~pred & ~truth).sum(axis=(1, 2)), (pred & ~truth).sum(axis=(1, 2))
        tp, fn = (pred & truth).sum(axis=(1, 2)), (~pred & truth).sum(axis=(1, 2))
        if f"{split}_specificity" in runs:
            np.testing.assert_allclose(runs[f"{split}_specificity"], tn / (tn + fp))
        if f"{split}_f1" in runs:
            np.testing.assert_allclose(runs[f"{split}_f1"], 2 * tp / (2 * tp + fp + fn))
        auc = [_auc_by_hand(scores[m], y, pooled=kind == "grid") for m in range(len(runs))]
        np.testing.assert_allclose(runs[f"{split}_auc"], auc)
        if split == "val":  # the last epoch's probe measured the final models on the validation split
            np.testing.assert_allclose(last["val_accuracy"], runs["val_accuracy"])
            np.testing.assert_allclose(last["val_auc"], auc)
            np.testing.assert_allclose(last["val_loss"], runs["val_loss"])
    np.testing.assert_allclose(runs["test_ece"], [_ece_by_hand(p["test_scores"][m], p["test_targets"]) for m in range(len(runs))])
    calibration = result.calibration[result.calibration["loss"] == runs["loss"][0]]
    first = calibration[calibration["seed"] == runs["seed"][0]].sort_values("bin")
    index = np.searchsorted(np.linspace(0, 1, 11)[1:-1], p["test_scores"][0].ravel(), side="left")
    np.testing.assert_array_equal(first["count"], np.bincount(index, minlength=10))
    # each bin is labelled by its own edges, and holds the scores between them
    np.testing.assert_allclose(first["bin_low"], np.arange(10) / 10)
    np.testing.assert_allclose(first["bin_high"], np.arange(1, 11) / 10)
    filled = first[first["count"] > 0]
    assert ((filled["mean_predicted"] >= filled["bin_low"]) & (filled["mean_predicted"] <= filled["bin_high"])).all()


def test_decision_weight_change_is_the_euclidean_distance_the_decision_weights_moved():
    task, cpu = tiny_task("binary"), torch.device("cpu")
    setups = runner.resolve_losses(("softmax_ce", "bce"), "handwritten", None, task, cpu, torch.float64)
    cfg = dataclasses.replace(TrainingDefaults(), seeds=2, epochs=2, batch_size=16)
    start = runner.prepare(task, setups, cfg, [0, 1], "matched", cpu, torch.float64).models
    trained = runner.train(task, setups, cfg, [0, 1], "matched", cpu, torch.float64)
    moved = [
        torch.linalg.vector_norm(s.head.decision_weight(end) - s.head.decision_weight(begin), dim=(1, 2))  # w1 - w0 for softmax_ce
        for s, begin, end in zip(setups, start.heads, trained["models"].heads)
    ]
    np.testing.assert_allclose(trained["history"]["decision_weight_change"][-1], torch.cat(moved).detach().numpy(), rtol=1e-12)


def test_a_score_of_exactly_one_half_is_a_yes_for_the_accuracy_at_one_half():
    scores = torch.tensor([[[0.5], [0.5]], [[0.49], [0.5]]], dtype=torch.float64)  # two models, two examples
    assert runner.accuracy_at_half(scores, torch.tensor([[1.0], [0.0]])).tolist() == [0.5, 0.0]
    assert runner.accuracy_at_half(scores, torch.tensor([[1.0], [1.0]])).tolist() == [1.0, 0.5]


@pytest.mark.parametrize("kind, dtype", [("binary", "float32"), ("multilabel", "float32"), ("binary", "float64")])
def test_every_best_threshold_metric_is_measured_at_the_threshold_chosen_on_validation(kind, dtype):
    result = lossbench.compare(tiny_task(kind), LOSSES, seeds=3, epochs=2, batch_size=16, device="cpu", dtype=dtype)
    p, runs = result.predictions, result.runs
    assert p["test_scores"].dtype == np.dtype(dtype)  # the saved scores are the ones the metrics were measured on
    as_scores = np.dtype(dtype).type
    grid = np.sort(result.thresholds.threshold.unique())
    for split in ("val", "test"):
        scores, y = p[f"{split}_scores"], p[f"{split}_targets"].astype(bool)  # (models, examples, K)
        right = np.empty((len(runs), len(grid), 2))  # Hamming accuracy and exact match at each threshold
        for j, t in enumerate(grid):
            hit = (scores >= as_scores(t)) == y
            right[:, j] = np.stack([hit.mean(axis=(1, 2)), hit.all(axis=2).mean(axis=1)], axis=1)
        if split == "val":  # the chosen threshold maximises validation accuracy, ties going to the one nearest 0.5
            best = right[:, :, 0].max(axis=1)
            nearest = [min(grid[row >= top - 1e-12], key=lambda t: (round(abs(t - 0.5), 9), t)) for row, top in zip(right[:, :, 0], best)]
            np.testing.assert_allclose(runs.best_threshold, nearest, atol=1e-6)
            np.testing.assert_allclose(runs.val_accuracy_best, best)
            continue
        at = [int(np.argmin(np.abs(grid - t))) for t in runs.best_threshold]
        pred = scores >= as_scores(grid[at])[:, None, None]
        tp, fp = (pred & y).sum(axis=(1, 2)), (pred & ~y).sum(axis=(1, 2))
        fn, tn = (~pred & y).sum(axis=(1, 2)), (~pred & ~y).sum(axis=(1, 2))
        np.testing.assert_allclose(runs.test_accuracy_best, (pred == y).mean(axis=(1, 2)))
        np.testing.assert_allclose(runs.test_sensitivity_best, tp / (tp + fn))
        np.testing.assert_allclose(runs.test_specificity_best, tn / (tn + fp))
        np.testing.assert_allclose(runs.test_f1_best, 2 * tp / (2 * tp + fp + fn))
        if kind == "multilabel":
            np.testing.assert_allclose(runs.test_exact_match_best, (pred == y).all(axis=2).mean(axis=1))
        # which is not the threshold best on test: for some model the two differ, so the check above can tell
        assert (runs.test_accuracy_best.to_numpy() < right[:, :, 0].max(axis=1) - 1e-12).any()


def test_a_model_whose_predictions_are_nan_has_no_metrics_and_the_table_says_so():
    # naive softmax cross-entropy at an absurd SGD learning rate: one seed's weights blow up
    reports = []
    result = lossbench.compare("titanic", seeds=3, epochs=3, config={"hidden": 8}, impl="naive", lr=50.0, optimizer="sgd", device="cpu",
                               progress=reports.append)
    nan_model = np.isnan(result.predictions["test_scores"]).any(axis=(1, 2))
    assert nan_model.any() and not nan_model.all()
    runs = result.runs
    for column in ("test_accuracy", "test_accuracy_best", "best_threshold", "test_auc", "test_f1", "test_sensitivity", "test_ece"):
        assert runs[column][nan_model].isna().all(), column
    assert runs["test_accuracy"][~nan_model].notna().all()
    summary = result.summary.set_index(["loss", "metric"])
    for loss, counted in runs.assign(ok=~nan_model).groupby("loss").ok.sum().items():
        assert summary.loc[(loss, "test_accuracy"), "n"] == counted
    # nor a validation accuracy in its history (a NaN score is not a negative prediction), nor a last train loss
    nan_on_val = np.isnan(result.predictions["val_scores"]).any(axis=(1, 2))
    last = result.history[result.history.epoch == 3].set_index("model").loc[runs.model]
    assert nan_on_val.any()
    np.testing.assert_array_equal(last.val_accuracy.isna().to_numpy(), nan_on_val)
    # the progress report's accuracy of a loss is the mean over its models that have one
    shown = last.assign(loss=runs.loss.to_numpy()).groupby("loss").val_accuracy.mean()  # pandas skips NaN
    assert last.val_accuracy.isna().any() and last.val_accuracy.notna().any()
    assert reports[-1].val_accuracy == pytest.approx(shown.to_dict(), rel=1e-12)
    assert runs.final_train_loss[runs.diverged.astype(bool)].isna().all()
    assert runs.final_train_loss[~runs.diverged.astype(bool)].notna().all()
    losses = runs.loss[nan_model].value_counts()
    line = lossbench.report.format_table(result).splitlines()[-1]
    assert line.startswith("Models whose predictions are NaN (their weights blew up) have no test metrics")
    for loss, count in losses.items():
        assert f"{loss} {count} of 3" in line


def test_probe_measurements_match_a_direct_autograd_computation():
    task = tiny_task("binary")
    setups = runner.resolve_losses(("softmax_ce", "bce"), "reference", None, task, torch.device("cpu"), torch.float64)
    prepared = runner.prepare(task, setups, dataclasses.replace(TrainingDefaults(), seeds=1, epochs=1), [0], "matched", torch.device("cpu"), torch.float64)
    probed = runner.probe(task, prepared.models, setups, prepared.loss_fns, prepared.xs["val"], prepared.ys["val"], prepared.targets["val"])
    # by hand, for the BCE model: p - y per example, and the body gradient w * (p - y)
    w1, b1 = prepared.models.body["w1"][1], prepared.models.body["b1"][1]
    w, b = prepared.models.heads[1]["w"][0], prepared.models.heads[1]["b"][0]
    x, y = prepared.xs["val"], prepared.ys["val"][:, 0]
    h = torch.relu(x @ w1 + b1)
    p = torch.sigmoid(h @ w[:, 0] + b[0])
    g = p - y
    assert probed["val_loss"][1].item() == pytest.approx(torch.nn.functional.binary_cross_entropy(p, y).item())
    assert probed["grad_positive_share"][1].item() == pytest.approx((g.abs() * y).sum().item() / g.abs().sum().item())
    assert probed["grad_body"][1].item() == pytest.approx((g.abs() * w[:, 0].norm()).mean().item())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param(dict(losses=("hinge",)), "Expected each of `losses` to be a loss family among softmax_ce, bce, mse, focal, or one with a label", id="unknown-loss"),
        pytest.param(dict(losses=("bce", "bce@")), "but got 'bce@'; .lossbench losses. lists them", id="empty-label"),
        pytest.param(dict(losses=("bce", "bce@a b")), "but got 'bce@a b'", id="label-with-a-space"),
        pytest.param(dict(impl="fancy"), "Expected the implementation of", id="unknown-impl"),
        pytest.param(dict(head_init="random"), "Expected `head_init`", id="unknown-head-init"),
        pytest.param(dict(epochs=0), "Expected `epochs` to be a positive whole number", id="zero-epochs"),
        pytest.param(dict(seeds=-2), "Expected `seeds`", id="negative-seeds"),
        pytest.param(dict(lr=-1.0), "Expected `lr` to be a positive number", id="negative-lr"),
        pytest.param(dict(optimizer="rmsprop"), "Expected `optimizer`", id="unknown-optimizer"),
        pytest.param(dict(overrides={"bce": {"head_lr": 0.5}}), r"Expected the options of 'bce' \(overrides, or --loss-option\) to be among head_lr_scale", id="unknown-override"),
        pytest.param(dict(overrides={"focal": {"gamma": 1}}), "Expected an implementation or override for one of the losses", id="override-of-absent-loss"),
        pytest.param(dict(baseline="focal"), "Expected `baseline`", id="absent-baseline"),
        pytest.param(dict(device="cuda:0"), "CUDA", id="cuda-without-cuda"),
        pytest.param(dict(engine="turbo"), "Expected `engine`", id="unknown-engine"),
        pytest.param(dict(cuda_graphs="no"), "Expected `cuda_graphs` to be True or False", id="cuda-graphs-not-a-bool"),
        pytest.param(dict(cpu_trace=1), "Expected `cpu_trace` to be True or False", id="cpu-trace-not-a-bool"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    if kwargs.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = dict(losses=LOSSES, seeds=1, epochs=1, device="cpu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        lossbench.compare(tiny_task("binary"), **args)


def test_unknown_config_key_for_a_named_task_lists_the_valid_keys():
    with pytest.raises(ValueError, match="Expected config keys among .*epochs"):
        lossbench.compare("titanic", config={"epoch": 3})


USER_MODULE = '''
import torch

def my_bce(output, target):
    p = torch.sigmoid(output)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()

def not_vectorisable(output, target):
    if (target.sum() > 0).item():  # a Python branch on a tensor value: vmap cannot run it
        pass
    return torch.nn.functional.binary_cross_entropy_with_logits(output, target)

def not_a_mean(output, target):
    return torch.nn.functional.binary_cross_entropy_with_logits(output, target, reduction="none")
'''


def test_a_users_loss_plugs_in_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "student_losses.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    task = tiny_task("binary")
    mine = lossbench.compare(task, ("bce",), impl={"bce": "student_losses:my_bce"}, **SMALL)
    ref = lossbench.compare(task, ("bce",), impl="reference", **SMALL)
    assert mine.runs.impl.eq("student_losses:my_bce").all()
    np.testing.assert_allclose(mine.history.val_loss, ref.history.val_loss, atol=1e-9)


def test_a_users_loss_that_cannot_be_vectorised_still_trains_one_model_at_a_time(tmp_path, monkeypatch):
    (tmp_path / "student_losses.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    task = tiny_task("binary")
    with pytest.warns(UserWarning, match="could not be vectorised") as warned:
        mine = lossbench.compare(task, ("bce",), impl={"bce": "student_losses:not_vectorisable"}, **SMALL)
    # vmap's own reason, not "Expected the loss function ... to run on every minibatch": it ran, only batching failed
    assert not any("to run on every minibatch" in str(w.message) for w in warned)
    ref = lossbench.compare(task, ("bce",), impl="reference", **SMALL)
    np.testing.assert_allclose(mine.history.val_loss, ref.history.val_loss, atol=1e-9)


def test_a_loss_that_does_not_return_a_scalar_is_refused(tmp_path, monkeypatch):
    (tmp_path / "student_losses.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="to return a scalar tensor"):
        lossbench.compare(tiny_task("binary"), ("bce",), impl={"bce": "student_losses:not_a_mean"}, **SMALL)


def test_progress_reports_every_epoch_with_mean_accuracy_per_loss():
    seen = []
    lossbench.compare(tiny_task("binary"), LOSSES, seeds=2, epochs=3, batch_size=16, device="cpu", progress=seen.append)
    assert [r.epoch for r in seen] == [0, 1, 2, 3]
    assert set(seen[-1].val_accuracy) == set(LOSSES)
    assert all(0 <= v <= 1 for v in seen[-1].val_accuracy.values())


class _HostReads(TorchDispatchMode):
    """Counts the operations that read a tensor's value back to the host (on a GPU: a synchronisation)."""

    READS = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.is_nonzero")  # .item(), bool(t), t[mask], ...

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += str(func).startswith(self.READS)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "image, optimizer", [(False, "adam"), (False, "sgd"), (True, "adam")], ids=["mlp-adam", "mlp-sgd", "cnn-adam"]
)
def test_training_reads_no_value_back_per_step_or_per_epoch(image, optimizer):
    # Only the setup reads values (each loss is called once with its value checks on); the steps and the
    # per-epoch records stay on the device, so the number of reads must not grow with the epochs.
    task = tiny_task("binary", image=image)
    setups = runner.resolve_losses(LOSSES, "handwritten", None, task, torch.device("cpu"), torch.float32)
    counts = []
    for epochs in (1, 3):
        cfg = dataclasses.replace(TrainingDefaults(), seeds=2, epochs=epochs, batch_size=16, optimizer=optimizer, momentum=0.9)
        with _HostReads() as reads:
            runner.train(task, setups, cfg, [0, 1])
        counts.append(reads.count)
    assert counts[0] == counts[1], counts
    with _HostReads() as reads:
        torch.tensor([1.0, 2.0]).sum().item()
    assert reads.count == 1  # the counter does see a read


def test_pack_puts_named_tensors_back_into_the_matrix_columns():
    task = tiny_task("binary")
    setups = runner.resolve_losses(LOSSES, "handwritten", None, task, torch.device("cpu"), torch.float64)
    m = runner.init_models(task, setups, [0, 1], "matched", torch.device("cpu"), torch.float64)
    body, head = m.detached().parts()
    assert torch.equal(m.pack(body, head), m.flat.detach())
    doubled = m.pack({k: 2 * v for k, v in body.items()}, {k: -v for k, v in head.items()})
    torch.testing.assert_close(doubled[:, m.head_columns()], -m.flat.detach()[:, m.head_columns()], rtol=0, atol=0)
    torch.testing.assert_close(doubled[:, : m.head_columns().start], 2 * m.flat.detach()[:, : m.head_columns().start], rtol=0, atol=0)


def test_records_reach_the_host_in_one_transfer_with_their_values_shapes_and_precision():
    records = {
        "loss": torch.tensor([0.25, 1 + 1e-12], dtype=torch.float64),  # a float64 digit float32 would lose
        "share": torch.tensor([[0.5, 0.125], [1.0, 3.0]]),
        "epoch": torch.tensor([0, 7]),
    }
    host = runner._to_host(records)
    assert list(host) == ["loss", "share", "epoch"]
    for name, value in records.items():
        assert host[name].dtype == np.float64 and host[name].shape == tuple(value.shape)
        np.testing.assert_array_equal(host[name], value.to(torch.float64).numpy())
    assert host["loss"][1] - 1 == pytest.approx(1e-12, rel=1e-3)


@pytest.mark.parametrize("kind", ["binary", "multilabel", "grid"])
def test_heads_follow_the_design_table(kind):
    k = {"binary": 1, "multilabel": 4, "grid": 4}[kind]
    two, one = Head("two_logit", kind, k), Head("one_logit", kind, k)
    z2 = torch.randn(2, 3, 1 if kind != "grid" else k, two.units)
    z1 = torch.randn(2, 3, 1 if kind != "grid" else k, one.units)
    expected_two = {"binary": (2, 3, 2), "multilabel": (2, 3, k), "grid": (2, 3, 2, k)}[kind]
    expected_one = {"binary": (2, 3), "multilabel": (2, 3, k), "grid": (2, 3, k)}[kind]
    assert two.output(z2).shape == expected_two
    assert one.output(z1).shape == expected_one
    assert two.scores(two.output(z2)).shape == one.scores(one.output(z1)).shape == (2, 3, k)
    # a matched 2-logit head predicts what the 1-logit head predicts
    params = {"w": torch.randn(5, one.units), "b": torch.randn(one.units)}
    h = torch.randn(1, 3, 1 if kind != "grid" else k, 5)
    from lossbench.models import head_forward

    one_scores = one.scores(one.output(head_forward({k_: v[None] for k_, v in params.items()}, h)))
    two_params = two.from_one_logit(params)
    two_scores = two.scores(two.output(head_forward({k_: v[None] for k_, v in two_params.items()}, h)))
    if kind == "multilabel":  # same logits, softmax across labels instead of sigmoids
        torch.testing.assert_close(two_scores.log().diff(dim=-1), torch.log_softmax(head_forward({k_: v[None] for k_, v in params.items()}, h)[:, :, 0], -1).diff(dim=-1))
    else:
        torch.testing.assert_close(one_scores, two_scores)


def test_quick_titanic_comparison_runs_end_to_end():
    result = lossbench.compare("titanic", quick=True, device="cpu")
    assert set(result.runs.loss) == set(LOSSES)
    assert result.config["task"] == "titanic"
    acc = result.summary.set_index(["loss", "metric"]).loc[("bce", "test_accuracy"), "mean"]
    assert 0.6 < acc <= 1.0  # well above the 62% of always guessing "died"


def test_a_saved_run_directory_is_an_ordinary_readable_folder(tmp_path):
    import os
    import stat

    result = lossbench.compare(tiny_task("binary"), LOSSES, seeds=1, epochs=1, batch_size=16, device="cpu")
    path = result.save(tmp_path / "run")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask


def test_each_loss_is_batched_the_cheapest_way_that_gives_the_same_numbers():
    task = tiny_task("binary")
    result = lossbench.compare(
        task, ("softmax_ce", "softmax_ce@weighted", "bce", "bce@naive"), impl={"bce@naive": "naive"},
        overrides={"softmax_ce@weighted": {"weight": [1.0, 3.0]}}, **dict(SMALL, epochs=2),
    )
    batched_by = {name: setup["batched_by"] for name, setup in result.config["loss_setups"].items()}
    # plain means of per-element terms are flattened; a class-weighted mean and a function without
    # `reduction` run under vmap
    assert batched_by == {"softmax_ce": "flatten", "softmax_ce@weighted": "vmap", "bce": "flatten", "bce@naive": "vmap"}
    loop = lossbench.compare(
        task, ("softmax_ce", "softmax_ce@weighted", "bce", "bce@naive"), impl={"bce@naive": "naive"},
        overrides={"softmax_ce@weighted": {"weight": [1.0, 3.0]}}, engine="loop", **dict(SMALL, epochs=2),
    )
    assert_same_numbers(result.history, loop.history)
