"""The loss library: softmax cross-entropy, binary cross-entropy, MSE and focal loss, three implementations each.

Every loss follows one contract, ``fn(output, target, **options) -> scalar tensor`` (mean by default),
in ``torch.nn.functional`` argument order, with ``output`` the head's raw logits:

>>> import torch
>>> from lossbench import losses
>>> loss = losses.get("bce")                      # the handwritten binary cross-entropy
>>> loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))
tensor(1.4100)
>>> losses.get("bce:naive")(torch.tensor([-1e4]), torch.tensor([1.0]))   # why we use log-sigmoid
tensor(inf)
"""
from __future__ import annotations

from lossbench.losses.checks import value_checks, value_checks_enabled
from lossbench.losses.registry import (
    LossFamily,
    LossNameError,
    accepted_options,
    describe,
    families,
    family,
    get,
    load_user_function,
    names,
)

__all__ = [
    "LossFamily",
    "LossNameError",
    "accepted_options",
    "describe",
    "families",
    "family",
    "get",
    "load_user_function",
    "names",
    "value_checks",
    "value_checks_enabled",
]
