"""The main job (``binkit demo``): every registered binarizer on one backbone, one table.

Until the BiFSMN pipeline lands this runs the best end-to-end path that exists: the synthetic
``tones`` task, a full-precision baseline, then each registered quantizer method with the same
data, architecture and schedule; it writes ``report.md`` and ``results.json`` to the output
folder and prints the comparison table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from binkit import registry
from binkit.atomic import atomic_write_text
from binkit.nn.summary import summary
from binkit.specs import ExperimentSpec, load_spec, resolve

__all__ = ["run_demo", "DEFAULT_SPEC"]

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "configs" / "demo_tones.toml"
SECONDS_PER_RUN_ESTIMATE = 20  # measured on the 2-core CI machine type, see benchmarks/RESULTS.md


def _variant(base: ExperimentSpec, method: str | None) -> ExperimentSpec:
    spec = base.model_copy(deep=True)
    if method is None:
        spec.name = f"{base.name}-fp"
        spec.binarization.enabled = False
    else:
        spec.name = f"{base.name}-{method}"
        spec.binarization.method = method
        spec.binarization.params = {}
    return spec


def run_demo(out_dir: str | Path = "demo_out", spec_path: str | Path | None = None,
             methods: list[str] | None = None, epochs: int | None = None, progress: bool = True) -> list[dict]:
    """Train FP + each method; return the result rows (also written to ``out_dir``)."""
    from binkit.train import fit

    base = load_spec(spec_path or DEFAULT_SPEC)
    if epochs is not None:
        base.training.epochs = epochs
    methods = methods if methods is not None else registry.names("quantizer")
    for m in methods:
        registry.get("quantizer", m)  # fail fast on unknown names
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [None, *methods]
    print(f"binkit demo: {len(runs)} runs (full precision + {', '.join(methods)}) on "
          f"'{base.data.dataset}' with '{base.model.architecture}', {base.training.epochs} epochs each; "
          f"expect about {len(runs) * SECONDS_PER_RUN_ESTIMATE // 60 + 1} min on 2 cores.", flush=True)

    data = None
    rows = []
    for method in runs:
        resolved = resolve(_variant(base, method))
        if data is None:
            data = resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)
        name = method or "fp32"
        t0 = time.perf_counter()
        result = fit(resolved, out / name, progress=progress, data=data)
        s = summary(result.model, print_fn=None)
        entry = resolved.quantizer
        rows.append({
            "method": name,
            "precision": "32" if entry is None else str(entry.precision_for(resolved.quantizer_params)),
            "deployable": "n/a" if entry is None else ("yes" if entry.deployable else "no"),
            "test_acc": result.test_acc["full"],
            "val_acc": result.val_acc["full"],
            "best_epoch": result.best_epoch,
            "params": s.total_params,
            "memory_kib": s.memory_bytes / 1024,
            "compression": s.compression_ratio,
            "binary_macs": s.binary_macs,
            "float_macs": s.float_macs,
            "seconds": time.perf_counter() - t0,
        })
        print(f"  {name:<12} test acc {result.test_acc['full']:.3f}  ({rows[-1]['seconds']:.0f}s)", flush=True)

    table = _markdown(rows, base)
    atomic_write_text(out / "results.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(out / "report.md", table)
    print()
    print(table)
    print(f"report: {out / 'report.md'}")
    return rows


def _markdown(rows: list[dict], base: ExperimentSpec) -> str:
    head = ("| method | bits | deployable | test acc | val acc | memory KiB | compression | "
            "binary MACs | float MACs | train s |\n|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['method']} | {r['precision']} | {r['deployable']} | {r['test_acc']:.3f} | {r['val_acc']:.3f} | "
        f"{r['memory_kib']:.1f} | {r['compression']:.2f}x | {r['binary_macs']:,} | {r['float_macs']:,} | "
        f"{r['seconds']:.0f} |\n" for r in rows)
    return (f"# binkit demo: binarizers on {base.model.architecture} / {base.data.dataset}\n\n"
            f"{base.training.epochs} epochs, {base.training.optimizer} lr {base.training.lr}, "
            f"batch {base.training.batch_size}, seed {base.training.seed}; first and last layers full precision.\n\n"
            + head + body)
