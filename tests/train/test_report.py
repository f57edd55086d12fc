"""binkit/train/report.py and `binkit eval`."""

from __future__ import annotations

import json

import numpy as np

from binkit.cli import main
from binkit.train.report import confusion_matrix, per_class_metrics

SPEC = """
name = "evaltiny"
[data]
dataset = "tones"
params = { num_classes = 3, train_per_class = 8, val_per_class = 4, test_per_class = 5 }
[model]
architecture = "mlp"
params = { hidden = 16, depth = 2 }
[training]
epochs = 1
batch_size = 8
"""


def test_confusion_and_per_class_by_hand():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 0])
    cm = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 2, 0], [1, 0, 0]])
    m = per_class_metrics(cm)
    assert m[0]["precision"] == 1 / 3 and m[0]["recall"] == 0.5 and abs(m[0]["f1"] - 0.4) < 1e-12
    assert m[1]["precision"] == 2 / 3 and m[1]["recall"] == 2 / 3
    assert m[2] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted


def test_eval_command_writes_report(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    assert main(["train", str(spec), "-o", str(run), "-q"]) == 0
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "view  full: accuracy" in out
    reports = run / "reports"
    data = json.loads((reports / "eval_test.json").read_text())
    assert sum(sum(r) for r in data["confusion"]) == 15  # 3 classes x 5 test clips
    assert set(data["per_class"]) == set(data["labels"])
    assert (reports / "confusion_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (reports / "eval_test.md").read_text()
    assert "| label | precision | recall | F1 | support |" in md and "confusion_test.png" in md
    assert main(["eval", str(tmp_path / "missing")]) == 2
    # the tones dataset is generated, not read from a tree
    assert main(["eval", str(run), "--data-root", str(tmp_path)]) == 2
    assert "has no root parameter" in capsys.readouterr().err


def test_eval_with_noise_needs_a_dataset_with_noise_files(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SPEC)  # tones: features made in memory, no waveforms or noise
    assert main(["train", str(tmp_path / "s.toml"), "-o", str(tmp_path / "run"), "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--snr", "10", "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "needs cached waveforms and background-noise files" in err and "(tones)" in err
    assert not (tmp_path / "r").exists()
