"""Throughput of the training input pipeline: augmented, featurized training clips per second.

Builds a synthetic dataset in a temporary folder (speech-like 1 s clips written as 16-bit WAV,
plus two 60 s noise recordings), decodes it with :func:`binkit.data.cache.build_cache`, then
times whole training epochs of :func:`binkit.data.pipeline.make_batch_fn` (gather from the
memory-mapped cache -> augmentation recipe -> front-end) for each recipe, front-end and batch
size, with ``torch.set_num_threads(--threads)``. Reports the median over ``--epochs`` epochs
after one warm-up epoch, and the process CPU time per clip (a contention-independent view on a
shared machine). Prints a Markdown table; the result is recorded in benchmarks/RESULTS.md.

Target (issue 3, item 8): >= 2,500 clips/s on 2 cores for recipe ``bifsmn`` + the BiFSMN
front-end at batch 96.

Usage::

    python benchmarks/bench_pipeline.py [--clips 4096] [--epochs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from binkit.data.augment import AugmentSpec
from binkit.data.cache import build_cache
from binkit.data.items import ClipRef
from binkit.data.pipeline import make_batch_fn
from binkit.specs import FeaturesSpec

SAMPLE_RATE = 16000


def speech_like(rng: np.random.Generator, num_samples: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced-ish burst: a few harmonics of a gliding pitch under a syllable envelope, plus hiss."""
    t = np.arange(num_samples) / SAMPLE_RATE
    f0 = rng.uniform(90, 250) * (1 + rng.uniform(-0.2, 0.2) * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in range(1, 8))
    start, length = rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.55)
    envelope = np.clip(np.sin(np.pi * (t - start) / length), 0, None) * ((t > start) & (t < start + length))
    x = voice * envelope * rng.uniform(0.1, 0.5) + rng.normal(0, 0.003, num_samples)
    return np.clip(x, -1, 1).astype(np.float32)


def make_dataset(root: Path, clips: int, seed: int = 0) -> tuple[list[ClipRef], list[str]]:
    rng = np.random.default_rng(seed)
    refs = []
    for i in range(clips):
        label = i % 12
        if label == 1:  # one class in twelve is BiFSMN-style silence
            refs.append(ClipRef(None, label, silence="zeros"))
            continue
        path = root / f"clip_{i:05d}.wav"
        sf.write(path, speech_like(rng), SAMPLE_RATE, subtype="PCM_16")
        refs.append(ClipRef(str(path), label))
    noise_files = []
    for name, color in (("white_noise", 0.0), ("pink_noise", 1.0)):
        n = 60 * SAMPLE_RATE
        spectrum = np.fft.rfft(rng.normal(0, 1, n)) / np.maximum(np.arange(n // 2 + 1), 1) ** (color / 2)
        x = np.fft.irfft(spectrum, n)
        path = root / f"{name}.wav"
        sf.write(path, (0.3 * x / np.abs(x).max()).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        noise_files.append(str(path))
    return refs, noise_files


def time_epochs(batch_fn, batch_size: int, epochs: int) -> tuple[float, float]:
    """(median clips/s over ``epochs`` timed epochs, median process CPU seconds per 1000 clips)."""
    rates, cpu = [], []
    for epoch in range(epochs + 1):  # epoch 0 warms up
        wall0, cpu0, seen = time.perf_counter(), time.process_time(), 0
        for x, y in batch_fn("train", batch_size, shuffle=True, epoch=epoch, seed=0, drop_last=True):
            seen += len(y)
        wall, used = time.perf_counter() - wall0, time.process_time() - cpu0
        if epoch:
            rates.append(seen / wall)
            cpu.append(1e6 * used / seen)
    return statistics.median(rates), statistics.median(cpu)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4096, help="training clips in the synthetic cache")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per row (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--prefetch", type=int, nargs="+", default=[2, 0],
                        help="batches prepared ahead by the background thread (0 = in the consumer's thread)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[96, 256])
    parser.add_argument("--recipes", nargs="+", default=["bifsmn", "tf"])
    parser.add_argument("--frontends", nargs="+", default=["bifsmn_logmel", "logmel"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="binkit-bench-") as tmp:
        root = Path(tmp)
        refs, noise_files = make_dataset(root, args.clips)
        t0 = time.perf_counter()
        split = build_cache(refs, noise_files, root / "cache", progress=False, jobs=args.threads)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_cache(refs, noise_files, root / "cache", progress=False, jobs=args.threads)
        hit_s = time.perf_counter() - t0

        rows = []
        for recipe in args.recipes:
            for kind in args.frontends:
                features = FeaturesSpec(kind=kind)
                for prefetch in args.prefetch:
                    batch_fn = make_batch_fn({"train": split}, None, features, AugmentSpec(recipe=recipe),
                                             prefetch=prefetch)
                    for batch_size in args.batch_sizes:
                        rate, cpu_ms = time_epochs(batch_fn, batch_size, args.epochs)
                        rows.append((recipe, kind, features.shape, prefetch, batch_size, rate, cpu_ms))

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"machine: {cpu_model()} ({os.cpu_count()} logical CPUs), Python {platform.python_version()}, "
          f"torch {torch.__version__} (CPU kernels: {torch.backends.cpu.get_cpu_capability()}), "
          f"torch threads {torch.get_num_threads()}")
    print(f"command: `{command}`")
    print(f"cache: {args.clips} clips decoded in {build_s:.2f} s ({args.clips / build_s:.0f} clips/s, "
          f"{args.threads} jobs); cache hit in {hit_s * 1000:.0f} ms; load average at the end {load}")
    print()
    print(f"| recipe | front-end | features | prefetch | batch | clips/s (median of {args.epochs} epochs) "
          "| CPU ms per 1000 clips |")
    print("|---|---|---|---:|---:|---:|---:|")
    for recipe, kind, shape, prefetch, batch_size, rate, cpu_ms in rows:
        print(f"| {recipe} | {kind} | {shape[1]}x{shape[2]} | {prefetch} | {batch_size} | {rate:,.0f} "
              f"| {cpu_ms:,.0f} |")
    target = [r for r in rows if r[0] == "bifsmn" and r[1] == "bifsmn_logmel" and r[4] == 96]
    if target:
        worst = min(r[5] for r in target)
        print(f"\ntarget bifsmn + bifsmn_logmel @ 96 >= 2,500 clips/s: {'met' if worst >= 2500 else 'NOT met'} "
              f"(slowest setting: {worst:,.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
