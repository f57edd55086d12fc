"""From a resolved spec to a torch model (architecture factory + binarization policy)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from binkit.errors import SpecError
from binkit.nn.surgery import binarize
from binkit.specs import ResolvedExperiment, parse_spec, resolve

__all__ = ["build_model", "load_checkpoint"]


def build_model(resolved: ResolvedExperiment, num_classes: int, feature_shape: tuple[int, ...],
                *, binarized: bool = True) -> nn.Module:
    """Instantiate the architecture and apply the spec's binarization policy.

    ``model.feature_shape`` is set so that :func:`binkit.summary` knows the input.
    """
    model = resolved.architecture.factory(resolved.architecture_params, num_classes, tuple(feature_shape))
    model.feature_shape = tuple(feature_shape)
    policy = resolved.spec.binarization
    if binarized and policy.enabled:
        model = binarize(model, policy, inplace=True)
    return model


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a checkpoint written by :func:`binkit.train.fit`.

    The checkpoint holds the resolved spec (TOML text), labels, feature shape and state dict;
    it is read with ``torch.load(weights_only=True)``, so no code runs.

    Returns ``(model in eval mode, metadata dict)``.

    Raises:
        FileNotFoundError, ValueError: missing or malformed checkpoint (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable binkit checkpoint ({type(exc).__name__}: {exc})") from None
    required = {"spec_toml", "labels", "feature_shape", "state_dict"}
    if not isinstance(ckpt, dict) or not required <= set(ckpt):
        have = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a binkit checkpoint; expected keys {sorted(required)}, found {have}")
    try:
        spec = parse_spec(tomllib.loads(ckpt["spec_toml"]), source=f"{path} (embedded spec)")
        resolved = resolve(spec, source=f"{path} (embedded spec)")
    except (tomllib.TOMLDecodeError, SpecError) as exc:
        raise ValueError(f"{path}: embedded spec is invalid: {exc}") from None
    model = build_model(resolved, len(ckpt["labels"]), tuple(ckpt["feature_shape"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the model its spec describes: {exc}") from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["resolved"] = resolved
    return model, meta
