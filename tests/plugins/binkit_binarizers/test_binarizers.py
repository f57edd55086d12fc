"""Tests of the built-in binarizers (plugins/binkit_binarizers) and of every registered quantizer.

Expected values and gradients are written out here from the formulas in
shared/reference/binarizers.md, independently of the plugin code: forward maps explicitly,
surrogate gradients either explicitly or as autograd through an equivalent smooth surrogate.
Inputs are multiples of 1/64 (so shifts like ``x - alpha`` are exact) and contain exact zeros,
the clip boundaries ±1 and, for ApproxSign, points inside (-1, 0) and (0, 1).
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from binkit import registry
from binkit.nn.layers import BinaryConv1d, BinaryConv2d, BinaryLinear
from binkit.quant import NotDeployableError, apply_constraints, update_schedules
from binkit.quant.base import MAX_PLANES

BUILTIN = ["bnn", "xnor", "dorefa", "bireal", "irnet", "reactnet"]

WEIGHT_SHAPES = {
    "linear": (4, 3),
    "conv1d": (4, 3, 5),
    "conv2d": (4, 3, 3, 3),
    "depthwise": (6, 1, 5),
}

# Values every test tensor contains: exact zeros, the clip boundaries, both ApproxSign halves.
SPECIALS = [0.0, 1.0, -1.0, 0.5, -0.5, 0.0, 0.25, -0.75]

ALL_QUANTIZERS = sorted(registry.entries("quantizer"))

# Inputs whose quantized values legitimately include 0, and why.
ZERO_IS_A_CODE = {
    # DoReFa activations are quantize_k(clip(x, 0, 1)): {0, 1} at one bit, packed as an unsigned
    # plane. 0 is a valid code there, not a sign(0) = 0 bug.
    "dorefa": "DoReFa activations are {0, 1}-valued (unsigned plane)",
}


# ---------------------------------------------------------------------------------------------
# Reference formulas, written independently of the plugin code
# ---------------------------------------------------------------------------------------------


def special(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Random multiples of 1/64 (|x| up to ~4) with SPECIALS placed at random positions."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.round(torch.randn(shape, generator=gen, dtype=torch.float64) * 1.3 * 64) / 64
    flat = x.view(-1)
    count = min(len(SPECIALS), flat.numel())
    idx = torch.randperm(flat.numel(), generator=gen)[:count]
    flat[idx] = torch.tensor(SPECIALS[:count], dtype=torch.float64)
    return x.to(dtype)


def ref_sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def ref_mean_abs_o(w: torch.Tensor) -> torch.Tensor:
    """mean |W_o| per output channel, shaped (out, 1, ..., 1)."""
    n = w[0].numel()
    return (w.abs().reshape(w.shape[0], -1).sum(dim=1) / n).reshape((-1,) + (1,) * (w.dim() - 1))


def window(x: torch.Tensor, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """1[lo <= x <= hi]."""
    return ((x >= lo) & (x <= hi)).to(x.dtype)


def approx_sign_grad(x: torch.Tensor) -> torch.Tensor:
    """dF/dx of Bi-Real's F: 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere."""
    zero = torch.zeros_like(x)
    left = torch.where((x >= -1) & (x < 0), 2 + 2 * x, zero)
    right = torch.where((x >= 0) & (x < 1), 2 - 2 * x, zero)
    return left + right


def ref_irnet_weight(w: torch.Tensor, k: float, t: float) -> torch.Tensor:
    """Libra-PB with EDE, as ``s * (sign(W^) + S(W^) - sg(S(W^)))`` with S = k tanh(t x)."""
    flat = w.reshape(w.shape[0], -1)
    n = flat.shape[1]
    mu = flat.sum(dim=1, keepdim=True) / n
    sd = (((flat - mu) ** 2).sum(dim=1, keepdim=True) / (n - 1)).sqrt()
    w_hat = (flat - mu) / sd
    s = 2.0 ** torch.round(torch.log2(w_hat.detach().abs().mean(dim=1, keepdim=True)))
    surrogate = k * torch.tanh(t * w_hat)
    return (s * (ref_sign(w_hat.detach()) + surrogate - surrogate.detach())).reshape(w.shape)


def ref_irnet_scale(w: torch.Tensor) -> torch.Tensor:
    flat = w.reshape(w.shape[0], -1)
    w_hat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True)
    return torch.tensor([2.0 ** round(math.log2(float(v))) for v in w_hat.abs().mean(1)])


def ref_dorefa_weight_k(w: torch.Tensor, k: int) -> torch.Tensor:
    """2 quantize_k(tanh W / (2 max|tanh W|) + 1/2) - 1 with round as a straight-through op."""
    n = 2**k - 1
    t = torch.tanh(w)
    r = (t / (2 * t.abs().max()) + 0.5) * n
    return 2 * (r + (torch.round(r) - r).detach()) / n - 1


# Manual quantization for the layer tests: name -> f(w) and f(x, input_quantizer).
REF_WEIGHT = {
    "bnn": ref_sign,
    "xnor": lambda w: ref_mean_abs_o(w) * ref_sign(w),
    "dorefa": lambda w: ref_sign(w) * w.abs().mean(),
    "bireal": lambda w: ref_mean_abs_o(w) * ref_sign(w),
    "irnet": lambda w: ref_irnet_weight(w, k=1000.0, t=1e-3).detach(),
    "reactnet": lambda w: ref_mean_abs_o(w) * ref_sign(w),
}
REF_INPUT = {
    "bnn": lambda x, q: ref_sign(x),
    "xnor": lambda x, q: ref_sign(x),
    "dorefa": lambda x, q: torch.round(x.clamp(0, 1)),
    "bireal": lambda x, q: ref_sign(x),
    "irnet": lambda x, q: ref_sign(x),
    "reactnet": lambda x, q: ref_sign(x - q._broadcast(q.threshold.detach(), x)),
}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def weight_q(name: str, shape, **params):
    entry = registry.get("quantizer", name)
    return entry.weight(entry.params(**params), shape).to(torch.float64)


def input_q(name: str, num_channels: int, channel_dim: int = 1, **params):
    entry = registry.get("quantizer", name)
    return entry.input(entry.params(**params), num_channels, channel_dim).to(torch.float64)


def run(fn, x: torch.Tensor, seed: int = 0, extra=()):
    """``y = fn(x)`` and the gradients of ``<y, g>`` for a random upstream ``g``."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 99), dtype=y.dtype)
    grads = torch.autograd.grad(y, [x, *extra], g)
    return y.detach(), g, grads[0].detach(), [v.detach() for v in grads[1:]]


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


shapes = pytest.mark.parametrize("shape", list(WEIGHT_SHAPES.values()), ids=list(WEIGHT_SHAPES))


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


class TestRegistration:
    @pytest.mark.parametrize(
        "name, precision, packing",
        [
            ("bnn", 1, "sign"),
            ("xnor", 1, "sign"),
            ("dorefa", 1, "bitplanes"),
            ("bireal", 1, "sign"),
            ("irnet", 1, "sign"),
            ("reactnet", 1, "sign"),
            ("residual", 2, "bitplanes"),
        ],
    )
    def test_entry(self, name, precision, packing):
        entry = registry.get("quantizer", name)
        assert entry.name == name
        assert entry.precision == precision
        assert entry.packing == packing and entry.deployable
        assert entry.provider.endswith(":binarizers")
        assert "arXiv:" in entry.reference
        assert entry.description and "\n" not in entry.description
        assert entry.weight is not None and entry.input is not None

    def test_dorefa_precision_follows_weight_bits(self):
        entry = registry.get("quantizer", "dorefa")
        assert entry.precision_param == "weight_bits"
        assert entry.precision_for(entry.params(weight_bits=4)) == 4

    def test_reactnet_replaces_prelu(self):
        from binkit_binarizers.reactnet import rprelu_from_prelu

        assert registry.get("quantizer", "reactnet").activation is rprelu_from_prelu

    def test_plugin_import_is_torch_free(self):
        code = (
            "import sys, binkit_binarizers, binkit_binarizers.plugin; "
            "assert 'torch' not in sys.modules, 'plugin import pulled in torch'"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


class TestEveryRegisteredQuantizer:
    """Contract checks for every registered quantizer: a new plugin is tested by registering."""

    @pytest.mark.parametrize("name", ALL_QUANTIZERS)
    def test_params_forbid_extra_and_are_frozen(self, name):
        params_model = registry.get("quantizer", name).params
        with pytest.raises(ValidationError):
            params_model(no_such_field=1)
        params = params_model()
        for field in type(params).model_fields:
            with pytest.raises(ValidationError):
                setattr(params, field, getattr(params, field))

    @pytest.mark.parametrize("shape", list(WEIGHT_SHAPES.values()), ids=list(WEIGHT_SHAPES))
    @pytest.mark.parametrize("name", ALL_QUANTIZERS)
    def test_weight_sign_of_zero_is_plus_one(self, name, shape):
        entry = registry.get("quantizer", name)
        if entry.weight is None:
            pytest.skip(f"{name} keeps full-precision weights")
        w = special(shape, seed=1)
        assert (w == 0).any()
        q = entry.weight(entry.params(), shape)(w)
        assert q.shape == w.shape
        assert not (q == 0).any(), f"{name}: a weight quantized to 0"
        assert q[w == 0].min() > 0 or name in {"irnet", "bifsmn_code"}, (
            f"{name}: sign(0) must be +1"  # irnet/bifsmn_code centre W first: 0 is not W's sign
        )

    @pytest.mark.parametrize(
        "channel_dim, shape", [(1, (2, 4, 9)), (-1, (5, 4))], ids=["conv", "linear"]
    )
    @pytest.mark.parametrize("name", ALL_QUANTIZERS)
    def test_input_sign_of_zero_is_plus_one(self, name, channel_dim, shape):
        entry = registry.get("quantizer", name)
        if entry.input is None:
            pytest.skip(f"{name} keeps full-precision inputs")
        x = special(shape, seed=2)
        assert (x == 0).any()
        q = entry.input(entry.params(), 4, channel_dim)(x)
        assert q.shape == x.shape
        if name in ZERO_IS_A_CODE:
            assert set(q.unique().tolist()) <= {0.0, 1.0}, ZERO_IS_A_CODE[name]
        else:
            assert not (q == 0).any(), f"{name}: an input quantized to 0"
            assert (q[x == 0] > 0).all(), f"{name}: sign(0) must be +1"

    @pytest.mark.parametrize("name", ALL_QUANTIZERS)
    def test_precision_attribute(self, name):
        entry = registry.get("quantizer", name)
        params = entry.params()
        if entry.weight is not None:
            assert entry.weight(params, (4, 3)).precision == entry.precision_for(params)

    @pytest.mark.parametrize("name", ALL_QUANTIZERS)
    def test_export_scale_matches_deployability(self, name):
        entry = registry.get("quantizer", name)
        if entry.weight is None:
            pytest.skip(f"{name} keeps full-precision weights")
        w = special((4, 3, 5), seed=3)
        wq = entry.weight(entry.params(), w.shape)
        if not entry.deployable:
            with pytest.raises(NotDeployableError):
                wq.export_scale(w)
            return
        q = wq(w).detach()
        signs, scales = wq.export_planes(w)  # bit-serial decomposition: sum_p scales[p, o] signs[p]
        planes = signs.shape[0]
        assert 1 <= planes <= MAX_PLANES and signs.shape[1:] == w.shape and scales.shape == (planes, 4)
        assert ((signs == 1) | (signs == -1)).all()
        torch.testing.assert_close(sum(scales[p].reshape(-1, 1, 1) * signs[p] for p in range(planes)), q)
        if planes > 1:
            return  # not +-scale per channel: export_scale may refuse, export uses the planes
        scale = wq.export_scale(w)
        assert scale.shape == (4,)
        torch.testing.assert_close(q, q.sign() * scale.reshape(-1, 1, 1))


# ---------------------------------------------------------------------------------------------
# One class per method: forward values and gradients against the formulas
# ---------------------------------------------------------------------------------------------


class TestBNN:
    @shapes
    def test_weight(self, shape):
        w = special(shape, seed=10)
        y, g, gw, _ = run(weight_q("bnn", shape), w)
        assert torch.equal(y, ref_sign(w))
        assert_close(gw, g * window(w))

    def test_input(self):
        x = special((2, 4, 7), seed=11)
        y, g, gx, _ = run(input_q("bnn", 4), x)
        assert torch.equal(y, ref_sign(x))
        assert_close(gx, g * window(x))

    def test_clip_value(self):
        x = special((3, 8), seed=12)
        y, g, gx, _ = run(input_q("bnn", 8, -1, clip_value=0.5), x)
        assert_close(gx, g * window(x, -0.5, 0.5))

    def test_clip_value_must_be_positive(self):
        with pytest.raises(ValidationError):
            registry.get("quantizer", "bnn").params(clip_value=0.0)

    def test_export_scale_is_one(self):
        w = special((4, 3, 5), seed=13)
        assert torch.equal(weight_q("bnn", w.shape).export_scale(w), torch.ones(4, dtype=w.dtype))

    def test_constrain_clamps_in_place(self):
        layer = BinaryLinear(3, 4, weight_quantizer=weight_q("bnn", (4, 3)).float())
        with torch.no_grad():
            layer.weight.copy_(special((4, 3), seed=14, dtype=torch.float32) * 3)
        before = layer.weight.detach().clone()
        storage = layer.weight.data_ptr()
        apply_constraints(layer)
        assert layer.weight.data_ptr() == storage
        assert torch.equal(layer.weight.detach(), before.clamp(-1, 1))
        assert layer.weight.requires_grad


class TestXNOR:
    @shapes
    def test_weight(self, shape):
        w = special(shape, seed=20)
        y, g, gw, _ = run(weight_q("xnor", shape), w)
        alpha = ref_mean_abs_o(w)
        n = w[0].numel()
        assert_close(y, alpha * ref_sign(w))
        # paper Sec. 3.2: dC/dW = dC/dW~ (1/n + alpha 1[|W| <= 1])
        assert_close(gw, g * (1.0 / n + alpha * window(w)))

    def test_input(self):
        x = special((2, 4, 7), seed=21)
        y, g, gx, _ = run(input_q("xnor", 4), x)
        assert torch.equal(y, ref_sign(x))
        assert_close(gx, g * window(x))

    @shapes
    def test_export_scale_is_mean_abs_per_output_channel(self, shape):
        w = special(shape, seed=22)
        scale = weight_q("xnor", shape).export_scale(w)
        assert_close(scale, ref_mean_abs_o(w).reshape(-1))


class TestDoReFa:
    @shapes
    def test_weight_one_bit(self, shape):
        w = special(shape, seed=30)
        y, g, gw, _ = run(weight_q("dorefa", shape), w)
        e = w.abs().mean()
        assert_close(y, ref_sign(w) * e)
        assert_close(gw, g)  # identity, no clipping

    @pytest.mark.parametrize("bits", [2, 3, 8])
    @shapes
    def test_weight_k_bits(self, shape, bits):
        w = special(shape, seed=31)
        wq = weight_q("dorefa", shape, weight_bits=bits)
        assert wq.precision == bits
        y, g, gw, _ = run(wq, w)
        expected, eg, egw, _ = run(lambda v: ref_dorefa_weight_k(v, bits), w)
        assert_close(y, expected)
        grid = (y + 1) / 2 * (2**bits - 1)  # integer level index 0 .. 2^k - 1
        assert_close(grid, torch.round(grid))
        assert_close(gw, egw)

    @pytest.mark.parametrize("bits", [1, 2, 4])
    def test_input(self, bits):
        x = special((2, 4, 7), seed=32)
        iq = input_q("dorefa", 4, input_bits=bits)
        assert iq.precision == bits
        y, g, gx, _ = run(iq, x)
        n = 2**bits - 1
        assert_close(y, torch.round(torch.clamp(x, 0, 1) * n) / n)
        # identity inside the closed interval [0, 1], zero outside
        assert_close(gx, g * window(x, 0.0, 1.0))

    def test_one_bit_inputs_are_zero_or_one(self):
        x = special((2, 4, 7), seed=33)
        y = input_q("dorefa", 4)(x)
        assert set(y.unique().tolist()) == {0.0, 1.0}

    def test_export_scale(self):
        w = special((4, 3, 5), seed=34)
        assert_close(weight_q("dorefa", w.shape).export_scale(w), w.abs().mean().expand(4))
        with pytest.raises(NotDeployableError, match="bit-planes"):
            weight_q("dorefa", w.shape, weight_bits=2).export_scale(w)

    @pytest.mark.parametrize("field", ["weight_bits", "input_bits"])
    @pytest.mark.parametrize("value", [0, 9])
    def test_bit_range(self, field, value):
        with pytest.raises(ValidationError):
            registry.get("quantizer", "dorefa").params(**{field: value})


class TestBiReal:
    @shapes
    def test_weight(self, shape):
        w = special(shape, seed=40)
        y, g, gw, _ = run(weight_q("bireal", shape), w)
        assert_close(y, ref_mean_abs_o(w) * ref_sign(w))
        assert_close(gw, g * window(w))

    def test_input(self):
        x = special((2, 4, 7), seed=41)
        assert ((x > -1) & (x < 0)).any() and ((x > 0) & (x < 1)).any()
        y, g, gx, _ = run(input_q("bireal", 4), x)
        assert torch.equal(y, ref_sign(x))
        assert_close(gx, g * approx_sign_grad(x))

    @shapes
    def test_export_scale(self, shape):
        w = special(shape, seed=42)
        assert_close(weight_q("bireal", shape).export_scale(w), ref_mean_abs_o(w).reshape(-1))


class TestIRNet:
    EPOCHS = 10

    @staticmethod
    def expected_t_k(epoch: int, epochs: int, t_min: float = 1e-3, t_max: float = 10.0):
        t = 10 ** (math.log10(t_min) + (math.log10(t_max) - math.log10(t_min)) * epoch / epochs)
        return t, max(1 / t, 1.0)

    @pytest.mark.parametrize("epoch", [0, 8])
    @shapes
    def test_weight(self, shape, epoch):
        w = special(shape, seed=50)
        wq = weight_q("irnet", shape)
        wq.update_schedule(epoch, self.EPOCHS)
        t, k = self.expected_t_k(epoch, self.EPOCHS)
        y, g, gw, _ = run(wq, w)
        expected, _, egw, _ = run(lambda v: ref_irnet_weight(v, k, t), w)
        assert_close(y, expected)
        assert_close(gw, egw)  # EDE on W^, then autograd through mean and std

    @pytest.mark.parametrize("epoch", [0, 8])
    def test_input(self, epoch):
        x = special((2, 4, 7), seed=51)
        iq = input_q("irnet", 4)
        iq.update_schedule(epoch, self.EPOCHS)
        t, k = self.expected_t_k(epoch, self.EPOCHS)
        y, g, gx, _ = run(iq, x)
        assert torch.equal(y, ref_sign(x))
        assert_close(gx, g * k * t * (1 - torch.tanh(t * x) ** 2))

    def test_schedule_first_and_last_epoch(self):
        layer = BinaryLinear(
            3,
            4,
            weight_quantizer=weight_q("irnet", (4, 3)),
            input_quantizer=input_q("irnet", 3, -1),
        )
        for q in (layer.weight_quantizer, layer.input_quantizer):  # fresh = epoch 0
            assert (q.t, q.k) == pytest.approx((1e-3, 1e3))
            assert isinstance(q.t, float) and isinstance(q.k, float)
        update_schedules(layer, self.EPOCHS - 1, self.EPOCHS)
        t_last = 10 ** (-3 + 4 * (self.EPOCHS - 1) / self.EPOCHS)
        for q in (layer.weight_quantizer, layer.input_quantizer):
            assert (q.t, q.k) == pytest.approx((t_last, 1.0))
        update_schedules(layer, 0, self.EPOCHS)
        assert layer.input_quantizer.t == pytest.approx(1e-3)

    def test_custom_range(self):
        iq = input_q("irnet", 4, t_min=0.1, t_max=10.0)
        assert (iq.t, iq.k) == pytest.approx((0.1, 10.0))
        iq.update_schedule(1, 2)
        assert (iq.t, iq.k) == pytest.approx((1.0, 1.0))

    def test_params_validation(self):
        params = registry.get("quantizer", "irnet").params
        with pytest.raises(ValidationError, match="t_min"):
            params(t_min=20.0, t_max=10.0)
        with pytest.raises(ValidationError):
            params(t_min=0.0)

    def test_sign_of_standardised_zero(self):
        # channel 0 has mean exactly 0, so W^ has an exact zero there; it must map to +s_0
        w = torch.tensor([[-1.0, 0.0, 1.0], [0.5, 2.0, -1.0]], dtype=torch.float64)
        q = weight_q("irnet", w.shape)(w)
        assert q[0, 1] > 0 and q[0, 1] == q[0, 2]

    @shapes
    def test_export_scale_is_power_of_two(self, shape):
        w = special(shape, seed=52)
        scale = weight_q("irnet", shape).export_scale(w)
        assert_close(scale, ref_irnet_scale(w).to(scale.dtype))

    def test_refuses_single_element_channels(self):
        with pytest.raises(ValueError, match="at least 2"):
            weight_q("irnet", (4, 1))


class TestReActNet:
    @shapes
    def test_weight(self, shape):
        w = special(shape, seed=60)
        y, g, gw, _ = run(weight_q("reactnet", shape), w)
        assert_close(y, ref_mean_abs_o(w) * ref_sign(w))
        assert_close(gw, g * window(w))

    @pytest.mark.parametrize(
        "channel_dim, shape", [(1, (2, 4, 7)), (-1, (3, 5, 4))], ids=["conv", "linear"]
    )
    def test_input_and_threshold_gradient(self, channel_dim, shape):
        iq = input_q("reactnet", 4, channel_dim)
        assert torch.equal(iq.threshold.detach(), torch.zeros(4, dtype=torch.float64))
        alpha = torch.tensor([0.25, -0.5, 0.0, 0.75], dtype=torch.float64)
        with torch.no_grad():
            iq.threshold.copy_(alpha)
        x = special(shape, seed=61)
        view = [1] * len(shape)
        view[channel_dim] = 4
        a = alpha.reshape(view)
        d = x - a  # exact: multiples of 1/64
        assert (d == 0).any() and (d.abs() == 1).any()
        y, g, gx, (galpha,) = run(iq, x, extra=[iq.threshold])
        assert torch.equal(y, ref_sign(d))
        assert_close(gx, g * approx_sign_grad(d))
        dims = [i for i in range(len(shape)) if i != channel_dim % len(shape)]
        assert_close(galpha, -(g * approx_sign_grad(d)).sum(dim=dims))

    def test_rsign_needs_channels(self):
        with pytest.raises(ValueError, match="num_channels"):
            input_q("reactnet", 0)

    def test_fixed_thresholds_give_plain_sign_with_approxsign(self):
        """learn_thresholds = false: no threshold parameter, sign(x) (sign(0) = +1) forward and
        Bi-Real's ApproxSign backward, per channel unchanged."""
        iq = input_q("reactnet", 4, 1, learn_thresholds=False)
        assert iq.threshold is None and list(iq.parameters()) == []
        x = special((2, 4, 7), seed=62)
        assert (x == 0).any()
        y, g, gx, _ = run(iq, x)
        assert torch.equal(y, ref_sign(x))
        assert_close(gx, g * approx_sign_grad(x))

    def test_learn_thresholds_is_validated(self):
        from pydantic import ValidationError

        entry = registry.get("quantizer", "reactnet")
        assert entry.params().learn_thresholds is True
        with pytest.raises(ValidationError, match="learn_thresholds"):
            entry.params(learn_thresholds="sometimes")


class TestRPReLU:
    @staticmethod
    def ref(x, gamma, beta, zeta):
        return torch.where(x > gamma, x - gamma + zeta, beta * (x - gamma) + zeta)

    @pytest.mark.parametrize("num_parameters", [1, 4])
    def test_formula(self, num_parameters):
        from binkit_binarizers.reactnet import RPReLU

        act = RPReLU(num_parameters).double()
        gen = torch.Generator().manual_seed(70)
        with torch.no_grad():
            for p in (act.gamma, act.beta, act.zeta):
                v = torch.randn(num_parameters, generator=gen, dtype=torch.float64)
                p.copy_(torch.round(v * 8) / 16)
        x = special((2, 4, 5), seed=71)
        x[0, :, 0] = act.gamma.detach().expand(4)  # x == gamma: the "otherwise" branch
        c = (1, -1, 1) if num_parameters > 1 else (1,)
        gamma, beta, zeta = (p.detach().reshape(c) for p in (act.gamma, act.beta, act.zeta))
        y = act(x)
        assert_close(y, self.ref(x, gamma, beta, zeta))
        y.sum().backward()
        assert all(p.grad is not None for p in act.parameters())

    def test_channel_last(self):
        from binkit_binarizers.reactnet import RPReLU

        act = RPReLU(4, channel_dim=-1).double()
        with torch.no_grad():
            act.gamma.copy_(torch.tensor([0.0, 0.5, -0.5, 1.0]))
        x = special((3, 4), seed=72)
        assert_close(act(x), self.ref(x, act.gamma.detach(), 0.25, 0.0))

    @pytest.mark.parametrize("num_parameters", [1, 4])
    def test_from_prelu(self, num_parameters):
        from binkit_binarizers.reactnet import rprelu_from_prelu

        prelu = nn.PReLU(num_parameters, init=0.1)
        act = rprelu_from_prelu(prelu)
        assert act.num_parameters == num_parameters
        assert sum(p.numel() for p in act.parameters()) == 3 * num_parameters
        assert torch.equal(act.beta.detach(), prelu.weight.detach())
        x = special((2, 4, 5), seed=73, dtype=torch.float32)
        torch.testing.assert_close(act(x), prelu(x))


# ---------------------------------------------------------------------------------------------
# Binary layers: forward equals the float op on manually quantized tensors
# ---------------------------------------------------------------------------------------------

LAYERS = {
    # kind: (layer factory, input shape, channel_dim, in_channels, float op)
    "linear": (
        lambda **q: BinaryLinear(3, 4, **q), (5, 3), -1, 3, lambda x, w, b: F.linear(x, w, b)
    ),
    "conv1d": (
        lambda **q: BinaryConv1d(3, 4, 5, padding=2, **q), (2, 3, 9), 1, 3,
        lambda x, w, b: F.conv1d(x, w, b, padding=2),
    ),
    "conv2d": (
        lambda **q: BinaryConv2d(3, 4, 3, padding=1, **q), (2, 3, 6, 6), 1, 3,
        lambda x, w, b: F.conv2d(x, w, b, padding=1),
    ),
    "depthwise": (
        lambda **q: BinaryConv1d(6, 6, 5, padding=2, groups=6, **q), (2, 6, 9), 1, 6,
        lambda x, w, b: F.conv1d(x, w, b, padding=2, groups=6),
    ),
}


class TestBinaryLayers:
    @pytest.mark.parametrize("kind", list(LAYERS))
    @pytest.mark.parametrize("name", BUILTIN)
    def test_forward_matches_manual_quantization(self, name, kind):
        factory, x_shape, channel_dim, in_channels, op = LAYERS[kind]
        entry = registry.get("quantizer", name)
        shape = WEIGHT_SHAPES[kind]
        wq = entry.weight(entry.params(), shape)
        iq = entry.input(entry.params(), in_channels, channel_dim)
        if name == "reactnet":
            with torch.no_grad():
                iq.threshold.copy_(torch.arange(in_channels) / 8 - 0.25)
        layer = factory(weight_quantizer=wq, input_quantizer=iq, method=name)
        with torch.no_grad():
            layer.weight.copy_(special(shape, seed=80, dtype=torch.float32))
        x = special(x_shape, seed=81, dtype=torch.float32)
        w = layer.weight.detach()
        expected = op(REF_INPUT[name](x, iq), REF_WEIGHT[name](w).to(w.dtype), layer.bias.detach())
        y = layer(x)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
        assert layer.is_binary
        y.sum().backward()
        assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
