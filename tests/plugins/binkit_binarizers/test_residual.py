"""The ``residual`` binarizer (bit-serial multi-plane): formulas, gradients, export hooks, params.

Reference formulas are written here independently of the plugin code (module docstring of
``binkit_binarizers.residual``).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

import binkit
from binkit import registry
from binkit.nn.layers import BinaryConv1d, BinaryConv2d, BinaryLinear
from binkit.quant import NotDeployableError
from binkit.quant.functional import residual_sign_planes

SHAPES = {"linear": (5, 7), "conv1d": (6, 3, 5), "conv2d": (4, 3, 3, 3), "depthwise": (6, 1, 5)}
shapes = pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
planes = pytest.mark.parametrize("p", [1, 2, 3, 4])


def special(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Random multiples of 1/64 with exact zeros, +-1 and tiny values placed in."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.round(torch.randn(shape, generator=gen, dtype=torch.float64) * 1.3 * 64) / 64
    flat = x.view(-1)
    sp = torch.tensor([0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 0.5, 0.0])
    n = min(sp.numel(), flat.numel())
    flat[torch.randperm(flat.numel(), generator=gen)[:n]] = sp[:n].double()
    return x.to(dtype)


def ref_sign(x):
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def window(x):
    return ((x >= -1) & (x <= 1)).to(x.dtype)


def ref_weight_planes(w, p):
    out = w.shape[0]
    bshape = (out,) + (1,) * (w.dim() - 1)
    r, signs, scales = w.clone(), [], []
    for _ in range(p):
        b = ref_sign(r)
        a = torch.stack([r[o].abs().mean() for o in range(out)])
        signs.append(b)
        scales.append(a)
        r = r - a.reshape(bshape) * b
    return torch.stack(signs), torch.stack(scales)


def ref_weight(w, p):
    signs, scales = ref_weight_planes(w, p)
    bshape = (w.shape[0],) + (1,) * (w.dim() - 1)
    return sum(scales[i].reshape(bshape) * signs[i] for i in range(p))


def ref_input(x, scales):
    r, y = x.clone(), torch.zeros_like(x)
    for a in scales:
        b = ref_sign(r)
        y = y + a * b
        r = r - a * b
    return y


def wq(shape, p=2, q=2, dtype=torch.float64):
    e = registry.get("quantizer", "residual")
    return e.weight(e.params(weight_planes=p, input_planes=q), shape).to(dtype)


def iq(c, q=2, p=2, channel_dim=1, dtype=torch.float64):
    e = registry.get("quantizer", "residual")
    return e.input(e.params(weight_planes=p, input_planes=q), c, channel_dim).to(dtype)


def grads(fn, x, extra=(), seed=0):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    out = torch.autograd.grad(y, [x, *extra], g)
    return y.detach(), g, out[0], list(out[1:])


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------


class TestEntryAndParams:
    def test_entry(self):
        e = registry.get("quantizer", "residual")
        assert e.packing == "bitplanes" and e.deployable and e.precision == 2
        assert e.precision_param == "weight_planes"
        assert e.precision_for(e.params(weight_planes=3)) == 3
        assert "arXiv:1706.02021" in e.reference and "arXiv:1711.01243" in e.reference
        assert e.provider.endswith(":binarizers")
        p = e.params()
        assert (p.weight_planes, p.input_planes) == (2, 2)

    @pytest.mark.parametrize("field, value", [("weight_planes", 0), ("weight_planes", 5), ("input_planes", 0),
                                              ("input_planes", 5), ("input_planes", 2.5), ("weight_planes", None)])
    def test_params_are_validated(self, field, value):
        with pytest.raises(ValidationError, match=field):
            registry.get("quantizer", "residual").params(**{field: value})

    def test_binarize_names_the_bad_param(self):
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
        with pytest.raises(Exception, match="weight_planes"):
            binkit.binarize(model, {"method": "residual", "params": {"weight_planes": 7}})

    @planes
    def test_precision_follows_planes(self, p):
        assert wq((4, 3), p=p, q=1).precision == p
        assert iq(3, q=p).precision == p


class TestWeights:
    @shapes
    @planes
    def test_forward_and_backward(self, shape, p):
        w = special(shape, seed=1)
        y, g, gw, _ = grads(wq(shape, p), w)
        close(y, ref_weight(w, p))
        close(gw, g * window(w))  # clipped STE, scales detached

    @shapes
    def test_one_plane_is_xnor_forward(self, shape):
        xnor = registry.get("quantizer", "xnor")
        for dtype in (torch.float32, torch.float64):
            w = special(shape, seed=2, dtype=dtype)
            got = wq(shape, p=1, dtype=dtype)(w)
            want = xnor.weight(xnor.params(), shape).to(dtype)(w)
            assert torch.equal(got, want)
            assert torch.equal(wq(shape, p=1, dtype=dtype).export_scale(w),
                               xnor.weight(xnor.params(), shape).to(dtype).export_scale(w))

    @shapes
    @planes
    def test_export_planes(self, shape, p):
        w = special(shape, seed=3)
        q = wq(shape, p)
        signs, scales = q.export_planes(w)
        want_s, want_a = ref_weight_planes(w, p)
        assert torch.equal(signs, want_s) and signs.shape == (p, *shape)
        close(scales, want_a)
        assert (signs[0][w == 0] == 1).all()  # sign(0) = +1 on the first plane
        bshape = (shape[0],) + (1,) * (len(shape) - 1)
        assert torch.equal(sum(scales[i].reshape(bshape) * signs[i] for i in range(p)), q(w))
        if p > 1:
            with pytest.raises(NotDeployableError, match="export_planes"):
                q.export_scale(w)

    @shapes
    def test_error_never_grows_with_planes(self, shape):
        # greedy step: ||R - a sign(R)||^2 = ||R||^2 - n a^2 with a = mean|R|
        w = special(shape, seed=4)
        errs = [float((w - ref_weight(w, p)).norm()) for p in (1, 2, 3, 4)]
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(errs)), errs
        assert float((w - wq(shape, 4)(w)).norm()) == pytest.approx(errs[-1], rel=1e-9)

    def test_zero_channel(self):
        w = torch.zeros(2, 3, dtype=torch.float64)
        w[1] = 0.25
        y = wq((2, 3), 3)(w)
        assert torch.equal(y[0], torch.zeros(3, dtype=torch.float64))
        close(y[1], w[1])


class TestInputs:
    @pytest.mark.parametrize("channel_dim, shape", [(1, (2, 4, 9)), (-1, (5, 4))], ids=["conv", "linear"])
    @planes
    def test_forward_and_backward(self, channel_dim, shape, p):
        x = special(shape, seed=5) * 1.7
        quant = iq(4, q=p, channel_dim=channel_dim)
        params = [quant.log_scales] if p > 1 else []
        y, g, gx, gs = grads(quant, x, params)
        a = quant.export_input_scales().tolist()
        assert a == pytest.approx([0.5 ** i for i in range(p)], rel=1e-6)  # a_1 = 1, then 0.5, 0.25, ...
        assert a[0] == 1.0
        close(y, ref_input(x, a))
        close(gx, g * window(x))
        if p > 1:
            # straight through: d x~ / d a_q = b_q, and a_q = exp(theta_q)
            planes_ = residual_sign_planes(x, torch.tensor(a, dtype=x.dtype))
            want = torch.stack([a[i] * (g * planes_[i]).sum() for i in range(1, p)])
            close(gs[0], want)

    def test_one_plane_is_sign_without_parameters(self):
        x = special((3, 4, 6), seed=6)
        quant = iq(4, q=1)
        assert torch.equal(quant(x), ref_sign(x))
        assert list(quant.parameters()) == []
        assert torch.equal(quant.export_input_scales(), torch.ones(1))

    @planes
    def test_sign_of_zero_is_plus_one(self, p):
        x = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
        planes_ = residual_sign_planes(x, iq(1, q=p, dtype=torch.float32).export_input_scales())
        assert (planes_[0] == torch.tensor([1.0, 1.0, 1.0, -1.0])).all()
        y = iq(1, q=p, dtype=torch.float32)(x)
        assert (y[:3] > 0).all() and (y[3] < 0)

    def test_scales_stay_positive_and_learn(self):
        quant = iq(4, q=3)
        with torch.no_grad():
            quant.log_scales.copy_(torch.tensor([-60.0, 5.0], dtype=torch.float64))
        assert (quant.export_input_scales() > 0).all()
        quant = iq(4, q=3)
        opt = torch.optim.SGD(quant.parameters(), lr=0.1)
        x = torch.randn(8, 4, 5, dtype=torch.float64) * 0.7
        before = ((quant(x) - x) ** 2).mean().item()
        for _ in range(20):
            opt.zero_grad()
            ((quant(x) - x) ** 2).mean().backward()
            opt.step()
        assert ((quant(x) - x) ** 2).mean().item() <= before

    def test_functional_planes(self):
        x = special((3, 50), seed=7) * 2
        s = torch.tensor([1.0, 0.3, 0.2, 0.05], dtype=torch.float64)
        got = residual_sign_planes(x, s)
        r = x.clone()
        for i in range(4):
            assert torch.equal(got[i], ref_sign(r))
            r = r - s[i] * ref_sign(r)


LAYERS = {
    "linear": (lambda **q: BinaryLinear(7, 5, **q), (5, 7), (3, 7), -1, 7, lambda x, w, b: F.linear(x, w, b)),
    "conv1d": (lambda **q: BinaryConv1d(3, 6, 5, padding=2, **q), (6, 3, 5), (2, 3, 9), 1, 3,
               lambda x, w, b: F.conv1d(x, w, b, padding=2)),
    "conv2d": (lambda **q: BinaryConv2d(3, 4, 3, padding=1, **q), (4, 3, 3, 3), (2, 3, 6, 6), 1, 3,
               lambda x, w, b: F.conv2d(x, w, b, padding=1)),
    "depthwise": (lambda **q: BinaryConv1d(6, 6, 5, padding=2, groups=6, **q), (6, 1, 5), (2, 6, 9), 1, 6,
                  lambda x, w, b: F.conv1d(x, w, b, padding=2, groups=6)),
}


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("p, q", [(1, 1), (2, 3), (4, 4)])
def test_binary_layers(kind, p, q):
    factory, wshape, xshape, cdim, cin, op = LAYERS[kind]
    layer = factory(weight_quantizer=wq(wshape, p, q, torch.float32), input_quantizer=iq(cin, q, p, cdim, torch.float32),
                    method="residual")
    with torch.no_grad():
        layer.weight.copy_(special(wshape, seed=8, dtype=torch.float32))
    assert (layer.weight_bits, layer.input_bits) == (p, q)
    assert layer.is_binary == (p == q == 1)
    x = special(xshape, seed=9, dtype=torch.float32)
    w = layer.weight.detach()
    a = layer.input_quantizer.export_input_scales()
    want = op(ref_input(x, a), ref_weight(w.double(), p).float(), layer.bias.detach())
    y = layer(x)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    y.square().sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    if q > 1:
        assert layer.input_quantizer.log_scales.grad is not None
