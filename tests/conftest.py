"""Shared fixtures. The registry is global state: tests that register plugins restore it."""

from __future__ import annotations

import pytest

from binkit import registry


@pytest.fixture
def clean_registry():
    """A registry that forgets runtime registrations made by the test (entry points reload)."""
    registry.reset()
    yield registry
    registry.reset()
