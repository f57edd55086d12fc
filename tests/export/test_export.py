"""Export: folding, refusals with layer names, float fallbacks, float16 measurement, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import binkit
from binkit import registry
from binkit.export import ExportError, export_model
from binkit.runtime.artifact import load_artifact
from testnets import ConvBNPReLU


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    if "reference" not in registry.names("backend"):
        registry.register_plugin("binkit.runtime.plugin")


def _net(method="bifsmn", seed=0):
    torch.manual_seed(seed)
    net = binkit.binarize(ConvBNPReLU(), method)
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(-2, 2)
        net.bn.bias.uniform_(-1, 1)
        if isinstance(net.act, torch.nn.PReLU):
            net.act.weight.uniform_(-0.5, 0.5)
    net.feature_shape = (1, 6, 6)
    return net.eval()


def test_fold_conv_bn_matches_formula_and_torch(tmp_path):
    net = _net()
    path = tmp_path / "m.bkm"
    export_model(net, path, labels=list("abc"), float16=False)
    art = load_artifact(path)
    (op,) = [op for op in art.ops if op["op"] == "bconv2d"]
    m = art.tensors[op["tensors"]["multiplier"]].astype(np.float64)
    c = art.tensors[op["tensors"]["offset"]].astype(np.float64)
    w = net.conv.weight.detach().double()
    alpha = w.abs().reshape(16, -1).mean(1).numpy()
    s = (net.bn.weight.detach().double() / torch.sqrt(net.bn.running_var.double() + net.bn.eps)).numpy()
    np.testing.assert_allclose(m, s * alpha, rtol=1e-6)
    np.testing.assert_allclose(c, s * (net.conv.bias.detach().double().numpy() - net.bn.running_mean.double().numpy())
                               + net.bn.bias.detach().double().numpy(), rtol=1e-5, atol=1e-6)
    assert [o["op"] for o in art.view_ops("default")] == ["conv2d_fp", "bconv2d", "prelu", "flatten", "linear_fp"]
    # the binary conv's output stage against torch: conv -> BN on sign(x) inputs
    x = torch.randn(4, 8, 6, 6)
    with torch.no_grad():
        want = net.bn(net.conv(x)).numpy()
    from binkit.runtime.reference import _OPS

    got = _OPS["bconv2d"](op["attrs"], {k: art.tensors[v] for k, v in op["tensors"].items()}, x.double().numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_refuses_code_faithful_binarizer_naming_layers(tmp_path):
    net = _net("bifsmn_code")
    path = tmp_path / "m.bkm"
    with pytest.raises(ExportError) as exc:
        export_model(net, path, labels=list("abc"))
    msg = str(exc.value)
    assert "conv:" in msg and "bifsmn_code" in msg and "per (out, in)" in msg
    assert "allow_float_fallback" in msg
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing written


def test_fallback_is_recorded_and_exact(tmp_path):
    net = _net("bifsmn_code")
    path = tmp_path / "m.bkm"
    report = export_model(net, path, labels=list("abc"), allow_float_fallback=True, float16=False)
    assert [f["layer"] for f in report.fallbacks] == ["conv"]
    art = load_artifact(path)
    assert art.fallbacks[0]["layer"] == "conv" and "bifsmn_code" in art.fallbacks[0]["reason"]
    (op,) = [o for o in art.ops if o["name"] == "conv" and o["op"] == "conv2d_fp"]
    assert op["attrs"]["input_sign"] is True
    assert report.conformance["default"]["max_rel"] < 1e-5
    from binkit.runtime.artifact import describe

    assert "Float fallbacks" in describe(art) and "`conv`" in describe(art)


def test_rsign_threshold_and_rprelu_export_as_shifts(tmp_path):
    """ReActNet: sign(x - t) is an affine shift in front of an ordinary binary op (no fallback),
    and RPReLU lowers itself to affine (-gamma), prelu (beta), affine (+zeta)."""
    net = _net("reactnet")
    with torch.no_grad():
        net.conv.input_quantizer.threshold.uniform_(-0.3, 0.3)
        net.act.gamma.uniform_(-0.3, 0.3)
        net.act.zeta.uniform_(-0.3, 0.3)
        net.act.beta.uniform_(-0.5, 0.5)
    path = tmp_path / "m.bkm"
    report = export_model(net, path, labels=list("abc"), float16=False)
    assert report.fallbacks == [] and report.conformance["default"]["max_rel"] < 1e-5
    art = load_artifact(path)
    # RPReLU's -gamma folds into the binary conv's output transform (nothing else reads it)
    assert [o["op"] for o in art.view_ops("default")] == [
        "conv2d_fp", "affine", "bconv2d", "prelu", "affine", "flatten", "linear_fp"]
    assert report.affine_folded == ["act"]
    shift = next(o for o in art.ops if o["op"] == "affine" and o["name"] == "conv")
    np.testing.assert_array_equal(art.tensors[shift["tensors"]["offset"]],
                                  -net.conv.input_quantizer.threshold.detach().numpy())
    (conv,) = [o for o in art.ops if o["op"] == "bconv2d"]
    s = (net.bn.weight / torch.sqrt(net.bn.running_var + net.bn.eps)).detach().double().numpy()
    c = s * (net.conv.bias - net.bn.running_mean).detach().double().numpy() + net.bn.bias.detach().double().numpy()
    np.testing.assert_allclose(art.tensors[conv["tensors"]["offset"]], c - net.act.gamma.detach().double().numpy(),
                               rtol=1e-5, atol=1e-6)
    prelu, bias = [o for o in art.ops if o["name"] == "act"]
    np.testing.assert_array_equal(art.tensors[prelu["tensors"]["slope"]], net.act.beta.detach().numpy())
    np.testing.assert_array_equal(art.tensors[bias["tensors"]["offset"]], net.act.zeta.detach().numpy())
    from binkit.runtime import load

    x = torch.randn(8, 1, 6, 6)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(load(path, backend="reference").logits(x.numpy()), want, rtol=1e-4, atol=1e-4)


def test_reactnet_without_thresholds_exports_plain_sign_and_rprelu(tmp_path):
    """learn_thresholds = false: no input shift op in front of the binary conv; RPReLU still
    lowers to its shifts and slope, and the artifact computes what torch does."""
    torch.manual_seed(0)
    net = binkit.binarize(ConvBNPReLU(), {"method": "reactnet", "params": {"learn_thresholds": False}})
    with torch.no_grad():
        net.act.gamma.uniform_(-0.3, 0.3)
        net.act.zeta.uniform_(-0.3, 0.3)
    net.feature_shape = (1, 6, 6)
    net.eval()
    assert net.conv.input_quantizer.threshold is None
    path = tmp_path / "m.bkm"
    report = export_model(net, path, labels=list("abc"), float16=False)
    assert report.fallbacks == [] and report.conformance["default"]["max_rel"] < 1e-5
    art = load_artifact(path)
    assert [o["op"] for o in art.view_ops("default")] == [
        "conv2d_fp", "bconv2d", "prelu", "affine", "flatten", "linear_fp"]
    from binkit.runtime import load

    x = torch.randn(8, 1, 6, 6)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(load(path, backend="reference").logits(x.numpy()), want, rtol=1e-4, atol=1e-4)


def test_refuses_models_that_are_not_chains(tmp_path):
    from binkit_kws.cnn import SmallCNN, SmallCNNParams

    net = binkit.binarize(SmallCNN(SmallCNNParams(channels=8, blocks=1), 3, (1, 8, 8)), "bifsmn").eval()
    with pytest.raises(ExportError, match="not a plain chain|no export lowering"):
        export_model(net, tmp_path / "m.bkm", labels=list("abc"))
    assert not list(tmp_path.iterdir())


def test_float16_is_measured(tmp_path):
    net = _net()
    report = export_model(net, tmp_path / "m.bkm", labels=list("abc"), float16=True, float16_tolerance=1.0)
    err = report.float16_error["default"]
    assert set(err) == {"max_abs", "max_rel", "argmax_agreement"}
    art = load_artifact(tmp_path / "m.bkm")
    dtypes = {art.tensors[o["tensors"]["weight"]].dtype for o in art.ops if o["op"].endswith("_fp")}
    if report.float16:
        assert dtypes == {np.dtype(np.float16)}
    assert "float16" in report.float16_note or "probe" in report.float16_note
    strict = export_model(net, tmp_path / "s.bkm", labels=list("abc"), float16=True, float16_tolerance=0.0)
    assert not strict.float16 or strict.float16_error["default"]["max_rel"] == 0.0


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import binkit.export.writer as writer

    def boom(*a, **k):
        raise OSError("disk full")

    net = _net()
    calls = {"n": 0}
    real = writer.save_artifact

    def second_call_fails(path, *a, **k):
        calls["n"] += 1
        if str(path).endswith(".tmp"):
            boom()
        return real(path, *a, **k)

    monkeypatch.setattr(writer, "save_artifact", second_call_fails)
    target = tmp_path / "out" / "m.bkm"
    with pytest.raises(OSError, match="disk full"):
        export_model(net, target, labels=list("abc"), float16=False)
    assert not target.exists() and not any(target.parent.iterdir())


def test_export_run_roundtrip_with_checkpoint(tmp_path):
    """export_run reads model.pt (spec, labels, feature shape) written like the trainer does."""
    from binkit.specs import parse_spec, spec_to_toml

    spec = parse_spec({
        "data": {"dataset": "tones"},
        "model": {"architecture": "bifsmn", "params": {"num_blocks": 2, "memory_size": 16, "hidden_size": 16,
                                                     "frontend_channels": 4}},
        "binarization": {"method": "bifsmn"},
    })
    from binkit.specs import resolve
    from binkit.train.build import build_model

    resolved = resolve(spec)
    model = build_model(resolved, 3, (1, 32, 32))
    torch.save({"spec_toml": spec_to_toml(spec), "labels": ["a", "b", "c"], "feature_shape": [1, 32, 32],
                "state_dict": model.state_dict()}, tmp_path / "model.pt")
    from binkit.export import export_run

    report = export_run(tmp_path, tmp_path / "m.bkm", float16=False)
    assert report.views == ["2", "1"]
    rt = binkit.runtime.load(tmp_path / "m.bkm")
    assert rt.labels == ["a", "b", "c"] and rt.frontend is not None


def test_export_run_probes_with_the_runs_validation_clips(tmp_path, monkeypatch):
    """export_run adds the run's own validation features to the probe (float16 and conformance
    are judged on real inputs), and falls back to noise when the data is not here."""
    from binkit.specs import parse_spec, resolve, spec_to_toml
    from binkit.train.build import build_model
    import binkit.export as ex
    import binkit.export.writer as writer

    spec = parse_spec({"data": {"dataset": "tones", "params": {"num_classes": 3, "val_per_class": 5}},
                       "model": {"architecture": "mlp", "params": {"hidden": 16, "depth": 2}},
                       "binarization": {"method": "bnn"}})
    resolved = resolve(spec)
    data = resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)
    shape = tuple(next(iter(data.batches("val", 4)))[0].shape[1:])
    model = build_model(resolved, 3, shape)
    torch.save({"spec_toml": spec_to_toml(spec), "labels": ["a", "b", "c"], "feature_shape": list(shape),
                "state_dict": model.state_dict()}, tmp_path / "model.pt")
    seen = []
    real_export = writer.export_model
    monkeypatch.setattr(writer, "export_model", lambda *a, **k: (seen.append(k["probe"]), real_export(*a, **k))[1])
    ex.export_run(tmp_path, tmp_path / "m.bkm", float16=False)
    assert len(seen[-1]) == writer.PROBE_CLIPS + 15  # noise clips + the 3 x 5 validation clips
    monkeypatch.setattr(ex, "_run_probe", lambda *a: None)
    ex.export_run(tmp_path, tmp_path / "m2.bkm", float16=False)
    assert seen[-1] is None  # export_model's own noise probe
