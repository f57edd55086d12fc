"""What an artifact's plan computes, op by op: MACs, binary or not, and the FP32 size of its weights.

Torch-free (``binkit summary MODEL.bkm`` and ``binkit bench --no-torch`` run on a device without
torch). Counting rules are those of :mod:`binkit.nn.summary`, so a plan and the torch model it
came from report the same numbers:

* MACs per example: ``bconv*``/``conv*_fp``: ``output elements x in_channels/groups x
  prod(kernel)`` (padded taps included, as torch counts them); ``bdwconv1d``/``bdwconv2d``:
  ``output elements x prod(kernel)`` (``k``, ``kh x kw``: one tap per channel, padded taps
  included); ``blinear``/``linear_fp``: ``output elements x in_features``. Element-wise ops
  (affine, prelu, relu, silu, add, broadcasting or not), pooling and reductions (avgpool2d, mean:
  additions and one scale, as :mod:`binkit.nn.summary` leaves ``AvgPool2d`` and activations
  uncounted) and data movement (reshape, transpose, flatten) count 0.
* An op **runs binary** when it is a packed op (``bconv2d``, ``bconv1d``, ``bdwconv1d``,
  ``bdwconv2d``, ``blinear``): its MACs are XNOR-popcount bit products (one binary operation
  each). A float op
  that stands in for a binary layer (``artifact.fallbacks``) is flagged with the reason.
* FP32 parameters: every distinct tensor of the plan counted once (views share tensors by name),
  a packed tensor at its unpacked element count (``prod(shape[:-1]) x true channel count``, e.g.
  ``kh x kw x C`` for ``bdwconv2d``, the ``(C, 1, kh, kw)`` depthwise weight); the
  binary ops' ``multiplier``/``offset`` are the 2-per-channel scale and shift of the conv + BN
  the same architecture has in full precision, and so is a sign ``threshold`` (one integer per
  channel standing for that scale and shift, and a PReLU slope export folded away: the slope is
  not counted). The multiplier of an ``affine`` op that only shifts (all ones: ReActNet's RSign
  threshold and RPReLU shifts) is not counted; its offset is. ``4 x`` that is the FP32 weight bytes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binkit.runtime.artifact import Artifact
from binkit.runtime.bits import WORD_DTYPE

__all__ = [
    "BINARY_OPS",
    "OpRow",
    "fp32_parameter_count",
    "op_macs",
    "plan_rows",
    "storage",
    "view_macs",
]

#: Ops that run on packed bits (XNOR-popcount).
BINARY_OPS = frozenset({"bconv2d", "bconv1d", "bdwconv1d", "bdwconv2d", "blinear"})


@dataclass
class OpRow:
    """One op of a view, as ``binkit summary MODEL.bkm`` lists it."""

    index: int  # position of the op in the plan (``artifact.ops``)
    name: str  # the torch module it came from
    op: str
    output_shape: tuple[int, ...]  # per example
    runs_binary: bool
    fallback: str  # why a layer runs in float instead of binary ("" when it does not)
    binary_macs: int
    float_macs: int
    seconds: float | None = None  # measured per call, when profiled
    executed_binary_macs: int | None = None  # what the profiler says it ran (e.g. padded taps skipped)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_shape"] = list(self.output_shape)
        return d


def op_macs(op: dict[str, Any], in_shape: tuple[int, ...], out_shape: tuple[int, ...],
            artifact: Artifact) -> tuple[int, int]:
    """``(binary MACs, float MACs)`` of one op per example (module docstring for the rules)."""
    kind, attrs, out = op["op"], op["attrs"], math.prod(out_shape)
    # bit-serial ops do one binary product per (weight plane, input plane) pair
    planes = int(attrs.get("weight_planes", 1)) * int(attrs.get("input_planes", 1))
    if kind in ("bconv2d", "bconv1d"):
        return planes * out * attrs["in_channels"] * math.prod(attrs["kernel_size"]), 0
    if kind in ("bdwconv1d", "bdwconv2d"):  # depthwise: one tap per output element and kernel position
        return planes * out * math.prod(attrs["kernel_size"]), 0
    if kind == "blinear":
        return planes * out * attrs["in_features"], 0
    if kind in ("conv2d_fp", "conv1d_fp"):
        w = artifact.tensors[op["tensors"]["weight"]]  # (out, in/groups, *kernel)
        return 0, out * math.prod(w.shape[1:])
    if kind == "linear_fp":
        return 0, out * in_shape[-1]
    return 0, 0  # element-wise, pooling, mean, data movement


def plan_rows(artifact: Artifact, view: str | None = None) -> list[OpRow]:
    """One :class:`OpRow` per op of ``view`` (default: the artifact's default view), in order."""
    view = artifact.default_view if view is None else str(view)
    if view not in artifact.views:
        raise ValueError(f"no view {view!r}; views are: {', '.join(artifact.views)}")
    shapes = artifact.shapes[view]
    fallbacks = {f["layer"]: f["reason"] for f in artifact.fallbacks}
    rows = []
    for i in artifact.views[view]["ops"]:
        op = artifact.ops[i]
        out_shape = shapes[op["outputs"][0]]
        binary, flt = op_macs(op, shapes[op["inputs"][0]], out_shape, artifact)
        name = op.get("name", "")
        rows.append(OpRow(index=i, name=name, op=op["op"], output_shape=tuple(out_shape),
                          runs_binary=op["op"] in BINARY_OPS,
                          fallback=fallbacks.get(name, "") if op["op"] not in BINARY_OPS else "",
                          binary_macs=binary, float_macs=flt))
    return rows


def view_macs(artifact: Artifact, view: str) -> dict[str, int]:
    """``{"binary": ..., "float": ...}`` MACs per example of one view."""
    rows = plan_rows(artifact, view)
    return {"binary": sum(r.binary_macs for r in rows), "float": sum(r.float_macs for r in rows)}


def _channels(op: dict[str, Any]) -> int:
    """True channel count along the packed axis of a binary op's weight."""
    return op["attrs"]["in_features"] if op["op"] == "blinear" else op["attrs"]["in_channels"]


def fp32_parameter_count(artifact: Artifact) -> int:
    """Parameters of the same architecture in full precision, every view's tensors counted once."""
    counts: dict[str, int] = {}
    for op in artifact.ops:
        for role, name in op["tensors"].items():
            if name in counts:
                continue
            t = artifact.tensors[name]
            if role in ("weight_scales", "input_scales"):
                counts[name] = 0  # plane scales: the float layer has one weight, no planes
            elif op["op"] == "affine" and role == "multiplier" and t.size and bool(np.all(t == 1)):
                counts[name] = 0  # a pure shift (ReActNet's RSign, RPReLU): its offset is the parameter
            elif t.dtype == WORD_DTYPE:  # packed (..., words) -> (..., channels) +-1 values
                lead = 1 if int(op["attrs"].get("weight_planes", 1)) > 1 else 0  # (P, ...): one float weight
                counts[name] = math.prod(t.shape[lead:-1]) * _channels(op)
            else:  # a threshold stands for a BN scale and shift: 2 per channel
                counts[name] = int(t.size) * (2 if role == "threshold" else 1)
    return sum(counts.values())


def storage(artifact: Artifact, fp32_params: int | None = None) -> dict[str, Any]:
    """Artifact bytes (the file) against FP32 weight bytes (``4 x`` :func:`fp32_parameter_count`).

    ``fp32_params`` overrides the count (e.g. the parameters of the torch float twin, which must
    agree). Returns sizes in bytes and ``ratio`` = FP32 bytes / artifact bytes.
    """
    params = fp32_parameter_count(artifact) if fp32_params is None else int(fp32_params)
    size = Path(artifact.path).stat().st_size
    packed = sum(t.nbytes for t in artifact.tensors.values() if t.dtype == WORD_DTYPE)
    other = sum(t.nbytes for t in artifact.tensors.values() if t.dtype != WORD_DTYPE)
    return {
        "artifact_bytes": size,
        "packed_weight_bytes": packed,
        "other_tensor_bytes": other,  # float weights, affines, slopes, integer thresholds
        "header_bytes": size - packed - other,  # safetensors header: tensor index + metadata (plan, ...)
        "fp32_params": params,
        "fp32_bytes": 4 * params,
        "ratio": 4 * params / size,
    }
