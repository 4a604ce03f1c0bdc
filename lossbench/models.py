"""The shared model families (an MLP and a small CNN), written for a stack of models at once.

Every tensor of parameters carries a leading *models* dimension M: model m's first-layer weight is
``params["w1"][m]``. The forward functions run all M models in one call (batched matmuls and grouped
convolutions), each model on its own minibatch: ``x`` is ``(models, batch, ...)``.

A model is a *body* (the same for every loss) followed by a *head* (chosen by the loss, see
:class:`Head`). The body turns one example into ``P`` positions of ``F`` features, ``h``; the head is one
linear map applied at every position (a 1x1 convolution for a grid of areas).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MLPBody:
    """A one-hidden-layer perceptron body: d -> hidden, ReLU. Its output is the head's input h."""

    in_features: int
    hidden: int = 128
    bias: bool = True  # bias in the hidden layer and in the head

    @property
    def features(self) -> int:
        return self.hidden

    @property
    def positions(self) -> int:
        return 1

    @property
    def activations(self) -> int:
        """Numbers in the largest activation of one example (sizes the chunks of :func:`shared_body_forward`)."""
        return self.hidden


@dataclass(frozen=True)
class CNNBody:
    """A small CNN body: blocks of 3x3 conv (padding 1) -> ReLU -> 2x2 max-pool, one per entry of ``channels``.

    After the blocks, the feature map is average-pooled to ``grid x grid`` positions (``grid=None``:
    one position, a global average). The head is the same linear map at every position (a 1x1 conv),
    so a grid task gets one prediction per area.
    """

    in_channels: int
    image_size: int  # height = width of the input images
    channels: tuple[int, ...] = (16, 32, 64)
    grid: int | None = None
    bias: bool = True

    @property
    def features(self) -> int:
        return self.channels[-1]

    @property
    def positions(self) -> int:
        return 1 if self.grid is None else self.grid * self.grid

    @property
    def activations(self) -> int:
        """Numbers in the largest activation of one example: the input, or a block's feature maps before pooling.

        >>> CNNBody(3, 32, (16, 32, 64)).activations  # the first block's: 16 x 32 x 32
        16384
        >>> CNNBody(3, 32, (4, 64)).activations  # the second's, 64 x 16 x 16, four times the first's
        16384
        """
        sizes = [c * (self.image_size // 2**i) ** 2 for i, c in enumerate(self.channels)]
        return max([self.in_channels * self.image_size**2, *sizes])


BodySpec = MLPBody | CNNBody


# ---------------------------------------------------------------------------------------------
# Initialisation: PyTorch's default for nn.Linear / nn.Conv2d, drawn from a given generator
# ---------------------------------------------------------------------------------------------


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what nn.Linear and nn.Conv2d draw by default."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def init_body(spec: BodySpec, generator: torch.Generator) -> Params:
    """One model's body parameters (no models dimension), float32, on the CPU.

    >>> p = init_body(MLPBody(in_features=3, hidden=4), torch.Generator().manual_seed(0))
    >>> {k: tuple(v.shape) for k, v in p.items()}
    {'w1': (3, 4), 'b1': (4,)}
    """
    return {name: _uniform(shape, fan_in, generator) for name, (shape, fan_in) in body_shapes(spec).items()}


def body_shapes(spec: BodySpec) -> dict[str, tuple[tuple[int, ...], int]]:
    """Each body parameter's shape and fan-in, in the order :func:`init_body` draws them; nothing is allocated.

    >>> body_shapes(CNNBody(in_channels=1, image_size=8, channels=(3, 4)))["conv1.w"]
    ((4, 3, 3, 3), 27)
    """
    if isinstance(spec, MLPBody):
        shapes = {"w1": ((spec.in_features, spec.hidden), spec.in_features)}
        if spec.bias:
            shapes["b1"] = ((spec.hidden,), spec.in_features)
        return shapes
    shapes, c_in = {}, spec.in_channels
    for i, c_out in enumerate(spec.channels):
        fan_in = c_in * 9
        shapes[f"conv{i}.w"] = ((c_out, c_in, 3, 3), fan_in)
        if spec.bias:
            shapes[f"conv{i}.b"] = ((c_out,), fan_in)
        c_in = c_out
    return shapes


def init_head(features: int, units: int, bias: bool, generator: torch.Generator) -> Params:
    """One model's head: a linear map features -> units, as nn.Linear initialises it."""
    params = {"w": _uniform((features, units), features, generator)}
    if bias:
        params["b"] = _uniform((units,), features, generator)
    return params


def stack(models: list[Params]) -> Params:
    """Stack the parameters of several models along a new leading models dimension.

    >>> one = {"w": torch.zeros(3, 2), "b": torch.zeros(2)}
    >>> {k: tuple(v.shape) for k, v in stack([one, one, one, one]).items()}  # 4 models
    {'w': (4, 3, 2), 'b': (4, 2)}
    """
    return {k: torch.stack([p[k] for p in models]) for k in models[0]}


# ---------------------------------------------------------------------------------------------
# Forward passes for M models at once
# ---------------------------------------------------------------------------------------------


def body_forward(spec: BodySpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Run M bodies, each on its own minibatch: x (models, batch, ...) -> h (models, batch, positions, features).

    >>> spec = MLPBody(in_features=3, hidden=4)
    >>> g = torch.Generator().manual_seed(0)
    >>> params = stack([init_body(spec, g), init_body(spec, g)])
    >>> body_forward(spec, params, torch.randn(2, 5, 3)).shape
    torch.Size([2, 5, 1, 4])
    """
    if isinstance(spec, MLPBody):
        if "b1" in params:
            h = torch.baddbmm(params["b1"].unsqueeze(1), x, params["w1"])  # (models, batch, hidden): b + x @ w
        else:
            h = torch.bmm(x, params["w1"])
        return h.relu_().unsqueeze(2)  # (models, batch, 1, hidden); in place: the matmul keeps no use for its result
    return _cnn_forward(spec, params, x)


CHUNK_ACTIVATIONS = 2**22
"""At most this many numbers (16 MB in float32) in the largest activation of one chunk of examples, on a CPU."""

GPU_CHUNK_ACTIVATIONS = 2**28
"""The same on a GPU (1 GB in float32): there chunks only bound the memory, as a GPU has no cache to fit
them in and each chunk costs another launch of every operation."""


def chunk_size(spec: BodySpec, models: int, device_type: str = "cpu") -> int:
    """How many examples of each model :func:`chunked_body_forward` runs at once for ``models`` models.

    >>> chunk_size(MLPBody(in_features=15), 30)   # the Titanic MLP: no chunking below 1,092 examples
    1092
    >>> chunk_size(CNNBody(in_channels=1, image_size=32, channels=(8, 16, 32)), 15)
    34
    >>> chunk_size(CNNBody(in_channels=1, image_size=32, channels=(8, 16, 32)), 15, "cuda")
    2184
    """
    budget = CHUNK_ACTIVATIONS if device_type == "cpu" else GPU_CHUNK_ACTIVATIONS
    return max(1, budget // (models * spec.activations))


def shared_body_forward(spec: BodySpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """Every one of the M bodies on the same examples: x (N, ...) -> h (models, N, positions, features).

    >>> spec = MLPBody(in_features=3, hidden=4)
    >>> params = stack([init_body(spec, torch.Generator().manual_seed(s)) for s in range(2)])
    >>> shared_body_forward(spec, params, torch.randn(5, 3)).shape
    torch.Size([2, 5, 1, 4])
    """
    m = next(iter(params.values())).shape[0]
    return chunked_body_forward(spec, params, x.unsqueeze(0).expand(m, *x.shape))


def chunked_body_forward(spec: BodySpec, params: Params, x: torch.Tensor) -> torch.Tensor:
    """:func:`body_forward` over chunks of the batch, sized by :func:`chunk_size`, joined along the batch.

    A grouped convolution over a large batch of many models builds activations far larger than the
    CPU's caches and runs much more slowly than the same work in cache-sized chunks (a whole validation
    split: about twice as slowly). Each example's result does not depend on its chunk, and the backward
    pass runs chunk by chunk too (its weight gradients are the sums over chunks), so any loss on the
    joined output sees exactly what it would see unchunked.
    """
    step = chunk_size(spec, x.shape[0], x.device.type)
    if x.shape[1] <= step:
        return body_forward(spec, params, x)
    return torch.cat([body_forward(spec, params, x[:, i : i + step]) for i in range(0, x.shape[1], step)], dim=1)


def _cnn_forward(spec: CNNBody, params: Params, x: torch.Tensor) -> torch.Tensor:
    """M CNNs as one grouped convolution: model m owns channel group m."""
    m, b = x.shape[:2]
    # 1. put the models side by side in the channel dimension: (batch, models * channels, H, W);
    #    channels-last memory makes a training step 1.3x (multilabel) to 1.6x (mammography) faster on a
    #    CPU, and the usual layout is the faster one on a GPU (benchmarks/RESULTS.md)
    layout = torch.channels_last if x.device.type == "cpu" else torch.contiguous_format
    h = x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:]).contiguous(memory_format=layout)
    for i in range(len(spec.channels)):
        w = params[f"conv{i}.w"]  # (models, c_out, c_in, 3, 3)
        w = w.reshape(-1, *w.shape[2:]).contiguous(memory_format=layout)  # (models * c_out, c_in, 3, 3)
        bias = params.get(f"conv{i}.b")
        h = F.conv2d(h, w, None if bias is None else bias.reshape(-1), padding=1, groups=m)
        # max-pool then ReLU: the same values and gradients as ReLU then max-pool (ReLU keeps order),
        # with the ReLU on a quarter of the elements
        h = F.max_pool2d(h, 2).relu_()  # (batch, models * c_out, H/2, W/2)
    # 2. pool to the positions of the head: one (global average) or grid x grid areas
    g = spec.grid or 1
    h = F.adaptive_avg_pool2d(h, g)  # (batch, models * features, g, g)
    # 3. back to (models, batch, positions, features), positions row-major
    return h.reshape(b, m, spec.features, g * g).permute(1, 0, 3, 2)


def head_forward(params: Params, h: torch.Tensor) -> torch.Tensor:
    """The same linear map at every position: h (models, batch, positions, features) -> z (models, batch, positions, units)."""
    m, b, p, f = h.shape
    args = (h.reshape(m, b * p, f), params["w"], params.get("b"))
    if torch.is_grad_enabled() and any(a is not None and a.requires_grad for a in args):
        z = _HeadMatmul.apply(*args)
    else:  # nothing to differentiate: the same product without autograd's bookkeeping
        z = _head_matmul(args[0], args[1].transpose(1, 2).contiguous(), args[2])
    return z.reshape(m, b, p, -1)


def _head_matmul(h: torch.Tensor, wt: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``b + h @ w`` for every model as ``(b + w^T h^T)^T``, from ``wt`` = w^T (models, units, features)."""
    if b is None:
        return torch.bmm(wt, h.transpose(1, 2)).transpose(1, 2)
    return torch.baddbmm(b.unsqueeze(2), wt, h.transpose(1, 2)).transpose(1, 2)  # (models, examples, units)


class _HeadMatmul(torch.autograd.Function):
    """``b + h @ w`` for every model, computed as ``(b + w^T h^T)^T``, with the weight's gradient as ``(dz^T h)^T``.

    A head has few units (1 or 2 for a yes/no task), and a batched matmul whose result has so few columns
    is several times slower on a CPU than the same product laid out the other way round (units x
    examples). So the forward multiplies a contiguous copy of w transposed by h transposed and returns
    the transposed view of that result, and the backward forms the weight's gradient as ``dz^T @ h``
    (units x features). The values are those of ``torch.baddbmm(b, h, w)``; a test checks the gradients
    with ``gradcheck``.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        wt = w.transpose(1, 2).contiguous()  # (models, units, features)
        ctx.save_for_backward(h, wt)
        ctx.bias = b is not None
        return _head_matmul(h, wt, b)

    @staticmethod
    def backward(ctx, dz: torch.Tensor):
        h, wt = ctx.saved_tensors
        dh = torch.bmm(dz, wt) if ctx.needs_input_grad[0] else None
        dw = torch.bmm(dz.transpose(1, 2), h).transpose(1, 2) if ctx.needs_input_grad[1] else None
        db = dz.sum(1) if ctx.bias and ctx.needs_input_grad[2] else None
        return dh, dw, db


def mlp_gradients(body: Params, head: Params, x: torch.Tensor, h: torch.Tensor, d_z: torch.Tensor) -> tuple[Params, Params]:
    """The weight gradients of M MLP bodies and their heads from dL/dz, written out: what autograd computes.

    With ``h = relu(a)``, ``a = b1 + x w1``, and ``z = b + h w`` for each model:

    - head: dL/dw = h^T dL/dz, dL/db = dL/dz summed over the batch;
    - into the body: dL/dh = dL/dz w^T, and through the ReLU dL/da = dL/dh where h > 0, else 0 (autograd's
      rule too: its ReLU backward is the same operation, ``threshold_backward``);
    - body: dL/dw1 = x^T dL/da, dL/db1 = dL/da summed over the batch.

    ``x`` is ``(models, batch, in_features)``, ``h`` the body's output ``(models, batch, 1, hidden)``
    (after the ReLU) and ``d_z`` ``(models, batch, 1, units)``. Returns the gradients named and shaped as
    ``body`` and ``head``. For so small a network autograd's graph costs more in bookkeeping than the
    three batched matmuls cost in arithmetic.

    >>> g = torch.Generator().manual_seed(0)
    >>> spec = MLPBody(in_features=3, hidden=4)
    >>> body, head = stack([init_body(spec, g)]), stack([init_head(4, 1, True, g)])
    >>> x = torch.randn(1, 5, 3, generator=g)
    >>> d_body, d_head = mlp_gradients(body, head, x, body_forward(spec, body, x), torch.ones(1, 5, 1, 1))
    >>> d_head["b"]   # dL/dz is 1 for each of the 5 examples
    tensor([[5.]])
    """
    m, b, _, units = d_z.shape
    d_z = d_z.reshape(m, b, units)
    h = h.reshape(m, b, -1)  # (models, batch, hidden)
    d_head = {"w": torch.bmm(d_z.transpose(1, 2), h).transpose(1, 2)}  # (models, hidden, units), formed as in _HeadMatmul
    if "b" in head:
        d_head["b"] = d_z.sum(dim=1)
    d_a = torch.ops.aten.threshold_backward(torch.bmm(d_z, head["w"].transpose(1, 2)), h, 0)
    d_body = {"w1": torch.bmm(x.transpose(1, 2), d_a)}  # (models, in_features, hidden)
    if "b1" in body:
        d_body["b1"] = d_a.sum(dim=1)
    return d_body, d_head


# ---------------------------------------------------------------------------------------------
# Heads: the loss decides the head
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """How a loss family's head turns the body's features into outputs, scores and targets.

    ``style`` comes from the loss family: ``"two_logit"`` (softmax cross-entropy) or ``"one_logit"``
    (binary cross-entropy, MSE, focal). ``kind`` and ``k`` come from the task: K scored outputs.

    | kind       | two_logit                                  | one_logit              |
    |------------|--------------------------------------------|------------------------|
    | binary     | 2 logits, class-index target, score p[1]   | 1 logit, score sigmoid |
    | multilabel | K logits, softmax across labels, target    | K logits, K sigmoids   |
    |            | multi-hot / count, score p[k]              |                        |
    | grid       | 2 logits per area ("negative unit" head)   | 1 logit per area       |

    >>> Head("two_logit", "binary", 1).units, Head("one_logit", "grid", 16).units, Head("two_logit", "multilabel", 10).units
    (2, 1, 10)
    """

    style: Literal["two_logit", "one_logit"]
    kind: Literal["binary", "multilabel", "grid"]
    k: int  # scored outputs per example: 1, K labels, or A areas

    @property
    def units(self) -> int:
        """Units of the linear head per position."""
        if self.kind == "multilabel":
            return self.k
        return 2 if self.style == "two_logit" else 1

    @property
    def terms_per_example(self) -> int:
        """How many terms one example adds to the loss's mean, as torch's losses reduce it.

        One per scored output for a 1-logit head (binary cross-entropy and MSE average over every element)
        and for a 2-logit head on a grid (cross-entropy averages over examples and areas); one for softmax
        across labels, whose loss is one cross-entropy per example.

        >>> Head("one_logit", "multilabel", 10).terms_per_example, Head("two_logit", "multilabel", 10).terms_per_example
        (10, 1)
        """
        return 1 if self.kind == "multilabel" and self.style == "two_logit" else self.k

    @property
    def negative_unit(self) -> bool:
        """Whether the head has a unit for the negative class (a 2-logit head per decision)."""
        return self.style == "two_logit" and self.kind != "multilabel"

    def output(self, z: torch.Tensor) -> torch.Tensor:
        """What the loss receives, in torch.nn.functional's layout, from z (models, batch, positions, units).

        Units beyond this head's own (a head padded to the width of a wider one) are ignored.
        """
        m, b = z.shape[:2]
        z = z[..., : self.units]
        if self.kind == "multilabel":
            return z.reshape(m, b, self.k)  # (models, batch, K)
        if self.kind == "binary":
            return z.reshape(m, b, 2) if self.negative_unit else z.reshape(m, b)
        # grid: areas are positions
        if self.negative_unit:
            return z.permute(0, 1, 3, 2)  # (models, batch, 2, areas): class dimension 1 per model
        return z.reshape(m, b, self.k)  # (models, batch, areas)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """Predicted probability of each scored output being positive: (models, batch, K)."""
        m, b = output.shape[:2]
        if self.style == "one_logit":
            return torch.sigmoid(output).reshape(m, b, self.k)
        if self.kind == "multilabel":
            return torch.softmax(output, dim=-1)
        return torch.softmax(output, dim=2)[:, :, 1].reshape(m, b, self.k)

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """The target in the form the loss expects, from multi-hot y (N, K)."""
        if self.style == "one_logit":
            return y.reshape(-1) if self.kind == "binary" else y
        if self.kind == "multilabel":
            return y / y.sum(dim=1, keepdim=True)  # a distribution over labels
        idx = y.round().long()
        return idx.reshape(-1) if self.kind == "binary" else idx  # class 1 = positive

    def decision_gradient(self, d_output: torch.Tensor) -> torch.Tensor:
        """The gradient on the logit of each scored output, (models, batch, K).

        For a 2-logit head this is the positive unit's gradient, which equals the gradient with respect to
        the difference z1 - z0 (the negative unit carries the same number with the opposite sign).
        """
        m, b = d_output.shape[:2]
        if self.negative_unit:
            return d_output[:, :, 1].reshape(m, b, self.k)
        return d_output.reshape(m, b, self.k)

    def negative_unit_gradient(self, d_output: torch.Tensor) -> torch.Tensor:
        """The gradient on the negative units, (models, batch, K); only for a 2-logit head."""
        assert self.negative_unit
        m, b = d_output.shape[:2]
        return d_output[:, :, 0].reshape(m, b, self.k)

    def from_one_logit(self, one: Params) -> Params:
        """A head whose first predictions equal those of the 1-logit head ``one`` (function matching).

        For a 2-logit head: w1 = w / 2 and w0 = -w / 2, so z1 - z0 = w.h and softmax p[1] = sigmoid(w.h).
        Otherwise the same weights.
        """
        if not self.negative_unit:
            return {k: v.clone() for k, v in one.items()}
        return {k: torch.cat([-v / 2, v / 2], dim=-1) for k, v in one.items()}

    def decision_weight(self, params: Params) -> torch.Tensor:
        """The weights that decide the score, (models, features, K): w for a 1-logit head, w1 - w0 for a 2-logit head.

        K is the number of scores at one position: the labels of a multi-label task, 1 for a binary or a grid task.
        """
        w = params["w"][..., : self.units]
        if self.negative_unit:
            return w[..., 1:2] - w[..., 0:1]
        return w
