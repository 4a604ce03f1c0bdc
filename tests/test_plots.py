"""The figures: what each panel draws equals the Result's bands, one colour per loss, titles, labels, legends, PNGs."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import lossbench
from lossbench import losses as loss_registry
from lossbench import plots, stats
from tests.conftest import tiny_task

LOSSES = ("softmax_ce", "bce", "mse")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results() -> dict[str, lossbench.Result]:
    """One small run of each task kind (3 seeds, so that every band has an interval)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            kind: lossbench.compare(tiny_task(kind, image=kind == "grid"), LOSSES, seeds=3, epochs=3, lr=0.01, device="cpu")
            for kind in ("binary", "multilabel", "grid")
        }
    finally:
        torch.set_num_threads(before)


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def axes_titled(fig: Figure, start: str):
    found = [ax for ax in fig.axes if ax.get_title().startswith(start)]
    assert len(found) == 1, (start, titles(fig))
    return found[0]


def line(ax, label: str) -> Line2D:
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, (label, [ln.get_label() for ln in ax.get_lines()])
    return found[0]


def band_of(frame, value: str, by: str, loss: str):
    b = stats.band(frame, value, ["loss", by])
    return b[b["loss"] == loss].sort_values(by)


FIGURES = {
    "gradient_allocation": lambda r: plots.gradient_allocation(r),
    "accuracy_vs_threshold": lambda r: plots.accuracy_vs_threshold(r),
    "training_curves": lambda r: plots.training_curves(r),
    "calibration": lambda r: plots.calibration(r),
    "loss_and_gradient_shapes": lambda r: plots.loss_and_gradient_shapes(r.losses),
}


# ---------------------------------------------------------------------------------------------
# What every figure has
# ---------------------------------------------------------------------------------------------


def test_loss_colors_are_the_family_colours_then_spares_by_position():
    assert plots.loss_colors(["mse", "softmax_ce"]) == {"mse": "tab:green", "softmax_ce": "tab:blue"}
    # plain bce is orange wherever it stands in the list; a variant has the family's colour only without it
    assert plots.loss_colors(["bce@weighted", "bce", "focal"]) == {"bce@weighted": "tab:purple", "bce": "tab:orange", "focal": "tab:red"}
    assert plots.loss_colors(["bce", "mse", "bce@weighted"])["bce"] == "tab:orange"
    assert plots.loss_colors(["mse", "bce@a", "bce@b"]) == {"mse": "tab:green", "bce@a": "tab:orange", "bce@b": "tab:purple"}
    many = plots.loss_colors([f"bce@{i}" for i in range(8)])
    assert len(set(many.values())) == 8  # distinct as long as there are colours


@pytest.mark.parametrize("kind", ["binary", "multilabel", "grid"])
@pytest.mark.parametrize("figure", list(FIGURES))
def test_every_panel_has_a_title_and_axis_labels_and_every_figure_a_legend(results, kind, figure):
    fig = FIGURES[figure](results[kind])
    assert fig.get_suptitle()
    assert fig.axes
    for ax in fig.axes:
        assert ax.get_title(), figure
        assert ax.get_xlabel() and ax.get_ylabel(), (figure, ax.get_title())
    assert any(ax.get_legend() is not None for ax in fig.axes), figure


@pytest.mark.parametrize("kind", ["binary", "multilabel", "grid"])
def test_each_loss_has_one_colour_in_every_figure(results, kind):
    result = results[kind]
    colors = plots.loss_colors(result.losses)
    seen = {loss: set() for loss in result.losses}
    for draw in FIGURES.values():
        for ax in draw(result).axes:
            for ln in ax.get_lines():
                label = ln.get_label().split(" (")[0]
                if label in seen:
                    seen[label].add(to_rgba(ln.get_color()))
    for loss in result.losses:
        assert seen[loss] == {to_rgba(colors[loss])}, loss


def test_figures_show_bands_over_seeds(results):
    result = results["binary"]
    fig = plots.training_curves(result)
    for ax in fig.axes:
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == len(result.losses), ax.get_title()


# ---------------------------------------------------------------------------------------------
# What each figure draws equals the Result
# ---------------------------------------------------------------------------------------------


def test_training_curves_draw_the_mean_over_seeds(results):
    result = results["binary"]
    fig = plots.training_curves(result)
    assert titles(fig) == ["Training loss (mean over the epoch)", "Validation loss", "Validation accuracy at threshold 0.5"]
    for ax, column in zip(fig.axes, ["train_loss", "val_loss", "val_accuracy"]):
        for loss in result.losses:
            expected = band_of(result.history, column, "epoch", loss)
            ln = line(ax, loss)
            np.testing.assert_array_equal(ln.get_xdata(), expected["epoch"])
            np.testing.assert_allclose(ln.get_ydata(), expected["mean"], equal_nan=True)


def test_the_accuracy_axis_fits_the_trained_epochs_when_epoch_0_would_flatten_them(results):
    result = results["binary"]
    history = result.history.copy()
    trained = history["epoch"] >= 1
    history.loc[trained, "val_accuracy"] = 0.80 + 0.01 * (history.loc[trained, "seed"] % 3)  # 0.80 to 0.82 from epoch 1 on
    history.loc[~trained, "val_accuracy"] = 0.5
    ax = plots.training_curves(dataclasses.replace(result, history=history)).axes[2]
    low, high = ax.get_ylim()
    assert 0.5 < low < 0.80 and 0.82 < high < 0.85
    assert ax.get_xlabel() == "epoch\n(epoch 0, before training: 0.50, below the axis)"
    history.loc[trained, "val_accuracy"] = 0.828125  # flat lines: the axis still spans 0.05, centred on them
    ax = plots.training_curves(dataclasses.replace(result, history=history)).axes[2]
    assert ax.get_ylim() == pytest.approx((0.803125, 0.853125))
    history.loc[~trained, "val_accuracy"] = 0.79  # near the trained epochs: the axis shows it, no note
    ax = plots.training_curves(dataclasses.replace(result, history=history)).axes[2]
    assert ax.get_ylim()[0] < 0.79 and ax.get_xlabel() == "epoch"


def test_a_value_with_no_finite_neighbour_is_marked_since_a_line_alone_would_not_show_it(results):
    result = results["binary"]
    history = result.history.copy()
    history.loc[(history["loss"] == "bce") & (history["epoch"] >= 2), "train_loss"] = np.nan  # bce diverged in epoch 2
    ax = plots.training_curves(dataclasses.replace(result, history=history)).axes[0]
    color = to_rgba(plots.loss_colors(result.losses)["bce"])
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and to_rgba(ln.get_color()) == color]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [1]
    assert marks[0].get_ydata()[0] == pytest.approx(band_of(history, "train_loss", "epoch", "bce")["mean"].iloc[1])
    assert not any(ln.get_marker() == "o" for ln in plots.training_curves(result).axes[0].get_lines())  # whole lines: no marks


def test_calibration_of_a_loss_whose_seeds_all_diverged_says_so_and_draws_no_counts(results):
    result = results["binary"]
    summary, calibration = result.summary.copy(), result.calibration.copy()
    gone = (summary["loss"] == "bce") & (summary["metric"] == "test_ece")
    summary.loc[gone, ["n", "mean", "ci_low", "ci_high"]] = [0, np.nan, np.nan, np.nan]
    mine = calibration["loss"] == "bce"
    calibration.loc[mine, ["count", "mean_predicted", "fraction_positive"]] = np.nan
    fig = plots.calibration(dataclasses.replace(result, summary=summary, calibration=calibration))
    ax = fig.axes[list(result.losses).index("bce")]
    assert "ECE n/a (every seed diverged)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert not ax.patches and not ax.child_axes


def test_calibration_counts_are_read_on_their_own_axis(results):
    result = results["binary"]
    fig = plots.calibration(result)
    fig.draw_without_rendering()  # the right-hand axis takes its limits from the left one when drawn
    ax = fig.axes[0]
    mine = result.calibration[result.calibration["loss"] == result.losses[0]]
    counts = stats.band(mine, "count", ["bin"]).sort_values("bin")["mean"].to_numpy()
    bars = [p.get_height() for p in ax.patches]
    (right,) = ax.child_axes
    # a bar's height read on the right-hand axis is its mean count; ticks stop at the tallest bar
    per_unit = right.get_ylim()[1] / ax.get_ylim()[1]  # counts per unit of the left axis
    np.testing.assert_allclose(np.array(bars) * per_unit, counts)
    assert max(right.get_yticks()) <= counts.max() and right.get_ylabel() == "count (mean over seeds)"


def test_gradient_allocation_panels_depend_on_the_task(results):
    binary = titles(plots.gradient_allocation(results["binary"]))
    multilabel = titles(plots.gradient_allocation(results["multilabel"]))
    grid = titles(plots.gradient_allocation(results["grid"]))
    unit, body = "Share of |dL/dz| per output unit", "Gradient into the shared body"
    assert any(t.startswith(unit) for t in binary) and any(t.startswith(body) for t in binary)
    assert not any("per label" in t or "per area" in t for t in binary)
    assert not any(t.startswith(unit) for t in multilabel)  # softmax across labels has no negative unit
    assert any(t.startswith("Share of |dL/dz| per label") for t in multilabel)
    assert any(t.startswith(unit) for t in grid) and any(t.startswith("Share of |dL/dz| per area") for t in grid)


def test_the_decision_weight_panel_draws_how_far_each_loss_s_decision_weight_moved(results):
    """Where a 2-logit head is compared, a panel draws ||w - w at the start|| per epoch with its band over seeds."""
    moved = "How far the decision weight moved"
    assert not any(t.startswith(moved) for t in titles(plots.gradient_allocation(results["multilabel"])))
    assert any(t.startswith(moved) for t in titles(plots.gradient_allocation(results["grid"])))
    result = results["binary"]
    ax = axes_titled(plots.gradient_allocation(result), moved)
    for loss in result.losses:
        b = band_of(result.history, "decision_weight_change", "epoch", loss)
        np.testing.assert_allclose(line(ax, loss).get_xdata(), b["epoch"])
        np.testing.assert_allclose(line(ax, loss).get_ydata(), b["mean"])
    start = result.history[result.history.epoch == 0]["decision_weight_change"]
    assert (start == 0).all()
    without = result.history.drop(columns="decision_weight_change")  # a history made without it
    assert not any(t.startswith(moved) for t in titles(plots.gradient_allocation(dataclasses.replace(result, history=without))))


def test_the_two_logit_head_splits_its_gradient_in_half_but_the_body_gets_the_full_signal(results):
    result = results["binary"]
    fig = plots.gradient_allocation(result)
    bars = axes_titled(fig, "Share of |dL/dz| per output unit").patches
    heights = [round(b.get_height(), 6) for b in bars]
    assert heights == [0.5, 0.5, 1.0, 1.0]  # softmax_ce: z1 and z0; bce and mse: their only unit
    body = axes_titled(fig, "Gradient into the shared body")
    softmax, bce = line(body, "softmax_ce").get_ydata(), line(body, "bce").get_ydata()
    # epoch 0: function-matched heads, so the body receives exactly the same gradient (not half of it)
    assert softmax[0] == pytest.approx(bce[0], rel=1e-5)
    expected = band_of(result.history, "grad_body", "epoch", "softmax_ce")["mean"]
    np.testing.assert_allclose(softmax, expected)


def test_a_two_logit_head_whose_every_seed_diverged_is_not_drawn_as_a_one_unit_head(results):
    result = results["binary"]
    history = result.history.copy()
    history.loc[history["loss"] == "softmax_ce", "grad_negative_unit_share"] = np.nan  # no finite gradient left
    fig = plots.gradient_allocation(dataclasses.replace(result, history=history))
    ax = axes_titled(fig, "Share of |dL/dz| per output unit")
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["no finite\ngradient\n(diverged)", "z\n1.00", "z\n1.00"]  # softmax_ce, then bce and mse


def test_confidence_panels_draw_the_per_bin_gradient_at_the_chosen_epoch(results):
    result = results["binary"]
    fig = plots.gradient_allocation(result, epoch=2)
    ax = axes_titled(fig, "|dL/dz| on wrong predictions, epoch 2")
    at = result.history[result.history["epoch"] == 2]
    for loss in result.losses:
        means = [stats.band(at[at["loss"] == loss], f"grad_confidence_wrong[{b}]", ["loss"])["mean"].iloc[0]
                 for b in ("0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-1.0")]  # fmt: skip
        np.testing.assert_allclose(line(ax, loss).get_ydata(), means, equal_nan=True)
        np.testing.assert_allclose(line(ax, loss).get_xdata(), [0.55, 0.65, 0.75, 0.85, 0.95])
    with pytest.raises(ValueError, match=r"^Expected `epoch` to be a recorded epoch, 0 to 3, but got 7\.$"):
        plots.gradient_allocation(result, epoch=7)


def test_label_share_bars_hold_each_label_s_mean_share(results):
    result = results["multilabel"]
    fig = plots.gradient_allocation(result)
    ax = axes_titled(fig, "Share of |dL/dz| per label")
    labels = result.config["label_names"]
    bars = ax.patches
    assert len(bars) == len(labels) * len(result.losses)
    last = result.history[result.history["epoch"] == 3]
    for i, loss in enumerate(result.losses):
        mine = last[last["loss"] == loss]
        expected = [mine[f"grad_label_share[{label}]"].mean() for label in labels]
        np.testing.assert_allclose([b.get_height() for b in bars[i * len(labels) : (i + 1) * len(labels)]], expected)
        assert sum(expected) == pytest.approx(1.0)


def test_accuracy_vs_threshold_marks_the_best_validation_threshold(results):
    result = results["binary"]
    fig = plots.accuracy_vs_threshold(result)
    assert titles(fig) == [
        "Accuracy against the threshold (validation)",
        "Sensitivity and specificity against the threshold (validation)",
    ]
    ax = fig.axes[0]
    val = result.thresholds[result.thresholds["split"] == "val"]
    best = result.summary[result.summary["metric"] == "best_threshold"].set_index("loss")["mean"]
    markers = [ln for ln in ax.get_lines() if ln.get_marker() in plots._MARKERS and len(ln.get_xdata()) == 1]
    assert len(markers) == len(result.losses)
    assert len({m.get_marker() for m in markers}) == len(markers)  # markers at one place stay apart
    for loss, marker in zip(result.losses, markers):
        curve = band_of(val, "accuracy", "threshold", loss)
        np.testing.assert_allclose(line(ax, loss).get_ydata(), curve["mean"])
        assert marker.get_xdata()[0] == pytest.approx(best[loss])
        assert marker.get_ydata()[0] == pytest.approx(np.interp(best[loss], curve["threshold"], curve["mean"]))
        assert to_rgba(marker.get_color()) == to_rgba(plots.loss_colors(result.losses)[loss])
    assert any(list(ln.get_xdata()) == [0.5, 0.5] for ln in ax.get_lines())  # the line at 0.5
    negatives = 1 - result.predictions["val_targets"].mean()  # answering "no" everywhere
    assert any(list(ln.get_ydata()) == pytest.approx([negatives, negatives]) for ln in ax.get_lines())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"all-negative answers ({negatives:.3f})" in legend
    assert "best-validation threshold by accuracy (mean, 95% CI; a marker shape per loss)" in legend


def test_the_threshold_legend_names_the_metric_that_chose_it_and_one_seed_claims_no_interval():
    result = lossbench.compare(tiny_task("binary"), ("bce", "mse"), seeds=1, epochs=1, device="cpu", threshold_metric="f1")
    fig = plots.accuracy_vs_threshold(result)
    assert "best-validation threshold by f1 (mean; a marker shape per loss)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "1 seed, so no confidence interval" in fig.get_suptitle()
    assert "95% CI" not in fig.get_suptitle()


def test_a_diverged_loss_says_so_in_every_figure(results):
    result = results["binary"]
    runs = result.runs.copy()
    runs.loc[runs["loss"] == "bce", "diverged"] = True  # frozen models draw flat lines: the legend must say why
    runs.loc[(runs["loss"] == "mse") & (runs["seed"] == runs["seed"].min()), "diverged"] = True
    diverged = dataclasses.replace(result, runs=runs)
    for figure in ("gradient_allocation", "accuracy_vs_threshold", "training_curves"):
        texts = [t.get_text() for ax in FIGURES[figure](diverged).axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert "bce (diverged 3/3)" in texts and "mse (diverged 1/3)" in texts and "softmax_ce" in texts, figure
    assert [ax.get_title() for ax in plots.calibration(diverged).axes] == ["softmax_ce", "bce (diverged 3/3)", "mse (diverged 1/3)"]


def test_a_one_logit_loss_with_no_finite_gradient_left_is_drawn_as_diverged(results):
    result = results["binary"]
    history = result.history.copy()
    history.loc[history["loss"] == "bce", "grad_body"] = np.nan
    ax = axes_titled(plots.gradient_allocation(dataclasses.replace(result, history=history)), "Share of |dL/dz| per output unit")
    assert [t.get_text() for t in ax.texts][-2:] == ["no finite\ngradient\n(diverged)", "z\n1.00"]  # bce, mse


def test_the_unit_share_interval_sits_on_the_boundary_between_the_units(results):
    result = results["binary"]
    ax = axes_titled(plots.gradient_allocation(result), "Share of |dL/dz| per output unit")
    at = result.history[result.history["epoch"] == result.history["epoch"].max()]
    share = stats.band(at, "grad_negative_unit_share", ["loss"]).set_index("loss").loc["softmax_ce", "mean"]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 1 and bars[0].lines[0].get_ydata()[0] == pytest.approx(1 - share)


def test_a_confidence_bin_that_one_seed_alone_fills_is_drawn_hollow_and_said_so(results):
    result = results["binary"]
    history = result.history.copy()
    last = history["epoch"] == history["epoch"].max()
    column = "grad_confidence_wrong[0.5-0.6]"
    history.loc[last & (history["seed"] != history["seed"].min()), column] = np.nan  # the other seeds had no such mistake
    ax = axes_titled(plots.gradient_allocation(dataclasses.replace(result, history=history)), "|dL/dz| on wrong predictions")
    hollow = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata())]
    assert {float(x) for ln in hollow for x in ln.get_xdata()} == {0.55}
    assert "hollow: one seed's predictions only" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_xlim() == (0.5, 1.0)  # every bin stays on the axis, the legend's entry adds no line to fit
    plain = axes_titled(plots.gradient_allocation(result), "|dL/dz| on wrong predictions")
    if not any(ln.get_markerfacecolor() == "white" and len(ln.get_xdata()) for ln in plain.get_lines()):
        assert "hollow: one seed's predictions only" not in [t.get_text() for t in plain.get_legend().get_texts()]


def test_bands_of_non_negative_quantities_stay_non_negative(results):
    fig = plots.gradient_allocation(results["grid"])
    for ax in fig.axes:
        for band in (c for c in ax.collections if isinstance(c, PolyCollection)):
            for path in band.get_paths():
                assert path.vertices[:, 1].min() >= -1e-12, ax.get_title()


def test_accuracy_vs_threshold_panels_by_task(results):
    assert [t.split(" (")[0] for t in titles(plots.accuracy_vs_threshold(results["multilabel"]))] == [
        "Accuracy against the threshold",
        "Exact match against the threshold",
    ]
    assert len(plots.accuracy_vs_threshold(results["grid"]).axes) == 2  # accuracy, sensitivity/specificity
    fig = plots.accuracy_vs_threshold(results["multilabel"], split="test")
    assert fig.axes[0].get_ylabel() == "Hamming accuracy (per label)"
    with pytest.raises(ValueError, match=r"^Expected `split` to be 'val' or 'test', but got 'train'\.$"):
        plots.accuracy_vs_threshold(results["binary"], split="train")


def test_calibration_draws_reliability_per_loss_with_ece_in_the_legend(results):
    result = results["binary"]
    fig = plots.calibration(result)
    assert [t for t in titles(fig) if t] == list(result.losses)
    ece = result.summary[result.summary["metric"] == "test_ece"].set_index("loss")
    for ax, loss in zip(fig.axes, result.losses):
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert f"ECE {ece.loc[loss, 'mean']:.3f} [{ece.loc[loss, 'ci_low']:.3f}, {ece.loc[loss, 'ci_high']:.3f}]" in texts
        assert any(list(ln.get_xdata()) == [0, 1] and list(ln.get_ydata()) == [0, 1] for ln in ax.get_lines())  # diagonal
        mine = result.calibration[result.calibration["loss"] == loss]
        curve = [ln for ln in ax.get_lines() if ln.get_label().startswith("ECE")][0]
        np.testing.assert_allclose(curve.get_ydata(), stats.band(mine, "fraction_positive", ["bin"]).sort_values("bin")["mean"], equal_nan=True)


@pytest.mark.parametrize("losses, options, message", [
    (["focal"], {"focal": {"gama": 1}}, "Expected the options of 'focal' to be among head_lr_scale, alpha, gamma, but got 'gama'."),
    (["bce"], {"mse": {"on": "raw"}}, "Expected the options to be for the losses drawn, bce, but got options for 'mse'."),
    (["mse"], {"mse": {"on": "raw"}}, "Expected `on` of 'mse' to be 'probability', the curve drawn, but got 'raw'."),
])  # fmt: skip
def test_shapes_refuse_options_they_would_not_draw(losses, options, message):
    # a misspelt gamma drew focal's default curve under its name
    with pytest.raises(ValueError, match=re.escape(message)):
        plots.loss_and_gradient_shapes(losses, options=options)


def test_shapes_of_one_loss_named_as_a_string():
    fig = plots.loss_and_gradient_shapes("bce")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["bce"]


def test_loss_and_gradient_shapes_come_from_the_families():
    fig = plots.loss_and_gradient_shapes(["softmax_ce", "bce", "mse", "bce@weighted"], options={"bce@weighted": {"pos_weight": 4.0}})
    loss_y1, loss_y0, grad_y1, grad_y0 = fig.axes
    p = torch.tensor(line(grad_y0, "mse").get_xdata(), dtype=torch.float64)
    for name, family in (("bce", "bce"), ("mse", "mse")):
        f = loss_registry.family(family)
        np.testing.assert_allclose(line(loss_y1, name).get_ydata(), f.loss_of_probability(p, 1.0).numpy())
        np.testing.assert_allclose(line(grad_y0, name).get_ydata(), f.grad_wrt_logit(p, 0.0).numpy())
    # a confident mistake (p = 0.999, y = 0): cross-entropy pushes with 0.999, MSE with 0.002
    assert line(grad_y0, "bce").get_ydata()[-1] == pytest.approx(0.999)
    assert line(grad_y0, "mse").get_ydata()[-1] == pytest.approx(2 * 0.999 * 0.999 * 0.001)
    assert line(grad_y0, "softmax_ce (on z1; z0 gets minus this)").get_ydata()[-1] == pytest.approx(0.999)
    weighted = line(loss_y1, "bce@weighted (pos_weight=4.0)").get_ydata()
    np.testing.assert_allclose(weighted, 4 * line(loss_y1, "bce").get_ydata())
    np.testing.assert_allclose(line(loss_y0, "bce@weighted (pos_weight=4.0)").get_ydata(), line(loss_y0, "bce").get_ydata())


def test_shapes_name_the_defaults_that_shape_a_loss_and_say_where_the_loss_axis_is_cut():
    fig = plots.loss_and_gradient_shapes(["focal", "focal@plain"], options={"focal@plain": {"gamma": 0.0, "alpha": None}})
    loss_y1, loss_y0, grad_y1, grad_y0 = fig.axes
    p = torch.tensor(line(loss_y1, "focal (alpha=0.25, gamma=2.0)").get_xdata(), dtype=torch.float64)
    focal = loss_registry.family("focal")
    np.testing.assert_allclose(line(loss_y0, "focal (alpha=0.25, gamma=2.0)").get_ydata(), focal.loss_of_probability(p, 0.0).numpy())
    # gamma 0 and no alpha is plain cross-entropy, whose -log(0.001) = 6.9 leaves the axis at 5
    plain = line(loss_y1, "focal@plain (alpha=None, gamma=0.0)").get_ydata()
    np.testing.assert_allclose(plain, -np.log(p.numpy()))
    assert loss_y1.get_ylim()[1] == 5 and loss_y1.get_ylabel() == "loss (axis cut at 5)"
    bounded = plots.loss_and_gradient_shapes(["mse"])  # MSE of a probability stays under 1
    assert bounded.axes[0].get_ylabel() == "loss"
    assert [t.get_text() for t in bounded.axes[0].get_legend().get_texts()] == ["mse"]
    # mse's on='probability' (the only `on` a comparison takes) is the curve itself, not an option of it
    explicit = plots.loss_and_gradient_shapes(["mse"], options={"mse": {"on": "probability"}})
    np.testing.assert_array_equal(explicit.axes[2].lines[0].get_ydata(), bounded.axes[2].lines[0].get_ydata())


def test_calibration_points_at_the_edges_are_inside_the_frame(results):
    for ax in plots.calibration(results["binary"]).axes:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        assert x0 < 0 and x1 > 1 and y0 < 0 and y1 > 1


def test_axes_can_be_given(results):
    result = results["binary"]
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert plots.training_curves(result, axes=axes) is fig
    assert titles(fig)[2] == "Validation accuracy at threshold 0.5"
    with pytest.raises(ValueError, match=r"^Expected `axes` to hold 4 axes for the loss and gradient panels .*, but got 3\.$"):
        plots.loss_and_gradient_shapes(axes=axes)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def test_save_plots_writes_real_pngs_and_a_loaded_run_draws_the_same(results, tmp_path):
    result = results["grid"]
    paths = plots.save_plots(result, tmp_path / "plots")
    assert [p.name for p in paths] == [f"{name}.png" for name in plots.PLOT_NAMES]
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 10_000, path
    saved = result.save(tmp_path / "run")
    loaded = lossbench.load(saved)
    a, b = plots.training_curves(result), plots.training_curves(loaded)
    for ax_a, ax_b in zip(a.axes, b.axes):
        for la, lb in zip(ax_a.get_lines(), ax_b.get_lines()):
            np.testing.assert_allclose(la.get_ydata(), lb.get_ydata(), rtol=1e-9, equal_nan=True)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="figures are drawn in forked processes on Linux only")


@linux_only
def test_figures_drawn_in_parallel_processes_are_the_same_files_byte_for_byte(results, tmp_path, monkeypatch):
    result = results["binary"]
    one = plots.save_plots(result, tmp_path / "one")
    drawn_by = tmp_path / "drawn_by.txt"
    draw = plots._draw

    def draw_and_say_where(*args):
        with open(drawn_by, "a") as f:
            f.write(f"{os.getpid()}\n")
        return draw(*args)

    monkeypatch.setattr(plots, "_draw", draw_and_say_where)
    two = plots.save_plots(result, tmp_path / "two", workers=2)
    pids = drawn_by.read_text().split()
    assert len(pids) == len(plots.PLOT_NAMES) and str(os.getpid()) not in pids  # every figure drawn in another process
    five = plots.save_plots(result, tmp_path / "five", workers=99)  # at most one process per figure
    assert [p.name for p in two] == [p.name for p in five] == [f"{name}.png" for name in plots.PLOT_NAMES]  # PLOT_NAMES' order
    for a, b, c in zip(one, two, five):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes(), a.name
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in two)  # nothing else written


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=linux_only)])
def test_an_error_while_drawing_a_figure_reaches_the_caller(results, tmp_path, monkeypatch, workers):
    def broken(result, axes=None):
        raise RuntimeError("no room on the canvas")

    monkeypatch.setattr(plots, "calibration", broken)  # the forked processes inherit the patched module
    with pytest.raises(RuntimeError, match="^no room on the canvas$"):
        plots.save_plots(results["binary"], tmp_path, workers=workers)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_save_plots_refuses_a_number_of_workers_that_is_not_a_whole_number_from_1(results, tmp_path, workers):
    with pytest.raises(ValueError, match=r"^Expected `workers` to be a whole number >= 1, but got "):
        plots.save_plots(results["binary"], tmp_path, workers=workers)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=linux_only)])
def test_save_plots_refuses_an_epoch_that_was_not_recorded(results, tmp_path, workers):
    with pytest.raises(ValueError, match=r"^Expected `epoch` to be a recorded epoch, 0 to 3, but got 7\.$"):
        plots.save_plots(results["binary"], tmp_path, epoch=7, workers=workers)
    assert not list(tmp_path.glob("*.png"))


def test_importing_lossbench_does_not_import_matplotlib_and_plots_never_use_pyplot():
    code = (
        "import sys, lossbench, lossbench.cli, lossbench.report\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at lossbench import time'\n"
        "from lossbench import plots\n"
        "plots.loss_and_gradient_shapes().savefig(__import__('io').BytesIO(), format='png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    root = Path(lossbench.__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------------------------
# Bands, reference lines and axis limits: what a student reads off a panel is the data's
# ---------------------------------------------------------------------------------------------


def t_interval(values) -> tuple[float, float]:
    """The 95% t-interval of the mean of ``values``, by hand (scipy's t quantile), independent of stats.band."""
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=float)
    half = scipy_stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return values.mean() - half, values.mean() + half


def bands_in(ax, color) -> list[dict[float, tuple[float, float]]]:
    """The bands drawn in ``color``: each as its lower and upper edge at each x."""
    out = []
    for band in (c for c in ax.collections if isinstance(c, PolyCollection)):
        if np.allclose(band.get_facecolor()[0][:3], to_rgba(color)[:3]):
            v = np.concatenate([p.vertices for p in band.get_paths()])
            out.append({float(x): (v[v[:, 0] == x, 1].min(), v[v[:, 0] == x, 1].max()) for x in np.unique(v[:, 0])})
    return out


def with_history(result, column: str, values_by_loss: dict[str, list[float]], epochs=None):
    """``result`` with ``column`` of the given losses set, per seed (in seed order), at the given epochs (default: all)."""
    history = result.history.copy()
    for loss, values in values_by_loss.items():
        for seed, value in zip(sorted(history["seed"].unique()), values):
            rows = (history["loss"] == loss) & (history["seed"] == seed)
            if epochs is not None:
                rows &= history["epoch"].isin(epochs)
            history.loc[rows, column] = value
    return dataclasses.replace(result, history=history)


def test_a_band_is_the_95_percent_t_interval_over_seeds_of_each_epoch(results):
    """The shaded band of a training curve is mean +- t(0.975, n - 1) s / sqrt(n) of the seeds, at every epoch."""
    result = results["binary"]
    ax = plots.training_curves(result).axes[2]  # validation accuracy
    colors = plots.loss_colors(result.losses)
    for loss in result.losses:
        (band,) = bands_in(ax, colors[loss])
        mine = result.history[result.history["loss"] == loss]
        assert sorted(band) == sorted(mine["epoch"].unique())
        for epoch, (low, high) in band.items():
            expected = t_interval(mine.loc[mine["epoch"] == epoch, "val_accuracy"])
            assert (low, high) == pytest.approx(expected), (loss, epoch)
            assert low < high  # a real interval, so that a band collapsed onto the mean would fail


def test_a_rate_s_band_is_cut_at_1_where_the_t_interval_reaches_past_it(results):
    """An accuracy of seeds 1.0, 1.0, 0.94 has a t-interval above 1; the band stops at 1 (and the mean line is the mean)."""
    result = with_history(results["binary"], "val_accuracy", {"bce": [1.0, 1.0, 0.94]}, epochs=[1, 2, 3])
    ax = plots.training_curves(result).axes[2]
    low, high = t_interval([1.0, 1.0, 0.94])
    assert high > 1.05
    (band,) = bands_in(ax, plots.loss_colors(result.losses)["bce"])
    for epoch in (1, 2, 3):
        assert band[epoch] == pytest.approx((low, 1.0))
    np.testing.assert_allclose(line(ax, "bce").get_ydata()[1:], [0.98] * 3)


def test_on_a_log_scale_a_band_reaching_0_stops_at_a_tenth_of_the_smallest_mean(results):
    """mse's training loss of seeds 1e-4, 1e-4, 1e-2 spans decades from cross-entropy's: a log axis, and the band's
    lower edge (a t-interval far below 0) held at a tenth of the smallest mean."""
    result = with_history(results["binary"], "train_loss", {"mse": [1e-4, 1e-4, 1e-2]}, epochs=[1, 2, 3])
    ax = plots.training_curves(result).axes[0]
    assert ax.get_yscale() == "log"
    mean = np.mean([1e-4, 1e-4, 1e-2])
    low, high = t_interval([1e-4, 1e-4, 1e-2])
    assert low < 0
    (band,) = bands_in(ax, plots.loss_colors(result.losses)["mse"])
    for epoch in (1, 2, 3):
        assert band[epoch] == pytest.approx((mean / 10, high))


def test_the_positive_share_panel_draws_the_positives_share_and_zooms_in_on_sparse_positives(results):
    """The dotted line is the share of positives among the validation targets; with shares under 0.4 the axis
    ends at 1.25 times the highest mean, interval end or that line, and a band never leaves [0, 1]."""
    result = results["binary"]
    ax = axes_titled(plots.gradient_allocation(result), "Share of |dL/dz| from positive examples")
    share = float(np.mean(result.predictions["val_targets"]))
    assert share != pytest.approx(0.5)  # so that share and 1 - share differ
    assert list(line(ax, f"positives' share of the examples ({share:.0%})").get_ydata()) == pytest.approx([share, share])

    targets = np.zeros_like(result.predictions["val_targets"])
    targets[: len(targets) // 12] = 1  # 1 in 12 positive
    sparse = with_history(result, "grad_positive_share", {loss: [0.0, 0.0, 0.15] for loss in result.losses})
    sparse = dataclasses.replace(sparse, predictions={**result.predictions, "val_targets": targets})
    ax = axes_titled(plots.gradient_allocation(sparse), "Share of |dL/dz| from positive examples")
    low, high = t_interval([0.0, 0.0, 0.15])
    assert low < 0 and high < 0.4
    assert ax.get_ylim() == pytest.approx((0, 1.25 * high))
    for loss in result.losses:
        (band,) = bands_in(ax, plots.loss_colors(result.losses)[loss])
        assert all(edges == pytest.approx((0.0, high)) for edges in band.values())
    np.testing.assert_allclose(line(ax, f"positives' share of the examples ({np.mean(targets):.0%})").get_ydata(), [np.mean(targets)] * 2)


def test_the_two_confidence_panels_share_one_scale_that_shows_both(results):
    """Correct and wrong predictions are drawn on one y scale, high enough for the larger of the two."""
    result = results["binary"]
    fig = plots.gradient_allocation(result)
    correct, wrong = axes_titled(fig, "|dL/dz| on correct predictions"), axes_titled(fig, "|dL/dz| on wrong predictions")
    assert correct.get_ylim() == wrong.get_ylim() and correct.get_ylim()[0] == 0
    last = result.history[result.history["epoch"] == result.history["epoch"].max()]
    tops = {}
    for which in ("correct", "wrong"):
        columns = [c for c in last.columns if c.startswith(f"grad_confidence_{which}[")]
        tops[which] = np.nanmax(last.groupby("loss")[columns].mean().to_numpy())
    assert tops["correct"] != pytest.approx(tops["wrong"], rel=0.05)  # one panel's values rise above the other's
    assert correct.get_ylim()[1] >= max(tops.values())


def test_accuracy_vs_threshold_on_the_test_split_draws_the_test_split(results):
    """split="test" draws the test split's curves and floor, and says so; they are not the validation split's."""
    result = results["binary"]
    fig = plots.accuracy_vs_threshold(result, split="test")
    assert titles(fig) == [
        "Accuracy against the threshold (test)",
        "Sensitivity and specificity against the threshold (test)",
    ]
    assert fig.get_suptitle().startswith("Accuracy against the decision threshold (test split, ")
    ax = fig.axes[0]
    test, val = (result.thresholds[result.thresholds["split"] == s] for s in ("test", "val"))
    for loss in result.losses:
        drawn = line(ax, loss).get_ydata()
        np.testing.assert_allclose(drawn, band_of(test, "accuracy", "threshold", loss)["mean"])
        assert not np.allclose(drawn, band_of(val, "accuracy", "threshold", loss)["mean"])
    negatives = 1 - np.mean(result.predictions["test_targets"])
    assert negatives != pytest.approx(1 - np.mean(result.predictions["val_targets"]))
    assert list(line(ax, f"all-negative answers ({negatives:.3f})").get_ydata()) == pytest.approx([negatives, negatives])


def test_sensitivity_is_the_solid_line_and_specificity_the_dashed_one(results):
    """The legend says solid = sensitivity, dashed = specificity: each loss's lines must be those metrics' means."""
    result = results["binary"]
    ax = plots.accuracy_vs_threshold(result).axes[1]
    val = result.thresholds[result.thresholds["split"] == "val"]
    colors = plots.loss_colors(result.losses)
    for loss in result.losses:
        mine = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2 and to_rgba(ln.get_color()) == to_rgba(colors[loss])]
        by_style = {ln.get_linestyle(): ln for ln in mine}
        assert sorted(by_style) == ["-", "--"] and len(mine) == 2
        assert by_style["-"].get_label() == loss
        for style, metric in (("-", "sensitivity"), ("--", "specificity")):
            expected = band_of(val, metric, "threshold", loss)
            np.testing.assert_array_equal(by_style[style].get_xdata(), expected["threshold"])
            np.testing.assert_allclose(by_style[style].get_ydata(), expected["mean"])
        # sensitivity falls and specificity rises with the threshold: the two are not the same curve
        assert by_style["-"].get_ydata()[0] > by_style["-"].get_ydata()[-1] and by_style["--"].get_ydata()[0] < by_style["--"].get_ydata()[-1]
    assert ax.get_ylim() == pytest.approx((0, 1.02))  # the whole range of a rate, a rate of 1 drawn whole
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "sensitivity (true-positive rate)" in labels and "specificity (true-negative rate)" in labels


def test_a_reliability_diagram_plots_fraction_positive_against_mean_predicted_probability(results):
    """Each point is (mean over seeds of the bin's mean predicted probability, mean over seeds of its fraction positive)."""
    result = results["binary"]
    fig = plots.calibration(result)
    for ax, loss in zip(fig.axes, result.losses):
        mine = result.calibration[result.calibration["loss"] == loss]
        per_bin = mine.groupby("bin")[["mean_predicted", "fraction_positive"]].mean()  # pandas' mean skips NaN, as over seeds
        (curve,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("ECE")]
        np.testing.assert_allclose(curve.get_xdata(), per_bin["mean_predicted"], equal_nan=True)
        np.testing.assert_allclose(curve.get_ydata(), per_bin["fraction_positive"], equal_nan=True)
        assert not np.allclose(per_bin["mean_predicted"].dropna(), per_bin["fraction_positive"].dropna())
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("mean predicted probability", "fraction positive")



def test_training_curves_name_their_axes_and_only_the_accuracy_panel_holds_the_legend(results):
    """The loss panels say each loss is on its own scale (MSE's values are not cross-entropy's); the accuracy panel,
    the one to compare losses on, names the accuracy and carries the one legend."""
    fig = plots.training_curves(results["binary"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss, each on its own scale", "loss, each on its own scale", "accuracy"]
    assert [ax.get_legend() is not None for ax in fig.axes] == [False, False, True]
    assert [t.get_text() for t in fig.axes[2].get_legend().get_texts()] == list(LOSSES)
    assert plots.training_curves(results["grid"]).axes[2].get_ylabel() == "Hamming accuracy (per area)"


def test_calibration_count_bars_cover_their_bins_and_the_tallest_is_a_quarter_of_the_height(results):
    """A count bar spans its probability bin exactly (bin_low to bin_high), and the fullest bin's bar is 0.25 tall."""
    result = results["binary"]
    for ax, loss in zip(plots.calibration(result).axes, result.losses):
        mine = result.calibration[result.calibration["loss"] == loss]
        edges = mine.groupby("bin")[["bin_low", "bin_high"]].first()
        counts = mine.groupby("bin")["count"].mean()
        bars = ax.patches
        assert len(bars) == len(edges) == 10
        np.testing.assert_allclose([b.get_x() for b in bars], edges["bin_low"])
        np.testing.assert_allclose([b.get_x() + b.get_width() for b in bars], edges["bin_high"])
        np.testing.assert_allclose([b.get_height() for b in bars], 0.25 * counts / counts.max())


def test_the_shaded_confident_mistakes_are_p_below_0_1_for_y_1_and_above_0_9_for_y_0():
    """The red band marks where a prediction is a confident mistake: p < 0.1 when y = 1, p > 0.9 when y = 0."""
    fig = plots.loss_and_gradient_shapes()
    for ax, span in zip(fig.axes, [(0.0, 0.1), (0.9, 1.0), (0.0, 0.1), (0.9, 1.0)]):
        (shade,) = ax.patches
        x = shade.get_path().transformed(shade.get_patch_transform()).vertices[:, 0]
        assert (x.min(), x.max()) == pytest.approx(span), ax.get_title()
        (note,) = ax.texts  # the note points from beside the band towards it
        assert "confident mistakes" in note.get_text()
        assert note.get_position()[0] == pytest.approx(0.11 if span[0] == 0 else 0.89)


def test_the_loss_axis_says_it_is_cut_when_any_curve_leaves_it_not_only_the_last():
    """bce's -log(p) leaves the axis at 5, mse after it stays under 1: the axis is still cut, and says so."""
    fig = plots.loss_and_gradient_shapes(["bce", "mse"])
    assert [ax.get_ylabel() for ax in fig.axes[:2]] == ["loss (axis cut at 5)", "loss (axis cut at 5)"]
    assert max(line(fig.axes[0], "bce").get_ydata()) == pytest.approx(-np.log(0.001))  # past the axis' top


def test_a_per_label_option_is_named_as_not_drawn_and_the_curve_is_the_plain_one():
    """A per-label pos_weight has no single curve: the legend says it is not drawn, and the curve drawn is plain bce's."""
    fig = plots.loss_and_gradient_shapes(["bce", "bce@labels"], options={"bce@labels": {"pos_weight": [1.0, 4.0]}})
    loss_y1 = fig.axes[0]
    drawn = line(loss_y1, "bce@labels [pos_weight per label: not drawn]").get_ydata()
    np.testing.assert_allclose(drawn, line(loss_y1, "bce").get_ydata())


def test_a_figure_drawn_on_the_caller_s_axes_leaves_the_caller_s_figure_title_alone(results):
    """Given axes, a plot draws its panels there and sets no suptitle on a figure it does not own."""
    result = results["binary"]
    for draw, n in ((plots.training_curves, 3), (plots.calibration, 3), (plots.loss_and_gradient_shapes, 4)):
        fig = Figure()
        fig.suptitle("the caller's own title")
        drawn = draw(result if draw is not plots.loss_and_gradient_shapes else LOSSES, axes=fig.subplots(1, n))
        assert drawn is fig and fig.get_suptitle() == "the caller's own title", draw.__name__
    assert plots.training_curves(result).get_suptitle().startswith("Training curves (mean and 95% CI over 3 seeds)")
