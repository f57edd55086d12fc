"""The same architecture in full precision, built from an artifact's plan: the FP32 baseline.

:func:`build_float_model` turns a plan into a torch module that runs every view's ops in float32
with each binary op replaced by the float op of the same shape:

=============  ==========================================================================
plan op        float twin
=============  ==========================================================================
``bconv2d``    ``Conv2d(C, O, kernel, stride, padding, dilation, bias=False)`` + affine
``bconv1d``    ``Conv1d(C, O, ...)`` + affine
``bdwconv1d``  ``Conv1d(C, C, k, groups=C)`` (depthwise) + affine
``bdwconv2d``  ``Conv2d(C, C, (kh, kw), groups=C)`` (depthwise) + affine
``blinear``    ``Linear(I, O, bias=False)`` + affine
``avgpool2d``  ``F.avg_pool2d`` (asymmetric padding: :class:`AvgPool2d`, exact zero padding)
``mean``       ``x.mean(axes, keepdim)``
``silu``       ``F.silu``
``add``        ``a + b`` (torch broadcasting over size-1 axes, as the plan allows)
=============  ==========================================================================

Convolutions with asymmetric padding (``[[before, after], ...]``) get an explicit ``ZeroPad``
first; ``avgpool2d`` likewise (with ``count_include_pad`` off, the divisor is the count of
in-bounds taps, found by pooling a ones map padded the same way, so the padding does not count
even though it is explicit).

The weights are the unpacked +-1 weights (:func:`binkit.runtime.bits.unpack_signs`) and the
affine is the op's per-channel ``multiplier``/``offset``: a normal FP conv + BatchNorm (scale and
shift) doing real arithmetic. An op exported with a sign ``threshold`` (its transform, PReLU and
the next layer's sign folded into one integer per channel) gets the affine ``x - threshold``:
the same two parameters per channel; the PReLU slope export folded away is not restored. The
float ops (``conv*_fp``, ``linear_fp``), ``affine``, ``prelu``, ``relu``, ``silu``, ``add``,
``avgpool2d``, ``mean``, ``reshape``, ``transpose`` and ``flatten`` are kept; ``input_sign`` of a float
fallback is dropped (nothing is binarized here). Its outputs are therefore *not* the artifact's
logits (a float layer does not take ``sign(x)``): it has the same ops, shapes, MACs and
parameter count, which is what a latency and size baseline needs.

Layers are ``nn.Conv*``/``nn.Linear`` modules, so :func:`binkit.nn.summary.summary` counts their
MACs independently of :mod:`binkit.bench.plan`, and a tensor the plan shares between views
(e.g. a block's weights in views 8 and 4) is one module, counted once.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binkit.runtime.artifact import Artifact
from binkit.runtime.bits import unpack_signs

__all__ = ["AvgPool2d", "ChannelAffine", "ChannelPReLU", "FloatPlanModel", "build_float_model", "export_onnx"]


class ChannelAffine(nn.Module):
    """``y = weight_c * x + bias_c`` with the channel on per-example axis ``axis`` (-1: the last
    axis); BatchNorm in eval mode, folded. ``shift_only``: the multiplier is a buffer, not a
    parameter (an ``affine`` op of all ones: ReActNet's RSign threshold, RPReLU's shifts), as the
    plan count has it."""

    def __init__(self, multiplier: np.ndarray, offset: np.ndarray, axis: int, shift_only: bool = False) -> None:
        super().__init__()
        self.axis = axis
        weight = torch.tensor(np.asarray(multiplier, np.float32))
        if shift_only:
            self.register_buffer("weight", weight)
        else:
            self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.tensor(np.asarray(offset, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[-1 if self.axis < 0 else self.axis + 1] = -1  # per-example axis -> axis of (batch, ...)
        return x * self.weight.view(shape) + self.bias.view(shape)


class ChannelPReLU(nn.Module):
    """PReLU with one slope or one per channel on per-example axis ``axis``."""

    def __init__(self, slope: np.ndarray, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.weight = nn.Parameter(torch.tensor(np.asarray(slope, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.numel() == 1 or self.axis == 0:
            return F.prelu(x, self.weight)  # channel on dim 1 (or shared): ONNX PRelu
        shape = [1] * x.ndim
        shape[self.axis + 1] = -1
        return torch.where(x >= 0, x, x * self.weight.view(shape))


def _key(name: str, taken: nn.ModuleDict) -> str:
    """A ModuleDict key (no dots) from a plan name, unique among ``taken``."""
    base = re.sub(r"[^0-9A-Za-z_]", "_", name) or "op"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, np.float32))


def _pad_arg(pads: list[list[int]]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Conv ``padding=`` for symmetric pads, else zero padding first (``F.pad`` order: last axis
    first, (before, after) per axis)."""
    if all(p[0] == p[1] for p in pads):
        return tuple(p[0] for p in pads), None
    return (0,) * len(pads), tuple(v for p in reversed(pads) for v in p)


class _Padded(nn.Sequential):
    """Asymmetric zero padding, then the layer (the plan's ``padding`` is ``[before, after]``)."""

    def __init__(self, pad: tuple[int, ...], layer: nn.Module) -> None:
        pad_module = nn.ZeroPad1d(pad) if len(pad) == 2 else nn.ZeroPad2d(pad)
        super().__init__(pad_module, layer)


class AvgPool2d(nn.Module):
    """The plan's ``avgpool2d``: the window's in-bounds values summed, divided by ``kh * kw``
    (``count_include_pad``) or by the number of in-bounds values; padding ``[[top, bottom],
    [left, right]]`` (asymmetric allowed). No parameters."""

    def __init__(self, kernel_size: list[int], stride: list[int], padding: list[list[int]],
                 count_include_pad: bool) -> None:
        super().__init__()
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.count_include_pad = bool(count_include_pad)
        self.symmetric, self.pad = _pad_arg(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is None:  # symmetric: torch's own (same semantics, padding at most half the kernel)
            return F.avg_pool2d(x, self.kernel_size, self.stride, self.symmetric,
                                count_include_pad=self.count_include_pad)
        pooled = F.avg_pool2d(F.pad(x, self.pad), self.kernel_size, self.stride, 0)  # sum / (kh * kw)
        if self.count_include_pad:
            return pooled
        # in-bounds taps / (kh * kw) per window, from a ones map padded the same way
        inside = F.avg_pool2d(F.pad(torch.ones_like(x[:1, :1]), self.pad), self.kernel_size, self.stride, 0)
        return pooled / inside


class FloatPlanModel(nn.Module):
    """A plan run in float32: ``forward(x, view=None) -> (batch, num_labels)``.

    Attributes:
        layers: modules by key (derived from the plan's op names); one per distinct set of
            tensors, so views share them as the plan does.
        views: view names; ``default_view`` runs when ``view`` is None.
        feature_shape: the per-example input shape (``binkit.nn.summary`` reads it).
    """

    def __init__(self, artifact: Artifact) -> None:
        super().__init__()
        self.views = list(artifact.views)
        self.default_view = artifact.default_view
        self.feature_shape = tuple(artifact.input_shape)
        self.layers = nn.ModuleDict()
        by_tensors: dict[tuple[str, ...], str] = {}  # tensor names -> module key (shared modules)
        self._plans: dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...], str, dict]]] = {}
        tensors = artifact.tensors

        def module(kind: str, names: tuple[str, ...], label: str, make) -> str:
            ident = (kind, *names)
            if ident not in by_tensors:
                key = _key(label, self.layers)
                self.layers[key] = make()
                by_tensors[ident] = key
            return by_tensors[ident]

        for view in self.views:
            steps = []
            for i in artifact.views[view]["ops"]:
                op = artifact.ops[i]
                kind, attrs, t = op["op"], op["attrs"], op["tensors"]
                name = op.get("name") or f"op{i}"
                keys: tuple[str, ...] = ()
                if kind in ("bconv2d", "bconv1d", "bdwconv1d", "bdwconv2d", "blinear"):
                    conv = module("w", (t["weight"],), name, lambda op=op: self._binary_twin(op, tensors))
                    axis = -1 if kind == "blinear" else 0  # the output channel axis
                    if "threshold" in t:  # sign(dot - threshold) in the artifact; the float twin keeps dot - threshold
                        aff = module("affine", (t["threshold"],), name + "_affine",
                                     lambda t=t, axis=axis: ChannelAffine(
                                         np.ones(tensors[t["threshold"]].shape), -tensors[t["threshold"]], axis))
                    else:
                        aff = module("affine", (t["multiplier"], t["offset"]), name + "_affine",
                                     lambda t=t, axis=axis: ChannelAffine(tensors[t["multiplier"]], tensors[t["offset"]],
                                                                          axis))
                    keys = (conv, aff)
                elif kind in ("conv2d_fp", "conv1d_fp", "linear_fp"):
                    keys = (module("w", (t["weight"], t.get("bias", "")), name,
                                   lambda op=op: self._float_layer(op, tensors)),)
                elif kind == "affine":
                    keys = (module("affine", (t["multiplier"], t["offset"]), name,
                                   lambda t=t, a=attrs: ChannelAffine(
                                       tensors[t["multiplier"]], tensors[t["offset"]], a["axis"],
                                       shift_only=bool(np.all(tensors[t["multiplier"]] == 1)))),)
                elif kind == "prelu":
                    keys = (module("prelu", (t["slope"],), name,
                                   lambda t=t, a=attrs: ChannelPReLU(tensors[t["slope"]], a["axis"])),)
                elif kind == "avgpool2d":  # no parameters: one module per op
                    keys = (module("pool", (f"op{i}",), name,
                                   lambda a=attrs: AvgPool2d(a["kernel_size"], a["stride"], a["padding"],
                                                             a["count_include_pad"])),)
                steps.append((kind, keys, tuple(op["inputs"]), op["outputs"][0], attrs))
            self._plans[view] = steps
        self._outputs = {v: artifact.views[v]["output"] for v in self.views}

    @staticmethod
    def _binary_twin(op: dict[str, Any], tensors: dict[str, np.ndarray], unpacked: bool = False) -> nn.Module:
        kind, a = op["op"], op["attrs"]
        packed = tensors[op["tensors"]["weight"]]
        planes = int(a.get("weight_planes", 1))
        if planes > 1:  # (P, *shape): the float twin holds one weight, the sum of scaled planes
            n = a["in_features"] if kind == "blinear" else a["in_channels"]
            scales = tensors[op["tensors"]["weight_scales"]].astype(np.float64)  # (P, out)
            signs = unpack_signs(packed, n).astype(np.float64)  # (P, out, ..., C) or (P, k, C)
            if kind == "bdwconv1d":
                w = np.einsum("pc,pkc->kc", scales, signs)
            else:
                w = np.einsum("po,po...->o...", scales, signs)
            return FloatPlanModel._binary_twin({**op, "attrs": {**a, "weight_planes": 1}},
                                            {op["tensors"]["weight"]: w}, unpacked=True)
        if kind == "blinear":
            w = packed if unpacked else unpack_signs(packed, a["in_features"])  # (out, words) -> (out, in)
            layer = nn.Linear(a["in_features"], w.shape[0], bias=False)
            layer.weight.data = _f32(w)
            return layer
        c = a["in_channels"]
        padding, pad = _pad_arg(a["padding"])
        if kind == "bconv2d":
            w = (packed if unpacked else unpack_signs(packed, c)).transpose(0, 3, 1, 2)  # (out, kh, kw, C) -> (out, C, kh, kw)
            layer = nn.Conv2d(c, w.shape[0], tuple(a["kernel_size"]), tuple(a["stride"]), padding,
                              tuple(a["dilation"]), bias=False)
        elif kind == "bconv1d":
            w = (packed if unpacked else unpack_signs(packed, c)).transpose(0, 2, 1)  # (out, k, C) -> (out, C, k)
            layer = nn.Conv1d(c, w.shape[0], tuple(a["kernel_size"]), tuple(a["stride"]), padding,
                              tuple(a["dilation"]), bias=False)
        elif kind == "bdwconv2d":  # (kh, kw, C) -> (C, 1, kh, kw), one kernel per channel
            w = (packed if unpacked else unpack_signs(packed, c)).transpose(2, 0, 1)[:, None]
            layer = nn.Conv2d(c, c, tuple(a["kernel_size"]), tuple(a["stride"]), padding,
                              tuple(a["dilation"]), groups=c, bias=False)
        else:  # bdwconv1d: (k, C) -> (C, 1, k), one kernel per channel
            w = (packed if unpacked else unpack_signs(packed, c)).T[:, None, :]
            layer = nn.Conv1d(c, c, tuple(a["kernel_size"]), tuple(a["stride"]), padding,
                              tuple(a["dilation"]), groups=c, bias=False)
        layer.weight.data = _f32(np.ascontiguousarray(w))
        return layer if pad is None else _Padded(pad, layer)

    @staticmethod
    def _float_layer(op: dict[str, Any], tensors: dict[str, np.ndarray]) -> nn.Module:
        kind, a, t = op["op"], op["attrs"], op["tensors"]
        w = tensors[t["weight"]]
        bias = "bias" in t
        if kind == "linear_fp":
            layer: nn.Module = nn.Linear(w.shape[1], w.shape[0], bias=bias)
            pad = None
        else:
            padding, pad = _pad_arg(a["padding"])
            conv = nn.Conv2d if kind == "conv2d_fp" else nn.Conv1d
            layer = conv(w.shape[1] * a["groups"], w.shape[0], tuple(w.shape[2:]), tuple(a["stride"]), padding,
                         tuple(a["dilation"]), groups=a["groups"], bias=bias)
        layer.weight.data = _f32(w)
        if bias:
            layer.bias.data = _f32(tensors[t["bias"]])
        return layer if pad is None else _Padded(pad, layer)

    def forward(self, x: torch.Tensor, view: str | int | None = None) -> torch.Tensor:
        """``(batch, *feature_shape)`` float32 -> ``(batch, num_labels)``."""
        view = self.default_view if view is None else str(view)
        if view not in self._plans:
            raise ValueError(f"no view {view!r}; views are: {', '.join(self.views)}")
        values = {"input": x}
        for kind, keys, inputs, output, attrs in self._plans[view]:
            v = values[inputs[0]]
            if keys:
                for key in keys:  # layer, then its affine (binary twins)
                    v = self.layers[key](v)
            elif kind == "relu":
                v = torch.relu(v)
            elif kind == "silu":
                v = F.silu(v)
            elif kind == "mean":
                v = v.mean(dim=[a + 1 for a in attrs["axes"]], keepdim=bool(attrs.get("keepdims", False)))
            elif kind == "add":
                v = v + values[inputs[1]]  # same rank; size-1 axes broadcast
            elif kind == "reshape":
                v = v.reshape(-1, *attrs["shape"])  # (batch, ...) -> (batch, *shape)
            elif kind == "transpose":
                v = v.permute(0, *[p + 1 for p in attrs["perm"]])
            elif kind == "flatten":
                v = v.flatten(1)  # (batch, ...) -> (batch, prod(...))
            else:  # pragma: no cover - the loader only admits the ops above
                raise ValueError(f"no float twin for op {kind!r}")
            values[output] = v
        return values[self._outputs[view]]


def build_float_model(artifact: Artifact) -> FloatPlanModel:
    """The FP32 twin of ``artifact`` (module docstring), in eval mode."""
    return FloatPlanModel(artifact).eval()


class _OneView(nn.Module):
    def __init__(self, model: FloatPlanModel, view: str) -> None:
        super().__init__()
        self.model, self.view = model, view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.view)


#: ONNX exporters, in the order "auto" tries them. "dynamo" (torch.export, the default since
#: torch 2.9) needs the onnx and onnxscript packages; "torchscript" (legacy, deprecated) needs onnx.
ONNX_EXPORTERS = ("dynamo", "torchscript")


def export_onnx(model: FloatPlanModel, view: str, path: str | Path, exporter: str = "auto") -> str:
    """Write view ``view`` of ``model`` as an ONNX file with a dynamic batch axis (input ``x``,
    output ``logits``). Returns the exporter used.

    Raises:
        RuntimeError: no exporter worked (the message carries each one's error).
    """
    order = ONNX_EXPORTERS if exporter == "auto" else (exporter,)
    if any(e not in ONNX_EXPORTERS for e in order):
        raise ValueError(f"unknown ONNX exporter {exporter!r}; known: auto, {', '.join(ONNX_EXPORTERS)}")
    wrapped = _OneView(model, view).eval()
    example = torch.zeros((2, *model.feature_shape))  # batch 2: torch.export specializes sizes 0 and 1
    errors = []
    for name in order:
        try:
            with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "torch.export", "onnxscript"):
                warnings.simplefilter("ignore")
                if name == "dynamo":
                    batch = torch.export.Dim("batch", min=1, max=1 << 16)
                    torch.onnx.export(wrapped, (example,), str(path), dynamo=True, input_names=["x"],
                                      output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
                else:
                    torch.onnx.export(wrapped, (example,), str(path), dynamo=False, input_names=["x"],
                                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
            return name
        except Exception as exc:  # each exporter fails in its own ways (missing packages, unsupported ops)
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise RuntimeError("ONNX export failed (pip install 'binkit[bench]' brings onnx and onnxscript): "
                       + "; ".join(errors))


class _quiet_loggers:
    """Raise the level of noisy loggers (the dynamo exporter logs one warning per missing
    torchvision op) for the duration of a block."""

    def __init__(self, *names: str) -> None:
        self.names, self.levels = names, {}

    def __enter__(self) -> None:
        for n in self.names:
            logger = logging.getLogger(n)
            self.levels[n] = logger.level
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for n, level in self.levels.items():
            logging.getLogger(n).setLevel(level)
