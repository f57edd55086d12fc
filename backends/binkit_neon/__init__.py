"""binkit_neon: binkit's compiled engine (Cython over C headers), registered as backend "neon".

- :mod:`binkit_neon.engine`: :class:`NeonBackend` / :class:`Program`: an artifact planned once at
  load and run by one nogil C call per batch (``include/binkit_engine.h``,
  ``include/binkit_engine_ops.h``), with XOR-popcount kernels in NEON, AVX-512 VPOPCNTDQ, AVX2,
  POPCNT and portable scalar variants chosen at run time (``include/binkit_kernels.h``). It runs
  every op of the artifact format, including the optional features ``multiplane`` (bit-serial
  binary ops), ``bdwconv2d``, ``avgpool2d``, ``mean``, ``silu`` and ``broadcast_add`` (the KWS
  backbones' ops; ``NeonBackend.features``);
  :func:`available_kernels`, :func:`default_kernel`, :func:`popcount_peak`, :func:`multiplane_dot`
  (bit-serial k-bit dot products);
- ``include/binkit_bits.h``: the one C header defining the packed word, bits per word,
  popcount, row packing and the +-1 dot product, with the conventions written next to the code;
- ``_bits`` / ``_engine``: thin Cython over those headers (private);
- :func:`pack_signs` and :func:`dot_pm1`: Python wrappers that validate everything, build every
  error message, and call ``_bits``.

Conventions (shared/DESIGN.md, "Conventions contract"): sign(0) = +1, decided by ``x < 0`` so
-0.0 packs as +1; bit 1 means -1; bits LSB-first along the channel axis into 64-bit words (bit i
of word j is channel 64*j + i); padding bits 0; dot = K - 2*popcount(a XOR w) with K the true
channel count. :mod:`binkit.runtime.bits` is the numpy mirror; conformance tests bind the two.

This package must import without torch (a Raspberry Pi installs the runtime and the engine only).
"""

from __future__ import annotations

import numpy as np

from binkit_neon import _bits

__all__ = ["BITS_PER_WORD", "NeonBackend", "Program", "UnsupportedKernelError", "available_kernels",
           "default_kernel", "dot_pm1", "multiplane_dot", "num_words", "pack_signs", "popcount_peak"]


def __getattr__(name: str):
    # The engine (and binkit.runtime.artifact behind it) loads on first use.
    if name in ("NeonBackend", "Program", "UnsupportedKernelError"):
        from binkit_neon import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'binkit_neon' has no attribute {name!r}")


def available_kernels() -> list[str]:
    """Kernel variants compiled into this build that this CPU can run (e.g. ``['scalar',
    'popcnt', 'avx2', 'avx512']`` on an AVX-512 VPOPCNTDQ machine, ``['scalar', 'neon']`` on
    aarch64)."""
    from binkit_neon.engine import available_kernels as f

    return f()


def default_kernel() -> str:
    """The variant a load picks without ``kernel=``: ``$BINKIT_NEON_KERNEL`` if set (validated),
    else the fastest available (avx512 > avx2 > popcnt > scalar; neon on aarch64)."""
    from binkit_neon.engine import default_kernel as f

    return f()


def popcount_peak(kernel: str | None = None, seconds: float = 0.2) -> float:
    """Measured binary ops per second (64 per word XOR+popcount) of a variant's GEMM kernel in L1."""
    from binkit_neon.engine import popcount_peak as f

    return f(kernel, seconds)


def multiplane_dot(a_planes: np.ndarray, a_scales: np.ndarray, w_planes: np.ndarray, w_scales: np.ndarray,
                   num_channels: int, kernel: str | None = None) -> np.ndarray:
    """Bit-serial dot products of multi-plane (k-bit) activations and weights.

    A value is ``sum_p scale_p * plane_p`` with ``plane_p`` in {+1, -1} packed by the usual
    conventions; ``out[m, o] = sum_p sum_q a_scales[p] * w_scales[q, o] * dot_pm1(a_p[m], w_q[o])``,
    each ``dot_pm1 = K - 2 popcount(a XOR w)`` computed by the chosen kernel variant (exact
    integers), combined in float64 in the order p, then q (identical for every variant).

    Args:
        a_planes: uint64 ``(pa, M, words)``; a_scales: ``(pa,)``.
        w_planes: uint64 ``(pw, O, words)``; w_scales: ``(pw,)`` or ``(pw, O)`` (per output channel).
        num_channels: true channel count K; ``words == ceil(K / 64)``; padding bits must be 0.
        kernel: variant name, default :func:`default_kernel`.

    Returns:
        float64 ``(M, O)``.
    """
    from binkit_neon import _engine
    from binkit_neon.engine import VARIANTS, _block_weights, resolve_kernel

    num_channels = _check_num_channels("multiplane_dot", num_channels)
    a = np.asarray(a_planes)
    w = np.asarray(w_planes)
    for name, arr in (("a_planes", a), ("w_planes", w)):
        if arr.dtype != np.uint64 or arr.ndim != 3:
            raise ValueError(f"multiplane_dot: {name} must be uint64 (planes, rows, words), got dtype "
                             f"{arr.dtype} shape {arr.shape}")
        if arr.shape[2] != _bits.num_words(num_channels):
            raise ValueError(f"multiplane_dot: num_channels={num_channels} needs {_bits.num_words(num_channels)} "
                             f"words, got {name}.shape={arr.shape}")
        _check_padding("multiplane_dot", name, np.ascontiguousarray(arr.reshape(-1, arr.shape[2])), num_channels)
    pa, m, words = a.shape
    pw, o, _ = w.shape
    sa = np.ascontiguousarray(a_scales, dtype=np.float64).reshape(-1)
    tw = np.asarray(w_scales, dtype=np.float64)
    tw = np.ascontiguousarray(np.broadcast_to(tw.reshape(pw, -1) if tw.ndim == 1 else tw, (pw, o)))
    if sa.shape != (pa,):
        raise ValueError(f"multiplane_dot: a_scales must have shape ({pa},), got {np.shape(a_scales)}")
    variant = VARIANTS.index(resolve_kernel(kernel))
    wb = np.stack([_block_weights(w[q])[0] for q in range(pw)]) if pw and o and words else \
        np.zeros((pw, -(-o // 8) * words * 8), np.uint64)
    out = np.empty((m, o), np.float64)
    _engine.multiplane(variant, np.ascontiguousarray(a), sa, np.ascontiguousarray(wb), tw, num_channels, out)
    return out

#: Bits per packed word, as compiled into the engine (``BINKIT_BITS_PER_WORD``).
BITS_PER_WORD: int = _bits.BITS_PER_WORD


def num_words(num_channels: int) -> int:
    """Number of 64-bit words holding ``num_channels`` packed bits: ``ceil(num_channels / 64)``."""
    return _bits.num_words(_check_num_channels("num_words", num_channels))


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Pack the signs of a float32 matrix into 64-bit words, row by row.

    Bit ``i`` of word ``j`` in row ``r`` is 1 iff ``x[r, 64*j + i] < 0`` (so +0.0 and -0.0 both
    give bit 0, i.e. +1); padding bits are 0.

    Args:
        x: float32, C-contiguous, 2-D, no NaN. Shape ``(rows, channels)``.

    Returns:
        uint64 array of shape ``(rows, num_words)``, ``num_words = ceil(channels / 64)``.

    Raises:
        ValueError: quoting the type, dtype, shape or strides received, or locating a NaN.
    """
    _check_matrix("pack_signs", "x", x, np.float32)
    _check_no_nan("pack_signs", x)
    out = np.empty((x.shape[0], _bits.num_words(x.shape[1])), dtype=np.uint64)
    _bits.pack_rows(x, out)
    return out


def dot_pm1(a_packed: np.ndarray, w_packed: np.ndarray, num_channels: int) -> np.ndarray:
    """All pairs of +-1 dot products of packed rows: ``out[i, j] = a_i . w_j``.

    ``a_i . w_j = K - 2 * popcount(a_i XOR w_j)`` with ``K = num_channels`` the true channel
    count (padding bits must be 0 in both operands, as :func:`pack_signs` leaves them).

    Args:
        a_packed: uint64, C-contiguous, 2-D. Shape ``(rows_a, num_words)``.
        w_packed: uint64, C-contiguous, 2-D. Shape ``(rows_w, num_words)``.
        num_channels: true channel count K >= 0; ``num_words`` must equal ``ceil(K / 64)``.

    Returns:
        int64 array of shape ``(rows_a, rows_w)``, values in ``[-K, K]``.

    Raises:
        ValueError: quoting what was received (type, dtype, shape, strides, word counts, or the
            first row with a nonzero padding bit).
    """
    num_channels = _check_num_channels("dot_pm1", num_channels)
    _check_matrix("dot_pm1", "a_packed", a_packed, np.uint64)
    _check_matrix("dot_pm1", "w_packed", w_packed, np.uint64)
    expected = _bits.num_words(num_channels)
    if a_packed.shape[1] != w_packed.shape[1]:
        raise ValueError(
            f"dot_pm1: a_packed and w_packed must have the same number of words, got "
            f"a_packed.shape={a_packed.shape} and w_packed.shape={w_packed.shape}"
        )
    if a_packed.shape[1] != expected:
        raise ValueError(
            f"dot_pm1: num_channels={num_channels} needs {expected} words per row, got "
            f"{a_packed.shape[1]} (a_packed.shape={a_packed.shape}, w_packed.shape={w_packed.shape})"
        )
    _check_padding("dot_pm1", "a_packed", a_packed, num_channels)
    _check_padding("dot_pm1", "w_packed", w_packed, num_channels)
    out = np.empty((a_packed.shape[0], w_packed.shape[0]), dtype=np.int64)
    _bits.dot_rows(a_packed, w_packed, num_channels, out)
    return out


# --- validation (all messages are built here, never in Cython or C) ---------------------------


def _check_num_channels(func: str, num_channels: object) -> int:
    if isinstance(num_channels, (bool, np.bool_)) or not isinstance(num_channels, (int, np.integer)):
        raise ValueError(f"{func}: num_channels must be an int, got {num_channels!r}")
    if num_channels < 0:
        raise ValueError(f"{func}: num_channels must be >= 0, got {num_channels}")
    return int(num_channels)


def _check_matrix(func: str, name: str, arr: object, dtype: type) -> None:
    """Type, dtype, rank and C-contiguity, in that order, each quoting what was received."""
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{func}: {name} must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise ValueError(f"{func}: {name} must have dtype {np.dtype(dtype)}, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{func}: {name} must be 2-D (rows, channels or words), got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"{func}: {name} must be C-contiguous, got shape {arr.shape} with strides {arr.strides} "
            f"(use numpy.ascontiguousarray)"
        )


def _check_no_nan(func: str, x: np.ndarray) -> None:
    # NaN has no sign (conventions: rejected before packing). +-inf have one and pack by it.
    # Cheap first pass as in sklearn's _assert_all_finite: a NaN anywhere makes the sum NaN; a
    # NaN sum without any NaN (inf - inf, or overflow) falls through to the exact check.
    with np.errstate(invalid="ignore", over="ignore"):
        quick_sum = x.sum(dtype=np.float64)
    if x.size == 0 or not np.isnan(quick_sum):
        return
    nan_at = np.argwhere(np.isnan(x))
    if len(nan_at):
        row, channel = (int(v) for v in nan_at[0])
        raise ValueError(
            f"{func}: x contains NaN ({len(nan_at)} value(s); first at row {row}, channel {channel}); "
            f"NaN has no sign to pack"
        )


def _check_padding(func: str, name: str, words: np.ndarray, num_channels: int) -> None:
    tail = num_channels % BITS_PER_WORD
    if words.shape[0] == 0 or tail == 0:
        return
    # Bits tail..63 of the last word are padding and must be 0, or they would count in the XOR.
    bad = np.flatnonzero(words[:, -1] >> np.uint64(tail))
    if len(bad):
        raise ValueError(
            f"{func}: {name} has nonzero padding bits (above channel {num_channels - 1}) in "
            f"{len(bad)} row(s), first row {int(bad[0])}; was it packed with num_channels={num_channels}?"
        )
