"""binkit/cli.py: the `binkit` command."""

from __future__ import annotations

import json

import pytest

from binkit.cli import main

TINY = """
name = "cli-tiny"
[data]
dataset = "tones"
params = { num_classes = 3, train_per_class = 8, val_per_class = 4, test_per_class = 4 }
[model]
architecture = "small_cnn"
params = { channels = 8, blocks = 2 }
[training]
epochs = 1
batch_size = 8
"""


@pytest.fixture
def tiny_spec(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


def test_plugins_lists_every_kind(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for heading in ("quantizers", "architectures", "distillers", "datasets", "backends"):
        assert heading in out
    assert "bifsmn_code" in out and "not deployable" in out and "binkit:binarizers" in out


def test_plugins_json_and_filter(capsys):
    assert main(["plugins", "--kind", "quantizer", "--filter", "bi*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["quantizer"]
    assert [r["name"] for r in rows] == ["bifsmn", "bifsmn_code", "bireal"]
    assert rows[2]["precision"] == 1 and rows[2]["packing"] == "sign"
    assert rows[1]["packing"] == "not deployable"


def test_check_valid_and_show(tiny_spec, capsys):
    assert main(["check", str(tiny_spec), "--show"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "[binarization]" in out and 'method = "xnor"' in out


def test_check_invalid_prints_paths_not_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("epochs = 1", "epochs = 0"))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "training.epochs: Input should be greater than or equal to 1 (got 0)" in err
    assert "Traceback" not in err
    bad.write_text(TINY.replace('"small_cnn"', '"small_cnm"'))
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "model.architecture: unknown architecture 'small_cnm'" in err and "did you mean 'small_cnn'" in err


def test_check_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.toml")]) == 2
    assert "spec file not found" in capsys.readouterr().err


def test_summary_of_spec(tiny_spec, capsys):
    assert main(["summary", str(tiny_spec), "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["binary_macs"] > 0 and totals["compression_ratio"] > 1


def test_train_then_summary_of_run(tmp_path, tiny_spec, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_spec), "-o", str(run), "-q"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert (run / "model.pt").is_file()
    assert main(["summary", str(run), "--markdown"]) == 0
    assert "| blocks.1.conv | BinaryConv2d |" in capsys.readouterr().out


def test_summary_latency_flags_need_an_artifact(tiny_spec, capsys):
    assert main(["summary", str(tiny_spec), "--latency"]) == 2
    assert "--latency and --backend apply to an artifact" in capsys.readouterr().err


def test_bench_is_a_subcommand_with_its_options(capsys, monkeypatch):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS"):
        monkeypatch.setenv(var, "1")  # binkit bench pins them; restored after the test
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--backends", "--runs", "--reference-runs", "--batch", "--kernel", "--no-torch", "--json",
                 "--markdown"):
        assert flag in out
    assert main(["bench", "missing.bkm", "-q"]) == 2
    assert "artifact not found" in capsys.readouterr().err
