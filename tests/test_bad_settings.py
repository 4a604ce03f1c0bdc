"""Settings that cannot train anything are refused before training, with one line that says what is wrong."""
from __future__ import annotations

import sys

import pytest
import torch

import lossbench
from lossbench import cli

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
    ({"softmax_ce": {"head_lr_scale": "abc"}}, "Expected `head_lr_scale` of 'softmax_ce' to be a positive number, but got 'abc'."),
])
def test_a_loss_option_that_cannot_weigh_anything_is_refused(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        lossbench.compare("titanic", overrides=options, **TINY)


@pytest.mark.parametrize("name", ["weight_decay", "momentum"])
def test_nan_is_not_a_non_negative_number(name):
    with pytest.raises(ValueError, match=f"Expected `{name}` to be a non-negative number, but got nan."):
        lossbench.compare("titanic", optimizer="sgd", config={"hidden": 8, name: float("nan")}, seeds=2, epochs=1, device="cpu")


@pytest.mark.parametrize("function", ["detached", "integer"])
def test_a_loss_that_carries_no_gradient_is_refused_before_training(user_losses, function):
    with pytest.raises(ValueError, match="carries no gradient .*its models would never train"):
        lossbench.compare("titanic", losses=("bce",), impl=f"{user_losses}:{function}", **TINY)


@pytest.mark.parametrize("function, error", [("no_arguments", "TypeError"), ("raises", "RuntimeError: shapes do not match")])
def test_a_user_loss_that_raises_is_named_in_the_error(user_losses, function, error):
    with pytest.raises(ValueError, match=f"Expected the loss function {user_losses}:{function} \\(for 'bce'\\) to run on one "
                                         f"model's minibatch, output \\(64,\\) and target \\(64,\\), but it raised {error}"):
        lossbench.compare("titanic", losses=("bce",), impl=f"{user_losses}:{function}", **TINY)


@pytest.mark.parametrize("argv, message", [
    (["--loss-option", "bce.pos_weight=abc"], "Expected `pos_weight` of 'bce' to be a number or a list of numbers, but got 'abc'."),
    (["--loss-option", "bce.pos_weight=-4"], "Expected `pos_weight` of 'bce' to be positive, but got -4.0."),
    (["--set", "weight_decay=nan"], "Expected `weight_decay` to be a non-negative number, but got nan."),
    (["--impl", "bce=lossbench_user_losses:no_arguments"], "but it raised TypeError"),
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
    assert "use fewer seeds or epochs." in err and "training" not in err


def test_the_default_comparisons_fit():
    from lossbench.runner import check_fits, resolve_config, resolve_losses
    from lossbench.tasks import get

    cpu = torch.device("cpu")
    for name in ("titanic", "multilabel", "mammography"):
        cfg = resolve_config(name)
        task = get(name).load(cfg, None)
        setups = resolve_losses(["softmax_ce", "bce", "mse"], "handwritten", None, task, cpu, torch.float32)
        check_fits(task, setups, cfg, cpu, torch.float32)  # no error
