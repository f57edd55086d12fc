"""The KWS backbones (DS-CNN, TC-ResNet, BC-ResNet: issue 6) exported binarized and full precision,
on the engine against the numpy reference backend: every kernel variant, 1,024 random clips (an
eighth rounded to integers: exact zeros and ties), >= 99.9 % of clips within 1e-4 relative with the
same argmax, and bitwise-identical logits across variants (needs torch to build the models)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
binkit_neon = pytest.importorskip("binkit_neon")

import binkit
from binkit import registry
from binkit.export import export_model
from binkit.runtime.reference import ReferenceBackend
from binkit_neon.engine import NeonBackend
from testnets import randomize_stats

SHAPE = (1, 13, 11)
CASES = {"dscnn": {"size": "S"}, "tcresnet": {"depth": 8}, "bcresnet": {"width": 1}}


def _model(arch: str, method: str | None, seed: int):
    entry = registry.get("architecture", arch)
    act = "relu" if method is None else "prelu"
    model = entry.factory(entry.params.model_validate({**CASES[arch], "activation": act}), 5, SHAPE)
    if method is not None:
        model = binkit.binarize(model, method)
    return randomize_stats(model, seed=seed)


@pytest.mark.parametrize("arch", sorted(CASES))
@pytest.mark.parametrize("method", ["bifsmn", None])
def test_backbone_on_every_kernel_matches_reference(tmp_path, arch, method):
    model = _model(arch, method, seed=5)
    path = tmp_path / "m.bkm"
    export_model(model, path, labels=list("abcde"), float16=False, feature_shape=SHAPE)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1024, *SHAPE)).astype(np.float32)
    x[:128] = np.round(x[:128])
    want = ReferenceBackend().load(path).run(x, "default")
    first = None
    for kernel in binkit_neon.available_kernels():
        prog = NeonBackend().load(path, kernel=kernel)
        got = prog.run(x, "default")
        if first is None:
            first = got
            rel = np.abs(got - want).max(1) / np.maximum(np.abs(want).max(1), 1e-30)
            assert (rel <= 1e-4).mean() >= 0.999, (kernel, np.sort(rel)[-3:])
            assert (got.argmax(1) == want.argmax(1)).mean() >= 0.999
            np.testing.assert_array_equal(prog.run(x[:1], "default"), got[:1])  # batch 1 = same bits
        else:
            np.testing.assert_array_equal(got, first, err_msg=kernel)
