"""BNN / BinaryNet: sign with the clipped straight-through estimator, no scale.

Weights and inputs are binarized the same way::

    forward:   q   = sign(x)                      sign(0) = +1 (x >= 0 -> +1)
    backward:  g_x = g * 1[|x| <= clip_value]     clipped STE

The latent weight is clipped to ``[-1, 1]`` after every optimizer step
(:meth:`BNNWeightQuantizer.constrain_`, called by :func:`binkit.quant.apply_constraints`), so the
weight's STE window always covers the whole latent range when ``clip_value >= 1``. There is no
scale: :meth:`~binkit.quant.WeightQuantizer.export_scale` returns ones.

Args (params model :class:`BNNParams`):
    clip_value: half-width of the STE window; the gradient is zero where ``|x| > clip_value``.

Deviation from the paper: the paper uses ``Sign(0) = +1`` as well (its Eq. 1, ``x >= 0``), so
none for the forward. The paper's weight clipping is to ``[-1, 1]`` regardless of the STE window;
binkit keeps that and lets only the STE window vary (as Larq's ``clip_value`` does).

Reference: Courbariaux, Hubara et al., "Binarized Neural Networks: Training Deep Neural Networks
with Weights and Activations Constrained to +1 or -1", 2016, https://arxiv.org/abs/1602.02830
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from binkit.entries import QuantizerEntry
from binkit.quant.base import SteSignInputQuantizer, WeightQuantizer
from binkit.quant.functional import ste_sign

__all__ = ["BNNParams", "BNNWeightQuantizer", "BNNInputQuantizer", "ENTRY"]


class BNNParams(BaseModel):
    """Params of the ``bnn`` method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clip_value: float = Field(
        1.0,
        gt=0.0,
        description="STE window half-width: the gradient passes where |x| <= clip_value, "
        "for weights and inputs alike.",
    )


class BNNWeightQuantizer(WeightQuantizer):
    """``W_b = sign(W)``, gradient ``g * 1[|W| <= clip_value]``; latent W clipped to [-1, 1]."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return ste_sign(w, self.params.clip_value)

    @torch.no_grad()
    def constrain_(self, w: torch.Tensor) -> None:
        # BNN paper, Algorithm 1: W <- clip(W - eta * g, -1, 1) after each update.
        w.clamp_(-1.0, 1.0)


class BNNInputQuantizer(SteSignInputQuantizer):
    """``a_b = sign(a)``, gradient ``g * 1[|a| <= clip_value]``."""


ENTRY = QuantizerEntry(
    name="bnn",
    weight=BNNWeightQuantizer,
    input=BNNInputQuantizer,
    params=BNNParams,
    precision=1,
    packing="sign",
    description="sign(x) with clipped STE for weights and inputs, no scale (BinaryNet).",
    reference="Courbariaux, Hubara et al., Binarized Neural Networks: Training Deep Neural "
    "Networks with Weights and Activations Constrained to +1 or -1, 2016, arXiv:1602.02830",
)
