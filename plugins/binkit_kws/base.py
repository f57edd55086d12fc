"""What binkit architectures share: the forward contract with taps and views."""

from __future__ import annotations

import torch
from torch import nn


class KWSModel(nn.Module):
    """Base: ``forward(x, view=None) = forward_head(forward_features(x, view))``.

    Subclasses fill ``self.taps`` (name -> tensor) during ``forward_features`` so distillers can
    read intermediate features without hooks. ``feature_shape`` is the per-example input shape.
    """

    feature_shape: tuple[int, ...]

    def __init__(self) -> None:
        super().__init__()
        self.taps: dict[str, torch.Tensor] = {}

    def __getstate__(self) -> dict:
        # Taps of the last forward are non-leaf tensors, which deepcopy refuses (binarize()
        # copies the model); they are per-call outputs, not state.
        state = super().__getstate__()
        state["taps"] = {}
        return state

    def forward_features(self, x: torch.Tensor, view: str | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def forward(self, x: torch.Tensor, view: str | None = None) -> torch.Tensor:
        if x.dim() != len(self.feature_shape) + 1 or tuple(x.shape[1:]) != tuple(self.feature_shape):
            raise ValueError(f"{type(self).__name__} expects input (batch, {', '.join(map(str, self.feature_shape))}), "
                             f"got {tuple(x.shape)}")
        if view is not None:
            raise ValueError(f"{type(self).__name__} has no views; got view={view!r}")
        self.taps = {}
        return self.forward_head(self.forward_features(x, view))


def make_activation(kind: str) -> nn.Module:
    """``"relu"`` -> ``nn.ReLU``, ``"prelu"`` -> ``nn.PReLU`` (one shared slope, init 0.25).

    The papers' backbones use ReLU; a binarized model wants PReLU: binkit's sign(0) = +1 turns
    every ReLU output into +1, so a binary layer fed by a ReLU sees a constant input.
    """
    if kind == "relu":
        return nn.ReLU()
    if kind == "prelu":
        return nn.PReLU()
    raise ValueError(f"activation must be 'relu' or 'prelu', got {kind!r}")


def check_feature_shape(name: str, feature_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(channels, n_mels, frames)`` with every size >= 1, else a ValueError naming ``name``."""
    if len(feature_shape) != 3 or any(int(s) < 1 for s in feature_shape):
        raise ValueError(f"{name} needs (channels, n_mels, frames) features, got {tuple(feature_shape)}")
    c, f, t = (int(s) for s in feature_shape)
    return c, f, t
