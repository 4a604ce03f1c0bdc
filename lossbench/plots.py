"""The figures of a comparison: matplotlib drawings of a Result's frames, one colour per loss, 95% bands over seeds.

This module computes no statistics itself: every band is :func:`lossbench.stats.band` (the mean and
t-interval over seeds of one column, per group), the measured numbers are read from the Result's frames
(and a few plain ones, such as the all-negative baseline and the positives' share, from its saved
predictions), and the analytic curves come from the loss families' own ``loss_of_probability`` and
``grad_wrt_logit``.
Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so drawing needs no screen,
leaves no global state behind, and matplotlib is imported only when a plot is drawn.

:func:`save_plots` writes every figure into a folder (``RUN_DIR/plots/``):

1. ``gradient_allocation.png``: where each loss sends its gradient (:func:`gradient_allocation`);
2. ``accuracy_vs_threshold.png``: accuracy against the decision threshold (:func:`accuracy_vs_threshold`);
3. ``training_curves.png``: losses and validation accuracy per epoch (:func:`training_curves`);
4. ``calibration.png``: reliability diagrams on the test split (:func:`calibration`);
5. ``loss_and_gradient_shapes.png``: loss(p) and dL/dz(p) of each loss (:func:`loss_and_gradient_shapes`,
   which needs no run).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lossbench import losses as loss_registry
from lossbench import stats
from lossbench.results import Result

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FAMILY_COLORS = {"softmax_ce": "tab:blue", "bce": "tab:orange", "mse": "tab:green", "focal": "tab:red"}
"""Each loss family's colour, the same in every figure."""

SPARE_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
"""Colours for a second variant of a family (``bce@weighted``) or a family without its own colour."""

PLOT_NAMES = ("gradient_allocation", "accuracy_vs_threshold", "training_curves", "calibration", "loss_and_gradient_shapes")
"""The figures :func:`save_plots` writes, as ``<name>.png``."""

DPI = 110
BAND_ALPHA = 0.2  # light enough that the mean lines stay visible through overlapping bands


# ---------------------------------------------------------------------------------------------
# Colours, panels, bands
# ---------------------------------------------------------------------------------------------


def loss_colors(losses: Sequence[str]) -> dict[str, str]:
    """One colour per loss: a family's own colour for its plain name (``bce``) wherever it stands in the list,
    or for the family's first variant (``bce@weighted``) when the plain name is not in the run; spare
    colours for the rest, by position.

    >>> loss_colors(["softmax_ce", "bce", "mse"])
    {'softmax_ce': 'tab:blue', 'bce': 'tab:orange', 'mse': 'tab:green'}
    >>> loss_colors(["bce@weighted", "bce"])          # plain bce keeps its orange; the variant gets a spare colour
    {'bce@weighted': 'tab:purple', 'bce': 'tab:orange'}
    """
    colors: dict[str, str] = {}
    plain_first = sorted(losses, key=lambda name: "@" in name)  # stable: the plain names, then the variants, in order
    for name in plain_first:
        own = FAMILY_COLORS.get(name.split("@", 1)[0])
        if own is not None and own not in colors.values():
            colors[name] = own
    for name in losses:
        if name not in colors:
            free = [c for c in SPARE_COLORS + tuple(FAMILY_COLORS.values()) if c not in colors.values()]
            colors[name] = free[0] if free else SPARE_COLORS[len(colors) % len(SPARE_COLORS)]
    return {name: colors[name] for name in losses}


def _panels(axes: Sequence[Axes] | None, names: Sequence[str], ncols: int, panel_size: tuple[float, float], what: str) -> tuple[Figure, list[Axes]]:
    """The figure and one Axes per panel: new ones in a grid of ``ncols`` columns, or the caller's ``axes``."""
    if axes is not None:
        axes = list(np.ravel(axes))
        if len(axes) != len(names):
            raise ValueError(
                f"Expected `axes` to hold {len(names)} axes for the {what} ({', '.join(names)}), but got {len(axes)}."
            )
        return axes[0].figure, axes
    from matplotlib.figure import Figure

    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6), layout="constrained")
    grid = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in grid[len(names) :]:
        ax.remove()
    return fig, list(grid[: len(names)])


def _suptitle(fig: Figure, own_figure: bool, text: str) -> None:
    if own_figure:
        fig.suptitle(text, fontsize=12)


def _seed_count(result: Result) -> int:
    return len(result.config.get("seeds", [])) or int(result.runs["seed"].nunique())


def _seeds_text(result: Result) -> str:
    n = _seed_count(result)
    return "1 seed, so no confidence interval" if n == 1 else f"mean and 95% CI over {n} seeds"


def _loss_label(result: Result, loss: str) -> str:
    """A loss's name in a legend, with how many of its seeds diverged when any did (frozen, so their lines go flat).

    >>> import types; runs = pd.DataFrame({"loss": ["bce", "bce", "mse"], "diverged": [True, False, False]})
    >>> [_loss_label(types.SimpleNamespace(runs=runs), loss) for loss in ("bce", "mse")]
    ['bce (diverged 1/2)', 'mse']
    """
    mine = result.runs[result.runs["loss"] == loss]
    diverged = int(mine["diverged"].sum())
    return f"{loss} (diverged {diverged}/{len(mine)})" if diverged else loss


def _width(i: int) -> float:
    """The line width of the i-th loss: wide lines first, so that curves lying on top of each other stay visible."""
    return max(4.0 - 1.2 * i, 1.2)


_MARKERS = ("o", "s", "D", "^", "v", "P", "X")  # one per loss, so that markers at the same place stay apart


def _integer_epochs(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _task_text(result: Result) -> str:
    return result.config.get("task_description") or result.config.get("task", "")


def _loss_band(frame: pd.DataFrame, value: str, by: str) -> dict[str, pd.DataFrame]:
    """stats.band of ``value`` per (loss, ``by``), split into one frame per loss, ordered by ``by``."""
    b = stats.band(frame, value, ["loss", by])
    return {loss: part.sort_values(by) for loss, part in b.groupby("loss", sort=False)}


def _line_with_band(
    ax: Axes, x, band: pd.DataFrame, color: str, label: str | None = None, limits: tuple[float, float] | None = None, **line
) -> None:
    """The mean as a line on top, the 95% interval as a light band beneath it (no band where n < 2).

    ``limits`` is the range the quantity can take (a rate lies in [0, 1]): a t-interval can reach past it,
    and the band is drawn only within it.
    """
    low, high = band["ci_low"], band["ci_high"]
    if limits is not None:
        low, high = low.clip(*limits), high.clip(*limits)
    ax.fill_between(x, low, high, color=color, alpha=BAND_ALPHA, linewidth=0, zorder=1)
    ax.plot(x, band["mean"], color=color, label=label, zorder=3, **{"linewidth": 2, **line})
    mean = np.asarray(band["mean"], dtype=float)
    finite = np.isfinite(mean)
    neighbours = np.zeros_like(finite)
    neighbours[1:] |= finite[:-1]
    neighbours[:-1] |= finite[1:]
    isolated = finite & ~neighbours  # a point with no finite neighbour draws no line: mark it
    if isolated.any() and "marker" not in line:
        ax.plot(np.asarray(x)[isolated], mean[isolated], "o", color=color, markersize=4, zorder=3)


def _lines_on_scale(ax: Axes, bands: Mapping[str, pd.DataFrame], x: str, colors: Mapping[str, str], legend_of: Mapping[str, str]) -> None:
    """Non-negative quantities per epoch, one line and band per loss, on a log scale when they span decades.

    On a log scale a band's lower edge is kept above a tenth of the smallest mean, where a t-interval
    reaching 0 would otherwise plunge off the axis.
    """
    means = np.concatenate([b["mean"].to_numpy() for b in bands.values()]) if bands else np.array([])
    _auto_log(ax, means)
    positive = means[np.isfinite(means) & (means > 0)]
    floor = positive.min() / 10 if ax.get_yscale() == "log" and len(positive) else 0.0
    for i, (loss, b) in enumerate(bands.items()):
        _line_with_band(ax, b[x], b, colors[loss], legend_of[loss], limits=(floor, np.inf), linewidth=_width(i))


def _auto_log(ax: Axes, values: np.ndarray, decades: float = 1.5) -> None:
    """A log scale when the plotted positive values span more than ``decades`` powers of ten."""
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and np.log10(values.max() / values.min()) > decades:
        ax.set_yscale("log")


def _decorate(ax: Axes, title: str, xlabel: str, ylabel: str, legend: bool = True, **legend_kw) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(**{"fontsize": 8, "loc": "best", **legend_kw})


def _head_style(result: Result, loss: str) -> str:
    return result.config.get("loss_setups", {}).get(loss, {}).get("head", "one_logit")


def _accuracy_label(result: Result) -> str:
    """"accuracy", or Hamming accuracy (the share of all outputs right) when an example has several outputs."""
    if len(result.config.get("label_names", [])) <= 1:
        return "accuracy"
    return "Hamming accuracy (per area)" if result.config.get("task_kind") == "grid" else "Hamming accuracy (per label)"


def _bin_centre(label: str) -> float:
    low, high = (float(v) for v in label.split("-"))
    return (low + high) / 2


# ---------------------------------------------------------------------------------------------
# 1. Gradient allocation
# ---------------------------------------------------------------------------------------------


def _gradient_panels(result: Result) -> list[str]:
    kind = result.config.get("task_kind", "binary")
    panels = ["positive_share", "confidence_correct", "confidence_wrong"]
    two_logit = kind != "multilabel" and any(_head_style(result, loss) == "two_logit" for loss in result.losses)
    if two_logit:
        panels.append("unit_share")
    panels.append("body")
    if two_logit and "decision_weight_change" in result.history:
        panels.append("decision_weight")
    if len(result.config.get("label_names", [])) > 1:
        panels.append("label_share")
    return panels


def _gradient_epoch(result: Result, epoch: int | None) -> int:
    """The epoch of the gradient-allocation panels drawn at one epoch: ``epoch`` if it was recorded, else a ValueError; None: the last."""
    epochs = sorted(result.history["epoch"].unique())
    epoch = int(epochs[-1]) if epoch is None else epoch
    if isinstance(epoch, bool) or epoch not in epochs:  # True == 1: not an epoch
        raise ValueError(f"Expected `epoch` to be a recorded epoch, {epochs[0]} to {epochs[-1]}, but got {epoch!r}.")
    return epoch


def gradient_allocation(result: Result, epoch: int | None = None, axes: Sequence[Axes] | None = None) -> Figure:
    """Where each loss sends its gradient, measured on the validation split (the probe set), in panels.

    1. the share of sum |dL/dz| that comes from positive examples, per epoch (the rest comes from negatives);
    2. the mean |dL/dz| of one prediction (one decision: an example, or one label or area of it; the
       analytic curves' scale) in each confidence bin, max(p, 1 - p), for correct predictions and
       3. for wrong ones, at ``epoch`` (default: the last): MSE's gradient vanishes on confident mistakes (a
       point that one seed's predictions alone make, with no interval, is drawn hollow);
    4. for a 2-logit softmax head, each unit's share of |dL/dz| (the negative unit gets half) ...
    5. ... beside the gradient that reaches the body, ||dL/dh|| per example, per epoch: a 2-logit head
       sends the body what a 1-logit head with w = w1 - w0 would, since dL/dh = (w1 - w0) dL/dz1 (BCE's
       signal at the matched start; apart later, as w1 - w0 moves faster than BCE's w);
    6. ... and how far that decision weight has moved from its start, per epoch: w1 and w0 get opposite
       gradients, so w1 - w0 moves by both their steps (twice BCE's at the matched start);
    7. for multi-label and grid tasks, each label's (area's) share of |dL/dz|.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> fig = gradient_allocation(result)
    >>> [ax.get_title().split(",")[0] for ax in fig.axes[:4]]
    ['Share of |dL/dz| from positive examples', '|dL/dz| on correct predictions', '|dL/dz| on wrong predictions', 'Share of |dL/dz| per output unit']
    """
    history = result.history
    epoch = _gradient_epoch(result, epoch)
    names = _gradient_panels(result)
    fig, axs = _panels(axes, names, ncols=3, panel_size=(5.0, 3.9), what="gradient-allocation panels")
    ax_of = dict(zip(names, axs))
    colors = loss_colors(result.losses)
    legend_of = {loss: _loss_label(result, loss) for loss in result.losses}
    at_epoch = history[history["epoch"] == epoch]

    # 1. positive vs negative examples, per epoch
    ax = ax_of["positive_share"]
    highest = 0.0
    for i, (loss, b) in enumerate(_loss_band(history, "grad_positive_share", "epoch").items()):
        _line_with_band(ax, b["epoch"], b, colors[loss], legend_of[loss], limits=(0, 1), linewidth=_width(i))
        highest = np.nanmax([highest, *b["mean"], *b["ci_high"].clip(upper=1)])
    targets = result.predictions.get("val_targets")
    if targets is not None and len(targets):
        share = float(np.mean(targets))
        ax.axhline(share, color="0.3", linestyle=":", linewidth=1.2, label=f"positives' share of the examples ({share:.0%})")
        highest = max(highest, share)
    ax.set_ylim(0, 1 if highest > 0.4 else max(0.1, 1.25 * highest))  # sparse positives (a grid's areas): zoom in
    _integer_epochs(ax)
    _decorate(ax, "Share of |dL/dz| from positive examples, per epoch", "epoch", "share of sum |dL/dz| (rest: negatives)", fontsize=7)

    # 2, 3. by confidence bin, correct and wrong
    hollow = False
    for which in ("correct", "wrong"):
        ax = ax_of[f"confidence_{which}"]
        columns = [c for c in history.columns if c.startswith(f"grad_confidence_{which}[")]
        long = at_epoch.melt(id_vars=["loss", "seed"], value_vars=columns, var_name="bin", value_name="grad")
        long["confidence"] = long["bin"].map(lambda c: _bin_centre(c[c.index("[") + 1 : -1]))
        for i, (loss, b) in enumerate(_loss_band(long, "grad", "confidence").items()):
            _line_with_band(ax, b["confidence"], b, colors[loss], legend_of[loss], marker="o", markersize=4, linewidth=_width(i))
            few = b[(b["n"] == 1) & (_seed_count(result) > 1)]  # one seed alone had predictions in the bin: no interval
            ax.plot(few["confidence"], few["mean"], "o", markersize=7, markerfacecolor="white", markeredgecolor=colors[loss], zorder=4)
            hollow = hollow or len(few) > 0
        ax.set_xticks([_bin_centre(c[c.index("[") + 1 : -1]) for c in columns])
        ax.set_xticklabels([c[c.index("[") + 1 : -1] for c in columns], fontsize=8)
        ax.set_ylim(bottom=0)
        edges = [float(v) for c in columns for v in c[c.index("[") + 1 : -1].split("-")]
        ax.set_xlim(min(edges), max(edges))  # every bin, whichever hold points
        handles, _ = ax.get_legend_handles_labels()
        if which == "wrong" and hollow:  # a legend entry alone, not an empty line on the axes
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="0.3",
                                  label="hollow: one seed's predictions only"))  # fmt: skip
        _decorate(
            ax, f"|dL/dz| on {which} predictions, epoch {epoch}", "confidence max(p, 1 - p)", "mean |dL/dz| per prediction",
            fontsize=7, handles=handles,
        )
    top = max(ax_of[f"confidence_{w}"].get_ylim()[1] for w in ("correct", "wrong"))
    for which in ("correct", "wrong"):  # one scale for both, so their sizes compare at a glance
        ax_of[f"confidence_{which}"].set_ylim(0, top)

    # 4. per output unit (2-logit heads)
    if "unit_share" in ax_of:
        ax = ax_of["unit_share"]
        negative = stats.band(at_epoch, "grad_negative_unit_share", ["loss"]).set_index("loss")
        body = stats.band(at_epoch, "grad_body", ["loss"]).set_index("loss")["mean"]
        for i, loss in enumerate(result.losses):
            share = negative.loc[loss, "mean"]
            diverged = not np.isfinite(body[loss]) or _head_style(result, loss) == "two_logit" and not np.isfinite(share)
            if diverged:  # every seed's gradient is NaN by this epoch
                ax.bar(i, 1.0, color="white", edgecolor=colors[loss], hatch="..", linewidth=0.6)
                ax.text(i, 0.5, "no finite\ngradient\n(diverged)", ha="center", va="center", fontsize=7)
            elif np.isfinite(share):
                ax.bar(i, 1 - share, color=colors[loss], edgecolor="black", linewidth=0.6)
                ax.bar(i, share, bottom=1 - share, color=colors[loss], alpha=0.45, hatch="//", edgecolor="black", linewidth=0.6)
                # the interval of the boundary between the units, 1 - share: its low end is 1 - the share's high end
                err = np.array([[negative.loc[loss, "ci_high"] - share], [share - negative.loc[loss, "ci_low"]]])
                ax.errorbar(i, 1 - share, yerr=np.nan_to_num(err), color="black", capsize=3, linewidth=1)
                ax.text(i, (1 - share) / 2, f"z1\n{1 - share:.2f}", ha="center", va="center", fontsize=8)
                ax.text(i, 1 - share / 2, f"z0\n{share:.2f}", ha="center", va="center", fontsize=8)
            else:
                ax.bar(i, 1.0, color=colors[loss], edgecolor="black", linewidth=0.6)
                ax.text(i, 0.5, "z\n1.00", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(result.losses)))
        ax.set_xticklabels([legend_of[loss].replace(" (", "\n(") for loss in result.losses], fontsize=8)
        ax.set_ylim(0, 1.4)  # room above the bars for the legend
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        from matplotlib.patches import Patch

        handles = [
            Patch(facecolor="white", edgecolor="black", label="positive unit z1 (or the only unit z)"),
            Patch(facecolor="white", edgecolor="black", hatch="//", label="negative unit z0"),
        ]
        ax.legend(handles=handles, fontsize=7, loc="upper center", ncol=2)
        _decorate(
            ax, f"Share of |dL/dz| per output unit, epoch {epoch}",
            "z0's gradient is minus z1's, so the body gets (w1 - w0) dL/dz1:\n"
            "what a 1-logit head with w = w1 - w0 sends, not half of it",
            "share of sum |dL/dz|", legend=False,
        )  # fmt: skip

    # 5. into the body, per epoch: wide lines first, so that curves lying on top of each other stay visible
    ax = ax_of["body"]
    _lines_on_scale(ax, _loss_band(history, "grad_body", "epoch"), "epoch", colors, legend_of)
    _integer_epochs(ax)
    _decorate(ax, "Gradient into the shared body, per epoch", "epoch", "mean ||dL/dh|| per example")

    # 6. how far the decision weight moved: the 2-logit head's w1 - w0 takes both units' steps
    if "decision_weight" in ax_of:
        ax = ax_of["decision_weight"]
        _lines_on_scale(ax, _loss_band(history, "decision_weight_change", "epoch"), "epoch", colors, legend_of)
        _integer_epochs(ax)
        _decorate(
            ax, "How far the decision weight moved, per epoch",
            "epoch; w1 and w0 get opposite gradients,\nso w1 - w0 moves by both their steps",
            "||w - w at the start||  (2 logits: w = w1 - w0)",
        )  # fmt: skip

    # 7. per label / area
    if "label_share" in ax_of:
        ax = ax_of["label_share"]
        labels = list(result.config["label_names"])
        width = 0.8 / len(result.losses)
        highest = 0.0
        for i, loss in enumerate(result.losses):
            mine = at_epoch[at_epoch["loss"] == loss]
            bands = [stats.band(mine, f"grad_label_share[{label}]", ["loss"]).iloc[0] for label in labels]
            means = np.array([b["mean"] for b in bands])
            low = np.array([max(b["ci_low"], 0.0) for b in bands])  # a share is never below 0
            err = np.nan_to_num(np.array([means - low, [b["ci_high"] - b["mean"] for b in bands]]))
            x = np.arange(len(labels)) - 0.4 + width * (i + 0.5)
            ax.bar(x, means, width, yerr=err, color=colors[loss], label=legend_of[loss], capsize=2, error_kw={"linewidth": 0.8})
            highest = np.nanmax([highest, *(means + err[1])])
        ax.axhline(1 / len(labels), color="0.3", linestyle=":", linewidth=1.2, label=f"equal share (1/{len(labels)})")
        ax.set_ylim(0, 1.3 * max(highest, 1 / len(labels)))  # room above the bars for the legend
        ax.set_xticks(range(len(labels)))
        short = [label.replace("area ", "") for label in labels]
        ax.set_xticklabels(short, fontsize=7, rotation=90 if len(labels) > 10 else 0)
        what = "area" if result.config.get("task_kind") == "grid" else "label"
        _decorate(ax, f"Share of |dL/dz| per {what}, epoch {epoch}", what, "share of sum |dL/dz|", fontsize=7)

    _suptitle(fig, axes is None, f"Where each loss sends its gradient (validation split, {_seeds_text(result)})\n{_task_text(result)}")
    return fig


# ---------------------------------------------------------------------------------------------
# 2. Accuracy against the decision threshold
# ---------------------------------------------------------------------------------------------


_LEGEND_BELOW = {"fontsize": 7, "loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "ncol": 2}
"""A legend under the axis: the curves span the whole panel, so no corner of it is free."""


def _threshold_panels(result: Result) -> list[str]:
    kind = result.config.get("task_kind", "binary")
    panels = ["accuracy"]
    if kind == "multilabel":
        panels.append("exact_match")
    if kind in ("binary", "grid"):
        panels.append("sensitivity_specificity")
    return panels


def accuracy_vs_threshold(result: Result, split: Literal["val", "test"] = "val", axes: Sequence[Axes] | None = None) -> Figure:
    """Accuracy against the decision threshold, one curve per loss with its band over seeds.

    A prediction is positive when its score >= threshold. Each curve has a marker at the loss's
    best-validation threshold (the mean over seeds, with its 95% CI as a horizontal bar) and the usual
    threshold 0.5 is a dashed vertical line. Multi-label tasks add exact-match accuracy beside Hamming
    (per-label) accuracy; binary and grid tasks add sensitivity and specificity.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> fig = accuracy_vs_threshold(result)
    >>> [ax.get_title().split(" (")[0] for ax in fig.axes]
    ['Accuracy against the threshold', 'Sensitivity and specificity against the threshold']
    """
    if split not in ("val", "test"):
        raise ValueError(f"Expected `split` to be 'val' or 'test', but got {split!r}.")
    frame = result.thresholds[result.thresholds["split"] == split]
    names = _threshold_panels(result)
    fig, axs = _panels(axes, names, ncols=len(names), panel_size=(5.6, 4.2), what="threshold panels")
    ax_of = dict(zip(names, axs))
    colors = loss_colors(result.losses)
    legend_of = {loss: _loss_label(result, loss) for loss in result.losses}
    split_name = "validation" if split == "val" else "test"
    targets = result.predictions.get(f"{split}_targets")
    chosen_by = str(result.config.get("threshold_metric", "accuracy")).replace("_", " ")

    for name in ("accuracy", "exact_match"):
        if name not in ax_of:
            continue
        ax = ax_of[name]
        curves = _loss_band(frame, name, "threshold")
        for i, (loss, b) in enumerate(curves.items()):
            _line_with_band(ax, b["threshold"], b, colors[loss], legend_of[loss], limits=(0, 1), linewidth=_width(i))
        ax.axvline(0.5, color="0.35", linestyle="--", linewidth=1, label="threshold 0.5")
        if targets is not None and len(targets):  # what answering "no" everywhere scores: the bar to clear
            answers = np.asarray(targets).reshape(len(targets), -1)
            floor = 1 - answers.mean() if name == "accuracy" else float((answers.sum(axis=1) == 0).mean())
            ax.axhline(floor, color="0.45", linestyle=(0, (1, 2)), linewidth=1.4, label=f"all-negative answers ({floor:.3f})")
        if name == "accuracy":  # the threshold chosen on validation data, by the run's threshold metric
            best = result.summary[result.summary["metric"] == "best_threshold"].set_index("loss")
            for i, (loss, b) in enumerate(curves.items()):
                t, low, high = best.loc[loss, ["mean", "ci_low", "ci_high"]]
                y = np.interp(t, b["threshold"], b["mean"])
                xerr = np.nan_to_num([[t - low], [high - t]])
                ax.errorbar(t, y, xerr=xerr, fmt=_MARKERS[i % len(_MARKERS)], color=colors[loss], markeredgecolor="black",
                            markersize=7, capsize=4, zorder=4)  # fmt: skip
            interval = "mean" if _seed_count(result) == 1 else "mean, 95% CI"
            ax.errorbar([], [], xerr=[], fmt="o", color="white", markeredgecolor="black", capsize=4,
                        label=f"best-validation threshold by {chosen_by} ({interval}; a marker shape per loss)")  # fmt: skip
        label = {"accuracy": _accuracy_label(result), "exact_match": "exact-match accuracy (all labels right)"}[name]
        title = {"accuracy": "Accuracy against the threshold", "exact_match": "Exact match against the threshold"}[name]
        _decorate(ax, f"{title} ({split_name})", "decision threshold", label, **_LEGEND_BELOW)

    if "sensitivity_specificity" in ax_of:
        ax = ax_of["sensitivity_specificity"]
        for metric, style in (("sensitivity", "-"), ("specificity", "--")):
            for loss, b in _loss_band(frame, metric, "threshold").items():
                _line_with_band(ax, b["threshold"], b, colors[loss], legend_of[loss] if metric == "sensitivity" else None, limits=(0, 1), linestyle=style)
        ax.axvline(0.5, color="0.35", linestyle="--", linewidth=1)
        ax.plot([], [], color="black", linestyle="-", label="sensitivity (true-positive rate)")
        ax.plot([], [], color="black", linestyle="--", label="specificity (true-negative rate)")
        ax.set_ylim(0, 1.02)
        _decorate(ax, f"Sensitivity and specificity against the threshold ({split_name})", "decision threshold", "rate", **_LEGEND_BELOW)

    _suptitle(fig, axes is None, f"Accuracy against the decision threshold ({split_name} split, {_seeds_text(result)})\n{_task_text(result)}")
    return fig


# ---------------------------------------------------------------------------------------------
# 3. Training curves
# ---------------------------------------------------------------------------------------------


def training_curves(result: Result, axes: Sequence[Axes] | None = None) -> Figure:
    """Training loss, validation loss and validation accuracy (threshold 0.5) per epoch, with bands over seeds.

    Each loss is measured on its own scale (MSE is not comparable to cross-entropy in value), so the
    accuracy panel is the one to compare losses on. Epoch 0 is before training; where its accuracy lies so
    far from the trained epochs' that it would flatten them, the accuracy axis is fitted to epochs 1 on and the
    x label gives epoch 0's value.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> [ax.get_title() for ax in training_curves(result).axes]
    ['Training loss (mean over the epoch)', 'Validation loss', 'Validation accuracy at threshold 0.5']
    """
    names = ["train_loss", "val_loss", "val_accuracy"]
    fig, axs = _panels(axes, names, ncols=3, panel_size=(5.0, 3.9), what="training-curve panels")
    colors = loss_colors(result.losses)
    titles = {
        "train_loss": ("Training loss (mean over the epoch)", "loss, each on its own scale"),
        "val_loss": ("Validation loss", "loss, each on its own scale"),
        "val_accuracy": ("Validation accuracy at threshold 0.5", _accuracy_label(result)),
    }
    legend_of = {loss: _loss_label(result, loss) for loss in result.losses}
    for ax, name in zip(axs, names):
        bands = _loss_band(result.history, name, "epoch")
        if name == "val_accuracy":
            for i, (loss, b) in enumerate(bands.items()):
                _line_with_band(ax, b["epoch"], b, colors[loss], legend_of[loss], limits=(0, 1), linewidth=_width(i))
            off_axis = _fit_to_training(ax, bands, limits=(0, 1))
        else:
            _lines_on_scale(ax, bands, "epoch", colors, legend_of)
            off_axis = ""
        _integer_epochs(ax)
        xlabel = f"epoch\n({off_axis})" if off_axis else "epoch"
        _decorate(ax, titles[name][0], xlabel, titles[name][1], legend=name == "val_accuracy", fontsize=8)
    _suptitle(fig, axes is None, f"Training curves ({_seeds_text(result)})\n{_task_text(result)}")
    return fig


def _fit_to_training(ax: Axes, bands: Mapping[str, pd.DataFrame], limits: tuple[float, float], min_span: float = 0.05) -> str:
    """Fit the y-axis to epochs 1 on when epoch 0 (before training) lies far outside them; returns a note saying
    where epoch 0 is then ("" when the axis shows it).

    An untrained model's accuracy (about the share of the majority class) would otherwise stretch the axis
    and flatten the differences between losses that the panel is there to show. The fitted axis spans at
    least ``min_span``, so that flat lines are not blown up into differences of the last decimal.
    """
    trained = [b[b["epoch"] >= 1] for b in bands.values()]
    lows = np.concatenate([t["ci_low"].fillna(t["mean"]).clip(*limits).to_numpy() for t in trained]) if trained else np.array([])
    highs = np.concatenate([t["ci_high"].fillna(t["mean"]).clip(*limits).to_numpy() for t in trained]) if trained else np.array([])
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    if not len(lows) or not len(highs):
        return ""
    low, high = lows.min(), highs.max()
    margin = max(0.1 * (high - low), (min_span - (high - low)) / 2, 0.0)
    low, high = low - margin, high + margin
    if low < limits[0]:
        low, high = limits[0], min(high + limits[0] - low, limits[1])
    if high > limits[1]:
        low, high = max(low - (high - limits[1]), limits[0]), limits[1]
    before = np.array([b.loc[b["epoch"] == 0, "mean"].iloc[0] for b in bands.values() if (b["epoch"] == 0).any()], dtype=float)
    before = before[np.isfinite(before)]
    outside = before[(before < low) | (before > high)]
    if not len(outside) or (high - low) > 0.5 * (max(high, outside.max()) - min(low, outside.min())):
        return ""  # epoch 0 fits, or showing it costs less than half the axis
    ax.set_ylim(low, high)
    where = "below" if outside.max() < low else "above" if outside.min() > high else "outside"
    values = ", ".join(f"{v:.2f}" for v in sorted(set(np.round(outside, 2))))
    return f"epoch 0, before training: {values}, {where} the axis"


# ---------------------------------------------------------------------------------------------
# 4. Calibration
# ---------------------------------------------------------------------------------------------


def calibration(result: Result, axes: Sequence[Axes] | None = None) -> Figure:
    """A reliability diagram per loss on the test split: the fraction positive (y) against the mean predicted probability (x).

    Per probability bin, the points are the mean over seeds of (mean predicted, fraction positive), the
    band the 95% CI of the fraction positive, and the grey bars how many predictions fall in the bin
    (mean over the seeds whose predictions are not NaN, read on the right-hand axis). A
    calibrated model lies on the diagonal. The legend gives the expected calibration error,
    ECE = sum over bins of (count / total) * |fraction positive - mean predicted|.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> [ax.get_title() for ax in calibration(result).axes if ax.get_title()]
    ['softmax_ce', 'bce', 'mse']
    """
    losses = result.losses
    fig, axs = _panels(axes, losses, ncols=min(len(losses), 4), panel_size=(4.2, 4.2), what="reliability diagrams, one per loss")
    colors = loss_colors(losses)
    frame = result.calibration
    ece = result.summary[result.summary["metric"] == "test_ece"].set_index("loss")
    for ax, loss in zip(axs, losses):
        mine = frame[frame["loss"] == loss]
        fraction = stats.band(mine, "fraction_positive", ["bin"]).sort_values("bin")
        predicted = stats.band(mine, "mean_predicted", ["bin"]).sort_values("bin")
        # a model whose scores are NaN has no predictions to bin (calibration.csv: count 0 in every bin); the mean
        # count is over the seeds that have them, as the points are
        scored = mine.groupby("seed")["count"].transform("sum") > 0
        count = stats.band(mine[scored], "count", ["bin"]).sort_values("bin")
        lows = mine.groupby("bin")["bin_low"].first().reindex(count["bin"]).to_numpy()
        highs = mine.groupby("bin")["bin_high"].first().reindex(count["bin"]).to_numpy()
        # how many predictions fall in each bin, as light bars along the bottom (a quarter of the height),
        # read on their own axis on the right
        counted = count["mean"].to_numpy()
        if np.isfinite(counted).any() and np.nanmax(counted) > 0:  # none when every seed diverged
            most = float(np.nanmax(counted))
            scale = 0.25 / most
            ax.bar(lows, counted * scale, width=highs - lows, align="edge", color="0.85", edgecolor="0.6",
                   linewidth=0.5, label="predictions per bin (right axis)", zorder=0)  # fmt: skip
            _count_axis(ax, scale, most)
        ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="perfectly calibrated")
        x = predicted["mean"].to_numpy()
        e = ece.loc[loss] if loss in ece.index else None
        if e is None or not np.isfinite(e["mean"]):
            text = "ECE n/a (every seed diverged)" if e is not None and e["n"] == 0 else "ECE n/a"
        elif np.isfinite(e["ci_low"]):
            text = f"ECE {e['mean']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"
        else:
            text = f"ECE {e['mean']:.3f}"
        _line_with_band(ax, x, fraction, colors[loss], text, limits=(0, 1), marker="o", markersize=4)
        ax.set_xlim(-0.02, 1.02)  # a margin, so that points at 0 or 1 are drawn whole
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        _decorate(ax, _loss_label(result, loss), "mean predicted probability", "fraction positive", fontsize=7, loc="upper left")
    _suptitle(fig, axes is None, f"Calibration on the test split ({_seeds_text(result)})\n{_task_text(result)}")
    return fig


def _count_axis(ax: Axes, scale: float, most: float) -> None:
    """A right-hand axis for the count bars drawn at ``count * scale``, its ticks only up to the tallest bar."""
    from matplotlib.ticker import MaxNLocator

    counts = ax.secondary_yaxis("right", functions=(lambda y: y / scale, lambda c: c * scale))
    ticks = MaxNLocator(nbins=3, integer=most >= 3).tick_values(0, most)
    counts.set_yticks(ticks[ticks <= most * 1.0001])
    counts.set_ylabel("count (mean over seeds)", fontsize=7, color="0.4")
    counts.tick_params(labelsize=7, colors="0.4")


# ---------------------------------------------------------------------------------------------
# 5. The analytic shapes of each loss (no run needed)
# ---------------------------------------------------------------------------------------------

_LINESTYLES = ("-", "--", ":", "-.")


def _scalar_options(options: Mapping | None) -> tuple[dict, list[str]]:
    """Options a curve of one binary decision can show (numbers), and the names of those it cannot (per-label lists)."""
    shown, skipped = {}, []
    for key, value in dict(options or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) or value is None:
            shown[key] = value
        elif isinstance(value, str):
            shown[key] = value
        else:
            skipped.append(key)
    return shown, skipped


def loss_and_gradient_shapes(
    losses: Sequence[str] = ("softmax_ce", "bce", "mse"),
    options: Mapping[str, Mapping] | None = None,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """The analytic loss(p) and dL/dz(p) of each loss for y = 1 and y = 0, from the families' own functions.

    p is the predicted probability of the positive class, p = sigmoid(z) (softmax_ce: softmax(z)[1], and
    the gradient is on the positive unit z1; the negative unit gets the opposite). Cross-entropy's
    gradient is p - y, largest on confident mistakes; MSE's is 2 (p - y) p (1 - p), which vanishes there.
    ``losses`` may hold labelled variants (``"bce@weighted"``), with their ``options`` (e.g.
    ``{"bce@weighted": {"pos_weight": 4.0}}``).

    >>> fig = loss_and_gradient_shapes(["softmax_ce", "bce", "mse"])
    >>> [ax.get_title() for ax in fig.axes]
    ['Loss, true label y = 1', 'Loss, true label y = 0', 'dL/dz, true label y = 1', 'dL/dz, true label y = 0']
    """
    losses = [losses] if isinstance(losses, str) else list(losses)
    families = {name: loss_registry.family(name.split("@", 1)[0]) for name in losses}
    for name, given in (options or {}).items():
        if name not in families:
            raise ValueError(f"Expected the options to be for the losses drawn, {', '.join(losses)}, but got options for {name!r}.")
        family = families[name]
        unknown = [key for key in given if key not in (*family.options, "head_lr_scale")]
        if unknown:
            raise ValueError(f"Expected the options of {name!r} to be among {', '.join(('head_lr_scale', *family.options))}, "
                             f"but got {', '.join(map(repr, unknown))}.")
        if given.get("on", "probability") != "probability":
            raise ValueError(f"Expected `on` of {name!r} to be 'probability', the curve drawn, but got {given['on']!r}.")
    names = ["loss y=1", "loss y=0", "grad y=1", "grad y=0"]
    fig, axs = _panels(axes, names, ncols=2, panel_size=(5.2, 3.6), what="loss and gradient panels")
    colors = loss_colors(losses)
    p = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    top = 5.0  # -log(p) reaches 6.9 at p = 0.001: cut the loss axis here so the bounded losses stay readable
    for col, y in enumerate((1.0, 0.0)):
        ax_loss, ax_grad = axs[col], axs[2 + col]
        cut = False  # whether a curve leaves this loss axis (then its label says where it is cut)
        for i, name in enumerate(losses):
            family = families[name]
            drawable = loss_registry.accepted_options(family.probability_loss)  # mse's on='probability' is the curve itself
            shown, skipped = _scalar_options({k: v for k, v in ((options or {}).get(name) or {}).items() if k in drawable})
            shown = {**family.shaping_defaults(), **shown}  # focal's alpha and gamma are named even when not given
            label = name + (f" ({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")
            label += f" [{', '.join(skipped)} per label: not drawn]" if skipped else ""
            style = dict(color=colors[name], linestyle=_LINESTYLES[i % len(_LINESTYLES)], linewidth=max(3.2 - 0.7 * i, 1.3))
            loss = family.loss_of_probability(p, y, **shown).numpy()
            cut = cut or bool(np.nanmax(loss) > top)
            ax_loss.plot(p.numpy(), loss, label=label, **style)
            grad_label = label + (" (on z1; z0 gets minus this)" if family.head == "two_logit" else "")
            ax_grad.plot(p.numpy(), family.grad_wrt_logit(p, y, **shown).numpy(), label=grad_label, **style)
        mistake = (0.0, 0.1) if y == 1.0 else (0.9, 1.0)
        for ax in (ax_loss, ax_grad):
            ax.axvspan(*mistake, color="tab:red", alpha=0.08, zorder=0)
            ax.set_xlim(0, 1)
        ax_grad.axhline(0, color="0.3", linewidth=0.8)
        ax_loss.set_ylim(0, top)
        x, align = (0.11, "left") if y == 1.0 else (0.89, "right")
        note = dict(ha=align, va="center", fontsize=7, color="tab:red")
        words = "\u2190 confident mistakes" if y == 1.0 else "confident mistakes \u2192"  # an arrow to the shaded band
        ax_loss.text(x, 0.9 * top, words, **note)
        ax_grad.text(x, 0.5, words, transform=ax_grad.get_xaxis_transform(), **note)
        target = "y = 1" if y == 1.0 else "y = 0"
        _decorate(ax_loss, f"Loss, true label {target}", "predicted probability p of the positive class",
                  f"loss (axis cut at {top:g})" if cut else "loss", fontsize=7)  # fmt: skip
        _decorate(ax_grad, f"dL/dz, true label {target}", "predicted probability p of the positive class", "dL/dz (gradient on the logit)",
                  fontsize=7, loc="lower right" if y == 1.0 else "upper left")  # fmt: skip
    _suptitle(fig, axes is None, "Loss and gradient as functions of the predicted probability (analytic, one example)")
    return fig


# ---------------------------------------------------------------------------------------------
# All of them
# ---------------------------------------------------------------------------------------------


def save_plots(
    result: Result, directory: str | os.PathLike, epoch: int | None = None, progress: bool = False, workers: int = 1
) -> list[Path]:
    """Draw every figure of :data:`PLOT_NAMES` once and write them as PNG files into ``directory``.

    ``epoch`` picks the epoch of the gradient-allocation panels drawn at one epoch (default: the last); ``progress`` shows a
    bar on stderr, a step per figure (drawing them takes seconds). ``workers`` > 1 draws that many figures
    at once, each in a process forked from this one (Linux only; elsewhere, and with 1, they are drawn
    one after another here): matplotlib draws on one core, and the five figures take a few seconds, so the
    command line draws them on every core, up to one per figure (:func:`plot_workers`). The files are the same either way, byte
    for byte. Returns the paths, in the order of :data:`PLOT_NAMES`.

    >>> import lossbench, tempfile
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> [p.name for p in save_plots(result, tempfile.mkdtemp())]
    ['gradient_allocation.png', 'accuracy_vs_threshold.png', 'training_curves.png', 'calibration.png', 'loss_and_gradient_shapes.png']
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Expected `workers` to be a whole number >= 1, but got {workers!r}.")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"Expected `directory` to be a folder for the plots, but {str(directory)!r} is a file.")
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name}.png" for name in PLOT_NAMES}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(PLOT_NAMES), desc="plots", unit="plot", leave=False, disable=not progress)
    try:
        if workers > 1 and sys.platform.startswith("linux"):
            _draw_in_processes(result, epoch, paths, min(workers, len(PLOT_NAMES)), bar)
        else:
            for name in PLOT_NAMES:
                bar.set_postfix_str(name)  # the figure being drawn
                _draw(result, epoch, name, paths[name])
                bar.update()
    finally:
        bar.close()
    return list(paths.values())


def plot_workers() -> int:
    """How many figures :func:`save_plots` should draw at once here: one per core this process may use, at most one per figure.

    >>> 1 <= plot_workers() <= len(PLOT_NAMES)
    True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, len(PLOT_NAMES)))


DRAWING_ORDER = ("gradient_allocation", "loss_and_gradient_shapes", "accuracy_vs_threshold", "calibration", "training_curves")
"""The figures, slowest to draw first, so that drawing them in parallel ends as evenly as it can."""


def _draw(result: Result, epoch: int | None, name: str, path: Path) -> str:
    """Draw one figure of :data:`PLOT_NAMES` and write it to ``path``."""
    if name == "gradient_allocation":
        fig = gradient_allocation(result, epoch=epoch)
    elif name == "loss_and_gradient_shapes":
        options = {loss: setup.get("options", {}) for loss, setup in result.config.get("loss_setups", {}).items()}
        fig = loss_and_gradient_shapes(result.losses, options)
    else:
        fig = {"accuracy_vs_threshold": accuracy_vs_threshold, "training_curves": training_curves, "calibration": calibration}[name](result)
    fig.savefig(path, dpi=DPI)
    return name


_FORKED: tuple[Result, int | None] | None = None  # in a drawing process: the run it draws, inherited from its parent


def _start_drawing_process(result: Result, epoch: int | None) -> None:
    """In each drawing process, once: keep the run, leave Ctrl-C to the parent, and run torch on one thread
    (as PyTorch's own DataLoader workers do: a forked process must not reuse its parent's thread pool)."""
    global _FORKED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _FORKED = (result, epoch)


def _draw_forked(name: str, path: Path) -> str:
    assert _FORKED is not None, "called outside a drawing process"
    return _draw(*_FORKED, name, path)


def _draw_in_processes(result: Result, epoch: int | None, paths: dict[str, Path], workers: int, bar) -> None:
    """Draw the figures in ``workers`` processes forked from this one; the first error is raised here.

    The processes inherit the run from this one's memory (nothing is copied but the names and paths), and
    an interruption (Ctrl-C) lets the figures being drawn finish, starts no others, and is raised here.
    """
    import concurrent.futures as futures
    import multiprocessing
    import warnings

    if epoch is not None:  # a bad epoch is refused here, before any process starts
        _gradient_epoch(result, epoch)
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock: torch's idle thread pool is
        # never used by the children (one thread each, above), and they take no lock another thread holds
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=_start_drawing_process, initargs=(result, epoch)
        )
        try:
            pending = [pool.submit(_draw_forked, name, paths[name]) for name in DRAWING_ORDER]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    try:
        for done in futures.as_completed(pending):
            bar.set_postfix_str(done.result())  # the figure just written; raises the drawing's error, if any
            bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
