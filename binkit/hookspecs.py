"""The binkit plugin contract.

Every hook binkit calls is declared here, once, as a typed function whose body is only its
docstring: pluggy reads the signature, this file is the documentation. Plugins implement hooks
with ``@binkit.hookimpl`` on plain module-level functions and register the module through the
``binkit`` entry-point group (or at run time with ``binkit.registry.register_plugin``).

Calling rules, common to every hook below:

* Each hook takes no arguments and returns a **list of entries** (the dataclasses in
  :mod:`binkit.entries`). The registry calls the hook of every plugin and concatenates the lists.
* Names are unique per kind across all plugins: a second entry with a taken name is an error that
  names both providers.
* A hook is called lazily, the first time its kind is looked up. Plugin modules must therefore be
  cheap to import: import torch (or anything heavy) inside the hook body, not at module level, so
  that the torch-free runtime can list backends without importing training code.

Hooks may grow keyword arguments in later versions; pluggy lets an implementation accept fewer
arguments than its spec, so existing plugins keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    from binkit.entries import (
        ArchitectureEntry,
        BackendEntry,
        DatasetEntry,
        DistillerEntry,
        LoweringEntry,
        QuantizerEntry,
    )

PROJECT_NAME = "binkit"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------------------------
# Training-side components (called by specs, binarize(), the trainer and the CLI)
# ---------------------------------------------------------------------------------------------


@hookspec
def binkit_quantizers() -> list[QuantizerEntry]:
    """Return the binarizers (quantizer methods) this plugin provides.

    Called the first time any quantizer name is resolved. Each entry pairs a weight quantizer
    and an input quantizer under one config name (``binarization.method`` in a spec), with a
    pydantic params model, the precision in bits, how the engine can pack it (``"sign"``,
    ``"unsigned"``, ``"bitplanes"``, or ``None`` with ``not_deployable_reason``), a one-line
    description and a literature reference. Results of all plugins are concatenated.
    """


@hookspec
def binkit_architectures() -> list[ArchitectureEntry]:
    """Return the model architectures this plugin provides.

    Called the first time any architecture name is resolved. Each entry has a factory
    ``factory(params, num_classes, feature_shape) -> torch.nn.Module``, a params model and a
    ``capabilities(params)`` function that says which feature taps the model exposes (for
    distillation) and which views (named sub-networks, with default loss weights) it has.
    Results of all plugins are concatenated.
    """


@hookspec
def binkit_distillers() -> list[DistillerEntry]:
    """Return the distillers this plugin provides.

    Called the first time any distiller name is resolved. Each entry has a factory
    ``factory(params) -> Distiller`` whose result computes a loss from teacher and student
    logits and taps, plus whether it needs taps. Results of all plugins are concatenated.
    """


@hookspec
def binkit_datasets() -> list[DatasetEntry]:
    """Return the datasets this plugin provides (optional hook).

    Called the first time any dataset name is resolved. Each entry has a factory
    ``factory(params, features) -> dataset`` and a params model. Results are concatenated.
    """


@hookspec
def binkit_lowerings() -> list[LoweringEntry]:
    """Return export lowerings for model classes this plugin defines.

    Called the first time :mod:`binkit.export` looks up how to export a model whose class has no
    ``lower_for_export`` method. Each entry names the model class and a function
    ``fn(model, builder, views)`` that emits the artifact ops of every view. Results of all
    plugins are concatenated; the most specific class wins.
    """


# ---------------------------------------------------------------------------------------------
# Deployment (called by binkit.runtime; must stay importable without torch)
# ---------------------------------------------------------------------------------------------


@hookspec
def binkit_backends() -> list[BackendEntry]:
    """Return the inference backends this plugin provides.

    Called by ``binkit.runtime`` the first time a backend name is resolved. The hook and the
    factory it returns must not import torch. Each entry has ``factory() -> Backend``, an object
    that loads an artifact and runs it. Results of all plugins are concatenated.
    """
