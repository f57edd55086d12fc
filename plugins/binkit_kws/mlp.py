"""Multi-layer perceptron over flattened features: the smallest binarizable KWS model.

Origin: the binkit team, as a baseline for tests and for the binarizer comparison. Layout:
``flatten -> [Linear -> BatchNorm1d -> PReLU] x depth -> Linear``. With binkit's default policy the
first and last Linear stay full precision and the hidden ones are binarized.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from binkit.entries import ArchitectureEntry, Capabilities
from binkit_kws.base import KWSModel


class MLPParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden: int = Field(256, ge=1, le=65536, description="width of every hidden layer")
    depth: int = Field(3, ge=1, le=64, description="number of hidden layers")
    dropout: float = Field(0.0, ge=0, lt=1)
    norm: Literal["batch", "none"] = Field("batch", description="BatchNorm1d after each hidden Linear, or none")


class Block(nn.Module):
    """``PReLU(BN(Linear(x)))`` (BN optional); ``(batch, in) -> (batch, out)``."""

    def __init__(self, in_features: int, out_features: int, dropout: float, norm: str = "batch") -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features) if norm == "batch" else nn.Identity()
        self.act = nn.PReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.act(self.bn(self.fc(x))))


class MLP(KWSModel):
    """``(batch, *feature_shape) -> (batch, num_classes)``."""

    def __init__(self, params: MLPParams, num_classes: int, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.feature_shape = tuple(feature_shape)
        in_features = math.prod(feature_shape)
        widths = [in_features] + [params.hidden] * params.depth
        self.blocks = nn.ModuleList(Block(a, b, params.dropout, params.norm) for a, b in zip(widths, widths[1:]))
        self.classifier = nn.Linear(params.hidden, num_classes)

    def forward_features(self, x, view=None):
        x = x.flatten(1)  # (batch, prod(feature_shape))
        for i, block in enumerate(self.blocks):
            x = block(x)
            self.taps[f"block{i}"] = x
        return x

    def forward_head(self, x):
        return self.classifier(x)


def _create_mlp(params: MLPParams, num_classes: int, feature_shape: tuple[int, ...]) -> MLP:
    return MLP(params, num_classes, feature_shape)


def _capabilities(params: MLPParams) -> Capabilities:
    return Capabilities(taps=tuple(f"block{i}" for i in range(params.depth)))


ENTRIES = [
    ArchitectureEntry(
        name="mlp", factory=_create_mlp, params=MLPParams, capabilities=_capabilities,
        description="MLP over flattened features (Linear-BN-PReLU blocks)",
        reference="baseline; see Hello Edge (Zhang et al. 2017, arXiv:1711.07128) for KWS DNNs",
    ),
]
