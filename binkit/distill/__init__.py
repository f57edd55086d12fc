"""Distillation: the distiller protocol and feature taps.

A distiller (registered through ``binkit_distillers``) computes a loss from a frozen teacher's
and the student's outputs: :class:`DistillOutputs` carries logits plus the named taps each model
recorded. Architectures record taps themselves (their ``taps`` dict, filled during ``forward``);
:func:`record_taps` attaches forward hooks to any model that does not.
"""

from __future__ import annotations

from binkit.distill.base import Distiller, DistillOutputs
from binkit.distill.taps import record_taps

__all__ = ["Distiller", "DistillOutputs", "record_taps"]
