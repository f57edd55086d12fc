"""A hand-written artifact, op by op (torch-free: the engine tests also run on the aarch64 CI
stage without torch). Subclasses add the tensors and op shapes their tests need."""

from __future__ import annotations

import numpy as np

from binkit.runtime.artifact import save_artifact

LABELS = ["a", "b", "c", "d", "e"]


class ArtifactBuilder:
    """Collects the tensors and ops of a hand-written artifact."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, np.ndarray] = {}
        self.ops: list[dict] = []

    def op(self, kind: str, inputs: list[str], attrs: dict | None = None, **tensors: np.ndarray) -> str:
        """Append op ``kind`` named ``<kind><index>``; its tensors are ``<name>.<role>``."""
        name = f"{kind}{len(self.ops)}"
        refs = {}
        for role, arr in tensors.items():
            self.tensors[f"{name}.{role}"] = arr
            refs[role] = f"{name}.{role}"
        self.ops.append({"op": kind, "name": name, "inputs": inputs, "outputs": [name], "attrs": attrs or {},
                         "tensors": refs})
        return name

    def f32(self, *shape: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def write(self, path, input_shape, views: dict[str, tuple[list[int], str]]) -> str:
        """Save with ``views``: name -> (op indices, output value); the first is the default."""
        meta = {"producer": "test", "input": {"shape": list(input_shape), "dtype": "float32"},
                "plan": {"ops": self.ops}, "views": {v: {"ops": ops, "output": out} for v, (ops, out) in views.items()},
                "default_view": next(iter(views)), "labels": LABELS, "frontend": None, "fallbacks": []}
        save_artifact(path, self.tensors, meta)
        return str(path)
