"""The ``binkit`` command. Each subcommand turns arguments into a spec and calls one function.

Errors binkit raises on purpose (bad specs, unknown plugin names, bad files) print as
``binkit: error: ...`` with the field path, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from binkit.errors import BinkitError

__all__ = ["main"]


def _cmd_plugins(args: argparse.Namespace) -> int:
    from binkit import registry

    kinds = [args.kind] if args.kind else list(registry.KINDS)
    listing = {}
    for kind in kinds:
        rows = []
        for name in registry.names(kind, include=args.filter):
            e = registry.get(kind, name)
            row = {"name": name, "provider": e.provider, "description": e.description,
                   "reference": e.reference}
            if kind == "quantizer":
                row["precision"] = e.precision
                row["precision_param"] = e.precision_param
                row["packing"] = e.packing or "not deployable"
            rows.append(row)
        listing[kind] = rows
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for kind, rows in listing.items():
        print(f"{kind}s ({len(rows)}):")
        if not rows:
            print("  (none registered)")
        width = max([len(r["name"]) for r in rows] + [4])
        pwidth = max([len(r["provider"]) for r in rows] + [8])
        for r in rows:
            extra = "  "
            if kind == "quantizer":
                bits = f"{r['precision']}-bit" + (f" ({r['precision_param']})" if r["precision_param"] else "")
                extra = f"  {bits:<20} {r['packing']:<15}"
            print(f"  {r['name']:<{width}}  {r['provider']:<{pwidth}}{extra}{r['description']}")
        print()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from binkit.specs import load_spec, spec_to_toml

    spec = load_spec(args.spec)
    print(f"{args.spec}: valid")
    if args.show:
        print(spec_to_toml(spec))
    return 0


def _load_model(path: str):
    """A model from a spec (fresh weights) or a run folder / checkpoint (trained)."""
    from binkit.specs import load_spec, resolve
    from binkit.train import build_model, load_checkpoint

    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    if p.suffix == ".pt":
        model, _ = load_checkpoint(p)
        return model, None
    resolved = resolve(load_spec(p))
    shape = resolved.spec.features.shape
    num_classes = getattr(resolved.dataset_params, "num_classes", 12)
    return build_model(resolved, num_classes, shape), resolved


def _cmd_summary(args: argparse.Namespace) -> int:
    if Path(args.target).suffix == ".bkm":  # an exported artifact: per-op table, torch-free
        from binkit.bench import render_summary, summarize_artifact

        s = summarize_artifact(args.target, view=args.view, latency=args.latency, backend=args.backend)
        print(json.dumps(s, indent=2) if args.json else render_summary(s, markdown=args.markdown), end="")
        return 0
    if args.latency or args.backend:
        raise ValueError("--latency and --backend apply to an artifact (.bkm)")
    from binkit.nn.summary import summary

    model, _ = _load_model(args.target)
    s = summary(model, print_fn=None, forward_kwargs={"view": args.view} if args.view else None)
    if args.json:
        print(json.dumps(s.to_dict(), indent=2))
    elif args.markdown:
        print(s.to_markdown())
    else:
        print(s)
    return 0


#: BLAS/OpenMP thread pools read these when numpy and torch load (binkit.bench.runner.THREAD_ENV).
_ONE_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS")


def _cmd_bench(args: argparse.Namespace) -> int:
    import shlex

    for var in _ONE_THREAD_ENV:  # one thread: before numpy/torch are imported in this process
        os.environ[var] = "1"
    from binkit.atomic import atomic_write_text
    from binkit.bench import BenchOptions, render_markdown, render_text, run_bench

    def names(text: str | None) -> list[str] | None:
        return [n.strip() for n in text.split(",") if n.strip()] if text else None

    opts = BenchOptions(
        artifact=args.model, backends=names(args.backends), views=names(args.views), runs=args.runs,
        reference_runs=args.reference_runs, warmup=args.warmup, batch=args.batch,
        throughput_runs=args.throughput_runs, profile_repeats=args.profile_repeats, kernel=args.kernel,
        torch=not args.no_torch, onnx=not args.no_onnx, onnx_exporter=args.onnx_exporter,
        peak_seconds=args.peak_seconds,
        seed=args.seed, progress=not args.quiet,
        command="binkit " + shlex.join(args.argv[args.argv.index("bench"):] if "bench" in args.argv else args.argv),
    )
    results = run_bench(opts)
    text, markdown = render_text(results), render_markdown(results)  # render before writing anything
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, markdown)
    print(text, end="")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from binkit.specs import load_spec
    from binkit.train import fit

    spec = load_spec(args.spec)
    if args.epochs:
        spec.training.epochs = args.epochs
    out = Path(args.out or Path("runs") / spec.name)
    result = fit(spec, out, progress=not args.quiet, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    accs = ", ".join(f"{k} {v:.4f}" for k, v in result.test_acc.items())
    print(f"best epoch {result.best_epoch}; test accuracy: {accs}; run folder: {out}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from binkit.export import export_run

    kw = {}
    if args.no_float16:
        kw["float16"] = False
    if args.allow_float_fallback:
        kw["allow_float_fallback"] = True
    print(export_run(args.run, args.output, **kw).to_markdown())
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from binkit.runtime.model import infer_file

    for label, score in infer_file(args.model, args.audio, backend=args.backend, view=args.view, top=args.top):
        print(f"{label}\t{score:.4f}")
    return 0


def _runtime_args(s: argparse.ArgumentParser, audio_help: str) -> None:
    """The arguments ``infer`` and ``stream`` share: artifact, audio file, backend, view."""
    s.add_argument("model", help="artifact (.bkm) with a front-end")
    s.add_argument("audio", help=audio_help)
    s.add_argument("--backend", default="auto",
                   help="inference backend: neon (the compiled engine), reference (numpy), or auto "
                   "(default: neon when installed, else reference)")
    s.add_argument("--view", default=None, help="view (thinness) to run, e.g. 4")


def _cmd_stream(args: argparse.Namespace) -> int:
    import json

    from binkit.runtime.stream import detect_file, spec_from_args

    spec = spec_from_args(args)
    found, seconds = detect_file(args.model, args.audio, spec, backend=args.backend, view=args.view)
    for d in found:
        print(f"{d.start_s:9.3f}\t{d.end_s:9.3f}\t{d.label}\t{d.score:.4f}")
    print(f"{len(found)} detection(s) in {seconds:.2f} s of audio", file=sys.stderr)
    if args.json:
        from binkit.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps({"audio": str(args.audio), "model": str(args.model),
                                                 "seconds": seconds, "settings": spec.model_dump(mode="json"),
                                                 "detections": [d.to_dict() for d in found]}, indent=1) + "\n")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from binkit.data.synth import synthesize

    m = synthesize(args.out, size=args.size, seed=args.seed, jobs=args.jobs, progress=not args.quiet,
                   engines=args.engines, words=args.words, overwrite=args.overwrite)
    splits = ", ".join(f"{k} {v['voices']} voices" for k, v in m["splits"].items())
    print(f"{args.out}: {m['counts']['clips']} clips from {m['counts']['voices']} voices ({splits}) "
          f"in {m['elapsed_s']:.0f} s; manifest: {Path(args.out) / 'manifest.json'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from binkit.train.report import evaluate_run

    report = evaluate_run(args.run, split=args.split, out_dir=args.out, data_root=args.data_root,
                          snrs=args.snr or ())
    for view, acc in report.accuracy.items():
        macs = report.macs[view]
        print(f"view {view:>5}: accuracy {acc:.4f}  (binary MACs {macs['binary']:,}, float MACs {macs['float']:,})")
    for snr, accs in report.noisy_accuracy.items():
        print(f"noise at {snr} SNR: " + ", ".join(f"view {v} {a:.4f}" for v, a in accs.items()))
    print(f"report: {report.files['markdown']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from binkit.demo import run_demo

    run_demo(args.grid, epochs=args.epochs, progress=not args.quiet)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from binkit.train.compare import run_grid

    only = args.only.split(",") if args.only else None
    rows, out = run_grid(args.grid, progress=not args.quiet, only=only, epochs=args.epochs,
                         train=not args.report, jobs=args.jobs)
    if not rows:
        print(f"binkit: error: no finished cell to tabulate in {out}", file=sys.stderr)
        return 1
    print((out / "compare.md").read_text())
    print(f"table: {out / 'compare.md'}; plot: {out / 'compare.png'}")
    failed = [r["cell"] for r in rows if "error" in r]
    if failed:
        print(f"binkit: error: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from binkit import __version__

    p = argparse.ArgumentParser(prog="binkit", description="Train, export and run binarized neural networks.")
    p.add_argument("--version", action="version", version=f"binkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("plugins", help="list registered quantizers, architectures, distillers, datasets, backends, lowerings")
    s.add_argument("--kind", choices=["quantizer", "architecture", "distiller", "dataset", "backend", "lowering"])
    s.add_argument("--filter", default="*", help="wildcard on names, e.g. 'bi*'")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_cmd_plugins)

    s = sub.add_parser("check", help="validate a spec (TOML) and resolve its plugins")
    s.add_argument("spec")
    s.add_argument("--show", action="store_true", help="print the resolved spec with all defaults")
    s.set_defaults(func=_cmd_check)

    s = sub.add_parser("summary", help="per-layer parameters by bit width, memory and MACs")
    s.add_argument("target", help="a spec (.toml), a run folder, a checkpoint (.pt) or an artifact (.bkm)")
    s.add_argument("--view", help="summarise this view of a thinnable model")
    s.add_argument("--latency", action=argparse.BooleanOptionalAction, default=None,
                   help="artifact: measure each op's latency with the backend's profiler (default: when a "
                   "compiled backend is installed)")
    s.add_argument("--backend", help="artifact: backend to profile on (default: the compiled engine)")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--markdown", action="store_true")
    s.set_defaults(func=_cmd_summary)

    s = sub.add_parser("bench", help="latency, throughput, storage and binary-op efficiency of an artifact",
                       description="Time an artifact on every backend and view (batch 1, one thread, median "
                       "and p90) against the same architecture in FP32 in PyTorch and ONNX Runtime; batch "
                       "throughput; artifact vs FP32 weight bytes; per binary layer, binary ops per second "
                       "against a popcount peak measured here. Prints the issue-5 targets with PASS/MISS.")
    s.add_argument("model", help="artifact (.bkm)")
    s.add_argument("--backends", help="comma-separated backends (default: every registered one)")
    s.add_argument("--views", help="comma-separated views (default: all)")
    s.add_argument("--runs", type=_positive, default=1000, help="timed batch-1 calls per candidate (default 1000)")
    s.add_argument("--reference-runs", type=_positive, default=50,
                   help="timed calls for the slow numpy reference backend (default 50)")
    s.add_argument("--warmup", type=_positive_or_zero, default=50, help="untimed calls first (default 50)")
    s.add_argument("--batch", type=_positive, default=64, help="batch size for throughput (default 64)")
    s.add_argument("--throughput-runs", type=_positive, default=30, help="timed batch calls (default 30)")
    s.add_argument("--profile-repeats", type=_positive, default=100, help="calls per op in the per-layer profile")
    s.add_argument("--kernel", help="engine kernel variant (e.g. avx2, scalar), or 'all' to bench each")
    s.add_argument("--peak-seconds", type=float, default=0.2,
                   help="seconds of each popcount-peak measurement, one before and one after each "
                   "view's profile (default 0.2)")
    s.add_argument("--no-torch", action="store_true", help="no FP32 baselines (runs without torch installed)")
    s.add_argument("--no-onnx", action="store_true", help="no ONNX Runtime baseline")
    s.add_argument("--onnx-exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                   help="torch.onnx exporter (default auto: dynamo, then torchscript)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random input audio")
    s.add_argument("--json", metavar="PATH", help="write the results as JSON")
    s.add_argument("--markdown", metavar="PATH", help="write the report as Markdown")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser("train", help="train the experiment a spec describes (under torchrun: DDP)",
                       description="Train the experiment a spec describes. Started by torchrun "
                       "(torchrun --nproc_per_node=N -m binkit train SPEC) it trains with "
                       "DistributedDataParallel: gloo on CPU, nccl on GPU; rank 0 logs and writes.")
    s.add_argument("spec")
    s.add_argument("-o", "--out", help="run folder (default runs/<spec name>)")
    s.add_argument("--epochs", type=int, help="override training.epochs")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder from its last checkpoint")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("eval", help="evaluate a run: accuracy per view, per-class precision/recall, confusion matrix")
    s.add_argument("run", help="run folder (or its model.pt)")
    s.add_argument("--split", choices=["train", "val", "test"], default="test")
    s.add_argument("-o", "--out", help="report folder (default RUN/reports; RUN/reports-<tree folder> with --data-root)")
    s.add_argument("--data-root", help="evaluate on another tree of the same dataset and task "
                                       "(e.g. more held-out clips, or recorded speech)")
    s.add_argument("--snr", type=float, nargs="+", metavar="DB",
                   help="also score every view with the tree's background noise mixed in at each SNR "
                        "in dB (one seeded crop per clip: the same noisy clips every time)")
    s.set_defaults(func=_cmd_eval)

    s = sub.add_parser("export", help="trained run -> packed artifact (.bkm, safetensors)",
                       description="Fold weight scales, bias and BatchNorm into per-channel affines, pack "
                       "binary weights (bit 1 = -1, LSB-first, 64-bit words) and write one safetensors file "
                       "with the op plan, front-end, labels and views; the plan is checked against torch.")
    s.add_argument("run", help="run folder (its model.pt) or checkpoint")
    s.add_argument("-o", "--output", required=True, help="artifact path, e.g. model.bkm")
    s.add_argument("--no-float16", action="store_true", help="store full-precision layers as float32")
    s.add_argument("--allow-float-fallback", action="store_true",
                   help="run layers that cannot be binary in float (recorded in the artifact)")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("infer", help="run an artifact on a wav file (torch-free)")
    _runtime_args(s, "wav file (any rate; mixed to mono, resampled, padded/trimmed)")
    s.add_argument("--top", type=int, default=3, help="how many labels to print")
    s.set_defaults(func=_cmd_infer)

    s = sub.add_parser("stream", help="detect keywords in a long recording (torch-free)",
                       description="Slide the model's window over a long audio file every --hop-ms, "
                       "average each class's score over the last --smooth-ms, report a keyword when its "
                       "smoothed score is the best and reaches --threshold, then stay quiet for "
                       "--suppress-ms; nothing fires before --min-windows windows are averaged. Prints "
                       "start, end (seconds), label and score per detection.")
    _runtime_args(s, "audio file (any rate; mixed to mono, resampled to the model's rate)")
    from binkit.runtime.stream import add_spec_arguments

    add_spec_arguments(s)
    s.add_argument("--json", default=None, help="also write the detections here (JSON)")
    s.set_defaults(func=_cmd_stream)

    s = sub.add_parser("synth", help="write a synthetic Speech Commands V2-layout corpus (espeak-ng, flite, piper)",
                       description="Write a synthetic keyword corpus in the Speech Commands V2 layout "
                       "(35 words, _background_noise_, validation/testing lists by the hash split) "
                       "from three TTS engines. Deterministic for a seed.")
    s.add_argument("out", help="output folder (must be empty or absent)")
    s.add_argument("--size", choices=["small", "full"], default="small",
                   help="small: 12 voices, under a minute; full: 96 voices (default small)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    s.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    s.add_argument("--engines", nargs="+", choices=["espeak-ng", "flite", "piper"], help="subset of engines")
    s.add_argument("--words", nargs="+", help="subset of words (default all 35)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("compare", help="train a grid of specs (binarizer x backbone, ablations) and tabulate",
                       description="Train every cell of a grid TOML (see binkit.train.compare), skipping "
                       "finished cells and resuming unfinished ones; write compare.md/.json/.png.")
    s.add_argument("grid")
    s.add_argument("--only", help="comma-separated cell names to run; a seeded cell's NAME "
                   "selects all of its NAME-seedS cells")
    s.add_argument("--report", action="store_true",
                   help="train nothing: tabulate the finished cells and name the unfinished ones")
    s.add_argument("--jobs", type=_positive, default=1,
                   help="train up to N cells at once, one process each (e.g. small models sharing a "
                        "GPU); a cell waits for the cells whose {run:NAME} it takes; logs in OUT/logs")
    s.add_argument("--epochs", type=int, help="override training.epochs of every cell")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_compare)

    s = sub.add_parser("demo", help="the main job: synthetic corpus -> FP teacher -> BiFSMN -> per-view table",
                       description="Run configs/demo.toml: build the synthetic small corpus if absent, train "
                       "the FP teacher, the BiFSMN student and a plain binarizer, evaluate every view "
                       "and print accuracy, size, MACs and latency per view (runs/demo/demo.md).")
    s.add_argument("--grid", help="demo grid (default configs/demo.toml)")
    s.add_argument("--epochs", type=int, help="override training.epochs of every run (quick look)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except (BinkitError, FileNotFoundError, ValueError, FloatingPointError) as exc:
        print(f"binkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("binkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
