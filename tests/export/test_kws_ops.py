"""The ops the KWS backbones add (bdwconv2d, avgpool2d, mean, silu, broadcasting add): export from
torch, the reference backend against torch, and the loader's checks of their attributes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import binkit
from binkit.export import ExportError, export_model
from binkit.runtime import load
from binkit.runtime.artifact import ArtifactError, load_artifact, required_features, save_artifact
from binkit.runtime.reference import ReferenceBackend
from kwsparts import IN_SHAPE, kws_ops_parts
from testnets import BroadcastNet, KwsOpsNet, randomize_stats


def _torch_vs_reference(net, shape, path, n=1024, seed=0):
    export_model(net, path, labels=[str(i) for i in range(net.head.out_features)], float16=False,
                 feature_shape=shape)
    prog = ReferenceBackend().load(path)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    x[: n // 8] = torch.round(x[: n // 8])  # exact zeros and ties
    with torch.no_grad():
        want = net(x).numpy()
    got = prog.run(x.numpy(), prog.artifact.default_view)
    rel = np.abs(got - want).max(1) / np.maximum(np.abs(want).max(1), 1e-6)
    return prog.artifact, rel, (got.argmax(1) == want.argmax(1)).mean()


@pytest.mark.parametrize("method", ["bifsmn", "bnn"])
def test_kws_ops_chain_torch_vs_reference(tmp_path, method):
    net = randomize_stats(binkit.binarize(KwsOpsNet(), method), seed=3)
    art, rel, agree = _torch_vs_reference(net, (1, 12, 10), tmp_path / "k.bkm")
    kinds = [op["op"] for op in art.view_ops(art.default_view)]
    assert {"bdwconv2d", "bconv2d", "silu", "avgpool2d", "mean"} <= set(kinds)
    assert required_features(art) >= {"bdwconv2d", "silu", "avgpool2d", "mean"}
    assert (rel < 1e-4).mean() >= 0.999 and agree >= 0.999


def test_broadcast_add_torch_vs_reference(tmp_path):
    net = randomize_stats(binkit.binarize(BroadcastNet(), "bifsmn"), seed=4)
    art, rel, agree = _torch_vs_reference(net, (1, 8, 12), tmp_path / "b.bkm")
    add = next(op for op in art.ops if op["op"] == "add")
    shapes = art.shapes[art.default_view]
    assert shapes[add["inputs"][0]] == (40, 8, 12) and shapes[add["inputs"][1]] == (40, 1, 12)
    assert "broadcast_add" in required_features(art)
    assert (rel < 1e-4).mean() >= 0.999 and agree >= 0.999


def test_auto_backend_falls_back_for_missing_features(tmp_path):
    tensors, meta = kws_ops_parts()
    save_artifact(tmp_path / "k.bkm", tensors, meta)
    model = load(tmp_path / "k.bkm", backend="auto")
    scores, _ = model.predict(np.zeros(IN_SHAPE, np.float32))
    assert np.isfinite(scores).all()
    model = load(tmp_path / "k.bkm", backend="reference")
    assert model.backend == "reference"


def test_depthwise_conv2d_with_weight_planes_is_refused(tmp_path):
    net = randomize_stats(binkit.binarize(KwsOpsNet(), {"method": "residual", "params": {"weight_planes": 2}}))
    with pytest.raises(ExportError, match=r"dw: a depthwise Conv2d runs one plane only .*2 weight plane"):
        export_model(net, tmp_path / "m.bkm", labels=list("abcd"), feature_shape=(1, 12, 10))
    assert not (tmp_path / "m.bkm").exists()


def test_avgpool_reference_counts_padding_as_asked(tmp_path):
    outs = {}
    for inc in (False, True):
        tensors, meta = kws_ops_parts(count_include_pad=inc)
        save_artifact(tmp_path / f"k{inc}.bkm", tensors, meta)
        prog = ReferenceBackend().load(tmp_path / f"k{inc}.bkm")
        x = np.random.default_rng(1).standard_normal((3, *IN_SHAPE)).astype(np.float32)
        outs[inc] = prog.run(x, "full")
    assert not np.allclose(outs[False], outs[True])
    pool = torch.nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)
    from binkit.runtime.reference import _avgpool2d
    x = np.random.default_rng(2).standard_normal((2, 3, 5, 4))
    want = pool(torch.from_numpy(x)).numpy()
    got = _avgpool2d({"kernel_size": [2, 2], "stride": [1, 1], "padding": [[1, 1], [1, 1]],
                      "count_include_pad": False}, {}, x)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def _mutated(tmp_path, fn):
    tensors, meta = kws_ops_parts()
    meta = copy.deepcopy(meta)
    fn(tensors, {op["name"]: op for op in meta["plan"]["ops"]})
    save_artifact(tmp_path / "bad.bkm", tensors, meta)
    return tmp_path / "bad.bkm"


@pytest.mark.parametrize("mutate, message", [
    (lambda t, o: o["dw"]["attrs"].update(kernel_size=[3]), "kernel_size"),
    (lambda t, o: o["dw"]["attrs"].update(weight_planes=2), "one plane only"),
    (lambda t, o: t.update({"dw.weight": t["dw.weight"][:2]}), "packed weight must be"),
    (lambda t, o: o["dw"]["attrs"].update(in_channels=64), "in_channels=64"),
    (lambda t, o: o["pool"]["attrs"].update(padding=[[2, 2], [0, 0]]), "more than half the kernel"),
    (lambda t, o: o["pool"]["attrs"].pop("count_include_pad"), "count_include_pad"),
    (lambda t, o: o["freq"]["attrs"].update(axes=[1, 1]), "distinct axes"),
    (lambda t, o: o["freq"]["attrs"].update(axes=[3]), "distinct axes"),
    (lambda t, o: o["gap"]["attrs"].update(axes=[0, 1, 2]), "leaves no axis"),
    (lambda t, o: o["bcast"].update(inputs=["pool", "stem"]), "cannot add shapes"),
])
def test_loader_refuses_bad_kws_ops(tmp_path, mutate, message):
    path = _mutated(tmp_path, mutate)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)


def test_hand_written_artifact_shapes(tmp_path):
    tensors, meta = kws_ops_parts()
    save_artifact(tmp_path / "k.bkm", tensors, meta)
    art = load_artifact(tmp_path / "k.bkm")
    s = art.shapes["full"]
    assert s["dw"] == (70, 5, 8) and s["pool"] == (70, 6, 9) and s["freq"] == (70, 1, 9)
    assert s["bcast"] == (70, 6, 9) and s["gap"] == (70,)
    assert required_features(art) == {"bdwconv2d", "avgpool2d", "mean", "silu", "broadcast_add"}


class _DepthwiseFold(torch.nn.Module):
    """Binary depthwise 3x3 on 3 channels (channels == kernel height) -> BN -> PReLU(0.25) -> binary
    1x1: export folds the depthwise output into sign thresholds, flipping negative channels."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.dw = torch.nn.Conv2d(3, 3, 3, padding=1, groups=3)
        self.bn = torch.nn.BatchNorm2d(3)
        self.act = torch.nn.PReLU()
        self.pw = torch.nn.Conv2d(3, 8, 1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.pool(self.pw(self.act(self.bn(self.dw(self.stem(x)))))).flatten(1))


def _depthwise_fold_net():
    net = binkit.binarize(_DepthwiseFold(), "bnn").eval()
    with torch.no_grad():
        net.bn.weight[0] = -1.0  # one channel with a negative multiplier: its weights flip
    return net


def test_sign_fold_flips_depthwise_conv2d_channels(tmp_path):
    net = _depthwise_fold_net()
    report = export_model(net, tmp_path / "m.bkm", labels=list("abc"), feature_shape=(1, 6, 6), float16=False)
    assert report.sign_folded == ["dw"]
    prog = ReferenceBackend().load(tmp_path / "m.bkm")
    x = torch.randn(512, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net(x).numpy()
    got = prog.run(x.numpy(), prog.artifact.default_view)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_plan_that_does_not_reproduce_the_model_is_not_written(tmp_path, monkeypatch):
    import binkit.export.lower as lower

    monkeypatch.setattr(lower, "_flip_rows", lambda op, words, flip: words)  # a lowering bug
    with pytest.raises(ExportError, match="does not reproduce the model"):
        export_model(_depthwise_fold_net(), tmp_path / "m.bkm", labels=list("abc"), feature_shape=(1, 6, 6))
    assert list(tmp_path.iterdir()) == []


def test_report_names_the_full_precision_layers(tmp_path):
    net = randomize_stats(binkit.binarize(KwsOpsNet(), "bifsmn"), seed=3)
    report = export_model(net, tmp_path / "k.bkm", labels=list("abcd"), float16=False, feature_shape=(1, 12, 10))
    # the stem and head stay float; bn0 follows a float conv, so it stays an affine op
    assert report.float_layers == [{"layer": "stem", "op": "conv2d_fp"}, {"layer": "bn0", "op": "affine"},
                                   {"layer": "head", "op": "linear_fp"}]
    assert "full-precision layers: 3: stem (conv2d_fp), bn0 (affine), head (linear_fp)" in report.to_markdown()
