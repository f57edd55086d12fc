"""The training input pipeline: decode cache -> augmentation -> features, a whole batch at a time.

:func:`make_batch_fn` returns the ``batch_fn`` of :class:`binkit.data.LabeledSplits`. Per batch:
gather the clips from the memory-mapped cache (int16 -> float32), augment them
(:func:`binkit.data.augment.augment_batch`, "train" only) and compute their features with
:class:`BatchFrontEnd`. Validation and test are never augmented, so their features are computed
once, on first use, and kept.

Determinism: the order of a split is a function of ``(seed, epoch)`` only
(:func:`binkit.data.splits.batch_order`), and batch ``i`` of an epoch draws its augmentation from a
generator seeded by ``(seed, epoch, i)`` alone, so a batch does not depend on which batches were
made before it, on prefetching, or on how many ranks share it (each rank takes rows
``rank::world_size`` of the global batch and of its table of random draws).

Speed: one persistent background thread prepares the next ``prefetch`` batches while the trainer
computes (torch ops release the GIL; keeping the thread keeps its OpenMP team warm, a thread per
epoch measured about 10% slower); results are identical with ``prefetch=0``.
``benchmarks/bench_pipeline.py`` measures the clips per second (results in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from binkit.data.augment import AugmentSpec, augment_batch, draw_uniforms, mix_at_snr
from binkit.data.cache import DecodedSplit, NoiseBank
from binkit.data.features import BatchFrontEnd
from binkit.data.splits import batch_order
from binkit.specs import FeaturesSpec

__all__ = ["BatchPipeline", "make_batch_fn", "noise_pipeline", "noisy_split", "snr_key", "tree_name"]


def _batch_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit generator seed for batch ``index`` of ``epoch``, well mixed (numpy SeedSequence)."""
    state = np.random.SeedSequence([seed % 2**64, epoch % 2**64, index, 0xA46]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


class BatchPipeline:
    """The ``batch_fn`` of a cached dataset (see :func:`make_batch_fn`); callable.

    Attributes:
        splits, noise, features, augment, device, prefetch: as given to :func:`make_batch_fn`.
        frontend: the :class:`BatchFrontEnd` on ``device``.
    """

    def __init__(self, splits: dict[str, DecodedSplit], noise: NoiseBank | None, features: FeaturesSpec,
                 augment: AugmentSpec, device: str | torch.device = "cpu", *, prefetch: int = 2,
                 eval_chunk: int = 512) -> None:
        for name, split in splits.items():
            if split.num_samples != features.num_samples or split.sample_rate != features.sample_rate:
                raise ValueError(f"split {name!r} was cached as {split.num_samples} samples at "
                                 f"{split.sample_rate} Hz, the features need {features.num_samples} "
                                 f"at {features.sample_rate} Hz; rebuild the cache with matching settings")
        self.splits = splits
        self.features = features
        self.augment = augment
        self.device = torch.device(device)
        self.prefetch = prefetch
        self.eval_chunk = eval_chunk
        self.frontend = BatchFrontEnd(features).to(self.device).eval()
        if noise is None:
            noise = splits["train"].noise if "train" in splits else None
        self.noise = noise
        if noise is not None and len(noise):
            self._noise = torch.from_numpy(noise.as_float32()).to(self.device)
            self._noise_offsets = torch.from_numpy(np.asarray(noise.offsets, dtype=np.int64)).to(self.device)
        else:
            self._noise = torch.zeros(0, device=self.device)
            self._noise_offsets = None
        self._eval: dict[str, torch.Tensor] = {}
        self._eval_lock = threading.Lock()

    # -- one batch -------------------------------------------------------------------------
    def _waves(self, split: DecodedSplit, index: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(split.batch(index.numpy())).to(self.device)  # (B, T) float32

    def _train_batch(self, split: DecodedSplit, index: torch.Tensor, draws: torch.Tensor) -> tuple[Any, Any]:
        with torch.no_grad():
            waves = self._waves(split, index)
            silence = torch.from_numpy(split.silence[index.numpy()])
            waves = augment_batch(waves, self._noise, self.augment, None, noise_offsets=self._noise_offsets,
                                  silence=silence, draws=draws)
            x = self.frontend(waves)
        y = torch.from_numpy(split.labels[index.numpy()]).to(self.device)
        return x, y

    def eval_features(self, name: str) -> torch.Tensor:
        """All features of an unaugmented split, ``(N, 1, n_bins, frames)``; computed once."""
        with self._eval_lock:
            feats = self._eval.get(name)
            if feats is None:
                split = self.splits[name]
                parts = []
                with torch.no_grad():
                    for s in range(0, len(split), self.eval_chunk):
                        index = torch.arange(s, min(s + self.eval_chunk, len(split)))
                        parts.append(self.frontend(self._waves(split, index)))
                feats = torch.cat(parts) if parts else torch.zeros((0, *self.features.shape), device=self.device)
                self._eval[name] = feats
            return feats

    def noisy_features(self, name: str, snr_db: float, seed: int) -> torch.Tensor:
        """Features of split ``name`` with one background-noise crop mixed into every clip at
        ``snr_db`` (:func:`binkit.data.augment.mix_at_snr`; silence entries stay as they are).
        ``seed`` fixes the crops, so the same seed gives the same noisy set. Not kept."""
        if self.noise is None or not len(self.noise):
            raise ValueError("noise at a fixed SNR needs background-noise files; this data has none")
        split = self.splits[name]
        waves = torch.from_numpy(split.batch(np.arange(len(split))))
        noise = torch.from_numpy(self.noise.as_float32())
        offsets = torch.from_numpy(np.asarray(self.noise.offsets, dtype=np.int64))
        mixed = mix_at_snr(waves, noise, snr_db, torch.Generator().manual_seed(seed), noise_offsets=offsets,
                           silence=torch.from_numpy(split.silence))
        with torch.no_grad():
            parts = [self.frontend(mixed[s:s + self.eval_chunk].to(self.device))
                     for s in range(0, len(mixed), self.eval_chunk)]
        return torch.cat(parts) if parts else torch.zeros((0, *self.features.shape), device=self.device)

    # -- the batch_fn contract -------------------------------------------------------------
    def __call__(self, split: str, batch_size: int, *, shuffle: bool = False, epoch: int = 0, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1) -> Iterator[tuple[Any, Any]]:
        """Yield ``(x (B, 1, n_bins, frames) float32, y (B,) int64)``; "train" is augmented."""
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; splits are {list(self.splits)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        data = self.splits[split]
        order = batch_order(len(data), batch_size, shuffle=shuffle, epoch=epoch, seed=seed, drop_last=drop_last)
        if split == "train" and self.augment.active:
            def make(i: int, global_index: torch.Tensor) -> tuple[Any, Any]:
                generator = torch.Generator().manual_seed(_batch_seed(seed, epoch, i))
                draws = draw_uniforms(len(global_index), generator)[rank::world_size]
                return self._train_batch(data, global_index[rank::world_size], draws)
        else:
            labels = torch.from_numpy(data.labels)

            def make(i: int, global_index: torch.Tensor) -> tuple[Any, Any]:
                index = global_index[rank::world_size]
                feats = self.eval_features(split)
                return feats[index.to(feats.device)], labels[index].to(self.device)

        jobs = (functools.partial(make, i, idx) for i, idx in enumerate(order))
        return _prefetched(jobs, self.prefetch) if self.prefetch > 0 else (job() for job in jobs)


def make_batch_fn(splits: dict[str, DecodedSplit], noise: NoiseBank | None, features: FeaturesSpec,
                  augment: AugmentSpec, device: str | torch.device = "cpu", *, prefetch: int = 2) -> BatchPipeline:
    """The ``LabeledSplits.batch_fn`` over decoded splits.

    Args:
        splits: split name -> :class:`DecodedSplit` (from :func:`binkit.data.cache.build_cache`),
            cached at ``features.sample_rate`` with ``features.num_samples`` samples per clip.
        noise: background noise for augmentation; ``None`` uses the train split's cached bank.
        features: the front-end.
        augment: the training augmentation (applied to the "train" split only).
        device: where augmentation and features are computed and batches delivered.
        prefetch: batches prepared ahead by the background thread; 0 computes them on demand in
            the consumer's thread (same results).

    Returns:
        ``batch_fn(split, batch_size, *, shuffle, epoch, seed, drop_last, rank=0, world_size=1)``
        yielding ``(x (B, 1, n_bins, frames) float32, y (B,) int64)``.
    """
    return BatchPipeline(splits, noise, features, augment, device, prefetch=prefetch)


_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """The one background thread that prepares batches (kept: its OpenMP team is reused)."""
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="binkit-prefetch")
        return _EXECUTOR


def _forget_executor_in_child() -> None:
    # a forked child has no copy of the thread: it must start its own
    global _EXECUTOR, _EXECUTOR_LOCK
    _EXECUTOR, _EXECUTOR_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executor_in_child)


def _prefetched(jobs: Iterator[Callable[[], Any]], depth: int) -> Iterator[Any]:
    """Run ``jobs`` in order on the background thread, at most ``depth`` ahead; yield their results.

    An exception in a job is re-raised here, at the batch where it happened. Stopping early
    (``close()`` or garbage collection of the generator) cancels the jobs not yet started.
    """
    executor = _executor()
    pending: collections.deque = collections.deque()
    try:
        for job in itertools.islice(jobs, depth):
            pending.append(executor.submit(job))
        while pending:
            result = pending.popleft().result()
            for job in itertools.islice(jobs, 1):
                pending.append(executor.submit(job))
            yield result
    finally:
        for future in pending:
            future.cancel()
        for future in pending:  # a job already running finishes before the generator is gone
            if not future.cancelled():
                concurrent.futures.wait([future])


def snr_key(tree: str, snr_db: float) -> str:
    """The name of ``tree``'s split with noise at ``snr_db`` (``TREE@SNRdB``); its CRC-32 seeds
    the crops, so every tool that names a noisy split this way meets the same noisy clips."""
    return f"{tree}@{snr_db:g}dB"


def tree_name(params: Any, default: str) -> str:
    """The folder name of a dataset's ``root`` parameter (what :func:`snr_key` names), or
    ``default`` for a dataset without one."""
    from pathlib import Path

    root = getattr(params, "root", None)
    return Path(root).resolve().name if root else default


def noise_pipeline(data: Any, tree: str, dataset: str | None = None) -> BatchPipeline:
    """``data``'s pipeline if it can mix background noise at a fixed SNR (cached waveforms and
    background-noise files); otherwise a ValueError naming ``tree`` and ``dataset``."""
    pipeline = getattr(data, "batch_fn", None)
    if not isinstance(pipeline, BatchPipeline) or pipeline.noise is None or not len(pipeline.noise):
        dataset = dataset or (getattr(data, "info", None) or {}).get("dataset", "a dataset without waveforms")
        raise ValueError(f"noise at a fixed SNR needs cached waveforms and background-noise files; "
                         f"the data of {tree!r} ({dataset}) has none")
    return pipeline


def noisy_split(data: Any, split: str, snr_db: float, tree: str, *,
                dataset: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)`` of ``data``'s ``split`` with background noise at ``snr_db``, the crops
    seeded by :func:`snr_key` of ``tree`` (the data folder's name) and the SNR.

    Raises:
        ValueError: ``data`` cannot mix noise (see :func:`noise_pipeline`; the ``tones`` dataset,
            for example), or ``snr_db`` is not finite.
    """
    import zlib

    pipeline = noise_pipeline(data, tree, dataset)
    seed = zlib.crc32(snr_key(tree, snr_db).encode())
    labels = torch.from_numpy(pipeline.splits[split].labels).clone()
    return pipeline.noisy_features(split, snr_db, seed), labels
