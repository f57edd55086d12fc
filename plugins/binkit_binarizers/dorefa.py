"""DoReFa-Net: k-bit weights and k-bit activations in [0, 1], straight-through rounding.

``quantize_k(x) = round((2^k - 1) * x) / (2^k - 1)`` with an identity gradient through round
(:func:`binkit.quant.functional.quantize_k`).

Weights, ``k = weight_bits``::

    k = 1:  E   = sg(mean |W|)                one scalar per layer (over the whole tensor)
            W_q = sign(W) * E                  sign(0) = +1
            g_W = g                            identity, no clipping
    k > 1:  W_q = 2 * quantize_k(tanh(W) / (2 * max|tanh(W)|) + 1/2) - 1
            g_W by autograd through tanh and max, identity through round

Inputs, ``k = input_bits``::

    forward:   a_q = quantize_k(clip(x, 0, 1))
    backward:  g_x = g * 1[0 <= x <= 1]

With one bit the activations are ``{0, 1}``, not ``±1``: an input of 0 (e.g. a ReLU output)
stays 0. That is the method, not a sign(0) bug.

Packing: ``"bitplanes"``. A k-bit value is a sum of scaled bit-planes; 1-bit weights are one
sign plane times ``E``, and 1-bit ``{0, 1}`` activations are one *unsigned* plane. The packing
of an entry is fixed, so DoReFa declares bit-planes for every bit width.

Args (params model :class:`DoReFaParams`):
    weight_bits: weight bit width k, 1..8 (the entry's ``precision_param``).
    input_bits: activation bit width k, 1..8.

Deviations from the paper / tensorpack ``dorefa.py``:

* 1-bit weights use ``sign(W) * E`` instead of ``sign(W / E) * E``: equal for ``E > 0``, and an
  all-zero weight gives 0 instead of NaN. tensorpack also maps 0 to +1 here.
* The activation clip passes the gradient on the closed interval ``[0, 1]`` (as TF's
  ``clip_by_value`` does); ``torch.clamp``'s own gradient is 0 at exactly 0 and 1, which would
  block the gradient of every exact-zero ReLU output.
* Gradient quantization (the "G" of DoReFa) is not implemented.
* k > 1 weights of an all-zero tensor divide by zero (NaN), as in the reference.

Reference: Zhou et al., "DoReFa-Net: Training Low Bitwidth Convolutional Neural Networks with Low
Bitwidth Gradients", 2016, https://arxiv.org/abs/1606.06160
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from binkit.entries import QuantizerEntry
from binkit.quant.base import InputQuantizer, NotDeployableError, WeightQuantizer
from binkit.quant.functional import quantize_k, sign

__all__ = [
    "DoReFaParams",
    "dorefa_weight",
    "dorefa_input",
    "DoReFaWeightQuantizer",
    "DoReFaInputQuantizer",
    "ENTRY",
]


class DoReFaParams(BaseModel):
    """Params of the ``dorefa`` method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_bits: int = Field(1, ge=1, le=8, description="Weight bit width k (1 = sign * E).")
    input_bits: int = Field(
        1, ge=1, le=8, description="Activation bit width k; activations lie in [0, 1]."
    )


class _ScaledSignIdentity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        e = w.abs().mean()  # E: one scalar per layer, no gradient (computed in forward)
        return sign(w) * e

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return g


class _ClipUnit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        return g * ((x >= 0.0) & (x <= 1.0)).to(g.dtype)


def dorefa_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa weight quantization, any shape -> same shape.

    ``bits == 1``: ``sign(W) * sg(mean|W|)`` with identity gradient.
    ``bits > 1``: ``2 * quantize_k(tanh(W) / (2 max|tanh W|) + 1/2, bits) - 1``.
    """
    if bits == 1:
        return _ScaledSignIdentity.apply(w)
    t = torch.tanh(w)
    return 2.0 * quantize_k(t / (2.0 * t.abs().max()) + 0.5, bits) - 1.0


def dorefa_input(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa activation quantization: ``quantize_k(clip(x, 0, 1), bits)``.

    Gradient ``g * 1[0 <= x <= 1]``. Values are multiples of ``1 / (2^bits - 1)`` in [0, 1].
    """
    return quantize_k(_ClipUnit.apply(x), bits)


class DoReFaWeightQuantizer(WeightQuantizer):
    """DoReFa weights (:func:`dorefa_weight`); ``precision`` is ``weight_bits``."""

    def __init__(self, params: DoReFaParams | None = None, weight_shape: tuple[int, ...] = ()):
        super().__init__(params if params is not None else DoReFaParams(), weight_shape)
        self.precision = self.params.weight_bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return dorefa_weight(w, self.params.weight_bits)

    @torch.no_grad()
    def export_scale(self, w: torch.Tensor) -> torch.Tensor:
        """``E`` repeated per output channel for 1-bit weights.

        k-bit weights (k > 1) are bit-planes on a fixed grid, not ``±scale`` per channel, so
        this sign-plus-scale decomposition does not describe them.
        """
        if self.params.weight_bits != 1:
            raise NotDeployableError(
                f"{type(self).__name__}: {self.params.weight_bits}-bit DoReFa weights are "
                "bit-planes on the grid 2*i/(2^k-1) - 1, not sign(W) times a per-channel "
                "scale; only weight_bits=1 decomposes as sign(W) * E"
            )
        return super().export_scale(w)


class DoReFaInputQuantizer(InputQuantizer):
    """DoReFa activations (:func:`dorefa_input`); ``precision`` is ``input_bits``."""

    def __init__(
        self, params: DoReFaParams | None = None, num_channels: int = 0, channel_dim: int = 1
    ) -> None:
        params = params if params is not None else DoReFaParams()
        super().__init__(params, num_channels, channel_dim)
        self.precision = self.params.input_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dorefa_input(x, self.params.input_bits)


ENTRY = QuantizerEntry(
    name="dorefa",
    weight=DoReFaWeightQuantizer,
    input=DoReFaInputQuantizer,
    params=DoReFaParams,
    precision=1,
    precision_param="weight_bits",
    packing="bitplanes",
    description="k-bit DoReFa: sign(W)*mean|W| (1 bit) or tanh-normalised k-bit weights; "
    "quantize_k(clip(x, 0, 1)) inputs.",
    reference="Zhou et al., DoReFa-Net: Training Low Bitwidth Convolutional Neural Networks with "
    "Low Bitwidth Gradients, 2016, arXiv:1606.06160",
)
