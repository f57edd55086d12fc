"""DS-CNN: the depthwise-separable CNN of "Hello Edge".

Origin: Zhang, Suda, Lai, Chandra, "Hello Edge: Keyword Spotting on Microcontrollers", 2017,
https://arxiv.org/abs/1711.07128 (section 3, DS-CNN; sizes S/M/L as in the
authors' TensorFlow code ARM-software/ML-KWS-for-MCU, ``create_ds_cnn_model``, whose
``--model_size_info`` gives the layer list of each size). Written for binkit from the paper's
description; no code is taken from the TF repository.

Graph, input ``(batch, 1, n_mels, frames)``, ``C`` the size's channel count::

    stem    Conv2d(1 -> C, 4x10 (freq x time), stride s0, TF 'SAME') -> BN2d -> act
    blocks  x N, each (depthwise separable):
              Conv2d(C -> C, 3x3, groups=C, stride s_i, pad 1) -> BN2d -> act   depthwise
              Conv2d(C -> C, 1x1) -> BN2d -> act                                pointwise
    head    global average pool -> Dropout -> Linear(C -> num_classes)

Sizes (the TF code's lists; its input is (time, freq), so its kernel 10x4 is 4x10 here)::

    size  C    N  stem stride (freq, time)  block 0 stride   parameters (12 classes)
    S     64   4  (2, 2)                     (1, 1)           23,180
    M     172  4  (1, 2)                     (2, 2)          136,580
    L     276  5  (1, 2)                     (2, 2)          413,736

The parameter count does not depend on the feature shape: the average pool makes the
classifier input ``C`` for every ``(n_mels, frames)``. (The paper's size table lists memory
in KB, 38.6/189.2/497.6 for S/M/L, not parameter counts.)

``act`` is the ``activation`` param: ReLU as in the paper (default), or PReLU for binarized
models (binkit's sign(0) = +1 maps every ReLU output to +1, which would make a binary layer's
input constant). Taps ``"block{i}"`` are the outputs of the separable blocks, shape
``(batch, C, n_mels', frames')``; there is a single (full) view.

Binarization with binkit's default policy (``keep_first``/``keep_last`` in registration order,
which is execution order here): the stem conv and the classifier stay full precision; every
depthwise and pointwise conv of the blocks becomes binary.

Changed from the TF code: the convs have no bias (each is followed by BatchNorm, which makes
one redundant); the stem's 'SAME' padding is a symmetric conv padding plus, when TF would pad one
more row/column at the end, a ``ZeroPad2d`` of that one row/column; the block convs pad 1 on both
sides (output sizes equal TF's, ``ceil(n / stride)``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from binkit.entries import ArchitectureEntry, Capabilities
from binkit_kws.base import KWSModel, check_feature_shape, make_activation

__all__ = ["DSCNNParams", "DSCNN", "SIZES", "ENTRIES"]

# size -> (channels, blocks, stem stride (freq, time), first block stride (freq, time))
SIZES: dict[str, tuple[int, int, tuple[int, int], tuple[int, int]]] = {
    "S": (64, 4, (2, 2), (1, 1)),
    "M": (172, 4, (1, 2), (2, 2)),
    "L": (276, 5, (1, 2), (2, 2)),
}
STEM_KERNEL = (4, 10)  # (freq, time)


class DSCNNParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    size: Literal["S", "M", "L"] = Field("S", description="Hello Edge size: S (64 ch, 4 blocks), "
                                         "M (172 ch, 4 blocks) or L (276 ch, 5 blocks)")
    activation: Literal["relu", "prelu"] = Field(
        "relu", description="activation after every BN: relu (paper) or prelu (for binarized models)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding ``(before, after)``: output ``ceil(size / stride)``, extra at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class DSBlock(nn.Module):
    """Depthwise 3x3 -> BN -> act -> pointwise 1x1 -> BN -> act; ``(B, C, F, T) -> (B, C, F', T')``."""

    def __init__(self, channels: int, stride: tuple[int, int], activation: str) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = make_activation(activation)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.depthwise(x)))
        return self.act2(self.bn2(self.pointwise(x)))


class DSCNN(KWSModel):
    """``(batch, in_channels, n_mels, frames) -> (batch, num_classes)``; see the module docstring."""

    def __init__(self, params: DSCNNParams, num_classes: int, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        c_in, n_mels, frames = check_feature_shape("dscnn", feature_shape)
        self.feature_shape = tuple(feature_shape)
        channels, blocks, stem_stride, first_stride = SIZES[params.size]
        pads = [_same_padding(n, k, s) for n, k, s in zip((n_mels, frames), STEM_KERNEL, stem_stride)]
        (f_lo, f_hi), (t_lo, t_hi) = pads
        # symmetric part inside the conv; TF's one extra row/column at the end, if any, before it
        self.stem_pad = nn.ZeroPad2d((0, t_hi - t_lo, 0, f_hi - f_lo))
        self.stem = nn.Conv2d(c_in, channels, STEM_KERNEL, stride=stem_stride, padding=(f_lo, t_lo), bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.stem_act = make_activation(params.activation)
        self.blocks = nn.ModuleList(
            DSBlock(channels, first_stride if i == 0 else (1, 1), params.activation) for i in range(blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(params.dropout)
        self.classifier = nn.Linear(channels, num_classes)  # pooled: input C for any feature shape

    def forward_features(self, x, view=None):
        x = self.stem_act(self.stem_bn(self.stem(self.stem_pad(x))))  # (B, C, ceil(F/sf), ceil(T/st))
        for i, block in enumerate(self.blocks):
            x = block(x)
            self.taps[f"block{i}"] = x
        return x

    def forward_head(self, x):
        return self.classifier(self.drop(self.pool(x).flatten(1)))  # (B, C) -> (B, classes)


def _create(params: DSCNNParams, num_classes: int, feature_shape: tuple[int, ...]) -> DSCNN:
    return DSCNN(params, num_classes, feature_shape)


def _capabilities(params: DSCNNParams) -> Capabilities:
    return Capabilities(taps=tuple(f"block{i}" for i in range(SIZES[params.size][1])))


ENTRIES = [
    ArchitectureEntry(
        name="dscnn", factory=_create, params=DSCNNParams, capabilities=_capabilities,
        description="DS-CNN of Hello Edge (sizes S/M/L): 4x10 stem, depthwise-separable 3x3 blocks, avg pool",
        reference="Zhang et al., Hello Edge: Keyword Spotting on Microcontrollers, 2017, arXiv:1711.07128",
    ),
]
