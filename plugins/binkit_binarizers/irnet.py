"""IR-Net: Libra-PB weights and the Error Decay Estimator (EDE) for weights and inputs.

Weights (Libra Parameter Binarization, per output channel ``o``, ``n`` elements each)::

    W^   = (W - mean(W_o)) / std(W_o)              std unbiased (n - 1), as in htqin/IR-Net
    s_o  = sg(2 ^ round(log2(mean |W^_o|)))         a power of two (bit-shift scale)
    W_b  = sign(W^) * s_o                           sign(0) = +1

Inputs::

    q = sign(x)

EDE backward, for ``sign`` in both (``x`` is ``W^`` for weights)::

    g_x = g * k * t * (1 - tanh^2(t * x))

and the weight gradient continues through the standardisation by autograd (the mean and the std
both depend on W). Note that ``W_b`` is ``sign(W^)``, not ``sign(W)``: standardisation shifts the
zero crossing to the channel mean. ``|W_b| = s_o`` is constant per channel, so ``export_scale``
returns ``s_o``.

EDE schedule, updated by the trainer at the start of each epoch (``update_schedule``)::

    t = 10 ^ (log10 t_min + (log10 t_max - log10 t_min) * epoch / epochs)
    k = max(1 / t, 1)

Epoch 0 gives ``t = t_min`` (with the defaults ``k * t = 1``: nearly the identity); ``t`` grows
geometrically and reaches ``t_max`` only at ``epoch = epochs``, i.e. the last epoch (``epochs - 1``)
runs at ``10 ^ (... * (epochs - 1) / epochs)``, exactly as the reference ``cpt_tk``. A freshly built
quantizer holds the epoch-0 values.

Args (params model :class:`IRNetParams`):
    t_min: EDE temperature at epoch 0 (> 0).
    t_max: EDE temperature the schedule approaches at the end (>= t_min).

Deviations: sign(0) = +1 (the reference uses ``torch.sign``). A channel with fewer than two
weights has no unbiased std and is refused at construction; a constant channel (std 0) gives
NaN, as in the reference.

Reference: Qin et al., "Forward and Backward Information Retention for Accurate Binary Neural
Networks", CVPR 2020, https://arxiv.org/abs/1909.10788
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from binkit.entries import QuantizerEntry
from binkit.quant.base import InputQuantizer, WeightQuantizer
from binkit.quant.functional import ede_sign

__all__ = [
    "IRNetParams",
    "ede_schedule",
    "libra_pb_weight",
    "IRNetWeightQuantizer",
    "IRNetInputQuantizer",
    "ENTRY",
]


class IRNetParams(BaseModel):
    """Params of the ``irnet`` method: the EDE temperature range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t_min: float = Field(1e-3, gt=0.0, description="EDE temperature t at epoch 0.")
    t_max: float = Field(
        10.0, gt=0.0, description="EDE temperature t approached at the last epoch."
    )

    @model_validator(mode="after")
    def _check_range(self) -> "IRNetParams":
        if self.t_min > self.t_max:
            raise ValueError(
                f"t_min ({self.t_min}) must not exceed t_max ({self.t_max}); the EDE schedule "
                "raises t from t_min towards t_max"
            )
        return self


def ede_schedule(epoch: int, epochs: int, t_min: float, t_max: float) -> tuple[float, float]:
    """EDE ``(t, k)`` at the start of ``epoch`` (0-based) of ``epochs``.

    ``t = 10^(log10 t_min + (log10 t_max - log10 t_min) * epoch / epochs)``, ``k = max(1/t, 1)``.
    """
    if epochs <= 0 or epoch < 0:
        raise ValueError(f"need epochs > 0 and epoch >= 0; got epoch={epoch}, epochs={epochs}")
    lo, hi = math.log10(t_min), math.log10(t_max)
    t = 10.0 ** (lo + (hi - lo) * epoch / epochs)
    return t, max(1.0 / t, 1.0)


def libra_pb_weight(w: torch.Tensor, k: float, t: float) -> torch.Tensor:
    """Libra-PB weights, ``(out, ...) -> (out, ...)``: ``ede_sign(W^, k, t) * s_o``.

    ``W^`` standardises each output channel (mean, unbiased std, with gradient);
    ``s_o = sg(2^round(log2(mean |W^_o|)))``.
    """
    flat = w.reshape(w.shape[0], -1)  # (out, n)
    w_hat = (flat - flat.mean(dim=1, keepdim=True)) / flat.std(dim=1, keepdim=True)
    s = torch.exp2(torch.round(torch.log2(w_hat.detach().abs().mean(dim=1, keepdim=True))))
    return (ede_sign(w_hat, k, t) * s).reshape(w.shape)


class _EDEScheduled:
    """Shared state of both IR-Net quantizers: ``t`` and ``k`` as Python floats."""

    t: float
    k: float
    params: IRNetParams

    def _init_schedule(self) -> None:
        self.t, self.k = ede_schedule(0, 1, self.params.t_min, self.params.t_max)

    def update_schedule(self, epoch: int, epochs: int) -> None:
        self.t, self.k = ede_schedule(epoch, epochs, self.params.t_min, self.params.t_max)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", t={self.t:.4g}, k={self.k:.4g}"  # type: ignore[misc]


class IRNetWeightQuantizer(_EDEScheduled, WeightQuantizer):
    """Libra-PB weights with EDE; see :func:`libra_pb_weight`."""

    def __init__(self, params: IRNetParams | None = None, weight_shape: tuple[int, ...] = ()):
        super().__init__(params if params is not None else IRNetParams(), weight_shape)
        if len(self.weight_shape) >= 2 and math.prod(self.weight_shape[1:]) < 2:
            raise ValueError(
                f"irnet weights need at least 2 elements per output channel to standardise "
                f"(unbiased std); got weight_shape={self.weight_shape}"
            )
        self._init_schedule()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return libra_pb_weight(w, self.k, self.t)


class IRNetInputQuantizer(_EDEScheduled, InputQuantizer):
    """``sign(x)`` with the EDE backward (:func:`binkit.quant.functional.ede_sign`)."""

    def __init__(
        self, params: IRNetParams | None = None, num_channels: int = 0, channel_dim: int = 1
    ) -> None:
        super().__init__(params if params is not None else IRNetParams(), num_channels, channel_dim)
        self._init_schedule()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ede_sign(x, self.k, self.t)


ENTRY = QuantizerEntry(
    name="irnet",
    weight=IRNetWeightQuantizer,
    input=IRNetInputQuantizer,
    params=IRNetParams,
    precision=1,
    packing="sign",
    description="IR-Net: standardised weights with power-of-two scales (Libra-PB) and the EDE "
    "gradient schedule for weights and inputs.",
    reference="Qin et al., Forward and Backward Information Retention for Accurate Binary Neural "
    "Networks, CVPR 2020, arXiv:1909.10788",
)
