"""Lowering: torch modules -> artifact ops (:mod:`binkit.runtime.artifact`), with folding.

:class:`PlanBuilder` turns one module at a time into ops on named values, tracking every value's
per-example shape with the runtime's own shape inference (so a lowering bug fails here, naming
the module, not at load time). Model lowerings (``bifsmn_plugin.export``, :func:`lower_chain`)
call it per view.

Folding a binary layer (the output stage, DESIGN.md "Conventions contract"). The layer computes
``y_o = alpha_o * dot_o + b_o`` where ``dot_o`` is the integer +-1 dot product (exact zero padding),
``alpha_o`` the weight quantizer's per-output-channel scale (``export_scale``) and ``b_o`` the
bias (0 without). So the op starts with ``multiplier_o = alpha_o`` and ``offset_o = b_o``. A
BatchNorm in eval mode right after it computes ``gamma_o (y_o - mean_o) / sqrt(var_o + eps) +
beta_o = s_o y_o + (beta_o - s_o mean_o)`` with ``s_o = gamma_o / sqrt(var_o + eps)``, hence::

    multiplier_o <- s_o * multiplier_o
    offset_o     <- s_o * offset_o + beta_o - s_o * mean_o

(in float64, stored float32). PReLU stays a separate op after it. A BatchNorm after anything
else (a float layer, an add) becomes an ``affine`` op with the same ``s_o`` and offset.

After lowering, :meth:`PlanBuilder.fold_affines` merges each ``affine`` op whose input nothing
else reads into the op that produced it (another affine, or a binary op's output transform), in
every view alike; where views produce that input with different ops (a thin view's block reading
another block's output), each of them takes the affine. Per-channel input thresholds (ReActNet's
RSign, ``sign(x - t_c)``) lower to an ``affine`` shift (multiplier 1, offset ``-t``) in front of
an ordinary sign layer; modules binkit does not know lower themselves through an
``export_lowering`` method (ReActNet's RPReLU).

Bit-serial multi-plane layers (``packing="bitplanes"``, e.g. the ``residual`` binarizer). The
weight quantizer's :meth:`~binkit.quant.base.WeightQuantizer.export_planes` gives ``P`` sign
planes ``B_p`` and scales ``t_{p,o}``; the input quantizer's
:meth:`~binkit.quant.base.InputQuantizer.export_input_scales` gives ``Q`` scales ``a_q`` of the
residual sign decomposition. Both are checked numerically against the quantizers' ``forward``
before use. With ``P > 1`` the planes are packed one by one under a leading plane axis and the
scales become the op's ``weight_scales`` (so ``multiplier`` starts at 1 and folds only bias and
BatchNorm); with ``P = 1`` the single scale is the multiplier as above. With ``Q > 1`` the op gets
``input_scales``; a single input scale ``a_1`` (``Q = 1``) is folded into the multiplier. The
``weight_planes``/``input_planes`` attributes are written only when > 1, so one-plane layers give
the same ops as before (format: :mod:`binkit.runtime.artifact`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from binkit import registry
from binkit.errors import UnknownNameError
from binkit.export import ExportError
from binkit.nn.layers import BinaryLayerMixin
from binkit.quant.base import NotDeployableError, Quantizer
from binkit.quant.functional import residual_sign_planes
from binkit.runtime.artifact import MAX_PLANES, ArtifactError, infer_op
from binkit.runtime.bits import pack_signs

__all__ = ["PlanBuilder", "lower_chain", "BINARY_OPS"]

BINARY_OPS = ("bconv2d", "bconv1d", "bdwconv1d", "bdwconv2d", "blinear")
_SKIP = (nn.Dropout, nn.Identity)


def _f64(t: torch.Tensor | None, n: int, fill: float = 0.0) -> np.ndarray:
    return np.full(n, fill) if t is None else t.detach().double().cpu().numpy().reshape(n)


def _padding(m: nn.modules.conv._ConvNd) -> list[list[int]]:
    """Per spatial axis ``[before, after]``; ``_reversed_padding_repeated_twice`` lists the last
    axis first (``F.pad`` order) and also resolves ``padding="same"``."""
    r = list(m._reversed_padding_repeated_twice)
    nd = len(m.kernel_size)
    return [[int(r[2 * (nd - 1 - i)]), int(r[2 * (nd - 1 - i) + 1])] for i in range(nd)]


class PlanBuilder:
    """Collects tensors, ops and views of one artifact.

    Args:
        model: the model being lowered (module names come from ``named_modules``).
        input_shape: per-example input shape.
        allow_float_fallback: lower non-binarizable binary layers as float ops (else refuse).
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], allow_float_fallback: bool = False) -> None:
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.allow_float_fallback = allow_float_fallback
        self.names = {id(m): n for n, m in model.named_modules()}
        self.tensors: dict[str, np.ndarray] = {}
        self.fp_weights: set[str] = set()  # float weights that float16 storage may narrow
        self.ops: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.refusals: dict[str, str] = {}
        self.fallbacks: dict[str, str] = {}
        self._view: str | None = None
        self._ranks: dict[str, int] = {"input": len(self.input_shape)}  # every value of every view

    # ------------------------------------------------------------------ views and values

    def begin_view(self, name: str) -> str:
        """Start the op sequence of view ``name``; returns the input value ``"input"``."""
        if self._view is not None:
            raise RuntimeError(f"view {self._view!r} was not ended")
        if name in self.views:
            raise ExportError(f"view {name!r} lowered twice")
        self._view = str(name)
        self._ops: list[dict[str, Any]] = []
        self._shapes: dict[str, tuple[int, ...]] = {"input": self.input_shape}
        self._consumers: dict[str, int] = {}
        return "input"

    def end_view(self, output: str) -> None:
        """Finish the view with ``output`` as its logits; identical ops of views are shared."""
        if self._view is None:
            raise RuntimeError("end_view without begin_view")
        if output not in self._shapes or len(self._shapes[output]) != 1:
            raise ExportError(f"view {self._view!r}: output {output!r} must be a (num_classes,) value, "
                              f"got shape {self._shapes.get(output)}")
        indices = []
        for op in self._ops:
            try:
                indices.append(self.ops.index(op))
            except ValueError:
                self.ops.append(op)
                indices.append(len(self.ops) - 1)
        self.views[self._view] = {"ops": indices, "output": output}
        self._view = None

    def shape(self, value: str) -> tuple[int, ...]:
        """Per-example shape of ``value``."""
        return self._shapes[value]

    def _fresh(self, base: str) -> str:
        name, k = base or "value", 2
        while name in self._shapes:
            name, k = f"{base}#{k}", k + 1
        return name

    def tensor(self, name: str, array: np.ndarray, fp_weight: bool = False) -> str:
        """Add (or re-add identically) tensor ``name``; float64 is stored as float32."""
        a = np.asarray(array)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        a = np.ascontiguousarray(a)
        old = self.tensors.get(name)
        if old is not None and (old.dtype != a.dtype or old.shape != a.shape or not np.array_equal(old, a)):
            raise ExportError(f"tensor {name!r} lowered twice with different values")
        self.tensors[name] = a
        if fp_weight:
            self.fp_weights.add(name)
        return name

    def ones(self, n: int) -> str:
        """The shared tensor of ``n`` ones (the multiplier of a pure shift)."""
        return self.tensor(f"ones.{n}", np.ones(n, np.float32))

    def emit(self, op: str, inputs: list[str], *, name: str = "", attrs: dict | None = None,
             tensors: dict[str, str] | None = None, output: str | None = None) -> str:
        """Append an op to the current view; returns its output value name."""
        if self._view is None:
            raise RuntimeError("emit outside a view")
        out = self._fresh(output or name or op)
        d = {"op": op, "name": name, "inputs": list(inputs), "outputs": [out],
             "attrs": dict(attrs or {}), "tensors": dict(tensors or {})}
        try:
            shape = infer_op(len(self._ops), d, [self._shapes[v] for v in inputs], self.tensors)
        except (ArtifactError, KeyError) as exc:
            raise ExportError(f"cannot lower {name or op!r}: {exc}") from None
        for v in inputs:
            self._consumers[v] = self._consumers.get(v, 0) + 1
        self._ops.append(d)
        self._shapes[out] = shape
        self._note_rank(out, shape)
        return out

    def _note_rank(self, value: str, shape: tuple[int, ...]) -> None:
        """Remember ``value``'s rank across views (-1 if views disagree: then nothing folds on it)."""
        self._ranks[value] = len(shape) if self._ranks.get(value, len(shape)) == len(shape) else -1

    # ------------------------------------------------------------------ structural ops

    def mean(self, x: str, axes: list[int], keepdims: bool = True, name: str = "") -> str:
        return self.emit("mean", [x], name=name, attrs={"axes": list(axes), "keepdims": keepdims})

    def add(self, a: str, b: str, name: str = "") -> str:
        return self.emit("add", [a, b], name=name, output=name and f"{name}.add")

    def reshape(self, x: str, shape: list[int], name: str = "") -> str:
        return self.emit("reshape", [x], name=name, attrs={"shape": [int(s) for s in shape]},
                         output=name and f"{name}.reshape")

    def transpose(self, x: str, perm: list[int], name: str = "") -> str:
        return self.emit("transpose", [x], name=name, attrs={"perm": [int(p) for p in perm]},
                         output=name and f"{name}.transpose")

    def flatten(self, x: str, name: str = "") -> str:
        return self.emit("flatten", [x], name=name, output=name and f"{name}.flatten")

    # ------------------------------------------------------------------ modules

    def module(self, m: nn.Module, x: str, *, padding: list[list[int]] | None = None) -> str:
        """Lower module ``m`` applied to value ``x``; ``padding`` overrides a conv's padding
        (``[[before, after], ...]``, e.g. the DFSMN memory's crop as asymmetric padding).

        A module type binkit does not know lowers itself if it has a method
        ``export_lowering(builder, x, name) -> output value`` that emits its ops through this
        builder (:meth:`emit`, :meth:`tensor`, :meth:`shape`), as ReActNet's RPReLU does."""
        name = self.names.get(id(m), type(m).__name__)
        if isinstance(m, _SKIP):
            return x
        if isinstance(m, nn.Sequential):
            for child in m:
                x = self.module(child, x)
            return x
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            return self._layer(name, m, x, padding)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._batchnorm(name, m, x)
        if isinstance(m, nn.PReLU):
            slope = self.tensor(f"{name}.slope", _f64(m.weight, m.num_parameters))
            return self.emit("prelu", [x], name=name, attrs={"axis": 0}, tensors={"slope": slope}, output=name)
        if isinstance(m, nn.ReLU):
            return self.emit("relu", [x], name=name, output=name)
        if isinstance(m, nn.SiLU):
            return self.emit("silu", [x], name=name, output=name)
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self._avgpool(name, m, x)
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ExportError(f"{name}: only Flatten(start_dim=1, end_dim=-1) is supported")
            return self.flatten(x, name)
        own = getattr(m, "export_lowering", None)
        if callable(own):  # a plugin's module lowers itself (e.g. ReActNet's RPReLU)
            return own(self, x, name)
        raise ExportError(f"layer {name!r}: no export lowering for {type(m).__name__} (supported: Linear, "
                          "Conv1d, Conv2d and their binary twins, BatchNorm1d/2d, PReLU, ReLU, SiLU, "
                          "AvgPool2d, AdaptiveAvgPool2d, Dropout, Identity, Flatten, Sequential, and "
                          "modules with an export_lowering(builder, x, name) method)")

    def _avgpool(self, name: str, m: nn.Module, x: str) -> str:
        """AvgPool2d -> ``avgpool2d``; AdaptiveAvgPool2d to 1 x 1 -> ``mean`` over (H, W) kept as 1
        (an adaptive pool whose bins divide the input evenly -> ``avgpool2d``)."""
        shape = self._shapes[x]
        if len(shape) != 3:
            raise ExportError(f"layer {name!r}: {type(m).__name__} needs a (C, H, W) input, got {shape}")
        def pair(v) -> list[int]:
            return [int(v), int(v)] if isinstance(v, int) else [int(e) for e in v]
        if isinstance(m, nn.AdaptiveAvgPool2d):
            out = [shape[1 + i] if e is None else e for i, e in enumerate(pair(m.output_size) if m.output_size
                                                                            is not None else [None, None])]
            if out == [1, 1]:
                return self.emit("mean", [x], name=name, attrs={"axes": [1, 2], "keepdims": True}, output=name)
            if any(shape[1 + i] % out[i] for i in range(2)):
                raise ExportError(f"layer {name!r}: AdaptiveAvgPool2d{tuple(out)} of a {shape[1:]} input has uneven "
                                  "bins; only 1 x 1 or sizes dividing the input are supported")
            k = [shape[1 + i] // out[i] for i in range(2)]
            attrs = {"kernel_size": k, "stride": k, "padding": [[0, 0], [0, 0]], "count_include_pad": True}
            return self.emit("avgpool2d", [x], name=name, attrs=attrs, output=name)
        if m.ceil_mode:
            raise ExportError(f"layer {name!r}: AvgPool2d(ceil_mode=True) is not supported")
        if m.divisor_override is not None:
            raise ExportError(f"layer {name!r}: AvgPool2d(divisor_override=...) is not supported")
        k = pair(m.kernel_size)
        stride = pair(m.stride if m.stride is not None else m.kernel_size)
        pad = pair(m.padding)
        attrs = {"kernel_size": k, "stride": stride, "padding": [[pad[0], pad[0]], [pad[1], pad[1]]],
                 "count_include_pad": bool(m.count_include_pad)}
        return self.emit("avgpool2d", [x], name=name, attrs=attrs, output=name)

    def _batchnorm(self, name: str, m: nn.modules.batchnorm._BatchNorm, x: str) -> str:
        if m.running_mean is None or m.running_var is None:
            raise ExportError(f"layer {name!r}: BatchNorm without running statistics "
                              "(track_running_stats=False) uses batch statistics and cannot be exported")
        c = m.num_features
        s = _f64(m.weight, c, 1.0) / np.sqrt(_f64(m.running_var, c) + m.eps)
        shift = _f64(m.bias, c, 0.0) - s * _f64(m.running_mean, c)
        last = self._ops[-1] if self._ops else None
        if (last is not None and last["op"] in BINARY_OPS and last["outputs"][0] == x
                and not self._consumers.get(x) and self._shapes[x][0] == c
                and (last["op"] != "blinear" or len(self._shapes[x]) == 1)):
            # fold into the binary op's output transform (module docstring)
            mult = self.tensors[last["tensors"]["multiplier"]].astype(np.float64)
            off = self.tensors[last["tensors"]["offset"]].astype(np.float64)
            base = f"{last['name']}+{name}"
            last["tensors"]["multiplier"] = self.tensor(f"{base}.multiplier", s * mult)
            last["tensors"]["offset"] = self.tensor(f"{base}.offset", s * off + shift)
            shape = self._shapes.pop(x)
            out = self._fresh(name)
            last["outputs"] = [out]
            self._shapes[out] = shape
            self._note_rank(out, shape)
            return out
        mult = self.tensor(f"{name}.multiplier", s)
        off = self.tensor(f"{name}.offset", shift)
        return self.emit("affine", [x], name=name, attrs={"axis": 0},
                         tensors={"multiplier": mult, "offset": off}, output=name)

    # ------------------------------------------------------------------ linear / conv layers

    def _layer(self, name: str, m: nn.Module, x: str, padding: list[list[int]] | None) -> str:
        conv = isinstance(m, (nn.Conv1d, nn.Conv2d))
        if conv and m.padding_mode != "zeros":
            raise ExportError(f"layer {name!r}: padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
        pads = padding if padding is not None else (_padding(m) if conv else None)
        wq = getattr(m, "weight_quantizer", None)
        iq = getattr(m, "input_quantizer", None)
        if not isinstance(m, BinaryLayerMixin) or (wq is None and iq is None):
            return self._float_layer(name, m, x, pads, m.weight.detach(), input_sign=False)
        reason, input_kind = self._binary_reason(name, m)
        if reason is None:
            if input_kind == "threshold":  # sign(x - t): the shift as its own op, then a sign layer
                x = self._input_shift(name, m, x)
            return self._binary_layer(name, m, x, pads)
        no_float = input_kind in ("other", "unsigned", "planes")
        if not self.allow_float_fallback or no_float:
            if no_float and self.allow_float_fallback:
                reason += "; it has no float equivalent either, so the float fallback cannot take it"
            self.refusals[name] = reason
        else:
            self.fallbacks[name] = reason
        # a float op on the quantized weight and quantized inputs: what the torch layer computes
        with torch.no_grad():
            wb = m.quantized_weight().detach()
        if input_kind == "threshold":
            x = self._input_shift(name, m, x)
        return self._float_layer(name, m, x, pads, wb, input_sign=iq is not None and input_kind != "float")

    def _input_shift(self, name: str, m: nn.Module, x: str) -> str:
        """``sign(x - t) = sign(affine(x; 1, -t))``: the per-channel threshold of an input
        quantizer (ReActNet's RSign) as an ``affine`` op in front of the layer."""
        t = m.input_quantizer.threshold.detach().double().cpu().numpy().reshape(-1)
        axis = len(self._shapes[x]) - 1 if isinstance(m, nn.Linear) else 0
        mult = self.ones(len(t))
        off = self.tensor(f"{name}.input_shift.offset", -t)
        return self.emit("affine", [x], name=name, attrs={"axis": axis},
                         tensors={"multiplier": mult, "offset": off}, output=f"{name}.input_shift")

    def _float_layer(self, name, m, x, pads, weight: torch.Tensor, input_sign: bool) -> str:
        w = self.tensor(f"{name}.weight", weight.double().cpu().numpy(), fp_weight=True)
        tensors = {"weight": w}
        if m.bias is not None:
            tensors["bias"] = self.tensor(f"{name}.bias", _f64(m.bias, m.bias.numel()))
        if isinstance(m, nn.Linear):
            return self.emit("linear_fp", [x], name=name, attrs={"input_sign": input_sign}, tensors=tensors, output=name)
        op = "conv2d_fp" if isinstance(m, nn.Conv2d) else "conv1d_fp"
        attrs = {"stride": list(m.stride), "padding": pads, "dilation": list(m.dilation),
                 "groups": int(m.groups), "input_sign": input_sign}
        return self.emit(op, [x], name=name, attrs=attrs, tensors=tensors, output=name)

    def _input_kind(self, m: nn.Module) -> str:
        """What the input quantizer computes, probed on values including 0, -0.0 and tiny ones:
        ``"sign"`` (sign(x), sign(0) = +1), ``"threshold"`` (sign(x - t_c), ReActNet RSign),
        ``"float"`` (no quantizer), ``"unsigned"`` ({0, 1}, DoReFa), ``"planes"`` (residual sign
        planes: the quantizer exports input scales other than the single ``[1]``) or ``"other"``."""
        iq = m.input_quantizer
        if iq is None:
            return "float"
        scales = iq.export_input_scales()
        if scales is not None and not (scales.numel() == 1 and float(scales.reshape(-1)[0]) == 1.0):
            return "planes"
        c = m.in_features if isinstance(m, nn.Linear) else m.in_channels
        x = self._probe(m)
        with torch.no_grad():
            q = iq(x)
        if torch.equal(q, torch.where(x < 0, -1.0, 1.0)):
            return "sign"
        thr = getattr(iq, "threshold", None)
        if isinstance(thr, torch.Tensor) and thr.numel() == c:
            shape = [1] * x.dim()
            shape[1 if not isinstance(m, nn.Linear) else -1] = -1
            if torch.equal(q, torch.where(x - thr.detach().reshape(shape) < 0, -1.0, 1.0)):
                return "threshold"
        if bool(((q == 0) | (q == 1)).all()):
            return "unsigned"
        return "other"

    @staticmethod
    def _probe(m: nn.Module) -> torch.Tensor:
        """Probe inputs for an input quantizer: random values, 0, -0.0 and tiny ones, and values on
        the greedy residual decision points (0.5, 1, 1.5, ...)."""
        c = m.in_features if isinstance(m, nn.Linear) else m.in_channels
        g = torch.Generator().manual_seed(0)
        x = torch.randn(3, c, 7, generator=g) * 2 if not isinstance(m, nn.Linear) else torch.randn(7, c, generator=g) * 2
        flat = x.view(-1)
        special = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 0.75, -0.75])
        n = min(flat.numel(), special.numel())
        flat[:n] = special[:n]
        return x

    def _weight_planes(self, m: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """``(signs (P, *w.shape) float64 +-1, scales (P, out))`` of the weight quantizer, checked.

        Raises:
            NotDeployableError: no plane decomposition, or one that does not reproduce ``forward``.
        """
        wq = m.weight_quantizer
        with torch.no_grad():
            w = m.weight.detach()
            signs, scales = wq.export_planes(w)
            q = wq(w).detach()
        out = w.shape[0]
        p = signs.shape[0] if signs.dim() == w.dim() + 1 else -1
        if not 1 <= p <= MAX_PLANES or tuple(signs.shape[1:]) != tuple(w.shape):
            raise NotDeployableError(f"export_planes returned signs of shape {tuple(signs.shape)}; expected "
                                     f"(P, {', '.join(map(str, w.shape))}) with P in 1..{MAX_PLANES}")
        if tuple(scales.shape) != (p, out) or not torch.isfinite(scales).all():
            raise NotDeployableError(f"export_planes returned scales of shape {tuple(scales.shape)} or "
                                     f"non-finite values; expected finite ({p}, {out})")
        if not bool(((signs == 1) | (signs == -1)).all()):
            raise NotDeployableError("export_planes returned signs that are not all +1/-1")
        bshape = (out,) + (1,) * (w.dim() - 1)
        recon = sum(scales[i].double().reshape(bshape) * signs[i].double() for i in range(p))
        if not torch.allclose(recon, q.double(), rtol=1e-5, atol=1e-6 * max(float(scales.abs().max()), 1e-30)):
            raise NotDeployableError(f"{type(wq).__name__}: sum_p scales[p] * signs[p] from export_planes is not "
                                     "the quantized weight forward() computes")
        return signs.double().cpu().numpy(), scales.detach().cpu().numpy()

    def _input_scales(self, m: nn.Module) -> tuple[np.ndarray | None, str | None]:
        """``(a (Q,), None)`` for a residual-plane input quantizer whose ``forward`` checks out
        against :func:`binkit.quant.functional.residual_sign_planes`, ``(None, None)`` for one
        without input scales, ``(None, reason)`` for a bad one."""
        iq = m.input_quantizer
        scales = iq.export_input_scales() if iq is not None else None
        if scales is None:
            return None, None
        name = type(iq).__name__
        scales = scales.detach().reshape(-1)
        if not 1 <= scales.numel() <= MAX_PLANES:
            return None, f"{name} exports {scales.numel()} input planes; binary ops take 1..{MAX_PLANES}"
        if not torch.isfinite(scales).all() or not (scales > 0).all():
            return None, f"{name} exports input scales {scales.tolist()}; they must be finite and > 0"
        x = self._probe(m)
        with torch.no_grad():
            got = iq(x).detach().double()
        planes = residual_sign_planes(x, scales)
        want = sum(float(a) * planes[i].double() for i, a in enumerate(scales.double()))
        if not torch.allclose(got, want, rtol=1e-6, atol=1e-6):
            return None, (f"{name}.forward is not the residual sign decomposition sum_q a_q b_q with its exported "
                          f"input scales {scales.tolist()}")
        return scales.cpu().numpy(), None

    def _binary_reason(self, name: str, m: nn.Module) -> tuple[str | None, str]:
        """``(None, kind)`` if the layer runs as an XNOR-popcount op, else ``(reason, kind)``."""
        kind = self._input_kind(m)
        method = getattr(m, "method", "")
        entry = None
        if method:
            try:
                entry = registry.get("quantizer", method)
            except UnknownNameError:
                entry = None
        if entry is not None and entry.packing is None:
            return f"quantizer {method!r} is not deployable: {entry.not_deployable_reason}", kind
        if entry is not None and entry.packing not in ("sign", "bitplanes"):
            return (f"quantizer {method!r} packs as {entry.packing!r}; only 'sign' (+-1) and 'bitplanes' "
                    "(scaled +-1 planes) layers are supported by export yet"), kind
        if m.weight_quantizer is None:
            return "weights are not binarized (inputs only): the layer needs float weights", kind
        if kind == "planes":
            _, why = self._input_scales(m)
            if why is not None:
                return f"input planes cannot be exported: {why}", kind
        if kind == "float":
            return "inputs are not binarized (weights only): the layer needs float inputs", kind
        if kind == "unsigned":
            return "inputs are {0, 1} (DoReFa): unsigned 1-bit activations are not supported yet", kind
        if kind == "other":
            return f"input quantizer {type(m.input_quantizer).__name__} does not compute sign(x)", kind
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups != 1:
            depthwise = m.groups == m.in_channels == m.out_channels
            if not depthwise:
                return (f"grouped convolution (groups={m.groups}) is not a binary op; only dense and "
                        "depthwise convs are"), kind
        try:
            signs, _ = self._weight_planes(m)
        except NotDeployableError as exc:
            return ("weight scale cannot fold into per-output-channel scales of +-1 planes (a multiplier, or "
                    f"weight_scales): {exc}"), kind
        if isinstance(m, nn.Conv2d) and m.groups != 1 and (kind == "planes" or signs.shape[0] > 1):
            q = self._input_scales(m)[0]
            return (f"a depthwise Conv2d runs one plane only (bdwconv2d); its quantizer gives {signs.shape[0]} "
                    f"weight plane(s) and {1 if q is None else q.shape[0]} input plane(s)"), kind
        return None, kind

    def _binary_layer(self, name: str, m: nn.Module, x: str, pads) -> str:
        signs, scales = self._weight_planes(m)  # (P, out, in/groups, *kernel) +-1, (P, out)
        in_scales, _ = self._input_scales(m)  # (Q,) or None (plain sign inputs)
        p = signs.shape[0]
        q = 1 if in_scales is None else in_scales.shape[0]
        out = signs.shape[1]
        mult = scales[0].astype(np.float64) if p == 1 else np.ones(out)
        if in_scales is not None and q == 1:
            mult = mult * float(in_scales[0])  # one input plane a_1 * sign(x): a scale like alpha
        tensors = {"multiplier": self.tensor(f"{name}.multiplier", mult),
                   "offset": self.tensor(f"{name}.offset", _f64(m.bias, out))}
        extra: dict[str, Any] = {}
        if p > 1:
            extra["weight_planes"] = p
            tensors["weight_scales"] = self.tensor(f"{name}.weight_scales", scales.astype(np.float32))
        if q > 1:
            extra["input_planes"] = q
            tensors["input_scales"] = self.tensor(f"{name}.input_scales", in_scales.astype(np.float32))

        def packed(layout) -> np.ndarray:
            words = [pack_signs(layout(signs[i])) for i in range(p)]
            return words[0] if p == 1 else np.stack(words)

        if isinstance(m, nn.Linear):
            tensors["weight"] = self.tensor(f"{name}.weight", packed(lambda s: s))  # (out, in) -> (out, words)
            return self.emit("blinear", [x], name=name, attrs={"in_features": m.in_features, **extra},
                             tensors=tensors, output=name)
        nd = signs.ndim - 3
        attrs = {"in_channels": m.in_channels, "kernel_size": list(m.kernel_size), "stride": list(m.stride),
                 "padding": pads, "dilation": list(m.dilation), **extra}
        if m.groups != 1 and nd == 1:  # depthwise Conv1d: (C, 1, k) -> (k, C) -> (k, words)
            tensors["weight"] = self.tensor(f"{name}.weight", packed(lambda s: s[:, 0, :].T))
            return self.emit("bdwconv1d", [x], name=name, attrs=attrs, tensors=tensors, output=name)
        if m.groups != 1:  # depthwise Conv2d: (C, 1, kh, kw) -> (kh, kw, C) -> (kh, kw, words)
            tensors["weight"] = self.tensor(f"{name}.weight", packed(lambda s: np.moveaxis(s[:, 0], 0, -1)))
            return self.emit("bdwconv2d", [x], name=name, attrs=attrs, tensors=tensors, output=name)
        # (out, in, *kernel) -> (out, *kernel, in) -> (out, *kernel, words): one packed row per tap
        tensors["weight"] = self.tensor(f"{name}.weight", packed(lambda s: np.moveaxis(s, 1, -1)))
        return self.emit("bconv2d" if nd == 2 else "bconv1d", [x], name=name, attrs=attrs, tensors=tensors,
                         output=name)

    # ------------------------------------------------------------------ finishing

    def check(self) -> None:
        """Raise :class:`ExportError` listing every refused layer."""
        if self.refusals:
            lines = "\n".join(f"  {n}: {r}" for n, r in self.refusals.items())
            raise ExportError(f"{len(self.refusals)} layer(s) cannot run binary:\n{lines}\n"
                              "Train them with a deployable binarizer, exclude them from binarization, or "
                              "pass allow_float_fallback=True (--allow-float-fallback) to run them in float.")

    # ------------------------------------------------------------------ affine folding

    def fold_affines(self) -> list[str]:
        """Fold an ``affine`` op into the op producing its input when that value has no other reader.

        When value ``v``, produced by an ``affine`` or by a binary op's output transform ``m1 * y +
        c1``, is read only by an ``affine`` op ``m2 * v + c2`` on the same channel axis, in every
        view, and is no view's output, then the producer computes ``(m2 m1) * y + (m2 c1 + c2)``
        (float64, stored float32) and the second op disappears. This merges what lowering emits
        op by op, e.g. a BatchNorm after a float layer and a shift (ReActNet's RPReLU ``-gamma``).
        Views may produce ``v`` with different ops (a thinnable model's block whose input differs
        by view is lowered once per input); each such producer then takes the affine, provided
        every view runs exactly one of them.

        Returns the names of the absorbed ops. Call after every view is lowered.
        """
        absorbed: list[str] = []
        bi = 0
        while bi < len(self.ops):
            producers = self._affine_fold_producers(bi)
            if not producers:
                bi += 1
                continue
            b = self.ops[bi]
            m2 = self.tensors[b["tensors"]["multiplier"]].astype(np.float64)
            c2 = self.tensors[b["tensors"]["offset"]].astype(np.float64)
            for ai in producers:
                a = self.ops[ai]
                m1 = self.tensors[a["tensors"]["multiplier"]].astype(np.float64)
                c1 = self.tensors[a["tensors"]["offset"]].astype(np.float64)
                base = f"{a['tensors']['multiplier'].rsplit('.multiplier', 1)[0]}+{b['name']}"
                a["tensors"]["multiplier"] = self.tensor(f"{base}.multiplier", m2 * m1)
                a["tensors"]["offset"] = self.tensor(f"{base}.offset", m2 * c1 + c2)
                a["outputs"] = list(b["outputs"])
            self._drop_op(bi)
            absorbed.append(b["name"])
        return absorbed

    def _drop_op(self, index: int) -> None:
        """Remove op ``index`` from the plan and from every view (later indices shift down)."""
        del self.ops[index]
        for view in self.views.values():
            view["ops"] = [i - (i > index) for i in view["ops"] if i != index]

    def _affine_fold_producers(self, bi: int) -> list[int]:
        """The op indices that affine op ``bi`` can fold into (see :meth:`fold_affines`); empty
        when it cannot fold."""
        b = self.ops[bi]
        if b["op"] != "affine":
            return []
        v = b["inputs"][0]
        rank = self._ranks.get(v, -1)
        if rank < 1:
            return []
        producers: list[int] = []  # the producer of v before b in each view that runs b
        for view in self.views.values():
            seq = view["ops"]
            if bi not in seq:
                continue
            before = seq[:seq.index(bi)]
            producer = next((i for i in reversed(before) if v in self.ops[i]["outputs"]), None)
            if producer is None:
                return []
            if producer not in producers:
                producers.append(producer)
        for ai in producers:
            a = self.ops[ai]
            if a["op"] == "affine":
                axis = a["attrs"]["axis"]
            elif a["op"] in BINARY_OPS and "multiplier" in a["tensors"] and "offset" in a["tensors"]:
                axis = rank - 1 if a["op"] == "blinear" else 0
            else:
                return []
            if b["attrs"]["axis"] % rank != axis % rank:
                return []
        for view in self.views.values():
            seq = view["ops"]
            runs_b = bi in seq
            if sum(ai in seq for ai in producers) != int(runs_b):
                return []  # a producer runs in a view without b, or two producers in one view
            if runs_b and (view["output"] == v or [i for i in seq if v in self.ops[i]["inputs"]] != [bi]):
                return []
        return producers

    def fold_sign_outputs(self) -> list[str]:
        """Fold ``binary op -> PReLU [-> affine] -> (only binary ops)`` into a binary op with a sign
        threshold.

        Multi-plane ops are left alone, as producers (their dot is a float sum of scaled plane
        dots, not an integer) and as consumers (``input_planes > 1`` reads the magnitude).

        When a binary op's output ``v`` feeds only a PReLU whose output ``u`` feeds only binary
        ops (which binarize it), in every view, then with every PReLU slope > 0 what those ops
        see is ``sign(prelu(m dot + c)) = sign(m dot + c)`` (sign(0) = +1). That is +1 iff
        ``m dot + c >= 0``, i.e. for ``m > 0`` iff ``dot >= ceil(-c / m)``: one integer per
        channel instead of two floats, computed exactly (``fractions.Fraction``; float64
        ``m*dot + c`` of float32 ``m, c`` and an integer dot has the sign of the exact value).
        Channels with ``m < 0`` get their weight bits inverted (``dot -> -dot``); ``m = 0`` is a
        constant (threshold ``-K`` or ``K + 1``). The PReLU op disappears.

        The PReLU may instead feed only an ``affine`` ``m2 u + c2`` (every ``m2 > 0``) whose
        output feeds only binary ops, e.g. ReActNet's RPReLU bias followed by the next layer's
        RSign shift. PReLU is increasing, so ``m2 prelu(z) + c2 >= 0`` iff ``z >= q`` with
        ``r = -c2 / m2`` and ``q = r`` for ``r >= 0``, ``q = r / slope`` otherwise: the same
        integer rule on ``m dot + (c - q)``, again exact. The affine disappears too.

        Returns the names of the folded ops. Call after every view is lowered.
        """
        folded: list[str] = []
        xi = 0
        while xi < len(self.ops):
            found = self._sign_fold_partner(xi)
            if found is None:
                xi += 1
                continue
            pi, ai = found
            x, prelu = self.ops[xi], self.ops[pi]
            shift = None
            last = prelu
            if ai is not None:
                last = self.ops[ai]
                shift = _prelu_affine_shift(self.tensors[prelu["tensors"]["slope"]],
                                            self.tensors[last["tensors"]["multiplier"]],
                                            self.tensors[last["tensors"]["offset"]])
            thr, flip = _sign_thresholds(self.tensors[x["tensors"]["multiplier"]],
                                         self.tensors[x["tensors"]["offset"]], _max_dot(x), shift)
            weight = x["tensors"]["weight"]
            if flip.any():
                weight = self.tensor(f"{weight}.signfold", _flip_rows(x, self.tensors[weight], flip))
            base = x["tensors"]["multiplier"].rsplit(".multiplier", 1)[0]
            dtype = np.int16 if thr.min() >= -(1 << 15) and thr.max() < (1 << 15) else np.int32
            x["tensors"] = {"weight": weight, "threshold": self.tensor(f"{base}.threshold", thr.astype(dtype))}
            x["outputs"] = list(last["outputs"])
            for gone in sorted([pi] if ai is None else [pi, ai], reverse=True):
                self._drop_op(gone)
            folded.append(x["name"])
            xi = next(i for i, op in enumerate(self.ops) if op is x) + 1
        return folded

    def _sign_fold_partner(self, xi: int) -> tuple[int, int | None] | None:
        """``(PReLU index, affine index or None)`` that binary op ``xi`` can absorb (see
        :meth:`fold_sign_outputs`)."""
        x = self.ops[xi]
        if x["op"] not in BINARY_OPS or "multiplier" not in x["tensors"] or _multi_plane(x):
            return None  # a multi-plane dot is not an integer: no exact integer threshold
        v = x["outputs"][0]
        partner: tuple[int, int | None] | None = None
        for view in self.views.values():
            seq = view["ops"]
            if xi not in seq:
                continue
            readers = [i for i in seq if v in self.ops[i]["inputs"]]
            if view["output"] == v or len(readers) != 1 or self.ops[readers[0]]["op"] != "prelu":
                return None
            pi, ai = readers[0], None
            u = self.ops[pi]["outputs"][0]
            users = [i for i in seq if u in self.ops[i]["inputs"]]
            if view["output"] == u or not users:
                return None
            if len(users) == 1 and self.ops[users[0]]["op"] == "affine":
                ai = users[0]
                u = self.ops[ai]["outputs"][0]
                users = [i for i in seq if u in self.ops[i]["inputs"]]
                if view["output"] == u or not users:
                    return None
            if any(self.ops[i]["op"] not in BINARY_OPS for i in users):
                return None
            if any(self.ops[i]["attrs"].get("input_planes", 1) != 1 for i in users):
                return None  # a multi-plane consumer reads the value's magnitude, not only its sign
            if partner is not None and (pi, ai) != partner:
                return None
            partner = (pi, ai)
        if partner is None:
            return None
        pi, ai = partner
        if any((pi in view["ops"] or (ai is not None and ai in view["ops"])) and xi not in view["ops"]
               for view in self.views.values()):
            return None  # the PReLU (or the affine) also runs in a view without this op
        if not (self.tensors[self.ops[pi]["tensors"]["slope"]] > 0).all():
            return None  # sign(prelu(z)) = sign(z) needs positive slopes
        if ai is not None:
            a = self.ops[ai]
            if (a["attrs"]["axis"] != 0 or self.ops[pi]["attrs"].get("axis", 0) != 0
                    or (x["op"] == "blinear" and self._ranks.get(v, -1) != 1)):
                return None  # per-channel vectors must run along the binary op's output channels
            if not (self.tensors[a["tensors"]["multiplier"]] > 0).all():
                return None
        return partner

    def referenced_tensors(self) -> dict[str, np.ndarray]:
        used = {t for op in self.ops for t in op["tensors"].values()}
        return {k: v for k, v in self.tensors.items() if k in used}


def _multi_plane(op: dict[str, Any]) -> bool:
    """Whether a binary op is bit-serial (``weight_planes`` or ``input_planes`` > 1)."""
    return op["attrs"].get("weight_planes", 1) != 1 or op["attrs"].get("input_planes", 1) != 1


def _max_dot(op: dict[str, Any]) -> int:
    """Largest |dot| a binary op can produce (its full receptive field)."""
    a = op["attrs"]
    if op["op"] == "blinear":
        return int(a["in_features"])
    if op["op"] in ("bdwconv1d", "bdwconv2d"):
        return int(np.prod(a["kernel_size"]))
    return int(a["in_channels"]) * int(np.prod(a["kernel_size"]))


def _prelu_affine_shift(slope: np.ndarray, mult: np.ndarray, off: np.ndarray) -> list:
    """Per channel, exactly: the ``q`` with ``m2 prelu(z) + c2 >= 0  iff  z >= q`` (slopes and
    ``m2`` positive; a single slope applies to every channel)."""
    from fractions import Fraction

    slope = np.asarray(slope, np.float64).reshape(-1)
    out = []
    for o, (m2, c2) in enumerate(zip(np.asarray(mult, np.float64), np.asarray(off, np.float64))):
        r = -Fraction(float(c2)) / Fraction(float(m2))
        out.append(r if r >= 0 else r / Fraction(float(slope[o if slope.size > 1 else 0])))
    return out


def _sign_thresholds(mult: np.ndarray, off: np.ndarray, k: int,
                     shift: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: the integer ``t`` with ``sign(m dot + c - q) = +1  iff  s dot >= t`` where
    ``s = -1`` for flipped channels (``m < 0``) and ``q`` is ``shift`` (exact fractions; 0 without),
    exactly; and the flip mask."""
    from fractions import Fraction

    thr = np.empty(len(mult), np.int64)
    flip = np.asarray(mult) < 0
    for o, (m, c) in enumerate(zip(np.asarray(mult, np.float64), np.asarray(off, np.float64))):
        m, c = Fraction(abs(float(m))), Fraction(float(c)) - (shift[o] if shift is not None else 0)
        if m == 0:
            thr[o] = -k if c >= 0 else k + 1  # constant +1 / constant -1
        else:
            # flipped channels: m dot + c = |m| (-dot) + c, so the same rule holds on -dot
            thr[o] = min(max(math.ceil(-c / m), -k), k + 1)
    return thr, flip


def _flip_rows(op: dict[str, Any], words: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Packed weights with the +-1 signs of the flipped output channels inverted (padding bits
    stay 0)."""
    from binkit.runtime.bits import pack_signs, unpack_signs

    if op["op"] in ("bdwconv1d", "bdwconv2d"):  # (*kernel, words(C)): channel c is bit c of every tap
        c = int(op["attrs"]["in_channels"])
        signs = unpack_signs(words, c)  # (*kernel, C)
        signs[..., flip] *= -1
        return pack_signs(signs)
    n = int(op["attrs"].get("in_channels", op["attrs"].get("in_features")))
    signs = unpack_signs(words, n)  # (out, ..., C)
    signs[flip] *= -1
    return pack_signs(signs)


# ---------------------------------------------------------------------------------------------
# the generic chain lowering
# ---------------------------------------------------------------------------------------------


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out, inside = [], set()
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, BinaryLayerMixin):
            inside.add(name)
            out.append((name, m))
        elif not list(m.children()) and not isinstance(m, Quantizer):
            out.append((name, m))
    return out


def lower_chain(model: nn.Module, builder: PlanBuilder, views: list[str]) -> None:
    """Lower a model whose layers form a chain, by running it once with forward hooks.

    Each hooked layer must read the previous layer's output (or the model input), possibly
    reshaped (``x.flatten(1)`` between layers is recognised by comparing values); the model's
    output must be the last layer's. Anything else (residual adds, concatenation, pooling done
    functionally) raises :class:`ExportError` naming the layer: give the model a
    ``lower_for_export`` method or register a lowering.
    """
    if len(views) != 1:
        raise ExportError(f"{type(model).__name__}: the generic chain lowering exports one view, got {views}; "
                          "register a lowering for a model with views")
    records: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = []
    for name, m in _leaves(model):
        def hook(mod, inp, out, name=name):
            if len(inp) != 1 or not isinstance(out, torch.Tensor):
                raise ExportError(f"layer {name!r} takes {len(inp)} inputs or returns a non-tensor; "
                                  "the chain lowering needs one tensor in, one out")
            records.append((name, mod, inp[0], out))
        hooks.append(m.register_forward_hook(hook))
    example = torch.randn(2, *builder.input_shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            y = model(example)
    finally:
        for h in hooks:
            h.remove()
    x = builder.begin_view(views[0])
    produced: list[tuple[torch.Tensor, str]] = [(example, x)]

    def resolve(t: torch.Tensor, who: str) -> str:
        for tensor, value in reversed(produced):
            if tensor is t:
                return value
        last, value = produced[-1]
        if (t.shape[0] == last.shape[0] and t.numel() == last.numel()
                and torch.equal(t.reshape(-1), last.reshape(-1))):
            return builder.reshape(value, list(t.shape[1:]), name=who)
        raise ExportError(f"{type(model).__name__}: the input of {who} is not the previous layer's output; the "
                          "model is not a plain chain (residual adds or functional ops). Give it a "
                          "lower_for_export(builder, views) method or binkit.export.register_lowering(cls, fn).")

    for name, mod, inp, out in records:
        v = resolve(inp, f"layer {name!r}")
        produced.append((out, builder.module(mod, v)))
    builder.end_view(resolve(y, "the model output"))
