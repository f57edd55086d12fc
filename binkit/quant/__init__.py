"""Quantizers: the protocol, the pure functions, and training-time helpers.

A quantizer is a forward map plus a surrogate gradient. binkit keeps the math once, as pure
functions in :mod:`binkit.quant.functional`, and wraps it in thin ``nn.Module`` classes
(:mod:`binkit.quant.base`) that a binarizer plugin registers under a config name. Attach them
through the binary layers (:mod:`binkit.nn`) or, for a whole model, :func:`binkit.binarize`.
"""

from __future__ import annotations

import torch
from torch import nn

from binkit.quant import functional
from binkit.quant.base import (
    InputQuantizer,
    NotDeployableError,
    Quantizer,
    SteSignInputQuantizer,
    WeightQuantizer,
)

__all__ = [
    "functional",
    "Quantizer",
    "WeightQuantizer",
    "InputQuantizer",
    "SteSignInputQuantizer",
    "NotDeployableError",
    "update_schedules",
    "apply_constraints",
]


def update_schedules(model: nn.Module, epoch: int, epochs: int) -> None:
    """Tell every quantizer in ``model`` that epoch ``epoch`` (0-based) of ``epochs`` starts.

    Quantizers with a schedule (IR-Net's EDE) update their state; others ignore it.
    """
    if epochs <= 0 or not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, epochs); got epoch={epoch}, epochs={epochs}")
    for module in model.modules():
        if isinstance(module, Quantizer):
            module.update_schedule(epoch, epochs)


@torch.no_grad()
def apply_constraints(model: nn.Module) -> None:
    """Apply each binary layer's weight constraint in place (call after ``optimizer.step()``)."""
    for module in model.modules():
        wq = getattr(module, "weight_quantizer", None)
        if isinstance(wq, WeightQuantizer):
            wq.constrain_(module.weight)
