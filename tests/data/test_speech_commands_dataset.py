"""The `speech_commands` dataset plugin end to end: tree -> task -> cache -> batches -> training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from binkit.data.speech_commands import which_set
from binkit.data.speech_commands_dataset import SpeechCommandsParams, make_speech_commands
from binkit.errors import DatasetError
from binkit.specs import FeaturesSpec, parse_spec
from binkit.train import fit

WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "cat"]


def speakers_by_split(n_each: int = 2) -> dict[str, list[str]]:
    """Deterministic 8-hex speaker ids, ``n_each`` per hash split."""
    found: dict[str, list[str]] = {"training": [], "validation": [], "testing": []}
    i = 0
    while min(len(v) for v in found.values()) < n_each:
        sid = hashlib.sha1(str(i).encode()).hexdigest()[:8]
        s = which_set(f"{sid}_nohash_0.wav")
        if len(found[s]) < n_each:
            found[s].append(sid)
        i += 1
    return found


def make_tree(root: Path, n_each: int = 2) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    speakers = speakers_by_split(n_each)
    for w_i, word in enumerate(WORDS):
        (root / word).mkdir(parents=True)
        for sids in speakers.values():
            for sid in sids:
                t = np.arange(8000) / 16000
                x = 0.3 * np.sin(2 * np.pi * (200 + 40 * w_i) * t) + 0.01 * rng.standard_normal(8000)
                sf.write(root / word / f"{sid}_nohash_0.wav", x.astype(np.float32), 16000, subtype="PCM_16")
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white_noise.wav",
             (0.1 * rng.standard_normal(40000)).astype(np.float32), 16000, subtype="PCM_16")
    return speakers


def mlp_spec(tree: Path, cache: Path) -> str:
    """A 1-epoch MLP spec (TOML) on a crafted tree."""
    return f"""
[data]
dataset = "speech_commands"
params = {{ root = "{tree}", cache_dir = "{cache}", jobs = 1 }}
[model]
architecture = "mlp"
params = {{ hidden = 16, depth = 2 }}
[training]
epochs = 1
batch_size = 8
"""


def test_batches_from_a_crafted_tree(tmp_path):
    make_tree(tmp_path / "tree")
    params = SpeechCommandsParams(root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"), jobs=1)
    data = make_speech_commands(params, FeaturesSpec(), progress=False)
    assert data.labels[:2] == ["_silence_", "_unknown_"] and len(data.labels) == 12
    # tf protocol: per split, 10 keywords x 2 speakers = 20 keyword clips, ceil(2) unknown, ceil(2) silence
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 24, "val": 24, "test": 24}
    x, y = next(iter(data.batches("train", 8, shuffle=True, epoch=0, seed=1)))
    assert x.shape == (8, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert data.info["dataset"] == "speech_commands" and data.info["protocol"] == "tf"
    # a second build reuses the decode cache (same fingerprint folders, no new ones)
    before = sorted(p.name for p in (tmp_path / "cache").iterdir())
    make_speech_commands(params, FeaturesSpec(), progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == before


def test_trains_from_a_spec(tmp_path):
    make_tree(tmp_path / "tree")
    spec = parse_spec({
        "data": {"dataset": "speech_commands",
                 "params": {"root": str(tmp_path / "tree"), "cache_dir": str(tmp_path / "cache"),
                            "protocol": "bifsmn", "jobs": 1, "augment": {"recipe": "tf"}}},
        "model": {"architecture": "mlp", "params": {"hidden": 16, "depth": 2}},
        "training": {"epochs": 1, "batch_size": 8},
    })
    result = fit(spec, tmp_path / "run", progress=False)
    assert result.labels[:2] == ["_unknown_", "_silence_"]
    assert 0.0 <= result.test_acc["full"] <= 1.0


def test_eval_on_another_tree(tmp_path, capsys):
    """`binkit eval RUN --data-root TREE`: the run's spec with only the tree replaced."""
    import json

    from binkit.cli import main

    make_tree(tmp_path / "tree")
    make_tree(tmp_path / "more", n_each=3)  # 3 speakers per split: 30 keyword clips in test, not 20
    spec = tmp_path / "spec.toml"
    spec.write_text(mlp_spec(tmp_path / "tree", tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", str(spec), "-o", str(run), "-q"]) == 0
    assert main(["eval", str(run)]) == 0
    assert main(["eval", str(run), "--data-root", str(tmp_path / "more")]) == 0
    capsys.readouterr()
    own = json.loads((run / "reports" / "eval_test.json").read_text())
    other = json.loads((run / "reports-more" / "eval_test.json").read_text())
    assert sum(map(sum, own["confusion"])) == 24 and sum(map(sum, other["confusion"])) == 36
    assert f"Data root: `{tmp_path / 'more'}`" in (run / "reports-more" / "eval_test.md").read_text()
    assert main(["eval", str(run), "--data-root", str(tmp_path / "absent")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_eval_with_noise_at_fixed_snrs(tmp_path, capsys):
    """`binkit eval RUN --snr DB...`: every view scored on the same seeded noisy clips."""
    import json

    import torch

    from binkit.cli import main
    from binkit.data.pipeline import noisy_split
    from binkit.train import load_checkpoint

    make_tree(tmp_path / "tree")
    spec = tmp_path / "spec.toml"
    spec.write_text(mlp_spec(tmp_path / "tree", tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", str(spec), "-o", str(run), "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--snr", "300", "0"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "reports" / "eval_test.json").read_text())
    assert list(report["noisy_accuracy"]) == ["300dB", "0dB"]
    # at 300 dB the noise is below float precision: the clean score
    assert report["noisy_accuracy"]["300dB"] == report["accuracy"]
    # 0 dB: the clips noisy_split gives for this tree's name (the heldout_renders seeds)
    model, meta = load_checkpoint(run / "model.pt")
    resolved = meta["resolved"]
    data = resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)
    x, y = noisy_split(data, "test", 0.0, "tree")
    clean = torch.cat([xb for xb, _ in data.batches("test", 64)])
    assert (x - clean).abs().amax() > 0.1
    with torch.no_grad():
        want = float((model(x).argmax(-1) == y).float().mean())
    assert report["noisy_accuracy"]["0dB"]["full"] == want
    assert f"noise at 0dB SNR: view full {want:.4f}" in out
    md = (run / "reports" / "eval_test.md").read_text()
    assert "With background noise at a fixed SNR" in md and f"| 0dB | {want:.4f} |" in md
    # bad SNRs fail before any work, naming the problem
    assert main(["eval", str(run), "--snr", "nan", "-o", str(tmp_path / "r1")]) == 2
    assert "finite number of decibels" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists()


def test_synthesizes_into_an_empty_root(tmp_path, monkeypatch):
    import binkit.data.synth as synth

    calls = []

    def fake_synthesize(root, **kwargs):
        calls.append(kwargs)
        make_tree(Path(root))
        return {}

    monkeypatch.setattr(synth, "synthesize", fake_synthesize)
    params = SpeechCommandsParams(root=str(tmp_path / "corpus"), cache_dir=str(tmp_path / "cache"),
                                  synth_size="small", synth_seed=3, jobs=1)
    data = make_speech_commands(params, FeaturesSpec(), progress=False)
    assert calls and calls[0]["size"] == "small" and calls[0]["seed"] == 3
    assert len(data.splits["train"]) == 24


def test_missing_tree_without_synthesis_says_what_to_do(tmp_path):
    params = SpeechCommandsParams(root=str(tmp_path / "nothing"), synthesize=False)
    with pytest.raises(DatasetError, match="download = true .* synthesize = true"):
        make_speech_commands(params, FeaturesSpec(), progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        make_speech_commands(SpeechCommandsParams(root=str(tmp_path / "junk")), FeaturesSpec(), progress=False)
