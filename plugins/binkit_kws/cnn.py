"""A small residual 2-D CNN over (mel, time) features.

Origin: the binkit team, as a compact convolutional baseline with the structure binary networks
need (Bi-Real-style real-valued shortcuts around every binary 3x3 conv, BN after each conv).
Layout::

    stem: Conv2d(1 -> C, 3x3, stride 2) -> BN -> PReLU            (full precision by default)
    blocks x N: y = PReLU(BN(Conv2d(C -> C, 3x3)(x))) + x          (binarized by default)
    head: global average pool -> Linear(C -> classes)              (full precision by default)

Reference for the shortcut design: Liu et al., "Bi-Real Net", ECCV 2018, arXiv:1808.00278.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from binkit.entries import ArchitectureEntry, Capabilities
from binkit_kws.base import KWSModel


class SmallCNNParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channels: int = Field(64, ge=1, le=4096)
    blocks: int = Field(4, ge=1, le=64)
    dropout: float = Field(0.0, ge=0, lt=1)


class ResBlock(nn.Module):
    """``PReLU(BN(conv3x3(x))) + x``; ``(batch, C, H, W) -> (batch, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x))) + x


class SmallCNN(KWSModel):
    """``(batch, 1, n_mels, frames) -> (batch, num_classes)``."""

    def __init__(self, params: SmallCNNParams, num_classes: int, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(feature_shape) != 3:
            raise ValueError(f"small_cnn needs (channels, n_mels, frames) features, got {feature_shape}")
        self.feature_shape = tuple(feature_shape)
        c = params.channels
        self.stem = nn.Sequential(
            nn.Conv2d(feature_shape[0], c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.PReLU()
        )
        self.blocks = nn.ModuleList(ResBlock(c) for _ in range(params.blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(params.dropout)
        self.classifier = nn.Linear(c, num_classes)

    def forward_features(self, x, view=None):
        x = self.stem(x)  # (batch, C, ceil(n_mels/2), ceil(frames/2))
        for i, block in enumerate(self.blocks):
            x = block(x)
            self.taps[f"block{i}"] = x
        return x

    def forward_head(self, x):
        return self.classifier(self.drop(self.pool(x).flatten(1)))  # (batch, C) -> (batch, classes)


def _create_small_cnn(params: SmallCNNParams, num_classes: int, feature_shape: tuple[int, ...]) -> SmallCNN:
    return SmallCNN(params, num_classes, feature_shape)


def _capabilities(params: SmallCNNParams) -> Capabilities:
    return Capabilities(taps=tuple(f"block{i}" for i in range(params.blocks)))


ENTRIES = [
    ArchitectureEntry(
        name="small_cnn", factory=_create_small_cnn, params=SmallCNNParams, capabilities=_capabilities,
        description="residual 3x3 CNN with real-valued shortcuts (Bi-Real style)",
        reference="Liu et al., Bi-Real Net, ECCV 2018, arXiv:1808.00278",
    ),
]
