"""The runtime import path never imports torch (DESIGN.md: a Pi installs no torch)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True, timeout=120)


def test_import_binkit_runtime_does_not_import_torch():
    proc = run_isolated("""
        import sys
        import binkit, binkit.runtime, binkit.runtime.bits, binkit.runtime.frontend, binkit.runtime.audio
        import binkit.runtime.artifact, binkit.runtime.reference, binkit.runtime.model, binkit.runtime.plugin
        import binkit.runtime.stream
        # listing backends loads every registered plugin's hook module
        names = binkit.runtime.backend_names()
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
        print("ok", names)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")


def test_plugin_hook_modules_are_cheap_to_import():
    """Entry-point modules must defer heavy imports to hook bodies (hookspecs.py contract)."""
    proc = run_isolated("""
        import sys
        from importlib import metadata
        for ep in metadata.entry_points(group="binkit"):
            ep.load()
        assert "torch" not in sys.modules, "an entry-point module imports torch at import time"
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr


def test_training_names_load_lazily():
    pytest.importorskip("torch")  # the runtime-only (aarch64 CI) install has no torch to load
    proc = run_isolated("""
        import sys, binkit
        assert "torch" not in sys.modules
        binkit.binarize  # first touch imports torch
        assert "torch" in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr


def test_unknown_backend_error_is_torch_free():
    proc = run_isolated("""
        import sys, binkit.runtime
        from binkit import registry
        from binkit.errors import UnknownNameError
        registry.names("backend")  # load the entry points, then drop the engine
        registry.unregister_plugin("neon")  # as on a machine where the engine was not built
        try:
            binkit.runtime.get_backend("neon")
        except UnknownNameError as exc:
            assert "binkit_neon" in str(exc)
        else:
            raise AssertionError("no UnknownNameError")
        assert "torch" not in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr


def test_neon_backend_is_torch_free():
    """The compiled engine and its plugin import no torch (the engine's own tests also load and
    run an artifact through binkit.runtime.load(..., backend="neon") in a fresh interpreter)."""
    proc = run_isolated("""
        import sys, binkit.runtime
        backend = binkit.runtime.get_backend("neon")
        import binkit_neon, binkit_neon.engine
        assert type(backend).__name__ == "NeonBackend", backend
        assert binkit_neon.default_kernel() in binkit_neon.available_kernels()
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
