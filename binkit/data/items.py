"""What a dataset task is made of: references to clips, before any audio is decoded.

A task (e.g. Speech Commands 12-class, protocol ``tf``) is a label order plus, per split, a list
of :class:`ClipRef`. The decode cache turns a list of refs into one array of waveforms, and the
training pipeline augments and featurizes batches of it. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ClipRef", "Task"]


@dataclass(frozen=True)
class ClipRef:
    """One example.

    Attributes:
        path: audio file, or ``None`` for a synthetic silence entry.
        label: index into ``Task.labels``.
        silence: ``""`` for a real clip; ``"zeros"`` for an all-zero waveform (BiFSMN protocol);
            ``"noise"`` for background noise at a random volume (TF protocol), rendered
            deterministically from ``seed``.
        seed: per-entry seed for rendering ``"noise"`` silence (crop position and volume).
    """

    path: str | None
    label: int
    silence: Literal["", "zeros", "noise"] = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.path is None) != bool(self.silence):
            raise ValueError(f"a ClipRef has either a path or a silence kind: {self}")


@dataclass
class Task:
    """A labelled task over a dataset tree.

    Attributes:
        labels: class names in their fixed order (stored with every model).
        splits: ``"train"``, ``"val"``, ``"test"`` -> list of refs.
        noise_files: background-noise recordings, for augmentation and ``"noise"`` silence.
        info: protocol, version, counts per split and label, skipped files; reported with results.
    """

    labels: list[str]
    splits: dict[str, list[ClipRef]]
    noise_files: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
