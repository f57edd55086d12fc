"""Tests of High-frequency Enhancement Distillation (bifsmn_plugin/hed.py).

The oracle for the Haar transform is PyWavelets (``pywt.dwt2``/``pywt.idwt2``, wavelet 'haar',
mode 'zero', which pytorch_wavelets, used by the official code, reproduces). The target and the
distance are written out here from shared/reference/bifsmn.md section 5, in numpy:
``T^ = HP(T)/std(HP(T)) + T/std(T)`` (unbiased std over the whole tensor) and
``D(A, B) = || A^2/||A^2||_F - B^2/||B^2||_F ||_F``; block matching ``j = (L_T/L_S)(k+1) - 1``.
"""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from pydantic import ValidationError

from bifsmn_plugin.hed import (
    HED,
    HEDParams,
    attention_distance,
    block_features,
    haar_dwt2,
    haar_highpass,
    haar_idwt2,
    haar_lowpass,
    hed_loss,
    hed_target,
    match_blocks,
)
from binkit import registry
from binkit.distill import Distiller, DistillOutputs

SIZES = [(8, 8), (128, 8), (2, 2), (5, 7), (1, 1), (3, 4), (6, 3), (128, 26), (7, 1)]



def rand(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def pywt_highpass(x: np.ndarray) -> np.ndarray:
    """HP of one 2-D array: pywt DWT, zero cA, inverse, crop to the input size."""
    ca, details = pywt.dwt2(x, "haar", mode="zero")
    y = pywt.idwt2((np.zeros_like(ca), details), "haar", mode="zero")
    return y[: x.shape[0], : x.shape[1]]


def np_target(t: np.ndarray) -> np.ndarray:
    hp = np.stack([pywt_highpass(f) for f in t])
    return hp / hp.std(ddof=1) + t / t.std(ddof=1)


def np_distance(a: np.ndarray, b: np.ndarray) -> float:
    qa, qb = np.abs(a) ** 2, np.abs(b) ** 2
    return float(np.sqrt(((qa / np.sqrt((qa ** 2).sum()) - qb / np.sqrt((qb ** 2).sum())) ** 2).sum()))


class TestHaar:
    @pytest.mark.parametrize("size", SIZES)
    def test_dwt_matches_pywt(self, size):
        x = rand(size, 0)
        ca, (ch, cv, cd) = pywt.dwt2(x, "haar", mode="zero")
        ll, (lh, hl, hh) = haar_dwt2(torch.from_numpy(x))
        for ours, ref in ((ll, ca), (lh, ch), (hl, cv), (hh, cd)):
            np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("size", SIZES)
    def test_idwt_matches_pywt(self, size):
        x = rand(size, 1)
        coeffs = pywt.dwt2(x, "haar", mode="zero")
        ref = pywt.idwt2(coeffs, "haar", mode="zero")
        ours = haar_idwt2(torch.from_numpy(coeffs[0]), tuple(torch.from_numpy(c) for c in coeffs[1]))
        np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)

    @pytest.mark.parametrize("size", SIZES)
    def test_highpass_matches_pywt(self, size):
        x = rand(size, 2)
        np.testing.assert_allclose(haar_highpass(torch.from_numpy(x)).numpy(), pywt_highpass(x),
                                   rtol=0, atol=1e-12)

    def test_batched_over_leading_axes(self):
        x = rand((4, 128, 8), 3)
        ours = haar_highpass(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(ours, np.stack([pywt_highpass(f) for f in x]), rtol=0, atol=1e-12)
        # (batch, 1, C, T), as the code feeds pytorch_wavelets, gives the same
        np.testing.assert_allclose(haar_highpass(torch.from_numpy(x)[:, None]).numpy()[:, 0], ours,
                                   rtol=0, atol=1e-12)

    @pytest.mark.parametrize("size", [(8, 8), (128, 8), (4, 26), (5, 7), (3, 1)])
    def test_high_plus_low_is_identity(self, size):
        x = torch.from_numpy(rand((2, *size), 4))
        torch.testing.assert_close(haar_highpass(x) + haar_lowpass(x), x, rtol=0, atol=1e-12)

    def test_lowpass_is_block_mean_on_even_sizes(self):
        x = torch.from_numpy(rand((6, 8), 5))
        means = x.reshape(3, 2, 4, 2).mean(dim=(1, 3))
        torch.testing.assert_close(haar_lowpass(x), means.repeat_interleave(2, 0).repeat_interleave(2, 1))

    def test_highpass_kills_blockwise_constants(self):
        x = torch.arange(12.0).reshape(3, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)
        assert torch.equal(haar_highpass(x), torch.zeros_like(x))

    def test_float32_and_gradient(self):
        x = torch.randn(2, 16, 8, requires_grad=True)
        y = haar_highpass(x)
        assert y.dtype == torch.float32 and y.shape == x.shape
        y.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


class TestTargetAndDistance:
    def test_target_high(self):
        t = rand((4, 128, 8), 6)
        np.testing.assert_allclose(hed_target(torch.from_numpy(t), "high").numpy(), np_target(t),
                                   rtol=1e-12, atol=1e-12)

    def test_target_none(self):
        t = rand((4, 16, 8), 7)
        np.testing.assert_allclose(hed_target(torch.from_numpy(t), "none").numpy(), t / t.std(ddof=1),
                                   rtol=1e-12, atol=1e-12)

    def test_target_rejects_unknown_pass(self):
        with pytest.raises(ValueError, match="'high' or 'none'"):
            hed_target(torch.zeros(1, 2, 2), "low")

    def test_constant_teacher_is_guarded(self):
        # std(HP(T)) = 0 for a block-wise constant T: the term is 0, not NaN.
        t = torch.ones(2, 4, 8)
        target = hed_target(t, "high")
        assert torch.isfinite(target).all()
        torch.testing.assert_close(target, hed_target(t, "none"))  # the HP term is exactly 0
        assert torch.isfinite(attention_distance(torch.randn(2, 4, 8), target))

    def test_distance_formula(self):
        a, b = rand((4, 128, 8), 8), rand((4, 128, 8), 9)
        ours = attention_distance(torch.from_numpy(a), torch.from_numpy(b))
        assert ours.dim() == 0
        assert ours.item() == pytest.approx(np_distance(a, b), rel=1e-12)

    def test_distance_is_batch_global_not_per_sample(self):
        # Scaling one example changes a batch-global normalisation (a per-sample one would not).
        a, b = torch.randn(2, 8, 4, dtype=torch.float64), torch.randn(2, 8, 4, dtype=torch.float64)
        a2 = a.clone()
        a2[0] *= 3
        assert not torch.isclose(attention_distance(a, b), attention_distance(a2, b))

    def test_distance_scale_invariant_and_zero_on_equal(self):
        a, b = torch.randn(3, 8, 4, dtype=torch.float64), torch.randn(3, 8, 4, dtype=torch.float64)
        torch.testing.assert_close(attention_distance(a, b), attention_distance(5 * a, 0.1 * b))
        assert attention_distance(a, -a).item() == pytest.approx(0.0, abs=1e-12)

    def test_distance_shape_mismatch(self):
        with pytest.raises(ValueError, match="equal shape"):
            attention_distance(torch.zeros(2, 4, 8), torch.zeros(2, 4, 6))

    def test_none_equals_raw_teacher(self):
        # D is scale invariant, so T/std(T) is the code's select_pass='no' (raw teacher features).
        s, t = torch.randn(2, 8, 4, dtype=torch.float64), torch.randn(2, 8, 4, dtype=torch.float64)
        torch.testing.assert_close(hed_loss([s], [t], "none"), attention_distance(s, t))


def taps(blocks, seed: int, shape=(3, 16, 8), requires_grad=False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"block{i}": torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)
            for i in blocks}


class TestMatching:
    @pytest.mark.parametrize("num_student, expected", [
        (8, [0, 1, 2, 3, 4, 5, 6, 7]), (4, [1, 3, 5, 7]), (2, [3, 7]), (1, [7]),
    ])
    def test_against_eight_block_teacher(self, num_student, expected):
        assert match_blocks(num_student, 8) == expected
        assert match_blocks(num_student, 8) == [int((8 / num_student) * (k + 1) - 1) for k in range(num_student)]

    @pytest.mark.parametrize("num_student, num_teacher", [(3, 8), (8, 4), (5, 8), (0, 8)])
    def test_indivisible_raises(self, num_student, num_teacher):
        with pytest.raises(ValueError, match=f"teacher has {num_teacher} block tap.*student {num_student}"):
            match_blocks(num_student, num_teacher)

    @pytest.mark.parametrize("view_blocks", [[0, 1, 2, 3, 4, 5, 6, 7], [1, 3, 5, 7], [3, 7], [7]])
    def test_loss_sums_matched_pairs(self, view_blocks):
        student, teacher = taps(view_blocks, 0), taps(range(8), 1)
        loss = HED(HEDParams())(DistillOutputs(torch.zeros(3, 12), student),
                                DistillOutputs(torch.zeros(3, 12), teacher))
        # For these views the matched teacher block has the student block's own index.
        expected = sum(np_distance(student[f"block{i}"].detach().numpy(),
                                   np_target(teacher[f"block{i}"].numpy())) for i in view_blocks)
        assert loss.item() == pytest.approx(expected, rel=1e-10)

    def test_blocks_sorted_by_index_not_by_name(self):
        t = {f"block{i}": torch.full((1,), float(i)) for i in (10, 2, 1, 0)}
        t["logits_tap"] = torch.zeros(1)
        assert [int(v) for v in block_features(t, "teacher")] == [0, 1, 2, 10]

    def test_missing_block_taps(self):
        with pytest.raises(ValueError, match=r"student's taps named 'block\{i\}'.*\['stem'\]"):
            HED()(DistillOutputs(torch.zeros(1, 2), {"stem": torch.zeros(1)}),
                  DistillOutputs(torch.zeros(1, 2), taps(range(8), 0)))

    def test_three_block_student_against_eight_raises(self):
        with pytest.raises(ValueError, match="teacher has 8 block tap\\(s\\), student 3"):
            HED()(DistillOutputs(torch.zeros(3, 2), taps([0, 1, 2], 0)),
                  DistillOutputs(torch.zeros(3, 2), taps(range(8), 1)))


class TestGradients:
    def test_student_only(self):
        student, teacher = taps([1, 3, 5, 7], 0, requires_grad=True), taps(range(8), 1, requires_grad=True)
        loss = HED()(DistillOutputs(torch.zeros(3, 2), student), DistillOutputs(torch.zeros(3, 2), teacher))
        loss.backward()
        assert all(t.grad is None for t in teacher.values())
        assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student.values())

    def test_with_models(self):
        torch.manual_seed(0)
        s_entry = registry.get("architecture", "bifsmn")
        t_entry = registry.get("architecture", "bifsmn_teacher")
        student = s_entry.factory(s_entry.params(), 12, (1, 32, 32))
        teacher = t_entry.factory(t_entry.params(), 12, (1, 32, 32)).eval()
        x = torch.randn(4, 1, 32, 32)
        with torch.no_grad():
            t_out = DistillOutputs(teacher(x), dict(teacher.taps))
        hed = HED()
        for view in ("8", "4", "2", "1"):
            student.zero_grad()
            s_out = DistillOutputs(student(x, view=view), dict(student.taps))
            loss = hed(s_out, t_out)
            assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
            loss.backward()
            assert student.blocks[7].project.weight.grad.abs().sum() > 0


class TestEntry:
    def test_registry(self):
        entry = registry.get("distiller", "hed")
        assert entry.needs_taps and entry.params is HEDParams
        assert entry.provider.endswith(":bifsmn")
        distiller = entry.factory(entry.params.model_validate({"select_pass": "none"}))
        assert isinstance(distiller, Distiller) and distiller.select_pass == "none"

    def test_params(self):
        assert HEDParams().select_pass == "high"
        for bad in ({"select_pass": "low"}, {"eps": 0.0}, {"alpha": 0.01}):
            with pytest.raises(ValidationError):
                HEDParams(**bad)
