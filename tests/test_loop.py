"""The plain reference loop: an epoch's train loss over the steps taken, and one full-batch SGD step checked by hand."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lossbench
from tests.conftest import tiny_task

NAN_ON_SHORT_BATCH = '''
import torch

def one_then_nan(output, target):
    # exactly 1.0 (with a gradient of 1 on each output) on a full minibatch of 20; nan on the short last one (48 = 20 + 20 + 8)
    value = (output - output.detach()).sum() + 1.0
    return value if output.shape[0] == 20 else value * float("nan")
'''


def test_loop_train_loss_of_the_divergence_epoch_averages_only_the_steps_taken(tmp_path, monkeypatch):
    # rule: an epoch's train loss is the mean over the steps that ran, not over every minibatch of the epoch
    (tmp_path / "nan_losses.py").write_text(NAN_ON_SHORT_BATCH)
    monkeypatch.chdir(tmp_path)
    kwargs = dict(seeds=1, epochs=2, batch_size=20, device="cpu", dtype="float64", optimizer="sgd", lr=0.1)
    loop = lossbench.compare(tiny_task("binary"), ("bce",), impl={"bce": "nan_losses:one_then_nan"}, engine="loop", **kwargs)
    h = loop.history.set_index("epoch")
    assert loop.runs.diverged.all()
    assert h.loc[1, "train_loss"] == 1.0  # two steps of 1.0, then the nan step that froze the model: (1 + 1) / 2


@pytest.mark.parametrize(
    "head_lr_scale, weight_decay",
    [pytest.param(1.0, 0.0, id="plain"), pytest.param(0.5, 0.0, id="head-lr-half"), pytest.param(1.0, 0.1, id="weight-decay")],
)
def test_loop_full_batch_sgd_step_is_the_hand_computed_gradient_step(head_lr_scale, weight_decay):
    # rule: the reference loop is right on its own, not only equal to the batched runner: one SGD step on the whole
    # split moves each weight by -lr * (dL/dw + weight_decay * w), the head's lr scaled by head_lr_scale, where L is
    # the mean BCE of relu(x w1 + b1) w + b, differentiated here by torch.nn.functional on the initial weights
    from lossbench import loop, runner
    from lossbench.tasks import TrainingDefaults

    task, cpu, lr = tiny_task("binary"), torch.device("cpu"), 0.5
    setups = runner.resolve_losses(["bce"], "handwritten", {"bce": {"head_lr_scale": head_lr_scale}}, task, cpu, torch.float64)
    cfg = TrainingDefaults(seeds=1, epochs=1, batch_size=len(task.train.x), lr=lr, optimizer="sgd", weight_decay=weight_decay)
    body, head = runner.init_models(task, setups, [0], "matched", cpu, torch.float64).parts()
    start = {k: v[0].detach().clone() for k, v in {**body, **head}.items()}  # w1, b1; w, b
    assert sorted(start) == ["b", "b1", "w", "w1"]
    weights = {k: v.clone().requires_grad_() for k, v in start.items()}
    x, y = task.train.x.double(), task.train.y.double()
    z = torch.relu(x @ weights["w1"] + weights["b1"]) @ weights["w"] + weights["b"]
    F.binary_cross_entropy_with_logits(z, y).backward()

    trained = loop.train_one_at_a_time(task, setups, cfg, [0], dtype=torch.float64)
    body, head = trained["models"].parts()
    end = {k: v[0] for k, v in {**body, **head}.items()}
    for name in start:
        scale = head_lr_scale if name in ("w", "b") else 1.0
        expected = start[name] - lr * scale * (weights[name].grad + weight_decay * start[name])
        assert not torch.allclose(end[name], start[name])  # the step moved it
        torch.testing.assert_close(end[name], expected, atol=1e-12, rtol=1e-10)
    # the epoch's training loss is the loss of its one step, taken before the step (epochs 0 and 1, model 0)
    assert trained["history"]["train_loss"][1, 0] == pytest.approx(F.binary_cross_entropy_with_logits(z, y).item(), rel=1e-12)
