"""Bit-serial multi-plane export (the ``residual`` binarizer): torch eval vs the reference backend.

Covers every binary op kind (Conv2d, depthwise Conv1d, Conv1d, Linear) with odd channel counts
(63, 65: partial words), exact-zero inputs and zero padding, weight/input plane counts from 1 to
4, the BiFSMN DFSMN with views, sign-output folding (never for multi-plane ops), and the runtime's
backend feature check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import binkit
from binkit import registry
from binkit.export import export_model
from binkit.export.lower import PlanBuilder
from binkit.runtime.artifact import ArtifactError, load_artifact, required_features
from binkit.runtime.bits import unpack_signs
from binkit.runtime.reference import ReferenceProgram
from testnets import EveryBinaryOpNet

PLANES = [(1, 1), (2, 1), (1, 3), (4, 4)]


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    if "reference" not in registry.names("backend"):
        registry.register_plugin("binkit.runtime.plugin")


def _randomise(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 2 - 0.5)  # some negative gammas
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            elif getattr(m, "log_scales", None) is not None:  # trained-looking input scales
                m.log_scales.add_(torch.rand(m.log_scales.shape, generator=g) * 0.4 - 0.2)
    return model.eval()


def _net(p, q, seed=0, policy=None):
    torch.manual_seed(seed)
    policy = policy or {"method": "residual", "params": {"weight_planes": p, "input_planes": q}}
    net = _randomise(binkit.binarize(EveryBinaryOpNet(), policy))
    net.feature_shape = (1, 8, 8)
    return net


def _inputs(n=32, seed=2):
    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    x[:4] = 0.0  # exact zeros everywhere: sign(0) = +1 in every plane
    x[4:8, :, :3] = 0.0
    return x


def _check_matches(net, art, x, view=None):
    with torch.no_grad():
        want = net(x).double().numpy()
    got = ReferenceProgram(art).run(x.numpy(), view or art.default_view).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("p, q", PLANES, ids=[f"P{p}Q{q}" for p, q in PLANES])
def test_torch_eval_matches_reference(tmp_path, p, q):
    net = _net(p, q)
    path = tmp_path / "m.bkm"
    export_model(net, path, labels=list("abcde"), float16=False)
    art = load_artifact(path)
    binary = [op for op in art.ops if op["op"] in ("bconv2d", "bdwconv1d", "bconv1d", "blinear")]
    assert [op["op"] for op in binary] == ["bconv2d", "bdwconv1d", "bconv1d", "blinear"]
    layers = {"conv": net.conv, "dw": net.dw, "pw": net.pw, "fc": net.fc}
    for op in binary:
        a, t = op["attrs"], op["tensors"]
        assert a.get("weight_planes", 1) == p and a.get("input_planes", 1) == q
        assert ("weight_planes" in a) == (p > 1) and ("input_planes" in a) == (q > 1)  # written only when > 1
        assert ("weight_scales" in t) == (p > 1) and ("input_scales" in t) == (q > 1)
        m = layers[op["name"]]
        signs, scales = m.weight_quantizer.export_planes(m.weight.detach())
        w = art.tensors[t["weight"]]
        if p > 1:
            assert w.shape[0] == p
            np.testing.assert_array_equal(art.tensors[t["weight_scales"]], scales.numpy())
        if q > 1:
            np.testing.assert_array_equal(art.tensors[t["input_scales"]],
                                          m.input_quantizer.export_input_scales().numpy())
        if op["op"] == "blinear":  # plane 0 unpacks to B_1
            plane0 = w[0] if p > 1 else w
            np.testing.assert_array_equal(unpack_signs(plane0, m.in_features), signs[0].numpy())
    assert required_features(art) == (frozenset() if p == q == 1 else frozenset({"multiplane"}))
    _check_matches(net, art, _inputs())


def test_one_plane_is_the_xnor_artifact(tmp_path):
    """residual with P = Q = 1 exports exactly the ops and tensors XNOR-Net does."""
    arts = {}
    for method, params in (("residual", {"weight_planes": 1, "input_planes": 1}), ("xnor", {})):
        net = _net(1, 1, policy={"method": method, "params": params})
        export_model(net, tmp_path / f"{method}.bkm", labels=list("abcde"), float16=False)
        arts[method] = load_artifact(tmp_path / f"{method}.bkm")
    a, b = arts["residual"], arts["xnor"]
    assert [(o["op"], o["attrs"], sorted(o["tensors"])) for o in a.ops] == \
           [(o["op"], o["attrs"], sorted(o["tensors"])) for o in b.ops]
    for oa, ob in zip(a.ops, b.ops):
        for role in oa["tensors"]:
            np.testing.assert_array_equal(a.tensors[oa["tensors"][role]], b.tensors[ob["tensors"][role]])


@pytest.mark.parametrize("p, q", [(2, 1), (1, 3), (4, 4)])
def test_sign_folding_leaves_multi_plane_ops_alone(tmp_path, p, q):
    report = export_model(_net(p, q), tmp_path / "m.bkm", labels=list("abcde"), float16=False)
    assert report.sign_folded == []
    art = load_artifact(tmp_path / "m.bkm")
    assert not any("threshold" in op["tensors"] for op in art.ops)
    # the one-plane model does fold (dw -> bn -> prelu -> pw only): the check is not vacuous
    report = export_model(_net(1, 1), tmp_path / "one.bkm", labels=list("abcde"), float16=False)
    assert report.sign_folded == ["dw"]


def test_one_plane_producer_feeding_a_multi_plane_consumer_is_not_folded(tmp_path):
    """dw is one-plane, pw reads it with 2 input planes: pw needs the value, not only its sign."""
    policy = {"method": "residual", "params": {"weight_planes": 1, "input_planes": 1},
              "overrides": [{"pattern": "pw", "params": {"weight_planes": 2, "input_planes": 2}}]}
    net = _net(1, 1, policy=policy)
    report = export_model(net, tmp_path / "m.bkm", labels=list("abcde"), float16=False)
    assert report.sign_folded == []
    art = load_artifact(tmp_path / "m.bkm")
    (dw,) = [op for op in art.ops if op["name"] == "dw"]
    assert "multiplier" in dw["tensors"] and "threshold" not in dw["tensors"]
    (pw,) = [op for op in art.ops if op["name"] == "pw"]
    assert pw["attrs"]["input_planes"] == 2
    _check_matches(net, art, _inputs())


@pytest.mark.parametrize("params", [{}, {"weight_planes": 3, "input_planes": 1}])
def test_dfsmn_exports_and_matches(tmp_path, params):
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

    torch.manual_seed(0)
    model = DFSMN(DFSMNParams(num_blocks=2, thin_levels=["2", "1"], view_weights={"2": 1.0}), 12, (1, 32, 32))
    model = _randomise(binkit.binarize(model, {"method": "residual", "params": params}))
    report = export_model(model, tmp_path / "m.bkm", labels=[str(i) for i in range(12)], float16=False)
    assert report.sign_folded == []
    art = load_artifact(tmp_path / "m.bkm")
    assert required_features(art) == {"multiplane"}
    kinds = {op["op"] for op in art.ops if op["attrs"].get("weight_planes", 1) > 1
             or op["attrs"].get("input_planes", 1) > 1}
    assert {"bconv1d", "bdwconv1d"} <= kinds
    x = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    x[:2] = 0.0
    for view in art.views:
        with torch.no_grad():
            want = model(x, view=view).double().numpy()
        got = ReferenceProgram(art).run(x.numpy(), view).astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_runtime_backend_feature_check(tmp_path, monkeypatch):
    import binkit.runtime as rt
    from binkit.runtime.model import load

    export_model(_net(2, 2), tmp_path / "m.bkm", labels=list("abcde"), float16=False)

    class Plain:  # an engine that does not declare "multiplane"
        name = "neon"

        def load(self, artifact):
            raise AssertionError("must not be asked to run a multi-plane artifact")

    real = rt.get_backend
    monkeypatch.setattr(rt, "backend_names", lambda: ["neon", "reference"])
    monkeypatch.setattr(rt, "get_backend", lambda name: Plain() if name == "neon" else real(name))
    m = load(tmp_path / "m.bkm")  # auto: falls back to the reference
    assert m.backend == "reference"
    assert m.logits(_inputs(4).numpy()).shape == (4, 5)
    with pytest.raises(ArtifactError, match="does not run the artifact feature\\(s\\) multiplane"):
        load(tmp_path / "m.bkm", backend="neon")


def test_export_refuses_a_lying_input_quantizer(tmp_path):
    net = _net(1, 2)
    with torch.no_grad():  # exported scales no longer match what forward computes
        net.pw.input_quantizer.export_input_scales = lambda: torch.tensor([1.0, 0.9])
    with pytest.raises(Exception, match="pw.*residual sign decomposition"):
        export_model(net, tmp_path / "m.bkm", labels=list("abcde"), float16=False)


def test_planes_reach_the_builder_unchanged():
    net = _net(3, 2)
    b = PlanBuilder(net, (1, 8, 8))
    signs, scales = b._weight_planes(net.fc)
    assert signs.shape == (3, 65, 1008) and scales.shape == (3, 65)
    a, why = b._input_scales(net.fc)
    assert why is None and a.shape == (2,) and a[0] == 1.0
