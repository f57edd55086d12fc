"""The float conv's packed-sign epilogue as an exact test on the raw sum (engine.py
``_float_sign_thresholds``): the same bits as computing bias + post-ops in float32, for every
float32 sum including zeros of both signs, infinities, NaN and the neighbours of each switch."""

from __future__ import annotations

import numpy as np
import pytest

binkit_neon = pytest.importorskip("binkit_neon")
from binkit_neon import engine
from binkit_neon.engine import _P_AFFINE, _P_PRELU, _P_RELU, _f32_from_keys, _f32_keys, _float_sign_thresholds

F32 = np.float32


def _epilogue_bit(acc, bias, post):
    """What bk_op_conv_fp packs without the threshold (float32, the same operation order)."""
    with np.errstate(all="ignore"):
        r = (acc + bias).astype(F32)
        for p in post:
            if p["kind"] == _P_RELU:
                r = np.where(r > 0, r, F32(0)).astype(F32)
                continue
            a = p["a"] if p.get("per_channel") else np.full_like(bias, p["a"][0])
            if p["kind"] == _P_AFFINE:
                b = p["b"] if p.get("per_channel") else np.full_like(bias, p["b"][0])
                r = ((a * r).astype(F32) + b).astype(F32)
            else:
                r = np.where(r >= 0, r, (a * r).astype(F32)).astype(F32)
    return r < 0


def _chains(o, rng):
    a = rng.uniform(0.2, 3, o).astype(F32) * np.where(rng.random(o) < 0.4, -1, 1).astype(F32)
    b = rng.standard_normal(o).astype(F32)
    slope = rng.uniform(0.01, 0.5, o).astype(F32)
    yield [{"kind": _P_AFFINE, "a": a, "b": b, "per_channel": 1}, {"kind": _P_PRELU, "a": slope, "per_channel": 1}]
    yield [{"kind": _P_AFFINE, "a": a, "b": b, "per_channel": 1}]
    yield [{"kind": _P_PRELU, "a": np.array([0.25], F32), "per_channel": 0}]
    yield [{"kind": _P_AFFINE, "a": a, "b": b, "per_channel": 1}, {"kind": _P_RELU}]  # constant 0
    yield [{"kind": _P_AFFINE, "a": np.array([-1.0], F32), "b": np.array([-1e30], F32), "per_channel": 0}]
    yield []


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_reproduces_the_float_epilogue_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    o = 48
    bias = (rng.standard_normal(o) * 3).astype(F32)
    bias[:4] = [0.0, -0.0, 1e-38, -3e38]
    for post in _chains(o, rng):
        out = _float_sign_thresholds(bias, post, o, 64)
        assert out is not None
        tau, flt = out
        assert tau.shape == (64,) and flt.shape == (64,)
        # random sums at every scale, special values, and each channel's switch neighbourhood
        accs = [rng.standard_normal(o).astype(F32) * F32(10.0) ** rng.integers(-40, 38, o).astype(F32)
                for _ in range(200)]
        accs += [np.full(o, v, F32) for v in (0.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1e-45, -1e-45)]
        k = _f32_keys(np.nan_to_num(tau[:o], nan=0.0))
        accs += [_f32_from_keys(np.clip(k + d, _f32_keys(np.array([-np.inf], F32))[0],
                                        _f32_keys(np.array([np.inf], F32))[0])) for d in range(-3, 4)]
        for acc in accs:
            want = _epilogue_bit(acc, bias, post)
            with np.errstate(invalid="ignore"):
                got = np.where(flt[:o] != 0, acc < tau[:o], acc >= tau[:o])
            np.testing.assert_array_equal(got, want)


def test_non_monotone_chains_keep_the_float_epilogue():
    o = 4
    bias = np.zeros(o, F32)
    neg_slope = [{"kind": _P_PRELU, "a": np.array([-0.1], F32), "per_channel": 0},
                 {"kind": _P_AFFINE, "a": np.full(o, -1, F32), "b": np.zeros(o, F32), "per_channel": 1}]
    zero_scale = [{"kind": _P_AFFINE, "a": np.array([0, 1, 1, 1], F32), "b": np.ones(o, F32), "per_channel": 1}]
    assert _float_sign_thresholds(bias, neg_slope, o, 16) is None
    assert _float_sign_thresholds(bias, zero_scale, o, 16) is None


def test_engine_with_and_without_the_threshold_gives_the_same_bits(tmp_path, monkeypatch):
    """The DFSMN front-end (float conv1 -> BN -> PReLU -> packed signs for conv2) on every kernel
    variant: identical logits with the threshold epilogue and with the float one."""
    torch = pytest.importorskip("torch")
    import binkit
    from binkit.export import export_model
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams
    from testnets import randomize_stats

    torch.manual_seed(0)
    model = randomize_stats(binkit.binarize(DFSMN(DFSMNParams(num_blocks=2), 12, (1, 32, 32)), "bifsmn"), 3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.PReLU):
                m.weight.abs_().add_(0.01)  # positive slopes: the threshold applies
    path = tmp_path / "m.bkm"
    export_model(model, path, labels=[f"c{i}" for i in range(12)], float16=False)
    x = (np.random.default_rng(0).standard_normal((512, 1, 32, 32)) * 20 - 50).astype(np.float32)
    x[:64] = np.round(x[:64])
    results = {}
    for use in (True, False):
        if not use:
            monkeypatch.setattr(engine, "_float_sign_thresholds", lambda *a, **k: None)
        for kernel in binkit_neon.available_kernels():
            prog = engine.NeonBackend().load(path, kernel=kernel)
            conv1 = next(f for f in prog._plan("2").cops if f["kind"] == engine._CONV_FP and f.get("bits_out"))
            assert ("fthr" in conv1) == use
            results[(use, kernel)] = prog.run(x, "2")
    first = next(iter(results.values()))
    for key, got in results.items():
        np.testing.assert_array_equal(got, first, err_msg=str(key))
