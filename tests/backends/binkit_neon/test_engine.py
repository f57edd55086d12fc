"""The compiled engine (backend "neon") against the numpy reference backend. Torch-free.

Artifacts are written with ``save_artifact`` directly (through tests/artifact_builder.py), so
this file also runs where torch is absent (the aarch64 qemu CI stage). They cover every op of the
artifact op table, channel counts around the 64-bit word (1, 63, 64, 65, 130), stride, dilation,
asymmetric padding (exact zeros: padded taps contribute 0), groups, float16 weights,
``input_sign``, exact zeros (+0.0 and -0.0 pack as +1) in inputs that binary ops read directly,
batch 1 and 64, and every view.

Checks: per clip max |engine - reference| / max |reference| <= 1e-4 and the same argmax; every
available kernel variant gives bitwise identical logits. ``BINKIT_ENGINE_QUICK=1`` (the qemu
stage) skips the batch-64 sweep (and the batch-17 multi-plane one).

Multi-plane (bit-serial) ops: every binary op kind with (P, Q) in (2, 1), (1, 3), (4, 4), (3, 2),
1/63/65/130 channels, read straight from features drawn away from residual near-ties.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from artifact_builder import LABELS, ArtifactBuilder

from binkit.runtime.artifact import load_artifact
from binkit.runtime.bits import dot_pm1, pack_signs
from binkit.runtime.reference import ReferenceProgram

binkit_neon = pytest.importorskip("binkit_neon")
from binkit_neon import _engine
from binkit_neon.engine import VARIANTS, NeonBackend, Program, UnsupportedKernelError

RTOL = 1e-4
CHANNELS = [1, 16, 63, 64, 65, 130]
KERNELS = binkit_neon.available_kernels()
QUICK = os.environ.get("BINKIT_ENGINE_QUICK") == "1"
heavy = pytest.mark.skipif(QUICK, reason="BINKIT_ENGINE_QUICK=1 (emulated CI stage)")


class _Builder(ArtifactBuilder):
    """The engine tests' artifacts: random packed weights, transforms and sign thresholds."""

    # tensors
    def packed(self, *shape: int) -> np.ndarray:
        return pack_signs(self.rng.standard_normal(shape))

    def transform(self, out: int) -> dict[str, np.ndarray]:
        return {"multiplier": self.f32(out, lo=0.02, hi=0.2) * np.where(self.rng.random(out) < 0.2, -1, 1).astype(np.float32),
                "offset": self.f32(out, lo=-0.5, hi=0.5)}

    def threshold(self, out: int, k: int, dtype) -> np.ndarray:
        """Sign thresholds in [-K, K] (K = bits per dot), some at the extremes."""
        t = self.rng.integers(-k // 2, k // 2 + 1, out)
        t[:2] = [-k, k + 1][: min(2, out)] if out >= 2 else t[:1]
        return t.astype(dtype)

    def save(self, path, input_shape, views: dict[str, list[int]], outputs: dict[str, str]) -> str:
        return self.write(path, input_shape, {v: (ops, outputs[v]) for v, ops in views.items()})


def _conv_attrs(stride, padding, dilation, **extra):
    return {"stride": stride, "padding": padding, "dilation": dilation, **extra}


def _bconv_attrs(c, kernel, stride, padding, dilation):
    return {"in_channels": c, "kernel_size": kernel, "stride": stride, "padding": padding, "dilation": dilation}


def build_2d(path, c: int, seed: int = 0) -> str:
    """(2, 9, 10) input; views: 'main' (conv2d_fp -> affine -> prelu -> bconv2d -> prelu(1) ->
    bconv2d 1x1 with a sign threshold -> affine -> flatten -> blinear with a sign threshold ->
    blinear -> prelu -> linear_fp(input_sign, float16)),
    'side' (shares the stem, then a dilated strided bconv2d, transpose, reshape, linear_fp),
    'raw' (bconv2d straight on the input: exact zeros in the features)."""
    b = _Builder(seed)
    L = len(LABELS)
    x = b.op("conv2d_fp", ["input"], _conv_attrs([2, 1], [[1, 1], [2, 0]], [1, 2], groups=1, input_sign=False),
             weight=b.f32(c, 2, 3, 3), bias=b.f32(c))                                  # (c, 5, 8)
    x = b.op("affine", [x], {"axis": 0}, multiplier=b.f32(c, lo=0.5, hi=1.5), offset=b.f32(c, lo=-0.3, hi=0.3))
    stem = b.op("prelu", [x], {"axis": 0}, slope=b.f32(c, lo=-0.5, hi=0.5))
    x = b.op("bconv2d", [stem], _bconv_attrs(c, [3, 2], [1, 2], [[1, 1], [1, 0]], [1, 1]),
             weight=b.packed(65, 3, 2, c), **b.transform(65))                          # (65, 5, 4)
    mid = b.op("prelu", [x], {"axis": 0}, slope=np.array([0.25], np.float32))
    x = b.op("bconv2d", [mid], _bconv_attrs(65, [1, 1], [1, 1], [[0, 0], [0, 0]], [1, 1]),
             weight=b.packed(c, 1, 1, 65), threshold=b.threshold(c, 65, np.int16))      # (c, 5, 4) +-1
    x = b.op("affine", [x], {"axis": 0}, multiplier=b.f32(c), offset=b.f32(c, lo=-0.5, hi=0.5))
    x = b.op("flatten", [x])
    x = b.op("blinear", [x], {"in_features": 20 * c}, weight=b.packed(70, 20 * c),
             threshold=b.threshold(70, 20 * c, np.int32))                              # packed rows
    x = b.op("blinear", [x], {"in_features": 70}, weight=b.packed(48, 70), **b.transform(48))
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(48, lo=-0.5, hi=0.5))
    main = b.op("linear_fp", [x], {"input_sign": True}, weight=b.f32(L, 48).astype(np.float16), bias=b.f32(L))
    n_main = len(b.ops)
    x = b.op("bconv2d", [mid], _bconv_attrs(65, [2, 2], [2, 2], [[1, 0], [0, 1]], [2, 1]),
             weight=b.packed(64, 2, 2, 65), **b.transform(64))                          # (64, 2, 2)
    x = b.op("transpose", [x], {"perm": [1, 2, 0]})
    x = b.op("reshape", [x], {"shape": [256]})
    side = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 256))
    n_side = len(b.ops)
    x = b.op("bconv2d", ["input"], _bconv_attrs(2, [3, 3], [1, 1], [[1, 1], [1, 1]], [1, 1]),
             weight=b.packed(3, 3, 3, 2), **b.transform(3))                             # (3, 9, 10)
    x = b.op("flatten", [x])
    raw = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 270, lo=-0.1, hi=0.1), bias=b.f32(L))
    return b.save(path, (2, 9, 10),
                  {"main": list(range(n_main)), "side": [0, 1, 2, 3, 4] + list(range(n_main, n_side)),
                   "raw": list(range(n_side, len(b.ops)))},
                  {"main": main, "side": side, "raw": raw})


def build_1d(path, c: int, seed: int = 1) -> str:
    """(c, 9) input; views: 'full' (bconv1d on the input -> prelu -> bdwconv1d -> affine -> add ->
    grouped conv1d_fp (float16, input_sign) -> transpose -> reshape (3, 3, 64) -> blinear -> relu ->
    transpose -> bconv1d 1x1 stride 2 with a sign threshold -> flatten -> linear_fp), 'short'
    (flatten after the add), 'thr' (strided dilated bdwconv1d with a sign threshold, whose packed
    rows feed a 1x1 bconv1d with a sign threshold)."""
    b = _Builder(seed)
    L = len(LABELS)
    x = b.op("bconv1d", ["input"], _bconv_attrs(c, [3], [1], [[2, 2]], [2]), weight=b.packed(130, 3, c),
             **b.transform(130))                                                       # (130, 9)
    act = b.op("prelu", [x], {"axis": 0}, slope=b.f32(130, lo=-0.5, hi=0.5))
    x = b.op("bdwconv1d", [act], _bconv_attrs(130, [5], [1], [[2, 2]], [1]), weight=b.packed(5, 130),
             **b.transform(130))
    x = b.op("affine", [x], {"axis": 0}, multiplier=b.f32(130, lo=0.5, hi=1.5), offset=b.f32(130))
    res = b.op("add", [x, act])
    n_short = len(b.ops)
    x = b.op("conv1d_fp", [res], _conv_attrs([1], [[1, 1]], [1], groups=2, input_sign=True),
             weight=b.f32(64, 65, 3).astype(np.float16), bias=b.f32(64))               # (64, 9)
    x = b.op("transpose", [x], {"perm": [1, 0]})                                      # (9, 64)
    x = b.op("reshape", [x], {"shape": [3, 3, 64]})
    x = b.op("blinear", [x], {"in_features": 64}, weight=b.packed(c, 64), **b.transform(c))  # (3, 3, c)
    x = b.op("relu", [x])
    x = b.op("reshape", [x], {"shape": [9, c]})
    x = b.op("transpose", [x], {"perm": [1, 0]})                                      # (c, 9)
    x = b.op("bconv1d", [x], _bconv_attrs(c, [1], [2], [[0, 0]], [1]), weight=b.packed(64, 1, c),
             threshold=b.threshold(64, c, np.int32))                                   # (64, 5) +-1
    x = b.op("flatten", [x])
    full = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 320, lo=-0.2, hi=0.2), bias=b.f32(L))
    n_full = len(b.ops)
    x = b.op("flatten", [res])
    short = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 1170, lo=-0.1, hi=0.1))
    x = b.op("bdwconv1d", [act], _bconv_attrs(130, [3], [2], [[1, 2]], [2]), weight=b.packed(3, 130),
             threshold=b.threshold(130, 3, np.int16))                                  # (130, 4) packed rows
    x = b.op("bconv1d", [x], _bconv_attrs(130, [1], [1], [[0, 0]], [1]), weight=b.packed(c, 1, 130),
             threshold=b.threshold(c, 130, np.int32))                                  # (c, 4) +-1 floats
    x = b.op("flatten", [x])
    thr = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 4 * c, lo=-0.1, hi=0.1))
    return b.save(path, (c, 9), {"full": list(range(n_full)), "short": list(range(n_short)) + [n_full, n_full + 1],
                                 "thr": [0, 1] + list(range(n_full + 2, n_full + 6))},
                  {"full": full, "short": short, "thr": thr})


def features(shape, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    zeros = rng.random(x.shape) < 0.15
    x[zeros] = np.where(rng.random(int(zeros.sum())) < 0.5, 0.0, -0.0).astype(np.float32)  # sign(0) = +1
    x[0, ..., :2] = 0.0  # a whole zero region at the borders
    return x


def compare(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape, (what, got.dtype, got.shape)
    rel = np.abs(got - want).max(-1) / np.maximum(np.abs(want).max(-1), 1e-30)
    assert rel.max() <= RTOL, (what, float(rel.max()))
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1), err_msg=what)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    return {(kind, c): load_artifact((build_2d if kind == "2d" else build_1d)(d / f"{kind}{c}.bkm", c))
            for kind in ("2d", "1d") for c in CHANNELS}


def _check_all_kernels(art, batch: int, seed: int) -> None:
    ref = ReferenceProgram(art)
    x = features(art.input_shape, batch, seed)
    for view in art.views:
        want = ref.run(x, view)
        first = None
        for k in KERNELS:
            got = Program(art, kernel=k).run(x, view)
            compare(got, want, f"{k} view {view}")
            if first is None:
                first = got
            else:
                np.testing.assert_array_equal(got, first, err_msg=f"{k} differs from {KERNELS[0]} (view {view})")


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_matches_reference_batch1_all_kernels(artifacts, kind, c):
    _check_all_kernels(artifacts[(kind, c)], 1, seed=c)


@heavy
@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_matches_reference_batch64_all_kernels(artifacts, kind, c):
    _check_all_kernels(artifacts[(kind, c)], 64, seed=100 + c)


def test_constant_inputs(artifacts):
    """All-zero features (every binary input that reads them is +1) and a negative constant."""
    for key in (("2d", 65), ("1d", 63)):
        art = artifacts[key]
        ref = ReferenceProgram(art)
        prog = Program(art)
        for value in (0.0, -0.0, -3.0):
            x = np.full((2, *art.input_shape), value, np.float32)
            for view in art.views:
                compare(prog.run(x, view), ref.run(x, view), f"{key} {value} {view}")


def test_zero_padding_is_exact_not_plus_one(tmp_path):
    """A padded bconv1d whose weights are all -1: with +1 padding the borders would differ by the
    number of padded taps; with exact zeros the border dot is -(C x valid taps) * (input signs)."""
    b = _Builder(3)
    c, t = 5, 4
    w = np.full((1, 3, c), -1.0)
    x = b.op("bconv1d", ["input"], _bconv_attrs(c, [3], [1], [[1, 1]], [1]), weight=pack_signs(w),
             multiplier=np.ones(1, np.float32), offset=np.zeros(1, np.float32))
    x = b.op("flatten", [x])
    out = b.op("linear_fp", [x], {"input_sign": False}, weight=np.eye(5, t, dtype=np.float32))
    art = load_artifact(b.save(tmp_path / "pad.bkm", (c, t), {"v": [0, 1, 2]}, {"v": out}))
    feats = np.ones((1, c, t), np.float32)  # all +1 inputs: dot = -(C x valid taps)
    expected = np.array([-10, -15, -15, -10, 0], np.float32)
    for k in KERNELS:
        np.testing.assert_array_equal(Program(art, kernel=k).run(feats, "v")[0], expected)


# --- kernel level ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 7, 31, 32, 33, 70])
def test_gemm_counts_every_variant(k):
    rng = np.random.default_rng(k)
    m, o = 5, 21
    a = rng.integers(0, 2**64, (m, k), dtype=np.uint64)
    w = rng.integers(0, 2**64, (o, k), dtype=np.uint64)
    want = _popcount(a[:, None, :] ^ w[None, :, :]).sum(-1)
    from binkit_neon.engine import _block_weights
    wb, nb = _block_weights(w)
    for kern in KERNELS:
        out = np.full((m, nb * 8), -7, np.int32)
        _engine.gemm_counts(VARIANTS.index(kern), a, wb, nb, out)
        np.testing.assert_array_equal(out[:, :o], want, err_msg=kern)
        # the zero rows padding the outputs to a multiple of 8 count the activation's own bits
        np.testing.assert_array_equal(out[:, o:], np.repeat(_popcount(a).sum(-1)[:, None], nb * 8 - o, 1))


def _popcount(words: np.ndarray) -> np.ndarray:
    b = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, 8)
    return np.unpackbits(b, axis=-1).sum(-1).astype(np.int64)


@pytest.mark.parametrize("channels", [1, 63, 64, 65, 130])
def test_multiplane_dot(channels):
    rng = np.random.default_rng(channels)
    pa, pw, m, o = 3, 2, 4, 11
    a_vals = rng.standard_normal((pa, m, channels))
    w_vals = rng.standard_normal((pw, o, channels))
    a_planes, w_planes = pack_signs(a_vals), pack_signs(w_vals)
    sa = np.array([1.0, 0.5, 0.25])
    tw = rng.uniform(0.1, 1.0, (pw, o))
    want = np.zeros((m, o))
    for p in range(pa):
        for q in range(pw):
            want += sa[p] * tw[q] * dot_pm1(a_planes[p], w_planes[q], channels)
    # the same thing from the unpacked +-1 values
    a_pm = np.where(a_vals < 0, -1.0, 1.0)
    w_pm = np.where(w_vals < 0, -1.0, 1.0)
    dense = np.einsum("p,pmc,qo,qoc->mo", sa, a_pm, tw, w_pm)
    np.testing.assert_allclose(want, dense, rtol=1e-12, atol=1e-9)
    outs = [binkit_neon.multiplane_dot(a_planes, sa, w_planes, tw, channels, kernel=k) for k in KERNELS]
    for k, got in zip(KERNELS, outs):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9, err_msg=k)
        np.testing.assert_array_equal(got, outs[0], err_msg=k)
    # per-plane scalar weight scales broadcast over output channels
    got = binkit_neon.multiplane_dot(a_planes[:1], sa[:1], w_planes, np.array([2.0, -1.0]), channels)
    np.testing.assert_allclose(got, 2 * dot_pm1(a_planes[0], w_planes[0], channels)
                               - dot_pm1(a_planes[0], w_planes[1], channels), rtol=1e-12)


def test_multiplane_rejects_bad_input():
    a = pack_signs(np.ones((1, 2, 70)))
    with pytest.raises(ValueError, match="a_scales must have shape"):
        binkit_neon.multiplane_dot(a, np.ones(2), a, np.ones(1), 70)
    with pytest.raises(ValueError, match="num_channels=200 needs 4 words"):
        binkit_neon.multiplane_dot(a, np.ones(1), a, np.ones(1), 200)
    bad = a.copy()
    bad[0, 0, 1] |= np.uint64(1) << np.uint64(40)
    with pytest.raises(ValueError, match="padding bits"):
        binkit_neon.multiplane_dot(bad, np.ones(1), a, np.ones(1), 70)


def test_popcount_peak_and_kernel_names():
    assert set(KERNELS) <= set(VARIANTS) and "scalar" in KERNELS
    assert binkit_neon.default_kernel() in KERNELS
    peak = binkit_neon.popcount_peak(seconds=0.02)
    assert peak > 1e8  # binary ops per second; any working kernel is far above this
    assert binkit_neon.popcount_peak("scalar", seconds=0.02) > 1e7


# --- the Program API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(artifacts):
    return artifacts[("1d", 65)]


def test_program_attributes(small):
    prog = NeonBackend().load(small)
    assert prog.kernel == binkit_neon.default_kernel()
    info = prog.kernel_info
    assert info["variant"] == prog.kernel and info["available"] == KERNELS
    assert isinstance(info["simde"], bool) and info["isa"]
    assert prog.views == ["full", "short", "thr"]


def test_forced_kernel_env_and_argument(small, monkeypatch):
    monkeypatch.setenv("BINKIT_NEON_KERNEL", "scalar")
    assert binkit_neon.default_kernel() == "scalar"
    assert Program(small).kernel == "scalar"
    assert Program(small, kernel=KERNELS[-1]).kernel == KERNELS[-1]  # the argument wins
    monkeypatch.setenv("BINKIT_NEON_KERNEL", "sse9")
    with pytest.raises(ValueError, match="unknown kernel variant 'sse9'.*available on this machine: scalar"):
        Program(small)


def test_forcing_an_unsupported_kernel_raises(small):
    missing = [v for v in VARIANTS if v not in KERNELS]
    if not missing:
        pytest.skip("every variant runs on this machine")
    with pytest.raises(UnsupportedKernelError, match=f"kernel variant '{missing[0]}'.*available: scalar"):
        Program(small, kernel=missing[0])
    with pytest.raises(RuntimeError):
        binkit_neon.popcount_peak(missing[0], seconds=0.01)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 65, 8), np.float32), r"shape \(batch, 65, 9\), got \(2, 65, 8\)"),
    (np.zeros((65, 9), np.float32), r"got \(65, 9\)"),
    (np.zeros((2, 65, 9), np.float64), "dtype float32, got dtype float64"),
    (np.zeros((0, 65, 9), np.float32), "batch size 0"),
    ([[0.0]], "numpy.ndarray, got list"),
])
def test_bad_input(small, bad, match):
    prog = Program(small)
    with pytest.raises(ValueError, match=match):
        prog.run(bad, "full")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input(small, value):
    x = features(small.input_shape, 3, 0)
    x[2, 7, 4] = value
    with pytest.raises(ValueError, match=r"NaN/inf value\(s\), first at index \(2, 7, 4\)"):
        Program(small).run(x, "full")


def test_unknown_view_and_default_view(small):
    prog = Program(small)
    x = features(small.input_shape, 2, 0)
    with pytest.raises(ValueError, match="no view 'tiny'; views are: full, short, thr"):
        prog.run(x, "tiny")
    np.testing.assert_array_equal(prog.run(x, None), prog.run(x, "full"))


def test_non_contiguous_input_is_accepted(small):
    prog = Program(small)
    x = features(small.input_shape, 4, 0)
    xt = np.asfortranarray(x)
    np.testing.assert_array_equal(prog.run(xt, "full"), prog.run(x, "full"))


def test_concurrent_threads(small):
    prog = Program(small)
    xs = [features(small.input_shape, b, s) for s, b in enumerate([1, 3, 7, 2, 5, 1, 4, 6])]
    want = [prog.run(x, v) for x in xs for v in ("full", "short")]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda args: prog.run(*args), [(x, v) for x in xs for v in ("full", "short")]))
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_profile(artifacts):
    art = artifacts[("2d", 64)]
    prog = Program(art)
    x = features(art.input_shape, 2, 0)
    rows = prog.profile(x, "main", repeats=3)
    ops = art.view_ops("main")
    assert [r["index"] for r in rows] == list(range(len(ops)))
    assert [r["op"] for r in rows] == [op["op"] for op in ops]
    assert [r["name"] for r in rows] == [op["name"] for op in ops]
    assert all(set(r) == {"index", "name", "op", "seconds", "clock_overhead", "binary_macs"} for r in rows)
    assert all(r["seconds"] >= 0 for r in rows) and sum(r["seconds"] for r in rows) > 0
    # the profiler's own clock reads are measured (a few ns to a few us) and taken off each op
    clock = prog.clock_overhead
    assert 0 < clock < 1e-5 and all(r["clock_overhead"] == clock for r in rows)
    macs = {r["op"] + str(r["index"]): r["binary_macs"] for r in rows}
    # bconv2d 64 -> 65, 3x2 kernel, stride (1, 2), pad [[1, 1], [1, 0]] on 5 x 8: valid taps per row
    # position (oy) 2,3,3,3,2 of 3 and per column (ox) 1,2,2,2 of 2 -> sum of valid taps = 13 * 7
    assert macs["bconv2d3"] == 2 * 64 * 65 * 13 * 7
    assert macs["bconv2d5"] == 2 * 65 * 64 * 20
    assert macs["blinear8"] == 2 * 20 * 64 * 70
    assert macs["blinear9"] == 2 * 70 * 48
    assert macs["conv2d_fp0"] == 0 and macs["linear_fp11"] == 0
    with pytest.raises(ValueError, match="repeats"):
        prog.profile(x, "main", repeats=0)


def test_profile_takes_the_clock_reads_off_each_op(artifacts, monkeypatch):
    """Each op's time is net of one clock read per op and example: with a (fake) clock cost
    above any op every time clamps to 0; with none, the raw times remain."""
    import binkit_neon.engine as eng

    art = artifacts[("2d", 64)]
    prog = Program(art)
    x = features(art.input_shape, 2, 0)

    class Clock:
        def __init__(self, cost):
            self.cost = cost

        def clock_overhead(self):
            return self.cost

    monkeypatch.setattr(eng, "_engine", Clock(1.0))
    rows = prog.profile(x, "main", repeats=3)
    assert prog.clock_overhead == 1.0 and all(r["seconds"] == 0.0 for r in rows)
    monkeypatch.setattr(eng, "_engine", Clock(0.0))
    rows = prog.profile(x, "main", repeats=3)
    assert all(r["seconds"] > 0 for r in rows if r["binary_macs"])


def test_backend_registered_and_runtime_load(tmp_path):
    import binkit.runtime
    from binkit import registry

    path = build_1d(tmp_path / "m.bkm", 63)
    assert "neon" in registry.names("backend")
    neon = binkit.runtime.load(path, backend="neon")
    ref = binkit.runtime.load(path, backend="reference")
    assert neon.program.kernel == binkit_neon.default_kernel()
    x = features((63, 9), 5, 1)
    for view in ("full", "short"):
        compare(neon.logits(x, view), ref.logits(x, view), view)
    scores, labels = neon.predict(x[0])
    assert scores.shape == (len(LABELS),) and labels in LABELS
    path_prog = NeonBackend().load(path, kernel="scalar")
    np.testing.assert_array_equal(path_prog.run(x, "full"), neon.logits(x, "full"))


def test_engine_import_and_neon_load_are_torch_free(tmp_path):
    path = build_2d(tmp_path / "m.bkm", 1)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        import binkit_neon, binkit_neon.engine, binkit_neon.plugin
        import binkit.runtime
        model = binkit.runtime.load({str(path)!r}, backend="neon")
        out = model.logits(np.zeros((1, 2, 9, 10), np.float32))
        assert out.shape == (1, 5), out.shape
        binkit_neon.available_kernels(); binkit_neon.popcount_peak(seconds=0.01)
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
        print("ok", model.program.kernel)
    """)
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")


# ---------------------------------------------------------------------------------------------
# bit-serial multi-plane binary ops (attrs weight_planes P / input_planes Q)
# ---------------------------------------------------------------------------------------------

MP_PLANES = [(2, 1), (1, 3), (4, 4), (3, 2)]
MP_CHANNELS = [1, 63, 65, 130]
MP_MARGIN = 1e-5  # no residual this close to 0 but exact zeros (random data near ties may flip a bit)


def _mp_input_scales(q: int, rng) -> np.ndarray:
    """Decreasing a_q > 0 whose residual chain for an exact zero input (-a_1, a_2 - a_1, ...) never
    comes near 0 unless exactly 0."""
    while True:
        a = (rng.uniform(0.6, 1.2) * 0.55 ** np.arange(q) * rng.uniform(0.85, 1.15, q)).astype(np.float32)
        r, ok = 0.0, True
        for s in a.astype(np.float64):
            r = r - s * (-1.0 if r < 0 else 1.0)
            ok &= r == 0 or abs(r) > 1e-3
        if ok:
            return a


def _mp_residuals(x: np.ndarray, scales: np.ndarray) -> list[np.ndarray]:
    """r_1 .. r_Q of the reference's float64 decomposition."""
    out, r = [], x.astype(np.float64)
    for a in scales.astype(np.float64):
        out.append(r)
        r = r - a * np.where(r < 0, -1.0, 1.0)
    return out


def mp_features(shape, batch: int, seed: int, scales: np.ndarray) -> np.ndarray:
    """``features`` (exact +-0.0 included), redrawn where a residual plane sits near a tie."""
    rng = np.random.default_rng(seed)
    x = features(shape, batch, seed)
    x[-1, ..., -1] = -0.0  # at least one -0.0
    zero = x == 0
    for _ in range(100):
        bad = np.zeros(x.shape, bool)
        for r in _mp_residuals(x, scales):
            bad |= (np.abs(r) < MP_MARGIN) & (r != 0)
        bad &= ~zero
        if not bad.any():
            return x
        x[bad] = rng.standard_normal(int(bad.sum())).astype(np.float32)
    raise AssertionError("could not draw features away from residual ties")  # pragma: no cover


def _mp_tensors(b: _Builder, p: int, q: int, out: int, isc: np.ndarray, *wshape: int) -> dict[str, np.ndarray]:
    t = {}
    if p > 1:
        t["weight"] = np.stack([b.packed(*wshape) for _ in range(p)])
        t["weight_scales"] = b.f32(p, out, lo=0.05, hi=0.5)
    else:
        t["weight"] = b.packed(*wshape)
    if q > 1:
        t["input_scales"] = isc
    return t


def build_mp_1d(path, c: int, p: int, q: int, seed: int = 3) -> tuple[str, np.ndarray]:
    """(c, 9) input; one multi-plane op on the input per view: 'conv' (padded strided dilated
    bconv1d -> prelu), 'pw' (1x1 bconv1d: direct rows), 'dw' (bdwconv1d -> affine, add),
    'lin' (flatten -> blinear -> relu), each then flatten -> linear_fp."""
    b = _Builder(seed + 10 * p + q)
    L = len(LABELS)
    isc = _mp_input_scales(q, b.rng)
    planes = {"weight_planes": p, "input_planes": q} if (p, q) != (1, 1) else {}
    ops: dict[str, list[int]] = {}
    outs: dict[str, str] = {}

    def view(name, first):
        ops[name] = list(range(first, len(b.ops)))

    n = len(b.ops)
    x = b.op("bconv1d", ["input"], {**_bconv_attrs(c, [3], [2], [[2, 1]], [2]), **planes},
             **_mp_tensors(b, p, q, c, isc, c, 3, c), **b.transform(c))                # (c, 4)
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(c, lo=-0.5, hi=0.5))
    x = b.op("flatten", [x])
    outs["conv"] = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 4 * c), bias=b.f32(L))
    view("conv", n)
    n = len(b.ops)
    x = b.op("bconv1d", ["input"], {**_bconv_attrs(c, [1], [1], [[0, 0]], [1]), **planes},
             **_mp_tensors(b, p, q, 65, isc, 65, 1, c), **b.transform(65))             # (65, 9)
    x = b.op("flatten", [x])
    outs["pw"] = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 585, lo=-0.2, hi=0.2))
    view("pw", n)
    n = len(b.ops)
    x = b.op("bdwconv1d", ["input"], {**_bconv_attrs(c, [3], [1], [[1, 2]], [2]), **planes},
             **_mp_tensors(b, p, q, c, isc, 3, c), **b.transform(c))                   # (c, 8)
    x = b.op("affine", [x], {"axis": 0}, multiplier=b.f32(c, lo=0.5, hi=1.5), offset=b.f32(c))
    x = b.op("flatten", [x])
    outs["dw"] = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 8 * c), bias=b.f32(L))
    view("dw", n)
    n = len(b.ops)
    x = b.op("flatten", ["input"])
    x = b.op("blinear", [x], {"in_features": 9 * c, **planes}, **_mp_tensors(b, p, q, 70, isc, 70, 9 * c),
             **b.transform(70))
    x = b.op("relu", [x])
    outs["lin"] = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 70), bias=b.f32(L))
    view("lin", n)
    return b.save(path, (c, 9), ops, outs), isc


def build_mp_2d(path, c: int, p: int, q: int, seed: int = 4) -> tuple[str, np.ndarray]:
    """(c, 6, 7) input; 'conv': padded strided dilated bconv2d -> prelu -> flatten -> linear_fp."""
    b = _Builder(seed + 10 * p + q)
    L = len(LABELS)
    isc = _mp_input_scales(q, b.rng)
    planes = {"weight_planes": p, "input_planes": q}
    x = b.op("bconv2d", ["input"], {**_bconv_attrs(c, [3, 2], [1, 2], [[2, 0], [1, 0]], [1, 2]), **planes},
             **_mp_tensors(b, p, q, 65, isc, 65, 3, 2, c), **b.transform(65))          # (65, 6, 3)
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(65, lo=-0.5, hi=0.5))
    x = b.op("flatten", [x])
    conv = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 65 * 18, lo=-0.1, hi=0.1), bias=b.f32(L))
    return b.save(path, (c, 6, 7), {"conv": list(range(len(b.ops)))}, {"conv": conv}), isc


@pytest.fixture(scope="module")
def mp_artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp")
    out = {}
    for kind, build in (("1d", build_mp_1d), ("2d", build_mp_2d)):
        for p, q in MP_PLANES:
            for c in MP_CHANNELS:
                path, isc = build(d / f"{kind}_{p}{q}_{c}.bkm", c, p, q)
                out[(kind, p, q, c)] = (path, load_artifact(path), isc)
    return out


def _check_mp(entry, batch: int, seed: int) -> None:
    _, art, isc = entry
    ref = ReferenceProgram(art)
    x = mp_features(art.input_shape, batch, seed, isc)
    assert (x == 0).any() and (np.signbit(x) & (x == 0)).any()
    progs = [Program(art, kernel=k) for k in KERNELS]
    for view in art.views:
        want = ref.run(x, view)
        outs = [prog.run(x, view) for prog in progs]
        compare(outs[0], want, f"{KERNELS[0]} view {view}")
        for k, got in zip(KERNELS[1:], outs[1:]):
            np.testing.assert_array_equal(got, outs[0], err_msg=f"{k} differs from {KERNELS[0]} (view {view})")


@pytest.mark.parametrize("c", MP_CHANNELS)
@pytest.mark.parametrize(("p", "q"), MP_PLANES)
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_multiplane_matches_reference_batch1(mp_artifacts, kind, p, q, c):
    _check_mp(mp_artifacts[(kind, p, q, c)], 1, seed=7 * c + p + q)


@heavy
@pytest.mark.parametrize("c", MP_CHANNELS)
@pytest.mark.parametrize(("p", "q"), MP_PLANES)
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_multiplane_matches_reference_batch17(mp_artifacts, kind, p, q, c):
    _check_mp(mp_artifacts[(kind, p, q, c)], 17, seed=1000 + 7 * c + p + q)


def test_multiplane_runtime_auto_picks_neon(mp_artifacts):
    import binkit.runtime

    path, art, isc = mp_artifacts[("1d", 3, 2, 65)]
    assert "multiplane" in NeonBackend.features
    model = binkit.runtime.load(path)
    assert model.backend == "neon"
    ref = binkit.runtime.load(path, backend="reference")
    x = mp_features(art.input_shape, 3, 5, isc)
    for view in art.views:
        compare(model.logits(x, view), ref.logits(x, view), view)


def build_epilogues(path, o: int, seed: int = 7) -> str:
    """(16, 8, 8) input; epilogue paths of the binary ops. 'conv' (bconv2d 16 -> 32, 3x3 stride 2,
    -> prelu with some negative slopes -> reshape (128, 4) -> transpose -> blinear with a sign
    threshold: the conv writes channels at a stride), 'block' (1x1 bconv1d with a sign threshold to
    o channels, whose packed rows feed a 1x1 bconv1d -> prelu -> add -> bdwconv1d -> prelu (a
    negative shared slope) -> add -> transpose -> flatten -> linear_fp):
    o = 128 packs whole words of counts, o = 96 takes the partial-word path."""
    b = _Builder(seed)
    L = len(LABELS)
    x = b.op("bconv2d", ["input"], _bconv_attrs(16, [3, 3], [2, 2], [[1, 1], [1, 1]], [1, 1]),
             weight=b.packed(32, 3, 3, 16), **b.transform(32))                          # (32, 4, 4)
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(32, lo=-0.5, hi=0.5))
    x = b.op("reshape", [x], {"shape": [128, 4]})
    x = b.op("transpose", [x], {"perm": [1, 0]})                                      # (4, 128)
    x = b.op("blinear", [x], {"in_features": 128}, weight=b.packed(64, 128), **b.transform(64))
    x = b.op("flatten", [x])
    conv = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 256, lo=-0.2, hi=0.2), bias=b.f32(L))
    n_conv = len(b.ops)
    x = b.op("reshape", ["input"], {"shape": [128, 8]})
    x = b.op("bconv1d", [x], _bconv_attrs(128, [1], [1], [[0, 0]], [1]), weight=b.packed(64, 1, 128),
             **b.transform(64))
    act = b.op("prelu", [x], {"axis": 0}, slope=b.f32(64, lo=-0.5, hi=0.5))           # (64, 8)
    x = b.op("bconv1d", [act], _bconv_attrs(64, [1], [1], [[0, 0]], [1]), weight=b.packed(o, 1, 64),
             threshold=b.threshold(o, 64, np.int32))                                  # (o, 8) packed rows
    x = b.op("bconv1d", [x], _bconv_attrs(o, [1], [1], [[0, 0]], [1]), weight=b.packed(64, 1, o),
             **b.transform(64))
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(64, lo=-0.5, hi=0.5))
    res = b.op("add", [x, act])
    x = b.op("bdwconv1d", [res], _bconv_attrs(64, [5], [1], [[2, 2]], [1]), weight=b.packed(5, 64),
             **b.transform(64))
    x = b.op("prelu", [x], {"axis": 0}, slope=np.array([-0.25], np.float32))
    x = b.op("add", [x, res])
    x = b.op("transpose", [x], {"perm": [1, 0]})                                      # (8, 64)
    x = b.op("flatten", [x])
    block = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 512, lo=-0.1, hi=0.1), bias=b.f32(L))
    return b.save(path, (16, 8, 8), {"conv": list(range(n_conv)), "block": list(range(n_conv, len(b.ops)))},
                  {"conv": conv, "block": block})


@pytest.mark.parametrize("o", [128, 96])
def test_epilogue_paths_match_reference_all_kernels(tmp_path, o):
    from binkit_neon.engine import _Planner
    art = load_artifact(build_epilogues(tmp_path / f"epi{o}.bkm", o))
    p = _Planner(art, "block")
    p.plan()
    ops = p.finish()[0]
    assert any(op["kind"] == 2 and op.get("bits_out") and op["O"] == o for op in ops)  # packed counts
    p = _Planner(art, "conv")
    p.plan()
    ops = p.finish()[0]
    assert ops[0]["kind"] == 2 and ops[0]["out_so"] != 1  # channels written at a stride
    for batch, seed in ((1, 5), (9, 6)):
        _check_all_kernels(art, batch, seed)


def build_packed_map(path, o: int, seed: int = 11) -> str:
    """(16, 8, 8) input; bconv2d 16 -> o (3x3, stride 2, padding 1: several zero-padding patterns;
    some negative multipliers and one zero multiplier) -> prelu -> reshape (4 o, 4) -> transpose ->
    blinear. 'pos' (every slope > 0) and 'negc' (one negative slope: that channel's sign is constant,
    still a threshold): the conv writes the blinear's packed rows itself (signs from count thresholds,
    inverted where the multiplier is negative); 'neg' (negative slopes then an offset: the sign is not
    monotone in the count) and 'float' (the consumer is linear_fp) keep the float path."""
    b = _Builder(seed)
    L = len(LABELS)
    t = b.transform(o)
    t["multiplier"][0] = 0.0                                                         # a constant sign
    t["multiplier"][2] = -abs(t["multiplier"][2])                                    # inverted bits
    names = {}
    for view, slope in (("pos", b.f32(o, lo=0.05, hi=0.5)), ("negc", np.where(np.arange(o) == 1, -0.3, 0.2)),
                        ("neg", np.full(o, -0.5)), ("float", np.array([0.25], np.float32))):
        first = len(b.ops)
        x = b.op("bconv2d", ["input"], _bconv_attrs(16, [3, 3], [2, 2], [[1, 1], [1, 1]], [1, 1]),
                 weight=b.packed(o, 3, 3, 16), **t)                                    # (o, 4, 4)
        x = b.op("prelu", [x], {"axis": 0}, slope=np.asarray(slope, np.float32))
        if view == "neg":
            x = b.op("affine", [x], {"axis": 0}, multiplier=np.ones(o, np.float32),
                     offset=np.full(o, -0.3, np.float32))
        x = b.op("reshape", [x], {"shape": [4 * o, 4]})
        x = b.op("transpose", [x], {"perm": [1, 0]})                                  # (4, 4 o)
        if view == "float":
            x = b.op("flatten", [x])
            x = b.op("linear_fp", [x], {"input_sign": True}, weight=b.f32(L, 16 * o, lo=-0.2, hi=0.2))
        else:
            x = b.op("blinear", [x], {"in_features": 4 * o}, weight=b.packed(24, 4 * o), **b.transform(24))
            x = b.op("flatten", [x])
            x = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 96, lo=-0.2, hi=0.2), bias=b.f32(L))
        names[view] = (list(range(first, len(b.ops))), x)
    return b.save(path, (16, 8, 8), {v: ops for v, (ops, _) in names.items()}, {v: out for v, (_, out) in names.items()})


@pytest.mark.parametrize("o", [32, 13])
def test_conv_writes_consumer_packed_rows(tmp_path, o):
    from binkit_neon.engine import _Planner
    art = load_artifact(build_packed_map(tmp_path / f"map{o}.bkm", o))
    for view, fused in (("pos", True), ("negc", True), ("neg", False), ("float", False)):
        p = _Planner(art, view)
        p.plan()
        ops = p.finish()[0]
        assert (ops[0].get("gsrc") is not None) == fused, view
        if fused:
            assert ops[0]["post"] == [] and ops[1]["prepacked"] == 1
            assert ops[0]["ginv"].any()  # some channels with a negative multiplier: inverted bits
    for batch, seed in ((1, 21), (7, 22)):
        _check_all_kernels(art, batch, seed)


def test_run_fast_path_falls_back(small):
    small = Program(small)
    x = features(small.input_shape, 3, 5)
    want = small.run(x)
    np.testing.assert_array_equal(small.run(np.asfortranarray(x)), want)      # not C-contiguous
    with pytest.raises(ValueError, match="dtype float32"):
        small.run(x.astype(">f4"))                                                # other byte order
    np.testing.assert_array_equal(small.run(x[:1]), want[:1])
    with pytest.raises(ValueError, match="NaN"):
        small.run(np.full_like(x, np.nan))


def build_fp_bits(path, o: int, seed: int = 13) -> str:
    """(2, 12, 16) input; conv2d_fp 2 -> o (3x3, stride 2, padding 1: (o, 6, 8)) -> affine -> prelu
    -> bconv2d o -> 8 (5x5, stride 2, padding 2) -> flatten -> linear_fp. 'pos' (positive slopes)
    'neg' (some negative slopes: the bits are packed from the same float values, so still exact)
    and 'relu' (a relu after the prelu) let the float conv write the binary conv's packed rows when o is a multiple of 16 (and
    not of 64); 'add' (an add after the prelu) and 'two' (a second binary reader) keep floats."""
    b = _Builder(seed)
    L = len(LABELS)
    names = {}
    for view in ("pos", "neg", "relu", "add", "two"):
        first = len(b.ops)
        x = b.op("conv2d_fp", ["input"], _conv_attrs([2, 2], [[1, 1], [1, 1]], [1, 1], groups=1, input_sign=False),
                 weight=b.f32(o, 2, 3, 3), bias=b.f32(o))                                 # (o, 6, 8)
        x = b.op("affine", [x], {"axis": 0}, multiplier=b.f32(o, lo=0.5, hi=1.5), offset=b.f32(o, lo=-0.3, hi=0.3))
        slope = b.f32(o, lo=-0.5, hi=0.5) if view == "neg" else b.f32(o, lo=0.05, hi=0.5)
        x = b.op("prelu", [x], {"axis": 0}, slope=slope)
        if view == "relu":
            x = b.op("relu", [x])
        if view == "add":
            x = b.op("add", [x, x])
        y = b.op("bconv2d", [x], _bconv_attrs(o, [5, 5], [2, 2], [[2, 2], [2, 2]], [1, 1]),
                 weight=b.packed(8, 5, 5, o), **b.transform(8))                         # (8, 3, 4)
        if view == "two":
            z = b.op("bconv2d", [x], _bconv_attrs(o, [5, 5], [2, 2], [[2, 2], [2, 2]], [1, 1]),
                     weight=b.packed(8, 5, 5, o), **b.transform(8))
            y = b.op("add", [y, z])
        y = b.op("flatten", [y])
        y = b.op("linear_fp", [y], {"input_sign": False}, weight=b.f32(L, 96, lo=-0.2, hi=0.2), bias=b.f32(L))
        names[view] = (list(range(first, len(b.ops))), y)
    return b.save(path, (2, 12, 16), {v: ops for v, (ops, _) in names.items()}, {v: out for v, (_, out) in names.items()})


@pytest.mark.parametrize("o", [16, 32, 24, 64])
def test_float_conv_writes_binary_conv_packed_rows(tmp_path, o):
    from binkit_neon.engine import _Planner
    art = load_artifact(build_fp_bits(tmp_path / f"fpb{o}.bkm", o))
    for view in art.views:
        p = _Planner(art, view)
        p.plan()
        ops = p.finish()[0]
        fused = view in ("pos", "neg", "relu") and o in (16, 32)
        assert ops[0]["kind"] == 1 and bool(ops[0].get("bits_out")) == fused, view
        b = next(op for op in ops if op["kind"] == 2)
        assert bool(b.get("prepacked")) == fused and b["rowmode"] == int(o % 64 != 0), view
    for batch, seed in ((1, 31), (5, 32)):
        _check_all_kernels(art, batch, seed)


def build_linear_rows(path, seed: int = 17) -> str:
    """(3, 40) input; 'one': flatten -> linear_fp 120 -> 37 (three 16-output chunks, a 5-output
    tail, inputs not a multiple of 16) -> prelu -> linear_fp 37 -> 5 (input_sign): one row each,
    vectorised over the inputs; 'rows': linear_fp 40 -> 20 on 3 rows (per-output vectors) ->
    flatten -> linear_fp 60 -> 5."""
    b = _Builder(seed)
    L = len(LABELS)
    x = b.op("flatten", ["input"])
    x = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(37, 120), bias=b.f32(37))
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(37, lo=-0.5, hi=0.5))
    one = b.op("linear_fp", [x], {"input_sign": True}, weight=b.f32(L, 37).astype(np.float16), bias=b.f32(L))
    n_one = len(b.ops)
    x = b.op("linear_fp", ["input"], {"input_sign": False}, weight=b.f32(20, 40), bias=b.f32(20))
    x = b.op("flatten", [x])
    rows = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 60, lo=-0.2, hi=0.2))
    return b.save(path, (3, 40), {"one": list(range(n_one)), "rows": list(range(n_one, len(b.ops)))},
                  {"one": one, "rows": rows})


def test_linear_vectorised_over_inputs(tmp_path):
    from binkit_neon.engine import _Planner
    art = load_artifact(build_linear_rows(tmp_path / "lin.bkm"))
    for view, want in (("one", [1, 1]), ("rows", [0, 1])):
        p = _Planner(art, view)
        p.plan()
        ops = p.finish()[0]
        assert [op.get("ivec", 0) for op in ops if op["kind"] == 1] == want, view
    for batch, seed in ((1, 41), (6, 42)):
        _check_all_kernels(art, batch, seed)


# (stride, padding, dilation) of 5-tap memory convs; each keeps pl + pr <= 8 (the 5-tap path)
MEMORY_GEOMETRIES = [(1, [2, 2], 1), (2, [3, 1], 1), (1, [4, 4], 2), (1, [0, 4], 1), (3, [4, 0], 1)]


def build_memory_convs(path, c: int, t: int, seed: int = 23) -> str:
    """(t, c) input, transposed to channels-contiguous (c, t) as in the DFSMN, then one view per
    5-tap bdwconv1d geometry (MEMORY_GEOMETRIES) and chain: 'plain<i>' (the transform only),
    'prelu<i>' (per-channel slopes, some negative) and, where the length is kept, 'res<i>' (a
    shared negative slope, then the residual add, as in the DFSMN memory) -> transpose -> flatten
    -> linear_fp."""
    b = _Builder(seed)
    L = len(LABELS)
    views = {}
    for i, (s, pad, d) in enumerate(MEMORY_GEOMETRIES):
        to = (t + sum(pad) - d * 4 - 1) // s + 1
        if to < 1:
            continue
        for chain in ("plain", "prelu", "res") if to == t else ("plain", "prelu"):
            first = len(b.ops)
            src = b.op("transpose", ["input"], {"perm": [1, 0]})                          # (c, t)
            x = b.op("bdwconv1d", [src], _bconv_attrs(c, [5], [s], [pad], [d]), weight=b.packed(5, c),
                     **b.transform(c))
            if chain == "prelu":
                x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(c, lo=-0.5, hi=0.5))
            elif chain == "res":
                x = b.op("prelu", [x], {"axis": 0}, slope=np.array([-0.25], np.float32))
                x = b.op("add", [x, src])
            x = b.op("transpose", [x], {"perm": [1, 0]})
            x = b.op("flatten", [x])
            x = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, to * c, lo=-0.2, hi=0.2), bias=b.f32(L))
            views[f"{chain}{i}"] = (list(range(first, len(b.ops))), x)
    return b.save(path, (t, c), {v: ops for v, (ops, _) in views.items()}, {v: out for v, (_, out) in views.items()})


@pytest.mark.parametrize(("c", "t"), [(64, 8), (128, 8), (192, 3), (64, 1), (128, 13)])
def test_memory_conv_int8_path_matches_reference_all_kernels(tmp_path, c, t):
    """The AVX-512 5-tap memory conv in int8 lanes (channels in whole 64s, contiguous) gives the
    generic path's bits in every geometry (stride, dilation, asymmetric padding, clips shorter than
    the kernel: every valid-tap count) and chain, exact zeros included."""
    from binkit_neon.engine import _Planner
    art = load_artifact(build_memory_convs(tmp_path / f"mem{c}_{t}.bkm", c, t))
    for view in art.views:
        p = _Planner(art, view)
        p.plan()
        bdw = [op for op in p.finish()[0] if op["kind"] == 3]
        assert len(bdw) == 1 and bdw[0]["in_sc"] == 1 and bdw[0]["kw"] == 5, view
    for batch, seed in ((1, 31), (5, 32)):
        _check_all_kernels(art, batch, seed)


@pytest.mark.parametrize("t", [1, 7, 8, 13])
def test_threshold_gemm_packed_rows_all_kernels(tmp_path, t):
    """A 1x1 bconv1d with sign thresholds (128 and 192 channels: whole words) whose packed rows
    feed a 1x1 bconv1d, for position counts on and off the GEMM's 4-row tiles: the same bits on
    every kernel, equal to the reference."""
    from binkit_neon.engine import _Planner
    b = _Builder(29 + t)
    L = len(LABELS)
    views = {}
    for o in (128, 192):
        first = len(b.ops)
        x = b.op("bconv1d", ["input"], _bconv_attrs(64, [1], [1], [[0, 0]], [1]), weight=b.packed(o, 1, 64),
                 threshold=b.threshold(o, 64, np.int32))
        x = b.op("bconv1d", [x], _bconv_attrs(o, [1], [1], [[0, 0]], [1]), weight=b.packed(32, 1, o),
                 **b.transform(32))
        x = b.op("flatten", [x])
        x = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 32 * t, lo=-0.2, hi=0.2), bias=b.f32(L))
        views[f"o{o}"] = (list(range(first, len(b.ops))), x)
    art = load_artifact(b.save(tmp_path / f"thr{t}.bkm", (64, t), {v: ops for v, (ops, _) in views.items()},
                               {v: out for v, (_, out) in views.items()}))
    for view in art.views:
        p = _Planner(art, view)
        p.plan()
        ops = p.finish()[0]
        assert ops[0]["kind"] == 2 and ops[0].get("bits_out") and ops[0].get("cthr") is not None, view
    for batch, seed in ((1, 41), (6, 42)):
        _check_all_kernels(art, batch, seed)


def build_front_end(path, o: int, seed: int, slope, shifts: bool = False) -> str:
    """(16, 16, 16) input; the DFSMN front-end's hand-over: bconv2d 16 -> o (5x5, stride 2,
    padding 2: 9 padding patterns; channel 1's multiplier negative) -> (o, 8, 8) -> prelu
    (``slope``) [-> affine, multiplier 1] -> reshape (8 o, 8) -> transpose [-> affine, multiplier
    1, one offset per feature: ReActNet's RSign shift] -> blinear -> flatten -> linear_fp."""
    b = _Builder(seed)
    L = len(LABELS)
    t = b.transform(o)
    t["multiplier"][1] = -abs(t["multiplier"][1])                                          # inverted bits
    x = b.op("bconv2d", ["input"], _bconv_attrs(16, [5, 5], [2, 2], [[2, 2], [2, 2]], [1, 1]),
             weight=b.packed(o, 5, 5, 16), **t)                                            # (o, 8, 8)
    x = b.op("prelu", [x], {"axis": 0}, slope=np.asarray(slope, np.float32))
    if shifts:
        x = b.op("affine", [x], {"axis": 0}, multiplier=np.ones(o, np.float32), offset=b.f32(o, lo=-0.2, hi=0.2))
    x = b.op("reshape", [x], {"shape": [8 * o, 8]})
    x = b.op("transpose", [x], {"perm": [1, 0]})                                          # (8, 8 o)
    if shifts:
        x = b.op("affine", [x], {"axis": 1}, multiplier=np.ones(8 * o, np.float32),
                 offset=b.f32(8 * o, lo=-0.3, hi=0.3))
    x = b.op("blinear", [x], {"in_features": 8 * o}, weight=b.packed(24, 8 * o), **b.transform(24))
    x = b.op("flatten", [x])
    x = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 192, lo=-0.2, hi=0.2), bias=b.f32(L))
    return b.save(path, (16, 16, 16), {"v": list(range(len(b.ops)))}, {"v": x})


@pytest.mark.parametrize("o", [8, 32, 12])
def test_conv_writes_transposed_front_end_rows_all_kernels(tmp_path, o):
    """The DFSMN front-end's hand-over: bconv2d 16 -> o (5x5, stride 2, padding 2: 9 padding
    patterns) on 16x16 -> (o, 8, 8) -> prelu (some slopes negative, one channel inverted by a
    negative multiplier) -> reshape (8 o, 8) -> transpose -> blinear. With whole words (o = 8, 32)
    the planner marks the transposed byte order (AVX-512 keeps 8 positions' counts in registers);
    o = 12 keeps the gather. The same bits on every kernel, equal to the reference."""
    from binkit_neon.engine import _Planner
    slope = np.where(np.arange(o) % 3 == 0, -0.3, 0.2).astype(np.float32)
    art = load_artifact(build_front_end(tmp_path / f"front{o}.bkm", o, 53 + o, slope))
    p = _Planner(art, "v")
    p.plan()
    ops = p.finish()[0]
    assert ops[0]["kind"] == 2 and ops[0].get("gsrc") is not None
    assert (ops[0].get("tpos") is not None) == (o % 8 == 0)
    for batch, seed in ((1, 61), (7, 62)):
        _check_all_kernels(art, batch, seed)


def build_rprelu_chains(path, seed: int = 13) -> str:
    """(16, 8, 8) input as (128, 8); the epilogue chains of a ReActNet DFSMN (RPReLU = prelu then
    affine), each on the engine's fast epilogue paths. View 'block': 1x1 bconv1d 128 -> 64 ->
    prelu -> affine (expand); 1x1 bconv1d 64 -> 64 -> prelu -> affine -> add (project, the
    register-hoisted 1x1 path); bdwconv1d 64 channels 5 taps -> prelu -> affine -> add (the DFSMN
    memory; the int8 path on AVX-512); bdwconv1d 3 taps -> prelu (one shared negative slope) ->
    affine -> add (the general depthwise path); bconv1d 3 taps, padded -> affine -> add (border
    patterns: per-position epilogue); transpose, flatten, linear_fp. View 'dw48': bconv1d 128 ->
    48 -> prelu -> affine, then bdwconv1d 48 channels 5 taps -> prelu -> affine -> add (the
    portable 5-tap path). Some affine multipliers are negative."""
    b = _Builder(seed)
    L = len(LABELS)

    def rprelu(x, c, add=None, slope=None):
        x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(c, lo=-0.5, hi=0.5) if slope is None else slope)
        mult = b.f32(c, lo=0.5, hi=1.5) * np.where(np.arange(c) % 7 == 3, -1, 1).astype(np.float32)
        x = b.op("affine", [x], {"axis": 0}, multiplier=mult, offset=b.f32(c, lo=-0.3, hi=0.3))
        return x if add is None else b.op("add", [x, add])

    first = len(b.ops)
    x0 = b.op("reshape", ["input"], {"shape": [128, 8]})
    a = rprelu(b.op("bconv1d", [x0], _bconv_attrs(128, [1], [1], [[0, 0]], [1]), weight=b.packed(64, 1, 128),
                    **b.transform(64)), 64)
    p = rprelu(b.op("bconv1d", [a], _bconv_attrs(64, [1], [1], [[0, 0]], [1]), weight=b.packed(64, 1, 64),
                    **b.transform(64)), 64, add=a)
    m = rprelu(b.op("bdwconv1d", [p], _bconv_attrs(64, [5], [1], [[2, 2]], [1]), weight=b.packed(5, 64),
                    **b.transform(64)), 64, add=p)
    d = rprelu(b.op("bdwconv1d", [m], _bconv_attrs(64, [3], [1], [[1, 1]], [1]), weight=b.packed(3, 64),
                    **b.transform(64)), 64, add=m, slope=np.array([-0.25], np.float32))
    e = b.op("bconv1d", [d], _bconv_attrs(64, [3], [1], [[1, 1]], [1]), weight=b.packed(64, 3, 64), **b.transform(64))
    e = b.op("affine", [e], {"axis": 0}, multiplier=b.f32(64, lo=-1.0, hi=1.0), offset=b.f32(64))
    e = b.op("add", [e, d])
    x = b.op("flatten", [b.op("transpose", [e], {"perm": [1, 0]})])
    block = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 512, lo=-0.1, hi=0.1), bias=b.f32(L))
    n_block = len(b.ops)
    x0 = b.op("reshape", ["input"], {"shape": [128, 8]})
    a = rprelu(b.op("bconv1d", [x0], _bconv_attrs(128, [1], [1], [[0, 0]], [1]), weight=b.packed(48, 1, 128),
                    **b.transform(48)), 48)
    m = rprelu(b.op("bdwconv1d", [a], _bconv_attrs(48, [5], [1], [[2, 2]], [1]), weight=b.packed(5, 48),
                    **b.transform(48)), 48, add=a)
    x = b.op("flatten", [b.op("transpose", [m], {"perm": [1, 0]})])
    dw48 = b.op("linear_fp", [x], {"input_sign": False}, weight=b.f32(L, 384, lo=-0.1, hi=0.1), bias=b.f32(L))
    return b.save(path, (16, 8, 8), {"block": list(range(first, n_block)), "dw48": list(range(n_block, len(b.ops)))},
                  {"block": block, "dw48": dw48})


def test_rprelu_epilogue_chains_are_fused_and_match_all_kernels(tmp_path):
    """prelu -> affine [-> add] (ReActNet's RPReLU) runs in the binary ops' fast epilogues: every
    binary op takes its chain as post-ops, and every kernel gives the same bits, close to the
    reference."""
    from binkit_neon.engine import _BCONV, _BDW, _P_ADD, _P_AFFINE, _P_PRELU, _Planner

    art = load_artifact(build_rprelu_chains(tmp_path / "rprelu.bkm"))
    want = {"block": [[_P_PRELU, _P_AFFINE], [_P_PRELU, _P_AFFINE, _P_ADD], [_P_PRELU, _P_AFFINE, _P_ADD],
                      [_P_PRELU, _P_AFFINE, _P_ADD], [_P_AFFINE, _P_ADD]],
            "dw48": [[_P_PRELU, _P_AFFINE], [_P_PRELU, _P_AFFINE, _P_ADD]]}
    for view, chains in want.items():
        p = _Planner(art, view)
        p.plan()
        ops = p.finish()[0]
        binary = [op for op in ops if op["kind"] in (_BCONV, _BDW)]
        assert [[q["kind"] for q in op["post"]] for op in binary] == chains, view
    for batch, seed in ((1, 31), (5, 32)):
        _check_all_kernels(art, batch, seed)


def _check_fold_is_exact(art, x: np.ndarray, monkeypatch) -> None:
    """Every kernel gives exactly the bits of the plan without ``_fold_input_shift`` (the affine
    as its own pass), close to the reference, on every view."""
    from binkit_neon.engine import _Planner
    folded = {k: {v: Program(art, kernel=k).run(x, v) for v in art.views} for k in KERNELS}
    monkeypatch.setattr(_Planner, "_fold_input_shift", lambda self, pos: False)
    ref = ReferenceProgram(art)
    for view in art.views:
        want = ref.run(x, view)
        for k in KERNELS:
            np.testing.assert_array_equal(folded[k][view].view(np.uint32),
                                          Program(art, kernel=k).run(x, view).view(np.uint32), err_msg=f"{k} {view}")
            compare(folded[k][view], want, f"{k} {view}")


def build_input_shifts(path, c: int, seed: int = 41) -> str:
    """(8, c) input transposed to (c, 8); ReActNet's RSign shifts (affine, multiplier 1) in front of
    binary ops whose input also feeds a skip add, as in a ReActNet DFSMN block. View 'block': shift
    -> bdwconv1d 5 taps (+ the input) -> shift -> 1x1 bconv1d c -> 2c (direct) -> prelu -> 1x1
    bconv1d 2c -> c (+ the memory) -> shift -> bconv1d 3 taps padded (im2col) (+ itself) ->
    transpose -> shift -> blinear c -> 16 (+ its input, via a float copy) -> flatten -> linear_fp.
    View 'scaled': the same first shift with multiplier 2 (not a shift: stays an element-wise op).
    The first shift's offsets are 0.25 / -0.5 / 0, and the features put exact -offset values in
    front of it (x + b = 0 packs as +1)."""
    b = _Builder(seed)
    L = len(LABELS)

    def shift(x, n, axis=0, mult=1.0):
        return b.op("affine", [x], {"axis": axis}, multiplier=np.full(n, mult, np.float32),
                    offset=b.f32(n, lo=-0.4, hi=0.4))

    first = len(b.ops)
    x = b.op("transpose", ["input"], {"perm": [1, 0]})                                 # (c, 8)
    off0 = np.resize(np.array([0.25, -0.5, 0.0], np.float32), c)
    s = b.op("affine", [x], {"axis": 0}, multiplier=np.ones(c, np.float32), offset=off0)
    m = b.op("bdwconv1d", [s], _bconv_attrs(c, [5], [1], [[2, 2]], [1]), weight=b.packed(5, c), **b.transform(c))
    m = b.op("add", [m, x])
    h = b.op("bconv1d", [shift(m, c)], _bconv_attrs(c, [1], [1], [[0, 0]], [1]), weight=b.packed(2 * c, 1, c),
             **b.transform(2 * c))
    h = b.op("prelu", [h], {"axis": 0}, slope=b.f32(2 * c, lo=-0.5, hi=0.5))
    f = b.op("bconv1d", [h], _bconv_attrs(2 * c, [1], [1], [[0, 0]], [1]), weight=b.packed(c, 1, 2 * c),
             **b.transform(c))
    f = b.op("add", [f, m])
    g = b.op("bconv1d", [shift(f, c)], _bconv_attrs(c, [3], [1], [[1, 1]], [1]), weight=b.packed(c, 3, c),
             **b.transform(c))
    g = b.op("add", [g, f])
    r = b.op("transpose", [g], {"perm": [1, 0]})                                        # (8, c)
    y = b.op("blinear", [shift(r, c, axis=1)], {"in_features": c}, weight=b.packed(16, c), **b.transform(16))
    z = b.op("linear_fp", [b.op("flatten", [r])], {"input_sign": False}, weight=b.f32(16, 8 * c, lo=-0.1, hi=0.1))
    y = b.op("flatten", [b.op("add", [y, b.op("reshape", [z], {"shape": [1, 16]})])])
    block = b.op("linear_fp", [y], {"input_sign": False}, weight=b.f32(L, 8 * 16, lo=-0.2, hi=0.2), bias=b.f32(L))
    n_block = len(b.ops)
    x = b.op("transpose", ["input"], {"perm": [1, 0]})
    m = b.op("bdwconv1d", [shift(x, c, mult=2.0)], _bconv_attrs(c, [5], [1], [[2, 2]], [1]), weight=b.packed(5, c),
             **b.transform(c))
    m = b.op("flatten", [b.op("add", [m, x])])
    scaled = b.op("linear_fp", [m], {"input_sign": False}, weight=b.f32(L, 8 * c, lo=-0.1, hi=0.1), bias=b.f32(L))
    return b.save(path, (8, c), {"block": list(range(first, n_block)), "scaled": list(range(n_block, len(b.ops)))},
                  {"block": block, "scaled": scaled})


@pytest.mark.parametrize("c", [16, 48, 64, 65, 128])
def test_input_shifts_fold_into_the_readers_packing(tmp_path, c, monkeypatch):
    """An affine with multiplier 1 whose only reader is a one-plane binary op (its input also
    feeding a skip add) is done by the reader while it packs: no element-wise op is left for it,
    the depthwise (int8 path at 64 / 128 channels), direct 1x1, im2col and linear readers carry
    the offsets, and every kernel gives exactly the bits of the unfolded plan (the affine as its
    own pass), exact ``x + b = 0`` included. A multiplier of 2 is not folded."""
    from binkit_neon.engine import _BCONV, _BDW, _EPI, _Planner

    art = load_artifact(build_input_shifts(tmp_path / f"shift{c}.bkm", c))
    p = _Planner(art, "block")
    p.plan()
    ops = p.finish()[0]
    readers = [op for op in ops if op["kind"] in (_BCONV, _BDW) and op.get("ishift") is not None]
    assert [(op["kind"], op["direct"] if op["kind"] == _BCONV else None) for op in readers] == \
        [(_BDW, None), (_BCONV, 1), (_BCONV, 0), (_BCONV, 1)]
    assert all(len(op["ishift"]) % 64 == 0 and op["ishift"].dtype == np.float32 for op in readers)
    assert not any(op["kind"] == _EPI and any(q["kind"] == 1 for q in op["post"]) for op in ops)
    p = _Planner(art, "scaled")
    p.plan()
    assert [op["kind"] for op in p.finish()[0]][:2] == [_EPI, _BDW]

    x = features(art.input_shape, 6, seed=c)
    x[1, :, 0::3] = -0.25  # x + 0.25 = 0 on the channels with offset 0.25: bit 0 (+1)
    x[1, :, 1::3] = 0.5
    x[2, :, 2::3] = -0.0
    _check_fold_is_exact(art, x, monkeypatch)


@pytest.mark.parametrize(("o", "slopes"), [(8, "pos"), (32, "pos"), (12, "pos"), (8, "vee")])
def test_front_end_rows_take_the_readers_input_shift(tmp_path, o, slopes, monkeypatch):
    """ReActNet's DFSMN front-end: bconv2d -> prelu -> affine -> reshape -> transpose -> RSign shift
    (affine, multiplier 1, one offset per fc1 input feature) -> blinear. With positive slopes each
    (row, feature)'s sign is a threshold in the conv's count, so the conv writes the blinear's
    packed rows with the shift folded in (no element-wise op left, the blinear packs nothing);
    with negative slopes (sign not monotone once shifted) the blinear packs the floats with the
    shift. Every kernel gives exactly the bits of the plan without the fold."""
    from binkit_neon.engine import _BCONV, _EPI, _Planner
    rng = np.random.default_rng(71 + o)
    slope = rng.uniform(0.05, 0.5, o) if slopes == "pos" else np.full(o, -0.3)
    art = load_artifact(build_front_end(tmp_path / f"shift{o}.bkm", o, 71 + o, slope, shifts=True))
    p = _Planner(art, "v")
    p.plan()
    ops = p.finish()[0]
    assert not any(op["kind"] == _EPI for op in ops)
    conv, lin = [op for op in ops if op["kind"] == _BCONV]
    if slopes == "pos":
        assert conv.get("gsrc") is not None and conv["post"] == [] and conv["ginv"].any()
        assert lin["prepacked"] == 1 and lin.get("ishift") is None
    else:
        assert conv.get("gsrc") is None and lin["prepacked"] == 0 and lin["ishift"] is not None
    x = features(art.input_shape, 7, seed=o)
    _check_fold_is_exact(art, x, monkeypatch)


@pytest.mark.parametrize("c", [16, 24, 65])
def test_input_shifts_fold_into_2d_depthwise_staging(tmp_path, c, monkeypatch):
    """BC-ResNet's RSign shift in front of a 2-D binary depthwise conv whose input also feeds the
    residual add: the depthwise op stages fl(x + b) itself, from a channels-last value (a 1x1
    bconv2d's output, vector path, view 'cl') and from the channel-first input (strided path,
    view 'cf'). Every kernel gives exactly the bits of the plan without the fold."""
    from binkit_neon.engine import _BDW2, _EPI, _Planner
    b = _Builder(83 + c)
    L = len(LABELS)
    views = {}
    for view in ("cl", "cf"):
        first = len(b.ops)
        x = "input"
        if view == "cl":
            x = b.op("bconv2d", [x], _bconv_attrs(c, [1, 1], [1, 1], [[0, 0], [0, 0]], [1, 1]),
                     weight=b.packed(c, 1, 1, c), **b.transform(c))
        s = b.op("affine", [x], {"axis": 0}, multiplier=np.ones(c, np.float32), offset=b.f32(c, lo=-0.4, hi=0.4))
        y = b.op("bdwconv2d", [s], _bconv_attrs(c, [3, 3], [1, 1], [[1, 1], [1, 1]], [1, 1]),
                 weight=b.packed(3, 3, c), **b.transform(c))
        y = b.op("flatten", [b.op("add", [y, x])])
        y = b.op("linear_fp", [y], {"input_sign": False}, weight=b.f32(L, 30 * c, lo=-0.1, hi=0.1), bias=b.f32(L))
        views[view] = (list(range(first, len(b.ops))), y)
    art = load_artifact(b.save(tmp_path / f"dw2_{c}.bkm", (c, 6, 5), {v: ops for v, (ops, _) in views.items()},
                               {v: out for v, (_, out) in views.items()}))
    for view, in_sc in (("cl", 1), ("cf", 30)):
        p = _Planner(art, view)
        p.plan()
        ops = p.finish()[0]
        dw = [op for op in ops if op["kind"] == _BDW2]
        assert len(dw) == 1 and dw[0]["ishift"] is not None and dw[0]["in_sc"] == in_sc, view
        assert not any(op["kind"] == _EPI and op["post"][0]["kind"] != 4 for op in ops), view
    x = features(art.input_shape, 5, seed=c)
    _check_fold_is_exact(art, x, monkeypatch)
