"""The main job (``binkit demo``): BiFSMN end to end on the embedded default corpus.

Steps: build the synthetic ``small`` corpus if absent -> train the full-precision teacher ->
train the BiFSMN student (thinnable views + HED, initialised from the teacher) and a plain
binarizer on the same backbone -> evaluate each view -> one table of accuracy, size, MACs and
latency per view, plus a report folder (comparison plot, confusion matrix, per-class metrics).

The grid is ``configs/demo.toml``; every step is an ordinary ``binkit compare`` cell, so a second
``binkit demo`` reuses finished runs. Each binary run is then exported (``<run>/model.bkm``) and
run on the compiled engine (backend ``neon``; the numpy ``reference`` backend if the engine is
not built) over the test split: the table gives, per view, the torch accuracy, the engine's
accuracy, the artifact size and both latencies (batch 1, one thread; PyTorch simulates binary
layers in float).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from binkit.atomic import atomic_write_text
from binkit.runtime import backend_names
from binkit.train.compare import load_grid, run_grid, to_markdown

__all__ = ["run_demo", "DEFAULT_GRID", "estimate_seconds"]

DEFAULT_GRID = Path(__file__).resolve().parent.parent / "configs" / "demo.toml"

# Measured on the 2-core CI machine type with the synthetic small corpus (tf protocol, 480
# training clips, batch 96): seconds per epoch per forward+backward pass of the DFSMN (one per
# trained view; a frozen teacher's forward counts a third), and the corpus build.
SECONDS_PER_PASS_EPOCH = 0.8
SYNTH_SECONDS = 30


def estimate_seconds(cells) -> float:
    """Rough wall time of the grid's untrained cells on 2 cores."""
    total = 0.0
    for _, resolved in cells:
        views = [v for v, w in resolved.views.items() if w > 0] or ["full"]
        passes = len(views) + (len(views) / 3 if resolved.distiller is not None else 0)
        total += resolved.spec.training.epochs * passes * SECONDS_PER_PASS_EPOCH
    return total


@torch.no_grad()
def _latency_ms(model: torch.nn.Module, shape: tuple[int, ...], view: str | None, runs: int = 200) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.zeros((1, *shape))
        call = (lambda: model(x)) if view is None else (lambda: model(x, view=view))
        for _ in range(20):
            call()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        times.sort()
        return 1000 * times[len(times) // 2]
    finally:
        torch.set_num_threads(threads)


def _engine_eval(run: Path, backend: str, model: torch.nn.Module) -> dict:
    """Export a binary run and evaluate the artifact on ``backend``; ``{"note": why}`` if not."""
    from binkit.nn.layers import BinaryLayerMixin
    from binkit.train.report import deploy_run

    if not any(isinstance(m, BinaryLayerMixin) for m in model.modules()):
        return {"note": "full precision"}
    return deploy_run(run, backend=backend, latency_runs=1000 if backend != "reference" else 50)


def _kernels(final: list[dict]) -> str:
    names = sorted({str(r["engine"]) for r in final if r.get("engine")})
    return "kernel " + ", ".join(names) if names else "no binary run exported"


def run_demo(grid_path: str | Path | None = None, *, epochs: int | None = None, progress: bool = True) -> Path:
    """Run the demo grid; print and write the final table; return the output folder."""
    from binkit.nn.summary import summary
    from binkit.train.build import load_checkpoint
    from binkit.train.report import evaluate_run

    grid_path = Path(grid_path or DEFAULT_GRID)
    if not grid_path.is_file():
        raise FileNotFoundError(f"demo grid not found: {grid_path} (run from a binkit checkout)")
    grid, cells, out = load_grid(grid_path, epochs=epochs)
    root = Path(cells[0][1].spec.data.params.get("root", ""))
    todo = [c for c in cells if not ((out / c[0].name / "result.json").is_file())]
    expect = estimate_seconds(todo) + (SYNTH_SECONDS if root and not root.exists() else 0)
    print(f"binkit demo: {len(cells)} runs ({', '.join(c.name for c, _ in cells)}) on "
          f"'{cells[0][1].spec.data.dataset}' ({root}); {len(todo)} to train; "
          f"expect about {max(1, round(expect / 60))} min on 2 cores.", flush=True)
    started = time.perf_counter()
    rows, out = run_grid(grid_path, progress=progress, epochs=epochs)

    backend = "neon" if "neon" in backend_names() else "reference"
    table = ["| run | view | test accuracy (torch) | binary MACs | float MACs | size KiB (1-bit weights) | "
             f"PyTorch latency ms | artifact KiB | {backend} accuracy | {backend} latency us |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    final = []
    for row in rows:
        model, meta = load_checkpoint(out / row["cell"] / "model.pt")
        shape = tuple(meta["feature_shape"])
        engine = _engine_eval(out / row["cell"], backend, model)
        for view, stats in row["views"].items():
            v = None if view == "full" else view
            s = summary(model, print_fn=None, forward_kwargs=None if v is None else {"view": v})
            lat = _latency_ms(model, shape, v)
            ev = engine.get("views", {})
            # a model without views is "full" in training and "default" in its artifact
            e = ev.get(view) or (next(iter(ev.values())) if view == "full" and len(ev) == 1 else {})
            final.append({"run": row["cell"], "view": view, "test_acc": stats["test_acc"],
                          "binary_macs": s.binary_macs, "float_macs": s.float_macs,
                          "size_kib": s.memory_bytes / 1024, "torch_latency_ms": lat,
                          "artifact_bytes": engine.get("artifact_bytes"), "engine": engine.get("kernel"),
                          "engine_acc": e.get("accuracy"), "engine_latency_us": e.get("latency_us")})
            cells = ([f"{engine['artifact_bytes'] / 1024:.1f}", f"{e['accuracy']:.4f}", f"{e['latency_us']:.1f}"]
                     if e else [engine.get("note", "-"), "-", "-"])
            table.append(f"| {row['cell']} | {view} | {stats['test_acc']:.4f} | {s.binary_macs:,} | "
                         f"{s.float_macs:,} | {s.memory_bytes / 1024:.1f} | {lat:.2f} | " + " | ".join(cells) + " |")
        evaluate_run(out / row["cell"], split="test", out_dir=out / "reports" / row["cell"])
    elapsed = time.perf_counter() - started
    text = (to_markdown(grid.name, rows) + "\n## Per view\n\n" + "\n".join(table) + "\n\n"
            f"Protocol: {rows[0]['protocol'] or 'n/a'}; total wall time {elapsed / 60:.1f} min. "
            "Latency: batch 1, one thread; PyTorch eval mode simulates binary layers in float; "
            f"the engine column is backend `{backend}` ({_kernels(final)}) on the exported `<run>/model.bkm`.\n"
            f"Plots and per-class reports: {out / 'compare.png'}, {out / 'reports'}/<run>/.\n")
    atomic_write_text(out / "demo.md", text)
    atomic_write_text(out / "demo.json", json.dumps({"rows": rows, "per_view": final,
                                                     "seconds": elapsed}, indent=2) + "\n")
    print()
    print(text)
    return out
