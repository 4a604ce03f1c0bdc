"""Adam and SGD for a matrix of parameters, one row per model, with a learning rate for every element.

The runner keeps every weight of every model in one ``(models, parameters)`` matrix. Both optimizers
are elementwise, so one step for all models is a handful of tensor operations, and they follow
``torch.optim.Adam`` and ``torch.optim.SGD`` operation for operation (the tests hold them to torch's
results). Two things come for free with a learning rate per element:

- a loss's head can learn at a scaled rate (``head_lr_scale``): its columns in its models' rows;
- a frozen model is a row whose learning rate is zero this step (``alive`` is False): its weights stay
  exactly where they are, even with momentum or weight decay.
"""
from __future__ import annotations

import copy

import torch


class Adam:
    """Adam (Kingma and Ba, 2015) with L2 weight decay added to the gradient, as ``torch.optim.Adam``.

    One step, for every element:

    1. g = grad + weight_decay * p   (frozen rows: grad taken as 0)
    2. m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
    3. p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    >>> p = torch.zeros(2, 3, requires_grad=True)           # 2 models, 3 parameters each
    >>> opt = Adam(p, lr=torch.full((2, 3), 0.1))
    >>> p.grad = torch.ones(2, 3)
    >>> opt.step(alive=torch.tensor([True, False]))
    >>> p.detach()                                          # the first step moves by lr; model 1 is frozen
    tensor([[-0.1000, -0.1000, -0.1000],
            [ 0.0000,  0.0000,  0.0000]])
    """

    def __init__(
        self, params: torch.Tensor, lr: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0
    ) -> None:
        self.params, self.lr = params, lr  # (models, parameters) each
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.m = torch.zeros_like(params, memory_format=torch.preserve_format).detach()
        self.v = torch.zeros_like(self.m)
        # the step count, a tensor updated in place, so that a recorded step (a CUDA graph or a trace,
        # lossbench.graphs) counts on at every replay
        self.t = torch.zeros((), dtype=torch.float64, device=params.device)

    def state(self) -> list[torch.Tensor]:
        """The tensors a step updates in place, besides the weights: m, v and the step count."""
        return [self.m, self.v, self.t]

    def on(self, params: torch.Tensor, state: list[torch.Tensor]) -> "Adam":
        """The same optimizer (learning rates, settings) stepping ``params`` with the state tensors ``state``.

        A step then updates only tensors passed in, so it can be traced as a function of them
        (:class:`lossbench.runner.TracedStep`).
        """
        other = copy.copy(self)
        other.params, (other.m, other.v, other.t) = params, state
        return other

    @torch.no_grad()
    def step(self, alive: torch.Tensor) -> None:
        """Update every model whose flag in ``alive`` (models,) is True; leave the others untouched."""
        beta1, beta2 = self.betas
        self.t.add_(1)
        live = alive.unsqueeze(1)  # (models, 1)
        g = self.params.grad.masked_fill_(~live, 0)  # a frozen model's gradient may be nan: zeroed in place
        if self.weight_decay:
            g = g.add(self.params, alpha=self.weight_decay)
        self.m.lerp_(g, 1 - beta1)
        self.v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        # m / (sqrt(v) / sqrt(c2) + eps) = sqrt(c2) m / (sqrt(v) + eps sqrt(c2)): the bias corrections c1, c2
        # and the frozen rows' zeros go into one factor per row, so the (models, parameters) matrix is
        # passed over five times here, all in one buffer
        root_c2 = (1 - beta2**self.t) ** 0.5
        denom = self.v.sqrt().add_(self.eps * root_c2)
        step = torch.div(self.m, denom, out=denom).mul_(self.lr)
        row = live.to(step.dtype) * (root_c2 / (1 - beta1**self.t))  # (models, 1): 0 for a frozen model
        self.params.addcmul_(step, row, value=-1)


class SGD:
    """Stochastic gradient descent with momentum and L2 weight decay, as ``torch.optim.SGD``.

    1. g = grad + weight_decay * p   (frozen rows: grad taken as 0)
    2. with momentum: b = momentum * b + g, from b = 0 (so b = g at the first step, as in torch); and g = b
    3. p = p - lr * g

    >>> p = torch.zeros(1, 2, requires_grad=True)
    >>> opt = SGD(p, lr=torch.tensor([[0.5, 0.25]]))
    >>> p.grad = torch.ones(1, 2)
    >>> opt.step(alive=torch.tensor([True]))
    >>> p.detach()
    tensor([[-0.5000, -0.2500]])
    """

    def __init__(self, params: torch.Tensor, lr: torch.Tensor, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.params, self.lr = params, lr
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffer = torch.zeros_like(params, memory_format=torch.preserve_format).detach() if momentum else None

    def state(self) -> list[torch.Tensor]:
        """The tensors a step updates in place, besides the weights: the momentum buffer, if any."""
        return [] if self.buffer is None else [self.buffer]

    def on(self, params: torch.Tensor, state: list[torch.Tensor]) -> "SGD":
        """The same optimizer (learning rates, settings) stepping ``params`` with the state tensors ``state``."""
        other = copy.copy(self)
        other.params, other.buffer = params, (state[0] if state else None)
        return other

    @torch.no_grad()
    def step(self, alive: torch.Tensor) -> None:
        """Update every model whose flag in ``alive`` (models,) is True; leave the others untouched."""
        live = alive.unsqueeze(1)
        g = self.params.grad.masked_fill_(~live, 0)  # a frozen model's gradient may be nan: zeroed in place
        if self.weight_decay:
            g = g.add(self.params, alpha=self.weight_decay)
        if self.buffer is not None:
            g = self.buffer.mul_(self.momentum).add_(g)
        self.params.sub_(torch.where(live, self.lr, 0) * g)
