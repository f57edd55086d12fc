"""Time the numpy front-end (binkit.runtime.frontend) against the torch one (binkit.data.features).

Per 1 s clip, one thread, for each front-end kind at its default params, at batch 1 and batch 64;
the median over ``--runs`` timed calls (after warm-up) divided by the batch size. Prints a Markdown
table with the machine (CPU model from /proc/cpuinfo, numpy and torch versions).

    python benchmarks/bench_frontend.py [--runs 200] [--batches 1 64]
"""

from __future__ import annotations

import os

# One thread everywhere: must be set before numpy / torch load their BLAS and OpenMP runtimes.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from binkit.data.features import build_frontend
from binkit.runtime.frontend import NumpyFrontEnd
from binkit.specs import FeaturesSpec

KINDS = ("bifsmn_logmel", "logmel", "mfcc")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 10) -> dict[str, float]:
    """Median wall time (ms) of each function; calls alternate so all see the same machine load."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter_ns()
            fn()
            times[name].append(time.perf_counter_ns() - t0)
    return {name: statistics.median(t) / 1e6 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls per cell (median); default 200")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes; default 1 64")
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for kind in KINDS:
        spec = FeaturesSpec(kind=kind, clip_seconds=1.0)
        np_fe, torch_fe = NumpyFrontEnd(spec), build_frontend(spec).eval()
        for batch in args.batches:
            x = (0.1 * np.random.default_rng(0).standard_normal((batch, spec.num_samples))).astype(np.float32)
            xt = torch.from_numpy(x)

            def run_torch(xt=xt, torch_fe=torch_fe) -> object:
                with torch.inference_mode():
                    return torch_fe(xt)

            ms = median_ms({"numpy": lambda x=x, np_fe=np_fe: np_fe(x), "torch": run_torch}, args.runs)
            rows.append((kind, spec, batch, ms["numpy"] / batch, ms["torch"] / batch))

    print(f"Front-end time per 1 s clip (16 kHz), median of {args.runs} calls (numpy and torch "
          "alternating), 1 thread.")
    print(f"Machine: {cpu_model()} ({platform.machine()}); Python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}.")
    print()
    print("| kind | n_fft / win / hop, n_mels -> shape | batch | numpy ms/clip | torch ms/clip | numpy / torch |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, spec, batch, t_np, t_torch in rows:
        params = f"{spec.n_fft} / {spec.win_length} / {spec.hop_length}, {spec.n_mels} -> {spec.shape}"
        print(f"| {kind} | {params} | {batch} | {t_np:.3f} | {t_torch:.3f} | {t_np / t_torch:.2f} |")


if __name__ == "__main__":
    main()
