"""Sign-threshold folding: binary op -> PReLU -> (only binary ops) becomes one integer per channel.

The folded plan must be bitwise identical to the unfolded one on the reference backend (the
next binary op sees the same signs), channels with a negative multiplier are flipped, and a
PReLU with a non-positive slope, or a value that also feeds float ops, is left alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import binkit
from binkit import registry
from binkit.export import export_model
from binkit.export.lower import PlanBuilder, _sign_thresholds
from binkit.runtime.artifact import load_artifact
from binkit.runtime.reference import ReferenceProgram


@pytest.fixture(scope="module", autouse=True)
def _plugins():
    if "reference" not in registry.names("backend"):
        registry.register_plugin("binkit.runtime.plugin")


def test_thresholds_are_exact_against_the_float_formula():
    rng = np.random.default_rng(0)
    k = 40
    mult = rng.standard_normal(500).astype(np.float32)
    mult[:20] = 0.0
    off = (rng.standard_normal(500) * 20).astype(np.float32)
    # offsets that sit exactly on an integer multiple: m * d + c == 0 for some d (sign(0) = +1)
    off[20:60] = -mult[20:60] * rng.integers(-k, k + 1, 40).astype(np.float32)
    thr, flip = _sign_thresholds(mult, off, k)
    dots = np.arange(-k, k + 1)
    for o in range(len(mult)):
        want = (mult[o].astype(np.float64) * dots + off[o].astype(np.float64)) >= 0  # +1 where True
        s = -1 if flip[o] else 1
        got = s * dots >= thr[o]
        np.testing.assert_array_equal(got, want, err_msg=f"channel {o}: m={mult[o]!r} c={off[o]!r}")
    assert flip.sum() == (mult < 0).sum()


def _dfsmn(seed=0, slope=None, method="bifsmn"):
    """A 4-block thinnable DFSMN binarized by ``method`` with trained-looking BatchNorms and
    PReLU slopes ``slope`` (0.25 by default)."""
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

    torch.manual_seed(seed)
    model = binkit.binarize(DFSMN(DFSMNParams(num_blocks=4, thin_levels=["4", "2"], view_weights={"4": 1.0, "2": 0.5}), 12, (1, 32, 32)), method)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 3 - 1.5)  # some negative: flipped channels
                m.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.fill_(0.25 if slope is None else slope)
    return model.eval()


def _export(model, path, fold: bool, monkeypatch):
    if not fold:
        monkeypatch.setattr(PlanBuilder, "fold_sign_outputs", lambda self: [])
    report = export_model(model, path, labels=[str(i) for i in range(12)], float16=False)
    monkeypatch.undo()
    return report


def test_folded_plan_is_bitwise_identical(tmp_path, monkeypatch):
    model = _dfsmn()
    plain = _export(model, tmp_path / "plain.bkm", False, monkeypatch)
    folded = _export(model, tmp_path / "folded.bkm", True, monkeypatch)
    assert not plain.sign_folded
    assert folded.sign_folded == [f"blocks.{i}.expand" for i in range(4)]
    assert folded.size_bytes < plain.size_bytes
    a, b = load_artifact(tmp_path / "plain.bkm"), load_artifact(tmp_path / "folded.bkm")
    assert len(b.ops) == len(a.ops) - 4
    thr = [op for op in b.ops if "threshold" in op["tensors"]]
    assert len(thr) == 4 and all(b.tensors[op["tensors"]["threshold"]].dtype == np.int16 for op in thr)
    assert any(op["tensors"]["weight"].endswith(".signfold") for op in thr)  # negative BN gammas flipped
    x = np.random.default_rng(1).standard_normal((64, 1, 32, 32)).astype(np.float32)
    x[:4, :, :8] = 0.0  # exact zeros: sign(0) = +1
    pa, pb = ReferenceProgram(a), ReferenceProgram(b)
    for view in a.views:
        np.testing.assert_array_equal(pb.run(x, view), pa.run(x, view))


@pytest.mark.parametrize("slope", [0.0, -0.3])
def test_non_positive_prelu_slope_is_not_folded(tmp_path, monkeypatch, slope):
    report = _export(_dfsmn(slope=slope), tmp_path / "m.bkm", True, monkeypatch)
    assert report.sign_folded == []


def test_threshold_artifact_validation(tmp_path, monkeypatch):
    from safetensors.numpy import save_file
    from binkit.runtime.artifact import ArtifactError, compute_checksum

    _export(_dfsmn(), tmp_path / "m.bkm", True, monkeypatch)
    art = load_artifact(tmp_path / "m.bkm")
    name = next(op["tensors"]["threshold"] for op in art.ops if "threshold" in op["tensors"])
    for bad, match in [(art.tensors[name].astype(np.float32), "dtype float32, expected int16 or int32"),
                       (art.tensors[name][:-1], "has shape")]:
        tensors = dict(art.tensors, **{name: bad})
        meta = dict(art.metadata)
        meta["checksum"] = compute_checksum(meta, tensors)
        save_file(tensors, str(tmp_path / "bad.bkm"), metadata=meta)
        with pytest.raises(ArtifactError, match=match):
            load_artifact(tmp_path / "bad.bkm")


def _reactnet_dfsmn(seed=0, beta=(0.05, 0.5), bias_scale=1.0):
    """ReActNet DFSMN, trained-looking: RSign thresholds, RPReLU shifts and slopes in ``beta``."""
    from binkit_binarizers.reactnet import RPReLU, RSignInputQuantizer

    model = _dfsmn(seed, method="reactnet")
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RSignInputQuantizer):
                m.threshold.copy_((torch.rand(m.threshold.shape, generator=g) - 0.5) * bias_scale)
            elif isinstance(m, RPReLU):
                m.gamma.copy_((torch.rand(m.gamma.shape, generator=g) - 0.5) * bias_scale)
                m.zeta.copy_((torch.rand(m.zeta.shape, generator=g) - 0.5) * bias_scale)
                m.beta.copy_(torch.rand(m.beta.shape, generator=g) * (beta[1] - beta[0]) + beta[0])
    return model


def test_prelu_then_affine_folds_exactly(tmp_path, monkeypatch):
    """ReActNet: binary op -> PReLU -> affine (RPReLU's +zeta with the next RSign's -t) -> binary op."""
    model = _reactnet_dfsmn()
    plain = _export(model, tmp_path / "plain.bkm", False, monkeypatch)
    folded = _export(model, tmp_path / "folded.bkm", True, monkeypatch)
    assert folded.sign_folded == [f"blocks.{i}.expand" for i in range(4)]
    a, b = load_artifact(tmp_path / "plain.bkm"), load_artifact(tmp_path / "folded.bkm")
    assert len(b.ops) == len(a.ops) - 8  # a PReLU and an affine per block
    x = np.random.default_rng(2).standard_normal((64, 1, 32, 32)).astype(np.float32)
    x[:4, :, :8] = 0.0
    pa, pb = ReferenceProgram(a), ReferenceProgram(b)
    for view in a.views:
        np.testing.assert_array_equal(pb.run(x, view), pa.run(x, view))
    assert not plain.sign_folded and all(e["max_rel"] < 1e-5 for e in folded.conformance.values())


def test_prelu_then_affine_is_not_folded_with_a_non_positive_slope(tmp_path, monkeypatch):
    report = _export(_reactnet_dfsmn(beta=(-0.3, -0.01)), tmp_path / "m.bkm", True, monkeypatch)
    assert report.sign_folded == []


@pytest.mark.parametrize("m2", [0.0, -0.5])
def test_prelu_then_affine_is_not_folded_with_a_non_positive_affine_multiplier(tmp_path, monkeypatch, m2):
    """``m2 prelu(z) + c2 >= 0 iff z >= q`` needs ``m2 > 0``. RPReLU's affines always have
    ``m2 = 1``, so the plan is edited just before folding (one channel gets ``m2``), folded,
    then restored and folded again so that the export still reproduces the model."""
    fold = PlanBuilder.fold_sign_outputs
    edited_result = []

    def edited(self):
        saved = {}
        for op in self.ops:
            if op["op"] == "affine":
                name = op["tensors"]["multiplier"]
                mult = self.tensors[name].copy()
                mult[3] = m2
                self.tensors[f"{name}.edited"] = mult
                op["tensors"]["multiplier"] = saved[id(op)] = f"{name}.edited"
        edited_result.append(fold(self))
        for op in self.ops:
            if id(op) in saved:
                op["tensors"]["multiplier"] = saved[id(op)].removesuffix(".edited")
        return fold(self)

    monkeypatch.setattr(PlanBuilder, "fold_sign_outputs", edited)
    report = export_model(_reactnet_dfsmn(), tmp_path / "m.bkm", labels=[str(i) for i in range(12)], float16=False)
    assert edited_result == [[]]
    assert report.sign_folded == [f"blocks.{i}.expand" for i in range(4)]  # the unedited plan folds
