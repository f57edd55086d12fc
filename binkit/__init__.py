"""binkit: train, export and run binarized neural networks from PyTorch.

The package is a small core plus plugins (see ``hookspecs``). Importing ``binkit`` is cheap and
torch-free; training-side names (``binarize``, ``summary``, layers) import torch on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from binkit.hookspecs import hookimpl
from binkit.entries import (
    ArchitectureEntry,
    BackendEntry,
    Capabilities,
    DatasetEntry,
    DistillerEntry,
    NoParams,
    QuantizerEntry,
)
from binkit.registry import (
    register_architecture,
    register_backend,
    register_dataset,
    register_distiller,
    register_plugin,
    register_quantizer,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hookimpl",
    "QuantizerEntry",
    "ArchitectureEntry",
    "DistillerEntry",
    "DatasetEntry",
    "BackendEntry",
    "Capabilities",
    "NoParams",
    "register_plugin",
    "register_quantizer",
    "register_architecture",
    "register_distiller",
    "register_dataset",
    "register_backend",
    "binarize",
    "summary",
    "load_spec",
]

# name -> "module:attribute", imported on first access (PEP 562) so `import binkit` and
# `import binkit.runtime` never import torch.
_LAZY = {
    "binarize": "binkit.nn.surgery:binarize",
    "summary": "binkit.nn.summary:summary",
    "load_spec": "binkit.specs:load_spec",
}

if TYPE_CHECKING:  # pragma: no cover
    from binkit.nn.summary import summary
    from binkit.nn.surgery import binarize
    from binkit.specs import load_spec


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'binkit' has no attribute {name!r}")
    import importlib

    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
