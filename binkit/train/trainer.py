"""The spec-driven trainer: single process, or torch DDP when started by ``torchrun``.

One step sums, over the views being trained, ``weight_v * (CE(z_v, y) + w_d * D(student_v,
teacher))`` and takes one backward pass (TBA when the views are thinness levels); quantizer
schedules advance per epoch and weight constraints apply after each optimizer step. The teacher,
when there is one, is frozen: eval mode, ``no_grad``, ``requires_grad=False``.

A run folder holds ``spec.toml`` (resolved), ``train.log``, ``metrics.jsonl``/``metrics.csv``,
``checkpoints/last.pt`` (written atomically after every epoch, with optimizer, scheduler and RNG
state, so ``resume=True`` continues a killed run and ends with the same metrics as an
uninterrupted one), ``model.pt`` (the selected model) and ``result.json``.
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
from binkit.nn._modes import eval_mode
from binkit.quant import apply_constraints, update_schedules
from binkit.specs import ExperimentSpec, ResolvedExperiment, resolve, spec_to_toml
from binkit.train.build import build_model, load_checkpoint
from binkit.train.distributed import DistContext, init_distributed

__all__ = ["fit", "evaluate", "TrainResult", "EpochMetrics", "STATE_FORMAT"]

STATE_FORMAT = "binkit-train-state/1"


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_acc: dict[str, float]
    lr: float
    seconds: float
    selected: bool = False


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


def _forward(model: nn.Module, x: torch.Tensor, view: str | None) -> DistillOutputs:
    logits = model(x) if view is None else model(x, view=view)
    inner = getattr(model, "module", model)  # DDP wraps the model
    return DistillOutputs(logits, dict(getattr(inner, "taps", {}) or {}))


def _key(view: str | None) -> str:
    return "full" if view is None else view


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
    return {_key(v): c / max(total, 1) for v, c in correct.items()}


def _make_optimizer(spec: ExperimentSpec, params) -> torch.optim.Optimizer:
    t = spec.training
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": json.dumps(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


class _Selector:
    """Which epoch's weights to keep (``training.select``)."""

    def __init__(self, rule: str, views: list[str | None], weights: list[float]) -> None:
        self.rule = rule
        self.trained = [_key(v) for v, w in zip(views, weights) if w > 0]
        self.best_acc, self.best_epoch = -1.0, 0

    def consider(self, epoch: int, val: dict[str, float]) -> bool:
        full = val[self.trained[0]] if self.trained else next(iter(val.values()))
        if self.rule == "last":
            self.best_acc, self.best_epoch = full, epoch
            return True
        if full <= self.best_acc:
            return False
        if self.rule == "monotonic_views" and len(self.trained) > 1:
            accs = [val[k] for k in self.trained]
            if not all(a > b for a, b in zip(accs, accs[1:])):
                return False
        self.best_acc, self.best_epoch = full, epoch
        return True


class _RunLog:
    """Rank-0 side effects: console/progress lines, train.log, metrics files, TensorBoard."""

    def __init__(self, out: Path | None, progress: bool, tensorboard: bool, main: bool) -> None:
        self.out, self.progress, self.main = out, progress, main
        self.writer = None
        if tensorboard and main and out is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # pragma: no cover - depends on an optional package
                raise RuntimeError("training.tensorboard = true needs the tensorboard package: "
                                   "pip install tensorboard") from exc
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def line(self, text: str) -> None:
        if not self.main:
            return
        if self.progress:
            print(text, flush=True)
        if self.out is not None:
            with open(self.out / "train.log", "a", encoding="utf-8") as f:
                f.write(text + "\n")

    def epoch(self, history: list[EpochMetrics]) -> None:
        if not self.main or self.out is None:
            return
        rows = [asdict(m) for m in history]
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        buf = io.StringIO()
        flat = [{**{k: v for k, v in r.items() if k != "val_acc"},
                 **{f"val_acc_{k}": v for k, v in r["val_acc"].items()}} for r in rows]
        writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())
        if self.writer is not None:
            m = history[-1]
            self.writer.add_scalar("train/loss", m.train_loss, m.epoch)
            self.writer.add_scalar("train/acc", m.train_acc, m.epoch)
            self.writer.add_scalar("train/lr", m.lr, m.epoch)
            for k, v in m.val_acc.items():
                self.writer.add_scalar(f"val/acc_{k}", v, m.epoch)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _save_model(path: Path, spec_toml: str, data: LabeledSplits, state_dict: dict, extra: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"spec_toml": spec_toml, "labels": list(data.labels),
                    "feature_shape": list(data.feature_shape), **extra,
                    "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}, tmp)


def _check_teacher(resolved: ResolvedExperiment, teacher_resolved: ResolvedExperiment, path: str,
                   model: nn.Module, teacher: nn.Module, distiller, views: list[str | None],
                   feature_shape: tuple[int, ...], device: torch.device) -> None:
    """Refuse a teacher the distiller cannot compare with the student, before any training.

    A distiller that needs taps needs them on the teacher too; then one probe batch of zeros
    runs through both models (eval mode, ``no_grad``, no random numbers drawn) and the distiller
    is called on every trained view: shape mismatches between student and teacher (HED's block
    taps of different architectures or widths, logits) fail here, naming both architectures.
    """
    dist, s_arch, t_arch = resolved.distiller, resolved.architecture.name, teacher_resolved.architecture.name
    pieces = f"student {s_arch!r} and teacher {t_arch!r} ({path})"
    if dist.needs_taps and not teacher_resolved.capabilities.taps:
        raise ValueError(f"distiller {dist.name!r} needs feature taps, but the teacher {path} "
                         f"(architecture {t_arch!r}) exposes none; student is {s_arch!r}")
    x = torch.zeros((2, *feature_shape), device=device)
    with torch.no_grad(), eval_mode(model):
        teacher_out = _forward(teacher, x, None)
        for v in views:
            try:
                distiller(_forward(model, x, v), teacher_out)
            except (ValueError, RuntimeError) as exc:
                view = "" if v is None else f" (view {v!r})"
                raise ValueError(f"distiller {dist.name!r} cannot compare {pieces}{view}: {exc}") from None


def _init_from(model: nn.Module, resolved: ResolvedExperiment, path: str, ctx: DistContext) -> None:
    """Load ``path``'s weights into ``model`` (architecture mapping, else name+shape matches)."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise FileNotFoundError(f"training.init_from: checkpoint not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as exc:
        raise ValueError(f"training.init_from: {p} is not a binkit checkpoint ({type(exc).__name__}: {exc})") from None
    loader = resolved.architecture.load_pretrained
    if loader is not None:
        left = loader(model, state)
    else:
        own = model.state_dict()
        loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(loadable, strict=False)
        left = [k for k in own if k not in loadable]
    loaded = len(model.state_dict()) - len(left)
    if loaded == 0:
        raise ValueError(f"training.init_from: no tensor of {p} fits architecture "
                         f"{resolved.architecture.name!r} (names or shapes differ everywhere)")
    if ctx.is_main:
        print(f"[{resolved.spec.name}] initialised {loaded} tensors from {p}; "
              f"{len(left)} keep their initial values", flush=True)


def fit(spec: ExperimentSpec | ResolvedExperiment, out_dir: str | Path | None = None, *,
        progress: bool = True, data: LabeledSplits | None = None, resume: bool = False) -> TrainResult:
    """Train the experiment ``spec`` describes; return the selected model and its metrics.

    Args:
        spec: an experiment spec (resolved here) or an already resolved one.
        out_dir: run folder; ``None`` writes nothing (and cannot resume).
        progress: progress bars and one line per epoch on the console (rank 0).
        data: prebuilt :class:`binkit.data.LabeledSplits` to reuse across runs (must come
            from the same data/features spec).
        resume: continue from ``out_dir/checkpoints/last.pt`` if it exists (the spec must be the
            one the run was started with).

    Started by ``torchrun``, each process trains a share of every batch under
    DistributedDataParallel (gloo on CPU, nccl on GPU); only rank 0 evaluates, logs and writes.
    """
    resolved = spec if isinstance(spec, ResolvedExperiment) else resolve(spec)
    spec = resolved.spec
    spec_toml = spec_to_toml(spec)
    t = spec.training
    ctx: DistContext = init_distributed(t.device)
    try:
        result = _fit(resolved, spec, spec_toml, ctx, out_dir, progress, data, resume)
        # every rank waits for rank 0's outputs before the group goes: a rank that tore gloo down
        # while rank 0 still wrote aborted now and then on a loaded machine ("terminate called
        # without an active exception", SIGABRT), failing the run after its results were saved
        ctx.barrier()
        return result
    finally:
        ctx.shutdown()


def _fit(resolved, spec, spec_toml, ctx, out_dir, progress, data, resume) -> TrainResult:
    t = spec.training
    random.seed(t.seed)
    np.random.seed(t.seed)
    torch.manual_seed(t.seed)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = ctx.device
    started = time.perf_counter()
    resumed_seconds = 0.0

    if data is None:
        data = resolved.dataset.factory(resolved.dataset_params, spec.features)
    model = build_model(resolved, data.num_classes, data.feature_shape).to(device)

    views: list[str | None] = list(resolved.views) or [None]
    weights = [resolved.views[v] for v in views] if resolved.views else [1.0]
    trained = [(v, w) for v, w in zip(views, weights) if w > 0]

    teacher = distiller = None
    if resolved.distiller is not None:
        teacher, meta = load_checkpoint(spec.distillation.teacher)
        if list(meta["labels"]) != list(data.labels):
            raise ValueError(f"teacher {spec.distillation.teacher} was trained on labels {meta['labels']}, "
                             f"the student's data has {data.labels}")
        if tuple(meta["feature_shape"]) != tuple(data.feature_shape):
            raise ValueError(f"teacher {spec.distillation.teacher} takes features {tuple(meta['feature_shape'])}, "
                             f"the student's data gives {tuple(data.feature_shape)}")
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        distiller = resolved.distiller.factory(resolved.distiller_params)
        _check_teacher(resolved, meta["resolved"], spec.distillation.teacher, model, teacher, distiller,
                       [v for v, _ in trained], data.feature_shape, device)

    if t.init_from:
        _init_from(model, resolved, t.init_from, ctx)

    optimizer = _make_optimizer(spec, model.parameters())
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
                 if t.schedule == "cosine" else None)
    out = Path(out_dir) if out_dir is not None else None
    selector = _Selector(t.select, views, weights)
    history: list[EpochMetrics] = []
    best_state = None
    start_epoch = 0
    state_path = out / "checkpoints" / "last.pt" if out is not None else None

    if resume:
        if state_path is None:
            raise ValueError("resume needs a run folder (out_dir)")
        if state_path.is_file():
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            if state.get("format") != STATE_FORMAT:
                raise ValueError(f"{state_path}: not a binkit training state ({state.get('format')!r})")
            if state["spec_toml"] != spec_toml:
                raise ValueError(f"{state_path} was written for a different spec; resume with the run's own "
                                 f"spec ({out / 'spec.toml'}) or start a new run folder")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            history = [EpochMetrics(**h) for h in json.loads(state["history"])]
            selector.best_acc, selector.best_epoch = state["best_acc"], state["best_epoch"]
            best_state = state["best_model"]
            start_epoch = state["epoch"]
            resumed_seconds = sum(h.seconds for h in history)  # training time before the resume
            _set_rng_state(state["rng"])
    log = _RunLog(out, progress, t.tensorboard, ctx.is_main)
    if out is not None and ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "spec.toml", spec_toml)
        if start_epoch:
            log.line(f"[{spec.name}] resuming after epoch {start_epoch}/{t.epochs}")

    train_model: nn.Module = model
    if ctx.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    bar_factory = None
    if progress and ctx.is_main:
        try:
            from tqdm.auto import tqdm as bar_factory
        except ImportError:  # pragma: no cover - tqdm is a train dependency
            bar_factory = None

    n_train = len(data.splits["train"])
    drop_last = n_train > t.batch_size
    for epoch in range(start_epoch, t.epochs):
        t0 = time.perf_counter()
        update_schedules(model, epoch, t.epochs)
        train_model.train()
        total_loss = torch.zeros((), dtype=torch.float64)
        correct = seen = 0
        batches = data.batches("train", t.batch_size, shuffle=True, epoch=epoch, seed=t.seed,
                               drop_last=drop_last, rank=ctx.rank, world_size=ctx.world_size)
        if bar_factory is not None:
            batches = bar_factory(batches, total=n_train // t.batch_size if drop_last else None,
                                  desc=f"{spec.name} epoch {epoch + 1}/{t.epochs}", leave=False)
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            teacher_out = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_out = _forward(teacher, x, None)
            loss = x.new_zeros(())
            for i, (v, w) in enumerate(trained):
                student_out = _forward(train_model, x, v)
                term = F.cross_entropy(student_out.logits, y)
                if distiller is not None:
                    term = term + spec.distillation.weight * distiller(student_out, teacher_out)
                loss = loss + w * term
                if i == 0:
                    correct += int((student_out.logits.argmax(-1) == y).sum())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{spec.name}: loss became {loss.item()} at epoch {epoch + 1}; "
                                         "lower training.lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            apply_constraints(model)
            total_loss += loss.detach().double().cpu() * len(y)
            seen += len(y)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        sums = ctx.all_reduce_sum([float(total_loss), correct, seen])
        total_loss, correct, seen = sums[0], int(sums[1]), int(sums[2])

        selected = False
        if ctx.is_main:
            val = evaluate(model, data, views, device=device, split="val")
            selected = selector.consider(epoch + 1, val)
            if selected:
                best_state = copy.deepcopy(model.state_dict())
            m = EpochMetrics(epoch + 1, float(total_loss) / max(seen, 1), correct / max(seen, 1), val, lr,
                             time.perf_counter() - t0, selected)
            history.append(m)
            log.epoch(history)
            vals = " ".join(f"{k}={v:.4f}" for k, v in val.items())
            log.line(f"[{spec.name}] epoch {epoch + 1}/{t.epochs} loss {m.train_loss:.4f} "
                     f"train_acc {m.train_acc:.4f} val_acc {vals}{' *' if selected else ''} ({m.seconds:.1f}s)")
            if out is not None:
                with atomic_path(state_path) as tmp:
                    torch.save({
                        "format": STATE_FORMAT, "spec_toml": spec_toml, "epoch": epoch + 1,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else {},
                        "history": json.dumps([asdict(h) for h in history]),
                        "best_acc": selector.best_acc, "best_epoch": selector.best_epoch,
                        "best_model": best_state, "rng": _rng_state(),
                    }, tmp)
        ctx.barrier()

    if ctx.distributed:
        history, selector.best_epoch = ctx.broadcast_object((history, selector.best_epoch))
        best_state = ctx.broadcast_object(best_state)
    best_epoch = selector.best_epoch
    if best_state is None:  # no epoch met the selection rule: keep the last one, and say so
        best_state = copy.deepcopy(model.state_dict())
        best_epoch = len(history)
        log.line(f"[{spec.name}] no epoch met select={t.select!r}; keeping the last epoch")
    model.load_state_dict(best_state)
    model.eval()
    test: dict[str, float] = {}
    if ctx.is_main:
        test = evaluate(model, data, views, device=device, split="test")
    test = ctx.broadcast_object(test)
    val_best = history[best_epoch - 1].val_acc if history else {}
    result = TrainResult(model, list(data.labels), history, best_epoch, test, val_best,
                         time.perf_counter() - started + resumed_seconds, out, {"views": [_key(v) for v in views]})
    if out is not None and ctx.is_main:
        _save_model(out / "model.pt", spec_toml, data, model.state_dict(),
                    {"best_epoch": best_epoch, "val_acc": val_best, "test_acc": test})
        atomic_write_text(out / "result.json", json.dumps({
            "name": spec.name, "best_epoch": best_epoch, "val_acc": val_best, "test_acc": test,
            "seconds": result.seconds, "labels": result.labels, "views": result.extra["views"],
            "world_size": ctx.world_size, "feature_shape": list(data.feature_shape), "data": data.info or {},
        }, indent=2) + "\n")
        log.line(f"[{spec.name}] selected epoch {best_epoch}; test accuracy " +
                 " ".join(f"{k}={v:.4f}" for k, v in test.items()))
    log.close()
    return result
