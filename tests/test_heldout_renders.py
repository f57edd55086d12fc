"""benchmarks/heldout_renders.py: a render's lists are pointed at the original's held-out voices."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("heldout_renders", ROOT / "benchmarks" / "heldout_renders.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_corpus(root: Path, ids: dict[str, str], splits: dict[str, str]) -> None:
    """``ids``: settings -> voice id in this corpus; ``splits``: settings -> its split here."""
    voices = [{"settings": s, "id": i, "split": splits[s]} for s, i in ids.items()]
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"voices": voices}))
    for word in ("yes", "no"):
        (root / word).mkdir()
        for i in ids.values():
            for take in (0, 1):
                (root / word / f"{i}_nohash_{take}.wav").write_bytes(b"")
    (root / "_background_noise_").mkdir()
    (root / "testing_list.txt").write_text("own split\n")
    (root / "validation_list.txt").write_text("own split\n")


def test_relist_follows_the_original_split_by_voice_settings(tmp_path):
    mod = load_script()
    settings = ["a", "b", "c", "d"]
    fake_corpus(tmp_path / "orig", dict(zip(settings, ["a0", "b0", "c0", "d0"])),
                {"a": "training", "b": "testing", "c": "validation", "d": "training"})
    # the render salts the ids differently and would split the voices otherwise
    fake_corpus(tmp_path / "render", dict(zip(settings, ["a1", "b1", "c1", "d1"])),
                {"a": "testing", "b": "training", "c": "training", "d": "validation"})
    counts = mod.relist(tmp_path / "orig", tmp_path / "render")
    assert counts == {"testing": 4, "validation": 4}  # 2 words x 2 takes of one voice each
    test = (tmp_path / "render" / "testing_list.txt").read_text().split()
    assert test == ["no/b1_nohash_0.wav", "no/b1_nohash_1.wav", "yes/b1_nohash_0.wav", "yes/b1_nohash_1.wav"]
    assert all("c1_" in line for line in (tmp_path / "render" / "validation_list.txt").read_text().split())
    assert (tmp_path / "render" / "testing_list.txt.orig").read_text() == "own split\n"
    # a second run keeps the first backup
    mod.relist(tmp_path / "orig", tmp_path / "render")
    assert (tmp_path / "render" / "testing_list.txt.orig").read_text() == "own split\n"


def test_relist_refuses_a_corpus_of_other_voices(tmp_path):
    mod = load_script()
    fake_corpus(tmp_path / "orig", {"a": "a0", "b": "b0"}, {"a": "training", "b": "testing"})
    fake_corpus(tmp_path / "other", {"a": "a1", "z": "z1"}, {"a": "training", "z": "testing"})
    with pytest.raises(SystemExit, match="not a render of the same voices"):
        mod.relist(tmp_path / "orig", tmp_path / "other")


TINY = """
name = "heldout-tiny"
[data]
dataset = "tones"
params = { num_classes = 3, train_per_class = 8, val_per_class = 4, test_per_class = 6 }
[model]
architecture = "small_cnn"
params = { channels = 8, blocks = 2 }
[training]
epochs = 1
batch_size = 8
"""


def tiny_run(tmp_path: Path, name: str, spec: str = TINY) -> Path:
    from binkit.cli import main

    (tmp_path / f"{name}.toml").write_text(spec)
    assert main(["train", str(tmp_path / f"{name}.toml"), "-o", str(tmp_path / name), "-q"]) == 0
    return tmp_path / name


def test_scores_from_a_features_pack_equal_the_trainers_evaluation(tmp_path, capsys):
    import torch

    from binkit.train import load_checkpoint
    from binkit.train.trainer import evaluate

    mod = load_script()
    run = tiny_run(tmp_path, "bifsmn-seed0")
    model, meta = load_checkpoint(run / "model.pt")
    resolved = meta["resolved"]
    data = resolved.dataset.factory(resolved.dataset_params, resolved.spec.features)
    xs, ys = zip(*data.batches("test", 5))
    x, y = torch.cat(xs), torch.cat(ys)
    # a second "tree": the same clips, the first four labels moved to another class
    y2 = y.clone()
    y2[:4] = (y2[:4] + 1) % 3
    pack = {"labels": list(meta["labels"]), "features": resolved.spec.features.model_dump_json(),
            "trees": {"orig": (x, y), "render1": (x, y2)}}
    torch.save(pack, tmp_path / "pack.pt")
    capsys.readouterr()
    assert mod.main(["--features", str(tmp_path / "pack.pt"), "--runs", str(run),
                     "--save", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    want = evaluate(model, data, [None], split="test")["full"]
    orig, render = scores["bifsmn-seed0"]["orig"], scores["bifsmn-seed0"]["render1"]
    assert orig == [{"full": want}, len(y)]
    with torch.no_grad():
        out = model.eval()(x)
    pred = getattr(out, "logits", out).argmax(-1)
    assert int((pred != y).sum()) < len(y)  # the relabelled clips change the score
    assert render == [{"full": int((pred == y2).sum()) / len(y)}, len(y)]
    out = capsys.readouterr().out
    assert f"Test clips: orig {len(y)}, render1 {len(y)}; pooled {2 * len(y)}" in out
    # --scores prints the same tables from the saved file
    assert mod.main(["--scores", str(tmp_path / "s.json")]) == 0
    assert capsys.readouterr().out == out
    # several processes (a second run: its own row) give the same scores
    import shutil
    import subprocess
    import sys

    shutil.copytree(run, tmp_path / "bnn-seed0")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "heldout_renders.py"), "--features",
                    str(tmp_path / "pack.pt"), "--runs", str(run), str(tmp_path / "bnn-seed0"), "--jobs", "2",
                    "--save", str(tmp_path / "s2.json")], check=True, capture_output=True, cwd=tmp_path)
    scores2 = json.loads((tmp_path / "s2.json").read_text())
    assert scores2 == {"bifsmn-seed0": scores["bifsmn-seed0"], "bnn-seed0": scores["bifsmn-seed0"]}


def test_a_run_with_other_features_is_refused_by_name(tmp_path):
    import torch

    mod = load_script()
    run = tiny_run(tmp_path, "r")
    pack = {"labels": ["a", "b", "c"], "features": "{}", "trees": {"orig": (torch.zeros(1), torch.zeros(1))}}
    torch.save(pack, tmp_path / "pack.pt")
    with pytest.raises(SystemExit, match="labels differ"):
        mod.main(["--features", str(tmp_path / "pack.pt"), "--runs", str(run)])
    from binkit.train import load_checkpoint

    pack["labels"] = list(load_checkpoint(run / "model.pt")[1]["labels"])
    torch.save(pack, tmp_path / "pack.pt")
    with pytest.raises(SystemExit, match="its features differ"):
        mod.main(["--features", str(tmp_path / "pack.pt"), "--runs", str(run)])


def test_report_pools_by_clips_and_pairs_the_seeds(capsys):
    mod = load_script()

    def row(acc_a, acc_b):  # tree a has 100 clips, tree b 300
        return {"a": [{"8": acc_a}, 100], "b": [{"8": acc_b}, 300]}

    mod.report({"bifsmn-seed0": row(0.90, 0.98), "bifsmn-seed1": row(0.94, 0.94),
                "bnn-seed0": row(0.90, 0.94), "bnn-seed1": row(0.92, 0.92)})
    out = capsys.readouterr().out
    assert "| bifsmn-seed0 | 8 | 0.9000 | 0.9800 | 0.9600 |" in out  # (90 + 294) / 400
    assert "| bifsmn | 2 | 0.9200 | 0.0283 | 0.9500 | 0.0141 |" in out
    # pooled: bnn 0.93 and 0.92 -> differences +3.00 and +2.00 points, t = 2.5 / (0.7071 / sqrt 2) = 5
    assert "| bnn | +3.00, +2.00 | +2.50 | 0.71 | +5.00 |" in out
    # original test (tree a): +0.00 and +2.00 points
    assert "| bnn | +0.00, +2.00 | +1.00 | 1.41 | +1.00 |" in out


def test_scores_and_runs_do_not_mix(tmp_path, capsys):
    mod = load_script()
    with pytest.raises(SystemExit):
        mod.main(["--scores", str(tmp_path / "s.json"), "--runs", str(tmp_path)])
    assert "give no trees, runs or --snr" in capsys.readouterr().err


def speech_run(tmp_path: Path) -> tuple[Path, Path]:
    """A speech_commands tree (tests/data's crafted one, with a noise file) and a 1-epoch MLP run on it."""
    from binkit.cli import main

    spec = importlib.util.spec_from_file_location("sc_dataset_tests",
                                                  ROOT / "tests" / "data" / "test_speech_commands_dataset.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    helpers.make_tree(tmp_path / "tree")
    (tmp_path / "s.toml").write_text(helpers.mlp_spec(tmp_path / "tree", tmp_path / "cache"))
    assert main(["train", str(tmp_path / "s.toml"), "-o", str(tmp_path / "bifsmn-seed0"), "-q"]) == 0
    return tmp_path / "tree", tmp_path / "bifsmn-seed0"


def test_noisy_test_splits_are_scored_and_tabulated_apart(tmp_path, capsys):
    import torch

    mod = load_script()
    tree, run = speech_run(tmp_path)
    pack = mod.test_splits(tree, [], run, [300.0, 0.0])
    assert list(pack["trees"]) == ["tree", "tree@300dB", "tree@0dB"]
    clean, y = pack["trees"]["tree"]
    # at 300 dB the noise is below float precision: the features are the clean ones
    assert torch.allclose(pack["trees"]["tree@300dB"][0], clean, atol=1e-4)
    assert torch.equal(pack["trees"]["tree@0dB"][1], y)
    noisy = pack["trees"]["tree@0dB"][0]
    keyword = y >= 2  # silence entries (label 0) are noise already and stay as they are
    assert torch.equal(noisy[y == 0], clean[y == 0])
    assert (noisy[keyword] - clean[keyword]).abs().amax(dim=(1, 2, 3)).min() > 0.1
    # the same seed every time: a second build is identical
    assert torch.equal(mod.test_splits(tree, [], run, [0.0])["trees"]["tree@0dB"][0], noisy)

    capsys.readouterr()
    assert mod.main([str(tree), "--snr", "300", "0", "--runs", str(run), "--save", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    scores = json.loads((tmp_path / "s.json").read_text())["bifsmn-seed0"]
    assert list(scores) == ["tree", "tree@300dB", "tree@0dB"]
    assert scores["tree@300dB"] == scores["tree"]
    assert "### clean" in out and "### noise at 300 dB SNR" in out and "### noise at 0 dB SNR" in out
    section = out.split("### noise at 0 dB SNR")[1]
    assert f"Test clips: tree@0dB {len(y)}; pooled {len(y)}" in section
    assert f"| bifsmn-seed0 | full | {scores['tree@0dB'][0]['full']:.4f} |" in section


def test_snr_needs_trees_with_noise(tmp_path, capsys):
    mod = load_script()
    run = tiny_run(tmp_path, "r")  # the tones dataset: no waveforms, no noise files
    with pytest.raises(SystemExit, match="needs cached waveforms and background-noise files"):
        mod.test_splits(tmp_path, [], run, [10.0])
    with pytest.raises(SystemExit):
        mod.main(["--features", str(tmp_path / "pack.pt"), "--snr", "10", "--runs", str(run)])
    assert "--snr mixes noise into the trees' clips" in capsys.readouterr().err


def test_no_paired_table_without_two_shared_seeds(capsys):
    mod = load_script()
    mod.report({"bifsmn": {"a": [{"8": 0.9}, 10]}, "bnn": {"a": [{"8": 0.8}, 10]}})
    out = capsys.readouterr().out
    assert "| bifsmn | 1 | 0.9000 | nan |" in out and "BiFSMN minus" not in out


def test_other_baselines_get_their_own_paired_tables(tmp_path, capsys):
    mod = load_script()
    one = lambda acc: {"a": [{"8": acc}, 10]}  # noqa: E731
    table = {"reactnet-seed0": one(0.9), "reactnet-seed1": one(0.8), "reactnet-hed-seed0": one(0.7),
             "reactnet-hed-seed1": one(0.7), "bifsmn-seed0": one(0.5), "bifsmn-seed1": one(0.6)}
    (tmp_path / "s.json").write_text(json.dumps(table))
    assert mod.main(["--scores", str(tmp_path / "s.json"), "--baseline", "reactnet", "bifsmn"]) == 0
    out = capsys.readouterr().out
    reactnet = out.split("| reactnet minus |")[1].split("BiFSMN minus")[0]
    assert "| reactnet-hed | +20.00, +10.00 | +15.00 |" in reactnet
    assert "| bifsmn | +40.00, +20.00 | +30.00 |" in reactnet
    assert "| reactnet | -40.00, -20.00 | -30.00 |" in out.split("| BiFSMN minus |")[1]
    assert mod.main(["--scores", str(tmp_path / "s.json")]) == 0  # the default: BiFSMN's table only
    out = capsys.readouterr().out
    assert "BiFSMN minus" in out and "reactnet minus" not in out
