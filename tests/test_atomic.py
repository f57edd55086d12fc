"""binkit/atomic.py: all-or-nothing writes with ordinary file permissions."""

from __future__ import annotations

import os
import stat

import pytest

from binkit.atomic import atomic_path, atomic_write_text


def test_written_file_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "hello")
    finally:
        os.umask(old)
    assert p.read_text() == "hello"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]
