"""Logit knowledge distillation (Hinton et al.).

Loss::

    L_KD = T^2 * KL( softmax(z_T / T) || softmax(z_S / T) )   (batch mean)

The ``T^2`` factor keeps gradient magnitudes comparable across temperatures. With ``T = 1`` this
is ReActNet's distribution loss up to the teacher-entropy constant.

Reference: Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015,
arXiv:1503.02531.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from binkit.distill import DistillOutputs
from binkit.entries import DistillerEntry


class KDParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature T")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, mean over the batch; logits ``(batch, classes)``."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape")
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


class KD:
    """Callable distiller wrapping :func:`kd_loss`."""

    def __init__(self, params: KDParams) -> None:
        self.temperature = params.temperature

    def __call__(self, student: DistillOutputs, teacher: DistillOutputs) -> torch.Tensor:
        return kd_loss(student.logits, teacher.logits.detach(), self.temperature)


ENTRY = DistillerEntry(
    name="kd",
    factory=KD,
    params=KDParams,
    needs_taps=False,
    description="logit distillation, T^2 * KL(teacher || student) at temperature T",
    reference="Hinton et al., Distilling the Knowledge in a Neural Network, 2015, arXiv:1503.02531",
)
