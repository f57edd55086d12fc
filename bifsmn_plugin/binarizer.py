"""BiFSMN's binarizers: ``bifsmn`` (deployable, the default) and ``bifsmn_code`` (the official
code's v1 "Vanilla" rule, reproduced faithfully for fidelity runs).

``bifsmn`` extends the code's Linear rule to every layer, as bifsmn.md section 4.1 recommends::

    forward:   W_b = sg(mean |W_o|) * sign(W)       one scale per OUTPUT CHANNEL (over in and taps)
    backward:  g_W = g * 1[|W| <= 1]
    inputs:    q = sign(x), g_x = g * 1[|x| <= 1]   (sign(0) = +1)

so every binarized layer is ``sign(W)`` times one float per output channel, which folds into the
engine's per-channel multiplier. Its one param, ``activation_grad`` (:class:`BiFSMNParams`),
selects the inputs' backward: ``"ste"`` (the default, the code's clipped STE above) or
``"approxsign"`` (Bi-Real Net's ``max(2 - 2|x|, 0)``), an ablation asking how much of another
method's lead is its gradient; the forward pass and the export are the same for both. The rest of
this docstring describes ``bifsmn_code``.

This is the scale rule of ``htqin/BiFSMN`` ``basic.py`` (``BiLinearVanilla``,
``BiConv1dVanilla``, ``BiConv2dVanilla``; see ``shared/reference/bifsmn.md`` section 4), kept so
that the paper's accuracies can be reproduced. It is **not deployable**; use a per-output-channel
method (``bireal``, ``xnor``) for models meant for the engine.

Inputs (every binarized layer)::

    forward:   q   = sign(x)                       sign(0) = +1 (the code's torch.sign: 0 -> 0)
    backward:  g_x = g * 1[|x| <= 1]               clipped STE, no activation scale

Linear weights (2-D, ``(out, in)``), no centring::

    forward:   W_b = sg(mean_i |W_o,i|) * sign(W)  one scale per output row
    backward:  g_W = g * 1[|W| <= 1]

Convolution weights (> 2-D, ``(out, in/groups, *taps)``)::

    B    = W - mean(W)                             one scalar over the whole tensor
    s_oi = sg(mean over taps |B_o,i|)              one scale per (out, in) pair
    W_b  = s_oi * sign(B)
    g_B  = g * 1[|B| <= 1]
    g_W  = g_B - mean(g_B)                         autograd through the centring, as in the code

The per-(out, in) scale cannot fold into the per-output-channel multiplier that follows the
XNOR-popcount, and for 1x1 convolutions ``s_oi = |B_oi|`` so ``W_b = B = W - mean(W)`` exactly:
those weights stay full precision (bifsmn.md section 4.1). Hence ``packing=None`` and
``export_scale`` raises :class:`binkit.quant.NotDeployableError`.

Args: none (params model :class:`BiFSMNCodeParams` is empty).

Deviation from the code: sign(0) = +1 instead of ``torch.sign``'s 0, for inputs and weights
(bifsmn.md section 12, quirk 9). Everything else (global-mean centring, detached scales, the
gradient window on ``B``) follows the code.

Reference: Qin et al., "BiFSMN: Binary Neural Network for Keyword Spotting", IJCAI 2022,
https://arxiv.org/abs/2202.06483; code htqin/BiFSMN commit f6d52a0, ``basic.py``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from binkit.entries import QuantizerEntry
from binkit.quant.base import SteSignInputQuantizer, NotDeployableError, WeightQuantizer
from binkit.quant.functional import approx_sign, sign

__all__ = [
    "BiFSMNCodeParams",
    "BiFSMNParams",
    "BiFSMNInputQuantizer",
    "NOT_DEPLOYABLE_REASON",
    "bifsmn_code_weight",
    "BiFSMNCodeWeightQuantizer",
    "BiFSMNCodeInputQuantizer",
    "ENTRY",
    "bifsmn_weight",
    "BiFSMNWeightQuantizer",
    "DEPLOYABLE_ENTRY",
]

NOT_DEPLOYABLE_REASON = (
    "bifsmn_code reproduces the official BiFSMN code's conv scale, one scale per (out, in) pair "
    "after global mean-centring; it cannot fold into the per-output-channel multiplier of an "
    "XNOR-popcount layer, and for 1x1 convs it keeps the full-precision weights W - mean(W) "
    "(shared/reference/bifsmn.md section 4.1). Train with a per-output-channel method (bireal, "
    "xnor) to export."
)


class BiFSMNCodeParams(BaseModel):
    """Params of the ``bifsmn_code`` method (none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _ScaledSignSTE(torch.autograd.Function):
    """``scale * sign(x)`` forward, ``g * 1[|x| <= 1]`` backward (``BinaryQuantize_Vanilla``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x) * scale

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1.0).to(g.dtype), None


def bifsmn_code_weight(w: torch.Tensor) -> torch.Tensor:
    """The code's weight binarizer: per-row scale for 2-D ``w``, centred per-(out, in) for convs.

    ``w``: ``(out, in)`` (Linear) or ``(out, in/groups, *taps)`` (Conv1d/Conv2d); same shape out.
    """
    if w.dim() == 2:
        scale = w.detach().abs().mean(dim=1, keepdim=True)  # (out, 1)
        return _ScaledSignSTE.apply(w, scale)
    b = w - w.mean()  # global centring, with gradient (as in the code)
    taps = b.detach().abs().reshape(b.shape[0], b.shape[1], -1)  # (out, in, taps)
    scale = taps.mean(dim=2).reshape(b.shape[:2] + (1,) * (b.dim() - 2))  # (out, in, 1, ...)
    return _ScaledSignSTE.apply(b, scale)


class BiFSMNCodeWeightQuantizer(WeightQuantizer):
    """The official code's weights (:func:`bifsmn_code_weight`); not exportable."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return bifsmn_code_weight(w)

    def export_scale(self, w: torch.Tensor) -> torch.Tensor:
        raise NotDeployableError(NOT_DEPLOYABLE_REASON)


class BiFSMNCodeInputQuantizer(SteSignInputQuantizer):
    """``sign(x)`` with clipped STE ``g * 1[|x| <= 1]``, no scale."""


ENTRY = QuantizerEntry(
    name="bifsmn_code",
    weight=BiFSMNCodeWeightQuantizer,
    input=BiFSMNCodeInputQuantizer,
    params=BiFSMNCodeParams,
    precision=1,
    packing=None,
    not_deployable_reason=NOT_DEPLOYABLE_REASON,
    description="Official BiFSMN v1 'Vanilla' scales (per row; per (out, in) after global "
    "centring for convs), for reproducing the paper; not deployable.",
    reference="Qin et al., BiFSMN: Binary Neural Network for Keyword Spotting, IJCAI 2022, "
    "arXiv:2202.06483",
)


# --- bifsmn: the deployable variant -----------------------------------------------------------


def bifsmn_weight(w: torch.Tensor) -> torch.Tensor:
    """``sg(mean |W_o|) * sign(W)`` per output channel, STE ``g * 1[|W| <= 1]``; same shape."""
    scale = w.detach().abs().reshape(w.shape[0], -1).mean(dim=1)  # (out,)
    return _ScaledSignSTE.apply(w, scale.reshape((-1,) + (1,) * (w.dim() - 1)))


class BiFSMNWeightQuantizer(WeightQuantizer):
    """Deployable BiFSMN weights (:func:`bifsmn_weight`); ``export_scale`` is ``mean |W_o|``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return bifsmn_weight(w)


class BiFSMNParams(BaseModel):
    """Params of the deployable ``bifsmn`` method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activation_grad: Literal["ste", "approxsign"] = Field(
        "ste",
        description="backward of the input sign: 'ste' is the reference's clipped STE "
        "g * 1[|x| <= 1]; 'approxsign' is Bi-Real Net's g * max(2 - 2|x|, 0) (an ablation; "
        "the forward pass and the export do not change)",
    )


class BiFSMNInputQuantizer(BiFSMNCodeInputQuantizer):
    """``sign(x)``; backward per ``params.activation_grad`` (clipped STE or ApproxSign)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.params, "activation_grad", "ste") == "approxsign":
            return approx_sign(x)
        return super().forward(x)


DEPLOYABLE_ENTRY = QuantizerEntry(
    name="bifsmn",
    weight=BiFSMNWeightQuantizer,
    input=BiFSMNInputQuantizer,
    params=BiFSMNParams,
    precision=1,
    packing="sign",
    description="BiFSMN, deployable: the code's per-row rule applied per output channel to every "
    "layer (sign inputs, clipped STE); the default for BiFSMN models.",
    reference="Qin et al., BiFSMN: Binary Neural Network for Keyword Spotting, IJCAI 2022, "
    "arXiv:2202.06483 (per-channel variant: shared/reference/bifsmn.md section 4.1)",
)
