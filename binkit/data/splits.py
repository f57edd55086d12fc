"""The dataset contract between dataset plugins and the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

__all__ = ["LabeledSplits", "SPLITS", "BatchFn", "batch_order", "default_batches"]

SPLITS = ("train", "val", "test")

# batch_fn(split, batch_size, shuffle=..., epoch=..., seed=..., drop_last=..., rank=..., world_size=...)
# -> iterable of (features (batch, *feature_shape) float32 tensor, labels (batch,) int64 tensor).
# With world_size > 1 each rank yields its share (rows rank::world_size) of every global batch.
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
                seed: int = 0, drop_last: bool = False, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        """Yield ``(x, y)`` batches of ``split`` (training augmentation applies to "train").

        ``batch_size`` is the global batch; with ``world_size > 1`` rank ``r`` gets rows
        ``r::world_size`` of each global batch, so the ranks together see exactly what one
        process would.
        """
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; splits are {list(self.splits)}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if self.batch_fn is not None:
            yield from self.batch_fn(split, batch_size, shuffle=shuffle, epoch=epoch, seed=seed,
                                     drop_last=drop_last, rank=rank, world_size=world_size)
            return
        yield from default_batches(self.splits[split], batch_size, shuffle=shuffle, epoch=epoch, seed=seed,
                                   drop_last=drop_last, rank=rank, world_size=world_size)


def batch_order(n: int, batch_size: int, *, shuffle: bool, epoch: int, seed: int, drop_last: bool,
                rank: int = 0, world_size: int = 1):
    """Index tensors of this rank's share of each global batch; a pure function of the args."""
    import torch

    if shuffle:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:min(start + batch_size, n)][rank::world_size]


def default_batches(dataset, batch_size: int, **kwargs) -> Iterator[Any]:
    """Batches of a map-style dataset of ``(x, y)`` items (TensorDataset fast path)."""
    import torch

    tensors = getattr(dataset, "tensors", None)
    for idx in batch_order(len(dataset), batch_size, **kwargs):
        if tensors is not None:
            yield tuple(t[idx] for t in tensors)
        else:
            items = [dataset[int(i)] for i in idx]
            yield torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items])
