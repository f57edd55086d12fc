"""Tests of logit distillation (plugins/binkit_distill/kd.py) and feature taps (binkit/distill/taps.py).

The expected loss is written out from Hinton et al. (arXiv:1503.02531):
``T^2 * mean_b sum_c p_T(c) (log p_T(c) - log p_S(c))`` with ``p = softmax(z / T)``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from binkit import registry
from binkit.distill import Distiller, DistillOutputs, record_taps
from binkit_distill.kd import KD, KDParams, kd_loss


def logits(seed: int, shape=(6, 10), dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 3


def manual_kd(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    p_t = torch.exp(teacher / t) / torch.exp(teacher / t).sum(-1, keepdim=True)
    p_s = torch.exp(student / t) / torch.exp(student / t).sum(-1, keepdim=True)
    kl = (p_t * (torch.log(p_t) - torch.log(p_s))).sum(-1)  # (batch,)
    return t * t * kl.mean()


class TestKDLoss:
    @pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
    def test_equals_t2_kl(self, temperature):
        s, t = logits(0), logits(1)
        torch.testing.assert_close(kd_loss(s, t, temperature), manual_kd(s, t, temperature),
                                   rtol=1e-10, atol=1e-12)

    def test_scalar_and_non_negative(self):
        loss = kd_loss(logits(2), logits(3), 4.0)
        assert loss.dim() == 0 and loss > 0

    @pytest.mark.parametrize("temperature", [1.0, 4.0])
    def test_zero_for_identical_logits(self, temperature):
        z = logits(4)
        assert kd_loss(z, z.clone(), temperature) == 0

    def test_invariant_to_logit_shift(self):
        s, t = logits(5), logits(6)
        torch.testing.assert_close(kd_loss(s + 7.0, t - 3.0, 2.0), kd_loss(s, t, 2.0))

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"\(6, 10\).*\(6, 9\)"):
            kd_loss(logits(0), logits(1, (6, 9)), 4.0)

    def test_batch_mean(self):
        s, t = logits(7), logits(8)
        per_example = torch.stack([kd_loss(s[i:i + 1], t[i:i + 1], 3.0) for i in range(6)])
        torch.testing.assert_close(kd_loss(s, t, 3.0), per_example.mean())


class TestKDDistiller:
    def test_gradient_flows_to_student_only(self):
        student = logits(0).requires_grad_(True)
        teacher = logits(1).requires_grad_(True)
        kd = KD(KDParams(temperature=2.0))
        loss = kd(DistillOutputs(student), DistillOutputs(teacher))
        loss.backward()
        assert teacher.grad is None
        assert student.grad is not None and student.grad.abs().sum() > 0
        # d/dz_S = T * (p_S - p_T) / batch
        p_s, p_t = torch.softmax(student.detach() / 2, -1), torch.softmax(teacher.detach() / 2, -1)
        torch.testing.assert_close(student.grad, 2.0 * (p_s - p_t) / 6)

    def test_ignores_taps(self):
        kd = KD(KDParams())
        s, t = logits(2), logits(3)
        with_taps = kd(DistillOutputs(s, {"a": torch.ones(1)}), DistillOutputs(t, {"b": torch.zeros(1)}))
        torch.testing.assert_close(with_taps, kd_loss(s, t, 4.0))

    def test_is_a_distiller(self):
        assert isinstance(KD(KDParams()), Distiller)

    def test_params(self):
        assert KDParams().temperature == 4.0
        with pytest.raises(ValueError):
            KDParams(temperature=0)
        with pytest.raises(ValueError):
            KDParams(temprature=2.0)


class TestRegistration:
    def test_kd_entry(self):
        entry = registry.get("distiller", "kd")
        assert entry.name == "kd" and entry.needs_taps is False
        assert entry.params is KDParams
        assert "arXiv:1503.02531" in entry.reference
        distiller = entry.factory(entry.params(temperature=3.0))
        s, t = logits(0), logits(1)
        torch.testing.assert_close(distiller(DistillOutputs(s), DistillOutputs(t)), kd_loss(s, t, 3.0))

    def test_kd_is_listed(self):
        assert "kd" in registry.names("distiller")


class TestRecordTaps:
    @staticmethod
    def model() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 3), nn.Tanh()))

    def test_records_named_outputs(self):
        model = self.model()
        x = torch.randn(2, 4)
        with record_taps(model, ["0", "2.0"]) as taps:
            out = model(x)
        assert set(taps) == {"0", "2.0"}
        torch.testing.assert_close(taps["0"], model[0](x))
        torch.testing.assert_close(taps["2.0"], model[2][0](torch.relu(model[0](x))))
        assert out.shape == (2, 3)

    def test_refreshed_by_each_forward(self):
        model = self.model()
        with record_taps(model, ["1"]) as taps:
            model(torch.ones(1, 4))
            first = taps["1"]
            model(-torch.ones(1, 4))
            assert not torch.equal(taps["1"], first)

    def test_hooks_removed_after_the_block(self):
        model = self.model()
        with record_taps(model, ["0"]) as taps:
            pass
        model(torch.randn(2, 4))
        assert taps == {}
        assert not model[0]._forward_hooks

    def test_taps_keep_the_graph(self):
        model = self.model()
        with record_taps(model, ["2.1"]) as taps:
            model(torch.randn(2, 4))
        taps["2.1"].sum().backward()
        assert model[0].weight.grad is not None

    def test_unknown_name(self):
        model = self.model()
        with pytest.raises(KeyError, match=r"nope.*Sequential"):
            with record_taps(model, ["0", "nope"]):
                pass  # pragma: no cover
        assert not model[0]._forward_hooks  # nothing attached

    def test_kws_model_taps(self):
        entry = registry.get("architecture", "mlp")
        model = entry.factory(entry.params(hidden=8, depth=2), 3, (1, 4, 4))
        with record_taps(model, ["blocks.1", "classifier"]) as taps:
            out = model(torch.randn(5, 1, 4, 4))
        assert torch.equal(taps["classifier"], out)
        assert torch.equal(taps["blocks.1"], model.taps["block1"])  # same as the model's own taps
