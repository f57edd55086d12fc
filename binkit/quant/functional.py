"""Quantizer math: forward maps with surrogate gradients, as pure functions.

Every function here takes all tensors explicitly and returns a tensor of the input's shape.
Binary outputs follow binkit's convention **sign(0) = +1** (``x >= 0 -> +1``), never
``torch.sign``, so training and the engine agree bit for bit on exact zeros.

Notation as in ``shared/reference/binarizers.md``: ``g`` is the upstream gradient, ``g_x`` the
gradient passed back, ``1[.]`` the indicator.
"""

from __future__ import annotations

import torch

__all__ = [
    "sign",
    "ste_sign",
    "approx_sign",
    "ede_sign",
    "round_ste",
    "quantize_k",
    "per_channel_mean_abs",
    "residual_sign_planes",
]


def sign(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x >= 0`` else ``-1`` (so sign(0) = +1), same dtype; no gradient."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, clip_value: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip_value = clip_value
        return sign(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        if ctx.clip_value is None:
            return g, None
        return g * (x.abs() <= ctx.clip_value).to(g.dtype), None


def ste_sign(x: torch.Tensor, clip_value: float | None = 1.0) -> torch.Tensor:
    """Sign with the (clipped) straight-through estimator.

    Forward: ``q = sign(x)`` with sign(0) = +1.
    Backward: ``g_x = g * 1[|x| <= clip_value]``; ``clip_value=None`` gives the identity.

    Reference: Courbariaux, Hubara et al., "Binarized Neural Networks", 2016, arXiv:1602.02830.
    """
    return _SignSTE.apply(x, clip_value)


class _ApproxSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        # d/dx F(x) = 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere  ==  max(2 - 2|x|, 0)
        return g * torch.clamp(2.0 - 2.0 * x.abs(), min=0.0)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """Sign with Bi-Real Net's ApproxSign backward.

    Forward: ``q = sign(x)`` (sign(0) = +1).
    Backward: ``g_x = g * (2 + 2x)`` on ``[-1, 0)``, ``g * (2 - 2x)`` on ``[0, 1)``, 0 elsewhere
    (the derivative of the piecewise quadratic ``F``).

    Reference: Liu et al., "Bi-Real Net", ECCV 2018, arXiv:1808.00278.
    """
    return _ApproxSign.apply(x)


class _EDESign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: float, t: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.k, ctx.t = k, t
        return sign(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        k, t = ctx.k, ctx.t
        return g * (k * t) * (1.0 - torch.tanh(t * x) ** 2), None, None


def ede_sign(x: torch.Tensor, k: float, t: float) -> torch.Tensor:
    """Sign with IR-Net's Error Decay Estimator backward.

    Forward: ``q = sign(x)`` (sign(0) = +1).
    Backward: ``g_x = g * k * t * (1 - tanh^2(t * x))``.

    Reference: Qin et al., "Forward and Backward Information Retention for Accurate Binary
    Neural Networks" (IR-Net), CVPR 2020, arXiv:1909.10788.
    """
    return _EDESign.apply(x, float(k), float(t))


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        return g


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity gradient."""
    return _RoundSTE.apply(x)


def quantize_k(x: torch.Tensor, k: int) -> torch.Tensor:
    """DoReFa's ``quantize_k(x) = round((2^k - 1) x) / (2^k - 1)`` with identity gradient.

    Expects ``x`` in ``[0, 1]``. Reference: Zhou et al., "DoReFa-Net", 2016, arXiv:1606.06160.
    """
    n = float(2**k - 1)
    return round_ste(x * n) / n


def per_channel_mean_abs(w: torch.Tensor) -> torch.Tensor:
    """``mean |W_o|`` over all but the first (output-channel) axis, shaped to broadcast on ``w``.

    ``w``: ``(out, ...)`` -> ``(out, 1, ..., 1)``.
    """
    return w.abs().reshape(w.shape[0], -1).mean(dim=1).reshape((-1,) + (1,) * (w.dim() - 1))


def residual_sign_planes(x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Greedy residual sign decomposition of ``x`` with fixed plane scales; no gradient.

    With ``Q = len(scales)`` and ``a_q = scales[q]``::

        r_1 = x,   b_q = sign(r_q)  (sign(0) = +1),   r_{q+1} = r_q - a_q * b_q

    Returns the planes ``b`` stacked, ``(Q, *x.shape)`` in ``{+1, -1}`` (``x``'s dtype), so that
    ``sum_q a_q * b_q`` approximates ``x``. This is the input side of bit-serial multi-plane
    binary ops (artifact attr ``input_planes``, role ``input_scales``); export uses it to check
    that an input quantizer computes exactly this decomposition with its exported scales.
    """
    scales = scales.detach().to(x.dtype)
    r = x.detach()
    planes = []
    for a in scales:
        b = sign(r)
        planes.append(b)
        r = r - a * b
    return torch.stack(planes)
