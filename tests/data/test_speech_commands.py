"""Speech Commands scanning, splitting and task building, on tiny trees made in the test."""

from __future__ import annotations

import hashlib
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from binkit.data import speech_commands as sc
from binkit.errors import AudioError, DatasetError

# Speaker ids (8 hex digits, like GSC's) whose split was worked out by hand with Warden's rule
# (SHA-1 of the id, mod 2**27, scaled by 100 / (2**27 - 1); < 10 validation, < 20 testing) and is
# re-derived below by an implementation independent of the library's.
SPEAKERS = {
    "59a26c7f": "validation",  # p = 0.848
    "0acc6e82": "validation",  # p = 9.455
    "18980f0a": "testing",  # p = 18.255
    "a6620bd7": "testing",  # p = 16.440
    "a9c93012": "training",  # p = 36.982
    "07712e7e": "training",  # p = 57.814
    "955b7989": "training",  # p = 60.171
    "cc964de7": "training",  # p = 54.749
}
UNKNOWN_WORDS = ("bed", "cat", "zero", "one", "wow")
TF_SPLIT = {"validation": "val", "testing": "test", "training": "train"}


def independent_which_set(speaker: str) -> str:
    value = int.from_bytes(hashlib.sha1(speaker.encode()).digest(), "big") & (2**27 - 1)
    percent = value * 100 / (2**27 - 1)
    return "validation" if percent < 10 else "testing" if percent < 20 else "training"


def write_wav(path: Path, n: int = 1600, sr: int = 16000, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    data = (0.1 * rng.standard_normal((n, channels))).astype(np.float32)
    sf.write(str(path), data, sr, subtype="PCM_16")


def make_tree(root: Path, *, v2: bool = False, noise: bool = True, extra_yes_take: bool = True) -> dict:
    """Write a tree; return the expected (word, speaker) layout as data, computed here."""
    words = list(sc.KEYWORDS_12) + list(UNKNOWN_WORDS) + (list(sc.V2_EXTRA_WORDS) if v2 else [])
    clips = []  # (relpath, word, speaker)
    for word in words:
        for spk in SPEAKERS:
            takes = 2 if (extra_yes_take and word == "yes" and spk == "a9c93012") else 1
            for take in range(takes):
                rel = f"{word}/{spk}_nohash_{take}.wav"
                write_wav(root / rel)
                clips.append((rel, word, spk))
    if noise:
        write_wav(root / sc.NOISE_FOLDER / "white_noise.wav", n=32000)
        write_wav(root / sc.NOISE_FOLDER / "pink_noise.wav", n=32000)
        (root / sc.NOISE_FOLDER / "README.md").write_text("noise\n")
    (root / "README.md").write_text("not a clip\n")
    (root / "_hidden_" / "x.wav").parent.mkdir()
    write_wav(root / "_hidden_" / "x.wav")
    (root / "yes" / "notes.txt").write_text("ignored\n")
    return {"clips": clips}


def expected_hash_split(clips) -> dict[str, list[str]]:
    out = {"train": [], "val": [], "test": []}
    for rel, _word, spk in clips:
        out[TF_SPLIT[independent_which_set(spk)]].append(rel)
    return out


def label_counts(task, split):
    counts = {name: 0 for name in task.labels}
    for ref in task.splits[split]:
        counts[task.labels[ref.label]] += 1
    return counts


@pytest.fixture(scope="module")
def v1_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsc_v1")
    layout = make_tree(root)
    return root, layout


@pytest.fixture(scope="module")
def v2_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsc_v2")
    layout = make_tree(root, v2=True)
    return root, layout


class TestWhichSet:
    def test_hand_checked_speakers(self):
        for spk, expected in SPEAKERS.items():
            assert independent_which_set(spk) == expected
            assert sc.which_set(f"yes/{spk}_nohash_0.wav") == expected
            assert sc.which_set(f"/abs/path/cat/{spk}_nohash_3.wav") == expected

    def test_speaker_is_everything_before_nohash(self):
        for i in range(300):
            spk = hashlib.md5(str(i).encode()).hexdigest()[:8]
            assert sc.which_set(f"a/{spk}_nohash_0.wav") == independent_which_set(spk)
            assert sc.which_set(f"b/{spk}_nohash_7.wav") == independent_which_set(spk)

    def test_percentages(self):
        assert sc.which_set("x/59a26c7f_nohash_0.wav", validation_percentage=0, testing_percentage=0) == "training"
        # p(59a26c7f) = 0.848: testing if validation takes less than that
        assert sc.which_set("x/59a26c7f_nohash_0.wav", validation_percentage=0.5, testing_percentage=10) == "testing"


class TestScan:
    def test_layout(self, v1_tree):
        root, layout = v1_tree
        tree = sc.scan(root)
        assert tree.root == root.absolute()
        assert tree.version == "v1"
        assert set(tree.words) == set(sc.KEYWORDS_12) | set(UNKNOWN_WORDS)
        assert sc.NOISE_FOLDER not in tree.words and "_hidden_" not in tree.words
        assert tree.files["yes"] == tuple(sorted(r for r, w, _ in layout["clips"] if w == "yes"))
        assert tree.num_files == len(layout["clips"])
        assert tree.noise_files == (f"{sc.NOISE_FOLDER}/pink_noise.wav", f"{sc.NOISE_FOLDER}/white_noise.wav")
        assert not tree.has_lists

    def test_v2_detected(self, v2_tree):
        assert sc.scan(v2_tree[0]).version == "v2"

    def test_torchaudio_layout(self, tmp_path):
        inner = tmp_path / "SpeechCommands" / "speech_commands_v0.02"
        make_tree(inner)
        tree = sc.scan(tmp_path)
        assert tree.root == inner.absolute()
        assert sc.scan(tmp_path / "SpeechCommands").root == inner.absolute()

    def test_missing_and_empty(self, tmp_path):
        with pytest.raises(DatasetError, match="does not exist"):
            sc.scan(tmp_path / "nope")
        (tmp_path / "empty").mkdir()
        with pytest.raises(DatasetError, match=r"no Speech Commands tree at .*empty.*_nohash_"):
            sc.scan(tmp_path / "empty")


class TestSplits:
    def test_hash_split_matches_independent(self, v1_tree):
        root, layout = v1_tree
        tree = sc.scan(root)
        got, source = sc.split_files(tree)
        assert source == "hash"
        expected = expected_hash_split(layout["clips"])
        assert {k: sorted(v) for k, v in expected.items()} == got

    def test_speaker_disjoint(self, v1_tree):
        tree = sc.scan(v1_tree[0])
        got, _ = sc.split_files(tree)
        speakers = {s: {Path(r).name.split("_nohash_")[0] for r in rels} for s, rels in got.items()}
        assert not speakers["train"] & speakers["val"]
        assert not speakers["train"] & speakers["test"]
        assert not speakers["val"] & speakers["test"]

    def test_lists_win_over_hash(self, tmp_path):
        layout = make_tree(tmp_path)
        # a split the hash would never give: a training speaker in val, a validation one in test
        val = [r for r, _, s in layout["clips"] if s == "a9c93012"]
        test = [r for r, _, s in layout["clips"] if s == "59a26c7f"]
        (tmp_path / "validation_list.txt").write_text("\n".join(val) + "\n")
        (tmp_path / "testing_list.txt").write_text("\n".join(test) + "\n\n")
        tree = sc.scan(tmp_path)
        assert tree.has_lists
        got, source = sc.split_files(tree)
        assert source == "lists"
        assert got["val"] == sorted(val) and got["test"] == sorted(test)
        assert sorted(got["train"]) == sorted(r for r, _, s in layout["clips"] if s not in ("a9c93012", "59a26c7f"))
        task = sc.build_task(tree, protocol="bifsmn")
        assert task.info["split_source"] == "lists"
        assert len(task.splits["val"]) == len(val) + int(0.1 * len(val))

    def test_listed_but_missing(self, tmp_path):
        make_tree(tmp_path)
        (tmp_path / "validation_list.txt").write_text("yes/deadbeef_nohash_0.wav\n")
        (tmp_path / "testing_list.txt").write_text("")
        with pytest.raises(DatasetError, match=r"validation_list.txt, line 1 lists yes/deadbeef_nohash_0.wav.*missing"):
            sc.build_task(tmp_path, protocol="bifsmn")

    def test_only_one_list(self, tmp_path):
        make_tree(tmp_path)
        (tmp_path / "testing_list.txt").write_text("")
        with pytest.raises(DatasetError, match="not validation_list.txt"):
            sc.split_files(sc.scan(tmp_path))


def expected_counts_tf(clips):
    """Per split: keyword clips per word, n_unknown = n_silence = ceil(n_keyword / 10)."""
    split_of = expected_hash_split(clips)
    out = {}
    for split, rels in split_of.items():
        words = [r.split("/")[0] for r in rels]
        counts = {w: words.count(w) for w in sc.KEYWORDS_12}
        n_kw = sum(counts.values())
        out[split] = {"_silence_": -(-n_kw // 10), "_unknown_": -(-n_kw // 10), **counts}
    return out


def expected_counts_bifsmn(clips):
    split_of = expected_hash_split(clips)
    out = {}
    for split, rels in split_of.items():
        words = [r.split("/")[0] for r in rels]
        counts = {w: words.count(w) for w in sc.KEYWORDS_12}
        n_unknown = sum(1 for w in words if w not in sc.KEYWORDS_12)
        out[split] = {"_unknown_": n_unknown, "_silence_": len(rels) // 10, **counts}
    return out


class TestTwelveClass:
    def test_tf_labels_and_counts(self, v1_tree):
        root, layout = v1_tree
        task = sc.build_task(root)
        assert task.labels == ["_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off",
                               "stop", "go"]
        expected = expected_counts_tf(layout["clips"])
        for split in ("train", "val", "test"):
            assert label_counts(task, split) == expected[split], split
        assert task.info["counts"] == expected
        # train has 4 speakers x 10 keywords + 1 extra "yes" take = 41 keyword clips: ceil(4.1) = 5
        assert expected["train"]["_silence_"] == 5
        assert task.info["version"] == "v1" and task.info["protocol"] == "tf" and task.info["seed"] == 59185
        assert task.info["files_scanned"] == len(layout["clips"])
        assert task.info["split_source"] == "hash"
        assert task.info["num_skipped"] == 0

    def test_tf_unknowns_from_same_split_and_non_keywords(self, v1_tree):
        root, layout = v1_tree
        task = sc.build_task(root)
        expected = expected_hash_split(layout["clips"])
        split_of = {root.absolute().joinpath(r).as_posix(): s for s, rels in expected.items() for r in rels}
        unknown = task.labels.index("_unknown_")
        for split, refs in task.splits.items():
            unk = [r for r in refs if r.label == unknown]
            assert len({r.path for r in unk}) == len(unk)  # without replacement
            for ref in unk:
                assert Path(ref.path).parent.name in UNKNOWN_WORDS
                assert split_of[Path(ref.path).as_posix()] == split

    def test_tf_silence_refs(self, v1_tree):
        task = sc.build_task(v1_tree[0])
        seeds = []
        for refs in task.splits.values():
            sil = [r for r in refs if r.label == 0]
            assert sil and all(r.path is None and r.silence == "noise" for r in sil)
            seeds += [r.seed for r in sil]
        assert len(set(seeds)) == len(seeds)
        assert [Path(p).name for p in task.noise_files] == ["pink_noise.wav", "white_noise.wav"]
        assert all(Path(p).is_absolute() for p in task.noise_files)

    def test_unknown_sampling_is_seeded(self, v1_tree):
        root = v1_tree[0]

        def unknowns(seed):
            task = sc.build_task(root, seed=seed)
            return {s: [r.path for r in refs if r.label == 1] for s, refs in task.splits.items()}

        a, b = unknowns(59185), unknowns(59185)
        assert a == b
        assert sc.build_task(root).splits == sc.build_task(root).splits  # silence seeds too
        others = [unknowns(s)["train"] for s in (1, 2, 3)]
        assert any(o != a["train"] for o in others)

    def test_bifsmn_labels_and_counts(self, v1_tree):
        root, layout = v1_tree
        task = sc.build_task(root, protocol="bifsmn")
        assert task.labels == ["_unknown_", "_silence_", "yes", "no", "up", "down", "left", "right", "on", "off",
                               "stop", "go"]
        expected = expected_counts_bifsmn(layout["clips"])
        for split in ("train", "val", "test"):
            assert label_counts(task, split) == expected[split], split
        # train: 41 keyword + 20 unknown clips = 61 -> int(6.1) = 6 silence (tf would give ceil(4.1) = 5)
        assert expected["train"]["_silence_"] == 6
        sil = [r for r in task.splits["train"] if r.label == 1]
        assert all(r.path is None and r.silence == "zeros" for r in sil)

    def test_bifsmn_needs_no_noise(self, tmp_path):
        make_tree(tmp_path, noise=False)
        task = sc.build_task(tmp_path, protocol="bifsmn")
        assert task.noise_files == []

    def test_tf_without_noise_raises(self, tmp_path):
        make_tree(tmp_path, noise=False)
        with pytest.raises(DatasetError, match=r"_background_noise_ is missing.*'tf'"):
            sc.build_task(tmp_path)
        (tmp_path / sc.NOISE_FOLDER).mkdir()
        with pytest.raises(DatasetError, match="has no .wav files"):
            sc.build_task(tmp_path)
        assert sc.build_task(tmp_path, silence_fraction=0).info["counts"]["train"]["_silence_"] == 0

    def test_noise_never_a_word(self, v1_tree):
        for protocol in ("tf", "bifsmn"):
            task = sc.build_task(v1_tree[0], protocol=protocol)
            for refs in task.splits.values():
                assert all(r.path is None or sc.NOISE_FOLDER not in r.path for r in refs)
                assert all(r.path is None or "_hidden_" not in r.path for r in refs)

    def test_paths_absolute_and_labels_match_folders(self, v1_tree):
        task = sc.build_task(v1_tree[0])
        for refs in task.splits.values():
            for ref in refs:
                if ref.path is None:
                    continue
                assert Path(ref.path).is_absolute() and Path(ref.path).is_file()
                word = Path(ref.path).parent.name
                assert task.labels[ref.label] == (word if word in sc.KEYWORDS_12 else "_unknown_")

    def test_bad_arguments(self, v1_tree):
        with pytest.raises(ValueError, match="protocol"):
            sc.build_task(v1_tree[0], protocol="kws")
        with pytest.raises(ValueError, match="task"):
            sc.build_task(v1_tree[0], task="20")
        with pytest.raises(ValueError, match="silence_fraction"):
            sc.build_task(v1_tree[0], silence_fraction=1.5)


def make_test_archive(root: Path) -> dict[str, int]:
    counts = {}
    for i, folder in enumerate((*sc.KEYWORDS_12, "_silence_", "_unknown_")):
        n = 2 + (i % 3)
        for k in range(n):
            # some official names end in .wav.wav
            suffix = ".wav.wav" if k == 0 else ".wav"
            write_wav(root / folder / f"{1000 + i:08x}_nohash_{k}{suffix}")
        counts[folder] = n
    return counts


class TestTestArchive:
    @pytest.mark.parametrize("protocol", ["tf", "bifsmn"])
    def test_archive_replaces_test_split(self, v1_tree, tmp_path, protocol):
        root, layout = v1_tree
        archive = tmp_path / "speech_commands_test_set_v0.01"
        counts = make_test_archive(archive)
        task = sc.build_task(root, protocol=protocol, test_archive=tmp_path)  # parent folder accepted
        assert label_counts(task, "test") == {name: counts[name] for name in task.labels}
        assert len(task.splits["test"]) == sum(counts.values())
        names = [Path(r.path).name for r in task.splits["test"]]
        assert any(n.endswith(".wav.wav") for n in names)
        silence = task.labels.index("_silence_")
        for ref in task.splits["test"]:
            assert ref.path is not None and ref.silence == ""
            assert str(archive.absolute()) in ref.path
            assert task.labels[ref.label] == Path(ref.path).parent.name
        assert sum(r.label == silence for r in task.splits["test"]) == counts["_silence_"]
        assert task.info["test_source"] == "archive"
        assert task.info["tree_test_clips_left_out"] == len(expected_hash_split(layout["clips"])["test"])
        # train and val unchanged by the archive
        plain = sc.build_task(root, protocol=protocol)
        assert plain.splits["train"] == task.splits["train"] and plain.splits["val"] == task.splits["val"]

    def test_incomplete_archive(self, v1_tree, tmp_path):
        make_test_archive(tmp_path / "arch")
        for f in (tmp_path / "arch" / "_unknown_").iterdir():
            f.unlink()
        (tmp_path / "arch" / "_unknown_").rmdir()
        with pytest.raises(DatasetError, match="missing folder.*_unknown_"):
            sc.build_task(v1_tree[0], test_archive=tmp_path / "arch")


class TestThirtyFive:
    def test_v2(self, v2_tree):
        root, layout = v2_tree
        task = sc.build_task(root, task="35")
        assert task.labels == list(sc.V2_WORDS) and len(task.labels) == 35
        assert task.labels[:10] == list(sc.KEYWORDS_12)
        split_of = expected_hash_split(layout["clips"])
        for split in ("train", "val", "test"):
            words = [r.split("/")[0] for r in split_of[split]]
            assert label_counts(task, split) == {w: words.count(w) for w in sc.V2_WORDS}
            assert all(r.silence == "" for r in task.splits[split])

    def test_v1_refused_clearly(self, v1_tree):
        with pytest.raises(DatasetError) as err:
            sc.build_task(v1_tree[0], task="35")
        msg = str(err.value)
        assert "35-class task needs Speech Commands V2" in msg and "V1 (V1 has 30 words" in msg
        assert "backward, forward, follow, learn, visual" in msg

    def test_word_lists(self):
        assert len(sc.V1_WORDS) == 30 and len(set(sc.V1_WORDS)) == 30
        assert len(sc.V2_WORDS) == 35 and sc.V2_WORDS[:30] == sc.V1_WORDS


class TestBadFiles:
    @pytest.fixture
    def bad_tree(self, tmp_path):
        layout = make_tree(tmp_path)
        corrupt = tmp_path / "yes" / "a9c93012_nohash_9.wav"
        corrupt.write_bytes(b"RIFF\x00\x01garbage, not a wave file" * 3)
        empty = tmp_path / "cat" / "a9c93012_nohash_9.wav"
        sf.write(str(empty), np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
        return tmp_path, layout, corrupt, empty

    def test_raise_names_the_file(self, bad_tree):
        root, _layout, corrupt, empty = bad_tree
        with pytest.raises(AudioError) as err:
            sc.build_task(root, protocol="bifsmn")
        assert err.value.path in (str(corrupt), str(empty))
        assert err.value.path in str(err.value)
        (root / "yes" / "a9c93012_nohash_9.wav").unlink()
        with pytest.raises(AudioError, match="no samples") as err:
            sc.build_task(root, protocol="bifsmn")
        assert err.value.path == str(empty)

    @pytest.mark.parametrize("protocol", ["tf", "bifsmn"])
    def test_skip_and_count(self, bad_tree, protocol):
        root, layout, corrupt, empty = bad_tree
        task = sc.build_task(root, protocol=protocol, on_error="skip")
        skipped = {d["path"]: d["reason"] for d in task.info["skipped"]}
        assert str(corrupt) in skipped
        all_paths = {r.path for refs in task.splits.values() for r in refs}
        assert str(corrupt) not in all_paths and str(empty) not in all_paths
        # the keyword clips are exactly the good ones
        good = sc.build_task(root, protocol=protocol, on_error="skip").info["counts"]
        assert good == task.info["counts"]
        expected = expected_counts_tf(layout["clips"]) if protocol == "tf" else expected_counts_bifsmn(layout["clips"])
        assert task.info["counts"]["train"]["yes"] == expected["train"]["yes"]
        if protocol == "bifsmn":
            # every unknown is used, so the empty one is always met
            assert skipped[str(empty)] == "file holds no samples"
            assert task.info["num_skipped"] == 2
            assert task.info["counts"]["train"]["_unknown_"] == expected["train"]["_unknown_"]
        else:
            # the sampled unknowns keep their count: a bad candidate is replaced by the next one
            assert task.info["counts"]["train"]["_unknown_"] == math.ceil(
                sum(task.info["counts"]["train"][w] for w in sc.KEYWORDS_12) / 10)
            assert task.info["num_skipped"] == len(skipped) >= 1
