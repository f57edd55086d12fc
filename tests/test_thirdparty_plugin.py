"""User journey 1: a researcher's own package registers a binarizer through an entry point and
uses it by name from a TOML spec, next to the built-in ones.

The package is written to a temporary folder together with its ``.dist-info`` (METADATA and
``entry_points.txt``), exactly what ``pip install`` leaves in site-packages; a fresh Python
process with that folder on its path discovers it through ``importlib.metadata``, the same path
binkit's own plugins take.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = '''
"""A third-party binarizer: sign with a triangular surrogate gradient."""
import torch
from pydantic import BaseModel, ConfigDict, Field

import binkit
from binkit.quant import InputQuantizer, WeightQuantizer
from binkit.quant.functional import per_channel_mean_abs, sign


class TriParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    width: float = Field(1.0, gt=0)


class _Tri(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, width):
        ctx.save_for_backward(x)
        ctx.width = width
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.clamp(1 - x.abs() / ctx.width, min=0) / ctx.width, None


class TriWeight(WeightQuantizer):
    def forward(self, w):
        return _Tri.apply(w, self.params.width) * per_channel_mean_abs(w).detach()


class TriInput(InputQuantizer):
    def forward(self, x):
        return _Tri.apply(x, self.params.width)


@binkit.hookimpl
def binkit_quantizers():
    return [binkit.QuantizerEntry(
        name="tri_sign", weight=TriWeight, input=TriInput, params=TriParams, precision=1,
        packing="sign", description="sign with a triangular surrogate", reference="test")]
'''

SPEC = """
name = "journey1"
[data]
dataset = "tones"
params = { num_classes = 3, train_per_class = 8, val_per_class = 4, test_per_class = 4 }
[model]
architecture = "mlp"
params = { hidden = 32, depth = 2 }
[binarization]
method = "tri_sign"
params = { width = 0.5 }
[training]
epochs = 1
batch_size = 8
"""

SCRIPT = """
import json, sys
import binkit
from binkit import registry
from binkit.train import fit

spec = binkit.load_spec(sys.argv[1])
entry = registry.get("quantizer", "tri_sign")
result = fit(spec, None, progress=False)
layers = [n for n, m in result.model.named_modules() if getattr(m, "method", "") == "tri_sign"]
print(json.dumps({"provider": entry.provider, "params": spec.binarization.params, "layers": layers,
                  "acc": result.test_acc["full"], "quantizers": registry.names("quantizer")}))
"""


@pytest.fixture
def installed_plugin(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "tri_binarizer.py").write_text(PLUGIN)
    dist = site / "tri_binarizer-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tri-binarizer\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[binkit]\ntri = tri_binarizer\n")
    (dist / "RECORD").write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_entry_point_binarizer_used_by_name_from_toml(tmp_path, installed_plugin):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(spec)], env=installed_plugin,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["provider"] == "tri-binarizer:tri"
    assert out["params"] == {"width": 0.5}
    assert out["layers"] == ["blocks.1.fc"]  # first (blocks.0.fc) and last (classifier) stay float
    assert {"tri_sign", "xnor", "bnn"} <= set(out["quantizers"])
    assert 0.0 <= out["acc"] <= 1.0


def test_cli_lists_the_third_party_binarizer_and_validates_its_params(tmp_path, installed_plugin):
    listing = subprocess.run([sys.executable, "-m", "binkit", "plugins", "--kind", "quantizer", "--json"],
                             env=installed_plugin, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    rows = {r["name"]: r for r in json.loads(listing.stdout)["quantizer"]}
    assert rows["tri_sign"]["provider"] == "tri-binarizer:tri"
    assert rows["tri_sign"]["precision"] == 1

    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace("width = 0.5", "width = -2"))
    check = subprocess.run([sys.executable, "-m", "binkit", "check", str(bad)], env=installed_plugin,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 2
    assert "binarization.params.width" in check.stderr
    assert "quantizer 'tri_sign' from tri-binarizer:tri" in check.stderr
    assert "Traceback" not in check.stderr
