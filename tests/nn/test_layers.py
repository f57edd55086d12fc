"""Tests of binkit/nn/layers.py: binary layers = the torch layer plus two optional quantizers.

Expected values are computed here from the formula ``y = op(Q_in(x), Q_w(W)) + b`` with the
quantizers written out by hand (XNOR-Net: ``alpha_o * sign(W)``, ``sign(x)``, sign(0) = +1), and
from plain counting for the exact-zero padding convention (DESIGN.md, conventions contract).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from binkit import registry
from binkit.nn.layers import (
    BINARY_LAYER_FOR,
    BinaryConv1d,
    BinaryConv2d,
    BinaryLayerMixin,
    BinaryLinear,
)


def ref_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0 else -1 (binkit's sign(0) = +1)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def ref_xnor_weight(w: torch.Tensor) -> torch.Tensor:
    """alpha_o * sign(W), alpha_o = mean |W_o| over all but the output axis."""
    alpha = w.abs().reshape(w.shape[0], -1).mean(dim=1)
    return alpha.reshape((-1,) + (1,) * (w.dim() - 1)) * ref_sign(w)


def quantizers(name: str, weight_shape, num_channels: int, channel_dim: int, **params):
    entry = registry.get("quantizer", name)
    p = entry.params(**params)
    return entry.weight(p, tuple(weight_shape)), entry.input(p, num_channels, channel_dim)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Float layers and a matching input, by kind. Depthwise: groups = in_channels = out_channels.
def make_float(kind: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "linear":
        return nn.Linear(7, 5), torch.randn(3, 7, generator=gen(1))
    if kind == "linear3d":  # extra leading dims: (batch, time, features)
        return nn.Linear(7, 5), torch.randn(2, 4, 7, generator=gen(1))
    if kind == "conv1d":
        return nn.Conv1d(3, 4, 5, stride=2, padding=2, dilation=1), torch.randn(2, 3, 17, generator=gen(1))
    if kind == "depthwise1d":
        return nn.Conv1d(6, 6, 5, padding=2, groups=6), torch.randn(2, 6, 11, generator=gen(1))
    if kind == "conv2d":
        return nn.Conv2d(3, 4, 3, stride=(2, 1), padding=1, dilation=(1, 2)), torch.randn(
            2, 3, 9, 10, generator=gen(1))
    raise AssertionError(kind)


KINDS = ["linear", "linear3d", "conv1d", "depthwise1d", "conv2d"]


def float_op(module: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The float layer's linear map with an explicit weight."""
    if isinstance(module, nn.Linear):
        return F.linear(x, w, module.bias)
    fn = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    return fn(x, w, module.bias, module.stride, module.padding, module.dilation, module.groups)


def channel_dim(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, -1
    return module.in_channels, 1


class TestNoQuantizers:
    """Both quantizers None is the plain torch layer, bit for bit."""

    @pytest.mark.parametrize("kind", KINDS)
    def test_from_float_equals_float_layer(self, kind):
        layer, x = make_float(kind)
        binary = BINARY_LAYER_FOR[type(layer)].from_float(layer, None, None)
        assert torch.equal(binary(x), layer(x))

    @pytest.mark.parametrize("kind", KINDS)
    def test_constructor_equals_float_layer(self, kind):
        layer, x = make_float(kind)
        if isinstance(layer, nn.Linear):
            binary = BinaryLinear(layer.in_features, layer.out_features)
        else:
            cls = BinaryConv1d if isinstance(layer, nn.Conv1d) else BinaryConv2d
            binary = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, layer.dilation, layer.groups)
        binary.load_state_dict(layer.state_dict())
        assert torch.equal(binary(x), layer(x))

    def test_no_bias(self):
        layer = nn.Conv1d(3, 4, 3, padding=1, bias=False)
        x = torch.randn(2, 3, 8, generator=gen(2))
        binary = BinaryConv1d.from_float(layer, None, None)
        assert binary.bias is None
        assert torch.equal(binary(x), layer(x))

    def test_precision_properties(self):
        binary = BinaryLinear(4, 3)
        assert binary.weight_bits == 32 and binary.input_bits == 32
        assert not binary.is_binary
        assert torch.equal(binary.quantized_weight(), binary.weight)


class TestFromFloat:
    """``from_float`` builds a binary twin that shares the float layer's parameters."""

    @pytest.mark.parametrize("kind", KINDS)
    def test_shares_the_same_parameter_objects(self, kind):
        layer, _ = make_float(kind)
        wq, iq = quantizers("xnor", layer.weight.shape, *channel_dim(layer))
        binary = BINARY_LAYER_FOR[type(layer)].from_float(layer, wq, iq, method="xnor")
        assert binary.weight is layer.weight
        assert binary.bias is layer.bias
        assert binary.weight.data_ptr() == layer.weight.data_ptr()
        # an in-place update of the float layer is seen by the binary one (no copy)
        with torch.no_grad():
            layer.weight.add_(1.0)
        assert torch.equal(binary.weight, layer.weight)
        assert binary.weight_quantizer is wq and binary.input_quantizer is iq
        assert binary.method == "xnor"

    @pytest.mark.parametrize("kind", KINDS)
    def test_copies_layer_geometry(self, kind):
        layer, _ = make_float(kind)
        binary = BINARY_LAYER_FOR[type(layer)].from_float(layer, None, None)
        assert isinstance(binary, BinaryLayerMixin) and isinstance(binary, type(layer))
        if isinstance(layer, nn.Linear):
            assert (binary.in_features, binary.out_features) == (layer.in_features, layer.out_features)
        else:
            for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                         "dilation", "groups", "padding_mode"):
                assert getattr(binary, attr) == getattr(layer, attr), attr

    @pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
    @pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
    def test_keeps_train_eval_mode(self, kind, training):
        layer, _ = make_float(kind)
        layer.train(training)
        binary = BINARY_LAYER_FOR[type(layer)].from_float(layer, None, None)
        assert binary.training is training

    def test_state_dict_keys(self):
        layer, _ = make_float("conv2d")
        wq, iq = quantizers("xnor", layer.weight.shape, layer.in_channels, 1)
        binary = BinaryConv2d.from_float(layer, wq, iq)
        assert set(binary.state_dict()) == set(layer.state_dict()) == {"weight", "bias"}


class TestWithQuantizers:
    """With XNOR-Net's quantizers the forward is ``op(sign(x), alpha_o * sign(W)) + b``."""

    @pytest.mark.parametrize("kind", KINDS)
    def test_forward_equals_manual_quantization(self, kind):
        layer, x = make_float(kind)
        x = x.clone()
        x.view(-1)[:3] = 0.0  # exact zeros binarize to +1
        wq, iq = quantizers("xnor", layer.weight.shape, *channel_dim(layer))
        binary = BINARY_LAYER_FOR[type(layer)].from_float(layer, wq, iq, method="xnor")
        expected = float_op(layer, ref_sign(x), ref_xnor_weight(layer.weight.detach()))
        torch.testing.assert_close(binary(x), expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(binary.quantized_weight(), ref_xnor_weight(layer.weight.detach()))
        assert torch.equal(binary.quantized_input(x), ref_sign(x))

    def test_input_quantizer_only(self):
        layer, x = make_float("conv1d")
        _, iq = quantizers("bnn", layer.weight.shape, layer.in_channels, 1)
        binary = BinaryConv1d.from_float(layer, None, iq)
        expected = float_op(layer, ref_sign(x), layer.weight.detach())
        torch.testing.assert_close(binary(x), expected)

    def test_weight_quantizer_only(self):
        layer, x = make_float("linear")
        wq, _ = quantizers("xnor", layer.weight.shape, layer.in_features, -1)
        binary = BinaryLinear.from_float(layer, wq, None)
        expected = float_op(layer, x, ref_xnor_weight(layer.weight.detach()))
        torch.testing.assert_close(binary(x), expected)

    def test_constructor_takes_quantizers(self):
        wq, iq = quantizers("bnn", (4, 6), 6, -1)
        binary = BinaryLinear(6, 4, bias=False, weight_quantizer=wq, input_quantizer=iq, method="bnn")
        x = torch.randn(3, 6, generator=gen(3))
        expected = F.linear(ref_sign(x), ref_sign(binary.weight.detach()))
        assert torch.equal(binary(x), expected)  # ±1 sums are exact in float


class TestExactZeroPadding:
    """Padding comes after the input quantizer: padded taps are 0, not sign(0) = +1."""

    @pytest.mark.parametrize("value", [1.0, -1.0])
    def test_conv2d_border_counts(self, value):
        # all-ones weight (XNOR alpha = 0.5 for |W| = 0.5) over an all-``value`` 4x4 input with a
        # 3x3 kernel and padding 1: each output is value * 0.5 * (number of in-bounds taps).
        layer = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            layer.weight.fill_(0.5)
        wq, iq = quantizers("xnor", layer.weight.shape, 1, 1)
        binary = BinaryConv2d.from_float(layer, wq, iq)
        x = torch.full((1, 1, 4, 4), value)
        in_bounds = torch.tensor([
            [4.0, 6.0, 6.0, 4.0],
            [6.0, 9.0, 9.0, 6.0],
            [6.0, 9.0, 9.0, 6.0],
            [4.0, 6.0, 6.0, 4.0],
        ])
        assert torch.equal(binary(x), (value * 0.5 * in_bounds).reshape(1, 1, 4, 4))

    def test_conv1d_depthwise_border_counts(self):
        # bnn (no scale), depthwise, kernel 5, padding 2 over length 6 of all +1
        c = 3
        layer = nn.Conv1d(c, c, 5, padding=2, groups=c, bias=False)
        with torch.no_grad():
            layer.weight.fill_(0.3)
        wq, iq = quantizers("bnn", layer.weight.shape, c, 1)
        binary = BinaryConv1d.from_float(layer, wq, iq)
        out = binary(torch.ones(2, c, 6))
        expected = torch.tensor([3.0, 4.0, 5.0, 5.0, 4.0, 3.0]).expand(2, c, 6)
        assert torch.equal(out, expected)

    def test_differs_from_padding_before_quantization(self):
        # the wrong order (pad zeros, then sign) would see +1 in every padded tap
        layer = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            layer.weight.fill_(1.0)
        wq, iq = quantizers("bnn", layer.weight.shape, 1, 1)
        binary = BinaryConv1d.from_float(layer, wq, iq)
        x = -torch.ones(1, 1, 4)
        wrong = F.conv1d(ref_sign(F.pad(x, (1, 1))), torch.ones(1, 1, 3))
        right = binary(x)
        assert torch.equal(right, torch.tensor([[[-2.0, -3.0, -3.0, -2.0]]]))
        assert not torch.equal(right, wrong)


class TestPaddingMode:
    @pytest.mark.parametrize("cls", [BinaryConv1d, BinaryConv2d])
    @pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
    def test_constructor_refuses_non_zero_padding(self, cls, mode):
        with pytest.raises(ValueError, match=mode):
            cls(2, 2, 3, padding=1, padding_mode=mode)

    @pytest.mark.parametrize("float_cls", [nn.Conv1d, nn.Conv2d])
    def test_from_float_refuses_reflect(self, float_cls):
        layer = float_cls(2, 2, 3, padding=1, padding_mode="reflect")
        with pytest.raises(ValueError, match="reflect"):
            BINARY_LAYER_FOR[float_cls].from_float(layer, None, None)


class TestPrecisionProperties:
    def test_xnor_is_binary(self):
        wq, iq = quantizers("xnor", (4, 3), 3, -1)
        layer = BinaryLinear(3, 4, weight_quantizer=wq, input_quantizer=iq)
        assert (layer.weight_bits, layer.input_bits, layer.is_binary) == (1, 1, True)

    def test_weights_only_is_not_binary(self):
        wq, _ = quantizers("xnor", (4, 3), 3, -1)
        layer = BinaryLinear(3, 4, weight_quantizer=wq)
        assert (layer.weight_bits, layer.input_bits, layer.is_binary) == (1, 32, False)

    def test_inputs_only_is_not_binary(self):
        _, iq = quantizers("xnor", (4, 3, 3), 3, 1)
        layer = BinaryConv1d(3, 4, 3, input_quantizer=iq)
        assert (layer.weight_bits, layer.input_bits, layer.is_binary) == (32, 1, False)

    @pytest.mark.parametrize("wbits, abits", [(1, 1), (2, 1), (1, 3), (4, 4)])
    def test_multibit_dorefa(self, wbits, abits):
        wq, iq = quantizers("dorefa", (4, 3, 3, 3), 3, 1, weight_bits=wbits, input_bits=abits)
        layer = BinaryConv2d(3, 4, 3, weight_quantizer=wq, input_quantizer=iq)
        assert (layer.weight_bits, layer.input_bits) == (wbits, abits)
        assert layer.is_binary is (wbits == 1 and abits == 1)


class TestGradients:
    def test_gradient_reaches_latent_weight_through_xnor(self):
        # weight.grad = dL/dWq * (1/n + alpha_o * 1[|W| <= 1]) (XNOR-Net Sec. 3.2)
        layer, x = make_float("conv2d")
        wq, iq = quantizers("xnor", layer.weight.shape, layer.in_channels, 1)
        binary = BinaryConv2d.from_float(layer, wq, iq)
        x = x.clone().requires_grad_(True)
        g = torch.randn(binary(x).shape, generator=gen(5))
        (binary(x) * g).sum().backward()

        w = layer.weight.detach()
        w_q = ref_xnor_weight(w).requires_grad_(True)
        (float_op(layer, ref_sign(x.detach()), w_q) * g).sum().backward()
        n = w[0].numel()
        alpha = w.abs().reshape(w.shape[0], -1).mean(1).reshape(-1, 1, 1, 1)
        expected = w_q.grad * (1.0 / n + alpha * (w.abs() <= 1).to(w.dtype))
        assert layer.weight.grad is binary.weight.grad  # the same parameter
        torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-5, atol=1e-6)
        assert layer.bias.grad is not None
        assert x.grad is not None and x.grad.abs().sum() > 0  # STE passes |x| <= 1

    @pytest.mark.parametrize("name", ["bnn", "xnor", "bireal", "irnet", "reactnet", "dorefa", "residual"])
    def test_latent_weight_gets_nonzero_gradient(self, name):
        layer = nn.Linear(8, 4)
        with torch.no_grad():
            layer.weight.mul_(0.5)  # |W| < 1: inside every STE window
        wq, iq = quantizers(name, layer.weight.shape, 8, -1)
        binary = BinaryLinear.from_float(layer, wq, iq, method=name)
        binary(torch.rand(5, 8, generator=gen(6)) * 1.2 - 0.2).square().sum().backward()
        assert layer.weight.grad is not None
        assert torch.isfinite(layer.weight.grad).all()
        assert layer.weight.grad.abs().sum() > 0
