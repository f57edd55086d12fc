"""Tests of ``bifsmn_code``, the official BiFSMN code's v1 "Vanilla" binarizer.

Expected values follow htqin/BiFSMN ``basic.py`` as summarised in shared/reference/bifsmn.md
section 4, written out here independently of the plugin: Linear weights ``sg(mean_i |W_o,i|)
sign(W)`` with gradient ``g 1[|W| <= 1]``; conv weights ``B = W - mean(W)``, ``sg(mean_taps
|B_o,i|) sign(B)`` with gradient ``g_B = g 1[|B| <= 1]`` carried through the centring by autograd
(``g_W = g_B - mean(g_B)``); inputs ``sign(x)`` with ``g 1[|x| <= 1]``; sign(0) = +1.
Registry-wide checks (sign of zero, params, export) also run for this entry in
tests/plugins/binkit_binarizers/test_binarizers.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from binkit import registry
from binkit.nn.layers import BinaryConv1d, BinaryConv2d, BinaryLinear
from binkit.quant import NotDeployableError

NAME = "bifsmn_code"
CONV_SHAPES = {"conv1d": (4, 3, 5), "conv2d": (4, 3, 3, 3), "depthwise": (6, 1, 5)}
SPECIALS = [0.0, 1.0, -1.0, 0.5, -0.5, 0.0, 0.25, -0.75]


def special(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Random multiples of 1/64 with exact zeros and the clip boundaries ±1 placed in."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.round(torch.randn(shape, generator=gen, dtype=torch.float64) * 1.3 * 64) / 64
    flat = x.view(-1)
    count = min(len(SPECIALS), flat.numel())
    idx = torch.randperm(flat.numel(), generator=gen)[:count]
    flat[idx] = torch.tensor(SPECIALS[:count], dtype=torch.float64)
    return x.to(dtype)


def ref_sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def window(x: torch.Tensor) -> torch.Tensor:
    return (x.abs() <= 1).to(x.dtype)


def ref_linear_weight(w: torch.Tensor) -> torch.Tensor:
    return (w.abs().sum(dim=1, keepdim=True) / w.shape[1]) * ref_sign(w)


def ref_conv_weight(w: torch.Tensor) -> torch.Tensor:
    b = w - w.sum() / w.numel()
    taps = b.abs().reshape(b.shape[0], b.shape[1], -1)
    s = (taps.sum(dim=2) / taps.shape[2]).reshape(b.shape[:2] + (1,) * (b.dim() - 2))
    return s * ref_sign(b)


def weight_q(shape):
    entry = registry.get("quantizer", NAME)
    return entry.weight(entry.params(), shape)


def input_q(num_channels: int, channel_dim: int = 1):
    entry = registry.get("quantizer", NAME)
    return entry.input(entry.params(), num_channels, channel_dim)


def run(fn, x: torch.Tensor, seed: int = 0):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 99), dtype=y.dtype)
    (gx,) = torch.autograd.grad(y, x, g)
    return y.detach(), g, gx


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


class TestRegistration:
    def test_entry(self):
        entry = registry.get("quantizer", NAME)
        assert entry.precision == 1
        assert entry.packing is None and not entry.deployable
        assert "per-output-channel" in entry.not_deployable_reason
        assert "1x1" in entry.not_deployable_reason and "4.1" in entry.not_deployable_reason
        assert entry.provider.endswith(":bifsmn")
        assert "arXiv:2202.06483" in entry.reference
        assert entry.description and "\n" not in entry.description

    def test_plugin_import_is_torch_free(self):
        code = (
            "import sys, bifsmn_plugin, bifsmn_plugin.plugin; "
            "assert 'torch' not in sys.modules, 'plugin import pulled in torch'"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


class TestInputs:
    @pytest.mark.parametrize(
        "channel_dim, shape", [(1, (2, 4, 9)), (-1, (5, 4))], ids=["conv", "linear"]
    )
    def test_forward_and_gradient(self, channel_dim, shape):
        x = special(shape, seed=1)
        y, g, gx = run(input_q(4, channel_dim), x)
        assert torch.equal(y, ref_sign(x))  # sign(0) = +1, not torch.sign's 0
        assert_close(gx, g * window(x))


class TestWeights:
    def test_linear(self):
        w = special((4, 3), seed=2)
        y, g, gw = run(weight_q(w.shape), w)
        assert_close(y, ref_linear_weight(w))
        assert_close(gw, g * window(w))  # no centring for Linear

    @pytest.mark.parametrize("shape", list(CONV_SHAPES.values()), ids=list(CONV_SHAPES))
    def test_conv(self, shape):
        w = special(shape, seed=3)
        y, g, gw = run(weight_q(shape), w)
        assert_close(y, ref_conv_weight(w))
        b = w - w.mean()
        g_b = g * window(b)
        assert_close(gw, g_b - g_b.mean())  # through B = W - mean(W)

    def test_scale_is_per_out_in_pair(self):
        w = special((4, 3, 5), seed=4)
        y = weight_q(w.shape)(w)
        per_pair = y.abs()[:, :, 0]
        assert torch.equal(y.abs(), per_pair[:, :, None].expand_as(y))
        assert not torch.allclose(per_pair, per_pair[:, :1].expand_as(per_pair))

    @pytest.mark.parametrize("shape", [(4, 3, 1), (8, 5, 1, 1)], ids=["conv1d", "conv2d"])
    def test_pointwise_conv_keeps_centred_full_precision_weights(self, shape):
        w = torch.randn(shape, generator=torch.Generator().manual_seed(5))
        y = weight_q(shape)(w)
        assert torch.equal(y, w - w.mean())  # bifsmn.md section 4.1: exact, not approximate
        assert y.abs().unique().numel() == w.numel()

    def test_sign_of_centred_zero(self):
        # mean(W) is exactly 0, so B keeps W's exact zero; it must map to +s_{o,i}
        w = torch.tensor([[[-1.0, 0.0, 1.0]], [[0.5, -0.5, 0.0]]], dtype=torch.float64)
        y = weight_q(w.shape)(w)
        assert y[0, 0, 1] > 0 and y[1, 0, 2] > 0

    def test_export_scale_refuses(self):
        w = special((4, 3, 5), seed=6)
        entry = registry.get("quantizer", NAME)
        with pytest.raises(NotDeployableError) as info:
            weight_q(w.shape).export_scale(w)
        assert str(info.value) == entry.not_deployable_reason


class TestBinaryLayers:
    @pytest.mark.parametrize(
        "factory, x_shape, channel_dim, in_channels, op",
        [
            (lambda **q: BinaryLinear(3, 4, **q), (5, 3), -1, 3, lambda x, w, b: F.linear(x, w, b)),
            (lambda **q: BinaryConv1d(3, 4, 5, padding=2, **q), (2, 3, 9), 1, 3,
             lambda x, w, b: F.conv1d(x, w, b, padding=2)),
            (lambda **q: BinaryConv1d(3, 4, 1, **q), (2, 3, 9), 1, 3,
             lambda x, w, b: F.conv1d(x, w, b)),
            (lambda **q: BinaryConv2d(3, 4, 3, padding=1, **q), (2, 3, 6, 6), 1, 3,
             lambda x, w, b: F.conv2d(x, w, b, padding=1)),
            (lambda **q: BinaryConv1d(6, 6, 5, padding=2, groups=6, **q), (2, 6, 9), 1, 6,
             lambda x, w, b: F.conv1d(x, w, b, padding=2, groups=6)),
        ],
        ids=["linear", "conv1d", "pointwise", "conv2d", "depthwise"],
    )
    def test_forward_matches_manual_quantization(
        self, factory, x_shape, channel_dim, in_channels, op
    ):
        layer = factory(method=NAME)
        shape = tuple(layer.weight.shape)
        layer.weight_quantizer = weight_q(shape)
        layer.input_quantizer = input_q(in_channels, channel_dim)
        with torch.no_grad():
            layer.weight.copy_(special(shape, seed=7, dtype=torch.float32))
        x = special(x_shape, seed=8, dtype=torch.float32)
        w = layer.weight.detach()
        ref_w = ref_linear_weight(w) if w.dim() == 2 else ref_conv_weight(w)
        expected = op(ref_sign(x), ref_w, layer.bias.detach())
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


class TestDeployableBiFSMN:
    """``bifsmn``: per-output-channel scale mean|W_o|, STE 1[|W| <= 1], sign inputs."""

    def test_forward_backward_formula(self):
        import torch

        from binkit import registry

        entry = registry.get("quantizer", "bifsmn")
        assert entry.deployable and entry.packing == "sign"
        w = torch.tensor([[[0.5, -1.0, 0.0]], [[2.0, -0.25, 1.0]]], requires_grad=True)  # (2, 1, 3)
        q = entry.weight(entry.params(), tuple(w.shape))
        out = q(w)
        alpha = torch.tensor([1.5 / 3, 3.25 / 3]).reshape(2, 1, 1)
        expected = alpha * torch.tensor([[[1.0, -1.0, 1.0]], [[1.0, -1.0, 1.0]]])
        torch.testing.assert_close(out, expected)
        g = torch.arange(6.0).reshape(2, 1, 3)
        (gw,) = torch.autograd.grad(out, w, g)
        torch.testing.assert_close(gw, g * torch.tensor([[[1.0, 1.0, 1.0]], [[0.0, 1.0, 1.0]]]))
        torch.testing.assert_close(q.export_scale(w.detach()), alpha.flatten())

    @pytest.mark.parametrize(
        "activation_grad, expected_grad",
        [
            # clipped STE: 1[|x| <= 1]
            ("ste", [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]),
            # ApproxSign: max(2 - 2|x|, 0)
            ("approxsign", [0.0, 0.0, 1.0, 2.0, 2.0, 0.5, 0.0]),
        ],
    )
    def test_activation_grad(self, activation_grad, expected_grad):
        entry = registry.get("quantizer", "bifsmn")
        params = entry.params(activation_grad=activation_grad)
        q = entry.input(params, 7, -1)
        x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.0, 0.75, 1.25], requires_grad=True)
        out = q(x)
        # the forward pass does not depend on the option: sign(0) = +1
        torch.testing.assert_close(out, torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]))
        (gx,) = torch.autograd.grad(out, x, torch.ones_like(x))
        torch.testing.assert_close(gx, torch.tensor(expected_grad))

    def test_activation_grad_default_and_bad_value(self):
        from pydantic import ValidationError

        entry = registry.get("quantizer", "bifsmn")
        assert entry.params().activation_grad == "ste"
        with pytest.raises(ValidationError, match="activation_grad"):
            entry.params(activation_grad="tanh")

    def test_spec_params_reach_every_input_quantizer(self):
        """``[binarization] params = {activation_grad = ...}`` builds a model whose binary layers
        all use it; a bad value fails at resolve time naming the field."""
        from binkit.errors import BinkitError
        from binkit.specs import parse_spec, resolve
        from binkit.train import build_model
        from bifsmn_plugin.binarizer import BiFSMNInputQuantizer

        def spec(grad):
            return parse_spec({
                "name": "g", "data": {"dataset": "tones", "params": {"num_classes": 3}},
                "model": {"architecture": "mlp", "params": {"hidden": 16, "depth": 2}},
                "binarization": {"method": "bifsmn", "params": {"activation_grad": grad}},
            })

        model = build_model(resolve(spec("approxsign")), 3, (8,))
        quantizers = [m for m in model.modules() if isinstance(m, BiFSMNInputQuantizer)]
        assert quantizers and all(q.params.activation_grad == "approxsign" for q in quantizers)
        with pytest.raises(BinkitError, match="activation_grad"):
            resolve(spec("tanh"))
