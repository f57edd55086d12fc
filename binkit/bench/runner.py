"""``binkit bench``: latency, throughput, storage and binary-op efficiency of an exported model.

What is measured, for one artifact:

* **latency**: batch 1, one thread, the median and p90 of ``runs`` timed calls of each backend's
  ``program.run(features, view)`` for each view, on features computed once beforehand (the audio
  front-end is timed separately, once); and the same-architecture FP32 model
  (:mod:`binkit.bench.float_model`) in PyTorch (eager, ``inference_mode``, 1 thread) and in ONNX
  Runtime (1 intra-op and 1 inter-op thread, sequential execution);
* **throughput**: clips per second at batch ``batch`` (median call time);
* **storage**: the artifact file against the FP32 weights of the same architecture
  (:func:`binkit.bench.plan.storage`);
* **per binary layer**: the engine's profiler (``program.profile``) gives each op's time per call
  (the neon profiler net of its own clock reads, ``program.clock_overhead`` per op and example);
  binary operations per second = the op's binary MACs (one XNOR-popcount bit product each; the
  count the profiler says it executed, e.g. without padded taps, when it says so) per second,
  against the popcount peak the backend measures on this machine (``popcount_peak``) right
  before and after that view's profile: a busy SMT sibling or neighbour lowers both alike.

Timing: warm-up calls first, then calls timed one by one with ``time.perf_counter_ns``. The
candidates run in alternating blocks of :data:`BLOCK` calls, so a change in machine load hits all
of them alike and ratios measured in one run are fair; each block keeps its caches warm, as a
deployment running one model does. Each block starts with :data:`SETTLE_NS` of untimed calls of
its own candidate (at least one): after another candidate's heavy AVX-512 float work (PyTorch's
convolutions) the core runs slower for about a millisecond (measured: engine calls 20-21 us for
the first ~50 calls after a PyTorch block, then 16.3-16.7 us, as when the engine runs alone), and
a block should time its candidate, not the one before it. The numpy ``reference`` backend is slow: it gets
``reference_runs`` calls and is timed after the others.

Optional backend capabilities are found by duck typing (the core never imports a plugin by name):
``program.profile(features, view, repeats)`` (rows with ``index``, ``name``, ``op``, ``seconds``),
``program.kernel``/``program.kernel_info``, a ``kernel=`` argument of ``backend.load``, and
``available_kernels()`` / ``popcount_peak(kernel, seconds)`` on the backend object or its package.
The ``reference`` backend has no profiler: its ops are timed one by one here.

Targets (issue 5; reported with PASS/MISS, never asserted): the full-width view on the engine at
least :data:`TARGET_SPEEDUP_VS_ORT` x faster than ONNX Runtime FP32 of the same architecture;
binary layers at least :data:`TARGET_PEAK_FRACTION` of the popcount peak; the artifact at least
:data:`TARGET_STORAGE_RATIO` x smaller than the FP32 weights.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from binkit.bench.plan import OpRow, fp32_parameter_count, plan_rows, storage, view_macs
from binkit.errors import BinkitError
from binkit.runtime.artifact import Artifact, load_artifact

__all__ = [
    "BLOCK",
    "SETTLE_NS",
    "BenchError",
    "BenchOptions",
    "TARGET_PEAK_FRACTION",
    "TARGET_SPEEDUP_VS_ORT",
    "TARGET_STORAGE_RATIO",
    "full_view",
    "machine_info",
    "render_markdown",
    "render_text",
    "run_bench",
    "summarize_artifact",
    "render_summary",
]

#: Calls per block when candidates alternate (see the module docstring).
BLOCK = 50
#: Untimed calls of a block's own candidate before its timed calls, in nanoseconds (at least one).
SETTLE_NS = 5_000_000
#: Issue 5 targets.
TARGET_SPEEDUP_VS_ORT = 25.0
TARGET_PEAK_FRACTION = 0.5
TARGET_STORAGE_RATIO = 15.5
#: Name of the numpy oracle backend, timed with fewer runs.
REFERENCE = "reference"
#: Labels of the FP32 baselines in the results.
TORCH_FP32 = "pytorch-fp32"
ORT_FP32 = "onnxruntime-fp32"
#: Environment variables that pin BLAS/OpenMP pools to one thread; read when numpy and torch
#: load their libraries, so ``binkit bench`` sets them before importing either.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS")


class BenchError(BinkitError):
    """A baseline could not be built or disagrees with itself (ONNX export, FP32 twin checks)."""


@dataclass
class BenchOptions:
    """What ``binkit bench`` measures; every field has a CLI flag of the same name.

    Attributes:
        artifact: path of the ``.bkm`` file.
        backends: backend names; ``None`` = every registered backend.
        views: views to time; ``None`` = all.
        runs: timed batch-1 calls per candidate (median, p90); at least 1,000 for reported numbers.
        reference_runs: timed calls for the slow numpy ``reference`` backend.
        warmup: untimed calls per candidate before timing.
        batch: batch size of the throughput measurement.
        throughput_runs: timed calls at ``batch`` per candidate.
        profile_repeats: calls per op for the per-layer profile (the reference uses a tenth).
        kernel: a kernel variant for backends that have variants, ``"all"`` for each, or ``None``
            for the backend's own choice.
        torch: time the PyTorch FP32 twin (and build the ONNX one from it).
        onnx: time the ONNX Runtime FP32 twin (needs ``torch``, ``onnx`` and ``onnxruntime``).
        onnx_exporter: ``"auto"`` (dynamo, then torchscript), ``"dynamo"`` or ``"torchscript"``.
        peak_seconds: measuring time of each popcount-peak try (one before and one after each
            view's profile).
        seed: features are random audio (or features) from this seed.
        command: the command line, for the report.
        progress: phase messages on stderr.
    """

    artifact: str
    backends: list[str] | None = None
    views: list[str] | None = None
    runs: int = 1000
    reference_runs: int = 50
    warmup: int = 50
    batch: int = 64
    throughput_runs: int = 30
    profile_repeats: int = 100
    kernel: str | None = None
    torch: bool = True
    onnx: bool = True
    onnx_exporter: str = "auto"
    peak_seconds: float = 0.2
    seed: int = 0
    command: str = ""
    progress: bool = False

    def check(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range option."""
        for name in ("runs", "reference_runs", "batch", "throughput_runs", "profile_repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if not self.peak_seconds > 0:
            raise ValueError(f"--peak-seconds must be > 0, got {self.peak_seconds}")
        if self.onnx_exporter not in ("auto", "dynamo", "torchscript"):
            raise ValueError(f"--onnx-exporter must be auto, dynamo or torchscript, got {self.onnx_exporter!r}")


# ---------------------------------------------------------------------------------------------
# machine, timing, small helpers
# ---------------------------------------------------------------------------------------------


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = "", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if not model and key in ("model name", "Model", "Hardware"):
                model = value.strip()
            elif not flags and key in ("flags", "Features"):
                flags = value.split()
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module)
        except Exception:  # not installed, or broken: report as absent
            return None
    return getattr(mod, "__version__", "?")


def machine_info(with_torch: bool = True) -> dict[str, Any]:
    """CPU model, cores, popcount-relevant CPU flags, OS kernel and package versions."""
    model, flags = _cpuinfo()
    wanted = ("popcnt", "avx2", "avx512f", "avx512_vpopcntdq", "asimd", "neon")
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    info = {
        "cpu": model,
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_flags": [f for f in wanted if f in flags],
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _version("torch") if with_torch else None,
        "onnxruntime": _version("onnxruntime") if with_torch else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    return info


def _stats(ns: list[int]) -> dict[str, float]:
    a = np.asarray(ns, np.float64) / 1e6
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "runs": int(a.size)}


def time_blocks(calls: dict[str, Callable[[], Any]], runs: int, warmup: int, block: int = BLOCK,
                settle_ns: int = SETTLE_NS) -> dict[str, list[int]]:
    """Time every callable ``runs`` times (ns per call), alternating blocks of ``block`` calls,
    each block after at least one and for at least ``settle_ns`` of untimed calls of its own."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[int]] = {name: [] for name in calls}
    clock = time.perf_counter_ns
    while any(len(t) < runs for t in times.values()):
        for name, fn in calls.items():
            t = times[name]
            if len(t) >= runs:
                continue
            start = clock()
            fn()
            while clock() - start < settle_ns:
                fn()
            for _ in range(min(block, runs - len(t))):
                t0 = clock()
                fn()
                t.append(clock() - t0)
    return times


def _capability(backend: Any, name: str) -> Callable | None:
    """``name`` on the backend object, else on the top-level package that defines its class."""
    fn = getattr(backend, name, None)
    if fn is None:
        pkg = sys.modules.get(type(backend).__module__.split(".")[0])
        fn = getattr(pkg, name, None)
    return fn if callable(fn) else None


def full_view(artifact: Artifact) -> str:
    """The full-width view: most MACs (binary + float); the default view on a tie."""
    def total(v: str) -> int:
        m = view_macs(artifact, v)
        return m["binary"] + m["float"]
    return max(artifact.views, key=lambda v: (total(v), v == artifact.default_view))


def _features(artifact: Artifact, batch: int, seed: int) -> tuple[np.ndarray, Any]:
    """``(batch, *input_shape)`` float32 features of random audio (or random features when the
    model has no front-end), and the front-end (or None)."""
    rng = np.random.default_rng(seed)
    if artifact.frontend is not None:
        from binkit.runtime.frontend import NumpyFrontEnd

        fe = NumpyFrontEnd(artifact.frontend)
        wave = (0.1 * rng.standard_normal((batch, fe.spec.num_samples))).astype(np.float32)
        return np.ascontiguousarray(fe(wave), dtype=np.float32), fe
    return rng.standard_normal((batch, *artifact.input_shape)).astype(np.float32), None


def _say(opts: BenchOptions, msg: str) -> None:
    if opts.progress:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# candidates: backend programs and FP32 baselines
# ---------------------------------------------------------------------------------------------


@dataclass
class _Program:
    backend: str
    kernel: str
    program: Any
    backend_obj: Any
    kernel_info: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # the backend name, or backend[kernel] when several variants are benchmarked

    @property
    def is_reference(self) -> bool:
        return self.backend == REFERENCE


def _load_programs(artifact: Artifact, names: list[str], kernel: str | None) -> list[_Program]:
    from binkit.runtime import get_backend

    programs = []
    variant_backends = 0
    from binkit.runtime.artifact import required_features

    needed = required_features(artifact)
    for name in names:
        backend = get_backend(name)
        missing = needed - frozenset(getattr(backend, "features", ()))
        if missing:
            print(f"binkit bench: skipping backend {name!r}: it does not run the artifact feature(s) "
                  f"{', '.join(sorted(missing))}", file=sys.stderr)
            continue
        takes_kernel = "kernel" in inspect.signature(backend.load).parameters
        kernels: list[str | None] = [None]
        if kernel is not None and takes_kernel:
            variant_backends += 1
            if kernel == "all":
                available = _capability(backend, "available_kernels")
                kernels = list(available()) if available else [None]
            else:
                kernels = [kernel]
        for k in kernels:
            program = backend.load(artifact, kernel=k) if k is not None else backend.load(artifact)
            info = getattr(program, "kernel_info", None)
            kname = str(getattr(program, "kernel", "") or k or "")
            programs.append(_Program(name, kname, program, backend, dict(info) if isinstance(info, dict) else {},
                                     label=name if len(kernels) == 1 else f"{name}[{kname}]"))
    if not programs:
        raise ValueError(f"none of the backends {', '.join(names)} runs this artifact "
                         f"(it needs {', '.join(sorted(needed))})")
    if kernel is not None and not variant_backends:
        raise ValueError(f"--kernel {kernel}: none of the backends {', '.join(names)} has kernel variants")
    return programs


def _peak_tries(p: _Program, seconds: float, tries: int) -> list[float]:
    """``tries`` popcount-peak measurements of the program's kernel (binary ops per second), or
    none when the backend offers no ``popcount_peak``."""
    fn = None if p.is_reference else _capability(p.backend_obj, "popcount_peak")
    if fn is None:
        return []
    kw: dict[str, Any] = {"seconds": seconds}
    if p.kernel and "kernel" in inspect.signature(fn).parameters:
        kw["kernel"] = p.kernel
    return [float(fn(**kw)) for _ in range(tries)]


def _ort_session(path: str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|, per clip, worst clip."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b).max(-1) / np.maximum(np.abs(b).max(-1), 1e-12)).max())


# ---------------------------------------------------------------------------------------------
# per-op profile
# ---------------------------------------------------------------------------------------------


def _profile_reference(program: Any, features: np.ndarray, view: str, repeats: int) -> list[dict[str, Any]]:
    """Per-op median seconds of the numpy reference, timing each op of ``view`` in turn."""
    from binkit.runtime.reference import _OPS  # the reference's op table; it has no profiler of its own

    art = program.artifact
    order = art.views[view]["ops"]
    times: dict[int, list[int]] = {i: [] for i in order}
    for _ in range(repeats):
        values = {"input": np.asarray(features, dtype=np.float64)}
        for i in order:
            op = art.ops[i]
            tensors = {role: art.tensors[name] for role, name in op["tensors"].items()}
            args = [values[v] for v in op["inputs"]]
            t0 = time.perf_counter_ns()
            values[op["outputs"][0]] = _OPS[op["op"]](op["attrs"], tensors, *args)
            times[i].append(time.perf_counter_ns() - t0)
    return [{"index": i, "name": art.ops[i].get("name", ""), "op": art.ops[i]["op"],
             "seconds": statistics.median(times[i]) / 1e9} for i in order]


def profile_view(program: Any, artifact: Artifact, features: np.ndarray, view: str, repeats: int,
                 reference: bool = False) -> list[OpRow] | None:
    """The plan rows of ``view`` with each op's measured seconds per call (``None`` where the
    backend reports no time for an op, e.g. one fused into its predecessor); ``None`` when the
    program has no profiler."""
    if hasattr(program, "profile"):
        prof = list(program.profile(features, view, repeats=repeats))
    elif reference:
        prof = _profile_reference(program, features, view, repeats)
    else:
        return None
    rows = plan_rows(artifact, view)
    if len(prof) == len(rows) and all(p.get("op") == r.op for p, r in zip(prof, rows)):
        matched = dict(zip((r.index for r in rows), prof))  # one row per op of the view, in order
    else:  # a profiler that leaves ops out: its ``index`` must then be the plan's op index
        matched = {int(p["index"]): p for p in prof}
        if not set(matched) <= {r.index for r in rows}:
            raise ValueError(f"profile of view {view!r}: {len(prof)} rows for {len(rows)} ops, and indices "
                             "that are not the view's op indices")
    for r in rows:
        p = matched.get(r.index)
        if p is not None and p.get("seconds") is not None:
            r.seconds = float(p["seconds"])
        if p is not None and r.runs_binary and p.get("binary_macs") is not None:
            r.executed_binary_macs = int(p["binary_macs"]) // features.shape[0]  # profilers count per call
    return rows


def _executed(r: OpRow) -> int:
    return r.binary_macs if r.executed_binary_macs is None else r.executed_binary_macs


def _layer_rate(rows: list[OpRow], peak: float | None) -> dict[str, Any]:
    """Binary ops per second over the binary ops of a view (the ops the backend reports it
    executed, else the plan's MACs), and as a fraction of ``peak``."""
    timed = [r for r in rows if r.runs_binary and r.seconds]
    ops = sum(_executed(r) for r in timed)
    secs = sum(r.seconds for r in timed)
    rate = ops / secs if secs else None
    return {"binary_ops_per_s": rate, "peak_fraction": rate / peak if rate and peak else None,
            "binary_seconds": secs, "binary_macs": sum(r.binary_macs for r in timed), "executed_binary_ops": ops}


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run the benchmark ``opts`` describes; returns the results (the JSON written by ``--json``).

    Raises:
        ArtifactError: the artifact is missing, unreadable or inconsistent.
        UnknownNameError: a backend name is not registered (the message lists those that are).
        ValueError: a bad option or view.
    """
    opts.check()
    from binkit.runtime import backend_names
    from binkit import registry

    names = list(opts.backends) if opts.backends else backend_names()
    for name in names:  # unknown names fail before any work
        registry.get("backend", name)
    artifact = load_artifact(opts.artifact)
    views = [str(v) for v in opts.views] if opts.views else list(artifact.views)
    for v in views:
        if v not in artifact.views:
            raise ValueError(f"no view {v!r}; views are: {', '.join(artifact.views)}")
    full = full_view(artifact)
    notes: list[str] = []
    t_start = time.time()

    _say(opts, f"loading {artifact.path} on {', '.join(names)}")
    programs = _load_programs(artifact, names, opts.kernel)
    feats, frontend = _features(artifact, max(opts.batch, 8), opts.seed)
    x1, xb = feats[:1].copy(), np.ascontiguousarray(feats[:opts.batch])

    # correctness first: every program against the reference on 8 clips
    from binkit.runtime.reference import ReferenceBackend

    oracle = ReferenceBackend().load(artifact)
    agreement: dict[str, dict[str, float]] = {}
    for p in programs:
        for v in views:
            out = np.asarray(p.program.run(feats[:8], v))
            if out.shape != (8, len(artifact.labels)) or not np.isfinite(out).all():
                raise ValueError(f"backend {p.label} returned shape {out.shape} (finite: {np.isfinite(out).all()}) "
                                 f"for view {v!r}; expected (8, {len(artifact.labels)})")
            if not p.is_reference:
                agreement.setdefault(p.label, {})[v] = _rel(out, oracle.run(feats[:8], v))

    # FP32 baselines: (view) -> (batch-1 call, batch-B call) per baseline
    baselines: dict[str, dict[str, tuple[Callable, Callable]]] = {}
    baseline_info: dict[str, Any] = {}
    fp_params = None
    if opts.torch:
        fp_params = _fp32_baselines(artifact, views, feats, x1, xb, opts, baselines, baseline_info, notes)
    elif opts.onnx:
        notes.append("--no-torch: no FP32 baselines (the ONNX twin is exported from torch)")

    # candidates: (label, view) -> (batch-1 call, batch-B call); the reference runs apart
    fast: dict[tuple[str, str], tuple[Callable, Callable]] = {}
    slow: dict[tuple[str, str], tuple[Callable, Callable]] = {}
    for p in programs:
        for v in views:
            (slow if p.is_reference else fast)[(p.label, v)] = (
                lambda run=p.program.run, v=v: run(x1, v), lambda run=p.program.run, v=v: run(xb, v))
    for label in (ORT_FP32, TORCH_FP32):
        for v, calls in baselines.get(label, {}).items():
            fast[(label, v)] = calls
    lat: dict[tuple[str, str], dict[str, float]] = {}
    tput: dict[tuple[str, str], dict[str, float]] = {}
    slow_tput_runs = max(2, min(opts.throughput_runs, opts.reference_runs // 10))
    with _inference_mode() if TORCH_FP32 in baselines else contextlib.nullcontext():
        if fast:
            _say(opts, f"latency, batch 1: {len(fast)} candidates x {opts.runs} runs")
            for k, ns in time_blocks({k: c[0] for k, c in fast.items()}, opts.runs, opts.warmup).items():
                lat[k] = _stats(ns)
        if slow:
            _say(opts, f"latency, batch 1, reference backend: {len(slow)} x {opts.reference_runs} runs")
            for k, ns in time_blocks({k: c[0] for k, c in slow.items()}, opts.reference_runs,
                                     min(opts.warmup, 3)).items():
                lat[k] = _stats(ns)
            if opts.reference_runs < opts.runs:
                notes.append(f"the numpy reference backend is timed over {opts.reference_runs} runs "
                             f"(--reference-runs) and {slow_tput_runs} at batch {opts.batch}; the others over "
                             f"{opts.runs} and {opts.throughput_runs}")
        _say(opts, f"throughput, batch {opts.batch}")
        for group, runs in ((fast, opts.throughput_runs), (slow, slow_tput_runs)):
            if group:
                for k, ns in time_blocks({k: c[1] for k, c in group.items()}, runs, 1, block=5).items():
                    tput[k] = _stats(ns)

    # front-end, once
    frontend_row = None
    if frontend is not None:
        rng = np.random.default_rng(opts.seed + 1)
        wave = (0.1 * rng.standard_normal((1, frontend.spec.num_samples))).astype(np.float32)
        ns = time_blocks({"fe": lambda: frontend(wave)}, max(5, min(opts.runs, 500)), 10)["fe"]
        frontend_row = {"kind": frontend.spec.kind, "shape": list(artifact.input_shape), **_stats(ns)}

    # per-op profiles, each between two popcount-peak tries: on a shared machine (a busy SMT
    # sibling halves the popcount throughput) the layers and the peak they are compared with
    # must see the same load, so each view's fraction uses the better of its own two tries
    _say(opts, "per-op profiles and popcount peaks")
    layers: list[dict[str, Any]] = []
    rates: dict[tuple[str, str], dict[str, Any]] = {}
    peaks: dict[str, float | None] = {}
    for p in programs:
        repeats = max(2, opts.profile_repeats // 10) if p.is_reference else opts.profile_repeats
        tries: list[float] = []
        for v in views:
            before = _peak_tries(p, opts.peak_seconds, 1)
            rows = profile_view(p.program, artifact, x1, v, repeats, reference=p.is_reference)
            after = _peak_tries(p, opts.peak_seconds, 1)
            tries += before + after
            if rows is None:
                continue
            peak = max(before + after) if before else None
            rates[(p.label, v)] = {**_layer_rate(rows, peak), "peak_ops_per_s": peak,
                                   "clock_overhead_s": getattr(p.program, "clock_overhead", None)}
            for r in rows:
                d = r.to_dict()
                rate = _executed(r) / r.seconds if r.runs_binary and r.seconds else None
                d.update(backend=p.backend, kernel=p.kernel, view=v, binary_ops_per_s=rate,
                         peak_fraction=rate / peak if rate and peak else None)
                layers.append(d)
        peaks[p.label] = max(tries) if tries else None  # the best the machine did: load only lowers it
    if not any(peaks.values()):
        notes.append("no backend measured a popcount peak: binary-op efficiency is not reported")

    store = storage(artifact, fp_params)
    macs = {v: view_macs(artifact, v) for v in artifact.views}

    latency = []
    for (label, v), st in lat.items():
        row = {"backend": label, "view": v, "batch": 1, **st}
        prog = next((p for p in programs if p.label == label), None)
        row["kernel"] = prog.kernel if prog else baseline_info.get(label, {}).get("kernel", "")
        row["throughput_batch"] = opts.batch
        if (label, v) in tput:
            row["throughput_median_ms"] = tput[(label, v)]["median_ms"]
            row["clips_per_s"] = opts.batch / (tput[(label, v)]["median_ms"] / 1e3)
            row["throughput_runs"] = tput[(label, v)]["runs"]
        if (ORT_FP32, v) in lat:
            row["speedup_vs_ort"] = lat[(ORT_FP32, v)]["median_ms"] / st["median_ms"]
        if (TORCH_FP32, v) in lat:
            row["speedup_vs_torch"] = lat[(TORCH_FP32, v)]["median_ms"] / st["median_ms"]
        if prog is not None and not prog.is_reference and label in agreement:
            row["max_rel_vs_reference"] = agreement[label].get(v)
        latency.append(row)

    targets = _targets(programs, full, lat, rates, peaks, store)
    return {
        "binkit_bench": 1,
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(t_start)),
        "command": opts.command,
        "artifact": {"path": str(artifact.path), "producer": artifact.metadata.get("producer"),
                     "input_shape": list(artifact.input_shape), "labels": len(artifact.labels),
                     "views": list(artifact.views), "full_view": full, "fallbacks": artifact.fallbacks},
        "machine": machine_info(with_torch=opts.torch),
        "settings": {"runs": opts.runs, "reference_runs": opts.reference_runs, "warmup": opts.warmup,
                     "block": BLOCK, "settle_ms": SETTLE_NS / 1e6, "batch": opts.batch, "throughput_runs": opts.throughput_runs,
                     "profile_repeats": opts.profile_repeats, "threads": 1, "kernel": opts.kernel,
                     "seed": opts.seed,
                     "thread_env": {k: os.environ.get(k) for k in THREAD_ENV}},
        "backends": [{"backend": p.backend, "kernel": p.kernel, "label": p.label, "kernel_info": p.kernel_info,
                      "popcount_peak_ops_per_s": peaks.get(p.label)} for p in programs],
        "baselines": baseline_info,
        "macs": macs,
        "latency": latency,
        "frontend": frontend_row,
        "storage": store,
        "layers": layers,
        "layer_rates": [{"backend": k[0], "view": k[1], **r} for k, r in rates.items()],
        "targets": targets,
        "notes": notes,
        "elapsed_s": time.time() - t_start,
    }


def _fp32_baselines(artifact: Artifact, views: list[str], feats: np.ndarray, x1: np.ndarray, xb: np.ndarray,
                    opts: BenchOptions, baselines: dict, info: dict, notes: list[str]) -> int:
    """Build the FP32 twin in PyTorch (and ONNX Runtime unless ``opts.onnx`` is off), check them,
    and fill ``baselines[label][view] = (batch-1 call, batch-B call)`` and ``info[label]``.

    Returns:
        the twin's parameter count.
    """
    try:
        import torch
    except ImportError:
        raise BenchError("torch is not installed: run with --no-torch, or install binkit[train,bench] "
                         "for the FP32 baselines") from None
    from binkit.bench.float_model import build_float_model, export_onnx

    torch.set_num_threads(1)
    _say(opts, "building the FP32 twin of the plan")
    model = build_float_model(artifact)
    fp_params = sum(p.numel() for p in model.parameters())
    if fp_params != fp32_parameter_count(artifact):  # two independent counts must agree
        raise BenchError(f"FP32 twin has {fp_params} parameters, the plan counts {fp32_parameter_count(artifact)}")
    t1, tb = torch.from_numpy(x1), torch.from_numpy(xb)
    calls = {}
    with torch.inference_mode():
        for v in views:
            out = model(t1, v)
            if tuple(out.shape) != (1, len(artifact.labels)):
                raise BenchError(f"FP32 twin of view {v!r} gives shape {tuple(out.shape)}")
            calls[v] = (lambda v=v: model(t1, v), lambda v=v: model(tb, v))
    baselines[TORCH_FP32] = calls
    capability = torch.backends.cpu.get_cpu_capability()
    info[TORCH_FP32] = {"threads": torch.get_num_threads(), "mode": "eager, inference_mode",
                        "cpu_capability": capability, "kernel": f"eager, {capability}", "version": torch.__version__}
    if not opts.onnx:
        return fp_params
    try:
        import onnxruntime as ort
    except ImportError:
        notes.append("ONNX Runtime not installed: no ONNX baseline (pip install 'binkit[bench]')")
        return fp_params
    exporters, max_diff, calls = set(), 0.0, {}
    with tempfile.TemporaryDirectory(prefix="binkit-bench-") as tmp:  # a session keeps its model in memory
        for v in views:
            _say(opts, f"exporting view {v} to ONNX")
            path = os.path.join(tmp, f"view_{v}.onnx")
            try:
                exporters.add(export_onnx(model, v, path, opts.onnx_exporter))
            except RuntimeError as exc:
                raise BenchError(str(exc)) from None
            sess = _ort_session(path)
            with torch.inference_mode():
                want = model(torch.from_numpy(feats[:8]), v).numpy()
            max_diff = max(max_diff, _rel(sess.run(None, {"x": feats[:8]})[0], want))
            calls[v] = (lambda s=sess: s.run(None, {"x": x1}), lambda s=sess: s.run(None, {"x": xb}))
    if max_diff > 1e-3:
        raise BenchError(f"ONNX Runtime and PyTorch disagree on the FP32 twin (max rel {max_diff:.2e})")
    baselines[ORT_FP32] = calls
    exporter = ",".join(sorted(exporters))
    info[ORT_FP32] = {"intra_op_threads": 1, "inter_op_threads": 1, "execution": "sequential",
                      "provider": "CPUExecutionProvider", "exporter": exporter, "kernel": f"CPU EP, {exporter} export",
                      "version": ort.__version__, "max_rel_vs_torch": max_diff}
    return fp_params


def _inference_mode() -> Any:
    import torch

    return torch.inference_mode()


def _targets(programs: list[_Program], full: str, lat: dict, rates: dict, peaks: dict,
             store: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue-5 targets, measured: one row per engine (non-reference backend) and target."""
    out = []
    engines = [p for p in programs if not p.is_reference]
    for p in engines:
        ort, mine = lat.get((ORT_FP32, full)), lat.get((p.label, full))
        value = ort["median_ms"] / mine["median_ms"] if ort and mine else None
        out.append({"name": f"{p.label} view {full} vs ONNX Runtime FP32, batch 1, 1 thread", "unit": "x faster",
                    "target": TARGET_SPEEDUP_VS_ORT, "measured": value,
                    "status": "n/a" if value is None else ("PASS" if value >= TARGET_SPEEDUP_VS_ORT else "MISS")})
        rate = rates.get((p.label, full), {})
        frac = rate.get("peak_fraction")
        out.append({"name": f"{p.label} binary layers of view {full} vs popcount peak", "unit": "of peak",
                    "target": TARGET_PEAK_FRACTION, "measured": frac,
                    "status": "n/a" if frac is None else ("PASS" if frac >= TARGET_PEAK_FRACTION else "MISS")})
    if not engines:
        out.append({"name": "engine vs ONNX Runtime FP32 (no engine backend benchmarked)", "unit": "x faster",
                    "target": TARGET_SPEEDUP_VS_ORT, "measured": None, "status": "n/a"})
    out.append({"name": "artifact vs FP32 weights", "unit": "x smaller", "target": TARGET_STORAGE_RATIO,
                "measured": store["ratio"],
                "status": "PASS" if store["ratio"] >= TARGET_STORAGE_RATIO else "MISS"})
    return out


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------


def _table(head: list[str], rows: list[list[str]], right: set[int], markdown: bool) -> list[str]:
    if markdown:
        rule = "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"
        return ["| " + " | ".join(head) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [fmt(head), "-" * len(fmt(head)), *map(fmt, rows)]


def _ms(v: float | None) -> str:
    return "" if v is None else (f"{v:.4f}" if v < 0.1 else f"{v:.3f}" if v < 10 else f"{v:.1f}")


def _giga(v: float | None) -> str:
    return "" if v is None else f"{v / 1e9:,.1f}"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def _measured(t: dict[str, Any]) -> str:
    v = t["measured"]
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if t["unit"] == "of peak" else f"{v:.2f}x"


def _goal(t: dict[str, Any]) -> str:
    if t["unit"] == "of peak":
        return f">= {100 * t['target']:.0f}% of peak"
    return f">= {t['target']:g}x {t['unit'].removeprefix('x ')}"


def _header(res: dict[str, Any]) -> list[str]:
    m, s, a = res["machine"], res["settings"], res["artifact"]
    engines = ", ".join(f"{b['label']}" + (f" (best popcount peak {b['popcount_peak_ops_per_s'] / 1e9:,.1f} G binary ops/s)"
                                          if b["popcount_peak_ops_per_s"] else "") for b in res["backends"])
    versions = f"Python {m['python']}, numpy {m['numpy']}"
    if m.get("torch"):
        versions += f", torch {m['torch']}"
    if m.get("onnxruntime"):
        versions += f", onnxruntime {m['onnxruntime']}"
    load = " / ".join(f"{v:.2f}" for v in m["load_average"]) if m.get("load_average") else "n/a"
    lines = [
        f"command: `{res['command']}` ({res['date']})" if res["command"] else f"date: {res['date']}",
        f"machine: {m['cpu']} ({m['arch']}, {m['logical_cpus']} logical CPUs, flags: "
        f"{' '.join(m['cpu_flags']) or 'none of interest'}), {m['os']}; {versions}; load average at the end {load}",
        f"artifact: {a['path']} ({res['storage']['artifact_bytes']:,} bytes, input {tuple(a['input_shape'])}, "
        f"{a['labels']} labels, views {', '.join(a['views'])}; full width: view {a['full_view']})",
        f"backends: {engines}",
        f"one thread everywhere (the engine is single-threaded; torch.set_num_threads(1); ONNX Runtime intra/inter "
        f"op threads 1, sequential; {', '.join(k for k in THREAD_ENV if s['thread_env'].get(k) == '1') or 'no'} = 1); "
        f"batch-1 latency over {s['runs']} runs after {s['warmup']} warm-up runs, candidates alternating in blocks "
        f"of {s['block']}, each after {s.get('settle_ms', 0):g} ms of untimed calls of its own; throughput at batch {s['batch']}; features precomputed (front-end timed separately)",
    ]
    return lines


def _render(res: dict[str, Any], markdown: bool) -> str:
    out = _header(res)
    if markdown:
        out = [f"- {line}" for line in out]
    out.append("")
    head = ["backend", "kernel", "view", "median ms", "p90 ms", "runs", f"clips/s @{res['settings']['batch']}",
            "binary MACs", "float MACs", "vs ORT FP32", "vs PyTorch FP32"]
    rows = []
    order = {v: i for i, v in enumerate(res["artifact"]["views"])}
    rank = {b["label"]: i for i, b in enumerate(sorted(res["backends"], key=lambda b: b["backend"] == REFERENCE))}
    rank.update({ORT_FP32: len(rank), TORCH_FP32: len(rank) + 1})  # engines, baselines, then the reference
    rank.update({b["label"]: len(rank) + 2 for b in res["backends"] if b["backend"] == REFERENCE})
    for r in sorted(res["latency"], key=lambda r: (order.get(r["view"], 0), rank.get(r["backend"], 0))):
        mac = res["macs"][r["view"]]
        rows.append([r["backend"], r.get("kernel", ""), r["view"], _ms(r["median_ms"]), _ms(r["p90_ms"]), str(r["runs"]),
                     f"{r['clips_per_s']:,.0f}" if r.get("clips_per_s") else "",
                     f"{mac['binary']:,}", f"{mac['float']:,}",
                     f"{r['speedup_vs_ort']:.2f}x" if r.get("speedup_vs_ort") else "",
                     f"{r['speedup_vs_torch']:.2f}x" if r.get("speedup_vs_torch") else ""])
    out += _table(head, rows, {3, 4, 5, 6, 7, 8, 9, 10}, markdown)
    fe = res.get("frontend")
    if fe:
        out += ["", f"front-end ({fe['kind']}, numpy, per 1 clip, not included above): median {_ms(fe['median_ms'])} ms "
                f"over {fe['runs']} runs"]
    st = res["storage"]
    out += ["", f"storage: artifact {st['artifact_bytes']:,} bytes (packed binary weights {st['packed_weight_bytes']:,}, "
            f"other tensors {st['other_tensor_bytes']:,}, header and plan {st['header_bytes']:,}); FP32 weights of the "
            f"same architecture {st['fp32_bytes']:,} bytes ({st['fp32_params']:,} parameters x 4): "
            f"{st['ratio']:.2f}x smaller"]
    full = res["artifact"]["full_view"]
    engines = [b for b in res["backends"] if b["backend"] != REFERENCE]
    for b in engines or res["backends"]:  # the reference's per-op times only when it runs alone (JSON has all)
        rows_b = [r for r in res["layers"] if r["backend"] == b["backend"] and r["kernel"] == b["kernel"]
                  and r["view"] == full and r["runs_binary"]]
        if not rows_b:
            continue
        rate = next((x for x in res["layer_rates"] if x["backend"] == b["label"] and x["view"] == full), None)
        peak = rate["peak_ops_per_s"] if rate else None
        clock = rate.get("clock_overhead_s") if rate else None
        net = f", net of its clock reads ({clock * 1e9:.0f} ns per op)" if clock else ""
        out += ["", f"binary layers of view {full} on {b['label']} (profiler{net}; binary ops = XNOR-popcount bit products"
                + (f"; popcount peak {peak / 1e9:,.1f} G/s, measured around this profile)" if peak
                   else "; no popcount peak measured)"), ""]
        head = ["op #", "layer", "op", "output", "binary MACs", "executed", "us/call", "G binary ops/s", "of peak"]

        def executed(r: dict[str, Any]) -> str:
            return "" if r["executed_binary_macs"] in (None, r["binary_macs"]) else f"{r['executed_binary_macs']:,}"
        rr = [[str(r["index"]), r["name"], r["op"], "x".join(map(str, r["output_shape"])), f"{r['binary_macs']:,}",
               executed(r), "" if r["seconds"] is None else f"{r['seconds'] * 1e6:.2f}", _giga(r["binary_ops_per_s"]),
               _pct(r["peak_fraction"])] for r in rows_b]
        if rate:
            rr.append(["", "all binary layers", "", "", f"{rate['binary_macs']:,}",
                       f"{rate['executed_binary_ops']:,}" if rate["executed_binary_ops"] != rate["binary_macs"] else "",
                       f"{rate['binary_seconds'] * 1e6:.2f}", _giga(rate["binary_ops_per_s"]), _pct(rate["peak_fraction"])])
        out += _table(head, rr, {0, 4, 5, 6, 7, 8}, markdown)
    out += ["", "targets (reported, not asserted):", ""]
    out += _table(["target", "measured", "goal", "status"],
                  [[t["name"], _measured(t), _goal(t), t["status"]] for t in res["targets"]], set(), markdown)
    if res["notes"]:
        out += [""] + [f"note: {n}" for n in res["notes"]]
    return "\n".join(out) + "\n"


def render_text(res: dict[str, Any]) -> str:
    """The results as aligned text tables (what ``binkit bench`` prints)."""
    return _render(res, markdown=False)


def render_markdown(res: dict[str, Any]) -> str:
    """The results as Markdown (``--markdown``; the format of benchmarks/RESULTS.md)."""
    return _render(res, markdown=True)


# ---------------------------------------------------------------------------------------------
# binkit summary MODEL.bkm
# ---------------------------------------------------------------------------------------------


def _compiled_backend(names: list[str]) -> str | None:
    """The first registered backend other than the numpy reference (a compiled engine)."""
    return next((name for name in names if name != REFERENCE), None)


def summarize_artifact(path: str, view: str | None = None, latency: bool | None = None,
                       backend: str | None = None, repeats: int = 100) -> dict[str, Any]:
    """Per-op rows of one view of an artifact: op, output shape, runs binary, MACs, and (with
    ``latency``) each op's measured time from the backend's profiler.

    Args:
        latency: ``True`` measure, ``False`` don't, ``None`` measure when a compiled backend
            with a profiler is registered (cheap) and skip otherwise.
        backend: the backend to profile on; default: that compiled backend, else ``reference``.
    """
    from binkit.runtime import backend_names, get_backend

    artifact = load_artifact(path)
    view = artifact.default_view if view is None else str(view)
    rows = plan_rows(artifact, view)
    used, kernel, note, clock = None, "", "", None
    if latency is not False:
        name = backend or _compiled_backend(backend_names())
        if name is None and latency:
            name = REFERENCE
        if name is not None:
            try:
                program = get_backend(name).load(artifact)
                if hasattr(program, "profile") or name == REFERENCE:
                    x, _ = _features(artifact, 1, 0)
                    reps = max(2, repeats // 10) if name == REFERENCE else repeats
                    rows = profile_view(program, artifact, x, view, reps, reference=name == REFERENCE) or rows
                    used, kernel = name, str(getattr(program, "kernel", "") or "")
                    clock = getattr(program, "clock_overhead", None)
                else:
                    note = f"backend {name!r} has no profiler: no per-op latency"
            except Exception as exc:  # asked for: report; by default (when cheap): the table without times
                if latency:
                    raise
                rows = plan_rows(artifact, view)
                note = f"no per-op latency: backend {name!r} failed ({type(exc).__name__}: {exc})"
    from binkit.runtime.artifact import describe

    head = describe(artifact).split("\n## Ops of view")[0].rstrip()  # describe() without its op table
    return {
        "artifact": str(artifact.path), "view": view, "describe": head, "backend": used, "kernel": kernel,
        "clock_overhead_s": clock, "note": note, "rows": [r.to_dict() for r in rows],
        "totals": {"binary_macs": sum(r.binary_macs for r in rows), "float_macs": sum(r.float_macs for r in rows),
                   "binary_ops": sum(r.runs_binary for r in rows), "ops": len(rows),
                   "seconds": sum(r.seconds for r in rows if r.seconds) if used else None},
        "storage": storage(artifact),
    }


def render_summary(s: dict[str, Any], markdown: bool = False) -> str:
    """``binkit summary MODEL.bkm`` output: describe() plus the per-op table."""
    timed = s["backend"] is not None
    head = ["op #", "layer", "op", "output", "runs binary", "binary MACs", "float MACs"] + (["us/call"] if timed else [])
    rows = []
    for r in s["rows"]:
        binary = "yes" if r["runs_binary"] else ("no (float fallback)" if r["fallback"] else "no")
        row = [str(r["index"]), r["name"], r["op"], "x".join(map(str, r["output_shape"])), binary,
               f"{r['binary_macs']:,}" if r["binary_macs"] else "", f"{r['float_macs']:,}" if r["float_macs"] else ""]
        if timed:
            row.append("" if r["seconds"] is None else f"{r['seconds'] * 1e6:.2f}")
        rows.append(row)
    t = s["totals"]
    total = ["", "total", "", "", f"{t['binary_ops']}/{t['ops']}", f"{t['binary_macs']:,}", f"{t['float_macs']:,}"]
    if timed:
        total.append(f"{t['seconds'] * 1e6:.2f}")
    rows.append(total)
    lines = [s["describe"], "", f"## Ops of view {s['view']!r}", ""]
    if timed:
        lines += [f"per-op latency: backend {s['backend']}" + (f" (kernel {s['kernel']})" if s["kernel"] else "")
                  + ", batch 1, median per call"
                  + (f", net of the profiler's clock reads ({s['clock_overhead_s'] * 1e9:.0f} ns per op)"
                     if s.get("clock_overhead_s") else ""), ""]
    elif s["note"]:
        lines += [s["note"], ""]
    lines += _table(head, rows, {5, 6, 7}, markdown)
    if timed and any(r["seconds"] == 0 for r in s["rows"]):
        lines += ["", "0.00 us: fused into a neighbouring op (the epilogue of the op before it, or the input "
                  "packing of the binary op after it), or free (a layout change that copies nothing)"]
    st = s["storage"]
    lines += ["", f"artifact {st['artifact_bytes']:,} bytes; FP32 weights of the same architecture "
              f"{st['fp32_bytes']:,} bytes: {st['ratio']:.2f}x smaller"]
    return "\n".join(lines) + "\n"
