"""Export lowerings of the KWS backbones (DS-CNN, TC-ResNet, BC-ResNet) to artifact ops.

Registered through the plugin's ``binkit_lowerings`` hook (binkit_kws/plugin.py). Each lowering
reproduces the eval-mode torch forward op by op (shapes per example, ``(C, F, T)`` for 2-D
features; ``module`` folds a BatchNorm into the binary op before it, else emits an ``affine``):

DS-CNN (:class:`binkit_kws.dscnn.DSCNN`)::

    stem_pad + stem     conv2d_fp (or bconv2d) with padding [[f_lo, f_hi], [t_lo, t_hi]]: the
                        ZeroPad2d's extra row/column after the conv's symmetric padding
    stem_bn, stem_act   affine (or folded) + prelu/relu
    block i             bdwconv2d 3x3 (bn1 folded), act, bconv2d 1x1 (bn2 folded), act
    head                mean over (F, T) -> flatten -> linear_fp

TC-ResNet (:class:`binkit_kws.tcresnet.TCResNet`)::

    input               reshape (c * n_mels, T)    (x.flatten(1, 2))
    stem                conv1d_fp, affine, act
    block               bconv1d 9 (stride s, bn1 folded), act, bconv1d 9 (bn2 folded)
                        shortcut: bconv1d 1x1 stride s (BN folded), act   (or the block input)
                        add(y, shortcut), act
    head                mean over T -> linear_fp

BC-ResNet (:class:`binkit_kws.bcresnet.BCResNet`)::

    stem                conv2d_fp 5x5 stride (2, 1), affine, act
    block               [transition: bconv2d 1x1 (expand_bn folded), act]
                        a = bdwconv2d 3x1 stride (s, 1), then SubSpectral norm: reshape
                            (C * S, F' / S, T) -> affine (one per channel and sub-band) ->
                            reshape (C, F', T)  (S = 1: a plain BatchNorm, folded)
                        z = mean over F (keepdims) -> bdwconv2d 1x3 dilated (time_bn folded)
                            -> silu -> bconv2d 1x1   (Dropout2d: identity in eval)
                        add(a, z) (broadcast over F) [normal: add(., x)], act
    head                bdwconv2d (head_dw_bn folded), bconv2d 1x1 (head_pw_bn folded), act,
                        mean over (F, T) -> linear_fp

(In a full-precision model every ``b*`` op is its ``*_fp`` twin and BatchNorms are ``affine``.)
The adds follow torch's order of summation. The sign-output folding of :mod:`binkit.export.lower`
applies afterwards where a binary op feeds only binary ops through a PReLU.

What is refused (:class:`binkit.export.ExportError`, naming the layer): a DS-CNN whose stem is
binary while the stem's ZeroPad2d pads: torch binarizes the padded zeros to +1, but a binary op's
padding is exact zeros, so the extra row/column has no exact artifact form.
"""

from __future__ import annotations

from torch import nn

from binkit.entries import LoweringEntry
from binkit.export import ExportError
from binkit_kws.bcresnet import BCResBlock, BCResNet, SubSpectralNorm
from binkit_kws.dscnn import DSCNN
from binkit_kws.tcresnet import TCBlock, TCResNet

__all__ = ["lower_dscnn", "lower_tcresnet", "lower_bcresnet", "ENTRIES"]


def _single_view(model: nn.Module, views: list[str]) -> str:
    if len(views) != 1:
        raise ExportError(f"{type(model).__name__} has a single (full) view; asked to export views {views}")
    return views[0]


def _binarizes_input(m: nn.Module) -> bool:
    return getattr(m, "input_quantizer", None) is not None


def _dropout(m: nn.Module, x: str) -> str:
    """Dropout of any kind (Dropout2d too) is the identity in eval mode."""
    if not isinstance(m, nn.modules.dropout._DropoutNd):
        raise ExportError(f"expected a dropout module, got {type(m).__name__}")
    return x


# ------------------------------------------------------------------------------------------ DS-CNN


def lower_dscnn(model: DSCNN, b, views: list[str]) -> None:
    x = b.begin_view(_single_view(model, views))
    # ZeroPad2d((left, right, top, bottom)) then the conv's own symmetric padding (ph, pw)
    left, right, top, bottom = (int(p) for p in model.stem_pad.padding)
    ph, pw = (int(p) for p in model.stem.padding)
    if any((left, right, top, bottom)) and _binarizes_input(model.stem):
        raise ExportError(
            f"layer {b.names[id(model.stem)]!r}: the binary stem reads the ZeroPad2d's padded zeros as "
            f"sign(0) = +1 (padding top/bottom {top}/{bottom}, left/right {left}/{right}), but a binary op "
            "pads with exact zeros; keep the stem full precision (binkit's default keep_first) or use a "
            "feature shape that needs no extra padding")
    x = b.module(model.stem, x, padding=[[ph + top, ph + bottom], [pw + left, pw + right]])
    x = b.module(model.stem_act, b.module(model.stem_bn, x))
    for block in model.blocks:
        x = b.module(block.act1, b.module(block.bn1, b.module(block.depthwise, x)))
        x = b.module(block.act2, b.module(block.bn2, b.module(block.pointwise, x)))
    x = b.module(model.pool, x)  # AdaptiveAvgPool2d(1): mean over (F, T) kept as (C, 1, 1)
    x = b.flatten(x, name="pool")
    b.end_view(b.module(model.classifier, b.module(model.drop, x)))


# --------------------------------------------------------------------------------------- TC-ResNet


def _tc_block(b, blk: TCBlock, x: str) -> str:
    y = b.module(blk.act1, b.module(blk.bn1, b.module(blk.conv1, x)))
    y = b.module(blk.bn2, b.module(blk.conv2, y))
    sc = x if blk.shortcut is None else b.module(blk.shortcut, x)
    return b.module(blk.act_out, b.add(y, sc, name=b.names[id(blk)]))


def lower_tcresnet(model: TCResNet, b, views: list[str]) -> None:
    x = b.begin_view(_single_view(model, views))
    c, f, t = b.shape(x)
    x = b.reshape(x, [c * f, t], name="input")  # x.flatten(1, 2): frequency bins as channels
    x = b.module(model.stem_act, b.module(model.stem_bn, b.module(model.stem, x)))
    for block in model.blocks:
        x = _tc_block(b, block, x)
    x = b.mean(x, [1], keepdims=False, name="pool")  # x.mean(-1): (C, T') -> (C,)
    b.end_view(b.module(model.classifier, b.module(model.drop, x)))


# --------------------------------------------------------------------------------------- BC-ResNet


def _subspectral(b, norm: nn.Module, x: str) -> str:
    if not isinstance(norm, SubSpectralNorm):
        return b.module(norm, x)  # plain BatchNorm2d
    s = norm.sub_bands
    if s == 1:
        return b.module(norm.bn, x)  # one band: a plain BatchNorm (folds into the conv)
    c, f, t = b.shape(x)
    name = b.names[id(norm)]
    # channel c, sub-band k -> channel c * S + k: a row-major reshape, exactly as the torch module
    y = b.reshape(x, [c * s, f // s, t], name=f"{name}.bands")
    y = b.module(norm.bn, y)  # affine per (channel, sub-band)
    return b.reshape(y, [c, f, t], name=name)


def _bc_block(b, blk: BCResBlock, x: str) -> str:
    identity = x
    if blk.transition:
        x = b.module(blk.expand_act, b.module(blk.expand_bn, b.module(blk.expand, x)))
    a = _subspectral(b, blk.freq_norm, b.module(blk.freq_conv, x))  # (C, F', T)
    name = b.names[id(blk)]
    z = b.mean(a, [1], keepdims=True, name=f"{name}.freq_mean")  # (C, 1, T)
    z = b.module(blk.time_act, b.module(blk.time_bn, b.module(blk.time_conv, z)))
    z = _dropout(blk.drop, b.module(blk.pointwise, z))
    out = b.add(a, z, name=f"{name}.broadcast")  # broadcast over frequency
    if not blk.transition:
        out = b.add(out, identity, name=name)
    return b.module(blk.act, out)


def lower_bcresnet(model: BCResNet, b, views: list[str]) -> None:
    x = b.begin_view(_single_view(model, views))
    x = b.module(model.stem_act, b.module(model.stem_bn, b.module(model.stem, x)))
    for block in model.blocks:
        x = _bc_block(b, block, x)
    x = b.module(model.head_dw_bn, b.module(model.head_dw, x))
    x = b.module(model.head_act, b.module(model.head_pw_bn, b.module(model.head_pw, x)))
    x = b.mean(x, [1, 2], keepdims=False, name="pool")  # x.mean((2, 3)): (C, F, T) -> (C,)
    b.end_view(b.module(model.classifier, b.module(model.drop, x)))


ENTRIES = [
    LoweringEntry(name="dscnn", model_class=DSCNN, fn=lower_dscnn,
                  description="DS-CNN: stem (ZeroPad2d folded into its padding), depthwise-separable "
                  "blocks, global mean, classifier"),
    LoweringEntry(name="tcresnet", model_class=TCResNet, fn=lower_tcresnet,
                  description="TC-ResNet: frequency-as-channels reshape, temporal residual blocks with "
                  "1x1 stride-2 shortcuts, mean over time, classifier"),
    LoweringEntry(name="bcresnet", model_class=BCResNet, fn=lower_bcresnet,
                  description="BC-ResNet: SubSpectral norm as reshape/affine/reshape, frequency mean, "
                  "dilated temporal depthwise conv, broadcast residual adds, head"),
]
