"""The quantizer protocol: what a binarizer plugin's classes implement.

A binarizer *method* (one config name, see :class:`binkit.entries.QuantizerEntry`) pairs a
**weight quantizer** and an **input quantizer**. Both are ``nn.Module`` subclasses of the classes
below; their ``forward`` is one call into a pure function (``binkit.quant.functional`` or the
plugin's own), and their docstrings give forward and backward as formulas.

Weight quantizers see the layer's latent float weight ``(out, in/groups, *kernel)`` and return
its quantized version, same shape. Deployable ones also say how the result decomposes into
``sign(W) * scale_o`` (:meth:`WeightQuantizer.export_scale`), which export folds into the
per-channel multiplier. Input quantizers see activations with channels on ``channel_dim``.

Bit-serial multi-plane quantizers (``packing="bitplanes"`` methods such as ``residual``) export
through two more hooks, which the one-plane quantizers inherit with one-plane defaults:

* :meth:`WeightQuantizer.export_planes` -> ``(signs (P, *w.shape) in {+1, -1}, scales (P, out))``
  with ``forward(w) == sum_p scales[p, o] * signs[p]`` (``P`` in 1..4);
* :meth:`InputQuantizer.export_input_scales` -> ``(Q,)`` positive scales ``a_q`` such that
  ``forward(x) == sum_q a_q * b_q`` with the planes ``b_q`` of the greedy residual sign
  decomposition (:func:`binkit.quant.functional.residual_sign_planes`: ``r_1 = x``,
  ``b_q = sign(r_q)``, ``r_{q+1} = r_q - a_q b_q``), or ``None`` for a quantizer that is not of
  that form (export then probes what ``forward`` computes: sign, threshold, {0, 1}, ...).

Export checks both decompositions numerically on the layer's weight and on probe inputs before it
trusts them, and writes them as the ``weight_planes``/``input_planes`` attributes and the
``weight_scales``/``input_scales`` tensors of the binary ops (:mod:`binkit.runtime.artifact`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from binkit.entries import NoParams
from binkit.quant.functional import sign, ste_sign
from binkit.runtime.artifact import MAX_PLANES as _ARTIFACT_MAX_PLANES

__all__ = ["Quantizer", "WeightQuantizer", "InputQuantizer", "SteSignInputQuantizer", "NotDeployableError",
           "MAX_PLANES"]

#: Largest number of bit-planes a multi-plane binary op takes (weights or inputs); the artifact
#: format's limit (:data:`binkit.runtime.artifact.MAX_PLANES`).
MAX_PLANES = _ARTIFACT_MAX_PLANES


class NotDeployableError(ValueError):
    """The quantizer's scale rule cannot be folded into a per-output-channel multiplier."""


class Quantizer(nn.Module):
    """Base class. ``precision`` is the bit width of the values this quantizer produces."""

    precision: int = 1
    role: ClassVar[str] = ""

    def __init__(self, params: BaseModel | None = None) -> None:
        super().__init__()
        self.params = params if params is not None else NoParams()

    def update_schedule(self, epoch: int, epochs: int) -> None:
        """Called by the trainer at the start of each epoch (0-based). Default: nothing."""

    def extra_repr(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"precision={self.precision}" + (f", {fields}" if fields else "")


class WeightQuantizer(Quantizer):
    """Quantizes a layer's weight. Constructed as ``cls(params, weight_shape)``."""

    role = "weight"

    def __init__(self, params: BaseModel | None = None, weight_shape: tuple[int, ...] = ()) -> None:
        super().__init__(params)
        self.weight_shape = tuple(weight_shape)

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def constrain_(self, w: torch.Tensor) -> None:
        """Project the latent weight in place after an optimizer step (BNN clips to [-1, 1]).

        Default: nothing. Called by :func:`binkit.quant.apply_constraints`.
        """

    @torch.no_grad()
    def export_scale(self, w: torch.Tensor) -> torch.Tensor:
        """Per-output-channel scale ``s_o`` such that ``forward(w) == sign(w') * s_o``.

        Returns ``(out,)``. Raises :class:`NotDeployableError` when no such scale exists.
        The default derives it from ``forward`` and checks the decomposition holds.
        """
        q = self.forward(w).detach()
        flat = q.reshape(q.shape[0], -1)
        scale = flat.abs().amax(dim=1)
        if not torch.allclose(flat.abs(), scale[:, None].expand_as(flat), rtol=1e-6, atol=0.0):
            raise NotDeployableError(
                f"{type(self).__name__}: quantized weights are not ±scale per output channel"
            )
        return scale

    @torch.no_grad()
    def export_planes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bit-plane decomposition of the quantized weight, for bit-serial export.

        Returns ``(signs, scales)``: ``signs`` ``(P, *w.shape)`` with values in ``{+1, -1}``
        (sign(0) = +1) and ``scales`` ``(P, out)``, such that
        ``forward(w) == sum_p scales[p, :, None, ...] * signs[p]``, ``1 <= P <=`` :data:`MAX_PLANES`.

        The default is one plane: ``signs = sign(forward(w))``, ``scales = export_scale(w)``;
        multi-plane methods override it. Raises :class:`NotDeployableError` when no such
        decomposition exists.
        """
        scale = self.export_scale(w)
        return sign(self.forward(w).detach())[None], scale[None]


class InputQuantizer(Quantizer):
    """Quantizes a layer's input. Constructed as ``cls(params, num_channels, channel_dim)``.

    ``channel_dim`` is 1 for convolutions ``(batch, channels, ...)`` and -1 for linear layers
    ``(..., features)``.
    """

    role = "input"

    def __init__(
        self, params: BaseModel | None = None, num_channels: int = 0, channel_dim: int = 1
    ) -> None:
        super().__init__(params)
        self.num_channels = int(num_channels)
        self.channel_dim = int(channel_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _broadcast(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Reshape a per-channel vector ``(C,)`` to broadcast along ``channel_dim`` of ``x``."""
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return v.reshape(shape)

    @torch.no_grad()
    def export_input_scales(self) -> torch.Tensor | None:
        """Plane scales ``a_q`` ``(Q,)`` (all > 0) of a residual sign quantizer, or ``None``.

        A quantizer returning scales promises ``forward(x) == sum_q a_q * b_q`` with ``b_q`` the
        planes of :func:`binkit.quant.functional.residual_sign_planes` (so ``Q = 1, a_1 = 1`` is
        plain ``sign(x)``). Default ``None``: not of that form; export probes ``forward``.
        """
        return None


class SteSignInputQuantizer(InputQuantizer):
    """The common binary activation: ``sign(x)`` (sign(0) = +1) with the clipped STE.

    Forward ``q = sign(x)``; backward ``g_x = g * 1[|x| <= clip_value]``, with ``clip_value``
    read from the params when they have that field, else 1.0. Methods that binarize
    activations this way (BNN, XNOR-Net, the BiFSMN code) share it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ste_sign(x, getattr(self.params, "clip_value", 1.0))
