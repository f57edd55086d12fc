"""Model surgery: replace float layers by binary layers according to a policy.

``binarize(model, policy)`` walks ``model``'s ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` layers
(those whose type is in ``policy.layer_types``), keeps the first and last of them in full
precision unless told otherwise, applies ``include``/``exclude`` name patterns and per-pattern
overrides, and swaps each selected layer for its binary twin sharing the same parameters
(:mod:`binkit.nn.layers`). Methods that come with their own activation (ReActNet's RPReLU)
also replace the model's PReLUs when ``policy.replace_activations`` is on;
``policy.activation_from`` takes that activation from another registered method (RPReLU with
any binarizer).

"First" and "last" follow execution order when ``example_input`` is given, registration order
otherwise (the two agree for sequentially written models).
"""

from __future__ import annotations

import copy
import fnmatch
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from binkit import registry
from binkit.errors import BinarizationError
from binkit.nn._modes import eval_mode
from binkit.nn.layers import BINARY_LAYER_FOR, BinaryLayerMixin

__all__ = ["binarize", "BinarizationWarning", "candidate_layers"]


class BinarizationWarning(UserWarning):
    """A policy pattern matched no layer, or a choice deserves attention."""


_TYPE_BY_NAME = {"Linear": nn.Linear, "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d}


@dataclass(frozen=True)
class _Choice:
    method: str
    params: Any  # validated params model
    weights: bool
    inputs: bool


def candidate_layers(
    model: nn.Module, layer_types: list[str] | tuple[str, ...] = ("Linear", "Conv1d", "Conv2d"),
    example_input: torch.Tensor | None = None,
) -> list[str]:
    """Qualified names of layers of ``layer_types`` (exact float types), in execution order if
    ``example_input`` is given, else registration order."""
    types = tuple(_TYPE_BY_NAME[t] for t in layer_types)
    names = [
        n for n, m in model.named_modules()
        if type(m) in types and not isinstance(m, BinaryLayerMixin)
    ]
    if example_input is None:
        return names
    order: list[str] = []
    by_module = {id(m): n for n, m in model.named_modules() if n in names}
    hooks = [
        m.register_forward_pre_hook(lambda mod, _inp: order.append(by_module[id(mod)]))
        for n, m in model.named_modules() if n in names
    ]
    try:
        with torch.no_grad(), eval_mode(model):
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    seen: list[str] = []
    for n in order:
        if n not in seen:
            seen.append(n)
    return seen + [n for n in names if n not in seen]  # unused layers keep registration order


def _resolve_params(method: str, params: Any, where: str) -> tuple[Any, Any]:
    entry = registry.get("quantizer", method)
    if isinstance(params, entry.params):
        return entry, params
    try:
        return entry, entry.params.model_validate(dict(params or {}))
    except Exception as exc:
        raise BinarizationError(f"{where}: invalid params for quantizer {method!r}: {exc}") from exc


def binarize(
    model: nn.Module,
    policy: Any = "xnor",
    *,
    inplace: bool = False,
    example_input: torch.Tensor | None = None,
) -> nn.Module:
    """Return ``model`` with layers replaced by binary layers according to ``policy``.

    Args:
        model: a float (or partly binarized) torch model.
        policy: a :class:`binkit.specs.BinarizationSpec`, a dict of its fields, or a quantizer
            name (all defaults). See that class for the fields.
        inplace: modify ``model`` itself instead of a deep copy.
        example_input: a batch to trace execution order for "first"/"last" layers.

    Raises:
        BinarizationError: a selected layer has non-finite weights, or the policy is invalid.
        UnknownNameError: the policy names an unregistered quantizer.

    Warns:
        BinarizationWarning: an include/exclude/override pattern matched no layer.
    """
    from binkit.specs import BinarizationSpec, activation_entry

    if isinstance(policy, str):
        policy = BinarizationSpec(method=policy)
    elif isinstance(policy, dict):
        policy = BinarizationSpec.model_validate(policy)
    elif not isinstance(policy, BinarizationSpec):
        raise TypeError(f"policy must be a BinarizationSpec, dict or method name, got {type(policy).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    if not policy.enabled:
        return model

    names = candidate_layers(model, policy.layer_types, example_input)
    if not names:
        warnings.warn(f"binarize: no layer of types {list(policy.layer_types)} in the model",
                      BinarizationWarning, stacklevel=2)
        return model

    protected: set[str] = set()
    if policy.keep_first:
        protected.add(names[0])
    if policy.keep_last:
        protected.add(names[-1])

    def matches(pattern: str) -> list[str]:
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    for field, patterns in (("include", policy.include), ("exclude", policy.exclude)):
        for p in patterns:
            if not matches(p):
                warnings.warn(f"binarize: {field} pattern {p!r} matches no layer; layers are: "
                              f"{', '.join(names)}", BinarizationWarning, stacklevel=2)

    default_entry, default_params = _resolve_params(policy.method, policy.params, "binarization")
    choices: dict[str, _Choice] = {}
    for n in names:
        if n in protected:
            continue
        if not any(fnmatch.fnmatchcase(n, p) for p in policy.include):
            continue
        if any(fnmatch.fnmatchcase(n, p) for p in policy.exclude):
            continue
        choices[n] = _Choice(policy.method, default_params, policy.weights, policy.inputs)
    for i, ov in enumerate(policy.overrides):
        hit = matches(ov.pattern)
        if not hit:
            warnings.warn(f"binarize: overrides[{i}] pattern {ov.pattern!r} matches no layer",
                          BinarizationWarning, stacklevel=2)
        method = ov.method or policy.method
        params = ov.params if (ov.params or ov.method) else policy.params
        _, params_model = _resolve_params(method, params, f"binarization.overrides[{i}]")
        for n in hit:
            if not ov.enabled:
                choices.pop(n, None)
            else:
                choices[n] = _Choice(method, params_model,
                                     policy.weights if ov.weights is None else ov.weights,
                                     policy.inputs if ov.inputs is None else ov.inputs)

    # Build every replacement first and swap only when all succeeded: an error leaves an
    # in-place model untouched, never half-binarized.
    modules = dict(model.named_modules())
    replacements: dict[str, nn.Module] = {}
    for n, choice in choices.items():
        layer = modules[n]
        where = f"layer {n!r} ({type(layer).__name__})"
        w = layer.weight.detach()
        if not torch.isfinite(w).all():
            bad = int((~torch.isfinite(w)).sum())
            raise BinarizationError(f"{where} has {bad} non-finite weight value(s); "
                                    "fix the checkpoint before binarizing")
        entry = registry.get("quantizer", choice.method)
        try:
            wq = iq = None
            if choice.weights and entry.weight is not None:
                wq = entry.weight(choice.params, tuple(layer.weight.shape))
            if choice.inputs and entry.input is not None:
                if isinstance(layer, nn.Linear):
                    iq = entry.input(choice.params, layer.in_features, -1)
                else:
                    iq = entry.input(choice.params, layer.in_channels, 1)
            binary = BINARY_LAYER_FOR[type(layer)].from_float(layer, wq, iq, method=choice.method)
        except (ValueError, TypeError) as exc:
            raise BinarizationError(f"{where} cannot be binarized with {choice.method!r}: {exc}") from exc
        replacements[n] = binary.to(w.device)
    for n, binary in replacements.items():
        _set_submodule(model, n, binary)

    try:
        act_entry = activation_entry(policy)
    except ValueError as exc:
        raise BinarizationError(f"binarization.activation_from {exc}") from exc
    if policy.replace_activations and act_entry.activation is not None:
        for n, m in list(model.named_modules()):
            if type(m) is nn.PReLU:
                _set_submodule(model, n, act_entry.activation(m).to(m.weight.device))
    return model


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
