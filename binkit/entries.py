"""Typed entries that plugin hooks return (see :mod:`binkit.hookspecs`).

This module is torch-free: entries hold references to classes and factories, never instances,
so listing what is registered costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "NoParams",
    "QuantizerEntry",
    "Capabilities",
    "ArchitectureEntry",
    "DistillerEntry",
    "DatasetEntry",
    "BackendEntry",
    "LoweringEntry",
    "Packing",
]


class NoParams(BaseModel):
    """Params model for a plugin entry that takes no parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Packing = Literal["sign", "unsigned", "bitplanes"]
"""How the engine can pack a quantized tensor.

``"sign"``: values are ``±1`` times per-output-channel scales, one bit each (bit 1 means -1).
``"unsigned"``: values are ``{0, 1}`` (DoReFa 1-bit activations): one bit each, affine-corrected.
``"bitplanes"``: a k-bit value is a sum of scaled bit-planes (bit-serial execution).
"""


@dataclass(frozen=True)
class _Entry:
    name: str
    description: str = ""
    reference: str = ""
    # Filled in by the registry: the distribution (or module) that registered the entry.
    provider: str = field(default="", compare=False)

    def with_provider(self, provider: str) -> "_Entry":
        from dataclasses import replace

        return replace(self, provider=provider)


@dataclass(frozen=True)
class QuantizerEntry(_Entry):
    """A binarizer method: a weight quantizer and an input quantizer under one name.

    Attributes:
        weight: class of the weight quantizer, constructed as ``weight(params, weight_shape)``;
            ``None`` if the method only quantizes inputs (weights stay full precision).
        input: class of the input quantizer, constructed as
            ``input(params, num_channels, channel_dim)``; ``None`` if inputs stay full precision.
        params: pydantic model validating the method's params.
        precision: bits per value with default params.
        precision_param: name of the params field that sets the bit width, if any (DoReFa's ``k``).
        packing: how the engine packs it; ``None`` means the method cannot be exported.
        not_deployable_reason: why export must refuse it (required when ``packing`` is None).
        activation: optional factory ``activation(prelu_module) -> nn.Module`` replacing each
            PReLU of a binarized model (ReActNet's RPReLU).
    """

    weight: type | None = None
    input: type | None = None
    params: type[BaseModel] = NoParams
    precision: int = 1
    precision_param: str | None = None
    packing: Packing | None = "sign"
    not_deployable_reason: str = ""
    activation: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.packing is None and not self.not_deployable_reason:
            raise ValueError(
                f"quantizer {self.name!r}: packing=None needs a not_deployable_reason"
            )

    @property
    def deployable(self) -> bool:
        return self.packing is not None

    def precision_for(self, params: BaseModel) -> int:
        """Bit width with these params."""
        if self.precision_param:
            return int(getattr(params, self.precision_param))
        return self.precision


@dataclass(frozen=True)
class Capabilities:
    """What an architecture instance offers to distillers and the trainer.

    Attributes:
        taps: names of intermediate features the model records during ``forward`` (its
            ``taps`` dict), in execution order.
        views: named sub-networks (e.g. thinness ``"8"``, ``"4"``, ``"2"``) with their default
            loss weights; the first one is the full network. Empty means one view.
    """

    taps: tuple[str, ...] = ()
    views: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ArchitectureEntry(_Entry):
    """A model family: ``factory(params, num_classes, feature_shape) -> nn.Module``.

    ``feature_shape`` is the per-example input shape without the batch dimension, e.g.
    ``(1, n_mels, frames)``. ``capabilities(params)`` describes taps and views.
    ``load_pretrained(model, state_dict) -> list[str]`` (optional) initialises a model from
    another one's weights (e.g. a student from its teacher) and returns the keys it left at their
    initial values; without it the trainer loads every tensor whose name and shape match.
    """

    factory: Callable[..., Any] | None = None
    params: type[BaseModel] = NoParams
    capabilities: Callable[[BaseModel], Capabilities] = lambda params: Capabilities()
    load_pretrained: Callable[[Any, Any], list[str]] | None = None


@dataclass(frozen=True)
class DistillerEntry(_Entry):
    """A distiller: ``factory(params) -> Distiller``; ``needs_taps`` says whether it reads taps."""

    factory: Callable[..., Any] | None = None
    params: type[BaseModel] = NoParams
    needs_taps: bool = False


@dataclass(frozen=True)
class DatasetEntry(_Entry):
    """A dataset: ``factory(params, features) -> dataset`` with ``splits`` and ``labels``."""

    factory: Callable[..., Any] | None = None
    params: type[BaseModel] = NoParams


@dataclass(frozen=True)
class BackendEntry(_Entry):
    """An inference backend: ``factory() -> Backend``; must be importable without torch."""

    factory: Callable[..., Any] | None = None


@dataclass(frozen=True)
class LoweringEntry(_Entry):
    """How export turns a model class into artifact ops.

    ``model_class``: the ``nn.Module`` class (subclasses match too); ``fn(model, builder, views)``
    emits each view's ops through the export plan builder (see :mod:`binkit.export`).
    """

    model_class: type | None = None
    fn: Callable[..., Any] | None = None
