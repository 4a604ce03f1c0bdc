"""The calibration figure's numbers when some seeds' models have NaN predictions."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import lossbench
from lossbench import plots, thresholds as thr
from tests.conftest import tiny_task


@pytest.fixture(scope="module")
def result() -> lossbench.Result:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return lossbench.compare(tiny_task("binary"), ("bce", "mse"), seeds=3, epochs=2, lr=0.01, device="cpu")
    finally:
        torch.set_num_threads(before)


def test_count_bars_average_only_the_seeds_whose_models_have_predictions(result):
    # a model whose scores are NaN is written to calibration.csv as thresholds.calibration gives it: count 0 in every
    # bin; the bars averaged those zeros in, drawing (seeds - 1) / seeds of the other seeds' counts
    nan_model = thr.calibration(torch.full((1, 5, 1), torch.nan), torch.zeros(5, 1))
    calibration = result.calibration.copy()
    gone = (calibration["loss"] == "bce") & (calibration["seed"] == 0)
    calibration.loc[gone, "count"] = nan_model["count"][0].numpy().astype(int)
    calibration.loc[gone, ["mean_predicted", "fraction_positive"]] = np.nan
    fig = plots.calibration(dataclasses.replace(result, calibration=calibration))
    fig.draw_without_rendering()
    ax = fig.axes[list(result.losses).index("bce")]
    (right,) = ax.child_axes
    per_unit = right.get_ylim()[1] / ax.get_ylim()[1]
    bars = np.array([p.get_height() for p in ax.patches]) * per_unit
    scored = calibration[(calibration["loss"] == "bce") & ~gone]
    np.testing.assert_allclose(bars, scored.groupby("bin")["count"].mean().sort_index().to_numpy())
