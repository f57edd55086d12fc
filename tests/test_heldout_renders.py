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
