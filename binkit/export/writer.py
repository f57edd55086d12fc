"""The export pipeline: lower, check on the reference backend, measure float16, write atomically."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binkit.atomic import atomic_path
from binkit.export import ExportError, ExportReport, find_lowering
from binkit.export.lower import PlanBuilder, lower_chain
from binkit.runtime.artifact import load_artifact, save_artifact
from binkit.runtime.reference import ReferenceProgram

__all__ = ["export_model", "logit_error", "PROBE_CLIPS"]

#: Clips in the default probe batch (noise at 16 levels from -60 to 0 dBFS through the front-end).
PROBE_CLIPS = 16


def _producer() -> str:
    try:
        from importlib.metadata import version

        return f"binkit {version('binkit')}"
    except Exception:  # pragma: no cover - not installed
        return "binkit (unknown version)"


def logit_error(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    """``max_abs``; ``max_rel`` = max over clips of max |got - want| / max |want|; argmax agreement."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    diff = np.abs(got - want).max(axis=-1)
    scale = np.maximum(np.abs(want).max(axis=-1), 1e-30)
    return {"max_abs": float(diff.max()), "max_rel": float((diff / scale).max()),
            "argmax_agreement": float((got.argmax(-1) == want.argmax(-1)).mean())}


#: Export refuses to write a plan whose float32 logits differ from torch by more than
#: REPRODUCE_TOLERANCE (relative to the clip's largest logit) on more than 10% of the probe clips.
#: Correct plans differ only where a binary op's input sits within float32 rounding of 0 (a sign
#: flip), which is rare; a wrong lowering differs almost everywhere.
REPRODUCE_TOLERANCE = 1e-3
REPRODUCE_FRACTION = 0.9


def _fraction_close(got: np.ndarray, want: np.ndarray, tol: float) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    diff = np.abs(got - want).max(axis=-1)
    return float((diff <= tol * np.maximum(np.abs(want).max(axis=-1), 1e-30)).mean())


def _probe(feature_spec: Any, feature_shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if feature_spec is not None:
        from binkit.runtime.frontend import NumpyFrontEnd

        fe = NumpyFrontEnd(feature_spec)
        if tuple(fe.out_shape) == tuple(feature_shape):
            gains = 10.0 ** (np.linspace(-60, 0, PROBE_CLIPS) / 20)  # -60 .. 0 dBFS
            wave = rng.standard_normal((PROBE_CLIPS, fe.spec.num_samples)) * gains[:, None] * 0.3
            return fe(wave.astype(np.float32))
    return rng.standard_normal((PROBE_CLIPS, *feature_shape)).astype(np.float32)


def _narrow(tensors: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """``tensors`` with the named ones stored as float16."""
    return {k: (v.astype(np.float16) if k in names else v) for k, v in tensors.items()}


def _run_all(path: Path, probe: np.ndarray) -> dict[str, np.ndarray]:
    program = ReferenceProgram(load_artifact(path))
    return {v: program.run(probe, v) for v in program.artifact.views}


def export_model(model, path, *, labels, feature_spec=None, feature_shape=None, views=None, float16=True,
                 allow_float_fallback=False, probe=None, float16_tolerance=1e-2) -> ExportReport:
    from binkit.specs import FeaturesSpec

    path = Path(path)
    labels = [str(s) for s in labels]
    if feature_shape is None:
        feature_shape = getattr(model, "feature_shape", None)
        if feature_shape is None:
            raise ExportError("feature_shape is needed (the model has no feature_shape attribute)")
    feature_shape = tuple(int(s) for s in feature_shape)
    if feature_spec is not None and not isinstance(feature_spec, FeaturesSpec):
        feature_spec = FeaturesSpec.model_validate(feature_spec)
    model_views = list(getattr(model, "views", None) or [])
    views = [str(v) for v in (views or model_views or ["default"])]
    unknown = [v for v in views if model_views and v not in model_views]
    if unknown:
        raise ExportError(f"{type(model).__name__} has no view(s) {unknown}; it has {model_views}")

    was_training = model.training
    model.eval()
    try:
        builder = PlanBuilder(model, feature_shape, allow_float_fallback)
        (find_lowering(model) or lower_chain)(model, builder, views)
        builder.check()
        affine_folded = builder.fold_affines()
        sign_folded = builder.fold_sign_outputs()
        tensors = builder.referenced_tensors()
        probe = _probe(feature_spec, feature_shape) if probe is None else np.asarray(probe, np.float32)
        with torch.no_grad():
            x = torch.from_numpy(probe)
            want = {v: (model(x, view=v) if model_views else model(x)).double().numpy() for v in views}
    finally:
        model.train(was_training)
    if want[views[0]].shape != (len(probe), len(labels)):
        raise ExportError(f"the model gives {want[views[0]].shape[1:]} outputs per clip but {len(labels)} labels were given")

    fallbacks = [{"layer": k, "reason": r} for k, r in builder.fallbacks.items()]
    metadata = {
        "producer": _producer(),
        "input": {"shape": list(feature_shape), "dtype": "float32"},
        "plan": {"ops": builder.ops},
        "views": builder.views,
        "default_view": views[0],
        "labels": labels,
        "frontend": feature_spec.model_dump() if feature_spec is not None else None,
        "fallbacks": fallbacks,
    }
    with tempfile.TemporaryDirectory(prefix="binkit-export-") as tmp:
        f32_path = Path(tmp) / "f32.bkm"
        save_artifact(f32_path, tensors, {**metadata, "export": {"float16": False}})
        got32 = _run_all(f32_path, probe)
        conformance = {v: logit_error(got32[v], want[v]) for v in views}
        for v in views:  # a lowering that does not reproduce the model must not write a file
            agree = _fraction_close(got32[v], want[v], REPRODUCE_TOLERANCE)
            if agree < REPRODUCE_FRACTION:
                raise ExportError(
                    f"the exported plan does not reproduce the model: view {v!r} agrees within "
                    f"{REPRODUCE_TOLERANCE:g} relative on {agree:.1%} of {len(probe)} probe clips (max relative "
                    f"error {conformance[v]['max_rel']:.3g}, argmax {conformance[v]['argmax_agreement']:.1%}); "
                    "this is a lowering bug, please report it with the model")
        narrowed: list[str] = []
        f16_error: dict[str, dict[str, float]] = {}
        if not float16:
            note = "not requested (--no-float16)"
        elif not builder.fp_weights:
            note = "no full-precision weights to narrow"
        else:
            # Greedy, largest tensor first: narrow one more tensor only while the whole plan's
            # logits stay within tolerance of the float32 plan. A layer whose output is later
            # binarized (e.g. the first conv) can flip signs downstream and fail where the last
            # layer alone passes; measuring per tensor keeps the safe ones.
            rejected: dict[str, float] = {}
            for name in sorted(builder.fp_weights, key=lambda k: (-tensors[k].size, k)):
                trial = narrowed + [name]
                trial_path = Path(tmp) / f"f16-{len(trial)}-{len(rejected)}.bkm"
                save_artifact(trial_path, _narrow(tensors, trial), {**metadata, "export": {"float16": True}})
                got16 = _run_all(trial_path, probe)
                err = {v: logit_error(got16[v], got32[v]) for v in views}
                worst = max(e["max_rel"] for e in err.values())
                agree = min(e["argmax_agreement"] for e in err.values())
                if worst <= float16_tolerance and agree == 1.0:
                    narrowed, f16_error, final16 = trial, err, got16
                else:
                    rejected[name] = worst
            saved = sum(tensors[k].nbytes // 2 for k in narrowed)
            note = (f"measured on {len(probe)} probe clips, tolerance {float16_tolerance:g}: "
                    + (f"float16 for {', '.join(narrowed)} (max relative logit change "
                       f"{max(e['max_rel'] for e in f16_error.values()):.2e}, {saved} bytes saved)"
                       if narrowed else "nothing narrowed")
                    + "".join(f"; {k} kept float32 (change {w:.2e})" for k, w in rejected.items()))
            if narrowed:
                conformance = {v: logit_error(final16[v], want[v]) for v in views}
    use16 = bool(narrowed)
    export_info = {"sign_folded": sign_folded, "float16": use16, "float16_tensors": narrowed, "float16_note": note, "float16_error": f16_error, "conformance": conformance}
    with atomic_path(path) as tmp:
        save_artifact(tmp, _narrow(tensors, narrowed), {**metadata, "export": export_info})
    float_layers = [{"layer": op["name"], "op": op["op"]} for op in builder.ops
                    if op["op"] in ("conv2d_fp", "conv1d_fp", "linear_fp", "affine")]
    return ExportReport(path=path, size_bytes=path.stat().st_size, views=views, num_ops=len(builder.ops),
                        float_layers=float_layers,
                        fallbacks=fallbacks, affine_folded=affine_folded, sign_folded=sign_folded,
                        float16=use16, float16_tensors=narrowed, float16_note=note, float16_error=f16_error,
                        conformance=conformance)
