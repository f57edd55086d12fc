"""The compiled engine: plans an artifact view once at load, runs it in C per batch.

Torch-free. :class:`NeonBackend` (registered as backend ``"neon"``) loads an artifact into a
:class:`Program`; ``Program.run(features, view)`` makes ONE call into C per batch, which runs
the whole plan with the GIL released (concurrent calls from several threads are safe: each
call uses its own scratch, the plan's one cached block or a fresh one; the plan is read-only).

Planning (Python, once per view at load):

1. **Layouts.** Every value is a float array per example; the engine stores it in a physical
   axis order (a permutation of its axes). Binary convs want their channels innermost (packing
   runs along channels), so a backward pass propagates each consumer's preferred order through
   transposes, reshapes and element-wise ops to the producer, which then writes that order
   directly (convs write through output strides). Transposes are then always free (a relabel),
   reshapes and flattens are free whenever the axis groups they merge are adjacent in memory;
   otherwise the value becomes an index map that a following ``linear_fp`` absorbs into its
   weight columns at load, or that a gather op materialises (``avgpool2d`` and ``mean`` read any
   layout through their index maps).
2. **Fusion.** An element-wise op (affine, prelu, relu, add, silu) that directly follows the op
   producing its only-used input is applied in that op's epilogue, with the same float
   operations in the same order as unfused (so fusion changes no bit of the result).
   A sign-threshold binary op (artifact v2) whose consumers are all 1x1 unpadded binary ops
   writes packed sign rows directly; the consumers use them as GEMM rows without packing.
   An ``affine`` with multiplier 1 whose only reader is a one-plane binary op (ReActNet's RSign
   shift on a value a skip connection also reads, which its producer cannot absorb) is left to
   that reader, which adds the offset while it packs its input: the same addition, so the same
   bits, without the affine's pass over memory (``_fold_input_shift``); a binary conv writing
   that reader's packed rows takes the shift into its per-element count thresholds.
3. **Buffers.** Values are assigned to a few reusable slots by liveness; ops whose input is
   fully staged in scratch before any output is written (binary ops, padded float convs,
   element-wise chains) may write in place over a dying input.
4. **Weights** are repacked for the kernels: binary weights as dense receptive-field rows
   blocked by 8 output channels with words interleaved; the exact-zero padding correction per
   border pattern; float weights transposed to [tap][output channel]; float16 widened.

Bit-serial multi-plane binary ops (attrs ``weight_planes`` P / ``input_planes`` Q > 1, the
``"multiplane"`` artifact feature this backend declares) lower to their own C ops (MBCONV,
MBDW): the input is decomposed into Q residual sign planes in float64 (as the reference), each
plane runs the one-plane pack / im2col / popcount GEMM against each of the P weight planes
(integer counts, exact zero padding per plane), and the dots are combined with the scales in
float64 in a fixed order (q outer, p inner) before the usual transform and fused post-ops.
Single-plane ops are planned and run exactly as before.

The KWS-backbone ops (optional artifact features ``bdwconv2d``, ``avgpool2d``, ``mean``, ``silu``,
``broadcast_add``, all declared):

* ``bdwconv2d`` lowers to BDW2, the 2-D form of the 1-D binary depthwise op: input signs staged
  channels-last as +-1 floats (channels padded to 16 with +1), weights as float sign-bit masks
  ``[kh][kw][C padded]``, per output position the valid-tap rectangle summed exactly (padded taps
  skipped: exact zero padding), vectorised across channels; then ``m * dot + f`` or the sign
  threshold, fused post-ops, or (a threshold whose consumers are all 1x1 unpadded binary convs)
  packed sign rows.
* ``avgpool2d`` and ``mean`` lower to POOL: an index map built at load, ``idx[i][j]`` the input
  offset of tap ``j`` of output ``i`` (-1 for a padded tap), in the input's physical layout;
  ``out[i] = (float)(sum_j (double)in[idx[i][j]] / div_i)``, summed in double from 0.0 in
  increasing ``j`` (the map is stored in blocks of 16 outputs whose sums advance together): kernel taps row-major (avgpool2d; ``div`` = kh * kw with
  ``count_include_pad``, else the in-bounds taps), the reduced axes row-major in increasing axis
  order (mean; ``div`` = their element count). No post-ops are fused into POOL.
* ``silu`` is an element-wise post-op (fused into the producer's epilogue like relu, or an
  element-wise chain): ``(float)(x / (1 + exp(-x)))`` in double through the scalar libm ``exp``,
  the same call in every variant.
* a broadcasting ``add`` gathers each operand smaller than the result to the full shape (a GATHER
  whose index map repeats offsets) in the layout of the full-shape operand, then runs as an
  element-wise ADD chain (later element-wise ops fuse into it). A same-shape add is unchanged.

Kernel variants (``binkit_neon.available_kernels()``): ``scalar``, ``popcnt``, ``avx2``,
``avx512`` on x86 and ``neon`` on aarch64 (or on x86 through SIMDe in a ``-DBINKIT_USE_SIMDE``
build). The default is the fastest the CPU supports; ``BINKIT_NEON_KERNEL=<name>`` or
``load(..., kernel=<name>)`` forces one, and forcing one the CPU lacks raises
:class:`UnsupportedKernelError` instead of crashing. All variants give bitwise identical
outputs: integer counts are exact, and the float convs and linear layers multiply-accumulate
with fused multiply-adds (one rounding each, so the same in every variant: hardware FMA on
AVX-512, AVX2 + FMA and aarch64 NEON, the C library's ``fmaf`` in the scalar and popcnt variants).
"""

from __future__ import annotations

import itertools
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binkit.runtime.artifact import Artifact, ArtifactError, load_artifact
from binkit.runtime.bits import num_words
from binkit_neon import _engine

__all__ = ["NeonBackend", "Program", "UnsupportedKernelError", "available_kernels", "default_kernel",
           "popcount_peak", "resolve_kernel"]

VARIANTS: tuple[str, ...] = _engine.VARIANT_NAMES
ENV_KERNEL = "BINKIT_NEON_KERNEL"

_ISA = {
    "scalar": "portable C (__builtin_popcountll)",
    "popcnt": "x86-64 POPCNT",
    "avx2": "x86-64 AVX2 + FMA (vpshufb nibble popcount)",
    "avx512": "x86-64 AVX-512 VPOPCNTDQ",
    "neon": "ARMv8 NEON (vcnt)",
}

# C op / post-op kinds (binkit_engine.h)
_CONV_FP, _BCONV, _BDW, _EPI, _GATHER, _MBCONV, _MBDW, _BDW2, _POOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
_P_AFFINE, _P_PRELU, _P_RELU, _P_ADD, _P_SILU = 1, 2, 3, 4, 5
_MAX_POST = _engine.MAX_POST
_ELEMENTWISE = ("affine", "prelu", "relu", "add", "silu")
_BINARY = ("bconv1d", "bconv2d", "bdwconv1d", "blinear")
_F32 = np.dtype(np.float32)


class UnsupportedKernelError(RuntimeError):
    """A kernel variant was forced that this CPU (or this build) cannot run."""


# ---------------------------------------------------------------------------------------------
# kernel variants
# ---------------------------------------------------------------------------------------------


def available_kernels() -> list[str]:
    """Kernel variants this build contains and this CPU can run, slowest first."""
    return [name for i, name in enumerate(VARIANTS) if _engine.variant_supported(i)]


def resolve_kernel(kernel: str | None = None) -> str:
    """The variant a load uses: ``kernel``, else ``$BINKIT_NEON_KERNEL``, else the fastest.

    Raises:
        ValueError: an unknown variant name (the message lists the known and available ones).
        UnsupportedKernelError: a known variant that this CPU or build cannot run.
    """
    source = "kernel argument"
    if kernel is None:
        kernel = os.environ.get(ENV_KERNEL) or None
        source = f"${ENV_KERNEL}"
    if kernel is None:
        return VARIANTS[_engine.best_variant()]
    if not isinstance(kernel, str):
        raise ValueError(f"kernel must be a variant name (str), got {kernel!r}")  # noqa: TRY004
    name = kernel.strip().lower()
    avail = available_kernels()
    if name not in VARIANTS:
        raise ValueError(f"unknown kernel variant {kernel!r} ({source}); variants are {', '.join(VARIANTS)}; "
                         f"available on this machine: {', '.join(avail)}")
    i = VARIANTS.index(name)
    if not _engine.variant_supported(i):
        why = ("it is not compiled into this build" if not _engine.variant_compiled(i)
               else f"this CPU ({platform.machine()}) lacks the instructions it needs")
        raise UnsupportedKernelError(f"kernel variant {name!r} ({source}) cannot run here: {why}; "
                                     f"available: {', '.join(avail)}")
    return name


def default_kernel() -> str:
    """The variant :meth:`NeonBackend.load` picks without a ``kernel`` argument."""
    return resolve_kernel(None)


def kernel_info(name: str) -> dict[str, Any]:
    simde = name == "neon" and bool(_engine.NEON_SIMDE)
    isa = _ISA[name] + (" emulated through SIMDe" if simde else "")
    return {"variant": name, "isa": isa, "simde": simde, "available": available_kernels(),
            "machine": platform.machine()}


def popcount_peak(kernel: str | None = None, seconds: float = 0.2) -> float:
    """Measured binary ops per second (64 per word XOR + popcount) of a variant's GEMM kernel on
    in-L1 data (8 KB of weights, activation words broadcast against 8-channel blocks, as the
    engine's binary layers run): the achievable peak of that instruction mix."""
    name = resolve_kernel(kernel)
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= 60):
        raise ValueError(f"seconds must be in (0, 60], got {seconds!r}")
    return float(_engine.popcount_peak(VARIANTS.index(name), float(seconds)))


# ---------------------------------------------------------------------------------------------
# layouts: a value is stored in a physical axis order `perm` (outermost first), or, when no
# axis order describes it, as `offs`: the physical offset of every canonical element
# ---------------------------------------------------------------------------------------------


def _strides(shape: tuple[int, ...], perm: tuple[int, ...]) -> list[int]:
    st = [0] * len(shape)
    acc = 1
    for a in reversed(perm):
        st[a] = acc
        acc *= shape[a]
    return st


def _offsets(shape: tuple[int, ...], perm: tuple[int, ...]) -> np.ndarray:
    phys = np.arange(math.prod(shape), dtype=np.int64).reshape([shape[a] for a in perm])
    return phys.transpose([perm.index(a) for a in range(len(shape))])


def _canon(n: int) -> tuple[int, ...]:
    return tuple(range(n))


def _channels_last(n: int) -> tuple[int, ...]:
    return tuple(range(1, n)) + (0,)


def _reshape_perm(in_shape, in_perm, out_shape) -> tuple[int, ...] | None:
    """Axis order of ``reshape(in, out_shape)`` stored in the same memory, or None if the
    reshape merges or splits axes that are not adjacent (in order) in ``in_perm``."""
    ia = [a for a in range(len(in_shape)) if in_shape[a] != 1]
    oa = [a for a in range(len(out_shape)) if out_shape[a] != 1]
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(ia) and j < len(oa):
        gi, gj = [ia[i]], [oa[j]]
        pi, pj = in_shape[ia[i]], out_shape[oa[j]]
        i += 1
        j += 1
        while pi != pj:
            if pi < pj:
                if i >= len(ia):
                    return None
                gi.append(ia[i])
                pi *= in_shape[ia[i]]
                i += 1
            else:
                if j >= len(oa):
                    return None
                gj.append(oa[j])
                pj *= out_shape[oa[j]]
                j += 1
        groups.append((gi, gj))
    if i != len(ia) or j != len(oa):
        return None
    phys = [a for a in in_perm if in_shape[a] != 1]
    first = {g[0][0]: g for g in groups}
    out_phys: list[int] = []
    pos = 0
    while pos < len(phys):
        g = first.get(phys[pos])
        if g is None or phys[pos:pos + len(g[0])] != g[0]:
            return None
        out_phys += g[1]
        pos += len(g[0])
    ones = [a for a in range(len(out_shape)) if out_shape[a] == 1]
    perm = tuple(ones + out_phys)
    # belt and braces: check the claim on small values
    if math.prod(out_shape) <= 1 << 16 and not np.array_equal(
            _offsets(tuple(in_shape), tuple(in_perm)).reshape(out_shape), _offsets(tuple(out_shape), perm)):
        return None
    return perm


@dataclass
class _Val:
    shape: tuple[int, ...]
    vb: int                                  # virtual buffer
    perm: tuple[int, ...] | None = None      # regular layout
    offs: np.ndarray | None = None           # irregular layout (canonical -> physical offset)
    bits: bool = False                       # packed sign rows (one per position) for binary consumers

    def offsets(self) -> np.ndarray:
        return self.offs if self.perm is None else _offsets(self.shape, self.perm)

    def strides(self) -> list[int]:
        assert self.perm is not None
        return _strides(self.shape, self.perm)


def _rows(val: _Val) -> tuple[int, int, int] | None:
    """For a (..., F) value: (rows, row stride, feature stride) if the leading axes collapse to
    one stride, else None."""
    st = val.strides()
    lead = [a for a in range(len(val.shape) - 1) if val.shape[a] != 1]
    for a, b in itertools.pairwise(lead):
        if st[a] != st[b] * val.shape[b]:
            return None
    rows = math.prod(val.shape[:-1])
    return rows, (st[lead[-1]] if lead else 0), st[-1]


# ---------------------------------------------------------------------------------------------
# bits
# ---------------------------------------------------------------------------------------------


def _unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """uint64 (..., words) -> uint8 bits (..., n), LSB-first (bit 1 = -1)."""
    b = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(b, axis=-1, count=n, bitorder="little")


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """uint8 bits (..., n) -> uint64 (..., ceil(n/64)) LSB-first, zero padding."""
    n = bits.shape[-1]
    nw = num_words(n)
    full = np.zeros(bits.shape[:-1] + (nw * 64,), np.uint8)
    full[..., :n] = bits
    return np.packbits(full, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def _block_weights(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """(O, K) words -> blocked [nb][K][8] (zero rows pad O to 8 * nb), and nb."""
    o, k = rows.shape
    nb = -(-o // 8)
    padded = np.zeros((nb * 8, k), np.uint64)
    padded[:o] = rows
    return np.ascontiguousarray(padded.reshape(nb, 8, k).transpose(0, 2, 1)).ravel(), nb


def _planes(op: dict) -> tuple[int, int]:
    """(weight planes P, input planes Q) of a binary op (artifact attrs; absent = 1)."""
    a = op["attrs"]
    return int(a.get("weight_planes", 1)), int(a.get("input_planes", 1))


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# the planner
# ---------------------------------------------------------------------------------------------


def _f32_keys(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys in the order of the floats (-0.0 and +0.0 share key 0)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.int64)
    return np.where(u >= 1 << 31, -(u - (1 << 31)), u)


def _f32_from_keys(k: np.ndarray) -> np.ndarray:
    u = np.where(k < 0, (-k) + (1 << 31), k).astype(np.uint32)
    return u.view(np.float32)


def _float_sign_thresholds(bias: np.ndarray, post: list[dict], o: int, opad: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The sign bit a float conv's epilogue packs for channel ``c``, ``(acc + bias_c -> post-ops) < 0``
    in float32, as an exact test on the raw sum ``acc``: ``acc < t_c`` (``flt`` -1) or ``acc >= t_c``.

    Each step (float32 add, multiply by a nonzero factor, add, PReLU with a positive slope, ReLU)
    is monotone, rounding included, so the bit is a monotone step function of ``acc`` over the
    extended floats; the switching point is found by bisection over the floats' order, evaluating
    the same float32 operations as the C epilogue. A NaN sum gives bit 0 in both forms, as in the
    epilogue (the engine rejects NaN inputs; overflow could still make one). Returns ``None``
    (keep the float epilogue) for any chain whose monotonicity is not certain."""
    f32 = np.float32
    bias = np.asarray(bias, f32)[:o]
    steps = []
    for p in post:
        pc = bool(p.get("per_channel"))
        a = np.asarray(p.get("a", [0.0]), f32)
        a = a[:o] if pc else np.full(o, a[0], f32)
        if p["kind"] == _P_AFFINE:
            b = np.asarray(p["b"], f32)
            b = b[:o] if pc else np.full(o, b[0], f32)
            if (a == 0).any():
                return None
            steps.append((_P_AFFINE, a, b))
        elif p["kind"] == _P_PRELU:
            if (a <= 0).any():
                return None
            steps.append((_P_PRELU, a, None))
        elif p["kind"] == _P_RELU:
            steps.append((_P_RELU, None, None))
        else:
            return None

    def bit(acc: np.ndarray) -> np.ndarray:  # acc: (o,) float32
        with np.errstate(all="ignore"):
            r = (acc + bias).astype(f32)
            for kind, a, b in steps:
                if kind == _P_AFFINE:
                    r = ((a * r).astype(f32) + b).astype(f32)
                elif kind == _P_PRELU:
                    r = np.where(r >= 0, r, (a * r).astype(f32)).astype(f32)
                else:
                    r = np.where(r > 0, r, f32(0)).astype(f32)
        return r < 0

    lo = np.full(o, _f32_keys(np.array([-np.inf], f32))[0])
    hi = np.full(o, _f32_keys(np.array([np.inf], f32))[0])
    b_lo, b_hi = bit(_f32_from_keys(lo)), bit(_f32_from_keys(hi))
    const = b_lo == b_hi
    # invariant: bit(lo) == b_lo, bit(hi) == b_hi; shrink to adjacent keys
    while True:
        open_ = ~const & (hi - lo > 1)
        if not open_.any():
            break
        mid = np.where(open_, lo + (hi - lo) // 2, lo)
        at = bit(_f32_from_keys(mid))
        move_hi = open_ & (at == b_hi)
        hi = np.where(move_hi, mid, hi)
        lo = np.where(open_ & ~move_hi, mid, lo)
    tau = np.full(opad, np.nan, f32)  # padding channels (never read) and constant 0: acc >= NaN
    flt = np.zeros(opad, np.int32)
    tau[:o] = np.where(const, np.where(b_lo, f32(-np.inf), f32(np.nan)), _f32_from_keys(hi))
    flt[:o] = np.where(~const & b_lo, -1, 0)
    # check: the test reproduces the epilogue at the switch, its neighbours, zeros and extremes
    probes = [hi - 1, hi, hi + 1, lo, np.zeros(o, np.int64), np.full(o, -1), np.full(o, 1)]
    for k in probes:
        k = np.clip(k, _f32_keys(np.array([-np.inf], f32))[0], _f32_keys(np.array([np.inf], f32))[0])
        acc = _f32_from_keys(k)
        want = bit(acc)
        t = tau[:o]
        with np.errstate(invalid="ignore"):
            got = np.where(flt[:o] != 0, acc < t, acc >= t)
        if (got != want).any():
            return None
    return tau, flt


@dataclass
class _COp:
    fields: dict[str, Any]
    in_vb: int
    out_vb: int
    reads: list[int]                 # every vb read (in, add operands)
    inplace: list[int]               # vbs whose slot the output may take
    vidx: int                        # view position the time is attributed to
    post_vbs: list[int] = field(default_factory=list)  # vb per post-op (-1: none)
    geom: tuple | None = None        # element-wise chains: (shape, perm) of the value


class _Planner:
    def __init__(self, art: Artifact, view: str) -> None:
        self.art = art
        self.ops = art.view_ops(view)
        self.shapes = art.shapes[view]
        self.output = art.views[view]["output"]
        self.uses: dict[str, int] = {}
        for op in self.ops:
            for v in op["inputs"]:
                self.uses[v] = self.uses.get(v, 0) + 1
        self.uses[self.output] = self.uses.get(self.output, 0) + 1
        self.vb_floats: list[int] = [math.prod(art.input_shape)]
        self.vals: dict[str, _Val] = {"input": _Val(tuple(art.input_shape), 0, _canon(len(art.input_shape)))}
        self.cops: list[_COp] = []
        self.macs = [0] * len(self.ops)
        self.pref = self._preferences()
        self.ishift: dict[str, np.ndarray] = {}  # folded input shifts (_fold_input_shift)

    # -- helpers ------------------------------------------------------------------------------

    def _t(self, op: dict, role: str) -> np.ndarray | None:
        name = op["tensors"].get(role)
        return None if name is None else self.art.tensors[name]

    def _output_transform(self, op: dict) -> dict[str, np.ndarray]:
        """A binary op's epilogue: the float transform, or (artifact v2) a sign threshold."""
        thr = self._t(op, "threshold")
        if thr is not None:
            return {"thr": np.ascontiguousarray(thr, dtype=np.int32)}
        return {"mult": _f32(self._t(op, "multiplier")), "offs": _f32(self._t(op, "offset"))}

    def _plane_fields(self, op: dict, npw: int, npi: int, o: int) -> dict[str, Any]:
        """A multi-plane op's scales in float64: a_q (``iscale``, [1] for one input plane) and
        t_{p,o} (``wscale`` (P, O), ones for one weight plane)."""
        if "threshold" in op["tensors"]:
            raise ArtifactError(f"op {op.get('name', op['op'])!r}: a sign threshold with several planes")
        isc = self._t(op, "input_scales") if npi > 1 else np.ones(1)
        wsc = self._t(op, "weight_scales") if npw > 1 else np.ones((1, o))
        return {"wplanes": npw, "iplanes": npi,
                "iscale": np.ascontiguousarray(np.asarray(isc, np.float64).reshape(npi)),
                "wscale": np.ascontiguousarray(np.asarray(wsc, np.float64).reshape(npw * o))}

    def _maybe_bits_out(self, fields: dict, out_name: str, out: _Val, feature_last: bool, positions: int) -> None:
        """A sign-threshold op whose every consumer is a direct binary op packing along the same
        axis writes packed rows instead of +-1 floats (the consumer skips its packing)."""
        if "thr" not in fields or out_name == self.output:
            return
        consumers = [op for op in self.ops if out_name in op["inputs"]]
        if not consumers:
            return
        for op in consumers:
            a = op["attrs"]
            if _planes(op) != (1, 1):
                return  # a multi-plane consumer decomposes float values
            if feature_last:
                ok = op["op"] == "blinear"
            else:
                ok = (op["op"] in ("bconv1d", "bconv2d") and all(k == 1 for k in a["kernel_size"])
                      and all(v == 1 for v in a["stride"]) and not any(x for p in a["padding"] for x in p))
            if not ok:
                return
        owords = num_words(fields["O"])
        fields.update(bits_out=1, owords=owords)
        out.perm = None
        out.bits = True
        self.vb_floats[out.vb] = max(self.vb_floats[out.vb], positions * owords * 2)

    def _fp_bits(self, pos: int, name: str) -> bool:
        """Let the float conv that produced ``name`` (channels-last, its channels a multiple of
        16, no ADD post-op) write the packed sign rows of this single-plane rowmode binary conv
        (its only reader): the epilogue computes the same float values (post-ops included) and
        packs them with the variant's packer, so the bits are those the consumer would pack.
        Row i of the value: W * C bits at word i * W * C / 64. Returns True when flagged."""
        val = self.vals[name]
        if val.perm is None or val.bits or name == self.output or len(val.shape) != 3:
            return False
        c, h, wd = val.shape
        if c % 16 or c % 64 == 0 or (wd * c) % 64:
            return False
        prod = next((x for x in reversed(self.cops) if x.out_vb == val.vb), None)
        if prod is None:
            return False
        f = prod.fields
        if (f["kind"] != _CONV_FP or f.get("bits_out") or f["groups"] != 1 or f["O"] != c
                or (f["Ho"], f["Wo"]) != (h, wd) or (f["out_so"], f["out_sw"], f["out_sh"]) != (1, c, wd * c)
                or any(p["kind"] not in (_P_AFFINE, _P_PRELU, _P_RELU) for p in f.get("post", []))
                or any(v >= 0 for v in prod.post_vbs)):
            return False
        names = {n for n, v in self.vals.items() if v.vb == val.vb}
        if self.output in names:
            return False
        for j, o2 in enumerate(self.ops):  # fused post-ops write the same buffer
            if j != pos and any(i in names for i in o2["inputs"]) and o2["outputs"][0] not in names:
                return False
        if self.ops[pos]["inputs"].count(name) != 1 or any(x is not prod and val.vb in x.reads for x in self.cops):
            return False
        f["bits_out"] = 1
        thr = _float_sign_thresholds(f["bias"], f.get("post", []), c, f["opad"])
        if thr is not None:
            f["fthr"], f["flt"] = thr
        self.vals[name] = _Val(val.shape, val.vb, None, None, True)
        return True

    def _bits_map(self, pos: int, name: str, shift: np.ndarray | None = None) -> bool:
        """Let the single-plane float-transform binary conv that produced ``name`` (through
        element-wise post-ops and free reshapes / transposes only feeding this blinear) write the
        blinear's packed input rows itself: every output's sign is an exact function of its
        integer count, found by evaluating the op's float transform and post-ops (the same float32
        operations as the C epilogue) on every count a pattern can reach; it must be a threshold
        (count > cthr, or its negation: then the bit is inverted). Any other case (an ADD post-op,
        a sign that is not monotone in the count, e.g. a negative PReLU slope, other readers)
        keeps the float path. ``shift``: the blinear's folded input shift (``_fold_input_shift``),
        one offset per input feature, added in float32 after the post-ops; each (row, feature)
        then gets its own threshold. Returns True when the rows are packed by the producer."""
        val = self.vals[name]
        if val.perm is None or val.bits or name == self.output or math.prod(val.shape) > 1 << 22:
            return False
        r = _rows(val)
        if r is None:
            return False
        rows, rs, fs = r
        feats = val.shape[-1]
        prod = next((c for c in reversed(self.cops) if c.out_vb == val.vb), None)
        if prod is None:
            return False
        f = prod.fields
        if (f["kind"] != _BCONV or "thr" in f or f.get("bits_out") or f.get("gsrc") is not None
                or "nvalid" not in f or any(v >= 0 for v in prod.post_vbs)):
            return False
        names = {n for n, v in self.vals.items() if v.vb == val.vb}
        if self.output in names:
            return False
        for j, o2 in enumerate(self.ops):
            if j != pos and any(i in names for i in o2["inputs"]) and o2["outputs"][0] not in names:
                return False
        if self.ops[pos]["inputs"].count(name) != 1 or any(c is not prod and val.vb in c.reads for c in self.cops):
            return False
        o, ho, wo, ldc = f["O"], f["Ho"], f["Wo"], f["nb"] * 8
        nvalid = f["nvalid"]
        ys = []  # per pattern: (o, n + 1) float32 values after the post-ops
        base = f["base"].reshape(len(nvalid), ldc).astype(np.int64)
        m, b = f["mult"], f["offs"]
        # per (pattern, channel): bit(count) for count = pcpad + j, j in [0, n]; n = C * valid taps
        cthr = np.empty((len(nvalid), o), np.int64)
        inv = np.zeros(o, bool)
        fixed = np.zeros(o, bool)
        ones = np.zeros((len(nvalid), o), np.int64)
        for k, n in enumerate(nvalid):
            d = (n - 2 * np.arange(n + 1)).astype(np.float32)
            y = m[:, None] * d[None, :] + b[:, None]
            for post in f.get("post", []):
                a = post.get("a")
                pa = (a[:, None] if post.get("per_channel") else a[0]) if a is not None else None
                if post["kind"] == _P_PRELU:
                    y = np.where(y >= 0, y, (pa * y).astype(np.float32))
                elif post["kind"] == _P_AFFINE:
                    y = (pa * y).astype(np.float32) + (post["b"][:, None] if post.get("per_channel") else post["b"][0])
                elif post["kind"] == _P_RELU:
                    y = np.where(y > 0, y, np.float32(0))
                else:
                    return False
                y = y.astype(np.float32)
            ys.append(y)
            if shift is not None:
                continue  # thresholds per (row, feature) below
            bits = (y < 0).astype(np.int8)
            step = np.diff(bits, axis=1)
            up, down = (step >= 0).all(1), (step <= 0).all(1)
            const = up & down
            if not (up | down).all() or (fixed & ~const & (inv != down)).any():
                return False
            new = ~const & ~fixed
            inv[new] = down[new]
            fixed |= ~const
            ones[k] = bits.sum(1)
        if shift is None:
            for k, n in enumerate(nvalid):
                pcpad = (base[k, :o] - n) // 2  # the count of the padded taps' weight bits
                # bit = count > pcpad + n - ones, or inverted: bit = !(count > pcpad + ones - 1)
                # (a constant channel fits either form)
                cthr[k] = np.where(inv, pcpad + ones[k] - 1, pcpad + n - ones[k])
        # the consumer's (row, feature) -> the producer's (position, channel)
        oo, yy, xx = np.meshgrid(np.arange(o), np.arange(ho), np.arange(wo), indexing="ij")
        offs = (oo * f["out_so"] + yy * f["out_sh"] + xx * f["out_sw"]).ravel()
        src_of = np.full(int(offs.max()) + 1, -1, np.int64)
        src_of[offs] = ((yy * wo + xx) * ldc + oo).ravel()
        phys = (np.arange(rows)[:, None] * rs + np.arange(feats)[None, :] * fs).ravel()
        if phys.max() >= src_of.size or (src_of[phys] < 0).any():
            return False
        src = src_of[phys]
        p_, c_ = src // ldc, src % ldc
        pat = f["pat"][p_] if f["pat"] is not None else np.zeros_like(p_)
        owords = num_words(feats)
        gsrc = np.zeros((rows, owords * 64), np.int32)
        gthr = np.full((rows, owords * 64), np.iinfo(np.int32).max, np.int64)
        ginv = np.zeros((rows, owords * 64), np.uint8)
        gsrc[:, :feats] = src.reshape(rows, feats)
        if shift is None:
            ethr, einv = cthr[pat, c_], inv[c_]
        else:  # each (row, feature): bit = fl(y + shift) < 0, a threshold in the count as above
            ethr, einv = np.empty(rows * feats, np.int64), np.zeros(rows * feats, bool)
            sh = np.tile(_f32(shift[:feats]), rows)
            for k, n in enumerate(nvalid):
                sel = np.flatnonzero(pat == k)
                if not sel.size:
                    continue
                bits = ((ys[k][c_[sel]] + sh[sel, None]) < 0).astype(np.int8)  # float32 addition
                step = np.diff(bits, axis=1)
                up, down = (step >= 0).all(1), (step <= 0).all(1)
                if not (up | down).all():
                    return False
                ones_e = bits.sum(1)
                pcpad = (base[k, c_[sel]] - n) // 2
                einv[sel] = down & ~(up & down)
                ethr[sel] = np.where(einv[sel], pcpad + ones_e - 1, pcpad + n - ones_e)
        gthr[:, :feats] = np.clip(ethr, -1, np.iinfo(np.int32).max).reshape(rows, feats)
        ginv[:, :feats] = einv.reshape(rows, feats)
        f.update(bits_out=1, owords=owords, grows=rows, gsrc=np.ascontiguousarray(gsrc.ravel()),
                 gthr=np.ascontiguousarray(gthr.astype(np.int32).ravel()),
                 ginv=np.packbits(ginv, axis=-1, bitorder="little").view("<u8").astype(np.uint64).ravel(),
                 post=[])
        if feats == 8 * o and ldc == o and feats % 64 == 0:
            # byte c of row r = channel c at 8 positions (bit j): the AVX-512 transposing epilogue
            pos8, ch8 = p_.reshape(rows, o, 8), c_.reshape(rows, o, 8)
            if (ch8 == np.arange(o)[None, :, None]).all() and (pos8 == pos8[:, :1, :]).all():
                f.update(tpos=np.ascontiguousarray(pos8[:, 0, :].astype(np.int32).ravel()),
                         tthr=np.ascontiguousarray(
                             gthr[:, :feats].reshape(rows, o, 8).transpose(0, 2, 1).astype(np.int32).ravel()))
        prod.post_vbs = []
        self.vb_floats[val.vb] = max(self.vb_floats[val.vb], rows * owords * 2)
        self.vals[name] = _Val(val.shape, val.vb, None, None, True)
        return True

    def _new_vb(self, shape: tuple[int, ...]) -> int:
        self.vb_floats.append(max(1, math.prod(shape)))
        return len(self.vb_floats) - 1

    def _preferences(self) -> dict[str, tuple[int, ...]]:
        pref: dict[str, tuple[int, ...]] = {}

        def put(v: str, perm) -> None:
            if perm is not None and v not in pref:
                pref[v] = tuple(perm)

        for op in reversed(self.ops):
            kind, ins, out = op["op"], op["inputs"], op["outputs"][0]
            if kind in ("bconv1d", "bconv2d", "bdwconv1d", "bdwconv2d"):
                put(ins[0], _channels_last(len(self.shapes[ins[0]])))
            elif kind == "blinear":
                put(ins[0], _canon(len(self.shapes[ins[0]])))
            elif kind in _ELEMENTWISE:
                for v in ins:
                    put(v, pref.get(out))
            elif kind == "transpose" and out in pref:
                p = op["attrs"]["perm"]
                put(ins[0], [p[q] for q in pref[out]])
            elif kind in ("reshape", "flatten") and out in pref:
                put(ins[0], _reshape_perm(self.shapes[out], pref[out], self.shapes[ins[0]]))
        return pref

    def _materialize(self, name: str, perm: tuple[int, ...] | None, vidx: int) -> _Val:
        """A regular copy of value ``name`` in axis order ``perm`` (canonical if None)."""
        val = self.vals[name]
        perm = perm or _canon(len(val.shape))
        if val.perm == perm:
            return val
        new = _Val(val.shape, self._new_vb(val.shape), perm)
        idx = np.empty(math.prod(val.shape), np.int32)
        idx[new.offsets().ravel()] = val.offsets().ravel()
        self.cops.append(_COp({"kind": _GATHER, "idx": idx, "n": idx.size}, val.vb, new.vb, [val.vb], [], vidx))
        self.vals[name] = new
        return new

    def _regular(self, name: str, vidx: int, want: tuple[int, ...] | None = None) -> _Val:
        val = self.vals[name]
        if val.perm is None:
            return self._materialize(name, want, vidx)
        return val

    def _out_layout(self, name: str, linear: bool) -> tuple[int, ...]:
        n = len(self.shapes[name])
        p = self.pref.get(name)
        if linear:
            if p is not None and p[-1] == n - 1 and _rows(_Val(self.shapes[name], 0, p)) is not None:
                return p
            return _canon(n)
        return p if p is not None else _channels_last(n)

    def _rows_input(self, name: str, vidx: int) -> tuple[_Val, int, int, int]:
        val = self._regular(name, vidx)
        r = _rows(val)
        if r is None:
            val = self._materialize(name, None, vidx)
            r = _rows(val)
        return (val, *r)

    # -- fusion ---------------------------------------------------------------------------------

    def _absorb(self, cop: _COp, nxt: dict, value: str, out: _Val, chan_axis: int | None) -> tuple[bool, int | None]:
        """Append element-wise op ``nxt`` (reading ``value``) to ``cop``'s post-ops if it fits."""
        kind = nxt["op"]
        vb = -1
        if kind in ("affine", "prelu"):
            ax = nxt["attrs"]["axis"]
            if kind == "affine":
                post = {"kind": _P_AFFINE, "a": _f32(self._t(nxt, "multiplier")), "b": _f32(self._t(nxt, "offset")),
                        "per_channel": 1}
            else:
                slope = _f32(self._t(nxt, "slope"))
                post = {"kind": _P_PRELU, "a": slope, "per_channel": int(slope.size > 1)}
            if post["per_channel"]:
                if chan_axis is None:
                    if cop.fields["kind"] != _EPI:
                        return False, chan_axis
                    chan_axis = ax
                    cop.fields["axis"] = ax
                elif ax != chan_axis:
                    return False, chan_axis
        elif kind == "relu":
            post = {"kind": _P_RELU}
        elif kind == "silu":
            post = {"kind": _P_SILU}
        else:  # add
            a, b = nxt["inputs"]
            other = b if a == value else a
            oval = self.vals[other]
            if oval.perm is None or oval.perm != out.perm or self.shapes[a] != self.shapes[b]:
                return False, chan_axis  # a broadcasting add lowers on its own (_lower_badd)
            post = {"kind": _P_ADD}
            vb = oval.vb
            cop.reads.append(vb)
            cop.inplace.append(vb)
        cop.fields.setdefault("post", []).append(post)
        cop.post_vbs.append(vb)
        self.vals[nxt["outputs"][0]] = out
        return True, chan_axis

    def _fuse(self, pos: int, cop: _COp, value: str, out: _Val, chan_axis: int | None) -> int:
        """Absorb the element-wise ops that directly follow position ``pos`` and consume the only
        use of the chain's value; returns the last absorbed position."""
        while pos + 1 < len(self.ops) and len(cop.fields.get("post", [])) < _MAX_POST:
            nxt = self.ops[pos + 1]
            if nxt["op"] not in _ELEMENTWISE or value not in nxt["inputs"] or self.uses.get(value, 0) != 1:
                break
            ok, chan_axis = self._absorb(cop, nxt, value, out, chan_axis)
            if not ok:
                break
            pos += 1
            value = nxt["outputs"][0]
        return pos

    # -- lowering -------------------------------------------------------------------------------

    def plan(self) -> None:
        pos = 0
        while pos < len(self.ops):
            pos = self._lower(pos) + 1
        out = self.vals[self.output]
        if out.perm is None or out.perm != _canon(len(out.shape)):
            self._materialize(self.output, None, len(self.ops) - 1)

    def _lower(self, pos: int) -> int:
        op = self.ops[pos]
        kind = op["op"]
        ins, out = op["inputs"], op["outputs"][0]
        if kind == "transpose":
            val = self.vals[ins[0]]
            p = op["attrs"]["perm"]
            if val.perm is not None:
                self.vals[out] = _Val(self.shapes[out], val.vb, tuple(p.index(a) for a in val.perm))
            else:
                self.vals[out] = _Val(self.shapes[out], val.vb, None, val.offs.transpose(p))
            return pos
        if kind in ("reshape", "flatten"):
            val = self.vals[ins[0]]
            shape = self.shapes[out]
            perm = _reshape_perm(val.shape, val.perm, shape) if val.perm is not None else None
            if perm is not None:
                self.vals[out] = _Val(shape, val.vb, perm)
            else:
                self.vals[out] = _Val(shape, val.vb, None, val.offsets().reshape(shape))
            return pos
        if kind in _ELEMENTWISE:
            return self._lower_epi(pos)
        if kind in ("conv1d_fp", "conv2d_fp"):
            return self._lower_conv_fp(pos)
        if kind == "linear_fp":
            return self._lower_linear_fp(pos)
        if kind in ("bconv1d", "bconv2d", "blinear"):
            return self._lower_bconv(pos)
        if kind == "bdwconv1d":
            return self._lower_bdw(pos)
        if kind == "bdwconv2d":
            return self._lower_bdw2(pos)
        if kind == "avgpool2d":
            return self._lower_avgpool(pos)
        if kind == "mean":
            return self._lower_mean(pos)
        raise ArtifactError(f"op {kind!r} is not supported by the neon engine")  # pragma: no cover

    def _emit(self, pos: int, fields: dict, in_val: _Val, out_name: str, out_val: _Val, inplace: bool,
              chan_axis: int | None) -> int:
        cop = _COp(fields, in_val.vb, out_val.vb, [in_val.vb], [in_val.vb] if inplace else [], pos)
        self.cops.append(cop)
        self.vals[out_name] = out_val
        return self._fuse(pos, cop, out_name, out_val, chan_axis)

    def _fold_input_shift(self, pos: int) -> bool:
        """Leave the ``affine`` at ``pos`` to its only reader when its multiplier is 1 and that
        reader is a one-plane binary conv / linear / depthwise conv (1-D or 2-D) packing along the
        affine's axis: the reader adds the offset (``ishift``) while it packs, the same float
        addition the affine did, so the bits are the same and the affine's pass over memory is
        gone. That is ReActNet's RSign shift in front of a layer whose input also feeds a skip
        connection, which no producer can absorb. Returns True when folded (the value then
        aliases the affine's input; the reader finds its offsets in ``self.ishift``)."""
        op = self.ops[pos]
        x, name = op["inputs"][0], op["outputs"][0]
        if name == self.output or self.uses.get(name, 0) != 1:
            return False
        reader = next(o for o in self.ops if name in o["inputs"])
        kind = reader["op"]
        if kind not in ("bconv1d", "bconv2d", "blinear", "bdwconv1d", "bdwconv2d") or _planes(reader) != (1, 1):
            return False
        shape = self.shapes[x]
        axis = len(shape) - 1 if kind == "blinear" else 0
        val = self.vals[x]
        if op["attrs"]["axis"] != axis or val.bits or reader["inputs"][0] != name:
            return False
        c = shape[axis]
        mult, offs = _f32(self._t(op, "multiplier")).reshape(-1), _f32(self._t(op, "offset")).reshape(-1)
        if mult.size not in (1, c) or offs.size not in (1, c) or not (mult == 1).all():
            return False
        shift = np.zeros(-(-c // 64) * 64, np.float32)  # read in whole words (BDW: up to opad)
        shift[:c] = np.broadcast_to(offs, (c,))
        self.ishift[name] = shift
        self.vals[name] = val
        return True

    def _lower_epi(self, pos: int) -> int:
        op = self.ops[pos]
        ins, out_name = op["inputs"], op["outputs"][0]
        if op["op"] == "affine" and self._fold_input_shift(pos):
            return pos
        if op["op"] == "add" and self.shapes[ins[0]] != self.shapes[ins[1]]:
            return self._lower_badd(pos)
        val = self._regular(ins[0], pos)
        if op["op"] == "add" and self.vals[ins[1]].perm != val.perm:
            self._materialize(ins[1], val.perm, pos)
        out = _Val(val.shape, self._new_vb(val.shape), val.perm)
        cop = _COp({"kind": _EPI, "post": []}, val.vb, out.vb, [val.vb], [val.vb], pos, geom=(val.shape, val.perm))
        self.cops.append(cop)
        if op["op"] == "add":
            oval = self.vals[ins[1]]
            cop.fields["post"].append({"kind": _P_ADD})
            cop.post_vbs.append(oval.vb)
            cop.reads.append(oval.vb)
            cop.inplace.append(oval.vb)
            self.vals[out_name] = out
        else:
            ok, _ = self._absorb(cop, op, ins[0], out, None)
            assert ok, "a unary element-wise op always lowers to an element-wise chain"
        return self._fuse(pos, cop, out_name, out, cop.fields.get("axis"))

    def _lower_conv_fp(self, pos: int) -> int:
        op = self.ops[pos]
        nd = 2 if op["op"] == "conv2d_fp" else 1
        a = op["attrs"]
        val = self._regular(op["inputs"][0], pos)
        st = val.strides()
        shape = val.shape
        w = self._t(op, "weight").astype(np.float32)
        o, cg = w.shape[:2]
        ks = list(w.shape[2:])
        g = a["groups"]
        og = o // g
        if nd == 1:
            c, h, wd = shape[0], 1, shape[1]
            sc, sh_, sw_ = st[0], 0, st[1]
            kh, kw = 1, ks[0]
            (s_h, s_w), (d_h, d_w) = (1, a["stride"][0]), (1, a["dilation"][0])
            (pt, pb), (pl, pr) = (0, 0), a["padding"][0]
        else:
            c, h, wd = shape
            sc, sh_, sw_ = st
            kh, kw = ks
            (s_h, s_w), (d_h, d_w) = a["stride"], a["dilation"]
            (pt, pb), (pl, pr) = a["padding"]
        out_name = op["outputs"][0]
        oshape = self.shapes[out_name]
        out = _Val(oshape, self._new_vb(oshape), self._out_layout(out_name, False))
        ost = out.strides()
        ho, wo = (1, oshape[1]) if nd == 1 else oshape[1:]
        osh, osw = (0, ost[1]) if nd == 1 else (ost[1], ost[2])
        opad = -(-og // 16) * 16
        wt = np.zeros((g, cg * kh * kw, opad), np.float32)
        wt[:, :, :og] = w.reshape(g, og, cg * kh * kw).transpose(0, 2, 1)
        bias = self._t(op, "bias")
        staged = int(bool(pt or pb or pl or pr or a["input_sign"]))
        fields = dict(kind=_CONV_FP, C=c, H=h, W=wd, in_sc=sc, in_sh=sh_, in_sw=sw_, O=o, Ho=ho, Wo=wo,  # noqa: C408 (mirrors the C struct)
                      out_so=ost[0], out_sh=osh, out_sw=osw, kh=kh, kw=kw, sh=s_h, sw=s_w, dh=d_h, dw=d_w,
                      pt=pt, pb=pb, pl=pl, pr=pr, groups=g, input_sign=int(a["input_sign"]), staged=staged,
                      opad=opad, wf=wt.ravel(), bias=_f32(bias if bias is not None else np.zeros(o, np.float32)))
        return self._emit(pos, fields, val, out_name, out, bool(staged), 0)

    def _lower_linear_fp(self, pos: int) -> int:
        op = self.ops[pos]
        name = op["inputs"][0]
        w = self._t(op, "weight").astype(np.float32)  # (O, I)
        o, i = w.shape
        val = self.vals[name]
        if val.perm is None and len(val.shape) == 1:
            # absorb the layout into the weight columns: x_canonical[i] = buf[offs[i]]
            wp = np.zeros_like(w)
            wp[:, val.offs.ravel()] = w
            w = wp
            rows, rs, fs = 1, 0, 1
        else:
            val, rows, rs, fs = self._rows_input(name, pos)
        out_name = op["outputs"][0]
        oshape = self.shapes[out_name]
        out = _Val(oshape, self._new_vb(oshape), self._out_layout(out_name, True))
        _, ors, ofs = _rows(out)
        opad = -(-o // 16) * 16
        sign = int(op["attrs"]["input_sign"])
        ivec = int(rows == 1 and (fs == 1 or bool(sign)))  # one row: vectorised over the inputs
        if ivec:
            wt = np.zeros((opad, -(-i // 16) * 16), np.float32)
            wt[:o, :i] = w
        else:
            wt = np.zeros((i, opad), np.float32)
            wt[:, :o] = w.T
        bias = self._t(op, "bias")
        fields = dict(kind=_CONV_FP, C=i, H=1, W=rows, in_sc=fs, in_sh=0, in_sw=rs, O=o, Ho=1, Wo=rows,  # noqa: C408
                      out_so=ofs, out_sh=0, out_sw=ors, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, groups=1,
                      input_sign=sign, staged=sign, opad=opad, wf=wt.ravel(), ivec=ivec,
                      bias=_f32(bias if bias is not None else np.zeros(o, np.float32)))
        return self._emit(pos, fields, val, out_name, out, bool(sign), len(oshape) - 1)

    def _lower_bconv(self, pos: int) -> int:
        op = self.ops[pos]
        kind = op["op"]
        a = op["attrs"]
        name = op["inputs"][0]
        npw, npi = _planes(op)
        planes = [self._t(op, "weight")[p] for p in range(npw)] if npw > 1 else [self._t(op, "weight")]
        weight = planes[0]
        o = weight.shape[0]
        out_name = op["outputs"][0]
        oshape = self.shapes[out_name]
        a_k, a_d = a.get("kernel_size", (1,)), a.get("dilation", (1,))
        ishift = self.ishift.get(name)  # a folded input shift: this op packs the float input itself
        fpbits = (ishift is None and kind == "bconv2d" and npw * npi == 1 and a_d[-1] == 1 and a_k[-1] > 1
                  and self._fp_bits(pos, name))  # dense packed rows for a rowmode im2col
        prepacked = fpbits or (ishift is None and self.vals[name].bits) or (
            kind == "blinear" and npw * npi == 1 and self._bits_map(pos, name, ishift))
        if prepacked:
            ishift = None  # the producer's thresholds include it (_bits_map)
        assert not (prepacked and npw * npi > 1), "multi-plane ops never take packed rows"
        if kind == "blinear":
            c = a["in_features"]
            if prepacked:
                val, rows, rs, fs = self.vals[name], math.prod(self.vals[name].shape[:-1]), 0, 0
            else:
                val, rows, rs, fs = self._rows_input(name, pos)
            h, wd, sc, sh_, sw_ = 1, rows, fs, 0, rs
            kh = kw = s_h = s_w = d_h = d_w = 1
            pt = pb = pl = pr = 0
            out = _Val(oshape, self._new_vb(oshape), self._out_layout(out_name, True))
            _, ors, ofs = _rows(out)
            ho, wo, oso, osh, osw = 1, rows, ofs, 0, ors
            chan_axis = len(oshape) - 1
            wtaps = weight.reshape(o, 1, 1, -1)
        else:
            val = self.vals[name] if prepacked else self._regular(name, pos, _channels_last(len(self.shapes[name])))
            st = [0] * len(val.shape) if prepacked else val.strides()
            out = _Val(oshape, self._new_vb(oshape), self._out_layout(out_name, False))
            ost = out.strides()
            if kind == "bconv1d":
                c, wd = val.shape
                h, sc, sh_, sw_ = 1, st[0], 0, st[1]
                kh, kw, s_h, s_w, d_h, d_w = 1, a["kernel_size"][0], 1, a["stride"][0], 1, a["dilation"][0]
                (pt, pb), (pl, pr) = (0, 0), a["padding"][0]
                ho, wo, oso, osh, osw = 1, oshape[1], ost[0], 0, ost[1]
                wtaps = weight.reshape(o, 1, kw, -1)
            else:
                c, h, wd = val.shape
                sc, sh_, sw_ = st
                (kh, kw), (s_h, s_w), (d_h, d_w) = a["kernel_size"], a["stride"], a["dilation"]
                (pt, pb), (pl, pr) = a["padding"]
                ho, wo = oshape[1:]
                oso, osh, osw = ost
                wtaps = weight
            chan_axis = 0
        words = num_words(c)
        taps = kh * kw
        direct = int(taps == 1 and s_h == 1 and s_w == 1 and not (pt or pb or pl or pr))
        # dense bit rows for the im2col when channels do not fill words and taps along a row are
        # adjacent: one bit window per kernel row instead of one append per tap
        rowmode = int(not direct and c % 64 != 0 and d_w == 1 and kw > 1)
        assert direct or not prepacked or (fpbits and rowmode), "packed rows only feed direct binary ops"
        rwords = num_words((wd + pl + pr) * c) + 1 if rowmode else 0
        vy = [tuple(0 <= oy * s_h + ky * d_h - pt < h for ky in range(kh)) for oy in range(ho)]
        vx = [tuple(0 <= ox * s_w + kx * d_w - pl < wd for kx in range(kw)) for ox in range(wo)]
        keys: dict[tuple, int] = {}
        pat = np.empty(ho * wo, np.int32)
        for oy in range(ho):
            for ox in range(wo):
                pat[oy * wo + ox] = keys.setdefault((vy[oy], vx[ox]), len(keys))
        wbs, bases = [], []
        for wplane in planes:
            wtaps = wplane.reshape(wtaps.shape)
            if direct:
                rows_w = np.ascontiguousarray(wtaps.reshape(o, words))
            else:
                bits = _unpack_bits(wtaps, c).reshape(o, taps * c)  # dense receptive field
                rows_w = _pack_bits(bits)
            kwords = rows_w.shape[1]
            wb, nb = _block_weights(rows_w)
            # exact zero padding: base[pattern][o] = C * valid taps + 2 * popcount(weights of padded taps)
            pc = np.bitwise_count(wtaps).sum(-1).astype(np.int64) if hasattr(np, "bitwise_count") else \
                _unpack_bits(wtaps, c).sum(-1).astype(np.int64)  # (O, kh, kw)
            base = np.zeros((len(keys), nb * 8), np.int32)
            for (ry, rx), k in keys.items():
                mask = np.outer(ry, rx)
                base[k, :o] = c * int(mask.sum()) + 2 * pc[:, ~mask].sum(-1)
            wbs.append(wb)
            bases.append(base.ravel())
        macs = 0
        counts = np.bincount(pat, minlength=len(keys))
        for (ry, rx), k in keys.items():
            macs += int(counts[k]) * c * int(np.outer(ry, rx).sum()) * o
        self.macs[pos] = macs * npw * npi
        if npw * npi > 1:
            fields = dict(kind=_MBCONV, C=c, H=h, W=wd, in_sc=sc, in_sh=sh_, in_sw=sw_, O=o, Ho=ho, Wo=wo,
                          out_so=oso, out_sh=osh, out_sw=osw, kh=kh, kw=kw, sh=s_h, sw=s_w, dh=d_h, dw=d_w,
                          pt=pt, pb=pb, pl=pl, pr=pr, groups=1, direct=direct, words=words, kwords=kwords,
                          nb=nb, rowmode=rowmode, rwords=rwords, wb=np.concatenate(wbs),
                          base=np.concatenate(bases), pat=pat if len(keys) > 1 else None,
                          wb_plane=wbs[0].size, base_plane=bases[0].size,
                          **self._plane_fields(op, npw, npi, o), **self._output_transform(op))
            return self._emit(pos, fields, val, out_name, out, True, chan_axis)
        base = bases[0].reshape(len(keys), nb * 8)
        fields = dict(kind=_BCONV, C=c, H=h, W=wd, in_sc=sc, in_sh=sh_, in_sw=sw_, O=o, Ho=ho, Wo=wo,
                      out_so=oso, out_sh=osh, out_sw=osw, kh=kh, kw=kw, sh=s_h, sw=s_w, dh=d_h, dw=d_w,
                      pt=pt, pb=pb, pl=pl, pr=pr, groups=1, direct=direct, prepacked=int(prepacked),
                      words=words, kwords=kwords, nb=nb, rowmode=rowmode, rwords=rwords,
                      wb=wb, base=base.ravel(), pat=pat if len(keys) > 1 else None,
                      nvalid=np.array([c * int(np.outer(ry, rx).sum()) for (ry, rx) in keys], np.int64),
                      ishift=ishift, **self._output_transform(op))
        self._maybe_bits_out(fields, out_name, out, kind == "blinear", ho * wo)
        if fields.get("bits_out"):
            # count thresholds: bit 1 (x < 0) iff dot < thr iff count > floor((base - thr) / 2)
            cthr = np.full((len(keys), nb * 8), np.iinfo(np.int32).max, np.int64)
            cthr[:, :o] = (base[:, :o].astype(np.int64) - fields["thr"].astype(np.int64)) // 2
            cthr = np.clip(cthr, -1, np.iinfo(np.int32).max)  # counts are >= 0
            fields["cthr"] = np.ascontiguousarray(cthr.astype(np.int32).ravel())
        return self._emit(pos, fields, val, out_name, out, True, chan_axis)

    def _lower_bdw(self, pos: int) -> int:
        op = self.ops[pos]
        a = op["attrs"]
        name = op["inputs"][0]
        val = self._regular(name, pos, _channels_last(2))
        st = val.strides()
        c, t = val.shape
        (k,), (s,), (d,), ((pl, pr),) = a["kernel_size"], a["stride"], a["dilation"], a["padding"]
        cp = -(-c // 64) * 64
        npw, npi = _planes(op)
        weight = self._t(op, "weight")
        if npw == 1:
            weight = weight[None]
        wm = np.zeros((npw, k, cp), np.uint32)  # float sign-bit masks: bit 1 (= -1) -> 0x80000000
        wm[:, :, :c] = _unpack_bits(weight, c).astype(np.uint32) << np.uint32(31)
        out_name = op["outputs"][0]
        oshape = self.shapes[out_name]
        out = _Val(oshape, self._new_vb(oshape), self._out_layout(out_name, False))
        ost = out.strides()
        to = oshape[1]
        self.macs[pos] = c * sum(sum(0 <= tt * s + j * d - pl < t for j in range(k)) for tt in range(to)) * npw * npi
        if npw * npi > 1:
            fields = dict(kind=_MBDW, C=c, H=1, W=t, in_sc=st[0], in_sh=0, in_sw=st[1], O=c, Ho=1, Wo=to,
                          out_so=ost[0], out_sh=0, out_sw=ost[1], kh=1, kw=k, sh=1, sw=s, dh=1, dw=d,
                          pt=0, pb=0, pl=pl, pr=pr, groups=c, opad=cp, wm=wm.ravel(),
                          **self._plane_fields(op, npw, npi, c), **self._output_transform(op))
            return self._emit(pos, fields, val, out_name, out, True, 0)
        # after the masks, the same signs as bytes (-1 for bit 1, else 0): the AVX-512 5-tap path
        # (bk_dw5_i8) sums them in int8 lanes; cp is a multiple of 64, so they fill whole words
        w8 = -(wm[0] >> np.uint32(31)).astype(np.int8)
        wm = np.concatenate([wm.ravel(), np.ascontiguousarray(w8).view(np.uint32).ravel()])
        fields = dict(kind=_BDW, C=c, H=1, W=t, in_sc=st[0], in_sh=0, in_sw=st[1], O=c, Ho=1, Wo=to,
                      out_so=ost[0], out_sh=0, out_sw=ost[1], kh=1, kw=k, sh=1, sw=s, dh=1, dw=d,
                      pt=0, pb=0, pl=pl, pr=pr, groups=c, opad=cp, wm=wm, ishift=self.ishift.get(name),
                      **self._output_transform(op))
        self._maybe_bits_out(fields, out_name, out, False, to)
        return self._emit(pos, fields, val, out_name, out, True, 0)

    def _broadcast(self, name: str, shape: tuple[int, ...], perm: tuple[int, ...], vidx: int) -> _Val:
        """A GATHER of value ``name`` broadcast (numpy rules, same rank) to ``shape``, in axis
        order ``perm``; a new value (``name`` keeps its own)."""
        val = self.vals[name]
        new = _Val(shape, self._new_vb(shape), perm)
        idx = np.empty(math.prod(shape), np.int32)
        idx[new.offsets().ravel()] = np.broadcast_to(val.offsets(), shape).ravel()
        self.cops.append(_COp({"kind": _GATHER, "idx": idx, "n": idx.size}, val.vb, new.vb, [val.vb], [], vidx))
        return new

    def _lower_badd(self, pos: int) -> int:
        """A broadcasting add: each operand smaller than the output is first gathered to the full
        shape (GATHER, repeated offsets) in the layout of the full-shape operand (else the preferred
        or canonical one), then an element-wise ADD (its chain may take more fused post-ops)."""
        op = self.ops[pos]
        ins, out_name = op["inputs"], op["outputs"][0]
        oshape = self.shapes[out_name]
        full = [v for v in ins if self.shapes[v] == oshape]
        if full:
            perm = self._regular(full[0], pos).perm
        else:
            perm = self.pref.get(out_name) or _canon(len(oshape))
        xs = [self._broadcast(v, oshape, perm, pos) if self.shapes[v] != oshape else self._materialize(v, perm, pos)
              for v in ins]
        a, b = xs
        out = _Val(oshape, self._new_vb(oshape), perm)
        cop = _COp({"kind": _EPI, "post": [{"kind": _P_ADD}]}, a.vb, out.vb, [a.vb, b.vb], [a.vb, b.vb], pos,
                   geom=(oshape, perm))
        cop.post_vbs.append(b.vb)
        self.cops.append(cop)
        self.vals[out_name] = out
        return self._fuse(pos, cop, out_name, out, None)

    def _lower_bdw2(self, pos: int) -> int:
        op = self.ops[pos]
        a = op["attrs"]
        name = op["inputs"][0]
        val = self._regular(name, pos, _channels_last(3))
        sc, sh_, sw_ = val.strides()
        c, h, wd = val.shape
        (kh, kw), (s_h, s_w), (d_h, d_w) = a["kernel_size"], a["stride"], a["dilation"]
        (pt, pb), (pl, pr) = a["padding"]
        cp = -(-c // 16) * 16
        wm = np.zeros((kh, kw, cp), np.uint32)  # float sign-bit masks: bit 1 (= -1) -> 0x80000000
        wm[:, :, :c] = _unpack_bits(self._t(op, "weight"), c).astype(np.uint32) << np.uint32(31)
        out_name = op["outputs"][0]
        oshape = self.shapes[out_name]
        out = _Val(oshape, self._new_vb(oshape), self._out_layout(out_name, False))
        oso, osh, osw = out.strides()
        ho, wo = oshape[1:]
        vy = sum(sum(0 <= oy * s_h + i * d_h - pt < h for i in range(kh)) for oy in range(ho))
        vx = sum(sum(0 <= ox * s_w + j * d_w - pl < wd for j in range(kw)) for ox in range(wo))
        self.macs[pos] = c * vy * vx
        fields = dict(kind=_BDW2, C=c, H=h, W=wd, in_sc=sc, in_sh=sh_, in_sw=sw_, O=c, Ho=ho, Wo=wo,
                      out_so=oso, out_sh=osh, out_sw=osw, kh=kh, kw=kw, sh=s_h, sw=s_w, dh=d_h, dw=d_w,
                      pt=pt, pb=pb, pl=pl, pr=pr, groups=c, opad=cp, wm=wm.ravel(), ishift=self.ishift.get(name),
                      **self._output_transform(op))
        self._maybe_bits_out(fields, out_name, out, False, ho * wo)
        return self._emit(pos, fields, val, out_name, out, True, 0)

    def _emit_pool(self, pos: int, rows: np.ndarray, div: np.ndarray, perm: tuple[int, ...]) -> int:
        """A POOL op: output element i (canonical order) averages the input elements of canonical
        indices ``rows[i]`` (-1: skipped), summed in that order, divided by ``div[i]``. It reads the
        input in whatever layout it has (the index map absorbs it) and writes axis order ``perm``."""
        op = self.ops[pos]
        name, out_name = op["inputs"][0], op["outputs"][0]
        val = self.vals[name]
        if val.bits:  # pragma: no cover - packed rows only ever feed binary ops
            raise ArtifactError(f"op {op['op']!r}: packed input rows")
        phys_in = val.offsets().ravel()
        oshape = self.shapes[out_name]
        out = _Val(oshape, self._new_vb(oshape), perm)
        order = out.offsets().ravel()  # canonical -> physical output position
        n, k = rows.shape
        nb = -(-n // 16)
        idx = np.full((nb * 16, k), -1, np.int32)  # outputs past n: -1
        idx[order] = np.where(rows >= 0, phys_in[np.maximum(rows, 0)], -1)
        idx = idx.reshape(nb, 16, k).transpose(0, 2, 1)  # blocks of 16 outputs: [block][tap][16]
        dv = np.empty(n, np.float32)
        dv[order] = div
        self.cops.append(_COp({"kind": _POOL, "idx": np.ascontiguousarray(idx).ravel(), "n": n, "taps": k,
                               "mult": dv}, val.vb, out.vb, [val.vb], [], pos))
        self.vals[out_name] = out
        return pos

    def _lower_avgpool(self, pos: int) -> int:
        op = self.ops[pos]
        a = op["attrs"]
        c, h, wd = self.shapes[op["inputs"][0]]
        (kh, kw), (s_h, s_w), ((pt, _), (pl, _)) = a["kernel_size"], a["stride"], a["padding"]
        _, ho, wo = self.shapes[op["outputs"][0]]
        iy = (np.arange(ho) * s_h - pt)[:, None] + np.arange(kh)[None, :]  # (Ho, kh)
        ix = (np.arange(wo) * s_w - pl)[:, None] + np.arange(kw)[None, :]  # (Wo, kw)
        ok = ((iy >= 0) & (iy < h))[:, None, :, None] & ((ix >= 0) & (ix < wd))[None, :, None, :]
        src = iy[:, None, :, None] * wd + ix[None, :, None, :]  # (Ho, Wo, kh, kw): taps row-major
        src = np.where(ok, src, -1).reshape(1, ho * wo, kh * kw)
        chan = (np.arange(c) * h * wd)[:, None, None]
        rows = np.where(src >= 0, src + chan, -1).reshape(c * ho * wo, kh * kw)
        cnt = ok.reshape(ho * wo, kh * kw).sum(1)
        div = np.full(c * ho * wo, kh * kw) if a["count_include_pad"] else np.tile(cnt, c)
        return self._emit_pool(pos, rows, div.astype(np.float32), self._out_layout(op["outputs"][0], False))

    def _lower_mean(self, pos: int) -> int:
        op = self.ops[pos]
        shape = self.shapes[op["inputs"][0]]
        axes = sorted(op["attrs"]["axes"])
        kept = [i for i in range(len(shape)) if i not in axes]
        k = math.prod(shape[i] for i in axes)
        rows = np.arange(math.prod(shape)).reshape(shape).transpose(kept + axes).reshape(-1, k)
        out_name = op["outputs"][0]
        perm = self.pref.get(out_name) or _canon(len(self.shapes[out_name]))
        return self._emit_pool(pos, rows, np.full(rows.shape[0], k, np.float32), perm)

    # -- buffers --------------------------------------------------------------------------------

    def finish(self) -> tuple[list[dict], list[int], int, list[int]]:
        """Slots by liveness; returns (C op dicts, slot capacities, output slot, view index per op)."""
        out_vb = self.vals[self.output].vb
        last: dict[int, int] = {}
        for k, cop in enumerate(self.cops):
            for vb in cop.reads:
                last[vb] = k
        last[out_vb] = len(self.cops)
        last[0] = len(self.cops)  # the input is never reused
        slot_of: dict[int, int] = {0: 0}
        caps: list[int] = [0]
        holder: dict[int, int] = {}  # slot -> vb holding it
        free: list[int] = []
        for k, cop in enumerate(self.cops):
            need = self.vb_floats[cop.out_vb]
            chosen = None
            for vb in cop.inplace:
                s = slot_of.get(vb)
                if cop.fields["kind"] == _CONV_FP and not cop.fields["staged"] and vb == cop.in_vb:
                    continue  # a float conv reading its input directly must not write over it
                if vb != 0 and s and last.get(vb) == k and holder.get(s) == vb:
                    chosen = s
                    break
            if chosen is None and free:
                fits = [s for s in free if caps[s] >= need]
                chosen = min(fits, key=lambda s: caps[s]) if fits else max(free, key=lambda s: caps[s])
                free.remove(chosen)
            if chosen is None:
                caps.append(0)
                chosen = len(caps) - 1
            caps[chosen] = max(caps[chosen], need)
            slot_of[cop.out_vb] = chosen
            dying = {vb for vb in cop.reads if last.get(vb) == k}
            for vb in dying:
                s = slot_of[vb]
                if s and holder.get(s) == vb and s != chosen:
                    free.append(s)
                    del holder[s]
            holder[chosen] = cop.out_vb
        ops = []
        for cop in self.cops:
            f = dict(cop.fields)
            f["in"] = slot_of[cop.in_vb]
            f["out"] = slot_of[cop.out_vb]
            posts = []
            for p, vb in zip(f.get("post", []), cop.post_vbs):
                p = dict(p)
                if vb >= 0:
                    p["slot"] = slot_of[vb]
                posts.append(p)
            f["post"] = posts
            if f["kind"] == _EPI:
                val_shape, perm = cop.geom
                ax = f.pop("axis", None)
                n = math.prod(val_shape)
                if ax is None:
                    f.update(outer=1, chans=n, inner=1, n=n)
                else:
                    i = perm.index(ax)
                    f.update(outer=math.prod(val_shape[a] for a in perm[:i]), chans=val_shape[ax],
                             inner=math.prod(val_shape[a] for a in perm[i + 1:]), n=n)
            ops.append(f)
        return ops, caps, slot_of[out_vb], [c.vidx for c in self.cops]


# ---------------------------------------------------------------------------------------------
# programs
# ---------------------------------------------------------------------------------------------


class _ViewPlan:
    def __init__(self, art: Artifact, view: str) -> None:
        p = _Planner(art, view)
        p.plan()
        ops, caps, out_slot, vidx = p.finish()
        self.view_ops = art.view_ops(view)
        self.vidx = np.asarray(vidx, np.int64)
        self.macs = p.macs
        self.num_cops = len(ops)
        self.cops = ops  # the C ops' fields, for tests and diagnostics
        self.cplan = _engine.Plan(ops, caps, math.prod(art.input_shape), len(art.labels), out_slot)
        self.cplan.set_input_shape(tuple(int(v) for v in art.input_shape))
        self.slot_floats = caps


class Program:
    """An artifact planned for the engine: ``run(features, view) -> logits``.

    Attributes:
        artifact: the validated artifact.
        kernel: the kernel variant that runs (e.g. ``"avx512"``).
        kernel_info: ``{"variant", "isa", "simde", "available", "machine"}``.
        views: view names; ``default_view``.
    """

    def __init__(self, artifact: Artifact, kernel: str | None = None) -> None:
        self.artifact = artifact
        self.kernel = resolve_kernel(kernel)
        self._variant = VARIANTS.index(self.kernel)
        self.kernel_info = kernel_info(self.kernel)
        self.views = list(artifact.views)
        self.default_view = artifact.default_view
        self.input_shape = tuple(artifact.input_shape)
        self.num_labels = len(artifact.labels)
        self._plans = {view: _ViewPlan(artifact, view) for view in artifact.views}

    def __repr__(self) -> str:
        return f"Program(kernel={self.kernel!r}, input={self.input_shape}, views={self.views})"

    def _plan(self, view: Any) -> _ViewPlan:
        if view is None:
            view = self.default_view
        plan = self._plans.get(view if isinstance(view, str) else str(view))
        if plan is None:
            raise ValueError(f"no view {view!r}; views are: {', '.join(self.views)}")
        return plan

    def _check(self, features: Any) -> np.ndarray:
        x = features
        if not isinstance(x, np.ndarray):
            raise ValueError(f"features must be a numpy.ndarray, got {type(x).__name__}")  # noqa: TRY004
        if x.dtype != np.float32:
            raise ValueError(f"features must have dtype float32, got dtype {x.dtype} with shape {x.shape}")
        if x.shape[1:] != self.input_shape or x.ndim != len(self.input_shape) + 1:
            raise ValueError(f"features must have shape (batch, {', '.join(map(str, self.input_shape))}), "
                             f"got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"features hold no clips (batch size 0, shape {x.shape})")
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return x

    def _fail(self, rc: int, x: np.ndarray) -> None:
        if rc == -2:
            bad = ~np.isfinite(x)
            first = tuple(int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"features hold {int(bad.sum())} NaN/inf value(s), first at index {first} "
                             f"(value {x[first]}) in shape {x.shape}")
        if rc == -1:
            raise MemoryError("the engine could not allocate its scratch memory")
        raise UnsupportedKernelError(f"kernel variant {self.kernel!r} cannot run here")

    def run(self, features: np.ndarray, view: str | None = None) -> np.ndarray:
        """``(batch, *input_shape)`` float32 features -> ``(batch, num_labels)`` float32 logits.

        One call into C runs the whole plan for the batch with the GIL released.

        Raises:
            ValueError: unknown view; not a float32 array of shape ``(batch, *input_shape)``;
                batch 0; NaN/inf values (the message quotes shape, dtype or the first bad index).
        """
        plan = self._plans.get(view) if view.__class__ is str else None
        if plan is None:
            plan = self._plan(view)
        if features.__class__ is np.ndarray:
            # fast path, checked in C: a C-contiguous float32 array of the right shape
            r = plan.cplan.run1(features, self._variant)
            if r.__class__ is np.ndarray:
                return r
            if r is not None:
                self._fail(r, features)
        x = features
        # fast path: an exact, C-contiguous float32 ndarray of the right shape (else full checks)
        if not (x.__class__ is np.ndarray and x.dtype is _F32 and x.shape[1:] == self.input_shape
                and x.shape[0] and x.flags.c_contiguous):
            x = self._check(features)
        out = np.empty((x.shape[0], self.num_labels), np.float32)
        rc = plan.cplan.run(x, out, self._variant)
        if rc:
            self._fail(rc, x)
        return out

    def profile(self, features: np.ndarray, view: str | None = None, repeats: int = 100) -> list[dict[str, Any]]:
        """Per-op timing of whole-plan runs, for the benchmark tool.

        Returns one dict per op of the view, in order: ``index`` (position in the view),
        ``name``, ``op``, ``seconds`` (median over ``repeats`` whole-plan runs of the op's time per
        call, measured in C with CLOCK_MONOTONIC around each op, net of the profiler's own clock
        reads: each timed interval also holds one clock read, whose cost, the median of empty
        intervals measured here (``clock_overhead``), is taken off each op and example, never
        below 0; the ops still run one at a time between clock reads, so the result remains an
        upper bound of an op's share of a plain run; also kept as ``self.clock_overhead``),
        ``clock_overhead`` (those seconds, per op and example), ``binary_macs`` (per call: the
        sum over output elements of the valid-tap K, times the batch; 0 for float ops). Ops
        fused into the op before them (element-wise epilogues) and free layout ops
        (reshape/transpose/flatten that need no copy) report 0 seconds: their cost is inside the
        op they were fused into.
        """
        plan = self._plan(view)
        x = self._check(features)
        if not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
        n = x.shape[0]
        out = np.empty((n, self.num_labels), np.float32)
        nv = len(plan.view_ops)
        times = np.zeros((repeats, nv))
        for r in range(repeats):
            prof = np.zeros(plan.num_cops)
            rc = plan.cplan.profile(x, out, self._variant, prof)
            if rc:
                self._fail(rc, x)
            np.add.at(times[r], plan.vidx, prof)
        clock = self.clock_overhead = _engine.clock_overhead()
        ncops = np.zeros(len(plan.view_ops))
        np.add.at(ncops, plan.vidx, 1.0)  # C ops behind each view op (0: fused or free)
        med = np.maximum(np.median(times, axis=0) - ncops * clock * n, 0.0)
        return [{"index": i, "name": op.get("name", ""), "op": op["op"], "seconds": float(med[i]),
                 "clock_overhead": clock, "binary_macs": int(plan.macs[i]) * n}
                for i, op in enumerate(plan.view_ops)]


class NeonBackend:
    """Backend ``"neon"``: ``load(path or Artifact, kernel=None) -> Program``."""

    name = "neon"
    #: Optional artifact features it runs (:func:`binkit.runtime.artifact.required_features`).
    features = frozenset({"multiplane", "bdwconv2d", "avgpool2d", "mean", "silu", "broadcast_add"})

    def load(self, source: str | os.PathLike | Artifact, kernel: str | None = None) -> Program:
        artifact = source if isinstance(source, Artifact) else load_artifact(Path(source))
        return Program(artifact, kernel=kernel)

    def __repr__(self) -> str:
        return "NeonBackend()"
