"""ReActNet: RSign inputs with learnable per-channel thresholds, RPReLU, Bi-Real weights.

Inputs (RSign, one learnable threshold ``alpha_c`` per channel ``c``, initialised to 0)::

    forward:   q         = sign(x - alpha_c)                      sign(0) = +1
    backward:  g_x       = g * max(2 - 2|x - alpha_c|, 0)         ApproxSign of Bi-Real Net
               g_alpha_c = - sum over all but the channel axis of g_x

Weights: as Bi-Real Net (:func:`binkit_binarizers.bireal.magnitude_aware_sign`)::

    forward:   W_b = sg(mean |W_o|) * sign(W)
    backward:  g_W = g * 1[|W| <= 1]

RPReLU (replaces each PReLU of a binarized model; the entry's ``activation``)::

    f(x) = x - gamma_c + zeta_c              if x > gamma_c
         = beta_c * (x - gamma_c) + zeta_c   otherwise

i.e. a learnable bias (``-gamma``), a PReLU (slope ``beta``), a learnable bias (``zeta``).

Export (packing ``"sign"``): the threshold becomes an ``affine`` op (multiplier 1, offset
``-alpha``) in front of an ordinary sign layer, and RPReLU lowers itself
(:meth:`RPReLU.export_lowering`) to ``affine`` (offset ``-gamma``), ``prelu`` (``beta``),
``affine`` (offset ``zeta``).

Args:
    learn_thresholds: true (default) learns RSign's per-channel thresholds; false keeps them at
        0, so inputs are plain ``sign(x)`` with the ApproxSign backward while the model keeps
        RPReLU and the Bi-Real weights (an ablation: RPReLU's learned shifts without RSign's).

Deviations: sign(0) = +1 (the reference uses ``torch.sign``). The reference stores the shift as
a bias ``b`` added before the sign (``sign(x + b)``); binkit stores the threshold ``alpha = -b``.
The two-step training recipe and the distribution-KD loss belong to the trainer and distillers.

Reference: Liu et al., "ReActNet: Towards Precise Binary Neural Network with Generalized
Activation Functions", ECCV 2020, https://arxiv.org/abs/2003.03488
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from binkit.entries import QuantizerEntry
from binkit.quant.base import InputQuantizer
from binkit.quant.functional import approx_sign
from binkit_binarizers.bireal import BiRealWeightQuantizer

__all__ = [
    "ReActNetParams",
    "rsign",
    "rprelu",
    "ReActNetWeightQuantizer",
    "RSignInputQuantizer",
    "RPReLU",
    "rprelu_from_prelu",
    "ENTRY",
]


class ReActNetParams(BaseModel):
    """Params of the ``reactnet`` method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learn_thresholds: bool = Field(
        True, description="learn RSign's per-channel input thresholds; false: plain sign(x) "
        "(ApproxSign backward), keeping RPReLU and the Bi-Real weights")


def rsign(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``sign(x - threshold)`` with the ApproxSign backward for both ``x`` and ``threshold``.

    ``threshold`` must broadcast against ``x`` (a per-channel vector reshaped onto the channel
    axis); its gradient is minus the surrogate gradient, summed over the broadcast axes.
    """
    return approx_sign(x - threshold)


def rprelu(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, zeta: torch.Tensor
) -> torch.Tensor:
    """``y = x - gamma`` then ``PReLU(y; beta) + zeta``; all three broadcast against ``x``.

    Equals ``x - gamma + zeta`` where ``x > gamma`` and ``beta (x - gamma) + zeta`` elsewhere.
    """
    y = x - gamma
    return torch.where(y > 0, y, beta * y) + zeta


class ReActNetWeightQuantizer(BiRealWeightQuantizer):
    """Bi-Real's magnitude-aware weights, ``sg(mean|W_o|) * sign(W)``."""


class RSignInputQuantizer(InputQuantizer):
    """RSign: ``sign(x - alpha_c)`` with a learnable ``threshold`` of shape ``(num_channels,)``.

    With ``learn_thresholds = false`` the module has no threshold and computes ``sign(x)`` with the
    ApproxSign backward (it then exports as a plain sign layer).
    """

    def __init__(
        self, params: BaseModel | None = None, num_channels: int = 0, channel_dim: int = 1
    ) -> None:
        params = params if params is not None else ReActNetParams()
        super().__init__(params, num_channels, channel_dim)
        if self.num_channels < 1:
            raise ValueError(
                f"RSign needs num_channels >= 1 (one threshold per channel); got {num_channels}"
            )
        learn = getattr(params, "learn_thresholds", True)
        self.threshold = nn.Parameter(torch.zeros(self.num_channels)) if learn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.threshold is None:
            return approx_sign(x)
        return rsign(x, self._broadcast(self.threshold, x))


class RPReLU(nn.Module):
    """ReActNet's RPReLU, ``f(x) = PReLU(x - gamma; beta) + zeta`` per channel.

    Args:
        num_parameters: number of channels, or 1 for scalars shared by all channels.
        init: initial slope ``beta`` (``gamma`` and ``zeta`` start at 0), as ``nn.PReLU``.
        channel_dim: axis of ``x`` holding the channels (1 for ``(batch, channels, ...)``).

    Shapes: ``(batch, channels, ...) -> same`` (any shape with ``channels`` on ``channel_dim``).
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, channel_dim: int = 1) -> None:
        super().__init__()
        if num_parameters < 1:
            raise ValueError(f"num_parameters must be >= 1; got {num_parameters}")
        self.num_parameters = int(num_parameters)
        self.channel_dim = int(channel_dim)
        self.gamma = nn.Parameter(torch.zeros(self.num_parameters))
        self.beta = nn.Parameter(torch.full((self.num_parameters,), float(init)))
        self.zeta = nn.Parameter(torch.zeros(self.num_parameters))

    def _broadcast(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.num_parameters == 1:
            return v.reshape(())  # (1,) -> scalar, any input rank
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return v.reshape(shape)  # (C,) -> (1, C, 1, ...) on channel_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self._broadcast
        return rprelu(x, b(self.gamma, x), b(self.beta, x), b(self.zeta, x))

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}, channel_dim={self.channel_dim}"

    def export_lowering(self, builder, x: str, name: str) -> str:
        """Artifact ops for :mod:`binkit.export`: ``affine(1, -gamma)``, ``prelu(beta)``,
        ``affine(1, zeta)`` along the value's channel axis (axis 0 of the per-example shape, which
        is torch's axis 1); the shifts as per-channel vectors (scalars repeated), the slope as
        given (one, or one per channel)."""
        if self.channel_dim != 1:
            from binkit.export import ExportError

            raise ExportError(f"layer {name!r}: RPReLU with channel_dim={self.channel_dim} cannot be exported "
                              "(the artifact's activations take channels on the first per-example axis)")
        channels = builder.shape(x)[0]

        def vector(v: torch.Tensor) -> np.ndarray:
            a = v.detach().double().cpu().numpy().reshape(-1)
            return np.repeat(a, channels) if a.size == 1 else a

        ones = builder.ones(channels)
        shift = builder.tensor(f"{name}.shift", -vector(self.gamma))
        slope = builder.tensor(f"{name}.slope", self.beta.detach().double().cpu().numpy().reshape(-1))
        bias = builder.tensor(f"{name}.bias", vector(self.zeta))
        x = builder.emit("affine", [x], name=name, attrs={"axis": 0},
                         tensors={"multiplier": ones, "offset": shift}, output=f"{name}.shift")
        x = builder.emit("prelu", [x], name=name, attrs={"axis": 0}, tensors={"slope": slope},
                         output=f"{name}.prelu")
        return builder.emit("affine", [x], name=name, attrs={"axis": 0},
                            tensors={"multiplier": ones, "offset": bias}, output=name)


def rprelu_from_prelu(prelu: nn.PReLU) -> RPReLU:
    """An :class:`RPReLU` replacing ``prelu``: same parameter count, slope copied from it.

    ``gamma`` and ``zeta`` start at 0, so the new module computes exactly what ``prelu`` did.
    """
    weight = prelu.weight.detach()
    new = RPReLU(num_parameters=prelu.num_parameters, channel_dim=1)
    new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.beta.copy_(weight.reshape(-1))
    new.train(prelu.training)
    return new


ENTRY = QuantizerEntry(
    name="reactnet",
    weight=ReActNetWeightQuantizer,
    input=RSignInputQuantizer,
    params=ReActNetParams,
    precision=1,
    packing="sign",
    description="RSign inputs (learnable per-channel threshold, ApproxSign backward; "
    "learn_thresholds = false: plain sign), Bi-Real weights; PReLUs become RPReLU.",
    reference="Liu et al., ReActNet: Towards Precise Binary Neural Network with Generalized "
    "Activation Functions, ECCV 2020, arXiv:2003.03488",
    activation=rprelu_from_prelu,
)
