"""The distiller protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

__all__ = ["DistillOutputs", "Distiller"]


@dataclass
class DistillOutputs:
    """One model's outputs for a batch: logits ``(batch, classes)`` and named taps."""

    logits: torch.Tensor
    taps: dict[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class Distiller(Protocol):
    """Computes a scalar loss pulling the student towards the teacher.

    The teacher's outputs are computed in eval mode under ``torch.no_grad()`` by the trainer.
    """

    def __call__(self, student: DistillOutputs, teacher: DistillOutputs) -> torch.Tensor:
        """Return a scalar loss (to be weighted by ``distillation.weight``)."""
