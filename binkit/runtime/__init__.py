"""The torch-free runtime: what a deployment device imports.

Nothing under ``binkit.runtime`` imports torch (a test guards it): a Raspberry Pi installs numpy,
the compiled engine and binkit's base dependencies only. Today it holds audio reading
(:mod:`binkit.runtime.audio`), the numpy twin of the training front-end
(:mod:`binkit.runtime.frontend`), the bit conventions (:mod:`binkit.runtime.bits`) and backend
discovery; the artifact loader and the streaming detector join it with the engine.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from binkit import registry

__all__ = ["Backend", "backend_names", "get_backend", "load"]


@runtime_checkable
class Backend(Protocol):
    """What a backend factory returns: an object that loads an artifact and runs it.

    A backend may also have ``features``: the optional artifact features it runs (a set of
    names, see :func:`binkit.runtime.artifact.required_features`; ``"multiplane"`` for bit-serial
    multi-plane binary ops). :func:`load` refuses an artifact needing a feature the backend lacks
    (with ``backend="auto"`` it falls back to the reference backend instead).
    """

    name: str

    def load(self, path: str) -> Any:
        """Load and validate an artifact; return a runnable model."""


def backend_names() -> list[str]:
    """Names of the registered backends (plugins' ``binkit_backends`` hooks)."""
    return registry.names("backend")


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``.

    Raises:
        UnknownNameError: listing the registered backends and where ``name`` comes from.
    """
    entry = registry.get("backend", name)
    return entry.factory()


def load(path: str, backend: str = "auto") -> Any:
    """Load and validate an artifact and prepare it on ``backend`` (``"neon"``, ``"reference"``,
    or ``"auto"``: the compiled engine when installed, else the numpy reference): a
    :class:`binkit.runtime.model.RuntimeModel` with ``predict``, ``labels`` and ``frontend``."""
    from binkit.runtime.model import load as _load

    return _load(path, backend=backend)
