"""Details of the batched models that the other tests leave open: head bias init, chunk floor, copies."""
from __future__ import annotations

import math

import pytest
import torch

from lossbench import models


def test_head_bias_is_drawn_like_nn_linears_from_the_features_fan_in():
    # rule: a head's bias is U(-1/sqrt(features), 1/sqrt(features)), as nn.Linear(features, units) draws it (not zeros, not a narrower bound)
    head = models.init_head(300, 4000, True, torch.Generator().manual_seed(0))
    bound = 1 / math.sqrt(300)
    assert torch.nn.Linear(300, 4000).bias.abs().max() > 0.95 * bound  # torch's own bias spans the same range
    assert head["b"].shape == (4000,)
    assert bound * 0.95 < head["b"].abs().max() <= bound
    assert head["b"].std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert "b" not in models.init_head(300, 4, False, torch.Generator().manual_seed(0))


def test_chunk_size_is_at_least_one_example_and_one_example_chunks_give_the_same_numbers(monkeypatch):
    # rule: when one example per model already exceeds the budget, chunks hold one example (never 0)
    assert models.chunk_size(models.MLPBody(in_features=2, hidden=2**21), 3) == 1
    spec = models.MLPBody(in_features=3, hidden=5)
    params = models.stack([models.init_body(spec, torch.Generator().manual_seed(s)) for s in range(2)])
    x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(models, "CHUNK_ACTIVATIONS", 1)
    assert models.chunk_size(spec, 2) == 1
    torch.testing.assert_close(models.chunked_body_forward(spec, params, x), models.body_forward(spec, params, x))


def test_a_one_logit_heads_matched_copy_does_not_share_memory_with_the_original():
    # rule: from_one_logit returns new tensors, so training the matched head leaves the 1-logit head untouched
    one = {"w": torch.ones(2, 5, 1), "b": torch.zeros(2, 1)}
    copy = models.Head("one_logit", "binary", 1).from_one_logit(one)
    torch.testing.assert_close(copy["w"], one["w"])
    copy["w"].add_(1.0)
    copy["b"].add_(1.0)
    assert one["w"].eq(1).all() and one["b"].eq(0).all()
