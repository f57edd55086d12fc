"""The dataset contract between dataset plugins and the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LabeledSplits", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass
class LabeledSplits:
    """Labels in their fixed order and a ``torch.utils.data.Dataset`` per split.

    Each dataset item is ``(features, label_index)``; ``features`` has ``feature_shape``.
    """

    labels: list[str]
    splits: dict[str, Any]
    feature_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"dataset is missing split(s) {missing}; it has {list(self.splits)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate labels in {self.labels}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)
