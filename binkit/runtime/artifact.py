"""The binkit artifact: one safetensors file holding a binarized model, and its validating loader.

Torch-free. Writing is :func:`save_artifact` (used by :mod:`binkit.export`); reading is
:func:`load_artifact`, which validates everything before anything runs and raises
:class:`ArtifactError` (a ``ValueError``) with a message naming the file, the op or tensor, what
was found and what is allowed. Nothing from the file is ever executed: the container is
safetensors (raw little-endian arrays plus a JSON header, no pickle), and the metadata is JSON.

Format, version 2
-----------------
Tensors (names are informative; the plan references tensors by name):

* packed binary weights, ``uint64`` words (bit conventions of :mod:`binkit.runtime.bits`: bit 1
  = -1, LSB-first along input channels, zero padding bits):
  ``blinear`` ``(out, num_words(in))``; ``bconv1d`` ``(out, kernel, num_words(in))``;
  ``bconv2d`` ``(out, kh, kw, num_words(in))`` (one packed row per tap, so padded taps can be
  skipped exactly); ``bdwconv1d`` ``(kernel, num_words(channels))`` (channel ``c`` of tap ``j`` is
  the sign of ``W[c, 0, j]``); ``bdwconv2d`` ``(kh, kw, num_words(channels))`` (channel ``c`` of
  tap ``(i, j)`` is the sign of ``W[c, 0, i, j]``);
* the fused output transform of each binary op, ``multiplier`` and ``offset``, ``float32
  (out,)``: ``y_o = multiplier_o * dot_o + offset_o`` on the integer dot (weight scale, bias and
  BatchNorm folded, see :mod:`binkit.export.lower`); or, instead of both, a sign ``threshold``
  ``int16``/``int32 (out,)``: ``y_o = +1 if dot_o >= threshold_o else -1`` (floats), for ops whose
  output only ever feeds binary ops (export folds transform, PReLU and the next sign into it:
  :meth:`binkit.export.lower.PlanBuilder.fold_sign_outputs`);
* full-precision weights ``float16`` or ``float32`` (torch layouts ``(out, in/groups, *kernel)``,
  ``(out, in)``), biases ``float32 (out,)``; ``affine`` multiplier/offset and ``prelu`` slopes
  ``float32`` (``(C,)``, slopes also ``(1,)``).

Metadata (safetensors ``__metadata__``, every value a string; JSON unless noted):

* ``format``: ``"binkit-artifact"`` (plain string); ``format_version``: ``"2"`` (plain string;
  version 1 files, whose plan is always plain JSON, still load);
* ``producer``: e.g. ``"binkit 0.1.0"`` (plain string);
* ``checksum``: ``"sha256:<hex>"`` over the other metadata (canonical JSON) and every tensor's
  name, dtype, shape and bytes (:func:`compute_checksum`): integrity against truncation and bit
  flips, not a signature;
* ``input``: ``{"shape": [per-example shape], "dtype": "float32"}``;
* ``plan``: ``{"ops": [op, ...]}``, each op ``{"op", "name", "inputs", "outputs", "attrs",
  "tensors"}``: ``op`` one of :data:`OPS`, ``name`` the torch module it came from (diagnostics),
  ``inputs``/``outputs`` value names, ``attrs`` the op's attributes, ``tensors`` role -> tensor
  name. Values are float arrays with a leading batch axis; shapes and ``axis`` attributes below
  are *per example* (axis 0 is the first axis after the batch). Stored as ``"zlib:"`` followed
  by the base64 of the zlib-compressed JSON (version 2; the plan repeats its structure per block
  and view, so this shrinks it about sevenfold; inflating is capped at :data:`MAX_PLAN_BYTES`);
* ``views``: ``{view: {"ops": [op indices in execution order], "output": value}}``; every view
  starts from the value ``"input"``; ``default_view``: the view ``predict`` runs by default;
* ``labels``: class names, one per output; ``frontend``: a :class:`binkit.specs.FeaturesSpec`
  dump, or ``null`` for a model fed features directly;
* ``fallbacks``: ``[{"layer", "reason"}]`` layers exported in float because they cannot run
  binary (only with ``allow_float_fallback``); ``export``: informative export facts (float16 use
  and its measured error).

Ops (per-example shapes; ``p``: ``[[before, after], ...]`` padding per spatial axis, exact zeros):

=============  =======================================  ==================================================
op             input -> output                          tensors / attrs
=============  =======================================  ==================================================
``conv2d_fp``  ``(C, H, W) -> (O, H', W')``             weight, bias?; stride, padding, dilation, groups,
                                                        input_sign
``conv1d_fp``  ``(C, T) -> (O, T')``                    as conv2d_fp, 1-D
``linear_fp``  ``(..., I) -> (..., O)``                 weight, bias?; input_sign
``bconv2d``    ``(C, H, W) -> (O, H', W')``             weight, multiplier + offset or threshold;
                                                        in_channels, kernel_size, stride, padding, dilation
``bconv1d``    ``(C, T) -> (O, T')``                    as bconv2d, 1-D
``bdwconv1d``  ``(C, T) -> (C, T')``                    as bconv1d, depthwise (one kernel per channel)
``blinear``    ``(..., I) -> (..., O)``                 weight, multiplier + offset or threshold; in_features
``affine``     ``x -> x``                               multiplier, offset; axis
``prelu``      ``x -> x``                               slope ``(1,)`` or ``(C,)``; axis
``relu``       ``x -> x``
``bdwconv2d``  ``(C, H, W) -> (C, H', W')``             as bconv2d, depthwise (one kernel per channel); one
                                                        plane only
``avgpool2d``  ``(C, H, W) -> (C, H', W')``             kernel_size, stride, padding, count_include_pad
``mean``       ``x -> x averaged over axes``            axes (distinct per-example axes), keepdims
``silu``       ``x -> x * sigmoid(x)``
``add``        ``a, b -> a + b``                        same rank; per axis equal sizes or one of them 1
                                                        (broadcast)
``reshape``    ``x -> shape``                           shape (same element count)
``transpose``  ``x -> permuted``                        perm (a permutation of the per-example axes)
``flatten``    ``x -> (prod(shape),)``
=============  =======================================  ==================================================

``avgpool2d`` sums the window's values inside the input and divides by ``kh * kw`` when
``count_include_pad`` (padding counts as zeros, torch's default) or by the number of those values
otherwise; each padding is at most half the kernel. ``mean`` averages over ``axes`` and keeps them
as size 1 when ``keepdims``. ``add`` broadcasts like numpy over the per-example axes of equal rank.

Ops added after the first version-2 files (``bdwconv2d``, ``avgpool2d``, ``mean``, ``silu``,
broadcasting ``add``) are optional format features (:func:`required_features`): a backend runs
them only if it declares them, and ``auto`` backend selection falls back to one that does.

``input_sign`` (float ops only: float fallbacks of binary layers): the input is replaced by
``sign(x)`` (sign(0) = +1) before padding, as binkit's binary layers do.

Bit-serial multi-plane binary ops
---------------------------------
``blinear``, ``bconv1d``, ``bconv2d`` and ``bdwconv1d`` take two optional int attributes,
``weight_planes`` ``P`` and ``input_planes`` ``Q``, each in ``[1, 4]`` (:data:`MAX_PLANES`),
default 1 (absent = 1; export writes them only when > 1, so one-plane ops are unchanged):

* ``P > 1``: the packed ``weight`` gets a leading plane axis, ``(P, *one-plane shape)`` (e.g.
  ``bconv2d`` ``(P, out, kh, kw, num_words(in))``, ``bdwconv1d`` ``(P, kernel,
  num_words(channels))``), plane ``p`` packed exactly like a one-plane weight; and the role
  ``weight_scales``, ``float32 (P, out)`` (``out`` = channels for ``bdwconv1d``), holds the
  per-plane, per-output-channel scales ``t_{p,o}`` (any finite value). With ``P = 1`` the role is
  not allowed (the scale is folded into ``multiplier``).
* ``Q > 1``: the role ``input_scales``, ``float32 (Q,)``, all finite and ``> 0``, holds ``a_q``;
  the op's input ``x`` is decomposed greedily, with ``sign(0) = +1``::

      r_1 = x,   b_q = sign(r_q),   r_{q+1} = r_q - a_q * b_q        (q = 1..Q)

  (padding is applied after the decomposition: padded taps are exact zeros in every plane). With
  ``Q = 1`` the role is not allowed and ``b_1 = sign(x)`` as for every binary op.

The op then computes, per output channel ``o`` and position::

    dot_o = sum_{p=1..P} sum_{q=1..Q} t_{p,o} * a_q * dot_pm1(b_q, W_p)[o]

(``t_{1,o} = 1`` when ``P = 1``, ``a_1 = 1`` when ``Q = 1``; ``dot_pm1`` the integer +-1 dot
product over the valid taps, exact zero padding as for one plane), followed by the usual
``y_o = multiplier_o * dot_o + offset_o``. A sign ``threshold`` is allowed only with
``P = Q = 1`` (with planes the dot is not an integer; export never folds a multi-plane op, nor a
sign into a consumer with ``Q > 1``, which needs the real value).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from binkit.errors import BinkitError
from binkit.runtime.bits import BITS_PER_WORD, WORD_DTYPE, num_words

__all__ = [
    "FORMAT",
    "FEATURE_OPS",
    "FORMAT_VERSION",
    "MAX_PLANES",
    "OPS",
    "Artifact",
    "ArtifactError",
    "compute_checksum",
    "describe",
    "infer_op",
    "load_artifact",
    "required_features",
    "save_artifact",
    "validate_plan",
]

FORMAT = "binkit-artifact"
FORMAT_VERSION = 2
#: Versions this loader reads (1: the plan is plain JSON; 2: it may be zlib-compressed).
READ_VERSIONS = (1, 2)
#: Largest decompressed plan, in bytes; a larger one is refused (decompression-bomb guard).
MAX_PLAN_BYTES = 16 << 20
_ZLIB_PREFIX = "zlib:"
#: Largest element count of one value per example; larger plans are refused as implausible.
MAX_VALUE_ELEMENTS = 1 << 24
#: Largest ``weight_planes`` / ``input_planes`` of a bit-serial binary op.
MAX_PLANES = 4

_PLAIN_KEYS = frozenset({"format", "format_version", "producer", "checksum"})
_F32 = (np.dtype(np.float32),)
_FP_WEIGHT = (np.dtype(np.float16), np.dtype(np.float32))
_WORDS = (np.dtype(WORD_DTYPE),)
_THRESHOLD = (np.dtype(np.int16), np.dtype(np.int32))


class ArtifactError(BinkitError, ValueError):
    """An artifact is missing, unreadable, tampered with, of another version, or inconsistent."""


@dataclass
class Artifact:
    """A validated artifact: tensors plus parsed metadata. Build with :func:`load_artifact`.

    Attributes:
        tensors: name -> numpy array (read-only use).
        ops: the plan's ops (dicts as in the module docstring).
        views: view name -> ``{"ops": [...], "output": value}``.
        default_view: the view run when none is asked for.
        input_shape: per-example input shape.
        labels: class names.
        frontend: FeaturesSpec fields, or ``None``.
        fallbacks: layers exported in float, with the reason.
        metadata: the raw metadata strings.
        shapes: view -> value name -> per-example shape (from validation).
    """

    tensors: dict[str, np.ndarray]
    ops: list[dict[str, Any]]
    views: dict[str, dict[str, Any]]
    default_view: str
    input_shape: tuple[int, ...]
    labels: list[str]
    frontend: dict[str, Any] | None
    fallbacks: list[dict[str, str]]
    metadata: dict[str, str]
    shapes: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    path: str = ""

    def view_ops(self, view: str) -> list[dict[str, Any]]:
        """The ops of ``view`` in execution order."""
        return [self.ops[i] for i in self.views[view]["ops"]]


# ---------------------------------------------------------------------------------------------
# checksum and writing
# ---------------------------------------------------------------------------------------------


def compute_checksum(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> str:
    """``"sha256:<hex>"`` of the metadata (all keys but ``checksum``, canonical JSON) and of every
    tensor's name, dtype, shape and little-endian bytes, in name order."""
    h = hashlib.sha256()
    meta = {k: v for k, v in metadata.items() if k != "checksum"}
    h.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, a.dtype.str.replace(">", "<").replace("=", "<"), list(a.shape)]).encode("utf-8"))
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return "sha256:" + h.hexdigest()


def save_artifact(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    """Write ``tensors`` and ``metadata`` as an artifact at ``path`` (not atomic; see export).

    ``metadata`` values are JSON-encoded except the plain-string keys (``format``,
    ``format_version``, ``producer``, ``checksum``); ``format``, ``format_version`` and
    ``checksum`` are filled in unless given.
    """
    from safetensors.numpy import save_file

    meta = {k: (v if k in _PLAIN_KEYS and isinstance(v, str) else json.dumps(v, separators=(",", ":"))) for k, v in metadata.items()}
    if "plan" in meta and not meta["plan"].startswith(_ZLIB_PREFIX):
        # The plan repeats op structure per view and block; zlib takes it to a fraction.
        meta["plan"] = _ZLIB_PREFIX + base64.b64encode(zlib.compress(meta["plan"].encode("utf-8"), 9)).decode("ascii")
    meta.setdefault("format", FORMAT)
    meta.setdefault("format_version", str(FORMAT_VERSION))
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    meta["checksum"] = compute_checksum(meta, tensors)
    save_file(tensors, str(path), metadata=meta)


# ---------------------------------------------------------------------------------------------
# small checkers (all raise ArtifactError)
# ---------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(where: str, attrs: dict, key: str, lo: int, hi: int = 1 << 20) -> int:
    v = attrs.get(key)
    if not _is_int(v) or not lo <= v <= hi:
        raise ArtifactError(f"{where}: attribute {key!r} must be an int in [{lo}, {hi}], got {v!r}")
    return v


def _ints(where: str, attrs: dict, key: str, n: int, lo: int, hi: int = 1 << 16) -> list[int]:
    v = attrs.get(key)
    if not isinstance(v, list) or len(v) != n or not all(_is_int(e) and lo <= e <= hi for e in v):
        raise ArtifactError(f"{where}: attribute {key!r} must be a list of {n} ints in [{lo}, {hi}], got {v!r}")
    return v


def _pads(where: str, attrs: dict, n: int) -> list[list[int]]:
    v = attrs.get("padding")
    ok = isinstance(v, list) and len(v) == n and all(
        isinstance(p, list) and len(p) == 2 and all(_is_int(e) and 0 <= e <= 1 << 16 for e in p) for p in v)
    if not ok:
        raise ArtifactError(f"{where}: attribute 'padding' must be {n} pair(s) [before, after] of ints >= 0, got {v!r}")
    return v


def _bool(where: str, attrs: dict, key: str) -> bool:
    v = attrs.get(key, False)
    if not isinstance(v, bool):
        raise ArtifactError(f"{where}: attribute {key!r} must be true or false, got {v!r}")
    return v


def _tensor(where: str, op: dict, tensors: dict[str, np.ndarray], role: str, dtypes: tuple,
            shape: tuple[int, ...] | None = None, optional: bool = False) -> np.ndarray | None:
    refs = op["tensors"]
    if role not in refs:
        if optional:
            return None
        raise ArtifactError(f"{where}: needs tensor role {role!r}; it references {sorted(refs)}")
    name = refs[role]
    if name not in tensors:
        raise ArtifactError(f"{where}: tensor {name!r} ({role}) is missing from the file")
    t = tensors[name]
    if t.dtype not in dtypes:
        raise ArtifactError(f"{where}: tensor {name!r} ({role}) has dtype {t.dtype}, "
                            f"expected {' or '.join(str(d) for d in dtypes)}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ArtifactError(f"{where}: tensor {name!r} ({role}) has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if t.dtype.kind == "f" and not np.isfinite(t).all():
        raise ArtifactError(f"{where}: tensor {name!r} ({role}) holds {int((~np.isfinite(t)).sum())} non-finite value(s)")
    return t


def _check_padding_bits(where: str, name: str, words: np.ndarray, num_channels: int) -> None:
    tail = num_channels % BITS_PER_WORD
    if tail and words.size and (words[..., -1] >> np.uint64(tail)).any():
        raise ArtifactError(f"{where}: packed tensor {name!r} has nonzero padding bits above channel "
                            f"{num_channels - 1} (corrupt, or packed for another channel count)")


def _conv_out(where: str, size: int, k: int, s: int, pad: list[int], d: int) -> int:
    span = d * (k - 1) + 1
    if max(pad) > span - 1:
        raise ArtifactError(f"{where}: padding {pad} exceeds the kernel span - 1 = {span - 1} "
                            "(outputs would see padding only)")
    full = size + pad[0] + pad[1]
    if full < span:
        raise ArtifactError(f"{where}: input length {size} with padding {pad} is shorter than the "
                            f"kernel span {span}")
    return (full - span) // s + 1


def _rank(where: str, shape: tuple[int, ...], n: int, what: str) -> None:
    if len(shape) != n:
        raise ArtifactError(f"{where}: input must be {what} per example, got shape {shape}")


def _axis(where: str, attrs: dict, shape: tuple[int, ...]) -> int:
    return _int(where, attrs, "axis", 0, max(len(shape) - 1, 0)) if shape else _int(where, attrs, "axis", 0, 0)


# ---------------------------------------------------------------------------------------------
# per-op shape inference and validation: (where, op, input shapes, tensors) -> output shape
# ---------------------------------------------------------------------------------------------


def _conv_fp(nd: int) -> Callable:
    def check(where, op, shapes, tensors):
        (shape,) = shapes
        _rank(where, shape, nd + 1, "(channels, " + ", ".join("HW"[:nd] if nd == 2 else "T") + ")")
        a = op["attrs"]
        stride = _ints(where, a, "stride", nd, 1)
        dil = _ints(where, a, "dilation", nd, 1)
        pads = _pads(where, a, nd)
        groups = _int(where, a, "groups", 1)
        _bool(where, a, "input_sign")
        c = shape[0]
        w = _tensor(where, op, tensors, "weight", _FP_WEIGHT)
        if w.ndim != nd + 2 or w.shape[0] < 1 or min(w.shape) < 1:
            raise ArtifactError(f"{where}: weight must be (out, in/groups, {'kh, kw' if nd == 2 else 'k'}), got {w.shape}")
        o = w.shape[0]
        if c % groups or o % groups or w.shape[1] * groups != c:
            raise ArtifactError(f"{where}: weight {w.shape} with groups={groups} does not fit {c} input channels")
        _tensor(where, op, tensors, "bias", _F32, (o,), optional=True)
        out = [_conv_out(where, shape[1 + i], w.shape[2 + i], stride[i], pads[i], dil[i]) for i in range(nd)]
        return (o, *out)
    return check


def _linear_fp(where, op, shapes, tensors):
    (shape,) = shapes
    if not shape:
        raise ArtifactError(f"{where}: input must have a feature axis")
    _bool(where, op["attrs"], "input_sign")
    w = _tensor(where, op, tensors, "weight", _FP_WEIGHT)
    if w.ndim != 2 or w.shape[1] != shape[-1] or w.shape[0] < 1:
        raise ArtifactError(f"{where}: weight must be (out, {shape[-1]}), got {w.shape}")
    _tensor(where, op, tensors, "bias", _F32, (w.shape[0],), optional=True)
    return (*shape[:-1], w.shape[0])


def _transform(where, op, tensors, out: int) -> None:
    _tensor(where, op, tensors, "multiplier", _F32, (out,))
    _tensor(where, op, tensors, "offset", _F32, (out,))


def _binary_output(where, op, tensors, out: int) -> None:
    """A binary op ends in the float transform (multiplier, offset) or a sign threshold."""
    refs = op["tensors"]
    if "threshold" in refs:
        if "multiplier" in refs or "offset" in refs:
            raise ArtifactError(f"{where}: has both a sign threshold and a multiplier/offset transform")
        _tensor(where, op, tensors, "threshold", _THRESHOLD, (out,))
    else:
        _transform(where, op, tensors, out)


def _plane_counts(where: str, op: dict) -> tuple[int, int]:
    """``(weight_planes, input_planes)`` of a binary op (absent attribute = 1)."""
    a = op["attrs"]
    p = _int(where, a, "weight_planes", 1, MAX_PLANES) if "weight_planes" in a else 1
    q = _int(where, a, "input_planes", 1, MAX_PLANES) if "input_planes" in a else 1
    return p, q


def _packed_weight(where: str, op: dict, tensors, planes: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The packed ``weight`` of a binary op; returns plane 0's view (the one-plane layout) after
    checking the leading plane axis when ``planes > 1``."""
    w = _tensor(where, op, tensors, "weight", _WORDS)
    if planes > 1:
        if w.ndim < 2 or w.shape[0] != planes:
            raise ArtifactError(f"{where}: weight_planes={planes} needs a packed weight with a leading plane "
                                f"axis ({planes}, ...), got shape {w.shape}")
        w = w[0]
    if shape is not None and tuple(w.shape) != tuple(shape):
        lead = f"{planes}, " if planes > 1 else ""
        raise ArtifactError(f"{where}: packed weight must be ({lead}{', '.join(map(str, shape))}), got "
                            f"{_tensor(where, op, tensors, 'weight', _WORDS).shape}")
    return w


def _plane_tensors(where: str, op: dict, tensors, planes: tuple[int, int], out: int) -> None:
    """``weight_scales`` iff ``P > 1``, ``input_scales`` (positive) iff ``Q > 1``; no threshold
    with planes."""
    p, q = planes
    refs = op["tensors"]
    if p > 1:
        _tensor(where, op, tensors, "weight_scales", _F32, (p, out))
    elif "weight_scales" in refs:
        raise ArtifactError(f"{where}: tensor role 'weight_scales' needs weight_planes > 1 (one plane's "
                            "scale is folded into the multiplier)")
    if q > 1:
        s = _tensor(where, op, tensors, "input_scales", _F32, (q,))
        if not (s > 0).all():
            raise ArtifactError(f"{where}: tensor {refs['input_scales']!r} (input_scales) must be > 0, "
                                f"got {s.tolist()}")
    elif "input_scales" in refs:
        raise ArtifactError(f"{where}: tensor role 'input_scales' needs input_planes > 1")
    if (p > 1 or q > 1) and "threshold" in refs:
        raise ArtifactError(f"{where}: a sign threshold needs weight_planes = input_planes = 1 (got "
                            f"{p} and {q}): a multi-plane dot is not an integer")


def _bconv_geometry(where: str, op: dict, shapes, nd: int):
    """A binary conv's input shape and attributes, checked: (shape, in_channels, kernel, stride,
    dilation, pads, (weight planes, input planes))."""
    (shape,) = shapes
    _rank(where, shape, nd + 1, "(channels, " + ("H, W" if nd == 2 else "T") + ")")
    a = op["attrs"]
    c = _int(where, a, "in_channels", 1, 1 << 20)
    if c != shape[0]:
        raise ArtifactError(f"{where}: in_channels={c} but the input has {shape[0]} channels")
    return (shape, c, _ints(where, a, "kernel_size", nd, 1), _ints(where, a, "stride", nd, 1),
            _ints(where, a, "dilation", nd, 1), _pads(where, a, nd), _plane_counts(where, op))


def _bconv(nd: int) -> Callable:
    def check(where, op, shapes, tensors):
        shape, c, ks, stride, dil, pads, planes = _bconv_geometry(where, op, shapes, nd)
        w = _packed_weight(where, op, tensors, planes[0])
        if w.ndim != nd + 2 or tuple(w.shape[1:]) != (*ks, num_words(c)) or w.shape[0] < 1:
            lead = f"{planes[0]}, " if planes[0] > 1 else ""
            raise ArtifactError(f"{where}: packed weight must be ({lead}out, {', '.join(map(str, ks))}, "
                                f"{num_words(c)}), got {tensors[op['tensors']['weight']].shape}")
        _check_padding_bits(where, op["tensors"]["weight"], tensors[op["tensors"]["weight"]], c)
        o = w.shape[0]
        _plane_tensors(where, op, tensors, planes, o)
        _binary_output(where, op, tensors, o)
        out = [_conv_out(where, shape[1 + i], ks[i], stride[i], pads[i], dil[i]) for i in range(nd)]
        return (o, *out)
    return check


def _bdwconv(nd: int) -> Callable:
    """Binary depthwise conv checker; the 2-D op runs one plane only."""
    def check(where, op, shapes, tensors):
        shape, c, ks, stride, dil, pads, planes = _bconv_geometry(where, op, shapes, nd)
        if nd == 2 and planes != (1, 1):
            raise ArtifactError(f"{where}: bdwconv2d runs one plane only (weight_planes = input_planes = 1), got "
                                f"{planes[0]} and {planes[1]}")
        _packed_weight(where, op, tensors, planes[0], (*ks, num_words(c)))
        _check_padding_bits(where, op["tensors"]["weight"], tensors[op["tensors"]["weight"]], c)
        _plane_tensors(where, op, tensors, planes, c)
        _binary_output(where, op, tensors, c)
        return (c, *(_conv_out(where, shape[1 + i], ks[i], stride[i], pads[i], dil[i]) for i in range(nd)))
    return check


def _avgpool2d(where, op, shapes, tensors):
    (shape,) = shapes
    _rank(where, shape, 3, "(channels, H, W)")
    a = op["attrs"]
    ks = _ints(where, a, "kernel_size", 2, 1)
    stride = _ints(where, a, "stride", 2, 1)
    pads = _pads(where, a, 2)
    for i in range(2):
        if 2 * max(pads[i]) > ks[i]:
            raise ArtifactError(f"{where}: padding {pads[i]} is more than half the kernel size {ks[i]}")
    if not isinstance(a.get("count_include_pad"), bool):
        raise ArtifactError(f"{where}: attribute 'count_include_pad' must be true or false, got "
                            f"{a.get('count_include_pad')!r}")
    return (shape[0], *(_conv_out(where, shape[1 + i], ks[i], stride[i], pads[i], 1) for i in range(2)))


def _mean(where, op, shapes, tensors):
    (shape,) = shapes
    axes = op["attrs"].get("axes")
    if (not isinstance(axes, list) or not axes or not all(_is_int(e) and 0 <= e < len(shape) for e in axes)
            or len(set(axes)) != len(axes)):
        raise ArtifactError(f"{where}: attribute 'axes' must be a non-empty list of distinct axes in "
                            f"[0, {len(shape) - 1}], got {axes!r}")
    keep = _bool(where, op["attrs"], "keepdims")
    if keep:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    out = tuple(s for i, s in enumerate(shape) if i not in axes)
    if not out:
        raise ArtifactError(f"{where}: averaging every axis without keepdims leaves no axis")
    return out


def _blinear(where, op, shapes, tensors):
    (shape,) = shapes
    if not shape:
        raise ArtifactError(f"{where}: input must have a feature axis")
    i = _int(where, op["attrs"], "in_features", 1, 1 << 24)
    if i != shape[-1]:
        raise ArtifactError(f"{where}: in_features={i} but the input has {shape[-1]} features")
    planes = _plane_counts(where, op)
    w = _packed_weight(where, op, tensors, planes[0])
    if w.ndim != 2 or w.shape[1] != num_words(i) or w.shape[0] < 1:
        lead = f"{planes[0]}, " if planes[0] > 1 else ""
        raise ArtifactError(f"{where}: packed weight must be ({lead}out, {num_words(i)}), got "
                            f"{tensors[op['tensors']['weight']].shape}")
    _check_padding_bits(where, op["tensors"]["weight"], tensors[op["tensors"]["weight"]], i)
    _plane_tensors(where, op, tensors, planes, w.shape[0])
    _binary_output(where, op, tensors, w.shape[0])
    return (*shape[:-1], w.shape[0])


def _affine(where, op, shapes, tensors):
    (shape,) = shapes
    if not shape:
        raise ArtifactError(f"{where}: input must have a channel axis")
    ax = _axis(where, op["attrs"], shape)
    _transform(where, op, tensors, shape[ax])
    return shape


def _prelu(where, op, shapes, tensors):
    (shape,) = shapes
    if not shape:
        raise ArtifactError(f"{where}: input must have a channel axis")
    ax = _axis(where, op["attrs"], shape)
    t = _tensor(where, op, tensors, "slope", _F32)
    if t.shape not in ((1,), (shape[ax],)):
        raise ArtifactError(f"{where}: slope must have shape (1,) or ({shape[ax]},), got {t.shape}")
    return shape


def _elementwise(where, op, shapes, tensors):
    """relu, silu: no tensors, the input's shape."""
    return shapes[0]


def _add(where, op, shapes, tensors):
    a, b = shapes
    if len(a) != len(b) or any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        raise ArtifactError(f"{where}: cannot add shapes {a} and {b} (same rank, per axis equal sizes or one "
                            "of them 1)")
    return tuple(max(x, y) for x, y in zip(a, b))


def _reshape(where, op, shapes, tensors):
    (shape,) = shapes
    new = op["attrs"].get("shape")
    if not isinstance(new, list) or not new or not all(_is_int(e) and e >= 1 for e in new):
        raise ArtifactError(f"{where}: attribute 'shape' must be a list of ints >= 1, got {new!r}")
    if math.prod(new) != math.prod(shape):
        raise ArtifactError(f"{where}: cannot reshape {shape} ({math.prod(shape)} values) to {tuple(new)}")
    return tuple(new)


def _transpose(where, op, shapes, tensors):
    (shape,) = shapes
    perm = op["attrs"].get("perm")
    if not isinstance(perm, list) or not all(_is_int(e) for e in perm) or sorted(perm) != list(range(len(shape))):
        raise ArtifactError(f"{where}: attribute 'perm' must be a permutation of 0..{len(shape) - 1}, got {perm!r}")
    return tuple(shape[p] for p in perm)


def _flatten(where, op, shapes, tensors):
    return (math.prod(shapes[0]),)


_BINARY_ROLES = frozenset({"weight", "multiplier", "offset", "threshold", "weight_scales", "input_scales"})

#: op name -> (number of inputs, allowed tensor roles, checker)
OPS: dict[str, tuple[int, frozenset[str], Callable]] = {
    "conv2d_fp": (1, frozenset({"weight", "bias"}), _conv_fp(2)),
    "conv1d_fp": (1, frozenset({"weight", "bias"}), _conv_fp(1)),
    "linear_fp": (1, frozenset({"weight", "bias"}), _linear_fp),
    "bconv2d": (1, _BINARY_ROLES, _bconv(2)),
    "bconv1d": (1, _BINARY_ROLES, _bconv(1)),
    "bdwconv1d": (1, _BINARY_ROLES, _bdwconv(1)),
    "bdwconv2d": (1, _BINARY_ROLES, _bdwconv(2)),
    "blinear": (1, _BINARY_ROLES, _blinear),
    "affine": (1, frozenset({"multiplier", "offset"}), _affine),
    "prelu": (1, frozenset({"slope"}), _prelu),
    "relu": (1, frozenset(), _elementwise),
    "silu": (1, frozenset(), _elementwise),
    "avgpool2d": (1, frozenset(), _avgpool2d),
    "mean": (1, frozenset(), _mean),
    "add": (2, frozenset(), _add),
    "reshape": (1, frozenset(), _reshape),
    "transpose": (1, frozenset(), _transpose),
    "flatten": (1, frozenset(), _flatten),
}


def _op_where(index: int, op: Any) -> str:
    if isinstance(op, dict) and isinstance(op.get("op"), str):
        name = op.get("name")
        return f"op {index} ({op['op']}{f' {name!r}' if isinstance(name, str) and name else ''})"
    return f"op {index}"


def _check_op_structure(index: int, op: Any) -> None:
    where = _op_where(index, op)
    if not isinstance(op, dict):
        raise ArtifactError(f"{where}: must be an object, got {type(op).__name__}")
    kind = op.get("op")
    if not isinstance(kind, str) or kind not in OPS:
        raise ArtifactError(f"{where}: unknown op {kind!r}; known ops: {', '.join(OPS)}")
    n_in, roles, _ = OPS[kind]
    for key, typ in (("inputs", list), ("outputs", list), ("attrs", dict), ("tensors", dict)):
        if not isinstance(op.get(key), typ):
            raise ArtifactError(f"{where}: field {key!r} must be a {typ.__name__}, got {op.get(key)!r}")
    if "name" in op and not isinstance(op["name"], str):
        raise ArtifactError(f"{where}: field 'name' must be a string")
    if len(op["inputs"]) != n_in or not all(isinstance(v, str) and v for v in op["inputs"]):
        raise ArtifactError(f"{where}: needs {n_in} input value name(s), got {op['inputs']!r}")
    if len(op["outputs"]) != 1 or not isinstance(op["outputs"][0], str) or not op["outputs"][0]:
        raise ArtifactError(f"{where}: needs exactly one output value name, got {op['outputs']!r}")
    extra = set(op["tensors"]) - roles
    if extra:
        raise ArtifactError(f"{where}: unknown tensor role(s) {sorted(extra)}; {kind} takes {sorted(roles) or 'none'}")
    if not all(isinstance(v, str) for v in op["tensors"].values()):
        raise ArtifactError(f"{where}: tensor references must be tensor names (strings)")


def infer_op(index: int, op: dict[str, Any], in_shapes: list[tuple[int, ...]],
             tensors: dict[str, np.ndarray]) -> tuple[int, ...]:
    """Validate one op against its input shapes and tensors; return its output shape per example.

    Raises:
        ArtifactError: naming the op, the attribute or tensor, what was found and what is allowed.
    """
    _check_op_structure(index, op)
    where = _op_where(index, op)
    out = tuple(int(s) for s in OPS[op["op"]][2](where, op, in_shapes, tensors))
    if not out or min(out) < 1 or math.prod(out) > MAX_VALUE_ELEMENTS:
        raise ArtifactError(f"{where}: output shape {out} is empty or implausibly large")
    return out


def validate_plan(ops: Any, views: Any, input_shape: tuple[int, ...], tensors: dict[str, np.ndarray],
                  num_classes: int | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    """Check every view's op sequence (SSA value flow, op validity, output shape).

    Returns:
        view -> value name -> per-example shape.
    """
    if not isinstance(ops, list) or not ops:
        raise ArtifactError("plan: 'ops' must be a non-empty list")
    if not isinstance(views, dict) or not views:
        raise ArtifactError("views: must be a non-empty object")
    all_shapes = {}
    used_ops: set[int] = set()
    for view, spec in views.items():
        where = f"view {view!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("ops"), list) or not isinstance(spec.get("output"), str):
            raise ArtifactError(f"{where}: must be {{'ops': [op indices], 'output': value name}}, got {spec!r}")
        shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
        for i in spec["ops"]:
            if not _is_int(i) or not 0 <= i < len(ops):
                raise ArtifactError(f"{where}: op index {i!r} is not in [0, {len(ops) - 1}]")
            op = ops[i]
            _check_op_structure(i, op)
            missing = [v for v in op["inputs"] if v not in shapes]
            if missing:
                raise ArtifactError(f"{where}: {_op_where(i, op)} reads value(s) {missing} that no earlier op of "
                                    "the view produces")
            out_name = op["outputs"][0]
            if out_name in shapes:
                raise ArtifactError(f"{where}: {_op_where(i, op)} writes value {out_name!r} a second time")
            shapes[out_name] = infer_op(i, op, [shapes[v] for v in op["inputs"]], tensors)
            used_ops.add(i)
        out = spec["output"]
        if out not in shapes or out == "input":
            raise ArtifactError(f"{where}: output value {out!r} is not produced by the view's ops")
        if len(shapes[out]) != 1 or (num_classes is not None and shapes[out] != (num_classes,)):
            raise ArtifactError(f"{where}: output {out!r} has shape {shapes[out]}, expected ({num_classes},) "
                                "(one score per label)")
        all_shapes[view] = shapes
    unused = sorted(set(range(len(ops))) - used_ops)
    if unused:
        raise ArtifactError(f"plan: op(s) {unused} belong to no view")
    return all_shapes


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


def _inflate(key: str, text: str) -> str:
    """The JSON text of a ``"zlib:" + base64(zlib(json))`` metadata value, size-capped."""
    try:
        packed = base64.b64decode(text[len(_ZLIB_PREFIX):].encode("ascii"), validate=True)
        d = zlib.decompressobj()
        raw = d.decompress(packed, MAX_PLAN_BYTES)
        complete = d.eof and not d.unconsumed_tail
        raw_text = raw.decode("utf-8") if complete else ""
    except (ValueError, zlib.error, UnicodeDecodeError) as exc:
        raise ArtifactError(f"metadata key {key!r}: compressed value is corrupt ({exc})") from None
    if not complete:
        raise ArtifactError(f"metadata key {key!r}: compressed value is truncated or inflates past "
                            f"{MAX_PLAN_BYTES} bytes")
    return raw_text


def _json(meta: dict[str, str], key: str) -> Any:
    if key not in meta:
        raise ArtifactError(f"metadata key {key!r} is missing")
    text = meta[key]
    if key == "plan" and text.startswith(_ZLIB_PREFIX) and meta.get("format_version") != "1":
        text = _inflate(key, text)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"metadata key {key!r} is not valid JSON: {exc}") from None


def _read(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    from safetensors import safe_open

    if not path.is_file():
        raise ArtifactError(f"artifact not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for every malformed header
        raise ArtifactError(f"not a readable safetensors file ({type(exc).__name__}: {exc}); "
                            "truncated or not an artifact?") from None
    if not isinstance(meta, dict) or not meta:
        raise ArtifactError("no metadata: not a binkit artifact")
    return meta, tensors


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    """Read and validate the artifact at ``path``; nothing from the file is executed.

    Checks, in order: the container; ``format`` and ``format_version``; the checksum; every
    metadata entry's JSON and type; every view's op sequence (known ops, value flow, attribute
    types and ranges, the presence, dtype and shape of each referenced tensor, zero padding bits
    of packed weights, finite float tensors, output size = number of labels); no unreferenced
    tensors; the front-end spec and its agreement with the input shape.

    Raises:
        ArtifactError: the first problem found, prefixed with the path.
    """
    path = Path(path)
    try:
        return _load(path)
    except ArtifactError as exc:
        msg = str(exc)
        raise ArtifactError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def _load(path: Path) -> Artifact:
    meta, tensors = _read(path)
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise ArtifactError(f"format is {fmt!r}, expected {FORMAT!r}: not a binkit artifact")
    version = meta.get("format_version")
    if version not in {str(v) for v in READ_VERSIONS}:
        raise ArtifactError(f"format_version is {version!r}; this binkit reads versions "
                            f"{', '.join(map(str, READ_VERSIONS))} (re-export the model with this binkit version)")
    checksum = meta.get("checksum")
    if checksum != compute_checksum(meta, tensors):
        raise ArtifactError("checksum mismatch: the file was modified or corrupted after export")
    inp = _json(meta, "input")
    shape = inp.get("shape") if isinstance(inp, dict) else None
    if not isinstance(shape, list) or not shape or not all(_is_int(s) and 1 <= s <= 1 << 20 for s in shape):
        raise ArtifactError(f"metadata 'input' must be {{'shape': [ints >= 1], 'dtype': 'float32'}}, got {inp!r}")
    if inp.get("dtype", "float32") != "float32":
        raise ArtifactError(f"metadata 'input' dtype must be 'float32', got {inp.get('dtype')!r}")
    labels = _json(meta, "labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(s, str) for s in labels):
        raise ArtifactError(f"metadata 'labels' must be a non-empty list of strings, got {labels!r}")
    plan = _json(meta, "plan")
    if not isinstance(plan, dict):
        raise ArtifactError("metadata 'plan' must be an object {'ops': [...]}")
    views = _json(meta, "views")
    shapes = validate_plan(plan.get("ops"), views, tuple(shape), tensors, len(labels))
    default_view = _json(meta, "default_view")
    if not isinstance(default_view, str) or default_view not in views:
        raise ArtifactError(f"default_view {default_view!r} is not one of the views {list(views)}")
    referenced = {name for i in {i for v in views.values() for i in v["ops"]} for name in plan["ops"][i]["tensors"].values()}
    unreferenced = sorted(set(tensors) - referenced)
    if unreferenced:
        raise ArtifactError(f"tensor(s) {unreferenced[:5]}{' ...' if len(unreferenced) > 5 else ''} are "
                            "referenced by no op")
    fallbacks = _json(meta, "fallbacks") if "fallbacks" in meta else []
    if not isinstance(fallbacks, list) or not all(
            isinstance(f, dict) and isinstance(f.get("layer"), str) and isinstance(f.get("reason"), str)
            for f in fallbacks):
        raise ArtifactError(f"metadata 'fallbacks' must be a list of {{'layer', 'reason'}}, got {fallbacks!r}")
    frontend = _json(meta, "frontend")
    if frontend is not None:
        frontend = _check_frontend(frontend, tuple(shape))
    return Artifact(tensors=tensors, ops=plan["ops"], views=views, default_view=default_view,
                    input_shape=tuple(shape), labels=labels, frontend=frontend, fallbacks=fallbacks,
                    metadata=meta, shapes=shapes, path=str(path))


def _check_frontend(frontend: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    from binkit.specs import FeaturesSpec

    if not isinstance(frontend, dict):
        raise ArtifactError(f"metadata 'frontend' must be a FeaturesSpec object or null, got {frontend!r}")
    try:
        spec = FeaturesSpec.model_validate(frontend)
        from binkit.runtime.frontend import NumpyFrontEnd

        out_shape = NumpyFrontEnd(spec).out_shape
    except Exception as exc:  # pydantic ValidationError or a front-end that cannot be built
        raise ArtifactError(f"metadata 'frontend' is not a valid FeaturesSpec: {exc}") from None
    if tuple(out_shape) != input_shape:
        raise ArtifactError(f"front-end gives features of shape {tuple(out_shape)} but the model "
                            f"takes {input_shape}")
    return spec.model_dump()


#: Ops that are optional format features (the feature is the op's name).
FEATURE_OPS = ("bdwconv2d", "avgpool2d", "mean", "silu")


def required_features(artifact: Artifact) -> frozenset[str]:
    """Optional format features the artifact uses, which a backend must declare (its ``features``)
    to run it: ``"multiplane"`` when a binary op has ``weight_planes`` or ``input_planes`` > 1; the
    op's name for each op of :data:`FEATURE_OPS`; ``"broadcast_add"`` for an ``add`` whose operand
    shapes differ."""
    feats = set()
    if any(op["attrs"].get("weight_planes", 1) != 1 or op["attrs"].get("input_planes", 1) != 1
           for op in artifact.ops if op["op"] in ("blinear", "bconv1d", "bconv2d", "bdwconv1d")):
        feats.add("multiplane")
    feats.update(op["op"] for op in artifact.ops if op["op"] in FEATURE_OPS)
    for shapes in artifact.shapes.values():
        for op in artifact.ops:
            if op["op"] == "add" and all(v in shapes for v in op["inputs"]) and \
                    shapes[op["inputs"][0]] != shapes[op["inputs"][1]]:
                feats.add("broadcast_add")
    return frozenset(feats)


def describe(artifact: Artifact) -> str:
    """A Markdown summary: views, ops, tensor bytes by kind, float fallbacks."""
    lines = [f"# {Path(artifact.path).name or 'artifact'}", "",
             f"- format {FORMAT} v{FORMAT_VERSION}, producer {artifact.metadata.get('producer', '?')}",
             f"- input {artifact.input_shape}, {len(artifact.labels)} labels: {', '.join(artifact.labels)}",
             "- views: " + ", ".join(f"{v} ({len(s['ops'])} ops)" for v, s in artifact.views.items()) +
             f"; "
             f"default {artifact.default_view!r}"]
    packed = sum(t.nbytes for t in artifact.tensors.values() if t.dtype == WORD_DTYPE)
    other = sum(t.nbytes for t in artifact.tensors.values() if t.dtype != WORD_DTYPE)
    lines.append(f"- tensors: {packed} bytes packed binary weights, {other} bytes float")
    if artifact.fallbacks:
        lines += ["", "## Float fallbacks (layers that do not run binary)", ""]
        lines += [f"- `{f['layer']}`: {f['reason']}" for f in artifact.fallbacks]
    lines += ["", f"## Ops of view {artifact.default_view!r}", "", "| # | op | layer | output shape |", "|---|---|---|---|"]
    shapes = artifact.shapes.get(artifact.default_view, {})
    for i in artifact.views[artifact.default_view]["ops"]:
        op = artifact.ops[i]
        lines.append(f"| {i} | {op['op']} | {op.get('name', '')} | {shapes.get(op['outputs'][0], '?')} |")
    return "\n".join(lines) + "\n"
