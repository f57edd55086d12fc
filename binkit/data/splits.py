"""The dataset contract between dataset plugins and the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

__all__ = ["LabeledSplits", "SPLITS", "BatchFn"]

SPLITS = ("train", "val", "test")

# batch_fn(split, batch_size, shuffle=..., epoch=..., seed=..., drop_last=...) -> iterable of
# (features (batch, *feature_shape) float32 tensor, labels (batch,) int64 tensor)
BatchFn = Callable[..., Iterable[Any]]


@dataclass
class LabeledSplits:
    """Labels in their fixed order, a ``torch.utils.data.Dataset`` per split, and batching.

    Each dataset item is ``(features, label_index)``; ``features`` has ``feature_shape``.
    A dataset whose training batches are built on the fly (augmentation, then features, a whole
    batch at a time) supplies ``batch_fn``; otherwise :meth:`batches` uses a ``DataLoader``.
    Batching is a pure function of ``(seed, epoch)``, so a resumed run sees the same batches.
    """

    labels: list[str]
    splits: dict[str, Any]
    feature_shape: tuple[int, ...]
    batch_fn: BatchFn | None = None
    info: dict[str, Any] | None = None  # protocol, counts, sources: reported with results

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"dataset is missing split(s) {missing}; it has {list(self.splits)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate labels in {self.labels}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, epoch: int = 0,
                seed: int = 0, drop_last: bool = False) -> Iterator[Any]:
        """Yield ``(x, y)`` batches of ``split`` (training augmentation applies to "train")."""
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; splits are {list(self.splits)}")
        if self.batch_fn is not None:
            yield from self.batch_fn(split, batch_size, shuffle=shuffle, epoch=epoch, seed=seed,
                                     drop_last=drop_last)
            return
        import torch

        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        yield from torch.utils.data.DataLoader(self.splits[split], batch_size=batch_size, shuffle=shuffle,
                                               generator=generator, drop_last=drop_last)
