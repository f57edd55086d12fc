"""Binary layers: torch layers with a weight quantizer and an input quantizer.

Each layer is the upstream torch layer plus two optional quantizer modules, with the same
constructor arguments (``weight_quantizer``/``input_quantizer``; both ``None`` is the plain
layer). The operation is::

    y = op(Q_in(x), Q_w(W)) + b

with ``op`` the layer's linear map (``F.linear``, ``F.conv1d``, ``F.conv2d``). Convolutions pad
*after* the input quantizer, so padded positions hold exact zeros and contribute nothing: this
is binkit's "exact zero padding" convention, which the engine reproduces.

Shapes: ``BinaryLinear`` ``(..., in_features) -> (..., out_features)``; ``BinaryConv1d``
``(batch, in_channels, time) -> (batch, out_channels, time')`` (``groups=in_channels`` makes it
depthwise); ``BinaryConv2d`` ``(batch, in_channels, H, W) -> (batch, out_channels, H', W')``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from binkit.quant.base import InputQuantizer, WeightQuantizer

__all__ = ["BinaryLayerMixin", "BinaryLinear", "BinaryConv1d", "BinaryConv2d", "BINARY_LAYER_FOR"]


class BinaryLayerMixin:
    """Holds the two quantizers and the ``method`` name; mechanics shared by all layers."""

    weight_quantizer: WeightQuantizer | None
    input_quantizer: InputQuantizer | None
    method: str

    def _init_quantizers(
        self,
        weight_quantizer: WeightQuantizer | None,
        input_quantizer: InputQuantizer | None,
        method: str,
    ) -> None:
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer
        self.method = method

    def quantized_weight(self) -> torch.Tensor:
        """The weight the forward pass uses, ``Q_w(W)``."""
        w = self.weight  # type: ignore[attr-defined]
        return self.weight_quantizer(w) if self.weight_quantizer is not None else w

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_quantizer(x) if self.input_quantizer is not None else x

    @property
    def weight_bits(self) -> int:
        return self.weight_quantizer.precision if self.weight_quantizer is not None else 32

    @property
    def input_bits(self) -> int:
        return self.input_quantizer.precision if self.input_quantizer is not None else 32

    @property
    def is_binary(self) -> bool:
        """True when both weights and inputs are 1-bit: the layer can run as XNOR-popcount."""
        return self.weight_bits == 1 and self.input_bits == 1

    @classmethod
    def from_float(
        cls,
        module: nn.Module,
        weight_quantizer: WeightQuantizer | None,
        input_quantizer: InputQuantizer | None,
        method: str = "",
    ) -> "BinaryLayerMixin":
        """A binary layer sharing ``module``'s parameters (same tensors, no copy)."""
        raise NotImplementedError  # pragma: no cover - each layer implements it


class BinaryLinear(BinaryLayerMixin, nn.Linear):
    """``y = Q_in(x) @ Q_w(W)^T + b``; shapes ``(..., in_features) -> (..., out_features)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        weight_quantizer: WeightQuantizer | None = None,
        input_quantizer: InputQuantizer | None = None,
        method: str = "",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_quantizers(weight_quantizer, input_quantizer, method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)

    @classmethod
    def from_float(cls, module, weight_quantizer, input_quantizer, method=""):
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = module.in_features, module.out_features
        new.weight = module.weight
        new.bias = module.bias
        new._init_quantizers(weight_quantizer, input_quantizer, method)
        new.train(module.training)
        return new


class _BinaryConvNd(BinaryLayerMixin):
    """Shared mechanics of the binary convolutions; ``_conv_cls`` is the torch base class."""

    _conv_cls: type[nn.modules.conv._ConvNd]

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", weight_quantizer=None,
                 input_quantizer=None, method="", device=None, dtype=None) -> None:
        if padding_mode != "zeros":
            raise ValueError(f"binary convolutions need padding_mode='zeros', got {padding_mode!r}")
        self._conv_cls.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                                groups, bias, padding_mode, device=device, dtype=dtype)
        self._init_quantizers(weight_quantizer, input_quantizer, method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Quantize first, then pad: padded taps are exact zeros (see module docstring).
        return self._conv_cls._conv_forward(self, self.quantized_input(x), self.quantized_weight(), self.bias)

    @classmethod
    def from_float(cls, module, weight_quantizer, input_quantizer, method=""):
        if module.padding_mode != "zeros":
            raise ValueError(
                f"{type(module).__name__} with padding_mode={module.padding_mode!r} cannot be "
                "binarized: only 'zeros' padding has an exact binary equivalent"
            )
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for attr in (
            "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
            "transposed", "output_padding", "groups", "padding_mode",
            "_reversed_padding_repeated_twice",
        ):
            setattr(new, attr, getattr(module, attr))
        new.weight = module.weight
        new.bias = module.bias
        new._init_quantizers(weight_quantizer, input_quantizer, method)
        new.train(module.training)
        return new


class BinaryConv1d(_BinaryConvNd, nn.Conv1d):
    """``y = conv1d(Q_in(x), Q_w(W)) + b``; ``(batch, C_in, T) -> (batch, C_out, T')``.

    With ``groups == in_channels`` it is a depthwise temporal convolution (the FSMN memory).
    """

    _conv_cls = nn.Conv1d


class BinaryConv2d(_BinaryConvNd, nn.Conv2d):
    """``y = conv2d(Q_in(x), Q_w(W)) + b``; ``(batch, C_in, H, W) -> (batch, C_out, H', W')``."""

    _conv_cls = nn.Conv2d


# float layer type -> binary layer type, used by binarize()
BINARY_LAYER_FOR: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: BinaryLinear,
    nn.Conv1d: BinaryConv1d,
    nn.Conv2d: BinaryConv2d,
}
