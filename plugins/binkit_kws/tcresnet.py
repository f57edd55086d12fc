"""TC-ResNet: temporal-convolution ResNet for keyword spotting.

Origin: Choi, Park, Kim, Lee, Ha, Jeong, Shin, Lee, "Temporal Convolution for Real-time Keyword
Spotting on Mobile Devices", Interspeech 2019, https://arxiv.org/abs/1904.03814 (section 2,
Fig. 2; TC-ResNet8 and TC-ResNet14 of Table 1, width multiplier ``k``). Written for binkit from
the paper's description.

The features are a 1-D signal over time whose channels are the frequency bins: an input
``(batch, c, n_mels, frames)`` is reshaped to ``(batch, c * n_mels, frames)`` and every conv is
a ``Conv1d`` (the paper's 3x1 / 9x1 kernels over a (time, 1, n_mels) tensor). Graph, widths
rounded from ``16k, 24k, 32k, 48k``::

    stem    Conv1d(c * n_mels -> 16k, 3, pad 1) -> BN1d -> act
    blocks  per stage width w in (24k, 32k, 48k):
              depth 8:  one block with stride 2
              depth 14: one block with stride 2, then one with stride 1
            block: y = BN(Conv1d(w, 9, pad 4)(act(BN(Conv1d(w, 9, stride s, pad 4)(x)))))
                   shortcut = act(BN(Conv1d(w, 1, stride s)(x)))  if s = 2 or widths differ, else x
                   out = act(y + shortcut)
    head    global average pool over time -> Dropout -> Linear(48k -> num_classes)

``act`` is the ``activation`` param: ReLU as in the paper (default), or PReLU for binarized
models (binkit's sign(0) = +1 maps every ReLU output to +1, a constant binary input). Taps
``"block{i}"`` are the block outputs, shape ``(batch, width_i, frames_i)`` with
``frames_i = ceil(frames / 2^stage)``; a single (full) view.

Parameters for 12 classes and 40 MFCCs (k = 1): TC-ResNet8 ~66k, TC-ResNet14 ~137k, as in the
paper's Table 1 (the stem's input, ``n_mels``, is the only part that depends on the features).

Binarization with binkit's default policy: the stem conv and the classifier stay full precision;
every conv of the blocks, shortcuts included, becomes binary.

Our choices where the paper is silent: the stem is followed by BN + act (as every conv of the
blocks); convs have no bias (each is followed by BatchNorm).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from binkit.entries import ArchitectureEntry, Capabilities
from binkit_kws.base import KWSModel, check_feature_shape, make_activation

__all__ = ["TCResNetParams", "TCResNet", "block_layout", "ENTRIES"]

STEM_WIDTH = 16
STAGE_WIDTHS = (24, 32, 48)


class TCResNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    depth: Literal[8, 14] = Field(8, description="TC-ResNet8 (3 blocks) or TC-ResNet14 (6 blocks)")
    width: float = Field(1.0, gt=0, le=16, description="width multiplier k (channels 16k/24k/32k/48k, "
                         "rounded, at least 1)")
    activation: Literal["relu", "prelu"] = Field(
        "relu", description="activation after BN: relu (paper) or prelu (for binarized models)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")


def _w(base: int, k: float) -> int:
    return max(1, round(base * k))


def block_layout(params: TCResNetParams) -> list[tuple[int, int]]:
    """``(width, stride)`` of each block in order."""
    per_stage = 1 if params.depth == 8 else 2
    return [(_w(c, params.width), 2 if j == 0 else 1) for c in STAGE_WIDTHS for j in range(per_stage)]


class TCBlock(nn.Module):
    """Residual block of two 9-tap temporal convs; ``(B, C_in, T) -> (B, C_out, ceil(T / stride))``."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 9, stride=stride, padding=4, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv1d(c_out, c_out, 9, padding=4, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm1d(c_out), make_activation(activation))
        self.act_out = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act_out(y + (x if self.shortcut is None else self.shortcut(x)))


class TCResNet(KWSModel):
    """``(batch, c, n_mels, frames) -> (batch, num_classes)``; see the module docstring."""

    def __init__(self, params: TCResNetParams, num_classes: int, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        c_in, n_mels, _ = check_feature_shape("tcresnet", feature_shape)
        self.feature_shape = tuple(feature_shape)
        stem = _w(STEM_WIDTH, params.width)
        self.stem = nn.Conv1d(c_in * n_mels, stem, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm1d(stem)
        self.stem_act = make_activation(params.activation)
        blocks, width = [], stem
        for w, s in block_layout(params):
            blocks.append(TCBlock(width, w, s, params.activation))
            width = w
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(params.dropout)
        self.classifier = nn.Linear(width, num_classes)  # pooled: input 48k for any feature shape

    def forward_features(self, x, view=None):
        x = x.flatten(1, 2)  # (B, c, n_mels, T) -> (B, c * n_mels, T): frequency bins as channels
        x = self.stem_act(self.stem_bn(self.stem(x)))  # (B, 16k, T)
        for i, block in enumerate(self.blocks):
            x = block(x)
            self.taps[f"block{i}"] = x
        return x

    def forward_head(self, x):
        return self.classifier(self.drop(x.mean(-1)))  # (B, 48k, T') -> (B, 48k) -> (B, classes)


def _create(params: TCResNetParams, num_classes: int, feature_shape: tuple[int, ...]) -> TCResNet:
    return TCResNet(params, num_classes, feature_shape)


def _capabilities(params: TCResNetParams) -> Capabilities:
    return Capabilities(taps=tuple(f"block{i}" for i in range(len(block_layout(params)))))


ENTRIES = [
    ArchitectureEntry(
        name="tcresnet", factory=_create, params=TCResNetParams, capabilities=_capabilities,
        description="TC-ResNet8/14: 1-D temporal residual convs over (n_mels channels x frames), width k",
        reference="Choi et al., Temporal Convolution for Real-time Keyword Spotting on Mobile Devices, "
        "Interspeech 2019, arXiv:1904.03814",
    ),
]
