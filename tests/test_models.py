"""The batched model families against ordinary torch.nn modules, one model at a time."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lossbench import models
from lossbench.loop import Body


@pytest.mark.parametrize(
    "spec, x_shape",
    [
        pytest.param(models.MLPBody(in_features=7, hidden=16), (5, 7), id="mlp"),
        pytest.param(models.MLPBody(in_features=7, hidden=16, bias=False), (5, 7), id="mlp-no-bias"),
        pytest.param(models.CNNBody(in_channels=3, image_size=16, channels=(4, 6)), (5, 3, 16, 16), id="cnn-pooled"),
        pytest.param(models.CNNBody(in_channels=1, image_size=32, channels=(4, 6, 8), grid=4), (5, 1, 32, 32), id="cnn-grid"),
    ],
)
def test_batched_body_equals_each_model_as_plain_modules(spec, x_shape):
    g = torch.Generator().manual_seed(0)
    per_model = [models.init_body(spec, g) for _ in range(3)]
    stacked = models.stack(per_model)
    x = torch.randn(3, *x_shape, generator=g)
    h = models.body_forward(spec, stacked, x)
    assert h.shape == (3, x_shape[0], spec.positions, spec.features)
    for m in range(3):
        torch.testing.assert_close(h[m], Body(spec, per_model[m])(x[m]), atol=1e-5, rtol=1e-5)


def test_grid_positions_are_row_major_areas():
    spec = models.CNNBody(in_channels=1, image_size=8, channels=(2,), grid=2)
    params = {"conv0.w": torch.zeros(1, 2, 1, 3, 3), "conv0.b": torch.zeros(1, 2)}
    params["conv0.w"][0, :, 0, 1, 1] = 1.0  # identity filter
    x = torch.zeros(1, 1, 1, 8, 8)
    x[..., 0:4, 4:8] = 1.0  # the top-right area
    h = models.body_forward(spec, params, x)
    assert h[0, 0, :, 0].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_head_is_one_linear_map_at_every_position():
    params = {"w": torch.randn(2, 4, 3), "b": torch.randn(2, 3)}
    h = torch.randn(2, 5, 6, 4)
    z = models.head_forward(params, h)
    expected = torch.einsum("mbpf,mfu->mbpu", h, params["w"]) + params["b"][:, None, None, :]
    torch.testing.assert_close(z, expected)


def test_initialisation_follows_pytorchs_default_bounds():
    spec = models.MLPBody(in_features=50, hidden=400)
    p = models.init_body(spec, torch.Generator().manual_seed(0))
    bound = 1 / math.sqrt(50)
    assert p["w1"].abs().max() <= bound and p["w1"].abs().max() > 0.95 * bound
    assert p["w1"].std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # a uniform's standard deviation
    assert p["b1"].abs().max() <= bound and p["b1"].abs().max() > 0.9 * bound  # a bias's bound is the layer's fan-in too


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_cnn_and_head_initialisation_follow_pytorchs_default_bounds(bias):
    """nn.Conv2d draws from U(-1/sqrt(c_in * 9), 1/sqrt(c_in * 9)), nn.Linear from U(-1/sqrt(in), 1/sqrt(in))."""
    spec = models.CNNBody(in_channels=20, image_size=8, channels=(64, 48), bias=bias)
    p = models.init_body(spec, torch.Generator().manual_seed(0))
    for i, c_in in enumerate((20, 64)):
        bound = 1 / math.sqrt(c_in * 9)
        for name in [f"conv{i}.w"] + ([f"conv{i}.b"] if bias else []):
            assert p[name].abs().max() <= bound and p[name].abs().max() > 0.8 * bound, name
        assert p[f"conv{i}.w"].std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        reference = nn.Conv2d(c_in, 8, 3)  # torch's own bound, for the same fan-in
        assert reference.weight.abs().max() <= bound and reference.weight.abs().max() > 0.9 * bound
    head = models.init_head(300, 2, bias, torch.Generator().manual_seed(0))
    bound = 1 / math.sqrt(300)
    assert head["w"].abs().max() <= bound and head["w"].abs().max() > 0.95 * bound
    if bias:
        assert head["b"].abs().max() <= bound


def test_a_two_logit_heads_decision_weight_is_w1_minus_w0_and_its_negative_unit_is_unit_0():
    head = models.Head("two_logit", "binary", 1)
    w = torch.randn(3, 5, 1)
    matched = head.from_one_logit({"w": w})  # w0 = -w/2, w1 = w/2
    torch.testing.assert_close(head.decision_weight(matched), w)
    d = torch.tensor([[[-0.1, 0.3], [0.2, -0.7]]])  # (models, batch, units): the units' gradients need not cancel
    assert head.decision_gradient(d).flatten().tolist() == pytest.approx([0.3, -0.7])
    assert head.negative_unit_gradient(d).flatten().tolist() == pytest.approx([-0.1, 0.2])


def test_padded_units_of_a_narrow_head_are_ignored():
    head = models.Head("one_logit", "binary", 1)
    z = torch.randn(2, 3, 1, 2)  # padded to two units
    torch.testing.assert_close(head.output(z), z[..., 0].reshape(2, 3))
    w = torch.randn(2, 5, 2)
    torch.testing.assert_close(head.decision_weight({"w": w}), w[..., :1])


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("units", [1, 2, 5])
def test_head_gradients_match_autograd_through_a_plain_batched_matmul(units, bias):
    g = torch.Generator().manual_seed(units)
    params = {"w": torch.randn(3, 4, units, dtype=torch.float64, generator=g, requires_grad=True)}
    if bias:
        params["b"] = torch.randn(3, units, dtype=torch.float64, generator=g, requires_grad=True)
    h = torch.randn(3, 5, 2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.randn(3, 5, 2, units, dtype=torch.float64, generator=g)
    inputs = [h, *params.values()]
    got = torch.autograd.grad((models.head_forward(params, h) * upstream).sum(), inputs)
    plain = torch.einsum("mbpf,mfu->mbpu", h, params["w"]) + (params["b"][:, None, None, :] if bias else 0)
    expected = torch.autograd.grad((plain * upstream).sum(), inputs)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e)
    names = list(params)
    assert torch.autograd.gradcheck(lambda h_, *p: models.head_forward(dict(zip(names, p)), h_), tuple(inputs))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("units", [1, 2, 3])
def test_written_out_mlp_gradients_equal_autograd(units, bias):
    spec = models.MLPBody(in_features=5, hidden=7, bias=bias)
    g = torch.Generator().manual_seed(units)
    body = {k: v.double().requires_grad_() for k, v in models.stack([models.init_body(spec, g) for _ in range(4)]).items()}
    head = {k: v.double().requires_grad_() for k, v in models.stack([models.init_head(7, units, bias, g) for _ in range(4)]).items()}
    x = torch.randn(4, 6, 5, generator=g, dtype=torch.float64)
    h = models.body_forward(spec, body, x)
    assert 0 < (h == 0).double().mean() < 1  # some hidden units are cut off by the ReLU, some pass
    upstream = torch.randn(4, 6, 1, units, generator=g, dtype=torch.float64)
    params = [*body.values(), *head.values()]
    expected = torch.autograd.grad((models.head_forward(head, h) * upstream).sum(), params)
    d_body, d_head = models.mlp_gradients(
        {k: v.detach() for k, v in body.items()}, {k: v.detach() for k, v in head.items()}, x, h.detach(), upstream
    )
    assert list(d_body) == list(body) and list(d_head) == list(head)
    for got, want in zip([*d_body.values(), *d_head.values()], expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_head_forward_without_autograd_gives_the_same_numbers():
    params = {"w": torch.randn(2, 4, 3, dtype=torch.float64), "b": torch.randn(2, 3, dtype=torch.float64)}
    h = torch.randn(2, 5, 6, 4, dtype=torch.float64)
    plain = models.head_forward(params, h)
    tracked = models.head_forward({k: v.clone().requires_grad_() for k, v in params.items()}, h)
    assert not plain.requires_grad and tracked.requires_grad
    torch.testing.assert_close(plain, tracked.detach(), rtol=0, atol=0)


def test_batched_cnn_gradients_equal_each_model_as_plain_modules():
    # The batched body max-pools before its ReLU (the plain modules: ReLU, then max-pool); values and
    # gradients must not change, including where whole pooling windows are negative.
    spec = models.CNNBody(in_channels=1, image_size=16, channels=(4, 6), grid=2)
    g = torch.Generator().manual_seed(0)
    per_model = [{k: v.double() for k, v in models.init_body(spec, g).items()} for _ in range(3)]
    stacked = {k: v.clone().requires_grad_() for k, v in models.stack(per_model).items()}
    x = torch.randn(3, 4, 1, 16, 16, generator=g, dtype=torch.float64)
    upstream = torch.randn(3, 4, spec.positions, spec.features, generator=g, dtype=torch.float64)
    (models.body_forward(spec, stacked, x) * upstream).sum().backward()
    for m in range(3):
        body = Body(spec, per_model[m])
        (body(x[m]) * upstream[m]).sum().backward()
        for i, conv in enumerate(body.layers):
            torch.testing.assert_close(stacked[f"conv{i}.w"].grad[m], conv.weight.grad, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(stacked[f"conv{i}.b"].grad[m], conv.bias.grad, rtol=1e-10, atol=1e-12)


def test_shared_forward_in_chunks_equals_one_expanded_batch(monkeypatch):
    spec = models.CNNBody(in_channels=1, image_size=8, channels=(2, 3), grid=2)
    params = models.stack([models.init_body(spec, torch.Generator().manual_seed(s)) for s in range(3)])
    x = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    whole = models.body_forward(spec, params, x.unsqueeze(0).expand(3, *x.shape))
    monkeypatch.setattr(models, "CHUNK_ACTIVATIONS", 3 * spec.activations * 4)  # chunks of 4 examples: 4 + 4 + 2
    assert models.chunk_size(spec, 3) == 4
    sizes = []
    forward = models.body_forward
    monkeypatch.setattr(models, "body_forward", lambda spec, params, x: sizes.append(x.shape[1]) or forward(spec, params, x))
    torch.testing.assert_close(models.shared_body_forward(spec, params, x), whole)
    assert sizes == [4, 4, 2]  # it really ran in chunks


@pytest.mark.parametrize("spec", [models.MLPBody(5, 8), models.MLPBody(5, 8, bias=False),
                                  models.CNNBody(in_channels=2, image_size=8, channels=(3, 4)),
                                  models.CNNBody(in_channels=1, image_size=8, channels=(3,), bias=False)], ids=repr)
def test_body_shapes_are_the_shapes_init_body_draws_in_its_order(spec):
    """The memory check counts parameters from body_shapes: it must describe exactly what init_body makes."""
    made = models.init_body(spec, torch.Generator().manual_seed(0))
    assert [(k, tuple(v.shape)) for k, v in made.items()] == [(k, shape) for k, (shape, _) in models.body_shapes(spec).items()]
