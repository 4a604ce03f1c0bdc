"""The shared model families (an MLP and a small CNN), written for a stack of models at once."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MLPBody:
    """A one-hidden-layer perceptron body: d -> hidden, ReLU. Its output is the head's input h."""

    in_features: int
    hidden: int = 128
    bias: bool = True  # bias in the hidden layer and in the head


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
