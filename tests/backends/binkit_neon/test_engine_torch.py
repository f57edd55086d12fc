"""The compiled engine against torch eval-mode logits on an exported BiFSMN DFSMN (needs torch).

The model is the full-width thinnable DFSMN (``DFSMN(DFSMNParams(), 12, (1, 32, 32))``) binarized
with the "bifsmn" policy, with randomized BatchNorm statistics and PReLU slopes so that every
folded transform is non-trivial. Random features (1024 clips, every view): at least 99.9 % of
the clips must agree on the argmax and lie within 1e-4 relative (max |engine - torch| /
max |torch| per clip). The few clips allowed outside are those where a float32 summation-order
difference flips the sign of a pre-binarization value that is ~1e-7 from zero (torch, the
numpy reference and the engine all sum in different orders); in practice the measured rate is
far below the bound.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn

import binkit
import binkit.runtime
from binkit.export import export_model

binkit_neon = pytest.importorskip("binkit_neon")
from binkit_neon.engine import Program

RTOL = 1e-4
CLIPS = 1024


def _randomize_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 3 - 1.5)
                m.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.num_parameters, generator=g) - 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def dfsmn(tmp_path_factory):
    from bifsmn_plugin.dfsmn import DFSMN, DFSMNParams

    torch.manual_seed(0)
    model = _randomize_stats(binkit.binarize(DFSMN(DFSMNParams(), 12, (1, 32, 32)), "bifsmn"), 0)
    path = tmp_path_factory.mktemp("dfsmn") / "dfsmn.bkm"
    export_model(model, path, labels=[f"c{i}" for i in range(12)], feature_spec={"kind": "bifsmn_logmel"},
                 float16=False)
    return model, path


def _torch_logits(model, x: np.ndarray, view: str) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x), view=view).numpy()


@pytest.mark.parametrize("view", ["8", "4", "2", "1"])
def test_dfsmn_engine_matches_torch(dfsmn, view):
    model, path = dfsmn
    rt = binkit.runtime.load(path, backend="neon")
    x = (np.random.default_rng(int(view)).standard_normal((CLIPS, 1, 32, 32)) * 20 - 50).astype(np.float32)
    want = _torch_logits(model, x, view)
    got = rt.logits(x, view=view)
    rel = np.abs(got - want).max(-1) / np.abs(want).max(-1)
    agree = (got.argmax(-1) == want.argmax(-1)).mean()
    assert agree >= 0.999, (view, agree)
    assert (rel <= RTOL).mean() >= 0.999, (view, np.sort(rel)[-5:])
    # batch 1 gives the same bits as the batch
    np.testing.assert_array_equal(rt.logits(x[:1], view=view), got[:1])


def test_dfsmn_every_kernel_bitwise_identical(dfsmn):
    _, path = dfsmn
    art = binkit.runtime.artifact.load_artifact(path)
    x = (np.random.default_rng(7).standard_normal((64, 1, 32, 32)) * 20 - 50).astype(np.float32)
    for view in art.views:
        outs = [Program(art, kernel=k).run(x, view) for k in binkit_neon.available_kernels()]
        for k, out in zip(binkit_neon.available_kernels(), outs):
            np.testing.assert_array_equal(out, outs[0], err_msg=f"{k} view {view}")


def test_dfsmn_profile_covers_the_plan(dfsmn):
    _, path = dfsmn
    art = binkit.runtime.artifact.load_artifact(path)
    prog = Program(art)
    x = np.zeros((1, 1, 32, 32), np.float32)
    rows = prog.profile(x, "8", repeats=5)
    assert len(rows) == len(art.views["8"]["ops"])
    macs = sum(r["binary_macs"] for r in rows)
    # conv2 (16 -> 32, 5x5 s2 p2 on 16x16: 6x6 interior-ish valid-tap sums) + fc1 256x128x8 +
    # 8 blocks x (pw1 128x256x8 + pw2 256x128x8 + memory taps 128 x (3+4+5*4+4+3))
    conv2 = 16 * 32 * sum((min(oy * 2 + 3, 16) - max(oy * 2 - 2, 0)) for oy in range(8)) ** 2
    assert macs == conv2 + 256 * 128 * 8 + 8 * (2 * 128 * 256 * 8 + 128 * 34)
    assert sum(r["seconds"] for r in rows) > 0
