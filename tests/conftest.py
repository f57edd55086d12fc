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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run tiny models: one thread avoids oversubscribing the 2-core CI machine (a small
    forward measured 1.9 s with 2 busy threads vs 0.03 s with 1)."""
    try:
        import torch
    except ImportError:  # the torch-free parts of the suite
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
