"""The runner's finer rules: which settings are refused and how, how seeds shuffle and heads start, and what
the per-epoch records, the progress reports and config.json say."""
from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import lossbench
from lossbench import frames, runner
from lossbench.models import CNNBody, MLPBody
from tests.conftest import tiny_task

CPU = torch.device("cpu")
FAST = dict(seeds=1, epochs=1, device="cpu")


def _setups(losses, task, impl="handwritten", overrides=None):
    return runner.resolve_losses(losses, impl, overrides, task, CPU, torch.float64)


# ---------------------------------------------------------------------------------------------
# Settings refused before training, each with its own message
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    # a learning rate or a batch of 0 would "train" without moving anything, or not run at all
    pytest.param(dict(lr=0.0), "Expected `lr` to be a positive number, but got 0.0.", id="zero-lr"),
    pytest.param(dict(batch_size=0), "Expected `batch_size` to be a positive whole number, but got 0.", id="zero-batch"),
    # no seed trains no model: refused, not an empty comparison
    pytest.param(dict(seeds=0), "Expected `seeds` to be a positive whole number or a list of seeds, but got 0.", id="zero-seeds"),
    pytest.param(dict(overrides={"bce": {"head_lr_scale": 0}}),
                 "Expected `head_lr_scale` of 'bce' to be a positive number, but got 0.", id="zero-head-lr-scale"),
    pytest.param(dict(threshold_points=1), "Expected `threshold_points` to be at least 2, but got 1.", id="one-threshold"),
    pytest.param(dict(threshold_points=True), "Expected `threshold_points` to be a whole number, 2 or more, but got True.",
                 id="threshold-points-bool"),
    pytest.param(dict(threads=0), "Expected `threads` to be a whole number from 1 to ", id="zero-threads"),
    # torch.set_num_threads(10**6) ends the process with a segmentation fault
    pytest.param(dict(threads=10**6), "Expected `threads` to be a whole number from 1 to ", id="a-million-threads"),
    pytest.param(dict(threshold_points=10**7), "Expected `threshold_points` to be at most 9,801", id="ten-million-thresholds"),
    pytest.param(dict(seeds=[2**64, 1]), "Expected each seed to be at most 2**63 - 1 = 9223372036854775807, but got 18446744073709551616.",
                 id="seed-past-int64"),
    pytest.param(dict(threshold_metric="exact_match"), "Expected the threshold metric exact_match (threshold_metric, --threshold-metric) only for a task with several "
                 "outputs", id="exact-match-of-one-output"),
    pytest.param(dict(losses=("bce", "bce")), "Expected distinct loss names, but got ['bce', 'bce'].", id="same-loss-twice"),
    pytest.param(dict(losses=()), "Expected at least one loss, but got none.", id="no-loss"),
    pytest.param(dict(dtype="float16"), "Expected `dtype` to be 'float32' or 'float64', but got 'float16'.", id="float16"),
    pytest.param(dict(overrides={"softmax_ce": {"weight": [[1.0, 3.0]]}}), "Expected `weight` of 'softmax_ce' to be a list of "
                 "weights, one per class", id="weight-matrix"),
    pytest.param(dict(overrides={"bce": {"pos_weight": 0}}), "Expected `pos_weight` of 'bce' to be positive, but got 0.",
                 id="zero-pos-weight"),
    # a negative class weight turns that class's loss into a reward for getting it wrong
    pytest.param(dict(overrides={"softmax_ce": {"weight": [-1.0, 2.0]}}), "Expected `weight` of 'softmax_ce' to be non-negative and "
                 "not all zero, but got [-1.0, 2.0].", id="negative-class-weight"),
    # an implementation for a loss not compared would be silently ignored
    pytest.param(dict(impl={"mse": "reference"}), "Expected an implementation or override for one of the losses ['softmax_ce', "
                 "'bce'], but got 'mse'.", id="impl-of-absent-loss"),
    # a TaskData is already loaded: `data` would be silently ignored
    pytest.param(dict(data="elsewhere.csv"), "Expected `quick` and `data` only with a task name", id="data-with-a-task-data"),
])
def test_a_setting_that_cannot_train_is_refused_with_its_own_message(kwargs, message):
    args = dict(losses=("softmax_ce", "bce"), **FAST) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare(tiny_task("binary"), **args)


def test_options_are_refused_for_a_users_loss_function():
    # a user's function takes (output, target) only: an option would be silently dropped
    with pytest.raises(ValueError, match=re.escape("Expected no options for a user's loss function 'mine:bce', but got pos_weight.")):
        _setups(("bce",), tiny_task("binary"), impl={"bce": "mine:bce"}, overrides={"bce": {"pos_weight": 2.0}})


@pytest.mark.parametrize("names", [("l0", "l1", "l2"), ("l0", "l1", "l2", "l3", "extra")], ids=["too-few", "too-many"])
def test_a_task_data_needs_exactly_one_label_name_per_output(names):
    # the history's per-label columns and the plots are named by them
    task = dataclasses.replace(tiny_task("multilabel"), label_names=names)
    with pytest.raises(ValueError, match=re.escape(f"Expected one label name per output (4), but got {len(names)}.")):
        runner.check_task_data(task)


@pytest.mark.parametrize("fill, which", [pytest.param(1.0, "positive", id="all-positive"), pytest.param(0.0, "negative", id="all-negative")])
def test_a_binary_split_of_one_class_only_is_refused(fill, which):
    # AUC, sensitivity and specificity need both classes; all-negative and all-positive splits alike
    task = tiny_task("binary")
    one_class = dataclasses.replace(task.val, y=torch.full_like(task.val.y, fill))
    with pytest.raises(ValueError, match=f"Expected the val split to hold both classes .* are all {which}"):
        runner.check_task_data(dataclasses.replace(task, val=one_class))


@pytest.mark.parametrize("kind, unit", [("multilabel", "label"), ("grid", "area")])
@pytest.mark.parametrize("fill, which", [pytest.param(1.0, "positive", id="all-positive"), pytest.param(0.0, "negative", id="all-negative")])
def test_a_split_whose_every_label_or_area_is_one_answer_is_refused(kind, unit, fill, which):
    # a mini-MIAS folder of normal films only, on the grid target: no area to learn "abnormal" from, no AUC to measure
    task = tiny_task(kind)
    one_answer = dataclasses.replace(task.test, y=torch.full_like(task.test.y, fill))
    with pytest.raises(ValueError, match=f"Expected the test split to hold both answers among its {unit}s .* every {unit} of its "
                                         f"{len(task.test)} examples is {which}"):
        runner.check_task_data(dataclasses.replace(task, test=one_answer))
    one_positive = task.test.y.clone().fill_(1 - fill)
    one_positive[0, 0] = fill  # one answer of the other kind is enough
    runner.check_task_data(dataclasses.replace(task, test=dataclasses.replace(task.test, y=one_positive)))


@pytest.mark.parametrize("value", [pytest.param(-1.0, id="negative"), pytest.param(2.0, id="above-one"), pytest.param(0.3, id="soft")])
def test_targets_that_are_not_labels_are_refused(value):
    # a target of -1 or 2 is no label: BCE and MSE would train towards it, the class index of softmax_ce would be out of
    # range; a soft 0.3 would be positive to accuracy and AUC (y > 0) but class 0 to softmax_ce (rounded)
    task = tiny_task("binary")
    y = task.train.y.clone()
    y[0] = value
    with pytest.raises(ValueError, match=re.escape("Expected the train split's targets to be labels, 0 or 1, but some are not")):
        runner.check_task_data(dataclasses.replace(task, train=dataclasses.replace(task.train, y=y)))


def _with_targets(task, split, y):
    part = getattr(task, split)
    return dataclasses.replace(task, **{split: dataclasses.replace(part, y=y)})


@pytest.mark.parametrize("make, message", [
    pytest.param(lambda t: dataclasses.replace(t, kind="binary"), "Expected a binary task to have one output, but its targets have 4; "
                 "use kind 'multilabel'.", id="binary-of-four-outputs"),
    pytest.param(lambda t: _with_targets(t, "test", t.test.y[:, :3]), "Expected every split to have inputs (5,) and 4 targets per "
                 "example, but the test split has (5,) and 3.", id="test-split-of-fewer-targets"),
])  # fmt: skip
def test_targets_of_the_wrong_width_are_refused(make, message):
    # a head's units and every metric are sized by the train split's targets: a split of another width would mismatch them
    with pytest.raises(ValueError, match=re.escape(message)):
        runner.check_task_data(make(tiny_task("multilabel")))


def test_a_grid_body_is_refused_for_a_task_of_one_decision_per_example():
    # four positions would give four predictions where the task has one target
    task = dataclasses.replace(tiny_task("binary", image=True), body=CNNBody(1, 8, (3, 4), grid=2))
    with pytest.raises(ValueError, match=re.escape("Expected the body of a binary task to give one position (grid=None), but it gives 4.")):
        runner.check_task_data(task)


def test_a_mapping_of_implementations_leaves_the_other_losses_handwritten():
    setups = _setups(("bce", "mse"), tiny_task("binary"), impl={"mse": "reference"})
    assert [(s.name, s.impl) for s in setups] == [("bce", "handwritten"), ("mse", "reference")]


# ---------------------------------------------------------------------------------------------
# Identical models: what is shared and what is each seed's or each loss's own
# ---------------------------------------------------------------------------------------------


def test_each_seed_shuffles_the_examples_its_own_way_and_anew_every_epoch():
    # seeds are independent repeats: the same order for every seed, or for every epoch, would not be
    order = runner.batch_order([0, 1], epochs=3, n=30, device=CPU)  # (epochs, seeds, n)
    assert not torch.equal(order[:, 0], order[:, 1])
    for seed in range(2):
        assert not torch.equal(order[0, seed], order[1, seed]) and not torch.equal(order[1, seed], order[2, seed])


@pytest.mark.parametrize("head_init", ["matched", "independent"])
def test_a_seeds_initial_weights_do_not_depend_on_the_other_seeds_of_the_run(head_init):
    # seeds are independent repeats: seed 1's body and heads are drawn from seed 1 alone, whatever its place in the list
    task = tiny_task("binary")
    setups = _setups(("softmax_ce", "bce"), task)
    both = runner.init_models(task, setups, [0, 1], head_init, CPU, torch.float64)  # row l * 2 + s: loss l, seed s
    alone = runner.init_models(task, setups, [1], head_init, CPU, torch.float64)
    assert torch.equal(both.flat.detach()[[1, 3]], alone.flat.detach())
    assert not torch.equal(both.flat.detach()[0], both.flat.detach()[1])  # and seed 0's differ


def test_independent_heads_are_each_losss_own_even_of_the_same_shape():
    # bce and mse both have a 1-logit head: "independent" must still draw two different ones
    task = tiny_task("binary")
    setups = _setups(("bce", "mse"), task)
    independent = runner.init_models(task, setups, [0], "independent", CPU, torch.float64).heads
    assert not torch.equal(independent[0]["w"], independent[1]["w"])
    matched = runner.init_models(task, setups, [0], "matched", CPU, torch.float64).heads
    assert torch.equal(matched[0]["w"], matched[1]["w"]) and torch.equal(matched[0]["b"], matched[1]["b"])


# ---------------------------------------------------------------------------------------------
# The records: epoch 0, divergence, progress reports
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diverging():
    """bce and naive bce at an absurd SGD learning rate: the naive one's models blow up, with progress recorded."""
    reports = []
    result = lossbench.compare(tiny_task("binary"), ("bce", "bce@naive", "mse"), impl={"bce@naive": "naive"}, seeds=2, epochs=4,
                               batch_size=16, optimizer="sgd", lr=10.0, device="cpu", dtype="float64", progress=reports.append)
    return result, reports


def test_the_last_epochs_validation_accuracy_is_the_runs_to_the_last_digit():
    # counted in the scores' float32 it was the nearest float32 to k / n, 2.5e-8 off runs.csv's k / n
    result = lossbench.compare("titanic", ("bce",), seeds=2, epochs=1, quick=True, device="cpu")
    last = result.history[result.history.epoch == 1].set_index("seed")["val_accuracy"]
    runs = result.runs.set_index("seed")["val_accuracy"]
    n = result.config["sizes"]["val"]
    assert last.to_dict() == runs.to_dict()
    assert all(a == round(a * n) / n for a in last)


def test_a_model_frozen_during_the_last_epoch_has_no_final_train_loss():
    # runs.csv's final_train_loss is NaN for every diverged model, also one frozen partway through the last epoch,
    # whose history still averages the minibatches it trained on (six minibatches of 8: naive bce blows up after some)
    result = lossbench.compare(tiny_task("binary"), ("bce@naive", "mse"), impl={"bce@naive": "naive"}, seeds=2, epochs=1,
                               batch_size=8, optimizer="sgd", lr=10.0, device="cpu", dtype="float64")
    runs = result.runs.set_index("model")
    last = result.history[result.history.epoch == 1].set_index("model").loc[runs.index]
    frozen = runs.diverged_epoch == 1
    assert frozen.any() and (~frozen).any()
    assert last.train_loss[frozen].notna().all()  # it did train part of the epoch
    assert runs.final_train_loss[frozen].isna().all()
    np.testing.assert_array_equal(runs.final_train_loss[~frozen], last.train_loss[~frozen])


def test_epoch_zero_has_no_train_loss_as_nothing_was_trained_yet(diverging):
    result, _ = diverging
    h = result.history
    assert h[h.epoch == 0].train_loss.isna().all()
    assert h[(h.epoch == 1) & (h.loss == "mse")].train_loss.notna().all()


def test_a_task_of_one_output_has_no_per_label_gradient_share_columns(diverging):
    # its one label would take the whole gradient in every row: per-label shares are recorded for several outputs only
    result, _ = diverging
    assert not [c for c in result.history.columns if c.startswith("grad_label_share")]
    assert "grad_positive_share" in result.history.columns


def test_progress_reports_count_frozen_models_and_average_accuracy_per_loss(diverging):
    result, reports = diverging
    runs, h = result.runs, result.history
    assert runs[runs.loss == "bce@naive"].diverged.any() and not runs[runs.loss == "mse"].diverged.any()
    for report in reports:
        frozen = runs[runs.diverged_epoch <= report.epoch].groupby("loss").size()
        assert report.diverged == {loss: int(frozen.get(loss, 0)) for loss in ("bce", "bce@naive", "mse")}, report.epoch
        at = h[h.epoch == report.epoch].groupby("loss").val_accuracy.mean()
        np.testing.assert_allclose([report.val_accuracy[loss] for loss in at.index], at.to_numpy(), err_msg=str(report.epoch))
    # the grouping is by loss, not by seed: these losses' accuracies differ, so a wrong grouping shows
    assert len({round(v, 9) for v in reports[-1].val_accuracy.values()}) > 1


def test_the_progress_bar_counts_trained_epochs_only():
    # the report of epoch 0 (before training) must not move a bar of `epochs` steps
    bar = runner.ProgressBar(2)
    try:
        for epoch in range(3):
            bar(runner.ProgressReport(epoch, 2, {"bce": 0.5}, {"bce": 0}))
        assert bar.bar.n == 2
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------
# Tracing, threads and what config.json says
# ---------------------------------------------------------------------------------------------


def test_a_run_is_traced_from_exactly_trace_from_steps_full_minibatches():
    # "traced from this many full minibatches on": the boundary itself is traced
    step, setups = SimpleNamespace(written_out=True), _setups(("bce",), tiny_task("binary"))
    assert runner._cpu_trace(step, setups, ["flatten"], CPU, runner.TRACE_FROM_STEPS, True) is None
    assert runner._cpu_trace(step, setups, ["flatten"], CPU, runner.TRACE_FROM_STEPS - 1, True) == (
        f"{runner.TRACE_FROM_STEPS - 1} full minibatches, too few to win back the tracing (from {runner.TRACE_FROM_STEPS} on)")


def test_a_loss_run_one_model_at_a_time_is_never_traced():
    # however long the run: a trace would replay the branches of the loss's first call for every model and minibatch
    step, setups = SimpleNamespace(written_out=True), _setups(("bce",), tiny_task("binary"))
    reason = runner._cpu_trace(step, setups, ["loop"], CPU, 10 * runner.TRACE_FROM_STEPS, True)
    assert reason is not None and "one model at a time" in reason


def test_the_last_smaller_minibatch_is_traced_only_from_trace_from_steps_epochs():
    # 48 examples in batches of 20: two full steps an epoch and one of 8, which runs once an epoch
    assert runner.traced_sizes(48, 20, runner.TRACE_FROM_STEPS // 2) == {20}
    assert runner.traced_sizes(48, 20, runner.TRACE_FROM_STEPS) == {20, 8}


def test_threads_are_set_for_the_run_recorded_and_restored():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    result = lossbench.compare(tiny_task("binary"), ("bce",), threads=wanted, **FAST)
    assert result.config["threads"] == wanted
    assert torch.get_num_threads() == before
    assert lossbench.compare(tiny_task("binary"), ("bce",), **FAST).config["threads"] == before  # None: torch's own


def test_config_records_each_losss_head_lr_scale_and_the_split_sizes():
    task = tiny_task("binary", n=40)
    task = dataclasses.replace(task, test=dataclasses.replace(task.test, x=task.test.x[:30], y=task.test.y[:30], source=task.test.source[:30]))
    result = lossbench.compare(task, ("softmax_ce", "bce"), overrides={"softmax_ce": {"head_lr_scale": 0.5}}, **FAST)
    assert result.config["loss_setups"]["softmax_ce"]["head_lr_scale"] == 0.5
    assert result.config["loss_setups"]["bce"]["head_lr_scale"] == 1.0
    assert result.config["sizes"] == {"train": 40, "val": 40, "test": 30}


@pytest.mark.parametrize("seeds, expected", [
    pytest.param(np.array([3, 5]), [3, 5], id="numpy-array"),
    pytest.param(range(2), [0, 1], id="range"),
    pytest.param((4, 1), [4, 1], id="tuple"),
    pytest.param(np.int64(2), 2, id="numpy-int"),
])
def test_seeds_are_recorded_as_plain_numbers_and_the_recorded_config_runs_again(seeds, expected):
    # config.json is the resolved config (STYLE rule 8): seeds given as a numpy array or a range were written
    # as the text '[3 5]' or 'range(0, 2)', which no one can pass back
    task = tiny_task("binary")
    result = lossbench.compare(task, ("bce",), **dict(FAST, seeds=seeds))
    recorded = result.config["task_config"]["seeds"]
    assert recorded == expected and type(recorded) is type(expected)
    again = lossbench.compare(task, ("bce",), config=result.config["task_config"], device="cpu")
    assert again.runs.seed.tolist() == result.runs.seed.tolist()
    assert frames._jsonable({"s": np.array([1, 2]), "r": range(3)}) == {"s": [1, 2], "r": [0, 1, 2]}


@pytest.mark.parametrize("kind, body, message", [
    pytest.param("binary", MLPBody(6, 8), "Expected the body to take the inputs' shape (5,), but MLPBody(in_features=6, ...) takes (6,).",
                 id="mlp-of-other-width"),
    pytest.param("binary", CNNBody(1, 8, (3, 4)), "Expected the body to take the inputs' shape (5,), but CNNBody(in_channels=1, "
                 "image_size=8, ...) takes (1, 8, 8).", id="cnn-on-a-table"),
    pytest.param("grid", CNNBody(1, 8, (3, 4)), "Expected the body of a grid task to give one position per area (4), a CNNBody with "
                 "grid=2 for a square map, but it gives 1.", id="grid-task-without-grid"),
    pytest.param("grid", CNNBody(1, 16, (3, 4), grid=2), "Expected the body to take the inputs' shape (1, 8, 8)", id="cnn-of-other-size"),
])  # fmt: skip
def test_a_body_that_does_not_fit_the_data_is_refused_before_training(kind, body, message):
    # each of these was a RuntimeError from deep inside torch at the first minibatch
    task = dataclasses.replace(tiny_task(kind), body=body)
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare(task, ("bce",), **FAST)


def test_numpy_numbers_and_the_largest_64_bit_seed_are_taken(tmp_path):
    result = lossbench.compare(tiny_task("binary"), ("bce",), **(FAST | {"seeds": [2**63 - 1, 0]}),
                               overrides={"bce": {"head_lr_scale": np.float32(0.5)}})
    assert result.config["loss_setups"]["bce"]["head_lr_scale"] == 0.5
    result.save(tmp_path / "run")
    assert sorted(lossbench.load(tmp_path / "run").runs.seed.tolist()) == [0, 2**63 - 1]


@pytest.mark.parametrize("data", [5, ""])
def test_data_that_is_not_a_path_is_named(data):
    # 5 was torch's "expected str, bytes or os.PathLike object", and "" read the current folder as a CSV file
    with pytest.raises(ValueError, match=re.escape(f"Expected `data` to be None (the shipped or generated data) or the path of a file or folder, but got {data!r}.")):
        lossbench.compare("titanic", ("bce",), data=data, **FAST)


@pytest.mark.parametrize("engine", ["batched", "loop"])
def test_a_minibatch_larger_than_the_split_is_the_whole_split_however_large(engine):
    """A batch size past the training split (even past int64) trains one full-batch step an epoch, as batch_size = N does."""
    task = tiny_task("binary")  # 48 training examples
    kwargs = dict(seeds=2, epochs=2, device="cpu", dtype="float64", engine=engine)
    exact = lossbench.compare(task, ("softmax_ce", "bce"), batch_size=48, **kwargs)
    for huge in (49, 2**63 - 1, 10**20):
        result = lossbench.compare(task, ("softmax_ce", "bce"), batch_size=huge, **kwargs)
        pd.testing.assert_frame_equal(result.history, exact.history)
        assert result.config["task_config"]["batch_size"] == huge  # recorded as given
