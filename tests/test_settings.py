"""Settings that cannot train anything are refused before training, with one line that says what is wrong."""
from __future__ import annotations

import dataclasses
import math
import re
import sys
import warnings

import numpy as np
import pytest
import torch

import lossbench
from lossbench import cli
from lossbench.tasks.base import Split
from tests.conftest import tiny_task

TINY = dict(seeds=2, epochs=1, device="cpu", config={"hidden": 8})

USER_LOSSES = '''
import torch
import torch.nn.functional as F

def detached(z, y):
    return F.binary_cross_entropy_with_logits(z, y).detach()

def integer(z, y):
    return torch.tensor(1)

def no_arguments():
    return 0

def raises(z, y):
    raise RuntimeError("shapes do not match")

def made_anew(z, y):  # a value with requires_grad, but computed outside autograd: not connected to z
    return torch.tensor(F.binary_cross_entropy_with_logits(z, y).item(), requires_grad=True)

def clamps_in_place(z, y):  # clamp_ overwrites the sigmoid's output, which its backward pass needs
    p = torch.sigmoid(z)
    p.clamp_(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(p, y)

def sqrt_of_the_distance(z, y):  # torch.where's unpicked branch is sqrt of a negative: its NaN reaches the gradient
    d = torch.sigmoid(z) - y
    return torch.where(d > 0, torch.sqrt(d), torch.sqrt(-d)).mean()

def rounded(z, y):  # the value of a classifier's mistakes, whose gradient is zero everywhere
    return ((torch.round(torch.sigmoid(z)) - y) ** 2).mean()

def wrong_shape(z, y):
    return F.binary_cross_entropy_with_logits(z, y, reduction="none")

def mean_of_full_batches(z, y):  # a scalar on minibatches of 64 and the validation split, not on the last minibatch
    terms = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    return terms.mean() if z.shape[0] in (64, 262) else terms

def only_full_batches(z, y):  # fine on minibatches of 64 and the 262 validation passengers, not on the last minibatch
    if z.shape[0] not in (64, 262):
        raise ValueError("only batches of 64")
    return F.binary_cross_entropy_with_logits(z, y)
'''


@pytest.fixture
def user_losses(tmp_path, monkeypatch):
    (tmp_path / "lossbench_user_losses.py").write_text(USER_LOSSES)
    monkeypatch.chdir(tmp_path)
    yield "lossbench_user_losses"
    sys.modules.pop("lossbench_user_losses", None)


@pytest.mark.parametrize("options, message", [
    ({"bce": {"pos_weight": -4}}, "Expected `pos_weight` of 'bce' to be positive, but got -4."),
    ({"bce": {"pos_weight": float("nan")}}, "Expected `pos_weight` of 'bce' to be finite, but got nan."),
    ({"bce": {"pos_weight": "abc"}}, "Expected `pos_weight` of 'bce' to be a number or a list of numbers, but got 'abc'."),
    ({"softmax_ce": {"weight": [0.0, 0.0]}}, "Expected `weight` of 'softmax_ce' to be non-negative and not all zero"),
    ({"softmax_ce": {"weight": 2.0}}, "Expected `weight` of 'softmax_ce' to be a list of weights, one per class or output (2 "
                                      "here; on the command line: softmax_ce.weight=1,2), but got 2.0."),
    # the example fits the loss's head: one output for bce on Titanic, where `bce.weight=1,2` would be refused by the loss
    ({"bce": {"weight": 2.0}}, "Expected `weight` of 'bce' to be a list of weights, one per class or output (1 here; on the "
                               "command line: bce.weight=[1]), but got 2.0."),
    # a list of the wrong length was refused by the loss at the first minibatch, naming the minibatch's shape
    ({"bce": {"pos_weight": [1, 2, 3]}}, "Expected `pos_weight` of 'bce' to be one number (the task has one output), but got 3 "
                                         "numbers: [1, 2, 3]."),
    ({"softmax_ce": {"weight": [1, 2, 3]}}, "Expected `weight` of 'softmax_ce' to be one number or a list of 2, one per class or "
                                            "output, but got 3 numbers: [1, 2, 3]."),
    # a class that a minibatch may hold alone made its mean 0 / 0: NaN, reported as a diverged model
    ({"softmax_ce": {"weight": [0.0, 1.0]}}, "Expected every class `weight` of 'softmax_ce' to be positive, but got [0.0, 1.0]"),
    # 1e-300 is 0 in float32 and 1e39 inf: "to be positive" and "to be finite" were untrue of them
    ({"bce": {"pos_weight": 1e-300}}, "Expected `pos_weight` of 'bce' to be within float32's range, 1.2e-38 to 3.4e+38, but got 1e-300."),
    ({"bce": {"weight": [1e39]}}, "Expected `weight` of 'bce' to be within float32's range, 1.2e-38 to 3.4e+38, but got [1e+39]."),
    ({"focal": {"gamma": 1e39}}, "Expected `gamma` of 'focal' to be at most 3.4e+38, the largest float32, but got 1e+39."),
    ({"softmax_ce": {"head_lr_scale": "abc"}}, "Expected `head_lr_scale` of 'softmax_ce' to be a positive number, but got 'abc'."),
    # true/false (`--loss-option bce.pos_weight=true`) would be taken as 1 by torch and Python alike
    ({"bce": {"head_lr_scale": True}}, "Expected `head_lr_scale` of 'bce' to be a positive number, but got True."),
    ({"bce": {"pos_weight": True}}, "Expected `pos_weight` of 'bce' to be a number or a list of numbers, but got True."),
    ({"softmax_ce": {"weight": [True, 1.0]}}, "Expected `weight` of 'softmax_ce' to be a number or a list of numbers, but got [True, 1.0]."),
])
def test_a_loss_option_that_cannot_weigh_anything_is_refused(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare("titanic", losses=tuple(options), overrides=options, **TINY)


@pytest.mark.parametrize("function, what", [
    ("only_full_batches", "to run on every minibatch and on the validation split, but on outputs (17,) and targets (17,) of "
                          "each model it raised ValueError: only batches of 64"),
    ("mean_of_full_batches", "to return a scalar tensor (the mean over the batch) on every minibatch and on the validation "
                             "split, but on outputs (17,) and targets (17,) of each model it returned (17,)."),
], ids=["raises", "not-a-scalar"])
def test_a_user_loss_that_fails_later_in_the_run_is_named_with_what_it_got(user_losses, function, what):
    # Titanic's 785 training passengers: twelve minibatches of 64, then one of 17, where these two fail
    with pytest.raises(ValueError) as info:
        lossbench.compare("titanic", losses=("bce",), impl=f"{user_losses}:{function}", seeds=2, epochs=1, device="cpu")
    assert str(info.value) == f"Expected the loss function {user_losses}:{function} (for 'bce') {what}"


@pytest.mark.parametrize("name", ["weight_decay", "momentum"])
def test_nan_is_not_a_non_negative_number(name):
    with pytest.raises(ValueError, match=f"Expected `{name}` to be a non-negative number, but got nan."):
        lossbench.compare("titanic", optimizer="sgd", config={"hidden": 8, name: float("nan")}, seeds=2, epochs=1, device="cpu")


@pytest.mark.parametrize("function", ["detached", "integer", "made_anew"])
def test_a_loss_that_carries_no_gradient_is_refused_before_training(user_losses, function):
    with pytest.raises(ValueError, match="carries no gradient .*its models would never train"):
        lossbench.compare("titanic", losses=("bce",), impl=f"{user_losses}:{function}", **TINY)


@pytest.mark.parametrize("function, message", [
    ("sqrt_of_the_distance", "to have a finite gradient on one model's first minibatch, before any training, but it is NaN or "
                             "infinite at "),
    ("rounded", "to send a gradient to the model's output, but it is zero at every output of one model's first minibatch"),
    ("wrong_shape", "to return a scalar tensor (the mean over the batch), but got (64,)."),
])  # fmt: skip
def test_a_user_loss_that_cannot_train_is_named_before_training(user_losses, function, message):
    # the first two trained nothing: every model "diverged" at epoch 1, or kept its untrained accuracy, without a word
    with pytest.raises(ValueError) as info:
        lossbench.compare("titanic", losses=("bce",), impl=f"{user_losses}:{function}", **TINY)
    assert str(info.value).startswith(f"Expected the loss function {user_losses}:{function} (for 'bce') {message}")


def test_a_user_loss_whose_backward_pass_fails_is_named_with_the_fix(user_losses):
    # the forward pass runs; autograd refuses only in the backward pass, which the first check now runs too
    with pytest.raises(ValueError) as info:
        lossbench.compare("titanic", losses=("bce",), impl=f"{user_losses}:clamps_in_place", **TINY)
    message = str(info.value)
    assert message.startswith(f"Expected the loss function {user_losses}:clamps_in_place (for 'bce') to have a gradient "
                              "autograd can compute, but its backward pass on one model's minibatch raised RuntimeError: "
                              "one of the variables needed for gradient computation has been modified by an inplace operation")
    assert message.endswith("its out-of-place form, x = x.clamp(...), keeps it)") and "\n" not in message


@pytest.mark.parametrize("function, error", [("no_arguments", "TypeError"), ("raises", "RuntimeError: shapes do not match")])
def test_a_user_loss_that_raises_is_named_in_the_error(user_losses, function, error):
    with pytest.raises(ValueError, match=f"Expected the loss function {user_losses}:{function} \\(for 'bce'\\) to run on one "
                                         f"model's minibatch, output \\(64,\\) and target \\(64,\\), but it raised {error}"):
        lossbench.compare("titanic", losses=("bce",), impl=f"{user_losses}:{function}", **TINY)


@pytest.mark.parametrize("argv, message", [
    (["--loss-option", "bce.pos_weight=abc"], "Expected `pos_weight` of 'bce' to be a number or a list of numbers, but got 'abc'."),
    (["--loss-option", "bce.pos_weight=-4"], "Expected `pos_weight` of 'bce' to be positive, but got -4.0."),
    (["--set", "weight_decay=nan"], "Expected --set weight_decay to be a non-negative number, but got nan."),
    (["--impl", "bce=lossbench_user_losses:no_arguments"], "but it raised TypeError"),
    (["--impl", "bce=lossbench_user_losses:clamps_in_place"], "but its backward pass on one model's minibatch raised RuntimeError"),
    (["--impl", "bce=lossbench_user_losses:made_anew"], "its value carries no gradient"),
])
def test_the_cli_says_it_in_one_line_with_exit_code_2(user_losses, capsys, argv, message):
    code = cli.main(["compare", "--task", "titanic", "--quick", "--no-plots", "--device", "cpu", "--out", "run", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().split("\n")) == 1  # the progress bar's \r-overwritten line, then the error


def test_a_comparison_that_cannot_fit_in_memory_is_refused_at_once(capsys):
    """A hundred million seeds: refused in one line before any seed is drawn, not a silent wait at 0%."""
    import time

    start = time.perf_counter()
    code = cli.main(["compare", "--task", "titanic", "--seeds", str(10**8), "--no-plots", "--device", "cpu", "--out", "never"])
    err = capsys.readouterr().err
    assert code == 2 and time.perf_counter() - start < 30
    assert "Expected the comparison to fit in memory, but 300,000,000 models of 2,306 parameters" in err
    assert "use fewer seeds or epochs, or a smaller model." in err and "training" not in err


def test_the_default_comparisons_fit():
    from lossbench.runner import check_fits, resolve_config, resolve_losses
    from lossbench.tasks import get

    cpu = torch.device("cpu")
    for name in ("titanic", "multilabel", "mammography"):
        cfg = resolve_config(name)
        task = get(name).load(cfg, None)
        setups = resolve_losses(["softmax_ce", "bce", "mse"], "handwritten", None, task, cpu, torch.float32)
        check_fits(task, setups, cfg, cpu, torch.float32)  # no error


USER_LOSSES_MORE = '''
import torch

def nan(z, y):
    return (z * float("nan")).mean()
'''


@pytest.mark.parametrize("seeds, shown", [
    ([0.2, 0.7], "[0.2, 0.7]"), ([0, 0], "[0, 0]"), ("12", "'12'"), (True, "True"), ([True, False], "[True, False]"),
    (2.0, "2.0"), ([float("nan")], "[nan]"), ([], "[]"), ([-1, 2], "[-1, 2]"),
])
def test_seeds_are_whole_numbers_each_used_once(seeds, shown):
    with pytest.raises(ValueError, match="Expected `seeds` to be a positive whole number or distinct non-negative whole "
                                         f"numbers, but got {re.escape(shown)}."):
        lossbench.compare("titanic", seeds=seeds, epochs=1, device="cpu", config={"hidden": 8})


def test_numpy_seeds_and_numbers_are_numbers():
    result = lossbench.compare("titanic", losses=("bce",), seeds=np.array([3, 5]), epochs=1, lr=np.float32(0.01),
                               threads=np.int64(1), device="cpu", config={"hidden": np.int64(8)})
    assert result.config["seeds"] == [3, 5]


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=True), "Expected `lr` to be a number, but got True."),
    (dict(config={"hidden": True}), "Expected `hidden` to be a whole number, but got True."),
    (dict(config={"split_seed": 1.5}), "Expected `split_seed` to be a whole number, but got 1.5."),
    (dict(config={"split_seed": -1}), "Expected `split_seed` to be a whole number, 0 or more, but got -1."),
    (dict(config={"bias": "no"}), "Expected `bias` to be True or False, but got 'no'."),
    (dict(config=["hidden"]), "Expected `config` to be a mapping of setting names to values, but got ['hidden']."),
    (dict(threshold_points=2.5), "Expected `threshold_points` to be a whole number, 2 or more, but got 2.5."),
    (dict(device=None), "Expected `device` to be 'auto', 'cpu', 'cuda' or a torch.device, but got None."),
    (dict(losses=[1]), "Expected `losses` to be a loss name or a list of loss names, but got [1]."),
    (dict(threads=True), "Expected `threads` to be None or a whole number, 1 or more, but got True."),
    (dict(overrides={"bce": 2}), "Expected `overrides` to be None or a mapping from loss name to a mapping of options, but got {'bce': 2}."),
    (dict(impl=None), "Expected `impl` to be an implementation name or import path ('__main__:my_loss' for a function defined in a notebook), or a mapping from loss name to one, but got None."),
    (dict(progress=1), "Expected `progress` to be True, False or a function taking a ProgressReport, but got 1."),
    (dict(quick="yes"), "Expected `quick` to be True or False, but got 'yes'."),
])
def test_arguments_of_the_wrong_type_are_named(kwargs, message):
    settings = dict(seeds=2, epochs=1, device="cpu", config={"hidden": 8}) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare("titanic", **settings)


def test_a_torch_device_is_a_device():
    assert lossbench.compare("titanic", losses=("bce",), device=torch.device("cpu"), seeds=2, epochs=1,
                             config={"hidden": 8}).config["device"] == "cpu"


def test_a_task_is_a_name_or_a_task_data():
    with pytest.raises(ValueError, match=r"Expected `task` to be a task name \(titanic, multilabel, mammography\) or a TaskData, but got \{\}."):
        lossbench.compare({})


def test_a_user_loss_that_is_not_finite_before_training_is_refused(tmp_path, monkeypatch):
    (tmp_path / "lossbench_user_nan.py").write_text(USER_LOSSES_MORE)
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(ValueError, match="to be finite on one model's first minibatch, before any training, but it returned nan"):
            lossbench.compare("titanic", losses=("bce",), impl="lossbench_user_nan:nan", **TINY)
    finally:
        sys.modules.pop("lossbench_user_nan", None)


@pytest.mark.parametrize("make, message", [
    (lambda t: dataclasses.replace(t, kind="regression"), "Expected the task's kind to be 'binary', 'multilabel' or 'grid', but got 'regression'."),
    (lambda t: dataclasses.replace(t, kind="grid"), "Expected a grid task to have several outputs, but its targets have 1"),
    (lambda t: dataclasses.replace(t, label_names=("a", "b")), "Expected one label name per output (1), but got 2."),
    (lambda t: dataclasses.replace(t, body=None), "Expected the task's body to be an MLPBody or a CNNBody, but got None."),
    (lambda t: dataclasses.replace(t, test=Split(t.test.x[:, :3], t.test.y, t.test.source)),
     "Expected every split to have inputs (5,) and 1 targets per example, but the test split has (3,) and 1."),
    (lambda t: dataclasses.replace(t, val=Split(t.val.x[:0], t.val.y[:0], t.val.source[:0])), "Expected the val split to hold examples, but it is empty."),
    (lambda t: dataclasses.replace(t, train=Split(t.train.x * float("nan"), t.train.y, t.train.source)),
     "Expected the train split's inputs to be finite, but some are NaN or infinite."),
])
def test_a_task_data_the_runner_cannot_train_on_is_refused(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare(make(tiny_task("binary")), losses=("bce",), seeds=2, epochs=1, device="cpu")


@pytest.mark.parametrize("make, message", [
    (lambda s: Split(s.x, s.y[:, 0], s.source), "Expected `y` to be (N, K), one row of K targets per example, but got shape (48,)."),
    (lambda s: Split(s.x[:40], s.y, s.source), "Expected `x`, `y` and `source` to have one row per example each, but got 40, 48 and 48 rows."),
    (lambda s: Split(s.x, s.y, s.source[:47]), "Expected `x`, `y` and `source` to have one row per example each, but got 48, 48 and 47 rows."),
])
def test_a_split_whose_parts_do_not_fit_is_refused_when_made(make, message):
    """A user's Split is checked as it is made, with a ValueError that stays under `python -O`."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make(tiny_task("binary").train)


@pytest.mark.parametrize("split, what", [("train", "training"), ("val", "validation")])
def test_softmax_across_labels_needs_a_label_on_every_example_it_takes_a_loss_of(split, what):
    """Its target y / y.sum() is 0 / 0 on an example without a label: every validation record would be NaN."""
    task = tiny_task("multilabel")
    part = getattr(task, split)
    y = part.y.clone()
    y[:3] = 0.0
    task = dataclasses.replace(task, **{split: Split(part.x, y, part.source)})
    message = f"Expected every {what} example to have a label for softmax across labels (its target shares the labels out), but 3 of the {split} split's have none."
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare(task, losses=("softmax_ce", "bce"), seeds=2, epochs=1, device="cpu")
    lossbench.compare(task, losses=("bce",), seeds=2, epochs=1, device="cpu")  # sigmoids answer "no label" as they are


@pytest.mark.parametrize("impl, fix", [
    ("softmax_ce:reference", "softmax_ce: to train softmax_ce, add it to the losses instead."),  # bce's 1-logit head, cross-entropy
    ("bce:naive", "bce: write the implementation as 'naive'."),
    ("bce:fancy", "bce."),
])
def test_a_built_in_loss_s_name_is_not_taken_for_a_user_s_function(impl, fix):
    message = (f"Expected the implementation of 'bce' to be one of handwritten, naive, reference or an import path "
               f"'package.module:function', but got {impl!r}, which names the built-in loss family {fix}")
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare(tiny_task("binary"), losses=("bce",), impl={"bce": impl}, seeds=2, epochs=1, device="cpu")


def test_a_task_loaded_by_name_is_checked_like_a_task_data(monkeypatch):
    from lossbench.tasks import titanic

    def load_with_a_hole(config, data=None):
        task = load(config, data)
        task.val.x[0, 0] = float("nan")  # what a loader might let through
        return task

    load = titanic.load
    monkeypatch.setattr(titanic, "load", load_with_a_hole)
    message = ("The titanic task loaded with these settings cannot be trained on: "
               "Expected the val split's inputs to be finite, but some are NaN or infinite.")
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare("titanic", losses=("bce",), **TINY)


def test_a_task_data_takes_training_settings_and_no_quick_or_data():
    task = tiny_task("binary")
    result = lossbench.compare(task, losses=("bce",), seeds=2, config={"epochs": 3}, epochs=1, device="cpu")
    assert result.config["task_config"]["epochs"] == 1  # the explicit argument wins, as with a task name
    with pytest.raises(ValueError, match=r"Expected `quick` and `data` only with a task name"):
        lossbench.compare(task, quick=True, seeds=2, epochs=1, device="cpu")
    with pytest.raises(ValueError, match=r"Expected config keys among seeds, epochs, .*, but got 'hidden'."):
        lossbench.compare(task, config={"hidden": 8}, seeds=2, epochs=1, device="cpu")


def test_a_comparison_whose_probe_cannot_fit_is_refused():
    """Weights and optimizer state fit (about 5 GB) but the probe's body outputs on the validation split do not (63 GB)."""
    from lossbench.settings import _memory_of

    if _memory_of(torch.device("cpu")) > 60e9:
        pytest.skip("this machine holds the probe")
    with pytest.raises(ValueError, match=r"Expected the comparison to fit in memory, but 2 models of 170,000,001 parameters need at least 6\d GB"):
        lossbench.compare("titanic", losses=("bce",), quick=True, seeds=2, epochs=1, device="cpu", config={"hidden": 10**7})


def test_a_body_too_large_for_memory_is_refused_before_any_of_it_is_made(monkeypatch):
    """The memory check counts a body's parameters from their shapes: making one body of 64 GB to count it would fail first."""
    from lossbench import models

    def no_drawing(*args, **kwargs):
        raise AssertionError("a parameter was drawn before the memory check")

    monkeypatch.setattr(models, "_uniform", no_drawing)
    with pytest.raises(ValueError, match=r"^Expected the comparison to fit in memory, but 2 models of 17,000,000,001 parameters "):
        lossbench.compare("titanic", losses=("bce",), quick=True, seeds=2, epochs=1, device="cpu", config={"hidden": 10**9})


def test_loading_a_file_says_it_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"Expected a lossbench run directory, but '.*afile' is a file."):
        lossbench.load(tmp_path / "afile")


def test_plot_arguments_are_checked(tmp_path):
    from lossbench import plots

    result = lossbench.compare("titanic", losses=("bce",), **TINY)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"Expected `directory` to be a folder for the plots, but '.*afile' is a file."):
        plots.save_plots(result, tmp_path / "afile")
    with pytest.raises(ValueError, match=r"Expected `epoch` to be a recorded epoch, 0 to 1, but got True."):
        plots.gradient_allocation(result, epoch=True)


def test_a_loss_whose_every_model_blew_up_reports_its_progress_without_a_numpy_warning():
    reports = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's "Mean of empty slice" would fail here
        result = lossbench.compare("titanic", losses=("bce",), optimizer="sgd", lr=1e37, progress=reports.append, **TINY)
    assert result.runs["test_accuracy"].isna().all()  # every model's weights blew up
    assert math.isnan(reports[-1].val_accuracy["bce"])


@pytest.mark.parametrize("momentum", [1.0, 2.5])
def test_momentum_of_1_or_more_is_refused(momentum):
    with pytest.raises(ValueError, match=re.escape(f"Expected `momentum` to be below 1 (0.9 is usual), but got {momentum!r}: ")):
        lossbench.compare("titanic", optimizer="sgd", momentum=momentum, **TINY)


def test_momentum_just_below_1_trains():
    result = lossbench.compare("titanic", optimizer="sgd", momentum=0.99, **TINY)
    assert result.config["task_config"]["momentum"] == 0.99 and result.runs.diverged_epoch.isna().all()


def test_momentum_is_an_sgd_setting():
    """Adam would ignore it: refused, where SGD takes it."""
    with pytest.raises(ValueError, match=re.escape("Expected `momentum` only with optimizer 'sgd' (Adam keeps its own running "
                                                   "averages), but got momentum=0.9 with optimizer 'adam'.")):
        lossbench.compare("titanic", momentum=0.9, **TINY)
    assert lossbench.compare("titanic", momentum=0.9, optimizer="sgd", **TINY).config["task_config"]["momentum"] == 0.9


@pytest.mark.parametrize("task, config, data, message", [
    ("multilabel", {"n_train": 100, "grid": 3}, "photos", "Expected settings that apply to a folder read with `data`, but got "
     "`n_train`, `grid`: they shape the generated data only, and `data` is read as it is, with its own split. Leave them out, "
     "or leave out `data`."),
    ("multilabel", {"image_size": 64}, None, "Expected settings that apply to the generated data, but got `image_size`: it "
     "applies only to a folder read with `data`. Leave it out, or give `data`."),
    ("mammography", {"epochs": 1, "prevalence": 0.5}, "mias", "but got `prevalence`: it shapes the generated data only"),
    ("mammography", {"mias_downsample": 2}, None, "but got `mias_downsample`: it applies only to a folder read with `data`."),
])
def test_a_setting_the_data_would_not_use_is_refused_before_the_data_is_read(task, config, data, message, monkeypatch):
    monkeypatch.setattr(lossbench.tasks.get(task), "load", lambda *a: pytest.fail("the data was read"))
    with pytest.raises(ValueError, match=re.escape(message)):
        lossbench.compare(task, config=config, data=data, device="cpu")


def test_the_cli_names_such_a_setting_as_typed(capsys, tmp_path):
    code = cli.main(["compare", "--task", "multilabel", "--data", str(tmp_path), "--set", "val_fraction=0.3", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "lossbench compare: error: Expected settings that apply to a folder read with --data, but got --set val_fraction: it shapes "
        "the generated data only, and --data is read as it is, with its own split. Leave it out, or leave out --data.\n")
    assert not (tmp_path / "run").exists()


def test_config_json_lists_the_settings_the_data_left_unused(tmp_path):
    result = lossbench.compare("multilabel", quick=True, device="cpu", progress=False, seeds=1, epochs=1)
    assert result.config["task_config_unused"] == ["image_size"]
    assert lossbench.compare("titanic", **TINY).config["task_config_unused"] == []
    result.save(tmp_path / "run")
    assert lossbench.load(tmp_path / "run").config["task_config_unused"] == ["image_size"]


def test_the_command_line_and_compare_take_their_run_defaults_from_one_dataclass():
    """STYLE 8: compare()'s defaults besides training and `lossbench compare`'s are settings.RUN's, so they cannot drift apart."""
    import inspect

    from lossbench.settings import RUN

    args = cli.build_parser().parse_args(["compare", "--task", "titanic"])
    given = inspect.signature(lossbench.compare).parameters
    assert tuple(args.losses.split(",")) == given["losses"].default == RUN.losses
    for name in ("impl", "head_init", "device", "threshold_metric"):
        assert getattr(args, name) == given[name].default == getattr(RUN, name), name
    for name in ("dtype", "threshold_points"):
        assert given[name].default == getattr(RUN, name), name


# ---------------------------------------------------------------------------------------------
# The checks one at a time, at their boundaries: the last value taken and the first refused
# ---------------------------------------------------------------------------------------------


def test_a_numpy_bool_is_true_or_false_for_a_switch():
    from lossbench.settings import resolve_config

    cfg = resolve_config("titanic", config={"bias": np.bool_(False)})
    assert cfg.bias is False


@pytest.mark.parametrize("task, config, message", [
    ("mammography", {"target": "square"}, "Expected `target` to be one of 'patch', 'grid', but got 'square'."),
    ("titanic", {"optimizer": "rmsprop"}, "Expected `optimizer` to be one of 'adam', 'sgd', but got 'rmsprop'."),
])
def test_a_setting_of_fixed_choices_takes_only_those(task, config, message):
    from lossbench.settings import resolve_config

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        resolve_config(task, config=config)


def test_the_largest_seed_is_the_largest_int64():
    from lossbench.settings import resolve_config

    assert resolve_config("titanic", seeds=[2**63 - 1]).seeds == [2**63 - 1]
    with pytest.raises(ValueError, match=re.escape("Expected each seed to be at most 2**63 - 1 = 9223372036854775807, but got "
                                                   "9223372036854775808.")):
        resolve_config("titanic", seeds=[0, 2**63])


@pytest.mark.parametrize("lr", [0.0, -0.1, float("inf"), float("nan")])
def test_a_learning_rate_is_a_finite_positive_number(lr):
    from lossbench.settings import resolve_config

    with pytest.raises(ValueError, match=f"^{re.escape(f'Expected `lr` to be a positive number, but got {lr!r}.')}$"):
        resolve_config("titanic", lr=lr)
    assert resolve_config("titanic", lr=5e-324).lr == 5e-324  # the smallest positive float trains (slowly)


def test_an_empty_data_path_is_not_a_path():
    with pytest.raises(ValueError, match=re.escape("Expected `data` to be None (the shipped or generated data) or the path of a "
                                                   "file or folder, but got ''.")):
        lossbench.compare("titanic", data="", **TINY)


@pytest.mark.parametrize("split_seed", [0.5, True, -1])
def test_validate_training_takes_a_split_seed_of_whole_numbers_from_0(split_seed):
    """Called on a config made by hand, not only on one that resolve_config has typed."""
    from lossbench.settings import validate_training
    from lossbench.tasks import TrainingDefaults

    with pytest.raises(ValueError, match=re.escape(f"Expected `split_seed` to be a whole number, 0 or more, but got {split_seed!r}.")):
        validate_training(TrainingDefaults(split_seed=split_seed))
    validate_training(TrainingDefaults(split_seed=0))


@pytest.mark.parametrize("device", ["cpu:1", "cpu:0", "mps", "meta"])
def test_a_device_other_than_the_cpu_or_cuda_is_refused(device):
    from lossbench.settings import resolve_device

    with pytest.raises(ValueError, match=f"^{re.escape(f'Expected `device` to be {chr(39)}auto{chr(39)}, ')}"):
        resolve_device(device)
    assert resolve_device("cpu") == torch.device("cpu")


def test_the_largest_float32_is_a_learning_rate_and_the_next_is_not():
    from lossbench.runner import resolve_losses
    from lossbench.settings import check_representable, resolve_config

    largest = torch.finfo(torch.float32).max
    setups = resolve_losses(["bce"], "handwritten", None, tiny_task("binary"), torch.device("cpu"), torch.float32)
    check_representable(resolve_config("titanic", lr=largest), setups, torch.float32)
    with pytest.raises(ValueError, match=re.escape("Expected `lr` to be at most 3.4e+38, the largest float32, but got 3.4e+38.")):
        check_representable(resolve_config("titanic", lr=float(np.nextafter(largest, np.inf))), setups, torch.float32)


@pytest.mark.parametrize("quick", [1, 0, None])
def test_quick_is_true_or_false_not_a_number(quick):
    with pytest.raises(ValueError, match=re.escape(f"Expected `quick` to be True or False, but got {quick!r}.")):
        lossbench.compare("titanic", quick=quick, **TINY)


def test_a_head_learning_rate_past_the_largest_float32_is_refused():
    """lr and head_lr_scale each fit in float32; their product, the head's learning rate, does not."""
    with pytest.raises(ValueError, match=re.escape("Expected `lr x head_lr_scale of 'bce'` to be at most 3.4e+38, the largest "
                                                   "float32, but got 1e+40.")):
        lossbench.compare("titanic", losses=("bce",), lr=1e20, overrides={"bce": {"head_lr_scale": 1e20}}, **TINY)


def test_the_memory_check_counts_the_probe_at_every_area_of_a_grid(monkeypatch):
    """needed = models x parameters x 4 copies x 4 bytes + seeds x epochs x train x 8 bytes
    + models x val x (3 x features x positions + inputs) x 4 bytes, in float32."""
    from lossbench import settings
    from lossbench.runner import resolve_losses

    monkeypatch.setattr(settings, "_memory_of", lambda device: 2**30)
    task, cpu, seeds = tiny_task("grid"), torch.device("cpu"), 10**7
    cfg = settings.resolve_config("mammography", seeds=seeds, epochs=1)
    setups = resolve_losses(["bce"], "handwritten", None, task, cpu, torch.float32)
    with pytest.raises(ValueError) as error:
        settings.check_fits(task, setups, cfg, cpu, torch.float32)
    parameters = int(re.search(r"models of ([\d,]+) parameters", str(error.value)).group(1).replace(",", ""))
    features, positions, inputs = task.body.features, 4, 64
    needed = seeds * (parameters * 4 * 4 + 1 * 48 * 8 + 48 * (3 * features * positions + inputs) * 4)
    assert str(error.value).startswith(
        f"Expected the comparison to fit in memory, but 10,000,000 models of {parameters:,} parameters need at least "
        f"{needed / 1e9:.0f} GB for weights, gradients, optimizer state, batch order and probe, and this CPU has 1 GiB;")


def test_a_split_with_another_number_of_targets_is_refused():
    from lossbench.settings import check_task_data

    task = tiny_task("binary")
    two = Split(task.val.x, task.val.y.repeat(1, 2), task.val.source)
    with pytest.raises(ValueError, match=f"^{re.escape('Expected every split to have inputs (5,) and 1 targets per example, but the val split has (5,) and 2.')}$"):
        check_task_data(dataclasses.replace(task, val=two))


@pytest.mark.parametrize("kind, message", [
    ("binary", "but its 1 example is positive; give more data, or data with both labels."),
    ("multilabel", "but every label of its 1 example is positive; give more data, or data with both labels."),
])
def test_a_split_of_one_example_is_named_in_the_singular(kind, message):
    from lossbench.settings import check_task_data

    task = tiny_task(kind)
    one = Split(task.test.x[:1], torch.ones_like(task.test.y[:1]), task.test.source[:1])
    with pytest.raises(ValueError, match=f"{re.escape(message)}$"):
        check_task_data(dataclasses.replace(task, test=one))


def test_the_finest_threshold_grid_is_0_0001_apart_and_one_more_point_is_refused():
    from lossbench import thresholds
    from lossbench.settings import MAX_THRESHOLD_POINTS, check_run_options

    assert MAX_THRESHOLD_POINTS == 9_801
    finest = thresholds.threshold_grid(MAX_THRESHOLD_POINTS)
    assert finest[1].item() == 0.0101 and finest[-2].item() == 0.9899
    check_run_options(9_801, "accuracy", 1, "batched", True, True, None)
    check_run_options(2, "accuracy", 1, "batched", True, True, None)
    with pytest.raises(ValueError, match=re.escape("Expected `threshold_points` to be at most 9,801 (thresholds 0.0001 apart from "
                                                   "0.01 to 0.99, finer than any split here can tell apart), but got 9,802.")):
        check_run_options(9_802, "accuracy", 1, "batched", True, True, None)


def test_threads_run_from_1_to_8_per_core():
    import os

    from lossbench.settings import MAX_THREADS, check_run_options

    assert MAX_THREADS == 8 * (os.cpu_count() or 1)
    for threads in (1, MAX_THREADS):
        check_run_options(99, "accuracy", 1, "batched", True, True, threads)
    for threads in (0, MAX_THREADS + 1):
        with pytest.raises(ValueError, match=re.escape(f"Expected `threads` to be a whole number from 1 to {MAX_THREADS} (8 per "
                                                       f"core of this machine), but got {threads}.")):
            check_run_options(99, "accuracy", 1, "batched", True, True, threads)


def test_by_default_heads_start_matched_and_99_thresholds_run_from_0_01_to_0_99():
    """The README's defaults: every loss's first predictions equal, and thresholds 0.01, 0.02, ..., 0.99."""
    result = lossbench.compare(tiny_task("binary"), ("bce", "mse"), seeds=1, epochs=1, device="cpu", progress=False)
    assert result.config["head_init"] == "matched" and result.config["threshold_points"] == 99
    grid = result.thresholds.loc[(result.thresholds.split == "val") & (result.thresholds.loss == "bce"), "threshold"]
    np.testing.assert_allclose(grid.to_numpy(), np.arange(1, 100) / 100)


def test_a_binary_task_without_a_target_column_is_refused_as_one_without_its_one_output():
    from lossbench.settings import check_task_data

    task = tiny_task("binary")
    none = {name: Split(s.x, s.y[:, :0], s.source) for name in ("train", "val", "test") for s in [getattr(task, name)]}
    with pytest.raises(ValueError, match=re.escape("Expected a binary task to have one output, but its targets have 0; use kind 'multilabel'.")):
        check_task_data(dataclasses.replace(task, label_names=(), **none))
