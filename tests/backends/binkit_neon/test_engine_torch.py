"""The compiled engine against torch eval-mode logits on an exported BiFSMN DFSMN (needs torch).

The model is the full-width thinnable DFSMN (``DFSMN(DFSMNParams(), 12, (1, 32, 32))``) binarized
with the "bifsmn" policy, with randomized BatchNorm statistics and PReLU slopes so that every
folded transform is non-trivial. Random features (1024 clips, every view): at least 99.9 % of
the clips must agree on the argmax and lie within 1e-4 relative (max |engine - torch| /
max |torch| per clip). The few clips allowed outside are those where a float32 summation-order
difference flips the sign of a pre-binarization value that is ~1e-7 from zero (torch, the
numpy reference and the engine all sum in different orders); in practice the measured rate is
far below the bound.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import binkit
import binkit.runtime
from binkit.export import export_model

binkit_neon = pytest.importorskip("binkit_neon")
from binkit_neon.engine import Program
from testnets import EveryBinaryOpNet, randomize_stats

RTOL = 1e-4
CLIPS = 1024


@pytest.fixture(scope="module")
def dfsmn(tmp_path_factory):
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

    torch.manual_seed(0)
    model = randomize_stats(binkit.binarize(DFSMN(DFSMNParams(), 12, (1, 32, 32)), "bifsmn"), 0)
    path = tmp_path_factory.mktemp("dfsmn") / "dfsmn.bkm"
    export_model(model, path, labels=[f"c{i}" for i in range(12)], feature_spec={"kind": "bifsmn_logmel"},
                 float16=False)
    return model, path


def _torch_logits(model, x: np.ndarray, view: str) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x), view=view).numpy()


@pytest.mark.parametrize("view", ["8", "4", "2", "1"])
def test_dfsmn_engine_matches_torch(dfsmn, view):
    model, path = dfsmn
    rt = binkit.runtime.load(path, backend="neon")
    x = (np.random.default_rng(int(view)).standard_normal((CLIPS, 1, 32, 32)) * 20 - 50).astype(np.float32)
    want = _torch_logits(model, x, view)
    got = rt.logits(x, view=view)
    rel = np.abs(got - want).max(-1) / np.abs(want).max(-1)
    agree = (got.argmax(-1) == want.argmax(-1)).mean()
    assert agree >= 0.999, (view, agree)
    assert (rel <= RTOL).mean() >= 0.999, (view, np.sort(rel)[-5:])
    # batch 1 gives the same bits as the batch
    np.testing.assert_array_equal(rt.logits(x[:1], view=view), got[:1])


def test_dfsmn_every_kernel_bitwise_identical(dfsmn):
    _, path = dfsmn
    art = binkit.runtime.artifact.load_artifact(path)
    x = (np.random.default_rng(7).standard_normal((64, 1, 32, 32)) * 20 - 50).astype(np.float32)
    for view in art.views:
        outs = [Program(art, kernel=k).run(x, view) for k in binkit_neon.available_kernels()]
        for k, out in zip(binkit_neon.available_kernels(), outs):
            np.testing.assert_array_equal(out, outs[0], err_msg=f"{k} view {view}")


def test_dfsmn_profile_covers_the_plan(dfsmn):
    _, path = dfsmn
    art = binkit.runtime.artifact.load_artifact(path)
    prog = Program(art)
    x = np.zeros((1, 1, 32, 32), np.float32)
    rows = prog.profile(x, "8", repeats=5)
    assert len(rows) == len(art.views["8"]["ops"])
    macs = sum(r["binary_macs"] for r in rows)
    # conv2 (16 -> 32, 5x5 s2 p2 on 16x16: 6x6 interior-ish valid-tap sums) + fc1 256x128x8 +
    # 8 blocks x (pw1 128x256x8 + pw2 256x128x8 + memory taps 128 x (3+4+5*4+4+3))
    conv2 = 16 * 32 * sum((min(oy * 2 + 3, 16) - max(oy * 2 - 2, 0)) for oy in range(8)) ** 2
    assert macs == conv2 + 256 * 128 * 8 + 8 * (2 * 128 * 256 * 8 + 128 * 34)
    assert sum(r["seconds"] for r in rows) > 0


MP_CLIPS = 256


@pytest.mark.parametrize("p, q", [(2, 1), (1, 3), (3, 2), (4, 4)], ids=lambda v: str(v))
def test_residual_multiplane_engine_matches_torch(tmp_path, p, q):
    """A 'residual'-binarized net (P weight planes, Q input planes in every binary op) exported and
    run on the engine (picked by backend 'auto') against torch eval and the reference."""
    torch.manual_seed(p * 10 + q)
    net = binkit.binarize(EveryBinaryOpNet(), {"method": "residual", "params": {"weight_planes": p, "input_planes": q}})
    net = randomize_stats(net, p + q)
    with torch.no_grad():  # trained-looking input scales
        for m in net.modules():
            if getattr(m, "log_scales", None) is not None:
                m.log_scales.add_(torch.rand(m.log_scales.shape) * 0.4 - 0.2)
    net.feature_shape = (1, 8, 8)
    path = tmp_path / "mp.bkm"
    export_model(net, path, labels=list("abcde"), float16=False)
    rt = binkit.runtime.load(path)
    assert rt.backend == "neon"
    x = np.random.default_rng(q).standard_normal((MP_CLIPS, 1, 8, 8)).astype(np.float32)
    x[:4] = 0.0
    x[4:8, :, :3] = -0.0
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = rt.logits(x)
    rel = np.abs(got - want).max(-1) / np.abs(want).max(-1)
    # near-ties of a residual (torch decomposes in float32, the engine in float64) may flip a bit
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.99
    assert (rel <= RTOL).mean() >= 0.99, np.sort(rel)[-5:]
    ref = binkit.runtime.load(path, backend="reference").logits(x)
    rel_ref = np.abs(got - ref).max(-1) / np.abs(ref).max(-1)
    assert (rel_ref <= RTOL).mean() >= 0.99, np.sort(rel_ref)[-5:]
    outs = [Program(rt.program.artifact, kernel=k).run(x[:32], None) for k in binkit_neon.available_kernels()]
    for k, out in zip(binkit_neon.available_kernels(), outs):
        np.testing.assert_array_equal(out, outs[0], err_msg=k)


def _randomize_reactnet(model, seed: int):
    """Trained-looking RSign thresholds and RPReLU shifts and slopes (they start at 0 / 0.25)."""
    from binkit_binarizers.reactnet import RPReLU, RSignInputQuantizer

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RSignInputQuantizer):
                m.threshold.copy_(torch.rand(m.threshold.shape, generator=g) * 0.6 - 0.3)
            elif isinstance(m, RPReLU):
                for p, lo, span in ((m.gamma, -0.3, 0.6), (m.zeta, -0.3, 0.6), (m.beta, -0.5, 1.0)):
                    p.copy_(torch.rand(p.shape, generator=g) * span + lo)
    return model


@pytest.mark.parametrize("net", ["dfsmn", "every_op"])
def test_reactnet_engine_matches_torch(tmp_path, net):
    """ReActNet (RSign thresholds as affine shifts, RPReLU as affine/prelu/affine) exported with no
    float fallback and run on the engine, every view, against torch eval and the reference."""
    torch.manual_seed(1)
    if net == "dfsmn":
        from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

        model, shape, views = DFSMN(DFSMNParams(), 12, (1, 32, 32)), (1, 32, 32), ["8", "4", "2", "1"]
    else:
        model, shape, views = EveryBinaryOpNet(), (1, 8, 8), [None]
        model.feature_shape = shape
    model = _randomize_reactnet(randomize_stats(binkit.binarize(model, "reactnet"), 1), 1)
    path = tmp_path / "reactnet.bkm"
    report = export_model(model, path, labels=[f"c{i}" for i in range(12 if net == "dfsmn" else 5)],
                          float16=False)
    assert report.fallbacks == []
    rt = binkit.runtime.load(path, backend="neon")
    ref = binkit.runtime.load(path, backend="reference")
    x = (np.random.default_rng(3).standard_normal((MP_CLIPS, *shape)) * (20 if net == "dfsmn" else 1)
         - (50 if net == "dfsmn" else 0)).astype(np.float32)
    for view in views:
        with torch.no_grad():
            want = (model(torch.from_numpy(x), view=view) if view else model(torch.from_numpy(x))).numpy()
        got = rt.logits(x, view=view)
        rel = np.abs(got - want).max(-1) / np.abs(want).max(-1)
        assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.99, view
        assert (rel <= RTOL).mean() >= 0.99, (view, np.sort(rel)[-5:])
        rel_ref = np.abs(got - ref.logits(x, view=view)).max(-1) / np.abs(want).max(-1)
        assert (rel_ref <= RTOL).mean() >= 0.99, (view, np.sort(rel_ref)[-5:])
