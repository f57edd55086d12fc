"""Exceptions binkit raises on purpose. Every message names what was wrong and what is allowed."""

from __future__ import annotations

__all__ = [
    "BinkitError",
    "PluginError",
    "UnknownNameError",
    "DuplicateNameError",
    "PluginLoadError",
    "SpecError",
    "BinarizationError",
    "AudioError",
    "DatasetError",
]


class BinkitError(Exception):
    """Base class of binkit's own errors."""


class PluginError(BinkitError):
    """A plugin could not be loaded or an entry is malformed."""


class PluginLoadError(PluginError):
    """A registered plugin failed to import; the message names the entry point."""


class DuplicateNameError(PluginError):
    """Two plugins registered the same name for the same kind."""


class UnknownNameError(PluginError, KeyError):
    """A config named a plugin entry that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str], hint: str = "") -> None:
        self.kind, self.name, self.known, self.hint = kind, name, known, hint
        super().__init__(kind, name)

    def __str__(self) -> str:
        known = ", ".join(self.known) if self.known else "(none registered)"
        msg = f"unknown {self.kind} {self.name!r}; known {self.kind}s: {known}"
        return f"{msg}. {self.hint}" if self.hint else msg


class SpecError(BinkitError, ValueError):
    """An experiment spec is invalid. ``errors`` holds ``(field_path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "") -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"invalid spec{f' {self.source}' if self.source else ''}"
        lines = [f"  {path or '<root>'}: {msg}" for path, msg in self.errors]
        return head + ":\n" + "\n".join(lines)


class BinarizationError(BinkitError, ValueError):
    """A model cannot be binarized as asked (non-finite weights, bad policy)."""


class AudioError(BinkitError, ValueError):
    """An audio file is missing, empty, corrupt or unreadable; the message names the file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class DatasetError(BinkitError, ValueError):
    """A dataset tree or archive is not what the task needs; the message says what is missing."""
