"""Evaluation reports for a trained run: accuracy per view, per-class precision and recall,
a confusion matrix (PNG) and a Markdown report (``binkit eval RUN``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binkit.atomic import atomic_path, atomic_write_text
from binkit.data.splits import LabeledSplits
from binkit.nn.summary import summary
from binkit.train.build import load_checkpoint

__all__ = ["EvalReport", "evaluate_run", "confusion_matrix", "per_class_metrics"]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts; rows are true labels, columns predictions."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class_metrics(cm: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    return [{"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for p, r, f, s in zip(precision, recall, f1, support)]


@dataclass
class EvalReport:
    split: str
    labels: list[str]
    accuracy: dict[str, float]
    macs: dict[str, dict[str, int]]
    confusion: np.ndarray
    per_class: list[dict[str, float]]
    files: dict[str, str]
    noisy_accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # "10dB" -> view -> acc

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "labels": self.labels, "accuracy": self.accuracy, "macs": self.macs,
                "noisy_accuracy": self.noisy_accuracy, "confusion": self.confusion.tolist(),
                "per_class": dict(zip(self.labels, self.per_class)), "files": self.files}


def _plot_confusion(cm: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * n, 1.0 + 0.45 * n), dpi=120)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@torch.no_grad()
def evaluate_run(run: str | Path, *, split: str = "test", out_dir: str | Path | None = None,
                 data: LabeledSplits | None = None, batch_size: int = 256,
                 data_root: str | Path | None = None, snrs: Sequence[float] = ()) -> EvalReport:
    """Evaluate a run folder (or ``model.pt``) on ``split``; write ``eval_<split>.{md,json}`` and
    ``confusion_<split>.png`` into ``out_dir`` (default ``<run>/reports``).

    ``data_root`` evaluates on another tree of the same dataset and task (its ``root``
    parameter replaced; the labels must match); the default report folder is then
    ``<run>/reports-<tree folder name>``.

    ``snrs`` also scores every view on the split with the tree's background noise mixed in at each
    signal-to-noise ratio in dB (:func:`binkit.data.pipeline.noisy_split`: one seeded crop per clip,
    silence entries unchanged; the same clips as ``benchmarks/heldout_renders.py --snr``). It needs
    a dataset of cached waveforms with background-noise files, and is checked before any work."""
    snrs = [float(s) for s in snrs]
    bad = [s for s in snrs if not np.isfinite(s)]
    if bad:
        raise ValueError(f"an SNR must be a finite number of decibels, got {bad}")
    run = Path(run)
    ckpt = run / "model.pt" if run.is_dir() else run
    model, meta = load_checkpoint(ckpt)
    resolved = meta["resolved"]
    params = resolved.dataset_params
    if data_root is not None:
        if "root" not in type(params).model_fields:
            raise ValueError(f"dataset {resolved.spec.data.dataset!r} has no root parameter to replace")
        if not Path(data_root).is_dir():
            raise FileNotFoundError(f"data root {data_root} is not a folder")
        params = params.model_copy(update={"root": str(data_root)})
        if out_dir is None:
            out_dir = ckpt.parent / f"reports-{Path(data_root).resolve().name}"
    if data is None:
        data = resolved.dataset.factory(params, resolved.spec.features)
    if list(data.labels) != list(meta["labels"]):
        raise ValueError(f"{ckpt}: trained on labels {meta['labels']}, the data now gives {data.labels}")
    if snrs:
        from binkit.data.pipeline import noise_pipeline, tree_name

        tree = tree_name(params, resolved.spec.name)
        noise_pipeline(data, tree, resolved.spec.data.dataset)
    views: list[str | None] = list(resolved.views) or [None]
    preds: dict[str, list[np.ndarray]] = {("full" if v is None else v): [] for v in views}
    truth = []
    for x, y in data.batches(split, batch_size):
        for v in views:
            logits = model(x) if v is None else model(x, view=v)
            preds["full" if v is None else v].append(logits.argmax(-1).numpy())
        truth.append(y.numpy())
    y_true = np.concatenate(truth)
    accuracy = {k: float((np.concatenate(p) == y_true).mean()) for k, p in preds.items()}
    noisy: dict[str, dict[str, float]] = {}
    if snrs:
        from binkit.data.pipeline import noisy_split
        from binkit.train.trainer import evaluate

        for snr in snrs:
            x_all, y_all = noisy_split(data, split, snr, tree, dataset=resolved.spec.data.dataset)
            noisy[f"{snr:g}dB"] = evaluate(model, torch.utils.data.TensorDataset(x_all, y_all), views,
                                           batch_size)
    first = next(iter(preds))
    cm = confusion_matrix(y_true, np.concatenate(preds[first]), len(data.labels))
    per_class = per_class_metrics(cm)
    macs = {}
    for v in views:
        s = summary(model, print_fn=None, forward_kwargs={"view": v} if v is not None else None)
        macs["full" if v is None else v] = {"binary": s.binary_macs, "float": s.float_macs}

    out = Path(out_dir) if out_dir is not None else (ckpt.parent / "reports")
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"confusion_{split}.png"
    _plot_confusion(cm, list(data.labels), f"{resolved.spec.name} ({split}, view {first}): "
                    f"accuracy {accuracy[first]:.4f}", png)
    report = EvalReport(split, list(data.labels), accuracy, macs, cm, per_class,
                        {"png": str(png), "markdown": str(out / f"eval_{split}.md"),
                         "json": str(out / f"eval_{split}.json")}, noisy)
    lines = [f"# {resolved.spec.name}: evaluation on {split} ({len(y_true)} clips)", "",
             *([f"Data root: `{data_root}` (the run trained on `{resolved.dataset_params.root}`)", ""]
               if data_root is not None else []),
             f"Checkpoint: `{ckpt}` (selected epoch {meta.get('best_epoch', '?')})", "",
             "| view | accuracy | binary MACs | float MACs |", "|---|---|---|---|"]
    lines += [f"| {k} | {a:.4f} | {macs[k]['binary']:,} | {macs[k]['float']:,} |" for k, a in accuracy.items()]
    if noisy:
        lines += ["", f"With background noise at a fixed SNR (one seeded crop per clip from the tree's "
                  f"noise files; silence entries unchanged):", "",
                  "| SNR | " + " | ".join(f"view {k}" for k in accuracy) + " |",
                  "|---|" + "---|" * len(accuracy)]
        lines += [f"| {c} | " + " | ".join(f"{a[k]:.4f}" for k in accuracy) + " |" for c, a in noisy.items()]
    lines += ["", f"Per class (view {first}):", "", "| label | precision | recall | F1 | support |",
              "|---|---|---|---|---|"]
    lines += [f"| {lab} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
              for lab, m in zip(data.labels, per_class)]
    lines += ["", f"![confusion matrix]({png.name})", ""]
    if data.info:
        lines += ["Data: " + ", ".join(f"{k}={data.info[k]}" for k in ("dataset", "version", "task", "protocol")
                                       if k in data.info), ""]
    atomic_write_text(out / f"eval_{split}.md", "\n".join(lines))
    atomic_write_text(out / f"eval_{split}.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def median_latency_seconds(fn, runs: int, warmup: int = 20) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls after ``warmup`` calls."""
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return times[len(times) // 2] * 1e-9


def split_arrays(run: str | Path, split: str = "test",
                 data: LabeledSplits | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A run's ``split`` as engine input: float32 features from the run's own pipeline (the
    torch front-end), integer labels, and the class names."""
    run = Path(run)
    if data is None:
        _, meta = load_checkpoint(run / "model.pt" if run.is_dir() else run)
        resolved = meta["resolved"]
        data = resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)
    feats, truth = [], []
    for x, y in data.batches(split, 256):
        feats.append(np.ascontiguousarray(x.numpy(), dtype=np.float32))
        truth.append(y.numpy())
    return np.concatenate(feats), np.concatenate(truth), list(data.labels)


def evaluate_artifact(artifact: str | Path, run: str | Path, *, backend: str = "neon", split: str = "test",
                      data: LabeledSplits | None = None, latency_runs: int | None = 1000) -> dict[str, Any]:
    """Accuracy of an exported artifact on ``backend`` over a run's ``split``, per view, plus the
    median batch-1 latency of one clip per view (``latency_runs`` calls after a warm-up; ``None``:
    1,000 on a compiled backend, 50 on the numpy reference).

    The features are the run's own pipeline features (the torch front-end); the numpy front-end
    that deployment uses matches it within the bounds its tests state. ``backend="auto"`` takes
    the compiled engine when it runs every op of the artifact; the result names the one used.
    """
    from binkit.runtime import load

    model = load(str(artifact), backend=backend)
    x_all, y_all, labels = split_arrays(run, split, data)
    if list(model.labels) != labels:
        raise ValueError(f"{artifact}: labels {model.labels} differ from the data's {labels}")
    if latency_runs is None:
        latency_runs = 50 if model.backend == "reference" else 1000
    out: dict[str, Any] = {"backend": model.backend, "kernel": getattr(model.program, "kernel", model.backend),
                           "clips": int(len(y_all)), "artifact_bytes": Path(artifact).stat().st_size, "views": {}}
    one = x_all[:1]
    for view in model.views:
        pred = np.concatenate([model.program.run(x_all[i:i + 256], view).argmax(-1)
                               for i in range(0, len(x_all), 256)])
        lat = median_latency_seconds(lambda: model.program.run(one, view), latency_runs)
        out["views"][view] = {"accuracy": float((pred == y_all).mean()), "latency_us": lat * 1e6}
    return out


def deploy_run(run: str | Path, *, backend: str = "auto", data: LabeledSplits | None = None,
               latency_runs: int | None = None) -> dict[str, Any]:
    """Export a run to ``<run>/model.bkm`` (its spec's ``[export]`` settings) and evaluate the
    artifact (:func:`evaluate_artifact`); ``{"note": why}`` when export refuses the model (the
    first line of its message: e.g. a binarizer that is not deployable)."""
    from binkit.export import ExportError, export_run

    run = Path(run)
    try:
        export_run(run, run / "model.bkm")
    except ExportError as exc:
        return {"note": f"not exported: {str(exc).splitlines()[0]}"}
    return evaluate_artifact(run / "model.bkm", run, backend=backend, data=data, latency_runs=latency_runs)
