"""The figures' finer rules: the fitted accuracy axis, the label-share bars, the all-negative floors, the best
threshold's interval, the log scale, line widths, one seed's ECE, and what save_plots hands on."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

import lossbench
from lossbench import plots, stats, thresholds
from lossbench.tasks import Split
from tests.conftest import tiny_task
from tests.test_plots import axes_titled, line

LOSSES = ("softmax_ce", "bce", "mse")
FOUR = ("softmax_ce", "bce", "mse", "bce@weighted")


def two_label_task():
    """tiny_task's multi-label task cut to its first two labels."""
    task = tiny_task("multilabel")
    cut = {}
    for name in ("train", "val", "test"):
        split = getattr(task, name)
        y = split.y[:, :2].clone()
        y[y.sum(dim=1) == 0, 0] = 1.0  # every example has at least one label (softmax across labels needs one)
        cut[name] = Split(split.x, y, split.source)
    return dataclasses.replace(task, name="tiny-two-labels", label_names=("a", "b"), **cut)


@pytest.fixture(scope="module")
def two_labels() -> lossbench.Result:
    """A multi-label run with 2 labels and 3 seeds (so that every band has an interval)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return lossbench.compare(two_label_task(), LOSSES, seeds=3, epochs=2, lr=0.01, device="cpu")
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def four_losses() -> lossbench.Result:
    """A binary run of 4 losses, one of them a variant with options, and 1 seed (no interval anywhere)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return lossbench.compare(tiny_task("binary"), FOUR, seeds=1, epochs=1, device="cpu", overrides={"bce@weighted": {"pos_weight": 4.0}})
    finally:
        torch.set_num_threads(before)


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# ---------------------------------------------------------------------------------------------
# The accuracy axis fitted to the trained epochs
# ---------------------------------------------------------------------------------------------


def bands_of(*losses: tuple[float, list[float], list[float], list[float]]) -> dict[str, pd.DataFrame]:
    """One band per loss: (epoch 0's mean, then the trained epochs' means, ci_lows, ci_highs)."""
    out = {}
    for k, (before, means, lows, highs) in enumerate(losses):
        out[f"loss{k}"] = pd.DataFrame(
            {"epoch": range(len(means) + 1), "mean": [before, *means], "ci_low": [before, *lows], "ci_high": [before, *highs]}
        )
    return out


def fitted(bands, **kw) -> tuple[tuple[float, float], str]:
    ax = Figure().subplots()
    ax.set_ylim(-7, 7)  # left alone when epoch 0 fits
    note = plots._fit_to_training(ax, bands, limits=(0, 1), **kw)
    return ax.get_ylim(), note


def test_fit_to_training_adds_a_tenth_of_the_span_on_each_side_and_reads_a_missing_interval_as_the_mean():
    # trained epochs span 0.78 (the one-seed loss's mean, no interval) to 0.90: 0.012 more on each side
    limits, note = fitted(bands_of((0.3, [0.82, 0.85], [0.80, 0.83], [0.84, 0.90]), (0.3, [0.78, 0.80], [np.nan, np.nan], [np.nan, np.nan])))
    assert limits == pytest.approx((0.768, 0.912))
    assert note == "epoch 0, before training: 0.30, below the axis"


def test_fit_to_training_spans_at_least_min_span_centred_on_flat_lines():
    flat = bands_of((0.1, [0.6, 0.6], [0.6, 0.6], [0.6, 0.6]))
    assert fitted(flat) == (pytest.approx((0.575, 0.625)), "epoch 0, before training: 0.10, below the axis")  # min_span 0.05
    assert fitted(flat, min_span=0.2)[0] == pytest.approx((0.5, 0.7))


def test_fit_to_training_shifts_an_axis_that_would_leave_the_limits_back_inside_them_keeping_its_span():
    # 0 to 0.02 widened to 0.05 is -0.015 to 0.035: moved up to 0 to 0.05
    limits, note = fitted(bands_of((0.95, [0.01, 0.01], [0.0, 0.0], [0.02, 0.02])))
    assert limits == pytest.approx((0.0, 0.05)) and note == "epoch 0, before training: 0.95, above the axis"
    # a ci_high past 1 counts as 1; 0.97 to 1 widened to 0.96 to 1.01: moved down to 0.95 to 1
    limits, note = fitted(bands_of((0.2, [0.99, 0.99], [0.97, 0.97], [1.04, 1.0])))
    assert limits == pytest.approx((0.95, 1.0)) and note == "epoch 0, before training: 0.20, below the axis"


def test_fit_to_training_names_epoch_0_on_both_sides_and_leaves_an_axis_that_shows_it_alone():
    # 0.5 to 0.52 is 0.485 to 0.535; one loss starts below it, another above
    limits, note = fitted(bands_of((0.1, [0.5, 0.5], [0.5, 0.5], [0.52, 0.52]), (0.99, [0.51, 0.51], [0.5, 0.5], [0.52, 0.52])))
    assert limits == pytest.approx((0.485, 0.535)) and note == "epoch 0, before training: 0.10, 0.99, outside the axis"
    # epoch 0 close to the trained epochs: shown, so the axis is not fitted
    assert fitted(bands_of((0.45, [0.5, 0.6], [0.5, 0.6], [0.5, 0.6]))) == ((-7, 7), "")


# ---------------------------------------------------------------------------------------------
# Label shares
# ---------------------------------------------------------------------------------------------


def label_share_bars(fig) -> list[tuple[BarContainer, np.ndarray, np.ndarray]]:
    """Per loss: its bars, and the low and high ends of their error bars."""
    ax = axes_titled(fig, "Share of |dL/dz| per label")
    out = []
    for bars in (c for c in ax.containers if isinstance(c, BarContainer)):
        segments = np.array(bars.errorbar.lines[2][0].get_segments())  # one vertical segment per bar
        out.append((bars, segments[:, 0, 1], segments[:, 1, 1]))
        np.testing.assert_allclose(segments[:, 0, 0], [b.get_x() + b.get_width() / 2 for b in bars])  # on the bar's centre
    return out


def test_label_share_bars_of_two_labels_are_grouped_centred_on_each_label(two_labels):
    result = two_labels
    fig = plots.gradient_allocation(result)
    ax = axes_titled(fig, "Share of |dL/dz| per label")
    width = 0.8 / len(LOSSES)
    bars = label_share_bars(fig)
    assert len(bars) == len(LOSSES)
    for i, (container, _, _) in enumerate(bars):
        # the i-th loss's bar sits (i - 1) widths from the label's tick: the 3 bars of a label centred on it
        np.testing.assert_allclose([b.get_x() + b.get_width() / 2 for b in container], np.array([0, 1]) + (i - 1) * width)
        np.testing.assert_allclose([b.get_width() for b in container], [width, width])
    assert list(ax.get_xticks()) == [0, 1] and [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    equal = line(ax, "equal share (1/2)")
    assert list(equal.get_ydata()) == [0.5, 0.5]
    last = result.history[result.history["epoch"] == result.history["epoch"].max()]
    highs = [stats.band(last[last["loss"] == loss], f"grad_label_share[{label}]", ["loss"])["ci_high"].iloc[0] for loss in LOSSES for label in "ab"]
    assert ax.get_ylim() == pytest.approx((0, 1.3 * max(max(highs), 0.5)))  # room above the highest interval or the equal share
    history = result.history.copy()
    history.loc[history["epoch"] == history["epoch"].max(), ["grad_label_share[a]", "grad_label_share[b]"]] = np.nan  # diverged
    ax = axes_titled(plots.gradient_allocation(dataclasses.replace(result, history=history)), "Share of |dL/dz| per label")
    assert ax.get_ylim() == pytest.approx((0, 1.3 * 0.5))  # no bars: the axis still shows the equal share


def test_a_label_share_interval_reaching_below_0_is_cut_at_0(two_labels):
    result = two_labels
    history = result.history.copy()
    last = history["epoch"] == history["epoch"].max()
    mse = last & (history["loss"] == "mse")
    seeds = sorted(history.loc[mse, "seed"])
    for seed, share in zip(seeds, [0.0, 0.0, 0.3]):  # mean 0.1, t-interval far below 0
        row = mse & (history["seed"] == seed)
        history.loc[row, "grad_label_share[a]"] = share
        history.loc[row, "grad_label_share[b]"] = 1 - share
    band = stats.band(history[mse], "grad_label_share[a]", ["loss"]).iloc[0]
    assert band["ci_low"] < -0.3  # what is clipped
    fig = plots.gradient_allocation(dataclasses.replace(result, history=history))
    container, lows, highs = label_share_bars(fig)[LOSSES.index("mse")]
    assert container[0].get_height() == pytest.approx(0.1)
    assert lows[0] == 0.0 and highs[0] == pytest.approx(band["ci_high"])  # a share is never below 0
    assert all(low >= 0 for _, lows, _ in label_share_bars(fig) for low in lows)
    ax = axes_titled(fig, "Share of |dL/dz| per label")
    assert ax.get_ylim()[0] == 0
    caps = [ln for ln in container.errorbar.lines[1]]
    assert min(min(ln.get_ydata()) for ln in caps) == 0.0  # the lower cap sits at 0 too


# ---------------------------------------------------------------------------------------------
# Accuracy against the threshold
# ---------------------------------------------------------------------------------------------


def test_the_exact_match_floor_is_the_share_of_examples_with_no_label(two_labels):
    result = two_labels
    n = len(result.predictions["val_targets"])
    q = n // 4
    targets = np.zeros((n, 2), dtype=np.float32)  # a quarter with no label, then [1, 0] up to 5/8, then [1, 1]
    targets[q : n * 5 // 8, 0] = 1
    targets[n * 5 // 8 :, :] = 1
    fig = plots.accuracy_vs_threshold(dataclasses.replace(result, predictions={**result.predictions, "val_targets": targets}))
    accuracy, exact = fig.axes
    none = float((targets.sum(axis=1) == 0).mean())  # answering "no" to every label gets these examples wholly right
    assert none == 0.25
    assert list(line(exact, f"all-negative answers ({none:.3f})").get_ydata()) == pytest.approx([none, none])
    hamming = 1 - targets.mean()  # ... and every label that is 0 right
    assert list(line(accuracy, f"all-negative answers ({hamming:.3f})").get_ydata()) == pytest.approx([hamming, hamming])


def test_the_best_threshold_bar_reaches_its_own_low_and_high_ends(two_labels):
    result = two_labels
    summary = result.summary.copy()
    row = (summary["loss"] == "bce") & (summary["metric"] == "best_threshold")
    summary.loc[row, ["mean", "ci_low", "ci_high"]] = [0.4, 0.3, 0.6]  # 0.1 below the mean, 0.2 above
    ax = plots.accuracy_vs_threshold(dataclasses.replace(result, summary=summary)).axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer) and len(c.lines[0].get_xdata())]
    assert len(bars) == len(LOSSES)
    bce = bars[LOSSES.index("bce")]
    assert bce.lines[0].get_xdata()[0] == pytest.approx(0.4)
    (segment,) = bce.lines[2][0].get_segments()
    assert list(segment[:, 0]) == pytest.approx([0.3, 0.6])
    assert sorted(cap.get_xdata()[0] for cap in bce.lines[1]) == pytest.approx([0.3, 0.6])


# ---------------------------------------------------------------------------------------------
# Scales and line widths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, decades, scale",
    [
        ([1.0, 31.0], 1.5, "linear"),  # 1.49 decades
        ([1.0, 33.0, np.nan], 1.5, "log"),  # 1.52 decades; NaN ignored
        ([0.5, 500.0], 1.5, "log"),
        ([1.0, 10.0], 1.0, "linear"),  # exactly `decades`: not more
        ([1.0, 10.5], 1.0, "log"),
        ([0.0, 1e-3, 100.0], 1.5, "linear"),  # a 0 has no logarithm
        ([np.nan, np.inf], 1.5, "linear"),
    ],
)
def test_auto_log_switches_to_a_log_scale_only_above_the_decades(values, decades, scale):
    ax = Figure().subplots()
    if decades == 1.5:
        plots._auto_log(ax, np.array(values))  # the default
    else:
        plots._auto_log(ax, np.array(values), decades=decades)
    assert ax.get_yscale() == scale


def test_line_widths_narrow_by_loss_down_to_a_floor_from_the_fourth_loss_on(four_losses):
    fig = plots.training_curves(four_losses)
    for ax in fig.axes:
        assert [line(ax, loss).get_linewidth() for loss in FOUR] == pytest.approx([4.0, 2.8, 1.6, 1.2]), ax.get_title()
    body = axes_titled(plots.gradient_allocation(four_losses), "Gradient into the shared body")
    assert [line(body, loss).get_linewidth() for loss in FOUR] == pytest.approx([4.0, 2.8, 1.6, 1.2])
    assert [plots._width(i) for i in range(3, 7)] == [1.2] * 4


# ---------------------------------------------------------------------------------------------
# Calibration with one seed
# ---------------------------------------------------------------------------------------------


def test_calibration_with_one_seed_gives_the_ece_alone_with_no_interval(four_losses):
    result = four_losses
    fig = plots.calibration(result)
    ece = result.summary[result.summary["metric"] == "test_ece"].set_index("loss")
    for ax, loss in zip(fig.axes, FOUR):
        assert np.isfinite(ece.loc[loss, "mean"]) and np.isnan(ece.loc[loss, "ci_low"])
        texts = legend_texts(ax)
        assert f"ECE {ece.loc[loss, 'mean']:.3f}" in texts  # not "[nan, nan]"
        assert not any("nan" in t or "[" in t for t in texts), texts
    assert "1 seed, so no confidence interval" in fig.get_suptitle()


# ---------------------------------------------------------------------------------------------
# save_plots
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def drawn(monkeypatch) -> list[tuple]:
    """Every figure function of plots replaced by one that records its arguments and draws a blank figure."""
    calls = []

    def stand_in(name):
        def draw(*args, **kwargs):
            calls.append((name, args, kwargs))
            return Figure(figsize=(1, 1))

        return draw

    for name in plots.PLOT_NAMES:
        monkeypatch.setattr(plots, name, stand_in(name))
    return calls


def test_save_plots_hands_each_loss_s_options_to_the_shapes_figure(four_losses, drawn, tmp_path):
    paths = plots.save_plots(four_losses, tmp_path, epoch=1)
    assert [p.name for p in paths] == [f"{name}.png" for name in plots.PLOT_NAMES] and all(p.exists() for p in paths)
    by_name = {name: (args, kwargs) for name, args, kwargs in drawn}
    assert sorted(by_name) == sorted(plots.PLOT_NAMES)  # each drawn once
    args, kwargs = by_name["loss_and_gradient_shapes"]
    assert args == (list(FOUR), {"softmax_ce": {}, "bce": {}, "mse": {}, "bce@weighted": {"pos_weight": 4.0}}) and kwargs == {}
    assert by_name["gradient_allocation"] == ((four_losses,), {"epoch": 1})


class RecordingPool:
    """A stand-in for ProcessPoolExecutor that records how it was made and draws each figure here, at once."""

    made: list[dict] = []

    def __init__(self, max_workers, mp_context=None, initializer=None, initargs=()):
        RecordingPool.made.append({"max_workers": max_workers, "start": mp_context.get_start_method(), "initargs": initargs})
        plots._FORKED = initargs  # what the initializer keeps in each process

    def submit(self, fn, *args):
        future = concurrent.futures.Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="figures are drawn in forked processes on Linux only")
@pytest.mark.parametrize("workers, processes", [(1, None), (2, 2), (3, 3), (5, 5), (99, 5)])
def test_save_plots_draws_in_as_many_processes_as_asked_at_most_one_per_figure(four_losses, drawn, tmp_path, monkeypatch, workers, processes):
    monkeypatch.setattr(RecordingPool, "made", [])
    monkeypatch.setattr(plots, "_FORKED", None)
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", RecordingPool)
    plots.save_plots(four_losses, tmp_path, workers=workers)
    if processes is None:
        assert RecordingPool.made == []  # 1: drawn here, one after another
    else:
        assert RecordingPool.made == [{"max_workers": processes, "start": "fork", "initargs": (four_losses, None)}]
    assert sorted(name for name, _, _ in drawn) == sorted(plots.PLOT_NAMES)


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 2), (4, 4), (5, 5), (16, 5)])
def test_plot_workers_is_one_per_usable_core_at_most_one_per_figure(monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert plots.plot_workers() == workers


@pytest.fixture(scope="module")
def nan_seed_run() -> lossbench.Result:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return lossbench.compare(tiny_task("binary"), ("bce", "mse"), seeds=3, epochs=2, lr=0.01, device="cpu")
    finally:
        torch.set_num_threads(before)


def test_count_bars_average_only_the_seeds_whose_models_have_predictions(nan_seed_run):
    # a model whose scores are NaN is written to calibration.csv as thresholds.calibration gives it: count 0 in every
    # bin; the bars averaged those zeros in, drawing (seeds - 1) / seeds of the other seeds' counts
    nan_model = thresholds.calibration(torch.full((1, 5, 1), torch.nan), torch.zeros(5, 1))
    calibration = nan_seed_run.calibration.copy()
    gone = (calibration["loss"] == "bce") & (calibration["seed"] == 0)
    calibration.loc[gone, "count"] = nan_model["count"][0].numpy().astype(int)
    calibration.loc[gone, ["mean_predicted", "fraction_positive"]] = np.nan
    fig = plots.calibration(dataclasses.replace(nan_seed_run, calibration=calibration))
    fig.draw_without_rendering()
    ax = fig.axes[list(nan_seed_run.losses).index("bce")]
    (right,) = ax.child_axes
    per_unit = right.get_ylim()[1] / ax.get_ylim()[1]
    bars = np.array([p.get_height() for p in ax.patches]) * per_unit
    scored = calibration[(calibration["loss"] == "bce") & ~gone]
    np.testing.assert_allclose(bars, scored.groupby("bin")["count"].mean().sort_index().to_numpy())
