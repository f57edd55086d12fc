"""Export of the KWS backbones (DS-CNN, TC-ResNet, BC-ResNet; lowerings in binkit_kws/export.py):
the reference backend against torch eval on random clips, full precision and binarized, and
which ops each plan holds.

The feature shape (1, 13, 11) is odd on purpose: DS-CNN's TF 'SAME' stem then pads one more row
and column at the end (its ZeroPad2d, folded into the conv's padding), and BC-ResNet's blocks see
frequency sizes 7, 4, 2 (SubSpectral norm with 1, 4 and 2 sub-bands: folded BatchNorm and the
reshape -> affine -> reshape form both).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import binkit
from binkit import registry
from binkit.export import ExportError, export_model, find_lowering
from binkit.export.lower import BINARY_OPS
from binkit.nn.layers import BinaryLayerMixin
from binkit.runtime.reference import ReferenceBackend
from testnets import randomize_stats

SHAPE = (1, 13, 11)
LABELS = list("abcde")
CASES = {
    "dscnn": {"size": "S"},
    "tcresnet": {"depth": 8},
    "bcresnet": {"width": 1},
}
FLOAT_OPS = ("conv2d_fp", "conv1d_fp", "linear_fp")

# op kinds of each binarized plan (stem and classifier float, every other conv binary); DS-CNN's
# depthwise convs feed a PReLU that only feeds the pointwise conv, so the PReLU folds into a sign
# threshold (5 of its 9 PReLUs remain); TC-ResNet's conv1 -> act1 -> conv2 likewise (7 of 10 remain)
BINARY_PLANS = {
    "dscnn": {"conv2d_fp": 1, "affine": 1, "prelu": 5, "bdwconv2d": 4, "bconv2d": 4, "mean": 1,
              "flatten": 1, "linear_fp": 1},
    "tcresnet": {"reshape": 1, "conv1d_fp": 1, "affine": 1, "bconv1d": 9, "prelu": 7, "add": 3, "mean": 1,
                 "linear_fp": 1},
    # 12 blocks (4 transitions) and the head: 25 bdwconv2d (12 frequency + 12 temporal + head), 17
    # bconv2d (4 expand + 12 pointwise + head); SubSpectral norm as reshape/affine/reshape in the 10
    # blocks whose frequency size (4, 2) has sub-bands; 3 of the 18 PReLUs (transition expansions with
    # positive slopes, whose output only feeds the frequency conv) fold into sign thresholds
    "bcresnet": {"conv2d_fp": 1, "affine": 11, "prelu": 15, "bdwconv2d": 25, "bconv2d": 17, "reshape": 20,
                 "mean": 13, "silu": 12, "add": 20, "linear_fp": 1},
}


def build(arch: str, method: str | None, activation: str, seed: int = 0, **extra):
    """The model as the trainer builds it (architecture entry's factory, then binarize)."""
    entry = registry.get("architecture", arch)
    model = entry.factory(entry.params.model_validate({**CASES[arch], "activation": activation, **extra}),
                          len(LABELS), SHAPE)
    model.feature_shape = SHAPE
    if method is not None:
        model = binkit.binarize(model, method)
    return randomize_stats(model, seed=seed)


def torch_vs_reference(model, path, n=1024, seed=0):
    report = export_model(model, path, labels=LABELS, float16=False, feature_shape=SHAPE)
    prog = ReferenceBackend().load(path)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *SHAPE, generator=g)
    x[: n // 8] = torch.round(x[: n // 8])  # exact zeros (about 38% of these values) and ties
    x[0] = 0.0
    with torch.no_grad():
        want = model(x).numpy()
    got = prog.run(x.numpy(), prog.artifact.default_view)
    rel = np.abs(got - want).max(1) / np.maximum(np.abs(want).max(1), 1e-6)
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    kinds = Counter(op["op"] for op in prog.artifact.view_ops(prog.artifact.default_view))
    return report, kinds, rel, agree


def _binary_layers(model) -> int:
    return sum(isinstance(m, BinaryLayerMixin) and m.weight_quantizer is not None for m in model.modules())


@pytest.mark.parametrize("arch", ["dscnn", "tcresnet", "bcresnet"])
@pytest.mark.parametrize("method", ["bifsmn", "bnn"])
def test_binarized_backbone_matches_torch(tmp_path, arch, method):
    model = build(arch, method, "prelu", seed=1)
    report, kinds, rel, agree = torch_vs_reference(model, tmp_path / "m.bkm")
    assert (rel < 1e-4).mean() >= 0.999 and agree >= 0.999, (rel.max(), agree)
    assert dict(kinds) == BINARY_PLANS[arch]
    # binary everywhere but the first conv and the classifier; nothing fell back to float
    assert sum(kinds[k] for k in FLOAT_OPS) == 2 and kinds["linear_fp"] == 1
    assert sum(kinds[k] for k in BINARY_OPS) == _binary_layers(model)
    assert not report.fallbacks
    assert report.conformance["default"]["argmax_agreement"] == 1.0


@pytest.mark.parametrize("method", ["bifsmn", "bnn"])
def test_binarized_dscnn_without_flipped_channels_matches_torch(tmp_path, method):
    """DS-CNN with every BN gamma > 0 (no flipped sign-fold channels): the stem's folded padding."""
    model = build("dscnn", method, "prelu", seed=1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.abs_().add_(0.05)
    report, kinds, rel, agree = torch_vs_reference(model, tmp_path / "m.bkm")
    assert (rel < 1e-4).mean() >= 0.999 and agree >= 0.999, (rel.max(), agree)
    assert dict(kinds) == BINARY_PLANS["dscnn"]
    assert len(report.sign_folded) == 4 and not report.fallbacks
    stem = next(op for op in ReferenceBackend().load(tmp_path / "m.bkm").artifact.ops if op["op"] == "conv2d_fp")
    assert stem["attrs"]["padding"] == [[1, 2], [4, 5]]  # conv (1, 4) + ZeroPad2d's (0, 1) at the end


@pytest.mark.parametrize("arch", ["dscnn", "tcresnet", "bcresnet"])
def test_full_precision_backbone_matches_torch(tmp_path, arch):
    model = build(arch, None, "relu", seed=2)
    _, kinds, rel, agree = torch_vs_reference(model, tmp_path / "m.bkm")
    assert (rel < 1e-4).mean() >= 0.999 and agree >= 0.999, (rel.max(), agree)
    assert not any(kinds[k] for k in BINARY_OPS) and kinds["relu"] > 0 and "prelu" not in kinds
    assert kinds["linear_fp"] == 1


def test_bcresnet_without_subspectral_norm(tmp_path):
    model = build("bcresnet", "bifsmn", "prelu", seed=3, subspectral=False)
    _, kinds, rel, agree = torch_vs_reference(model, tmp_path / "m.bkm", n=256)
    assert (rel < 1e-4).mean() >= 0.99 and agree >= 0.99, (rel.max(), agree)
    assert "reshape" not in kinds and kinds["affine"] == 1  # every BN folds except the stem's


def test_lowerings_come_from_the_kws_plugin():
    from binkit_kws import export

    assert {"dscnn", "tcresnet", "bcresnet"} <= set(registry.names("lowering"))
    for arch, fn in (("dscnn", export.lower_dscnn), ("tcresnet", export.lower_tcresnet),
                     ("bcresnet", export.lower_bcresnet)):
        assert find_lowering(build(arch, "bnn", "prelu")) is fn


def test_binary_stem_with_extra_padding_is_refused(tmp_path):
    entry = registry.get("architecture", "dscnn")
    model = entry.factory(entry.params.model_validate({"size": "S", "activation": "prelu"}), 5, SHAPE)
    model = randomize_stats(binkit.binarize(model, {"method": "bnn", "keep_first": False}))
    with pytest.raises(ExportError, match=r"layer 'stem': the binary stem reads the ZeroPad2d"):
        export_model(model, tmp_path / "m.bkm", labels=LABELS, feature_shape=SHAPE)
    assert not (tmp_path / "m.bkm").exists()


def test_backbone_views_are_single(tmp_path):
    with pytest.raises(ExportError, match="single"):
        export_model(build("tcresnet", "bnn", "prelu"), tmp_path / "m.bkm", labels=LABELS,
                     feature_shape=SHAPE, views=["full", "half"])
