"""A spec-driven trainer (single process).

One step sums, over the architecture's views, ``weight_v * (CE(z_v, y) + w_d * D(student_v,
teacher))`` and takes one backward pass; quantizer schedules advance per epoch and weight
constraints apply after each optimizer step. The best model by validation accuracy (full view)
is kept. Results go to ``out_dir``: the resolved ``spec.toml``, ``metrics.jsonl``,
``metrics.csv`` and ``model.pt`` (all written atomically).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binkit.atomic import atomic_path, atomic_write_text
from binkit.data.splits import LabeledSplits
from binkit.distill import DistillOutputs
from binkit.quant import apply_constraints, update_schedules
from binkit.specs import ExperimentSpec, ResolvedExperiment, resolve, spec_to_toml
from binkit.train.build import build_model, load_checkpoint

__all__ = ["fit", "evaluate", "TrainResult", "EpochMetrics"]


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_acc: dict[str, float]
    lr: float
    seconds: float


@dataclass
class TrainResult:
    model: nn.Module
    labels: list[str]
    history: list[EpochMetrics]
    best_epoch: int
    test_acc: dict[str, float]
    val_acc: dict[str, float]
    seconds: float
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


def _forward(model: nn.Module, x: torch.Tensor, view: str | None) -> DistillOutputs:
    logits = model(x) if view is None else model(x, view=view)
    return DistillOutputs(logits, dict(getattr(model, "taps", {}) or {}))


@torch.no_grad()
def evaluate(model: nn.Module, data, views: list[str | None], batch_size: int = 256,
             device: torch.device | None = None, split: str = "val") -> dict[str, float]:
    """Accuracy per view; key ``"full"`` for ``view=None``.

    ``data`` is a :class:`binkit.data.LabeledSplits` (its ``split`` is evaluated) or any
    dataset of ``(x, y)`` items.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    if isinstance(data, LabeledSplits):
        loader = data.batches(split, batch_size)
    else:
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    correct = {v: 0 for v in views}
    total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        for v in views:
            correct[v] += int((_forward(model, x, v).logits.argmax(-1) == y).sum())
        total += len(y)
    model.train(was_training)
    return {("full" if v is None else v): c / max(total, 1) for v, c in correct.items()}


def _make_optimizer(spec: ExperimentSpec, params) -> torch.optim.Optimizer:
    t = spec.training
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


def fit(spec: ExperimentSpec | ResolvedExperiment, out_dir: str | Path | None = None, *,
        progress: bool = True, data=None) -> TrainResult:
    """Train the experiment ``spec`` describes; return the best model and its metrics.

    Args:
        spec: an experiment spec (resolved here) or an already resolved one.
        out_dir: run directory for spec, metrics and checkpoint; ``None`` writes nothing.
        progress: show a progress bar per epoch (tqdm) on stderr.
        data: prebuilt :class:`binkit.data.LabeledSplits` to reuse across runs (must come
            from the same data/features spec).
    """
    resolved = spec if isinstance(spec, ResolvedExperiment) else resolve(spec)
    spec = resolved.spec
    t = spec.training
    _seed_everything(t.seed)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = _device(t.device)
    started = time.perf_counter()

    if data is None:
        data = resolved.dataset.factory(resolved.dataset_params, spec.features)
    model = build_model(resolved, data.num_classes, data.feature_shape).to(device)

    views: list[str | None] = list(resolved.views) or [None]
    weights = [resolved.views[v] for v in views] if resolved.views else [1.0]

    teacher = distiller = None
    if resolved.distiller is not None:
        teacher, meta = load_checkpoint(spec.distillation.teacher)
        if list(meta["labels"]) != list(data.labels):
            raise ValueError(f"teacher {spec.distillation.teacher} was trained on labels {meta['labels']}, "
                             f"the student's data has {data.labels}")
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        distiller = resolved.distiller.factory(resolved.distiller_params)

    optimizer = _make_optimizer(spec, model.parameters())
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
                 if t.schedule == "cosine" else None)
    drop_last = len(data.splits["train"]) > t.batch_size
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "spec.toml", spec_to_toml(spec))

    bar_factory = None
    if progress:
        try:
            from tqdm.auto import tqdm as bar_factory
        except ImportError:  # pragma: no cover - tqdm is a train dependency
            bar_factory = None

    history: list[EpochMetrics] = []
    best_acc, best_epoch, best_state = -1.0, -1, None
    for epoch in range(t.epochs):
        t0 = time.perf_counter()
        update_schedules(model, epoch, t.epochs)
        model.train()
        total_loss = correct = seen = 0
        batches = data.batches("train", t.batch_size, shuffle=True, epoch=epoch, seed=t.seed,
                               drop_last=drop_last)
        if bar_factory is not None:
            total = len(data.splits["train"]) // t.batch_size if drop_last else None
            batches = bar_factory(batches, total=total, desc=f"{spec.name} epoch {epoch + 1}/{t.epochs}",
                                  leave=False)
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            teacher_out = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_out = _forward(teacher, x, None)
            loss = x.new_zeros(())
            for v, w in zip(views, weights):
                student_out = _forward(model, x, v)
                term = F.cross_entropy(student_out.logits, y)
                if distiller is not None:
                    term = term + spec.distillation.weight * distiller(student_out, teacher_out)
                loss = loss + w * term
                if v == views[0]:
                    correct += int((student_out.logits.argmax(-1) == y).sum())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{spec.name}: loss became {loss.item()} at epoch {epoch + 1}; "
                                         "lower training.lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            apply_constraints(model)
            total_loss += loss.item() * len(y)
            seen += len(y)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        val = evaluate(model, data, views, device=device, split="val")
        m = EpochMetrics(epoch + 1, total_loss / max(seen, 1), correct / max(seen, 1), val, lr,
                         time.perf_counter() - t0)
        history.append(m)
        full = val[_key(views[0])]
        if full > best_acc:
            best_acc, best_epoch, best_state = full, epoch + 1, copy.deepcopy(model.state_dict())
        if out is not None:
            _write_metrics(out, history)
        if progress:
            vals = " ".join(f"{k}={v:.3f}" for k, v in val.items())
            print(f"[{spec.name}] epoch {epoch + 1}/{t.epochs} loss {m.train_loss:.4f} "
                  f"train_acc {m.train_acc:.3f} val_acc {vals} ({m.seconds:.1f}s)", flush=True)

    model.load_state_dict(best_state)
    model.eval()
    test = evaluate(model, data, views, device=device, split="test")
    val_best = history[best_epoch - 1].val_acc
    result = TrainResult(model, list(data.labels), history, best_epoch, test, val_best,
                         time.perf_counter() - started, out)
    if out is not None:
        with atomic_path(out / "model.pt") as tmp:
            torch.save({
                "spec_toml": spec_to_toml(spec), "labels": list(data.labels),
                "feature_shape": list(data.feature_shape), "best_epoch": best_epoch,
                "val_acc": val_best, "test_acc": test,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            }, tmp)
        atomic_write_text(out / "result.json", json.dumps({
            "name": spec.name, "best_epoch": best_epoch, "val_acc": val_best, "test_acc": test,
            "seconds": result.seconds, "labels": result.labels,
        }, indent=2) + "\n")
    return result


def _key(view: str | None) -> str:
    return "full" if view is None else view


def _write_metrics(out: Path, history: list[EpochMetrics]) -> None:
    rows = [asdict(m) for m in history]
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    buf = io.StringIO()
    flat = [{**{k: v for k, v in r.items() if k != "val_acc"},
             **{f"val_acc_{k}": v for k, v in r["val_acc"].items()}} for r in rows]
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(out / "metrics.csv", buf.getvalue())


