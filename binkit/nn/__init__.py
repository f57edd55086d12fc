"""Binary layers, model surgery and model summary."""

from binkit.nn.layers import BinaryConv1d, BinaryConv2d, BinaryLayerMixin, BinaryLinear
from binkit.nn.summary import LayerSummary, ModelSummary, summary
from binkit.nn.surgery import BinarizationWarning, binarize, candidate_layers

__all__ = [
    "BinaryLayerMixin",
    "BinaryLinear",
    "BinaryConv1d",
    "BinaryConv2d",
    "binarize",
    "candidate_layers",
    "BinarizationWarning",
    "summary",
    "ModelSummary",
    "LayerSummary",
]
