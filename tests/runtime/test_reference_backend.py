"""Conformance: torch eval-mode logits vs the numpy reference backend on exported artifacts.

Tolerance: per clip, max |ref - torch| / max |torch| <= 1e-4, and the same argmax.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import binkit
from binkit import registry
from binkit.export import export_model
from binkit.runtime.bits import pack_signs
from binkit.runtime.reference import _bconv1d, zero_padding_correction
from testnets import randomize_stats

RTOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _reference_backend():
    if "reference" not in registry.names("backend"):
        registry.register_plugin("binkit.runtime.plugin")


def _dfsmn(seed=0):
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

    torch.manual_seed(seed)
    model = DFSMN(DFSMNParams(), 12, (1, 32, 32))
    return randomize_stats(binkit.binarize(model, "bifsmn"), seed)


def _check(rt_model, model, x: np.ndarray, view=None):
    with torch.no_grad():
        want = (model(torch.from_numpy(x), view=view) if view is not None else model(torch.from_numpy(x))).numpy()
    got = rt_model.logits(x, view=view)
    rel = np.abs(got - want).max(-1) / np.abs(want).max(-1)
    assert rel.max() <= RTOL, (view, rel.max())
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


@pytest.fixture(scope="module")
def dfsmn_artifact(tmp_path_factory):
    model = _dfsmn()
    path = tmp_path_factory.mktemp("art") / "dfsmn.bkm"
    export_model(model, path, labels=[f"c{i}" for i in range(12)], feature_spec={"kind": "bifsmn_logmel"},
                 float16=False)
    return model, binkit.runtime.load(path)


@pytest.mark.parametrize("view", ["8", "4", "2", "1"])
@pytest.mark.parametrize("batch", [1, 64])
def test_dfsmn_untrained_every_view(dfsmn_artifact, view, batch):
    model, rt = dfsmn_artifact
    x = (np.random.default_rng(batch).standard_normal((batch, 1, 32, 32)) * 20 - 50).astype(np.float32)
    _check(rt, model, x, view)


def test_dfsmn_exact_zero_and_constant_inputs(dfsmn_artifact):
    model, rt = dfsmn_artifact
    for value in (0.0, -100.0):  # 0 everywhere (sign(0) = +1 at every binary input), and silence
        x = np.full((2, 1, 32, 32), value, np.float32)
        for view in rt.views:
            _check(rt, model, x, view)


def test_dfsmn_briefly_trained(tmp_path):
    model = _dfsmn(seed=1).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 32, 32, generator=g) * 20 - 50
    y = torch.randint(0, 12, (32,), generator=g)
    for _ in range(5):
        loss = sum(w * nn.functional.cross_entropy(model(x, view=v), y) for v, w in (("8", 1), ("4", .5), ("2", .25)))
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    path = tmp_path / "trained.bkm"
    export_model(model, path, labels=[f"c{i}" for i in range(12)], feature_spec={"kind": "bifsmn_logmel"},
                 float16=False)
    rt = binkit.runtime.load(path)
    xt = (np.random.default_rng(5).standard_normal((64, 1, 32, 32)) * 20 - 50).astype(np.float32)
    for view in rt.views:
        _check(rt, model, xt, view)


class _Net(nn.Module):
    """A chain with awkward channel counts: binary conv 63 -> 65 (3x3, pad 1, stride 2),
    binary Linear 130 -> 65, binary depthwise Conv1d with exact zero padding."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 63, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(63)
        self.act0 = nn.PReLU(63)
        self.conv = nn.Conv2d(63, 65, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(65)
        self.act1 = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(65 * 4 * 4, 130)
        self.bn2 = nn.BatchNorm1d(130)
        self.act2 = nn.PReLU()
        self.fc2 = nn.Linear(130, 65)
        self.act3 = nn.PReLU()
        self.head = nn.Linear(65, 5)

    def forward(self, x):
        x = self.act0(self.bn0(self.stem(x)))
        x = self.act1(self.bn1(self.conv(x)))
        x = self.act2(self.bn2(self.fc(self.flat(x))))
        return self.head(self.act3(self.fc2(x)))


@pytest.mark.parametrize("method", ["bifsmn", "xnor", "bnn"])
def test_generic_chain_odd_channel_counts(tmp_path, method):
    torch.manual_seed(3)
    net = randomize_stats(binkit.binarize(_Net(), method), 3)
    net.feature_shape = (1, 8, 8)
    path = tmp_path / "net.bkm"
    rep = export_model(net, path, labels=list("abcde"), float16=False)
    ops = [op["op"] for op in binkit.runtime.artifact.load_artifact(path).ops]
    assert ops.count("bconv2d") == 1 and ops.count("blinear") == 2, ops
    rt = binkit.runtime.load(path)
    for batch in (1, 64):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8)).astype(np.float32)
        _check(rt, net, x)
    assert rep.conformance["default"]["argmax_agreement"] == 1.0


def test_depthwise_and_dense_conv1d_with_zero_padding(tmp_path):
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(3, 65, 1)
            self.dw = nn.Conv1d(65, 65, 5, padding=2, groups=65)
            self.bn = nn.BatchNorm1d(65)
            self.pw = nn.Conv1d(65, 70, 3, padding=1, dilation=1)
            self.flat = nn.Flatten()
            self.head = nn.Linear(70 * 9, 4)

        def forward(self, x):
            return self.head(self.flat(self.pw(self.bn(self.dw(self.a(x))))))

    torch.manual_seed(4)
    net = randomize_stats(binkit.binarize(Seq(), "bifsmn"), 4)
    net.feature_shape = (3, 9)
    path = tmp_path / "seq.bkm"
    export_model(net, path, labels=list("abcd"), float16=False)
    ops = [op["op"] for op in binkit.runtime.artifact.load_artifact(path).ops]
    assert "bdwconv1d" in ops and "bconv1d" in ops
    rt = binkit.runtime.load(path)
    x = np.random.default_rng(0).standard_normal((64, 3, 9)).astype(np.float32)
    x[:, :, :2] = 0.0  # exact zeros at the border too
    _check(rt, net, x)


def test_zero_padding_correction_identity():
    """dot with +1 (0-bit) padding minus corr == exact zero-padding dot (reference.py docstring)."""
    rng = np.random.default_rng(0)
    c, o, k, length, pad = 65, 7, 5, 6, (2, 2)
    w = pack_signs(rng.standard_normal((o, k, c)))
    x = rng.standard_normal((2, c, length))
    attrs = {"kernel_size": [k], "stride": [1], "dilation": [1], "padding": [list(pad)]}
    t = {"weight": w, "multiplier": np.ones(o, np.float32), "offset": np.zeros(o, np.float32)}
    exact = _bconv1d(attrs, t, x)
    # +1 padding: pad the input with a positive value, which packs as bit 0 = +1
    xp = np.pad(x, [(0, 0), (0, 0), pad], constant_values=1.0)
    padded = _bconv1d({**attrs, "padding": [[0, 0]]}, t, xp)
    corr = zero_padding_correction(w, c, length, k, 1, pad, 1)
    np.testing.assert_array_equal(padded - corr[None], exact)


def test_predict_from_waveform_matches_torch_frontend(dfsmn_artifact):
    from binkit.data.features import FrontEnd
    from binkit.specs import FeaturesSpec

    model, rt = dfsmn_artifact
    rng = np.random.default_rng(7)
    t = np.arange(16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)[None] * rng.uniform(0.1, 1, (4, 1))
            + 0.05 * rng.standard_normal((4, 16000))).astype(np.float32)
    fe = FrontEnd(FeaturesSpec(kind="bifsmn_logmel"))
    with torch.no_grad():
        want = model(fe(torch.from_numpy(wave))).numpy()
    scores, labels = rt.predict(wave)
    assert scores.shape == (4, 12) and len(labels) == 4
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)
    got = rt.logits(wave)
    # front-ends agree within ~1e-3 dB (frontend.py), so logits agree loosely, argmaxes exactly here
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    assert (np.abs(got - want).max(-1) / np.abs(want).max(-1)).max() < 0.05
    single, label = rt.predict(wave[0], view="4")
    assert single.shape == (12,) and isinstance(label, str)


def test_predict_rejects_bad_inputs(dfsmn_artifact):
    _, rt = dfsmn_artifact
    with pytest.raises(ValueError, match="fits neither"):
        rt.predict(np.zeros((2, 1, 32, 31), np.float32))
    x = np.zeros((2, 1, 32, 32), np.float32)
    x[1, 0, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf.*\(1, 0, 3, 4\)"):
        rt.predict(x)
    with pytest.raises(ValueError, match="NaN/inf"):
        rt.predict(np.full(16000, np.inf, np.float32))
    with pytest.raises(ValueError, match="dtype"):
        rt.predict(np.zeros((1, 32, 32), np.int16))
    with pytest.raises(ValueError, match="no view 3"):
        rt.predict(np.zeros((1, 32, 32), np.float32), view=3)
