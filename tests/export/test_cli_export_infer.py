"""`binkit train` -> `binkit export` -> `binkit infer` on a wav, through the CLI."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from binkit.cli import main

SPEC = """
name = "tiny-bifsmn"
[data]
dataset = "tones"
params = { num_classes = 4, train_per_class = 8, val_per_class = 4, test_per_class = 4 }
[model]
architecture = "bifsmn"
params = { num_blocks = 2, memory_size = 16, hidden_size = 32, frontend_channels = 4 }
[binarization]
method = "bifsmn"
[training]
epochs = 1
batch_size = 8
"""


def test_train_export_infer(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    assert main(["train", str(spec), "-o", str(run), "-q"]) == 0
    artifact = tmp_path / "model.bkm"
    assert main(["export", str(run), "-o", str(artifact)]) == 0
    assert artifact.is_file() and artifact.stat().st_size > 0
    capsys.readouterr()

    from binkit_toydata.tones import MELODIES, synth_clip

    wav = tmp_path / "clip.wav"
    clip = synth_clip(MELODIES[1], np.random.default_rng(0), 16000, 16000, snr_db=20)
    sf.write(wav, clip, 16000, subtype="PCM_16")
    assert main(["infer", str(artifact), str(wav), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0].startswith("tone_") for line in lines)
    assert main(["infer", str(artifact), str(wav), "--view", "1"]) == 0
    assert main(["infer", str(artifact), str(wav), "--view", "7"]) == 2
    assert "view" in capsys.readouterr().err

    assert main(["summary", str(artifact)]) == 0
    assert "bytes packed binary weights" in capsys.readouterr().out

    bad = tmp_path / "bad.bkm"
    bad.write_bytes(artifact.read_bytes()[:200])
    assert main(["infer", str(bad), str(wav)]) == 2
    assert main(["export", str(run), "-o", str(tmp_path / "sub" / "x.bkm"), "--no-float16"]) == 0
