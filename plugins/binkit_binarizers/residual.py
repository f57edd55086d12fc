"""Residual (bit-serial multi-plane) binarization: weights and inputs as sums of scaled sign planes.

Weights, per output channel ``o`` (``W_o`` its weights, ``n`` their count ``in/groups * taps``),
greedy residual approximation with ``P = weight_planes`` planes (Network Sketching)::

    R_1 = W_o
    for p = 1..P:   B_p = sign(R_p),   alpha_{p,o} = sg(mean |R_p|),   R_{p+1} = R_p - alpha_{p,o} B_p
    forward:   W~_o = sum_p alpha_{p,o} B_p
    backward:  g_W  = g * 1[|W| <= 1]                         (clipped STE, scales detached)

Inputs, residual sign with ``Q = input_planes`` planes and per-layer scales (ReBNet)::

    r_1 = x
    for q = 1..Q:   b_q = sign(r_q),   r_{q+1} = r_q - a_q b_q
    forward:   x~ = sum_q a_q b_q
    backward:  g_x   = g * 1[|x| <= 1]                        (clipped STE)
               g_a_q = sum(g * b_q)                           (straight through: b_q held fixed)

``a_1 = 1`` is fixed (a BatchNorm after the layer absorbs any global scale, and the first plane
is then exactly the one-plane binary activation); ``a_q = exp(theta_q)`` for ``q >= 2``, kept
positive by the parametrisation, learnable, initialised to ``2^-(q-1)`` (0.5, 0.25, 0.125: the
binary expansion of a value in [-2, 2)). sign(0) = +1 everywhere, so ``x = 0`` gives
``b_1 = +1, b_2 = -1, ...`` (``x~ = 1 - 0.5 - ...``, positive).

With ``weight_planes = input_planes = 1`` the forward is exactly the XNOR-Net layer
(``alpha_o sign(W)`` with ``alpha_o = mean |W_o|``, ``sign(x)`` inputs; only the weight backward
differs: the plain clipped STE instead of XNOR's ``1/n + alpha 1[.]``), and it exports to the
same one-plane ops.

Export (``packing="bitplanes"``): :meth:`ResidualWeightQuantizer.export_planes` gives the planes
``B_p`` and the scales ``alpha_{p,o}``; :meth:`ResidualInputQuantizer.export_input_scales` gives
``a_q``. The binary ops compute ``sum_{p,q} alpha_{p,o} a_q dot(b_q, B_p)`` with one
XNOR-popcount per plane pair (bit-serial), then the folded BN/bias transform.

Args:
    weight_planes: number of weight planes ``P``, 1..4 (the entry's ``precision_param``).
    input_planes: number of activation planes ``Q``, 1..4.

Deviations: Network Sketching also proposes a refined ("refined residual") variant that
re-solves all scales jointly by least squares; only the greedy residual form is implemented
(the scales of a plane never depend on later planes, which keeps export a direct read-out).
ReBNet learns all ``Q`` scales and uses them in hardware with a fixed sign threshold; here
``a_1 = 1``. ReBNet's per-layer scales are kept per layer (not per channel), so one scalar per
plane reaches the engine.

References: Guo et al., "Network Sketching: Exploiting Binary Structure in Deep CNNs", CVPR
2017, https://arxiv.org/abs/1706.02021 (weights); Ghasemzadeh et al., "ReBNet: Residual
Binarized Neural Network", FCCM 2018, https://arxiv.org/abs/1711.01243 (inputs).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from binkit.entries import QuantizerEntry
from binkit.quant.base import (
    MAX_PLANES,
    InputQuantizer,
    NotDeployableError,
    WeightQuantizer,
)
from binkit.quant.functional import sign

__all__ = [
    "ResidualParams",
    "residual_weight_planes",
    "residual_weight",
    "residual_input",
    "ResidualWeightQuantizer",
    "ResidualInputQuantizer",
    "ENTRY",
]


class ResidualParams(BaseModel):
    """Params of the ``residual`` method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_planes: int = Field(2, ge=1, le=MAX_PLANES,
                               description="Weight bit-planes P (1 = XNOR-style alpha_o * sign(W)).")
    input_planes: int = Field(2, ge=1, le=MAX_PLANES,
                              description="Activation bit-planes Q (1 = sign(x)).")


def residual_weight_planes(w: torch.Tensor, planes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy residual planes of ``w`` ``(out, ...)``; no gradient.

    Returns ``(signs (P, *w.shape), scales (P, out))`` in ``w``'s dtype, with ``signs[p] = B_p``
    and ``scales[p] = alpha_{p, :}`` of the module docstring.
    """
    if not 1 <= planes <= MAX_PLANES:
        raise ValueError(f"weight planes must be in 1..{MAX_PLANES}, got {planes}")
    r = w.detach()
    out = w.shape[0]
    bshape = (out,) + (1,) * (w.dim() - 1)
    signs, scales = [], []
    for _ in range(planes):
        b = sign(r)
        a = r.abs().reshape(out, -1).mean(dim=1)  # alpha_{p,o} = mean |R_p| per output channel
        signs.append(b)
        scales.append(a)
        r = r - a.reshape(bshape) * b
    return torch.stack(signs), torch.stack(scales)


def _combine(signs: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``sum_p scales[p, o] * signs[p]``, accumulated in plane order."""
    bshape = (signs.shape[1],) + (1,) * (signs.dim() - 2)
    q = scales[0].reshape(bshape) * signs[0]
    for p in range(1, signs.shape[0]):
        q = q + scales[p].reshape(bshape) * signs[p]
    return q


class _ResidualWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, planes: int) -> torch.Tensor:
        ctx.save_for_backward(w)
        return _combine(*residual_weight_planes(w, planes))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1.0).to(g.dtype), None


def residual_weight(w: torch.Tensor, planes: int) -> torch.Tensor:
    """Residual weight binarization, ``(out, ...) -> (out, ...)``.

    Forward: ``sum_p alpha_{p,o} B_p`` (module docstring). Backward: ``g * 1[|W| <= 1]``.
    """
    return _ResidualWeight.apply(w, int(planes))


class _ResidualInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        scales = torch.cat([torch.ones(1, dtype=tail.dtype, device=tail.device), tail])
        r = x
        out = None
        negative = []  # b_q < 0, as bool (cheaper to keep than float planes)
        for a in scales.to(x.dtype):
            b = sign(r)
            negative.append(b < 0)
            out = a * b if out is None else out + a * b
            r = r - a * b
        ctx.save_for_backward(x, torch.stack(negative))
        ctx.tail_dtype = tail.dtype
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, negative = ctx.saved_tensors
        g_x = g * (x.abs() <= 1.0).to(g.dtype)
        g_tail = None
        if ctx.needs_input_grad[1] and negative.shape[0] > 1:
            b = 1.0 - 2.0 * negative[1:].to(g.dtype)  # (Q-1, *x.shape)
            g_tail = (b * g).reshape(b.shape[0], -1).sum(dim=1).to(ctx.tail_dtype)
        return g_x, g_tail


def residual_input(x: torch.Tensor, tail_scales: torch.Tensor) -> torch.Tensor:
    """Residual sign activation: ``sum_q a_q b_q`` with ``a_1 = 1``, ``a_{2..Q} = tail_scales``.

    Forward and backward as in the module docstring (``tail_scales`` ``(Q-1,)``, may be empty).
    """
    return _ResidualInput.apply(x, tail_scales)


class ResidualWeightQuantizer(WeightQuantizer):
    """``sum_p alpha_{p,o} B_p`` (:func:`residual_weight`); ``precision`` is ``weight_planes``."""

    def __init__(self, params: ResidualParams | None = None, weight_shape: tuple[int, ...] = ()) -> None:
        super().__init__(params if params is not None else ResidualParams(), weight_shape)
        self.precision = self.params.weight_planes

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return residual_weight(w, self.params.weight_planes)

    @torch.no_grad()
    def export_planes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B (P, *w.shape), alpha (P, out))``, computed exactly as ``forward`` computes them."""
        return residual_weight_planes(w.detach(), self.params.weight_planes)

    @torch.no_grad()
    def export_scale(self, w: torch.Tensor) -> torch.Tensor:
        """``alpha_{1,o}`` with one plane; several planes are not ``±scale`` (use export_planes)."""
        if self.params.weight_planes != 1:
            raise NotDeployableError(
                f"{type(self).__name__}: {self.params.weight_planes} weight planes are not ±scale per "
                "output channel; export them with export_planes"
            )
        return residual_weight_planes(w.detach(), 1)[1][0]


class ResidualInputQuantizer(InputQuantizer):
    """Residual sign activation (:func:`residual_input`); ``precision`` is ``input_planes``.

    Learnable ``log_scales`` ``(Q-1,)``: ``a_q = exp(log_scales[q-2])`` for ``q >= 2``
    (``None`` when ``Q = 1``).
    """

    def __init__(self, params: ResidualParams | None = None, num_channels: int = 0, channel_dim: int = 1) -> None:
        super().__init__(params if params is not None else ResidualParams(), num_channels, channel_dim)
        q = self.params.input_planes
        self.precision = q
        if q > 1:
            init = torch.tensor([-(i + 1) * math.log(2.0) for i in range(q - 1)], dtype=torch.float32)
            self.log_scales = nn.Parameter(init)
        else:
            self.register_parameter("log_scales", None)

    def _tail(self, like: torch.Tensor) -> torch.Tensor:
        if self.log_scales is None:
            return torch.zeros(0, dtype=like.dtype, device=like.device)
        return torch.exp(self.log_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return residual_input(x, self._tail(x))

    @torch.no_grad()
    def export_input_scales(self) -> torch.Tensor:
        """``(Q,)``: ``[1, a_2, ..., a_Q]`` (float32 unless the parameters are another dtype)."""
        tail = self._tail(torch.zeros((), dtype=torch.float32))
        return torch.cat([torch.ones(1, dtype=tail.dtype, device=tail.device), tail]).detach()


ENTRY = QuantizerEntry(
    name="residual",
    weight=ResidualWeightQuantizer,
    input=ResidualInputQuantizer,
    params=ResidualParams,
    precision=2,
    precision_param="weight_planes",
    packing="bitplanes",
    description="Greedy residual bit-planes: weights sum_p alpha_{p,o} B_p, inputs sum_q a_q b_q "
    "(learnable a_q); bit-serial XNOR-popcount per plane pair.",
    reference="Guo et al., Network Sketching: Exploiting Binary Structure in Deep CNNs, CVPR 2017, "
    "arXiv:1706.02021; Ghasemzadeh et al., ReBNet: Residual Binarized Neural Network, FCCM 2018, "
    "arXiv:1711.01243",
)
