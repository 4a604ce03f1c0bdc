"""The plain one-model-at-a-time trainer: the reference the batched runner is tested and timed against.

It trains the same models as :func:`lossbench.runner.train` (same initial weights, same minibatches,
same optimizer settings), but as ordinary ``torch.nn`` modules, one model after another, with one
optimizer each. Nothing in its training is vectorised over models; that is the point. Its records are
taken with the batched runner's own probe (all models packed, once an epoch), so that both engines record
the same numbers the same way; that makes the loop's recording cheaper than a per-model probe would be, and
the benchmark's ratio to it conservative.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lossbench import losses as loss_registry
from lossbench.models import CNNBody, MLPBody, stack
from lossbench.runner import LossSetup, Models, ProgressReport, Recorder, prepare
from lossbench.settings import HeadInit
from lossbench.tasks import TaskData, TrainingDefaults


class Body(nn.Module):
    """One body as ordinary modules: nn.Linear + ReLU, or conv blocks + adaptive average pooling."""

    def __init__(self, spec: MLPBody | CNNBody, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.spec = spec
        if isinstance(spec, MLPBody):
            self.layers = nn.ModuleList([nn.Linear(spec.in_features, spec.hidden, bias=spec.bias)])
            self.layers[0].weight.data = params["w1"].T.clone()
            if spec.bias:
                self.layers[0].bias.data = params["b1"].clone()
            return
        convs, c_in = [], spec.in_channels
        for i, c_out in enumerate(spec.channels):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=spec.bias)
            conv.weight.data = params[f"conv{i}.w"].clone()
            if spec.bias:
                conv.bias.data = params[f"conv{i}.b"].clone()
            convs.append(conv)
            c_in = c_out
        self.layers = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, ...) -> h (batch, positions, features)."""
        if isinstance(self.spec, MLPBody):
            return torch.relu(self.layers[0](x)).unsqueeze(1)
        for conv in self.layers:
            x = nn.functional.max_pool2d(torch.relu(conv(x)), 2)
        g = self.spec.grid or 1
        x = nn.functional.adaptive_avg_pool2d(x, g)  # (batch, features, g, g)
        return x.flatten(2).transpose(1, 2)

    def params(self) -> dict[str, torch.Tensor]:
        """The weights in the batched layout of lossbench.models."""
        if isinstance(self.spec, MLPBody):
            out = {"w1": self.layers[0].weight.detach().T}
            if self.spec.bias:
                out["b1"] = self.layers[0].bias.detach()
            return out
        out = {}
        for i, conv in enumerate(self.layers):
            out[f"conv{i}.w"] = conv.weight.detach()
            if self.spec.bias:
                out[f"conv{i}.b"] = conv.bias.detach()
        return out


def _head_module(params: dict[str, torch.Tensor]) -> nn.Linear:
    w = params["w"]  # (features, units)
    head = nn.Linear(w.shape[0], w.shape[1], bias="b" in params)
    head.weight.data = w.T.clone()
    if "b" in params:
        head.bias.data = params["b"].clone()
    return head


def train_one_at_a_time(
    task: TaskData,
    setups: list[LossSetup],
    cfg: TrainingDefaults,
    seeds: list[int],
    head_init: HeadInit = "matched",
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    progress: Callable[[ProgressReport], None] | None = None,
) -> dict:
    """Train each model on its own, in a plain loop; same inputs and outputs as :func:`lossbench.runner.train`.

    A model whose loss stops being finite is frozen (no more updates) and its epoch recorded, as in the
    batched runner. The records are taken with the same probe as the batched runner, after every epoch.
    """
    prepared = prepare(task, setups, cfg, seeds, head_init, device, dtype)
    n_seeds, x_train = len(seeds), prepared.xs["train"]
    m, n = len(setups) * n_seeds, x_train.shape[0]
    bodies, heads, optimizers = [], [], []
    for i in range(m):
        loss, seed = divmod(i, n_seeds)
        body = Body(task.body, {k: v[i].detach() for k, v in prepared.models.body.items()})
        head = _head_module({k: v[seed].detach() for k, v in prepared.models.heads[loss].items()})
        groups = [{"params": body.parameters(), "lr": cfg.lr}, {"params": head.parameters(), "lr": cfg.lr * setups[loss].head_lr_scale}]
        if cfg.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        bodies.append(body)
        heads.append(head)
        optimizers.append(opt)

    def snapshot() -> Models:
        """The current weights of all models, packed as the batched runner packs them, for the shared probe."""
        return Models.from_parts(stack([b.params() for b in bodies]), stack([_head_params(h) for h in heads]), len(setups))

    recorder = Recorder(task, setups, prepared, cfg.epochs, progress)
    diverged_epoch = torch.zeros(m, dtype=torch.long)  # on the host, as the loop's step counts; the recorder takes both on the device
    with loss_registry.value_checks(False):
        recorder(0, snapshot(), torch.full((m,), torch.nan, dtype=dtype, device=device), diverged_epoch.to(device))
        for epoch in range(1, cfg.epochs + 1):
            train_loss = torch.full((m,), torch.nan, dtype=dtype)
            for i in range(m):
                loss, seed = divmod(i, n_seeds)
                setup, target = setups[loss], prepared.targets["train"][loss]
                total, steps = 0.0, 0
                for start in range(0, n, cfg.batch_size):
                    if diverged_epoch[i] > 0:
                        break
                    idx = prepared.order[epoch - 1, seed, start : start + cfg.batch_size]
                    z = heads[i](bodies[i](x_train[idx]))  # (batch, positions, units)
                    value = setup.fn(setup.head.output(z.unsqueeze(0))[0], target[idx])
                    if not torch.isfinite(value):
                        diverged_epoch[i] = epoch
                        break
                    optimizers[i].zero_grad()
                    value.backward()
                    optimizers[i].step()
                    total, steps = total + value.item(), steps + 1
                if steps:
                    train_loss[i] = total / steps
            recorder(epoch, snapshot(), train_loss.to(device), diverged_epoch.to(device))
    return {"history": recorder.records(), "diverged_epoch": diverged_epoch.numpy(), "models": snapshot(), "batching": prepared.batching}


def _head_params(head: nn.Linear) -> dict[str, torch.Tensor]:
    out = {"w": head.weight.detach().T}
    if head.bias is not None:
        out["b"] = head.bias.detach()
    return out
