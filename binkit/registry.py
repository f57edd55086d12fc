"""The plugin manager: loads ``binkit`` entry points, answers name -> entry lookups.

Lookups are lazy and per kind: asking for a backend calls only ``binkit_backends`` hooks, so the
torch-free runtime never imports training plugins' heavy modules (hook bodies import those).

Rules (stricter than timm's registry, see STYLE.md):

* a duplicate name within a kind is an error naming both providers;
* an unknown name lists the known ones, suggests close matches, and says which package provides
  it when the name is a well-known one that is not installed;
* a renamed entry keeps an alias that warns (:func:`register_alias`);
* listing takes shell-style wildcards (:func:`names`).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import re
import threading
import warnings
from importlib import metadata
from types import ModuleType, SimpleNamespace
from typing import Any, Iterable

import pluggy

from binkit import hookspecs
from binkit.entries import (
    ArchitectureEntry,
    BackendEntry,
    DatasetEntry,
    DistillerEntry,
    LoweringEntry,
    QuantizerEntry,
)
from binkit.errors import DuplicateNameError, PluginError, PluginLoadError, UnknownNameError

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "get",
    "entries",
    "names",
    "register_plugin",
    "unregister_plugin",
    "register_quantizer",
    "register_architecture",
    "register_distiller",
    "register_dataset",
    "register_backend",
    "register_alias",
    "plugin_manager",
    "reset",
]

ENTRY_POINT_GROUP = "binkit"

# kind -> (hook name, entry class)
KINDS: dict[str, tuple[str, type]] = {
    "quantizer": ("binkit_quantizers", QuantizerEntry),
    "architecture": ("binkit_architectures", ArchitectureEntry),
    "distiller": ("binkit_distillers", DistillerEntry),
    "dataset": ("binkit_datasets", DatasetEntry),
    "backend": ("binkit_backends", BackendEntry),
    "lowering": ("binkit_lowerings", LoweringEntry),
}

# Names that a known package provides, for "unknown name" errors when it is not installed.
# Kept to names whose providing package is decided; grows as plugins land.
WELL_KNOWN: dict[tuple[str, str], str] = {
    ("backend", "neon"): "binkit_neon (the compiled engine in backends/binkit_neon; build binkit "
    "from source with a C compiler: `pip install .`)",
    ("architecture", "bifsmn"): "bifsmn_plugin (ships with binkit)",
    ("distiller", "hed"): "bifsmn_plugin (ships with binkit)",
    ("architecture", "ds_cnn"): "binkit_kws (ships with binkit)",
    ("architecture", "tc_resnet"): "binkit_kws (ships with binkit)",
    ("architecture", "bc_resnet"): "binkit_kws (ships with binkit)",
}


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.entry_points_loaded = False
        self.providers: dict[int, str] = {}  # id(plugin) -> provider label
        self.cache: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}


_state = _State()


def reset() -> None:
    """Forget every registration (entry points are loaded again on next use). For tests."""
    global _state
    _state = _State()


def plugin_manager() -> pluggy.PluginManager:
    """The underlying pluggy manager, with entry points loaded."""
    _load_entry_points()
    return _state.pm


def _load_entry_points() -> None:
    st = _state
    with st.lock:
        if st.entry_points_loaded:
            return
        st.entry_points_loaded = True
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if st.pm.get_plugin(ep.name) is not None or st.pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # re-raised with the plugin's name, like pytest does
                dist = ep.dist.name if ep.dist else "?"
                raise PluginLoadError(
                    f"binkit plugin {ep.name!r} ({ep.value}, from distribution {dist!r}) "
                    f"failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            _register(plugin, name=ep.name, provider=f"{dist}:{ep.name}")
        st.pm.check_pending()


def _register(plugin: Any, name: str | None, provider: str) -> str:
    st = _state
    with st.lock:
        registered = st.pm.register(plugin, name=name)
        if registered is None:
            raise PluginError(f"plugin {name!r} is blocked or already registered")
        st.providers[id(plugin)] = provider
        st.pm.check_pending()
        st.cache.clear()
        return registered


def register_plugin(plugin: ModuleType | object | str, name: str | None = None) -> str:
    """Register a plugin (a module, an object with ``@hookimpl`` methods, or a module path).

    Returns the name under which it was registered. Entries it provides become visible on the
    next lookup; a name clash with an existing entry raises :class:`DuplicateNameError` then.
    """
    _load_entry_points()
    if isinstance(plugin, str):
        plugin = importlib.import_module(plugin)
    label = getattr(plugin, "__name__", None) or type(plugin).__name__
    return _register(plugin, name=name, provider=f"runtime:{label}")


def unregister_plugin(name_or_plugin: str | object) -> None:
    """Remove a plugin registered earlier (by name or object)."""
    with _state.lock:
        if isinstance(name_or_plugin, str):
            _state.pm.unregister(name=name_or_plugin)
        else:
            _state.pm.unregister(plugin=name_or_plugin)
        _state.cache.clear()


def _register_entry(kind: str, entry: Any, name: str | None) -> str:
    hook_name, entry_cls = KINDS[kind]
    if not isinstance(entry, entry_cls):
        raise TypeError(f"register_{kind} expects a {entry_cls.__name__}, got {type(entry).__name__}")
    caller = inspect.stack()[2].frame.f_globals.get("__name__", "?")
    holder = SimpleNamespace()
    setattr(holder, hook_name, hookspecs.hookimpl(lambda: [entry]))
    label = name or f"{kind}:{entry.name}"
    with _state.lock:
        _load_entry_points()
        _register(holder, name=label, provider=f"runtime:{caller}")
    return label


def register_quantizer(entry: QuantizerEntry, name: str | None = None) -> str:
    """Register one binarizer at run time; returns the plugin name (for unregister_plugin)."""
    return _register_entry("quantizer", entry, name)


def register_architecture(entry: ArchitectureEntry, name: str | None = None) -> str:
    """Register one architecture at run time."""
    return _register_entry("architecture", entry, name)


def register_distiller(entry: DistillerEntry, name: str | None = None) -> str:
    """Register one distiller at run time."""
    return _register_entry("distiller", entry, name)


def register_dataset(entry: DatasetEntry, name: str | None = None) -> str:
    """Register one dataset at run time."""
    return _register_entry("dataset", entry, name)


def register_backend(entry: BackendEntry, name: str | None = None) -> str:
    """Register one inference backend at run time."""
    return _register_entry("backend", entry, name)


def register_alias(kind: str, old: str, new: str) -> None:
    """Keep ``old`` working as a deprecated name for ``new`` (lookups warn)."""
    _check_kind(kind)
    _state.aliases[kind][old] = new


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(KINDS)}")


def entries(kind: str) -> dict[str, Any]:
    """All entries of one kind, ``name -> entry``, in registration order."""
    _check_kind(kind)
    _load_entry_points()
    st = _state
    with st.lock:
        if kind in st.cache:
            return st.cache[kind]
        hook_name, entry_cls = KINDS[kind]
        found: dict[str, Any] = {}
        hook = getattr(st.pm.hook, hook_name)
        # pluggy calls implementations last-registered first; walk them in registration order.
        for impl in hook.get_hookimpls():
            provider = st.providers.get(id(impl.plugin), impl.plugin_name)
            try:
                result = impl.function()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {impl.plugin_name!r} ({provider}) failed in {hook_name}(): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            for entry in result or ():
                if not isinstance(entry, entry_cls):
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} ({provider}) returned "
                        f"{type(entry).__name__} from {hook_name}(); expected {entry_cls.__name__}"
                    )
                _check_entry_name(kind, entry.name, provider)
                if entry.name in found:
                    raise DuplicateNameError(
                        f"{kind} {entry.name!r} is registered twice: by "
                        f"{found[entry.name].provider} and by {provider}"
                    )
                found[entry.name] = entry.with_provider(provider)
        st.cache[kind] = found
        return found


_NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")


def _check_entry_name(kind: str, name: str, provider: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PluginError(
            f"{kind} name {name!r} from {provider} is invalid: use lower-case letters, digits, "
            "'_', '-' or '.', starting with a letter"
        )


def names(kind: str, include: str | Iterable[str] = "*", exclude: Iterable[str] = ()) -> list[str]:
    """Registered names of one kind matching wildcard ``include`` and none of ``exclude``.

    Sorted naturally (``k2`` before ``k10``).
    """
    includes = [include] if isinstance(include, str) else list(include)
    excludes = list(exclude)
    out = [
        n
        for n in entries(kind)
        if any(fnmatch.fnmatchcase(n, p) for p in includes)
        and not any(fnmatch.fnmatchcase(n, p) for p in excludes)
    ]
    return sorted(out, key=_natural_key)


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def get(kind: str, name: str) -> Any:
    """The entry registered as ``name`` for ``kind``.

    Raises:
        UnknownNameError: listing the known names, close matches and, for well-known names,
            the package that provides them.
    """
    found = entries(kind)
    if name in found:
        return found[name]
    alias = _state.aliases[kind].get(name)
    if alias is not None and alias in found:
        warnings.warn(
            f"{kind} {name!r} was renamed to {alias!r}; update your config", FutureWarning, stacklevel=2
        )
        return found[alias]
    known = names(kind)
    hints = []
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        hints.append(f"did you mean {' or '.join(repr(c) for c in close)}?")
    package = WELL_KNOWN.get((kind, name))
    if package:
        hints.append(f"{name!r} is provided by {package}, which is not installed or not loaded")
    else:
        hints.append(
            f"a third-party package provides a {kind} by registering an entry point in the "
            f"{ENTRY_POINT_GROUP!r} group; `binkit plugins` lists what is loaded"
        )
    raise UnknownNameError(kind, name, known, " ".join(hints))
