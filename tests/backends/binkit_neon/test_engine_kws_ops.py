"""The compiled engine (backend "neon") on the ops the KWS backbones add: ``bdwconv2d``,
``avgpool2d``, ``mean``, ``silu`` and broadcasting ``add``, against the numpy reference backend.

The torch-free tests (which the aarch64 CI stage runs without torch) use the hand-written
artifact of ``tests/kwsparts.py`` (1, 16, 63, 64, 65, 70 and 130 channels, both
``count_include_pad``) and artifacts built here: binary depthwise 2-D convs with strides,
dilations and asymmetric padding read straight from the features (exact zeros, a non
channels-last layout), with the float transform and every fused post-op (affine, prelu, relu,
silu, same-shape add), with a sign threshold writing packed rows for a 1x1 binary conv or feeding
another depthwise conv; average pools with and without ``count_include_pad``; means over every
axis combination with and without ``keepdims`` (also over a value whose layout no axis order
describes); broadcasting adds along each axis, with the small operand first or second and both
operands broadcast; silu on values whose exp overflows. The torch tests export ``KwsOpsNet`` and
``BroadcastNet`` (``tests/testnets.py``).

Checks: every available kernel variant gives bitwise identical logits; against the reference,
per clip max |engine - reference| / max |reference| <= 1e-4 and the same argmax (all clips for
small batches, >= 99.9 % of 1024 random clips, the bound of test_engine_torch.py, for the large
ones: a float32 rounding can flip a sign that a later binary op reads).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from artifact_builder import LABELS, ArtifactBuilder
from kwsparts import IN_SHAPE, kws_ops_parts

import binkit.runtime
from binkit.runtime.artifact import load_artifact, required_features, save_artifact
from binkit.runtime.bits import pack_signs
from binkit.runtime.reference import ReferenceProgram

binkit_neon = pytest.importorskip("binkit_neon")
from binkit_neon.engine import NeonBackend, Program

RTOL = 1e-4
KERNELS = binkit_neon.available_kernels()
QUICK = os.environ.get("BINKIT_ENGINE_QUICK") == "1"
heavy = pytest.mark.skipif(QUICK, reason="BINKIT_ENGINE_QUICK=1 (emulated CI stage)")
KWS_FEATURES = {"bdwconv2d", "avgpool2d", "mean", "silu", "broadcast_add"}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class _Builder(ArtifactBuilder):
    """The KWS ops' artifacts: depthwise 2-D convs, 1x1 binary convs, dyadic float convs."""

    def transform(self, out: int) -> dict[str, np.ndarray]:
        sign = np.where(self.rng.random(out) < 0.2, -1, 1).astype(np.float32)
        return {"multiplier": self.f32(out, lo=0.05, hi=0.4) * sign, "offset": self.f32(out, lo=-0.5, hi=0.5)}

    def bdw2(self, x: str, c: int, kernel, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
             threshold: bool = False) -> str:
        kh, kw = kernel
        out = {"threshold": self.rng.integers(-kh * kw // 2, kh * kw // 2 + 1, c).astype(np.int32)} if threshold \
            else self.transform(c)
        return self.op("bdwconv2d", [x], {"in_channels": c, "kernel_size": list(kernel), "stride": list(stride),
                                          "padding": [list(p) for p in padding], "dilation": list(dilation)},
                       weight=pack_signs(self.rng.standard_normal((kh, kw, c))), **out)

    def bconv1x1(self, x: str, c: int, o: int) -> str:
        return self.op("bconv2d", [x], {"in_channels": c, "kernel_size": [1, 1], "stride": [1, 1],
                                        "padding": [[0, 0], [0, 0]], "dilation": [1, 1]},
                       weight=pack_signs(self.rng.standard_normal((o, 1, 1, c))), **self.transform(o))

    def conv_fp(self, x: str, c: int, o: int, k: int = 1) -> str:
        """Dyadic weights (multiples of 1/16) and biases (1/64): on dyadic features (multiples of
        1/8) the conv is exact in float32, so a binary op reading it sees the reference's signs."""
        w = np.round(self.f32(o, c, k, k, lo=-0.5, hi=0.5) * 16) / 16
        bias = np.round(self.f32(o, lo=-0.2, hi=0.2) * 64) / 64
        return self.op("conv2d_fp", [x], {"stride": [1, 1], "padding": [[k // 2] * 2] * 2, "dilation": [1, 1],
                                          "groups": 1, "input_sign": False}, weight=w.astype(np.float32),
                       bias=bias.astype(np.float32))

    def head(self, x: str, i: int) -> str:
        return self.op("linear_fp", [x], {"input_sign": False}, weight=self.f32(len(LABELS), i), bias=self.f32(len(LABELS)))

    save = ArtifactBuilder.write


def features(shape, batch: int, seed: int, dyadic: bool = False) -> np.ndarray:
    """Normal features with exact zeros (+0.0 and -0.0: sign +1) and a zero border in clip 0;
    ``dyadic``: rounded to multiples of 1/8 (see ``_Builder.conv_fp``)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    if dyadic:
        x = np.round(x * 8) / 8
    zeros = rng.random(x.shape) < 0.15
    x[zeros] = np.where(rng.random(int(zeros.sum())) < 0.5, 0.0, -0.0).astype(np.float32)
    x[0, ..., :2] = 0.0
    return x


def _rel(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got - want).max(-1) / np.maximum(np.abs(want).max(-1), 1e-30)


def check(art, x: np.ndarray, strict: bool = True) -> None:
    """Every view: all kernel variants bitwise identical and close to the reference (every clip
    when ``strict``, else >= 99.9 % of them)."""
    ref = ReferenceProgram(art)
    for view in art.views:
        want = ref.run(x, view)
        first = None
        for k in KERNELS:
            got = Program(art, kernel=k).run(x, view)
            assert got.dtype == np.float32 and got.shape == want.shape
            if first is None:
                first = got
                rel, agree = _rel(got, want), got.argmax(-1) == want.argmax(-1)
                if strict:
                    assert rel.max() <= RTOL, (view, float(rel.max()))
                    assert agree.all(), view
                else:
                    assert (rel <= RTOL).mean() >= 0.999, (view, np.sort(rel)[-5:])
                    assert agree.mean() >= 0.999, (view, agree.mean())
            else:
                np.testing.assert_array_equal(got.view(np.uint32), first.view(np.uint32),
                                              err_msg=f"{k} differs from {KERNELS[0]} (view {view})")


# ---------------------------------------------------------------------------------------------
# the kwsparts artifact
# ---------------------------------------------------------------------------------------------

CHANNELS = [1, 16, 63, 64, 65, 70, 130]


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    d = tmp_path_factory.mktemp("kws")
    out = {}
    for c in CHANNELS:
        for inc in (False, True):
            path = d / f"k{c}{inc}.bkm"
            save_artifact(path, *kws_ops_parts(c=c, seed=c, count_include_pad=inc))
            out[(c, inc)] = load_artifact(path)
    return out


@pytest.mark.parametrize("inc", [False, True])
@pytest.mark.parametrize("c", CHANNELS)
def test_kwsparts_batch1(kws, c, inc):
    check(kws[(c, inc)], features(IN_SHAPE, 1, seed=c))


@heavy
@pytest.mark.parametrize("inc", [False, True])
@pytest.mark.parametrize("c", [16, 65, 70])
def test_kwsparts_1024_clips(kws, c, inc):
    check(kws[(c, inc)], features(IN_SHAPE, 1024, seed=100 + c), strict=False)


def test_kwsparts_batch_equals_single_clips(kws):
    art = kws[(70, False)]
    prog = Program(art)
    x = features(IN_SHAPE, 9, seed=3)
    batch = prog.run(x, "full")
    for i in range(len(x)):
        np.testing.assert_array_equal(prog.run(x[i:i + 1], "full").view(np.uint32), batch[i:i + 1].view(np.uint32))


def test_kwsparts_constant_inputs(kws):
    art = kws[(65, True)]
    ref, prog = ReferenceProgram(art), Program(art)
    for value in (0.0, -0.0, -2.5, 40.0):
        x = np.full((2, *IN_SHAPE), value, np.float32)
        got, want = prog.run(x, "full"), ref.run(x, "full")
        assert _rel(got, want).max() <= RTOL, value


def test_backend_declares_the_kws_features(kws, tmp_path):
    assert KWS_FEATURES <= NeonBackend.features
    assert "multiplane" in NeonBackend.features
    path = tmp_path / "k.bkm"
    save_artifact(path, *kws_ops_parts())
    assert required_features(load_artifact(path)) == KWS_FEATURES
    model = binkit.runtime.load(path, backend="auto")
    assert model.backend == "neon"
    ref = binkit.runtime.load(path, backend="reference")
    x = features(IN_SHAPE, 4, seed=9)
    np.testing.assert_allclose(model.logits(x, "full"), ref.logits(x, "full"), rtol=1e-4, atol=1e-6)


def test_kwsparts_profile_names_every_op(kws):
    art = kws[(70, False)]
    rows = Program(art).profile(features(IN_SHAPE, 2, seed=1), "full", repeats=3)
    assert [r["op"] for r in rows] == [op["op"] for op in art.view_ops("full")]
    dw = next(r for r in rows if r["name"] == "dw")
    assert dw["binary_macs"] > 0 and all(r["seconds"] >= 0 for r in rows)


# ---------------------------------------------------------------------------------------------
# bdwconv2d
# ---------------------------------------------------------------------------------------------

DW_CASES = [  # kernel, stride, padding, dilation
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((3, 2), (2, 1), ((1, 0), (2, 1)), (1, 2)),
    ((2, 3), (1, 3), ((0, 1), (1, 1)), (2, 1)),
    ((1, 5), (1, 2), ((0, 0), (4, 0)), (1, 1)),
    ((4, 1), (3, 1), ((2, 2), (0, 0)), (1, 1)),
    ((5, 5), (1, 1), ((2, 2), (2, 2)), (2, 2)),  # larger than the input at some positions
]
DW_SHAPE = (9, 11)


def build_dw(path, c: int, case: int, seed: int = 0) -> str:
    """(c, 9, 11) features; views:
    'raw'   bdwconv2d on the features (canonical layout: channel stride H * W) -> affine -> prelu
            (per channel) -> silu -> mean over (H, W) -> head
    'conv'  conv2d_fp 1x1 -> bdwconv2d (same-size) -> prelu (one slope) -> add (the conv's output:
            a fused residual) -> relu -> mean over (H, W) -> head
    'thr'   bdwconv2d with a sign threshold -> bconv2d 1x1 (the threshold writes packed rows) ->
            mean over (H, W) -> head
    'thr2'  bdwconv2d with a sign threshold -> bdwconv2d with a threshold -> bdwconv2d -> mean -> head
    """
    kernel, stride, padding, dilation = DW_CASES[case]
    h, w = DW_SHAPE
    b = _Builder(seed)
    views = {}
    n0 = len(b.ops)
    x = b.bdw2("input", c, kernel, stride, padding, dilation)
    x = b.op("affine", [x], {"axis": 0}, **b.transform(c))
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(c, lo=-0.5, hi=0.5))
    x = b.op("silu", [x])
    x = b.op("mean", [x], {"axes": [1, 2], "keepdims": False})
    views["raw"] = (list(range(n0, len(b.ops) + 1)), b.head(x, c))
    n0 = len(b.ops)
    s = b.conv_fp("input", c, c)
    x = b.bdw2(s, c, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)) if case == 0 else \
        b.bdw2(s, c, kernel, (1, 1), ((dilation[0] * (kernel[0] - 1), 0), (0, dilation[1] * (kernel[1] - 1))),
               dilation)
    x = b.op("prelu", [x], {"axis": 0}, slope=b.f32(1, lo=-0.5, hi=0.5))
    x = b.op("add", [x, s])
    x = b.op("relu", [x])
    x = b.op("mean", [x], {"axes": [1, 2], "keepdims": False})
    views["conv"] = (list(range(n0, len(b.ops) + 1)), b.head(x, c))
    n0 = len(b.ops)
    x = b.bdw2("input", c, kernel, stride, padding, dilation, threshold=True)
    x = b.bconv1x1(x, c, 24)
    x = b.op("mean", [x], {"axes": [1, 2], "keepdims": False})
    views["thr"] = (list(range(n0, len(b.ops) + 1)), b.head(x, 24))
    n0 = len(b.ops)
    x = b.bdw2("input", c, kernel, stride, padding, dilation, threshold=True)
    x = b.bdw2(x, c, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), threshold=True)
    x = b.bdw2(x, c, (2, 2), (1, 1), ((1, 0), (0, 1)), (1, 1))
    x = b.op("mean", [x], {"axes": [1, 2], "keepdims": False})
    views["thr2"] = (list(range(n0, len(b.ops) + 1)), b.head(x, c))
    return b.save(path, (c, h, w), views)


@pytest.mark.parametrize("case", range(len(DW_CASES)))
@pytest.mark.parametrize("c", [1, 16, 65, 70])
def test_bdwconv2d_matches_reference(tmp_path, c, case):
    art = load_artifact(build_dw(tmp_path / "dw.bkm", c, case, seed=case))
    check(art, features(art.input_shape, 3, seed=c + case, dyadic=True))


@heavy
@pytest.mark.parametrize("case", [1, 5])
def test_bdwconv2d_batch64(tmp_path, case):
    art = load_artifact(build_dw(tmp_path / "dw.bkm", 130, case, seed=case))
    check(art, features(art.input_shape, 64, seed=case, dyadic=True))


def test_bdwconv2d_threshold_writes_packed_rows(tmp_path):
    """The sign-threshold depthwise conv whose only consumer is a 1x1 binary conv packs its signs."""
    from binkit_neon.engine import _Planner

    art = load_artifact(build_dw(tmp_path / "dw.bkm", 70, 1))
    p = _Planner(art, "thr")
    p.plan()
    dw = next(c for c in p.cops if c.fields["kind"] == 8)
    assert dw.fields.get("bits_out") == 1
    p = _Planner(art, "conv")
    p.plan()
    dw = next(c for c in p.cops if c.fields["kind"] == 8)
    assert [q["kind"] for q in dw.fields["post"]] == [2, 4, 3]  # prelu, add, relu fused


# ---------------------------------------------------------------------------------------------
# avgpool2d, mean, silu, broadcasting add
# ---------------------------------------------------------------------------------------------

POOL_CASES = [  # kernel, stride, padding
    ((2, 2), (1, 1), ((1, 1), (1, 1))),
    ((3, 2), (2, 1), ((1, 0), (1, 1))),
    ((3, 3), (3, 2), ((0, 1), (1, 0))),
    ((1, 4), (1, 4), ((0, 0), (2, 1))),
]


def build_pool(path, c: int, case: int, inc: bool, seed: int = 0) -> str:
    """(c, 7, 10) features; 'raw': avgpool2d on the features -> mean (H, W) -> head; 'fp':
    conv2d_fp 3x3 -> silu (fused) -> avgpool2d -> silu (alone) -> bdwconv2d -> mean -> head."""
    kernel, stride, padding = POOL_CASES[case]
    b = _Builder(seed)
    attrs = {"kernel_size": list(kernel), "stride": list(stride), "padding": [list(p) for p in padding],
             "count_include_pad": inc}
    x = b.op("avgpool2d", ["input"], attrs)
    x = b.op("mean", [x], {"axes": [1, 2], "keepdims": False})
    views = {"raw": ([0, 1, 2], b.head(x, c))}
    n0 = len(b.ops)
    x = b.conv_fp("input", c, c, 3)
    x = b.op("silu", [x])
    x = b.op("avgpool2d", [x], attrs)
    x = b.op("silu", [x])
    x = b.bdw2(x, c, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    x = b.op("mean", [x], {"axes": [1, 2], "keepdims": False})
    views["fp"] = (list(range(n0, len(b.ops) + 1)), b.head(x, c))
    return b.save(path, (c, 7, 10), views)


@pytest.mark.parametrize("inc", [False, True])
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
@pytest.mark.parametrize("c", [3, 65])
def test_avgpool2d_matches_reference(tmp_path, c, case, inc):
    art = load_artifact(build_pool(tmp_path / "p.bkm", c, case, inc, seed=case))
    check(art, features(art.input_shape, 3, seed=case, dyadic=True))


MEAN_AXES = [[0], [1], [2], [0, 1], [0, 2], [1, 2], [2, 0]]


def build_mean(path, c: int, axes: list[int], keep: bool, seed: int = 0) -> str:
    """(c, 6, 5) features; 'raw': mean on the features -> flatten -> head; 'perm': conv2d_fp 1x1
    (channels-last for the bdwconv2d that also reads it) -> reshape (c * 6, 5) (no axis order
    describes it) -> reshape back -> mean -> flatten -> head; the conv also feeds a bdwconv2d
    -> mean (1, 2) -> head in view 'dw'."""
    shape = (c, 6, 5)
    b = _Builder(seed)
    out = [1 if i in axes else s for i, s in enumerate(shape)] if keep else [s for i, s in enumerate(shape) if i not in axes]
    n = int(np.prod(out))
    x = b.op("mean", ["input"], {"axes": axes, "keepdims": keep})
    x = b.op("flatten", [x])
    views = {"raw": ([0, 1, 2], b.head(x, n))}
    n0 = len(b.ops)
    s = b.conv_fp("input", c, c)
    d = b.bdw2(s, c, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    d = b.op("mean", [d], {"axes": [1, 2], "keepdims": False})
    hd = b.head(d, c)
    r = b.op("reshape", [s], {"shape": [c * 6, 5]})
    r = b.op("reshape", [r], {"shape": list(shape)})
    x = b.op("mean", [r], {"axes": axes, "keepdims": keep})
    x = b.op("flatten", [x])
    views["perm"] = ([n0] + list(range(n0 + 4, len(b.ops) + 1)), b.head(x, n))
    views["dw"] = ([n0, n0 + 1, n0 + 2, n0 + 3], hd)
    return b.save(path, shape, views)


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("axes", MEAN_AXES, ids=str)
def test_mean_matches_reference(tmp_path, axes, keep):
    art = load_artifact(build_mean(tmp_path / "m.bkm", 17, axes, keep, seed=len(axes)))
    check(art, features(art.input_shape, 3, seed=5, dyadic=True))


def test_silu_overflow_and_zero(tmp_path):
    """silu of large negative values (exp(-x) = inf: -0), large positive, zeros."""
    b = _Builder(0)
    x = b.op("silu", ["input"])
    x = b.op("flatten", [x])
    art = load_artifact(b.save(tmp_path / "s.bkm", (2, 8), {"v": ([0, 1, 2], b.head(x, 16))}))
    vals = np.array([-200.0, -100.0, -88.0, -30.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, -0.5, 3.0, 30.0, 88.0, 100.0,
                     1e30, -1e30], np.float32)
    x = np.stack([vals, vals[::-1]]).reshape(2, 2, 8)
    check(art, x)
    from binkit_neon.engine import _Planner

    p = _Planner(art, "v")
    p.plan()
    ops = p.cops
    assert ops[0].fields["kind"] == 4 and ops[0].fields["post"] == [{"kind": 5}]


BCAST_CASES = [  # operand shapes (per example) of the add, c = 6
    ((6, 5, 7), (6, 1, 7)),
    ((6, 1, 7), (6, 5, 7)),
    ((6, 5, 7), (6, 5, 1)),
    ((6, 5, 7), (1, 5, 7)),
    ((1, 5, 1), (6, 1, 7)),
    ((6, 5, 7), (1, 1, 1)),
]


def _reduce_to(b: _Builder, x: str, shape, target) -> str:
    axes = [i for i, (s, t) in enumerate(zip(shape, target)) if s != t]
    return b.op("mean", [x], {"axes": axes, "keepdims": True}) if axes else x


def build_bcast(path, case: int, seed: int = 0) -> str:
    """(6, 5, 7) features; 'raw': the operands are means (keepdims) of the features, added, then
    relu -> mean -> head; 'dw': the operands come from a bdwconv2d with a fused prelu (channels
    last) and a conv2d_fp, the sum goes through silu (fused into the add) -> mean -> head."""
    sa, sb = BCAST_CASES[case]
    full = (6, 5, 7)
    b = _Builder(seed)
    n0 = len(b.ops)
    xa = _reduce_to(b, "input", full, sa)
    sq = b.op("affine", ["input"], {"axis": 0}, **b.transform(6))
    xb = _reduce_to(b, sq, full, sb)
    x = b.op("add", [xa, xb])
    x = b.op("relu", [x])
    x = b.op("mean", [x], {"axes": [0, 1, 2], "keepdims": True})
    x = b.op("flatten", [x])
    x = b.op("add", [x, b.op("mean", ["input"], {"axes": [0, 1], "keepdims": False})])  # (1,) + (7,)
    views = {"raw": (list(range(n0, len(b.ops) + 1)), b.head(x, 7))}
    n0 = len(b.ops)
    d = b.bdw2("input", 6, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    d = b.op("prelu", [d], {"axis": 0}, slope=b.f32(6, lo=-0.5, hi=0.5))
    f = b.conv_fp("input", 6, 6)
    xa = _reduce_to(b, d, full, sa)
    xb = _reduce_to(b, f, full, sb)
    x = b.op("add", [xa, xb])
    x = b.op("silu", [x])
    x = b.op("mean", [x], {"axes": [1, 2], "keepdims": False})
    views["dw"] = (list(range(n0, len(b.ops) + 1)), b.head(x, 6))
    return b.save(path, full, views)


@pytest.mark.parametrize("case", range(len(BCAST_CASES)))
def test_broadcast_add_matches_reference(tmp_path, case):
    art = load_artifact(build_bcast(tmp_path / "b.bkm", case, seed=case))
    assert "broadcast_add" in required_features(art)
    check(art, features(art.input_shape, 3, seed=case, dyadic=True))
    check(art, features(art.input_shape, 1, seed=10 + case))


# ---------------------------------------------------------------------------------------------
# exported from torch
# ---------------------------------------------------------------------------------------------


def _export(net_name: str, shape, path, method: str = "bifsmn", seed: int = 3):
    torch = pytest.importorskip("torch")
    import testnets

    import binkit
    from binkit.export import export_model

    torch.manual_seed(seed)
    net = testnets.randomize_stats(binkit.binarize(getattr(testnets, net_name)(), method), seed=seed)
    export_model(net, path, labels=[str(i) for i in range(net.head.out_features)], float16=False,
                 feature_shape=shape)
    return load_artifact(path)


@pytest.mark.parametrize("method", ["bifsmn", "bnn"])
def test_kws_ops_net_from_torch(tmp_path, method):
    art = _export("KwsOpsNet", (1, 12, 10), tmp_path / "k.bkm", method)
    assert {"bdwconv2d", "silu", "avgpool2d", "mean"} <= required_features(art)
    x = features(art.input_shape, 1024, seed=1)
    x[128:] *= 3
    check(art, x, strict=False)
    check(art, x[:1])
    assert binkit.runtime.load(art.path, backend="auto").backend == "neon"


def test_broadcast_net_from_torch(tmp_path):
    art = _export("BroadcastNet", (1, 8, 12), tmp_path / "b.bkm", seed=4)
    assert "broadcast_add" in required_features(art)
    x = features(art.input_shape, 1024, seed=2)
    check(art, x, strict=False)
    check(art, x[:1])
    assert binkit.runtime.load(art.path, backend="auto").backend == "neon"
