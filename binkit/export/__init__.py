"""Trained torch model -> binkit artifact (one safetensors file; format in
:mod:`binkit.runtime.artifact`).

``export_model(model, path, labels=..., feature_spec=...)`` lowers the model to the artifact's op
plan (:mod:`binkit.export.lower`), folds each binary layer's weight scale, bias and BatchNorm into
one per-channel multiplier and offset, packs binary weights into 64-bit words, checks the plan
by running it on the numpy reference backend against torch, measures what float16 storage of the
full-precision layers costs, and writes the file atomically (a failed export leaves no file).

How a model is lowered, first match wins:

1. a ``lower_for_export(builder, views)`` method on the model;
2. a function registered for its class (or a base class) with :func:`register_lowering`, e.g.
   ``bifsmn_plugin.export`` for the thinnable DFSMN;
3. the generic chain lowering: the model is run once with forward hooks on its layers, which must
   form a chain (each layer reads the previous one's output, possibly reshaped); residual adds
   or other functional ops make it refuse, naming the layer.

Layers that cannot run binary (a quantizer without ``"sign"`` packing, a scale that is not per
output channel, inputs that are not ``sign(x)``) are refused with :class:`ExportError` listing
every such layer and why, unless ``allow_float_fallback=True``: then they run as float ops on the
quantized weights (bit-exact to the torch model) and are recorded in the artifact's
``fallbacks``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from binkit.errors import BinkitError

__all__ = ["ExportError", "ExportReport", "export_model", "export_run", "register_lowering", "find_lowering"]


class ExportError(BinkitError, ValueError):
    """A model cannot be exported as asked; the message names each layer and the reason."""


_LOWERINGS: dict[type, Callable[..., None]] = {}


def register_lowering(model_cls: type, fn: Callable[..., None]) -> None:
    """Register ``fn(model, builder, views)`` as the lowering of ``model_cls`` and its subclasses.

    ``fn`` emits, for each view name in ``views``, ``builder.begin_view(name)``, the ops (through
    the builder's module methods) and ``builder.end_view(output_value)``.
    """
    if not isinstance(model_cls, type):
        raise TypeError(f"register_lowering needs a class, got {model_cls!r}")
    _LOWERINGS[model_cls] = fn


def find_lowering(model: Any) -> Callable[..., None] | None:
    """The lowering for ``model``: its ``lower_for_export`` method, a function registered here,
    or a plugin's ``binkit_lowerings`` entry (most specific class first)."""
    method = getattr(model, "lower_for_export", None)
    if callable(method):
        return lambda m, builder, views: method(builder, views)
    from binkit import registry

    plugged = {e.model_class: e.fn for e in registry.entries("lowering").values() if e.model_class is not None}
    for cls in type(model).__mro__:
        if cls in _LOWERINGS:
            return _LOWERINGS[cls]
        if cls in plugged:
            return plugged[cls]
    return None


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and measured.

    Attributes:
        path: the artifact.
        size_bytes: its size.
        views: view names (the first is the default).
        num_ops: ops in the plan (all views).
        fallbacks: ``{"layer", "reason"}`` for layers exported in float.
        affine_folded: ``affine`` ops folded into the op before them (an affine or a binary op's
            output transform) because nothing else read that op's output.
        sign_folded: binary ops whose transform, PReLU and the next layer's sign were folded
            into one integer threshold per channel (their output only feeds binary ops).
        float16: whether any full-precision weight is stored as float16.
        float16_tensors: the tensors stored as float16 (each kept only while the measured logit
            change of the whole plan stayed within tolerance).
        float16_note: why float16 was or was not used.
        float16_error: per view, the float16 plan's logits vs the float32 plan's on the probe
            inputs: ``max_abs``, ``max_rel`` (max |diff| / max |logit|, per clip), ``argmax_agreement``.
        conformance: per view, the written plan on the reference backend vs the torch model:
            same keys.
        float_layers: ``{"layer", "op"}`` for every op that computes in full precision with
            parameters of its own (float convs and linears, e.g. the first and last layers, and
            ``affine`` normalisations that could not fold into a binary op), in plan order.
    """

    path: Path
    size_bytes: int
    views: list[str]
    num_ops: int
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    float_layers: list[dict[str, str]] = field(default_factory=list)
    affine_folded: list[str] = field(default_factory=list)
    sign_folded: list[str] = field(default_factory=list)
    float16: bool = False
    float16_tensors: list[str] = field(default_factory=list)
    float16_note: str = ""
    float16_error: dict[str, dict[str, float]] = field(default_factory=dict)
    conformance: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_markdown(self) -> str:
        lines = [f"exported {self.path} ({self.size_bytes} bytes, {self.num_ops} ops, views {', '.join(self.views)})",
                 f"float16 weights: {', '.join(self.float16_tensors) or 'none'} ({self.float16_note})"]
        if self.affine_folded:
            lines.append(f"affines folded: {len(self.affine_folded)} into the op before them "
                         f"({', '.join(self.affine_folded[:3])}{', ...' if len(self.affine_folded) > 3 else ''})")
        if self.sign_folded:
            lines.append(f"sign thresholds: {len(self.sign_folded)} binary op(s) feed only binary ops and "
                         f"store one integer per channel ({', '.join(self.sign_folded[:3])}"
                         f"{', ...' if len(self.sign_folded) > 3 else ''})")
        for v, e in self.conformance.items():
            lines.append(f"  view {v}: reference vs torch max rel {e['max_rel']:.2e}, argmax agreement "
                         f"{e['argmax_agreement']:.3f}")
        if self.float_layers:
            shown = ", ".join(f"{f['layer']} ({f['op']})" for f in self.float_layers[:8])
            more = f", and {len(self.float_layers) - 8} more" if len(self.float_layers) > 8 else ""
            lines.append(f"full-precision layers: {len(self.float_layers)}: {shown}{more}")
        if self.fallbacks:
            lines.append("float fallbacks (do not run binary):")
            lines += [f"  {f['layer']}: {f['reason']}" for f in self.fallbacks]
        return "\n".join(lines)


def export_model(model: Any, path: str | os.PathLike[str], *, labels: list[str],
                 feature_spec: Any = None, feature_shape: tuple[int, ...] | None = None,
                 views: list[str] | None = None, float16: bool = True, allow_float_fallback: bool = False,
                 probe: Any = None, float16_tolerance: float = 1e-2) -> ExportReport:
    """Export a trained (binarized) torch model to an artifact at ``path``.

    Args:
        model: the torch model (put in eval mode for the export; its mode is restored).
        path: output file (written atomically).
        labels: class names, one per model output.
        feature_spec: the :class:`binkit.specs.FeaturesSpec` (or dict) the model was trained on;
            stored so the runtime can run from waveforms. ``None``: the model takes features.
        feature_shape: per-example input shape; default ``model.feature_shape``.
        views: views to export; default every view of ``model.views`` (or the single network).
        float16: store full-precision layer weights as float16 when the measured error allows.
        allow_float_fallback: export layers that cannot run binary as float ops (recorded).
        probe: ``(batch, *feature_shape)`` inputs for the checks; default 16 clips of random
            noise through the front-end (or standard normal features without one).
        float16_tolerance: keep float16 only if, on the probe, its logits stay within this
            relative error of the float32 plan's and every argmax agrees.

    Raises:
        ExportError: layers that cannot be exported (each named, with the reason), or a model
            the lowering cannot follow.
    """
    from binkit.export.writer import export_model as _export

    return _export(model, path, labels=labels, feature_spec=feature_spec, feature_shape=feature_shape,
                   views=views, float16=float16, allow_float_fallback=allow_float_fallback, probe=probe,
                   float16_tolerance=float16_tolerance)


def export_run(run: str | os.PathLike[str], path: str | os.PathLike[str], *, float16: bool | None = None,
               allow_float_fallback: bool | None = None, **opts: Any) -> ExportReport:
    """Export a run folder (its ``model.pt``) or a checkpoint file.

    ``float16`` / ``allow_float_fallback`` default to the run spec's ``[export]`` section. The
    probe inputs of the checks (float16 choice, conformance) are the default noise clips plus up
    to :data:`RUN_PROBE_CLIPS` clips of the run's validation split when its data is at hand (a
    local dataset whose root exists, or a generated one): real inputs are what a narrowed weight
    must not change; noise alone can miss sign flips that real features cause.
    """
    from binkit.train.build import load_checkpoint

    run = Path(run)
    ckpt = run / "model.pt" if run.is_dir() else run
    model, meta = load_checkpoint(ckpt)
    resolved = meta["resolved"]
    spec = resolved.spec
    shape = tuple(meta["feature_shape"])
    if opts.get("probe") is None:
        real = _run_probe(resolved, shape)
        if real is not None:
            from binkit.export.writer import _probe

            opts["probe"] = np.concatenate([_probe(spec.features, shape), real])
    return export_model(
        model, path, labels=list(meta["labels"]), feature_spec=spec.features,
        feature_shape=shape,
        float16=spec.export.float16 if float16 is None else float16,
        allow_float_fallback=spec.export.allow_float_fallback if allow_float_fallback is None else allow_float_fallback,
        **opts)


#: Validation clips :func:`export_run` adds to the probe inputs.
RUN_PROBE_CLIPS = 128


def _run_probe(resolved: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Up to :data:`RUN_PROBE_CLIPS` validation features of the run's own pipeline, or ``None``
    when its data is not here (a dataset ``root`` that does not exist: export never builds or
    downloads a corpus)."""
    root = resolved.spec.data.params.get("root")
    if root is not None and not Path(str(root)).exists():
        return None
    try:
        data = resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)
        for x, _ in data.batches("val", RUN_PROBE_CLIPS):
            x = np.ascontiguousarray(x.numpy(), dtype=np.float32)
            return x if tuple(x.shape[1:]) == shape else None
    except (OSError, ValueError, KeyError, RuntimeError):
        return None
    return None
