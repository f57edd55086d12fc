"""XNOR-Net: binary weights with a per-output-channel scale, binary inputs.

Weights, with ``W_o`` the weights of output channel ``o`` and ``n`` their count
(``in/groups * taps``)::

    forward:   W~_o = alpha_o * sign(W_o),   alpha_o = ||W_o||_1 / n = mean |W_o|
    backward:  g_W  = g * (1/n + alpha_o * 1[|W| <= 1])

The backward is the one written in the paper (Sec. 3.2, "Training Binary-Weights-Networks"):
``dC/dW_i = dC/dW~_i * (1/n + dsign/dW_i * alpha)`` with the clipped STE for ``dsign``. It is
implemented as a custom autograd function (:func:`xnor_weight`), so ``alpha`` is computed once in
the forward and reused. ``alpha_o`` folds into the per-output-channel multiplier at export.

Inputs::

    forward:   q   = sign(x)
    backward:  g_x = g * 1[|x| <= 1]

sign(0) = +1 everywhere (binkit convention; the reference code uses ``torch.sign``, whose 0 maps
to 0).

Args: none (params model :class:`XNORParams` is empty).

Deviations from the paper: the optional input scale ``K`` (a spatial map of mean |I|) is not
implemented; the paper reports dropping it costs under 1% top-1, and almost every
reimplementation drops it. The extra steps of jiecaoyu/XNOR-Net-PyTorch (centring W over the
input channel, clamping W, the full chain-rule gradient) are not copied.

Reference: Rastegari et al., "XNOR-Net: ImageNet Classification Using Binary Convolutional
Neural Networks", ECCV 2016, https://arxiv.org/abs/1603.05279
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from binkit.entries import QuantizerEntry
from binkit.quant.base import SteSignInputQuantizer, WeightQuantizer
from binkit.quant.functional import per_channel_mean_abs, sign

__all__ = ["XNORParams", "xnor_weight", "XNORWeightQuantizer", "XNORInputQuantizer", "ENTRY"]


class XNORParams(BaseModel):
    """Params of the ``xnor`` method (none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _XNORWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        alpha = per_channel_mean_abs(w)  # (out, 1, ..., 1)
        ctx.save_for_backward(w, alpha)
        return alpha * sign(w)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        w, alpha = ctx.saved_tensors
        n = w[0].numel()  # elements per output channel
        inside = (w.abs() <= 1.0).to(g.dtype)
        return g * (1.0 / n + alpha * inside)


def xnor_weight(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net weight binarization, ``(out, ...) -> (out, ...)``.

    Forward: ``alpha_o * sign(W)`` with ``alpha_o = mean |W_o|`` over all but the first axis.
    Backward: ``g * (1/n + alpha_o * 1[|W| <= 1])``, ``n = W[0].numel()`` (paper, Sec. 3.2).
    """
    return _XNORWeight.apply(w)


class XNORWeightQuantizer(WeightQuantizer):
    """``alpha_o * sign(W_o)``; see :func:`xnor_weight`. ``export_scale`` is ``alpha_o``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return xnor_weight(w)


class XNORInputQuantizer(SteSignInputQuantizer):
    """``sign(x)`` with clipped STE, ``g * 1[|x| <= 1]``."""


ENTRY = QuantizerEntry(
    name="xnor",
    weight=XNORWeightQuantizer,
    input=XNORInputQuantizer,
    params=XNORParams,
    precision=1,
    packing="sign",
    description="alpha_o * sign(W) with alpha_o = mean|W_o| per output channel; sign inputs.",
    reference="Rastegari et al., XNOR-Net: ImageNet Classification Using Binary Convolutional "
    "Neural Networks, ECCV 2016, arXiv:1603.05279",
)
