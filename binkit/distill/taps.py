"""Feature taps through forward hooks."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["record_taps"]


@contextlib.contextmanager
def record_taps(model: nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named submodules during forward passes in the block.

    Yields a dict ``name -> output`` refreshed by each forward call.

    Raises:
        KeyError: a name is not a submodule of ``model`` (the message lists close ones).
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"no submodule(s) {missing} in {type(model).__name__}; "
                       f"submodules include: {', '.join(list(modules)[1:20])}")
    taps: dict[str, torch.Tensor] = {}
    handles = []
    for n in names:
        def hook(_m, _i, out, key=n):
            taps[key] = out
        handles.append(modules[n].register_forward_hook(hook))
    try:
        yield taps
    finally:
        for h in handles:
            h.remove()
