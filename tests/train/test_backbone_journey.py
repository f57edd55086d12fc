"""Swap the backbone (issue 6, item 5): one TOML spec trains, exports and runs on the runtime with
only its ``[model]`` table changed: BiFSMN (thinnable DFSMN), DS-CNN, TC-ResNet and BC-ResNet.

Tiny sizes through ``[model.params]``, one epoch on the toy ``tones`` task; the features (15 mels
x 15 frames) are odd so that DS-CNN's stem needs its extra 'SAME' padding row and column.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

import binkit.runtime
from binkit.export import export_run
from binkit.specs import parse_spec, resolve
from binkit.train import fit, load_checkpoint

SPEC = """
name = "swap-the-backbone"

[data]
dataset = "tones"
params = {{ num_classes = 4, train_per_class = 12, val_per_class = 3, test_per_class = 6 }}

[features]
kind = "bifsmn_logmel"
n_mels = 15
hop_length = 1100

[model]
{model}

[binarization]
method = "bifsmn"

[training]
optimizer = "adam"
lr = 0.003
epochs = 1
batch_size = 16
seed = 0
"""

MODELS = {
    "bifsmn": 'architecture = "bifsmn"\n'
              'params = { num_blocks = 2, memory_size = 16, hidden_size = 16, frontend_channels = 4, '
              'thin_levels = ["2", "1"], view_weights = { "2" = 1.0 } }',
    "dscnn": 'architecture = "dscnn"\nparams = { size = "S", activation = "prelu" }',
    "tcresnet": 'architecture = "tcresnet"\nparams = { depth = 8, width = 0.5, activation = "prelu" }',
    "bcresnet": 'architecture = "bcresnet"\nparams = { width = 1, activation = "prelu" }',
}


def spec_for(arch: str):
    return parse_spec(tomllib.loads(SPEC.format(model=MODELS[arch])), source=f"journey spec ({arch})")


@pytest.fixture(scope="module")
def tones():
    resolved = resolve(spec_for("dscnn"))  # the [data] and [features] tables are the same for every backbone
    return resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)


def test_specs_differ_only_in_the_model_table():
    dumps = {a: spec_for(a).model_dump() for a in MODELS}
    for d in dumps.values():
        d.pop("model")
    assert all(d == dumps["bifsmn"] for d in dumps.values())


@pytest.mark.parametrize("arch", list(MODELS))
def test_train_export_run(tmp_path, tones, arch):
    run = tmp_path / "run"
    fit(spec_for(arch), run, progress=False, data=tones)
    report = export_run(run, tmp_path / "model.bkm")
    assert not report.fallbacks
    assert all(c["argmax_agreement"] == 1.0 for c in report.conformance.values())

    model = binkit.runtime.load(tmp_path / "model.bkm", backend="auto")
    assert model.labels == tones.labels

    # features: the runtime's predictions are the trained torch model's
    torch_model, _ = load_checkpoint(run / "model.pt")
    x = tones.splits["test"].tensors[0][:8]
    with torch.no_grad():
        want = torch_model(x).argmax(1).numpy()
    scores, labels = model.predict(x.numpy())
    assert scores.shape == (8, len(tones.labels)) and np.allclose(scores.sum(1), 1, atol=1e-5)
    assert (scores.argmax(1) == want).mean() >= 7 / 8  # a sign flip on a 1-epoch model may move one
    assert labels == [tones.labels[i] for i in scores.argmax(1)]

    # waveforms: the artifact's front-end runs them
    from binkit_toydata.tones import MELODIES, synth_clip

    rng = np.random.default_rng(0)
    clips = np.stack([synth_clip(MELODIES[i], rng, 16000, 16000, snr_db=20) for i in range(3)])
    scores, labels = model.predict(clips)
    assert scores.shape == (3, len(tones.labels)) and np.isfinite(scores).all()
    assert set(labels) <= set(tones.labels)
