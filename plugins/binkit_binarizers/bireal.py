"""Bi-Real Net: ApproxSign activations and magnitude-aware binary weights.

Inputs (ApproxSign, the derivative of the piecewise quadratic F of the paper, Eq. 5-6)::

    forward:   q   = sign(x)                                    sign(0) = +1
    backward:  g_x = g * (2 + 2x)   for -1 <= x < 0
               g_x = g * (2 - 2x)   for  0 <= x < 1
               g_x = 0              elsewhere         (= g * max(2 - 2|x|, 0))

Weights (magnitude-aware sign, per output channel ``o``)::

    forward:   W_b = sg(mean |W_o|) * sign(W)
    backward:  g_W = g * 1[|W| <= 1]                  STE through clamp(W, -1, 1)

The weight scale is per output channel, so it folds into the per-channel multiplier at export
(``export_scale`` returns ``mean |W_o|``).

Args: none (params model :class:`BiRealParams` is empty).

Deviations: sign(0) = +1 (the reference code uses ``torch.sign``, 0 -> 0). The weight STE passes
the gradient at exactly ``|W| = 1`` (closed window, like the clipped STE elsewhere in binkit);
``torch.clamp``, which the reference code differentiates through, gives 0 there. The Bi-Real
architecture (real-valued shortcuts) is the model's business, not the quantizer's.

Reference: Liu et al., "Bi-Real Net: Enhancing the Performance of 1-bit CNNs with Improved
Representational Capability and Advanced Training Algorithm", ECCV 2018,
https://arxiv.org/abs/1808.00278
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from binkit.entries import QuantizerEntry
from binkit.quant.base import InputQuantizer, WeightQuantizer
from binkit.quant.functional import approx_sign, per_channel_mean_abs, sign

__all__ = [
    "BiRealParams",
    "magnitude_aware_sign",
    "BiRealWeightQuantizer",
    "BiRealInputQuantizer",
    "ENTRY",
]


class BiRealParams(BaseModel):
    """Params of the ``bireal`` method (none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _MagnitudeAwareSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        # computed inside forward: the scale gets no gradient (sg)
        return per_channel_mean_abs(w) * sign(w)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1.0).to(g.dtype)


def magnitude_aware_sign(w: torch.Tensor) -> torch.Tensor:
    """Bi-Real's weight binarizer, ``(out, ...) -> (out, ...)``.

    Forward: ``sg(mean |W_o|) * sign(W)``, the mean over all but the first axis.
    Backward: ``g * 1[|W| <= 1]``.
    """
    return _MagnitudeAwareSign.apply(w)


class BiRealWeightQuantizer(WeightQuantizer):
    """``sg(mean|W_o|) * sign(W)``; see :func:`magnitude_aware_sign`."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return magnitude_aware_sign(w)


class BiRealInputQuantizer(InputQuantizer):
    """``sign(x)`` with the ApproxSign backward (:func:`binkit.quant.functional.approx_sign`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return approx_sign(x)


ENTRY = QuantizerEntry(
    name="bireal",
    weight=BiRealWeightQuantizer,
    input=BiRealInputQuantizer,
    params=BiRealParams,
    precision=1,
    packing="sign",
    description="ApproxSign inputs; magnitude-aware weights mean|W_o| * sign(W) (Bi-Real Net).",
    reference="Liu et al., Bi-Real Net: Enhancing the Performance of 1-bit CNNs with Improved "
    "Representational Capability and Advanced Training Algorithm, ECCV 2018, arXiv:1808.00278",
)
