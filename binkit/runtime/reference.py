"""The numpy reference backend (``"reference"``): runs an artifact's plan slowly and obviously.

Torch-free. Every op is a few lines of numpy that read like its formula; binary ops work on
packed bits through :func:`binkit.runtime.bits.pack_signs` and :func:`binkit.runtime.bits.dot_pm1`
(bit 1 = -1, LSB-first along channels, dot = K - 2 popcount(a XOR w)), so the reference checks the
same conventions the engine uses. Float arithmetic is float64 (weights stored as float16/float32
are widened exactly); the output is float32. It is the oracle of the conformance tests, not a
deployment path. Multi-plane (bit-serial) binary ops loop over input planes ``q`` and weight
planes ``p`` with the one-plane dot and sum ``t_{p,o} a_q dot(b_q, W_p)`` in float64 (the input
decomposition ``r_{q+1} = r_q - a_q b_q`` too).

Exact zero padding
------------------
binkit's binary layers quantize first and pad after, so a padded tap contributes 0 to the dot,
not +1 or -1 (:mod:`binkit.nn.layers`). The reference simply skips padded taps: for an output
position it sums ``dot_pm1`` over the taps whose input position is inside the input, so the
number of +-1 products ``K`` is ``C_in x (valid taps)`` and varies at the borders.

An engine that instead runs the whole ``kh x kw`` window over an input padded with 0 bits (= +1)
computes, for output channel ``o`` at position ``p``::

    dot_padded[o, p] = sum_{valid taps t} dot(a_t, w_o,t) + sum_{padded taps t} sum_c (+1) * w_o,t,c

so the exact value is ``dot_padded[o, p] - corr[o, p]`` with
``corr[o, p] = sum_{padded taps t of p} S[o, t]`` and ``S[o, t] = sum_c w_o,t,c`` (the +-1 weight
sum of tap ``t``, ``= C_in - 2 popcount(w_o,t)``). ``corr`` depends only on the position's border
pattern and the weights, so it is computed once per layer (:func:`zero_padding_correction`; the
test suite checks the identity). For the depthwise conv the same holds per channel with
``S[c, t] = w_c,t``.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np

from binkit.runtime.artifact import Artifact, ArtifactError, load_artifact
from binkit.runtime.bits import dot_pm1, pack_signs, unpack_signs

__all__ = ["ReferenceBackend", "ReferenceProgram", "zero_padding_correction"]


def _sign(x: np.ndarray) -> np.ndarray:
    """sign(x) with sign(0) = +1 (bits.py convention: -1 iff x < 0)."""
    return np.where(x < 0, -1.0, 1.0)


def _valid(out_len: int, in_len: int, stride: int, pad_before: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Output positions whose tap at ``offset`` (= tap index x dilation) falls inside the input,
    and the input positions they read: ``in = out * stride - pad_before + offset``."""
    pos = np.arange(out_len) * stride - pad_before + offset
    ok = (pos >= 0) & (pos < in_len)
    return np.nonzero(ok)[0], pos[ok]


def _out_len(in_len: int, k: int, s: int, pad: list[int], d: int) -> int:
    return (in_len + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


# ---------------------------------------------------------------------------------------------
# ops: (attrs, tensors by role, inputs) -> output; arrays carry the batch axis first
# ---------------------------------------------------------------------------------------------


def _transform(dot: np.ndarray, t: dict[str, np.ndarray], axis: int) -> np.ndarray:
    """``multiplier_o * dot + offset_o`` (or the sign threshold) with the output channel on ``axis``."""
    shape = [1] * dot.ndim
    shape[axis] = -1
    if "threshold" in t:  # sign output: +1 iff dot >= threshold (transform, PReLU, sign folded)
        return np.where(dot >= t["threshold"].astype(np.int64).reshape(shape), 1.0, -1.0)
    m = t["multiplier"].astype(np.float64).reshape(shape)
    c = t["offset"].astype(np.float64).reshape(shape)
    return m * dot + c


# The binary ops are written once per layout as an integer +-1 dot on one input plane and one
# packed weight plane (``_*_dot``), and combined over planes by ``_binary`` (artifact docstring,
# "Bit-serial multi-plane binary ops"): dot = sum_{p,q} t_{p,o} a_q dot_pm1(b_q, W_p).


def _blinear_dot(attrs, weight, x):
    k = attrs["in_features"]
    a = pack_signs(x)  # (batch, ..., in) -> (batch, ..., words)
    return dot_pm1(a, weight, k)  # (batch, ..., out), exact integers


def _bconv2d_dot(attrs, weight, x):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel_size"], attrs["stride"], attrs["dilation"]
    (ph, pw) = attrs["padding"]
    # weight: (out, kh, kw, words)
    ho, wo = _out_len(h, kh, sh, ph, dh), _out_len(w, kw, sw, pw, dw)
    a = pack_signs(x.transpose(0, 2, 3, 1))  # (batch, H, W, C) -> (batch, H, W, words)
    dot = np.zeros((n, ho, wo, weight.shape[0]), np.int64)
    for i in range(kh):
        oy, iy = _valid(ho, h, sh, ph[0], i * dh)
        for j in range(kw):
            ox, ix = _valid(wo, w, sw, pw[0], j * dw)
            if oy.size and ox.size:  # padded taps are skipped: they contribute exactly 0
                taps = a[:, iy[:, None], ix[None, :]]  # (batch, |oy|, |ox|, words)
                dot[:, oy[:, None], ox[None, :]] += dot_pm1(taps, weight[:, i, j], c)
    return dot.transpose(0, 3, 1, 2)  # (batch, out, H', W')


def _bconv1d_dot(attrs, weight, x):
    n, c, length = x.shape
    (k,), (s,), (d,), (pad,) = attrs["kernel_size"], attrs["stride"], attrs["dilation"], attrs["padding"]
    # weight: (out, k, words)
    lo = _out_len(length, k, s, pad, d)
    a = pack_signs(x.transpose(0, 2, 1))  # (batch, T, C) -> (batch, T, words)
    dot = np.zeros((n, lo, weight.shape[0]), np.int64)
    for j in range(k):
        ot, it = _valid(lo, length, s, pad[0], j * d)
        if ot.size:
            dot[:, ot] += dot_pm1(a[:, it], weight[:, j], c)  # (batch, |ot|, out)
    return dot.transpose(0, 2, 1)  # (batch, out, T')


def _bdwconv1d_dot(attrs, weight, x):
    n, c, length = x.shape
    (k,), (s,), (d,), (pad,) = attrs["kernel_size"], attrs["stride"], attrs["dilation"], attrs["padding"]
    # weight: (k, words): bit c of tap j = sign of channel c's tap j
    lo = _out_len(length, k, s, pad, d)
    a = pack_signs(x.transpose(0, 2, 1))  # (batch, T, C) -> (batch, T, words)
    dot = np.zeros((n, lo, c), np.int64)
    for j in range(k):
        ot, it = _valid(lo, length, s, pad[0], j * d)
        if ot.size:
            # per channel, a_c * w_c = +1 if the bits agree, -1 if not: unpack(a XOR w)
            dot[:, ot] += unpack_signs(a[:, it] ^ weight[j], c).astype(np.int64)  # (batch, |ot|, C)
    return dot.transpose(0, 2, 1)  # (batch, C, T')


def _bdwconv2d_dot(attrs, weight, x):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel_size"], attrs["stride"], attrs["dilation"]
    (ph, pw) = attrs["padding"]
    # weight: (kh, kw, words): bit c of tap (i, j) = sign of channel c's tap (i, j)
    ho, wo = _out_len(h, kh, sh, ph, dh), _out_len(w, kw, sw, pw, dw)
    a = pack_signs(x.transpose(0, 2, 3, 1))  # (batch, H, W, words)
    dot = np.zeros((n, ho, wo, c), np.int64)
    for i in range(kh):
        oy, iy = _valid(ho, h, sh, ph[0], i * dh)
        for j in range(kw):
            ox, ix = _valid(wo, w, sw, pw[0], j * dw)
            if oy.size and ox.size:  # padded taps are skipped: they contribute exactly 0
                taps = a[:, iy[:, None], ix[None, :]]  # (batch, |oy|, |ox|, words)
                dot[:, oy[:, None], ox[None, :]] += unpack_signs(taps ^ weight[i, j], c).astype(np.int64)
    return dot.transpose(0, 3, 1, 2)  # (batch, C, H', W')


def _input_planes(attrs, t, x) -> list[tuple[float, np.ndarray]]:
    """``[(a_q, b_q)]``: the greedy residual sign planes of ``x`` (``r_1 = x``, ``b_q = sign(r_q)``,
    ``r_{q+1} = r_q - a_q b_q``), or ``[(1, x)]`` for one plane (the dot packs ``sign(x)``)."""
    if attrs.get("input_planes", 1) == 1:
        return [(1.0, x)]
    planes, r = [], x
    for a in t["input_scales"].astype(np.float64):
        b = _sign(r)
        planes.append((float(a), b))
        r = r - a * b
    return planes


def _weight_planes(attrs, t) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """``[(t_{p,:}, W_p)]``, or ``[(None, W)]`` for one plane (its scale is in the multiplier)."""
    if attrs.get("weight_planes", 1) == 1:
        return [(None, t["weight"])]
    scales = t["weight_scales"].astype(np.float64)  # (P, out)
    return [(scales[p], t["weight"][p]) for p in range(scales.shape[0])]


def _binary(dot_fn, axis: int):
    """A binary op: ``sum_{q} sum_{p} t_{p,o} a_q dot(b_q, W_p)``, then the output transform;
    ``axis`` is the output channel axis of ``dot_fn``'s result."""
    def run(attrs, t, x):
        total = None
        for a, xb in _input_planes(attrs, t, x):
            for scale, w in _weight_planes(attrs, t):
                d = dot_fn(attrs, w, xb).astype(np.float64)  # exact integers
                if scale is not None:
                    shape = [1] * d.ndim
                    shape[axis] = -1
                    d = scale.reshape(shape) * d
                term = a * d
                total = term if total is None else total + term
        return _transform(total, t, axis)
    return run


_blinear = _binary(_blinear_dot, -1)
_bconv2d = _binary(_bconv2d_dot, 1)
_bconv1d = _binary(_bconv1d_dot, 1)
_bdwconv1d = _binary(_bdwconv1d_dot, 1)
_bdwconv2d = _binary(_bdwconv2d_dot, 1)


def _maybe_sign(attrs, x):
    return _sign(x) if attrs.get("input_sign", False) else x


def _conv_fp(attrs, t, x, nd: int):
    x = _maybe_sign(attrs, x)
    weight = t["weight"].astype(np.float64)  # (out, in/groups, *kernel)
    groups = attrs["groups"]
    n, c = x.shape[:2]
    o = weight.shape[0]
    pads = attrs["padding"]
    xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads])  # exact zeros, after the sign
    ks, ss, ds = weight.shape[2:], attrs["stride"], attrs["dilation"]
    out_sz = [_out_len(x.shape[2 + i], ks[i], ss[i], pads[i], ds[i]) for i in range(nd)]
    cg, og = c // groups, o // groups
    out = np.zeros((n, o, *out_sz), np.float64)
    for tap in np.ndindex(*ks):
        sl = tuple(slice(tap[i] * ds[i], tap[i] * ds[i] + (out_sz[i] - 1) * ss[i] + 1, ss[i]) for i in range(nd))
        patch = xp[(slice(None), slice(None), *sl)]  # (batch, C, *out)
        for g in range(groups):
            wg = weight[(slice(g * og, (g + 1) * og), slice(None), *tap)]  # (out/groups, in/groups)
            # (out/g, in/g) x (batch, in/g, *out) -> (batch, out/g, *out)
            out[:, g * og:(g + 1) * og] += np.einsum("oi,ni...->no...", wg, patch[:, g * cg:(g + 1) * cg])
    if "bias" in t:
        out += t["bias"].astype(np.float64).reshape((1, -1) + (1,) * nd)
    return out


def _linear_fp(attrs, t, x):
    x = _maybe_sign(attrs, x)
    y = x @ t["weight"].astype(np.float64).T  # (batch, ..., in) @ (in, out) -> (batch, ..., out)
    if "bias" in t:
        y = y + t["bias"].astype(np.float64)
    return y


def _affine(attrs, t, x):
    return _transform(x, t, attrs["axis"] + 1)


def _prelu(attrs, t, x):
    slope = t["slope"].astype(np.float64)
    if slope.size > 1:
        shape = [1] * x.ndim
        shape[attrs["axis"] + 1] = -1
        slope = slope.reshape(shape)
    return np.where(x >= 0, x, slope * x)


def _avgpool2d(attrs, t, x):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    ho, wo = _out_len(h, kh, sh, ph, 1), _out_len(w, kw, sw, pw, 1)
    total = np.zeros((n, c, ho, wo))
    count = np.zeros((ho, wo))
    for i in range(kh):
        oy, iy = _valid(ho, h, sh, ph[0], i)
        for j in range(kw):
            ox, ix = _valid(wo, w, sw, pw[0], j)
            total[:, :, oy[:, None], ox[None, :]] += x[:, :, iy[:, None], ix[None, :]]
            count[oy[:, None], ox[None, :]] += 1
    return total / (kh * kw if attrs["count_include_pad"] else count)


def _silu(attrs, t, x):
    with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0: x / inf = -0, the limit
        return x / (1.0 + np.exp(-x))


_OPS = {
    "blinear": _blinear,
    "bconv2d": _bconv2d,
    "bconv1d": _bconv1d,
    "bdwconv1d": _bdwconv1d,
    "bdwconv2d": _bdwconv2d,
    "avgpool2d": _avgpool2d,
    "mean": lambda a, t, x: x.mean(axis=tuple(i + 1 for i in a["axes"]), keepdims=a.get("keepdims", False)),
    "silu": _silu,
    "conv2d_fp": lambda a, t, x: _conv_fp(a, t, x, 2),
    "conv1d_fp": lambda a, t, x: _conv_fp(a, t, x, 1),
    "linear_fp": _linear_fp,
    "affine": _affine,
    "prelu": _prelu,
    "relu": lambda a, t, x: np.maximum(x, 0.0),
    "add": lambda a, t, x, y: x + y,
    "reshape": lambda a, t, x: x.reshape(x.shape[0], *a["shape"]),
    "transpose": lambda a, t, x: x.transpose(0, *[p + 1 for p in a["perm"]]),
    "flatten": lambda a, t, x: x.reshape(x.shape[0], -1),
}


def zero_padding_correction(weight: np.ndarray, num_channels: int, in_len: int, kernel: int, stride: int,
                            pad: tuple[int, int], dilation: int) -> np.ndarray:
    """``corr[o, p]`` of the module docstring for a 1-D binary conv (``weight (out, k, words)``):
    what a +1-padded kernel adds at output position ``p`` over the exact-zero result.

    Returns int64 ``(out, out_len)``.
    """
    w_pm1 = unpack_signs(weight, num_channels)  # (out, k, C)
    tap_sum = w_pm1.sum(axis=-1).astype(np.int64)  # (out, k): S[o, t]
    lo = _out_len(in_len, kernel, stride, list(pad), dilation)
    corr = np.zeros((weight.shape[0], lo), np.int64)
    for j in range(kernel):
        pos = np.arange(lo) * stride - pad[0] + j * dilation
        padded = (pos < 0) | (pos >= in_len)
        corr[:, padded] += tap_sum[:, j:j + 1]
    return corr


class ReferenceProgram:
    """A loaded artifact ready to run: ``run(features, view) -> logits``."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.kernel = "numpy-reference"

    def run(self, features: np.ndarray, view: str) -> np.ndarray:
        """``(batch, *input_shape)`` float32 features -> ``(batch, num_labels)`` float32 logits.

        The input is trusted to be validated (:class:`binkit.runtime.model.RuntimeModel` does it).
        """
        art = self.artifact
        if view not in art.views:
            raise ValueError(f"no view {view!r}; views are: {', '.join(art.views)}")
        values: dict[str, np.ndarray] = {"input": np.asarray(features, dtype=np.float64)}
        for op in art.view_ops(view):
            tensors = {role: art.tensors[name] for role, name in op["tensors"].items()}
            values[op["outputs"][0]] = _OPS[op["op"]](op["attrs"], tensors, *(values[v] for v in op["inputs"]))
        return values[art.views[view]["output"]].astype(np.float32)


class ReferenceBackend:
    """Backend ``"reference"``: ``load(path or Artifact) -> ReferenceProgram``."""

    name = "reference"
    #: Optional artifact features it runs (:func:`binkit.runtime.artifact.required_features`).
    features = frozenset({"multiplane", "bdwconv2d", "avgpool2d", "mean", "silu", "broadcast_add"})

    def load(self, source: str | Path | Artifact) -> ReferenceProgram:
        artifact = source if isinstance(source, Artifact) else load_artifact(source)
        if not isinstance(artifact, Artifact):  # pragma: no cover - defensive
            raise ArtifactError(f"cannot load {source!r}")
        return ReferenceProgram(artifact)

    def __repr__(self) -> str:
        return "ReferenceBackend()"
