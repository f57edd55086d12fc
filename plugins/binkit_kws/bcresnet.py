"""BC-ResNet: broadcasted residual learning for keyword spotting.

Origin: Kim, Chang, Lee, Sung, "Broadcasted Residual Learning for Efficient Keyword Spotting",
Interspeech 2021, https://arxiv.org/abs/2106.04140 (section 3: the BC-ResBlock, SubSpectral
Norm; Table 1: the BC-ResNet-tau layout). SubSpectral Norm is from Chang, Park, Lee, Sung,
"SubSpectral Normalization for Neural Audio Data Processing", ICASSP 2021,
https://arxiv.org/abs/2103.13620. Written for binkit from the papers' descriptions.

Graph, input ``(batch, c, n_mels, frames)`` (frequency first), ``tau`` = ``width``, channel counts
``round(n * tau)``::

    stem    Conv2d(c -> 16tau, 5x5, stride (2, 1), pad 2) -> BN2d -> act
    stages  (channels, blocks, frequency stride of the first block, temporal dilation):
              (8tau, 2, 1, 1), (12tau, 2, 2, 2), (16tau, 4, 2, 4), (20tau, 4, 1, 8)
            the first block of each stage is a transition block, the others normal blocks
    head    DWConv2d(20tau, (min(5, F'), 5), pad (0, 2)) -> BN2d
            -> Conv2d(20tau -> 32tau, 1x1) -> BN2d -> act
            -> global average pool -> Dropout -> Linear(32tau -> num_classes)

Broadcasted residual block, ``x`` of shape ``(B, C, F, T)``::

    f2(x)  = SSN(DWConv2d(C, 3x1 over frequency, stride (s, 1), pad (1, 0))(x))   (B, C, F', T)
    f1(z)  = Dropout2d(Conv2d(C, 1x1)(SiLU(BN(DWConv2d(C, 1x3 over time, dilation d,
             pad (0, d))(z)))))                                                    (B, C, 1, T)
    normal:     a = f2(x);                     out = act(x + a + f1(mean_F(a)))    broadcast over F
    transition: a = f2(act(BN(Conv2d(C_in -> C, 1x1)(x))));  out = act(a + f1(mean_F(a)))

SubSpectral Norm (``subspectral = true``, the paper's choice): the frequency axis is split into
``S`` equal sub-bands and each (channel, sub-band) pair has its own BatchNorm statistics and
affine (``BatchNorm2d(C * S)`` on the tensor reshaped to ``(B, C * S, F / S, T)``). ``S`` is the
largest divisor of the block's frequency size ``F'`` that is at most ``sub_bands`` (default 5, the
paper's), so any ``n_mels`` works: 40 mels gives 5 sub-bands in every block as in the paper,
32 mels gives 4. With ``subspectral = false`` it is a plain ``BatchNorm2d(C)``.

``act`` is the ``activation`` param: ReLU as in the paper (default), or PReLU for binarized
models (binkit's sign(0) = +1 maps every ReLU output to +1, a constant binary input); the SiLU of
``f1`` stays (its sign is the sign of its input). Taps ``"block{i}"`` are the block outputs,
shape ``(batch, C_i, F_i, frames)``; a single (full) view. Parameters for 12 classes and 40
mels: BC-ResNet-1 ~9.2k, BC-ResNet-8 ~321k, as in the paper.

Binarization with binkit's default policy: the stem conv and the classifier stay full
precision; every conv of the blocks (1x1 transitions, frequency and temporal depthwise convs,
pointwise convs) and the head's depthwise and 1x1 convs become binary.

Our choices where the paper is silent or that differ from it: the convs followed by a norm have
no bias; the head has BN after its two convs and ``act`` after the second; the classifier is a
``Linear`` on the pooled features (the paper's 1x1 conv on a 1x1 map, the same map); the head's
depthwise conv spans ``min(5, F')`` frequency bins (5 for 40 mels, as in the paper) and the
pool averages whatever frequency remains, so smaller inputs work.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from binkit.entries import ArchitectureEntry, Capabilities
from binkit_kws.base import KWSModel, check_feature_shape, make_activation

__all__ = ["BCResNetParams", "BCResNet", "SubSpectralNorm", "stage_layout", "ENTRIES"]

STEM_WIDTH = 16
HEAD_WIDTH = 32
# (base channels, blocks, frequency stride of the first block, temporal dilation)
STAGES = ((8, 2, 1, 1), (12, 2, 2, 2), (16, 4, 2, 4), (20, 4, 1, 8))


class BCResNetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    width: Literal[1, 1.5, 2, 3, 6, 8] = Field(
        1, description="tau of BC-ResNet-tau: channels 8tau/12tau/16tau/20tau (paper sizes 1, 1.5, 2, 3, 6, 8)")
    subspectral: bool = Field(True, description="SubSpectral Norm after the frequency convs (paper); "
                              "false: plain BatchNorm2d")
    sub_bands: int = Field(5, ge=1, le=64, description="SubSpectral Norm sub-bands (at most; the largest "
                           "divisor of each block's frequency size not above it)")
    dropout: float = Field(0.1, ge=0, lt=1, description="channel dropout (Dropout2d) in every block's f1")
    head_dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the classifier")
    activation: Literal["relu", "prelu"] = Field(
        "relu", description="block output/transition/head activation: relu (paper) or prelu (binarized)")


def _ch(base: int, tau: float) -> int:
    return max(1, round(base * tau))


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def stage_layout(params: BCResNetParams) -> list[tuple[int, int, int, bool]]:
    """``(channels, frequency stride, dilation, is_transition)`` of each block in order."""
    return [(_ch(c, params.width), s if j == 0 else 1, d, j == 0)
            for c, n, s, d in STAGES for j in range(n)]


class SubSpectralNorm(nn.Module):
    """BatchNorm per (channel, frequency sub-band); ``(B, C, F, T) -> (B, C, F, T)``."""

    def __init__(self, channels: int, freq: int, sub_bands: int) -> None:
        super().__init__()
        self.sub_bands = _largest_divisor(freq, sub_bands)
        self.bn = nn.BatchNorm2d(channels * self.sub_bands)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        # channel c, sub-band s -> channel c * S + s (each sub-band is F/S contiguous bins)
        return self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t)).reshape(b, c, f, t)

    def extra_repr(self) -> str:
        return f"sub_bands={self.sub_bands}"


class BCResBlock(nn.Module):
    """A normal or transition broadcasted residual block (see the module docstring)."""

    def __init__(self, c_in: int, c_out: int, freq: int, stride: int, dilation: int, transition: bool,
                 params: BCResNetParams) -> None:
        super().__init__()
        if not transition and (c_in != c_out or stride != 1):
            raise ValueError("a normal BC-ResBlock keeps channels and frequency size")
        self.transition = transition
        if transition:
            self.expand = nn.Conv2d(c_in, c_out, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(c_out)
            self.expand_act = make_activation(params.activation)
        self.freq_conv = nn.Conv2d(c_out, c_out, (3, 1), stride=(stride, 1), padding=(1, 0), groups=c_out,
                                   bias=False)
        self.freq_out = (freq - 1) // stride + 1
        self.freq_norm = (SubSpectralNorm(c_out, self.freq_out, params.sub_bands) if params.subspectral
                          else nn.BatchNorm2d(c_out))
        self.time_conv = nn.Conv2d(c_out, c_out, (1, 3), padding=(0, dilation), dilation=(1, dilation),
                                   groups=c_out, bias=False)
        self.time_bn = nn.BatchNorm2d(c_out)
        self.time_act = nn.SiLU()
        self.pointwise = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.drop = nn.Dropout2d(params.dropout)
        self.act = make_activation(params.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.transition:
            x = self.expand_act(self.expand_bn(self.expand(x)))  # (B, C_out, F, T)
        a = self.freq_norm(self.freq_conv(x))  # (B, C, F', T): frequency-wise
        z = a.mean(2, keepdim=True)  # (B, C, 1, T): frequency average
        z = self.drop(self.pointwise(self.time_act(self.time_bn(self.time_conv(z)))))  # temporal
        out = a + z  # broadcast over frequency
        if not self.transition:
            out = out + identity
        return self.act(out)


class BCResNet(KWSModel):
    """``(batch, c, n_mels, frames) -> (batch, num_classes)``; see the module docstring."""

    def __init__(self, params: BCResNetParams, num_classes: int, feature_shape: tuple[int, ...]) -> None:
        super().__init__()
        c_in, n_mels, _ = check_feature_shape("bcresnet", feature_shape)
        self.feature_shape = tuple(feature_shape)
        width = _ch(STEM_WIDTH, params.width)
        self.stem = nn.Conv2d(c_in, width, 5, stride=(2, 1), padding=2, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.stem_act = make_activation(params.activation)
        freq = (n_mels - 1) // 2 + 1
        blocks = []
        for c, s, d, transition in stage_layout(params):
            block = BCResBlock(width, c, freq, s, d, transition, params)
            blocks.append(block)
            width, freq = c, block.freq_out
        self.blocks = nn.ModuleList(blocks)
        self.head_dw = nn.Conv2d(width, width, (min(5, freq), 5), padding=(0, 2), groups=width, bias=False)
        self.head_dw_bn = nn.BatchNorm2d(width)
        head = _ch(HEAD_WIDTH, params.width)
        self.head_pw = nn.Conv2d(width, head, 1, bias=False)
        self.head_pw_bn = nn.BatchNorm2d(head)
        self.head_act = make_activation(params.activation)
        self.drop = nn.Dropout(params.head_dropout)
        self.classifier = nn.Linear(head, num_classes)  # pooled: input 32tau for any feature shape

    def forward_features(self, x, view=None):
        x = self.stem_act(self.stem_bn(self.stem(x)))  # (B, 16tau, ceil(F/2), T)
        for i, block in enumerate(self.blocks):
            x = block(x)
            self.taps[f"block{i}"] = x
        return x

    def forward_head(self, x):
        x = self.head_dw_bn(self.head_dw(x))  # (B, 20tau, F' - min(5, F') + 1, T)
        x = self.head_act(self.head_pw_bn(self.head_pw(x)))  # (B, 32tau, ., T)
        return self.classifier(self.drop(x.mean((2, 3))))  # (B, 32tau) -> (B, classes)


def _create(params: BCResNetParams, num_classes: int, feature_shape: tuple[int, ...]) -> BCResNet:
    return BCResNet(params, num_classes, feature_shape)


def _capabilities(params: BCResNetParams) -> Capabilities:
    return Capabilities(taps=tuple(f"block{i}" for i in range(len(stage_layout(params)))))


ENTRIES = [
    ArchitectureEntry(
        name="bcresnet", factory=_create, params=BCResNetParams, capabilities=_capabilities,
        description="BC-ResNet-tau: broadcasted residual blocks (frequency DW conv + SubSpectral Norm, "
        "temporal DW conv on the frequency mean, broadcast add)",
        reference="Kim et al., Broadcasted Residual Learning for Efficient Keyword Spotting, "
        "Interspeech 2021, arXiv:2106.04140",
    ),
]
