"""`binkit train` -> `binkit export` -> `binkit infer` on a wav, through the CLI."""

from __future__ import annotations

import numpy as np
import pytest
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

    # `binkit stream` over 4 s of tones at 8 kHz (resampled to the model's 16 kHz)
    import json

    long = tmp_path / "long.wav"
    rng = np.random.default_rng(1)
    tones = np.concatenate([synth_clip(MELODIES[i % 4], rng, 16000, 16000, snr_db=20) for i in range(4)])
    sf.write(long, tones[::2], 8000, subtype="PCM_16")
    out = tmp_path / "det.json"
    assert main(["stream", str(artifact), str(long), "--threshold", "0.3", "--hop-ms", "250", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    saved = json.loads(out.read_text())
    assert saved["seconds"] == 4.0 and saved["settings"]["hop_ms"] == 250.0 and saved["detections"]
    assert f"{len(saved['detections'])} detection(s) in 4.00 s of audio" in captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == len(saved["detections"])
    for line, d in zip(lines, saved["detections"]):
        assert line.split("\t")[2] == d["label"] and d["label"].startswith("tone_") and d["score"] >= 0.3
        assert 0 <= d["start_s"] and d["end_s"] == pytest.approx(d["start_s"] + 1.0) and d["end_s"] <= 4.0
    assert main(["stream", str(artifact), str(long), "--threshold", "1.5", "--json", str(tmp_path / "no.json")]) == 2
    assert "threshold" in capsys.readouterr().err and not (tmp_path / "no.json").exists()
    import binkit.runtime

    everything = ",".join(binkit.runtime.load(str(artifact)).labels)
    assert main(["stream", str(artifact), str(long), "--background", everything]) == 2
    assert "nothing could fire" in capsys.readouterr().err
    # the default --smooth-ms 500 at --hop-ms 100 averages 6 windows: 7 can never be reached
    assert main(["stream", str(artifact), str(long), "--min-windows", "7", "--json", str(tmp_path / "no.json")]) == 2
    assert "min_windows = 7 exceeds the 6 window(s)" in capsys.readouterr().err and not (tmp_path / "no.json").exists()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wav file")
    assert main(["stream", str(artifact), str(junk)]) == 2
    assert "cannot decode audio" in capsys.readouterr().err

    assert main(["summary", str(artifact)]) == 0
    assert "bytes packed binary weights" in capsys.readouterr().out

    bad = tmp_path / "bad.bkm"
    bad.write_bytes(artifact.read_bytes()[:200])
    assert main(["infer", str(bad), str(wav)]) == 2
    assert main(["export", str(run), "-o", str(tmp_path / "sub" / "x.bkm"), "--no-float16"]) == 0
