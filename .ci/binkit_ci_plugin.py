"""pytest plugin of the CI stages (.ci/simde, .ci/aarch64): proves, inside the test process, which
build of ``binkit_neon`` the tests exercise. Loaded with ``-p binkit_ci_plugin`` (.ci on the path).

Checked before any test runs (the session stops with exit status 3 otherwise):
- ``BINKIT_CI_EXPECT_DIR``: ``binkit_neon`` and each of its compiled modules are imported from this
  directory (the stage's scratch build, not the working tree's own build);
- ``BINKIT_CI_EXPECT_MACHINE``: ``platform.machine()`` (e.g. ``aarch64`` under qemu);
- ``BINKIT_CI_EXPECT_KERNEL``: once the engine (``binkit_neon._engine``) is built, this kernel
  variant is available and is the one the engine selects (``binkit_neon.default_kernel()``;
  ``BINKIT_NEON_KERNEL`` forces it);
- ``BINKIT_CI_EXPECT_SIMDE``: ``1`` or ``0``, the engine's NEON kernels were (not) compiled
  through SIMDe (``_engine.NEON_SIMDE``);
- ``BINKIT_CI_NO_TORCH=1``: torch cannot be imported at all.
With ``BINKIT_CI_EMULATED=1`` (qemu runs everything 10-20x slower) hypothesis gets a profile
without deadlines or the too-slow health check, so timing cannot fail a test; tests that set their
own ``@settings(deadline=...)`` keep it.
Checked after the session: with ``BINKIT_CI_NO_TORCH=1``, nothing imported torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
from pathlib import Path

import pytest

_summary: list[str] = []


def _fail(msg: str) -> None:
    pytest.exit(f"binkit-ci: {msg}", returncode=3)


def _under(path: str | None, root: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(root)


def _compiled_modules(pkg) -> list[str]:
    """Names of the package's compiled modules present in its directory (any platform suffix)."""
    pkg_dir = Path(pkg.__file__).parent
    names = {p.name.split(".", 1)[0] for p in pkg_dir.iterdir() if p.suffix == ".so"}
    return sorted(names)


def _relax_hypothesis() -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    settings.register_profile("binkit-ci-emulated", deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("binkit-ci-emulated")
    _summary.append("emulated: hypothesis profile 'binkit-ci-emulated' (no deadline, no too_slow check)")


def pytest_configure(config):
    if os.environ.get("BINKIT_CI_EMULATED") == "1":
        _relax_hypothesis()
    expect_machine = os.environ.get("BINKIT_CI_EXPECT_MACHINE")
    if expect_machine and platform.machine() != expect_machine:
        _fail(f"running on {platform.machine()}, expected {expect_machine}")
    _summary.append(f"machine {platform.machine()}, Python {platform.python_version()} ({sys.executable})")

    if os.environ.get("BINKIT_CI_NO_TORCH") == "1" and importlib.util.find_spec("torch") is not None:
        _fail(f"torch is importable ({importlib.util.find_spec('torch').origin}); this stage must run without it")

    expect_dir = os.environ.get("BINKIT_CI_EXPECT_DIR")
    if not expect_dir:
        return
    root = Path(expect_dir).resolve()
    import binkit_neon

    if not _under(binkit_neon.__file__, root):
        _fail(f"binkit_neon imported from {binkit_neon.__file__}, expected the build in {root}")
    compiled = _compiled_modules(binkit_neon)
    if not compiled:
        _fail(f"no compiled module next to {binkit_neon.__file__}")
    for name in compiled:
        mod = importlib.import_module(f"binkit_neon.{name}")
        if not _under(mod.__file__, root):
            _fail(f"binkit_neon.{name} imported from {mod.__file__}, expected the build in {root}")
        _summary.append(f"binkit_neon.{name} from {mod.__file__}")

    expect_kernel = os.environ.get("BINKIT_CI_EXPECT_KERNEL")
    if not expect_kernel:
        return
    if "_engine" not in compiled:
        _summary.append(f"engine not built yet (no binkit_neon._engine): kernel '{expect_kernel}' not checked")
        return
    from binkit_neon import _engine

    available = list(binkit_neon.available_kernels())
    if expect_kernel not in available:
        _fail(f"kernel '{expect_kernel}' is not available in this build (available: {available})")
    selected = binkit_neon.default_kernel()  # honours $BINKIT_NEON_KERNEL
    if selected != expect_kernel:
        _fail(f"the engine selects kernel '{selected}', expected '{expect_kernel}' (available: {available})")
    simde = bool(_engine.NEON_SIMDE)
    expect_simde = os.environ.get("BINKIT_CI_EXPECT_SIMDE")
    if expect_simde is not None and simde != (expect_simde == "1"):
        _fail(f"the NEON kernels were built {'with' if simde else 'without'} SIMDe (_engine.NEON_SIMDE={simde}), "
              f"expected {'with' if expect_simde == '1' else 'without'}")
    _summary.append(f"kernels available {available}; selected '{selected}'; NEON through SIMDe: {simde}")


def pytest_sessionstart(session):
    # Printed even under -q (a report header is not).
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in _summary:
        if tr is not None:
            tr.write_line(f"binkit-ci: {line}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("BINKIT_CI_NO_TORCH") == "1" and "torch" in sys.modules:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.ensure_newline()
            tr.write_line("binkit-ci: FAILED: torch was imported during the session", red=True)
        session.exitstatus = 1
