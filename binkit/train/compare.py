"""Experiment grids (``binkit compare GRID.toml``): binarizer x backbone tables and ablations.

A grid names a base spec and a list of **cells**, each the base (or another spec) with
overrides deep-merged into it, trained in order with the same data and schedule. A string
``"{run:NAME}"`` anywhere in a cell's overrides becomes the path of cell NAME's ``model.pt``, so
a teacher cell can feed the students after it. A ``[product]`` table adds one cell per
(architecture, method) pair. ``seeds = [...]`` on a cell or on the product repeats it once per
seed (``NAME-seedS``, ``training.seed = S``), and ``compare.md`` then gives each group's mean and
spread over its seeds. Runs are resumable: a cell whose folder holds a finished run of the same
spec is skipped, an unfinished one resumes from its last checkpoint. ``snr = [10, 5, 0]`` also
scores every cell's test split with background noise at those SNRs (columns per SNR, and the seed
groups' means), where binarizers that tie on clean clips separate.

Example::

    name = "binarizers"
    base = "bifsmn.toml"                 # relative to this file

    [[cells]]
    name = "teacher"
    spec = "bifsmn_teacher.toml"

    [[cells]]
    name = "bifsmn"
    seeds = [0, 1, 2]                    # bifsmn-seed0, bifsmn-seed1, bifsmn-seed2
    overrides = { distillation = { teacher = "{run:teacher}" }, training = { init_from = "{run:teacher}" } }

    [product]
    architectures = ["bifsmn"]
    methods = ["bnn", "xnor", "irnet"]
    overrides = { distillation = { enabled = false }, training = { views = { "8" = 1.0 } } }
"""

from __future__ import annotations

import copy
import json
import math
import re
import time
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from binkit.atomic import atomic_path, atomic_write_text
from binkit.errors import SpecError
from binkit.specs import parse_spec, resolve, spec_to_toml

__all__ = ["GridSpec", "CellSpec", "load_grid", "run_grid", "CellResult"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


_SEEDS_DESC = ("one cell per seed, named NAME-seedS, with training.seed = S; compare.md then adds "
               "each group's mean and spread over its seeds")


def _check_seeds(seeds: list[int]) -> list[int]:
    if any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be non-negative, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    return seeds


class CellSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., pattern=_NAME, description="cell name (its run folder)")
    spec: str = Field("", description="spec file for this cell (default: the grid's base)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="deep-merged into the spec")
    seeds: list[int] = Field(default_factory=list, description=_SEEDS_DESC)

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, v: list[int]) -> list[int]:
        return _check_seeds(v)

    def expand(self) -> list["CellSpec"]:
        """This cell, or one cell per seed (``NAME-seedS``, ``training.seed = S``)."""
        if not self.seeds:
            return [self]
        return [CellSpec(name=f"{self.name}-seed{s}", spec=self.spec,
                         overrides=_merge(self.overrides, {"training": {"seed": s}})) for s in self.seeds]


class ProductSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    architectures: list[str] = Field(..., min_length=1)
    methods: list[str] = Field(..., min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict, description="applied to every product cell")
    name: str = Field("{architecture}-{method}", description="cell name pattern")
    seeds: list[int] = Field(default_factory=list, description=_SEEDS_DESC)

    @field_validator("seeds")
    @classmethod
    def _valid_seeds(cls, v: list[int]) -> list[int]:
        return _check_seeds(v)


class GridSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., pattern=_NAME)
    base: str = Field(..., min_length=1, description="base spec, relative to the grid file")
    out: str = Field("", description="output folder (default runs/<name>)")
    epochs: int = Field(0, ge=0, description="override training.epochs of every cell (0 = keep)")
    deploy: bool = Field(False, description="export every cell to <run>/model.bkm and measure the artifact "
                         "on the runtime (backend auto: the engine when it runs every op): size, accuracy "
                         "and batch-1 latency per view")
    snr: list[float] = Field(default_factory=list, description="also score every cell's test split with the "
                             "data's background noise mixed in at each SNR in dB (seeded crops: the clips of "
                             "`binkit eval --snr`); compare.md gains a column per SNR and the seed groups' means")
    cells: list[CellSpec] = Field(default_factory=list)
    product: ProductSpec | None = None

    @field_validator("snr")
    @classmethod
    def _finite_snr(cls, v: list[float]) -> list[float]:
        if any(not math.isfinite(x) for x in v):
            raise ValueError(f"every snr must be a finite number of decibels, got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"snr values repeat: {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "GridSpec":
        if not self.cells and self.product is None:
            raise ValueError("a grid needs [[cells]] or a [product]")
        return self

    def all_cells(self) -> list[CellSpec]:
        cells = list(self.cells)
        if self.product is not None:
            for arch in self.product.architectures:
                for method in self.product.methods:
                    over = _merge(self.product.overrides, {"model": {"architecture": arch},
                                                           "binarization": {"method": method}})
                    cells.append(CellSpec(name=self.product.name.format(architecture=arch, method=method),
                                          overrides=over, seeds=self.product.seeds))
        cells = [c for cell in cells for c in cell.expand()]
        names = [c.name for c in cells]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate cell names {dupes}")
        return cells


# tables that an override replaces whole instead of merging into (a view set is one choice)
_REPLACE = {"views"}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged into a copy of ``base`` (tables merge, except ``views``: replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _REPLACE:
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_RUN_REF = re.compile(r"\{run:([A-Za-z0-9_.\-]+)\}")


def _substitute(value: Any, out: Path, known: set[str], cell: str) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            if m.group(1) not in known:
                raise ValueError(f"cell {cell!r} refers to {{run:{m.group(1)}}}, which is not an earlier cell")
            return str(out / m.group(1) / "model.pt")
        return _RUN_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, out, known, cell) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, out, known, cell) for v in value]
    return value


def load_grid(path: str | Path, *, epochs: int | None = None) -> tuple[GridSpec, list[tuple[CellSpec, Any]], Path]:
    """Parse a grid and build and resolve every cell's spec (before any training starts).

    Returns ``(grid, [(cell, resolved experiment)], out folder)``.

    Raises:
        SpecError: malformed grid or any invalid cell spec (paths prefixed by the cell name).
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"grid file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([("<toml>", f"malformed TOML: {exc}")], str(path)) from None
    try:
        grid = GridSpec.model_validate(raw)
        cells = grid.all_cells()
    except (ValidationError, ValueError) as exc:
        errors = ([(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
                  if isinstance(exc, ValidationError) else [("<grid>", str(exc))])
        raise SpecError(errors, str(path)) from None
    if epochs is not None:
        grid.epochs = epochs
    out = Path(grid.out) if grid.out else Path("runs") / grid.name
    errors: list[tuple[str, str]] = []
    resolved_cells = []
    done: set[str] = set()
    for cell in cells:
        spec_path = (path.parent / (cell.spec or grid.base)).resolve()
        try:
            base = tomllib.loads(spec_path.read_text(encoding="utf-8"))
            data = _merge(base, _substitute(cell.overrides, out, done, cell.name))
            data["name"] = f"{grid.name}-{cell.name}"
            if grid.epochs:
                data.setdefault("training", {})["epochs"] = grid.epochs
            resolved_cells.append((cell, resolve(parse_spec(data, str(spec_path)), str(spec_path))))
        except SpecError as exc:
            errors += [(f"cells.{cell.name}: {p}", m) for p, m in exc.errors]
        except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
            errors.append((f"cells.{cell.name}", str(exc)))
        done.add(cell.name)
    if errors:
        raise SpecError(errors, str(path))
    return grid, resolved_cells, out


class CellResult(dict):
    """One row of the comparison table (a dict, JSON-serialisable)."""


def _method_label(policy) -> str:
    """The grid's method column: the quantizer, plus a borrowed activation (``activation_from``)."""
    if not policy.enabled:
        return "fp32"
    return policy.method + (f" + {policy.activation_from} activation" if policy.activation_from else "")


def _row(cell: CellSpec, resolved, run: Path, seconds: float, skipped: bool) -> CellResult:
    from binkit.nn.summary import summary
    from binkit.train.build import build_model, load_checkpoint

    result = json.loads((run / "result.json").read_text())
    if (run / "model.pt").is_file():
        model, _ = load_checkpoint(run / "model.pt")
    elif "feature_shape" in result:  # weights left elsewhere (a GPU machine): the counts need only the shape
        model = build_model(resolved, len(result["labels"]), tuple(result["feature_shape"]))
    else:
        raise FileNotFoundError(f"{run}: model.pt is missing and result.json (written before "
                                "feature_shape was recorded) cannot rebuild the model")
    spec = resolved.spec
    views = result.get("views") or ["full"]
    per_view = {}
    for v in views:
        s = summary(model, print_fn=None, forward_kwargs=None if v == "full" else {"view": v})
        per_view[v] = {"test_acc": result["test_acc"][v], "binary_macs": s.binary_macs, "float_macs": s.float_macs}
    s_full = summary(model, print_fn=None)
    trained = [k for k, w in resolved.views.items() if w > 0] if resolved.views else ["full"]
    return CellResult(
        cell=cell.name, architecture=spec.model.architecture,
        method=_method_label(spec.binarization),
        deployable=(resolved.quantizer.deployable if resolved.quantizer is not None else None),
        distiller=spec.distillation.method if spec.distillation.enabled else "",
        trained_views=trained, views=per_view, full_view=views[0],
        test_acc=result["test_acc"][views[0]], val_acc=result["val_acc"][views[0]],
        best_epoch=result["best_epoch"], epochs=spec.training.epochs,
        params=s_full.total_params, memory_kib=s_full.memory_bytes / 1024, compression=s_full.compression_ratio,
        seconds=seconds, skipped=skipped, protocol=(result.get("data") or {}).get("protocol", ""),
    )


def _finished(run: Path, resolved) -> bool:
    """A finished run of this very spec is in ``run`` (result written, same resolved spec)."""
    return (run / "result.json").is_file() and (run / "spec.toml").is_file() \
        and (run / "spec.toml").read_text() == spec_to_toml(resolved.spec)


def _cell_dependencies(cell: CellSpec) -> set[str]:
    """Names of the cells whose ``model.pt`` this cell takes (``"{run:NAME}"`` in its overrides)."""
    return set(_RUN_REF.findall(json.dumps(cell.overrides)))


def _train_in_processes(path: Path, cells: list[tuple[CellSpec, Any]], out: Path, *, jobs: int,
                        epochs: int | None) -> dict[str, str]:
    """Train ``cells`` as up to ``jobs`` ``binkit compare PATH --only CELL`` processes at once; a
    cell starts once the cells it refers to have finished. Returns ``{cell: why it failed}``."""
    import os
    import subprocess
    import sys

    names = {c.name for c, _ in cells}
    deps = {c.name: _cell_dependencies(c) & names for c, _ in cells}
    queue = [c.name for c, _ in cells]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # each process would otherwise start one torch thread per core
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    running: dict[str, tuple[subprocess.Popen, Any, float]] = {}
    failed: dict[str, str] = {}
    done: set[str] = set()
    extra = ["--epochs", str(epochs)] if epochs is not None else []
    try:
        while queue or running:
            for name in list(queue):
                lost = sorted(deps[name] & set(failed))
                if lost:
                    queue.remove(name)
                    failed[name] = f"not trained: it needs cell(s) {', '.join(lost)}, which failed"
                    print(f"{name}: {failed[name]}", flush=True)
                elif len(running) < jobs and deps[name] <= done:
                    queue.remove(name)
                    log = open(logs / f"{name}.log", "w", encoding="utf-8")
                    cmd = [sys.executable, "-m", "binkit", "compare", str(path), "--only", name, "-q", *extra]
                    running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                                     log, time.perf_counter())
                    print(f"{name}: started ({len(running)} running, {len(queue)} waiting; log {logs / name}.log)",
                          flush=True)
            for name, (proc, log, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[name]
                if proc.returncode == 0:
                    done.add(name)
                    print(f"{name}: finished in {time.perf_counter() - t0:.0f} s", flush=True)
                else:
                    failed[name] = f"exit status {proc.returncode}; see {logs / name}.log"
                    print(f"{name}: FAILED ({failed[name]})", flush=True)
            time.sleep(0.2)
    finally:  # interrupted: stop the children (each resumes from its checkpoint next time)
        for proc, log, _ in running.values():
            proc.kill()
            proc.wait()
            log.close()
    return failed


def _expand_only(only: list[str], names: list[str]) -> list[str]:
    """The cells ``--only`` selects: a cell's own name, or a seeded group's ``NAME`` for all of
    its ``NAME-seedS`` cells (in grid order). Unknown names raise, listing the valid ones."""
    groups: dict[str, list[str]] = {}
    for n in names:
        m = _SEEDED.match(n)
        if m:
            groups.setdefault(m.group(1), []).append(n)
    picked: list[str] = []
    unknown = []
    for n in only:
        hits = [n] if n in names else groups.get(n)
        if not hits:
            unknown.append(n)
            continue
        picked += [h for h in hits if h not in picked]
    if unknown:
        valid = names + [g for g in groups if g not in names]
        raise ValueError(f"unknown cell(s) {unknown}; cells are {valid}")
    return picked


def run_grid(path: str | Path, *, progress: bool = True, only: list[str] | None = None,
             epochs: int | None = None, train: bool = True, jobs: int = 1) -> tuple[list[CellResult], Path]:
    """Train every cell (skipping finished ones); write ``compare.md``, ``compare.json`` and
    ``compare.png`` to the grid's output folder. Returns ``(rows, out folder)``.

    ``train=False`` trains nothing: the tables hold the finished cells only (cells trained
    elsewhere, or by several ``--only`` processes side by side), and the others are named. A
    finished cell whose ``model.pt`` stayed where it trained is counted from its spec and the
    ``feature_shape`` in its ``result.json`` (runs before that field are named and left out).
    ``jobs > 1`` trains up to that many cells at once, each in its own process (for example
    several small models sharing one GPU), writing ``<out>/logs/<cell>.log``; a cell that takes
    another's ``{run:NAME}`` waits for it."""
    from binkit.train.trainer import fit

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    grid, cells, out = load_grid(path, epochs=epochs)
    if only:
        only = _expand_only(only, [c.name for c, _ in cells])
    if train:  # a report reads what is there and makes no folder
        out.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    trained_here: set[str] = set()
    if train and jobs > 1:
        todo = [(c, r) for c, r in cells if (not only or c.name in only) and not _finished(out / c.name, r)]
        failed = _train_in_processes(Path(path), todo, out, jobs=jobs, epochs=epochs)
        trained_here = {c.name for c, _ in todo} - set(failed)
        train = False  # what follows only tabulates
    rows: list[CellResult] = []
    noisy_cache: dict[tuple, Any] = {}
    for i, (cell, resolved) in enumerate(cells):
        if only and cell.name not in only:
            continue
        run = out / cell.name
        finished = _finished(run, resolved)
        t0 = time.perf_counter()
        if finished:
            how = "trained above" if cell.name in trained_here else "finished earlier, skipped"
            print(f"[{i + 1}/{len(cells)}] {cell.name}: {how}", flush=True)
            seconds = json.loads((run / "result.json").read_text()).get("seconds", 0.0)
        elif cell.name in failed:
            rows.append(CellResult(cell=cell.name, error=failed[cell.name]))
            _write_outputs(grid, rows, out)
            continue
        elif not train:
            print(f"[{i + 1}/{len(cells)}] {cell.name}: not finished, left out of the table", flush=True)
            continue
        else:
            print(f"[{i + 1}/{len(cells)}] {cell.name}: training ({resolved.spec.training.epochs} epochs)", flush=True)
            try:
                fit(resolved, run, progress=progress, resume=(run / "checkpoints" / "last.pt").is_file())
            except (FloatingPointError, ValueError, RuntimeError) as exc:
                # one diverging or broken cell must not lose the rest of the grid: record it
                print(f"[{i + 1}/{len(cells)}] {cell.name}: FAILED: {exc}", flush=True)
                rows.append(CellResult(cell=cell.name, error=f"{type(exc).__name__}: {exc}"))
                _write_outputs(grid, rows, out)
                continue
            seconds = time.perf_counter() - t0
        try:
            row = _row(cell, resolved, run, seconds, finished)
        except FileNotFoundError as exc:
            print(f"[{i + 1}/{len(cells)}] {cell.name}: finished, left out of the table: {exc}", flush=True)
            continue
        if grid.snr:
            row["noisy"] = _noisy_scores(run, resolved, grid.snr, noisy_cache)
        if grid.deploy:
            print(f"[{i + 1}/{len(cells)}] {cell.name}: export and runtime measurement", flush=True)
            row["deploy"] = _deploy(run)
        rows.append(row)
        _write_outputs(grid, rows, out)
    return rows, out


def _noisy_scores(run: Path, resolved, snrs: list[float], cache: dict[tuple, Any]) -> dict[str, Any]:
    """``{"10dB": {view: test accuracy}, ...}`` of a cell's ``model.pt`` on its test split with
    background noise at each SNR (:func:`binkit.data.pipeline.noisy_split`); the noisy features are
    made once per data tree and SNR. A cell that cannot be scored gets ``{"note": why}``."""
    import torch

    from binkit.data.pipeline import noisy_split, tree_name
    from binkit.train.build import load_checkpoint
    from binkit.train.trainer import evaluate

    if not (run / "model.pt").is_file():
        return {"note": "model.pt is not here"}
    params = resolved.dataset_params
    tree = tree_name(params, resolved.spec.name)
    key = (resolved.spec.data.dataset, params.model_dump_json(), resolved.spec.features.model_dump_json())
    try:
        if key not in cache:
            data = resolved.dataset.factory(params, resolved.spec.features)
            cache[key] = (list(data.labels), {f"{s:g}dB": noisy_split(data, "test", s, tree,
                                                                       dataset=resolved.spec.data.dataset)
                                              for s in snrs})
    except ValueError as exc:
        cache[key] = (None, str(exc))
    labels, splits = cache[key]
    if labels is None:
        return {"note": splits}
    model, meta = load_checkpoint(run / "model.pt")
    if list(meta["labels"]) != labels:
        return {"note": f"labels {meta['labels']} differ from the data's {labels}"}
    views = list(resolved.views) or [None]
    return {c: evaluate(model, torch.utils.data.TensorDataset(x, y), views) for c, (x, y) in splits.items()}


def _deploy(run: Path) -> dict[str, Any]:
    """:func:`binkit.train.report.deploy_run` of one cell; a failure is recorded, not raised."""
    from binkit.train.report import deploy_run

    try:
        return deploy_run(run)
    except Exception as exc:  # noqa: BLE001 - a failed measurement must not end a long grid
        return {"note": f"deploy failed: {type(exc).__name__}: {exc}"}


def _write_outputs(grid: GridSpec, rows: list[CellResult], out: Path) -> None:
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(out / "compare.md", to_markdown(grid.name, rows))
    _plot(grid.name, rows, out / "compare.png")


def to_markdown(title: str, rows: list[CellResult]) -> str:
    failed = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    views = []
    for r in rows:
        for v in r["views"]:
            if v not in views:
                views.append(v)
    deployed = any("deploy" in r for r in rows)
    noisy = []
    for r in rows:
        noisy += [c for c in r.get("noisy", {}) if c != "note" and c not in noisy]
    head = ["cell", "architecture", "method", "distill", "trained views"] + [f"acc {v}" for v in views] + \
        [f"acc {c} (full)" for c in noisy] + \
        ["params", "memory KiB", "compression", "binary MACs", "float MACs", "epochs (best)", "train s"]
    if deployed:
        head += ["artifact KiB", "runtime acc (full)", "runtime us (full)", "runtime"]
    lines = [f"# {title}", "", "Test accuracy per view; MACs of the full view; protocol "
             f"{', '.join(sorted({r['protocol'] for r in rows if r['protocol']})) or 'n/a'}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        full = r["views"][r["full_view"]]
        accs = [f"{r['views'][v]['test_acc']:.4f}" if v in r["views"] else "" for v in views]
        accs += [f"{r['noisy'][c][r['full_view']]:.4f}" if c in r.get("noisy", {}) else "-" for c in noisy]
        lines.append("| " + " | ".join([
            r["cell"], r["architecture"], r["method"] + ("" if r["deployable"] in (None, True) else " (not deployable)"),
            r["distiller"] or "-", "/".join(r["trained_views"]), *accs, f"{r['params']:,}", f"{r['memory_kib']:.1f}",
            f"{r['compression']:.1f}x", f"{full['binary_macs']:,}", f"{full['float_macs']:,}",
            f"{r['epochs']} ({r['best_epoch']})", f"{r['seconds']:.0f}", *(_deploy_cells(r) if deployed else [])])
            + " |")
    if deployed:
        notes = [f"- {r['cell']}: {r['deploy']['note']}" for r in rows if "note" in r.get("deploy", {})]
        lines += ["", "Runtime columns: the exported `<run>/model.bkm` on the test split, batch-1 median latency "
                  "of the full view, one thread (backend auto: the compiled engine when it runs every op, "
                  "else the numpy reference)."]
        if notes:
            lines += ["", "Not deployed:", ""] + notes
    if noisy:
        lines += ["", "Noise columns: the test split with the data's background noise mixed in at that SNR, "
                  "one seeded crop per clip (`binkit eval RUN --snr DB` gives every view)."]
    notes = [f"- {r['cell']}: {r['noisy']['note']}" for r in rows if "note" in r.get("noisy", {})]
    if notes:
        lines += ["", "Not scored with noise:", ""] + notes
    lines += _seed_groups(rows, views, noisy)
    if failed:
        lines += ["", "Failed cells:", ""] + [f"- {r['cell']}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


_SEEDED = re.compile(r"^(.+)-seed(\d+)$")


def _seed_groups(rows: list[CellResult], views: list[str], noisy: list[str] = ()) -> list[str]:
    """Mean, sample standard deviation and range per view over the cells ``NAME-seedS`` of each
    NAME (a cell named plain NAME counts as one more seed of it); groups of two or more only.
    With ``noisy`` conditions (``"10dB"``), also each view's accuracy in them (``8 @ 10dB``)."""
    import statistics

    groups: dict[str, list[CellResult]] = {}
    for r in rows:
        m = _SEEDED.match(r["cell"])
        groups.setdefault(m.group(1) if m else r["cell"], []).append(r)
    groups = {g: rs for g, rs in groups.items() if len(rs) > 1}
    if not groups:
        return []
    lines = ["", "Over seeds (test accuracy; sd = sample standard deviation, in points):", "",
             "| cell group | seeds | view | mean | sd | min | max |", "|---|---:|---|---:|---:|---:|---:|"]
    for g, rs in groups.items():
        for c in ["", *noisy]:
            for v in views:
                if c:
                    accs = [r["noisy"][c][v] for r in rs if v in r.get("noisy", {}).get(c, {})]
                else:
                    accs = [r["views"][v]["test_acc"] for r in rs if v in r["views"]]
                if len(accs) < 2:
                    continue
                lines.append(f"| {g} | {len(accs)} | {v}{f' @ {c}' if c else ''} | {statistics.mean(accs):.4f} | "
                             f"{100 * statistics.stdev(accs):.2f} | {min(accs):.4f} | {max(accs):.4f} |")
    return lines


def _deploy_cells(r: CellResult) -> list[str]:
    d = r.get("deploy") or {}
    if "views" not in d:
        return ["-", "-", "-", "not exported" if "note" in d else "-"]
    v = d["views"].get(r["full_view"]) or next(iter(d["views"].values()))
    return [f"{d['artifact_bytes'] / 1024:.1f}", f"{v['accuracy']:.4f}", f"{v['latency_us']:.1f}",
            f"{d['backend']} ({d['kernel']})"]


def _plot(title: str, rows: list[CellResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 2), 3.6), dpi=120)
    names = [r["cell"] for r in rows]
    views = []
    for r in rows:
        views += [v for v in r["views"] if v not in views]
    width = 0.8 / max(len(views), 1)
    for j, v in enumerate(views):
        xs = [i + (j - (len(views) - 1) / 2) * width for i in range(len(rows))]
        ys = [r["views"][v]["test_acc"] if v in r["views"] else 0 for r in rows]
        ax.bar(xs, ys, width, label=f"view {v}")
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    if len(views) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
