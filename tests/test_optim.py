"""The matrix optimizers against torch.optim, row by row, and frozen rows that never move."""
from __future__ import annotations

import pytest
import torch

from lossbench import optim


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(ours_cls, torch_cls, ours_kwargs, torch_kwargs, lr_rows, steps=6, frozen_from=None, device="cpu", through_on=False):
    g = torch.Generator().manual_seed(0)
    start = torch.randn(3, 5, generator=g, dtype=torch.float64)
    grads = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(steps)]
    flat = start.clone().to(device).requires_grad_()
    lr = torch.tensor(lr_rows, dtype=torch.float64).unsqueeze(1).expand(3, 5).contiguous().to(device)
    ours = ours_cls(flat, lr, **ours_kwargs)
    rows = [start[i].clone().requires_grad_() for i in range(3)]
    theirs = [torch_cls([rows[i]], lr=lr_rows[i], **torch_kwargs) for i in range(3)]
    for t, grad in enumerate(grads):
        alive = torch.tensor([True, frozen_from is None or t < frozen_from, True])
        flat.grad = grad.clone().to(device)
        if frozen_from is not None and t >= frozen_from:
            flat.grad[1] = torch.nan  # a frozen model's gradient may be anything
        if through_on:  # a copy stepping the same tensors, as a traced step does: the state must carry over
            view = flat.detach()
            view.grad = flat.grad
            ours.on(view, ours.state()).step(alive.to(device))
        else:
            ours.step(alive.to(device))
        for i in range(3):
            if alive[i]:
                rows[i].grad = grad[i].clone()
                theirs[i].step()
    return flat.detach().cpu(), torch.stack([r.detach() for r in rows])


@pytest.mark.parametrize(
    "ours_cls, torch_cls, ours_kwargs, torch_kwargs",
    [
        pytest.param(optim.Adam, torch.optim.Adam, {}, {}, id="adam"),
        pytest.param(optim.Adam, torch.optim.Adam, {"weight_decay": 0.1}, {"weight_decay": 0.1}, id="adam-weight-decay"),
        pytest.param(optim.Adam, torch.optim.Adam, {"betas": (0.8, 0.99), "eps": 1e-6}, {"betas": (0.8, 0.99), "eps": 1e-6}, id="adam-betas"),
        pytest.param(optim.SGD, torch.optim.SGD, {}, {}, id="sgd"),
        pytest.param(optim.SGD, torch.optim.SGD, {"weight_decay": 0.1}, {"weight_decay": 0.1}, id="sgd-weight-decay"),
        pytest.param(optim.SGD, torch.optim.SGD, {"momentum": 0.9, "weight_decay": 0.01}, {"momentum": 0.9, "weight_decay": 0.01}, id="sgd-momentum"),
    ],
)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_each_row_follows_torch_optim_exactly(ours_cls, torch_cls, ours_kwargs, torch_kwargs, device):
    ours, theirs = _run(ours_cls, torch_cls, ours_kwargs, torch_kwargs, lr_rows=[0.1, 0.05, 0.01], device=device)
    torch.testing.assert_close(ours, theirs, atol=1e-15, rtol=1e-13)


@pytest.mark.parametrize(
    "ours_cls, torch_cls, kwargs",
    [
        pytest.param(optim.Adam, torch.optim.Adam, {"weight_decay": 0.1}, id="adam"),
        pytest.param(optim.SGD, torch.optim.SGD, {"momentum": 0.9, "weight_decay": 0.1}, id="sgd-momentum"),
        pytest.param(optim.SGD, torch.optim.SGD, {}, id="sgd"),
    ],
)
def test_steps_taken_by_a_copy_on_the_same_tensors_carry_the_state_over(ours_cls, torch_cls, kwargs):
    # a traced step steps `opt.on(weights, opt.state())`: every bit of state must live in those tensors
    # (Adam's step count included), or the second step would start from the first one's state again
    ours, theirs = _run(ours_cls, torch_cls, kwargs, kwargs, lr_rows=[0.1, 0.05, 0.01], frozen_from=3, through_on=True)
    torch.testing.assert_close(ours, theirs, atol=1e-15, rtol=1e-13)


@pytest.mark.parametrize("ours_cls, torch_cls, kwargs", [(optim.Adam, torch.optim.Adam, {"weight_decay": 0.1}), (optim.SGD, torch.optim.SGD, {"momentum": 0.9, "weight_decay": 0.1})])
def test_a_frozen_row_keeps_its_weights_despite_momentum_decay_and_nan_gradients(ours_cls, torch_cls, kwargs):
    ours, theirs = _run(ours_cls, torch_cls, kwargs, kwargs, lr_rows=[0.1, 0.1, 0.1], frozen_from=2)
    torch.testing.assert_close(ours, theirs, atol=1e-15, rtol=1e-13)  # row 1 stopped after two steps, as torch's did
    assert torch.isfinite(ours).all()
