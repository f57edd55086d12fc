"""Tests of binkit/data/cache.py: decode once, invalidate on change, build atomically, render silence."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from binkit.data import cache as cache_mod
from binkit.data.cache import SAMPLE_SCALE, build_cache, cache_fingerprint
from binkit.data.items import ClipRef
from binkit.errors import AudioError, DatasetError
from binkit.runtime import audio

SR = 16000
T = 1600  # 0.1 s clips keep the tests fast


def write_wav(path: Path, x: np.ndarray, subtype: str = "PCM_16", sr: int = SR) -> str:
    sf.write(path, x, sr, subtype=subtype)
    return str(path)


def clip(seed: int, n: int = T) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(-0.5, 0.5, n)).astype(np.float32)


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[list[ClipRef], list[str]]:
    src = tmp_path / "src"
    src.mkdir()
    refs = [ClipRef(write_wav(src / f"c{i}.wav", clip(i)), label=i % 3) for i in range(6)]
    refs.append(ClipRef(None, label=3, silence="zeros"))
    refs.append(ClipRef(None, label=3, silence="noise", seed=7))
    noise = [write_wav(src / "white.wav", clip(100, 5 * T)), write_wav(src / "short.wav", clip(101, T // 2))]
    return refs, noise


@pytest.fixture
def load_counter(monkeypatch):
    calls = []
    real = audio.load_clip

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(audio, "load_clip", counting)
    return calls


def build(refs, noise, root: Path, **kwargs):
    kwargs.setdefault("num_samples", T)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("jobs", 1)
    return build_cache(refs, noise, root, **kwargs)


class TestDecode:
    def test_layout_and_values_round_trip(self, dataset, tmp_path):
        refs, noise = dataset
        split = build(refs, noise, tmp_path / "cache")
        assert len(split) == len(refs) and split.num_samples == T and split.sample_rate == SR
        assert split.waves.dtype == np.int16 and isinstance(split.waves, np.memmap)
        assert split.labels.dtype == np.int64 and list(split.labels) == [r.label for r in refs]
        assert list(split.silence) == [False] * 6 + [True, True]
        assert split.path.name == split.fingerprint[:16]
        assert sorted(p.name for p in split.path.iterdir()) == [
            "labels.npy", "meta.json", "noise.npy", "silence.npy", "waves.npy"]
        for i in range(6):  # 16-bit PCM sources are stored losslessly
            np.testing.assert_array_equal(split.batch([i])[0], audio.load_clip(refs[i].path, SR, T))
        batch = split.batch(np.array([5, 0, 5]))
        assert batch.dtype == np.float32 and batch.shape == (3, T)
        np.testing.assert_array_equal(batch[0], batch[2])

    def test_float_sources_round_trip_within_int16_quantisation(self, tmp_path):
        x = np.random.default_rng(3).uniform(-0.9, 0.9, T).astype(np.float32)
        ref = ClipRef(write_wav(tmp_path / "f.wav", x, subtype="FLOAT"), 0)
        split = build([ref], [], tmp_path / "cache")
        err = np.abs(split.batch([0])[0] - x).max()
        assert err <= 0.5 * SAMPLE_SCALE + 1e-9

    def test_clips_are_padded_or_trimmed(self, tmp_path):
        short = ClipRef(write_wav(tmp_path / "s.wav", clip(1, T // 4)), 0)
        long = ClipRef(write_wav(tmp_path / "l.wav", clip(2, 3 * T)), 0)
        split = build([short, long], [], tmp_path / "cache")
        assert np.all(split.batch([0])[0, T // 4:] == 0)
        np.testing.assert_array_equal(split.batch([1])[0], audio.load_clip(long.path, SR, T))

    def test_noise_bank_concatenates_and_tiles_short_files(self, dataset, tmp_path):
        refs, noise = dataset
        bank = build(refs, noise, tmp_path / "cache").noise
        assert len(bank) == 2 and bank.names == tuple(noise)
        assert list(bank.offsets) == [0, 5 * T, 6 * T]  # the 0.05 s file is tiled to one clip
        np.testing.assert_array_equal(bank.file(0), audio.load_clip(noise[0], SR, None))
        half = audio.load_clip(noise[1], SR, None)
        np.testing.assert_array_equal(bank.file(1), np.concatenate([half, half]))
        assert bank.as_float32().shape == (6 * T,)

    def test_parallel_decoding_equals_serial(self, dataset, tmp_path, monkeypatch):
        refs, noise = dataset
        serial = build(refs, noise, tmp_path / "a", jobs=1)
        monkeypatch.setattr(cache_mod, "_MIN_PARALLEL", 0)
        parallel = build(refs, noise, tmp_path / "b", jobs=2)
        np.testing.assert_array_equal(np.asarray(serial.waves), np.asarray(parallel.waves))
        assert serial.fingerprint == parallel.fingerprint


class TestDecodeOnce:
    def test_second_build_is_a_hit_without_reading_audio(self, dataset, tmp_path, load_counter):
        refs, noise = dataset
        first = build(refs, noise, tmp_path / "cache")
        assert len(load_counter) == 6 + 2  # six clips and two noise files, once each
        load_counter.clear()
        second = build(refs, noise, tmp_path / "cache")
        assert load_counter == []
        assert second.path == first.path
        np.testing.assert_array_equal(np.asarray(first.waves), np.asarray(second.waves))

    def test_touching_a_source_invalidates(self, dataset, tmp_path, load_counter):
        refs, noise = dataset
        first = build(refs, noise, tmp_path / "cache")
        st = os.stat(refs[2].path)
        os.utime(refs[2].path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        load_counter.clear()
        second = build(refs, noise, tmp_path / "cache")
        assert second.path != first.path and len(load_counter) == 8

    def test_changing_a_file_size_invalidates(self, dataset, tmp_path):
        refs, noise = dataset
        first = build(refs, noise, tmp_path / "cache")
        mtime = os.stat(refs[0].path).st_mtime_ns
        write_wav(Path(refs[0].path), clip(50, T // 2))
        os.utime(refs[0].path, ns=(mtime, mtime))  # same mtime, other size
        second = build(refs, noise, tmp_path / "cache")
        assert second.path != first.path
        assert np.all(second.batch([0])[0, T // 2:] == 0)

    def test_touching_a_noise_file_invalidates(self, dataset, tmp_path):
        refs, noise = dataset
        first = build(refs, noise, tmp_path / "cache")
        os.utime(noise[0], ns=(1, 1))
        assert build(refs, noise, tmp_path / "cache").path != first.path

    @pytest.mark.parametrize("change", ["num_samples", "sample_rate", "drop_ref", "label", "seed", "order"])
    def test_settings_or_ref_list_changes_invalidate(self, dataset, change):
        refs, noise = dataset
        base = cache_fingerprint(refs, noise, sample_rate=SR, num_samples=T)
        kwargs = {"sample_rate": SR, "num_samples": T}
        if change == "num_samples":
            kwargs["num_samples"] = T + 1
        elif change == "sample_rate":
            kwargs["sample_rate"] = 8000
        elif change == "drop_ref":
            refs = refs[1:]
        elif change == "label":
            refs = [ClipRef(refs[0].path, 9), *refs[1:]]
        elif change == "seed":
            refs = [*refs[:-1], ClipRef(None, 3, silence="noise", seed=8)]
        else:
            refs = [refs[1], refs[0], *refs[2:]]
        assert cache_fingerprint(refs, noise, **kwargs) != base

    def test_a_mismatching_folder_is_rebuilt(self, dataset, tmp_path, load_counter):
        refs, noise = dataset
        first = build(refs, noise, tmp_path / "cache")
        meta = json.loads((first.path / "meta.json").read_text())
        meta["fingerprint"] = "0" * 64
        (first.path / "meta.json").write_text(json.dumps(meta))
        load_counter.clear()
        second = build(refs, noise, tmp_path / "cache")
        assert second.path == first.path and len(load_counter) == 8
        assert json.loads((second.path / "meta.json").read_text())["fingerprint"] == second.fingerprint
        assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.path.name]

    def test_a_truncated_array_is_rebuilt(self, dataset, tmp_path):
        refs, noise = dataset
        first = build(refs, noise, tmp_path / "cache")
        waves = first.path / "waves.npy"
        del first
        with open(waves, "r+b") as f:
            f.truncate(1000)
        second = build(refs, noise, tmp_path / "cache")
        assert second.waves.shape == (len(refs), T)


class TestAtomic:
    def test_an_error_mid_build_leaves_nothing(self, dataset, tmp_path, monkeypatch):
        refs, noise = dataset
        real = audio.load_clip
        calls = []

        def failing(path, *args, **kwargs):
            calls.append(path)
            if len(calls) == 5:
                raise RuntimeError("disk on fire")
            return real(path, *args, **kwargs)

        monkeypatch.setattr(audio, "load_clip", failing)
        with pytest.raises(RuntimeError, match="disk on fire"):
            build(refs, noise, tmp_path / "cache")
        assert list((tmp_path / "cache").iterdir()) == []  # no cache folder and no temp folder

    def test_concurrent_builder_keeps_the_finished_cache(self, dataset, tmp_path):
        refs, noise = dataset
        first = build(refs, noise, tmp_path / "cache")
        # a second builder that finished later: its folder must not replace or corrupt the first
        other = tmp_path / "cache" / ".building-other"
        shutil.copytree(first.path, other)
        cache_mod._install(other, first.path, first.fingerprint)
        assert not other.exists()
        assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [first.path.name]
        assert build(refs, noise, tmp_path / "cache").path == first.path


class TestSilence:
    def test_zeros_and_seeded_noise(self, dataset, tmp_path):
        refs, noise = dataset
        split = build(refs, noise, tmp_path / "cache")
        assert np.all(np.asarray(split.waves[6]) == 0)
        # "noise": file, start and volume drawn from the ref's seed
        rng = np.random.default_rng(7)
        offsets = split.noise.offsets
        i = int(rng.integers(len(offsets) - 1))
        start = int(offsets[i]) + int(rng.integers(0, int(offsets[i + 1] - offsets[i]) - T + 1))
        volume = rng.uniform(0.0, 1.0)
        expected = split.noise.as_float32()[start:start + T] * np.float32(volume)
        np.testing.assert_allclose(split.batch([7])[0], expected, atol=SAMPLE_SCALE)
        assert np.abs(split.batch([7])[0]).max() > 0

    def test_rendering_is_deterministic_and_seed_dependent(self, dataset, tmp_path):
        refs, noise = dataset
        more = [ClipRef(None, 3, silence="noise", seed=s) for s in (7, 7, 8)]
        a = build(refs + more, noise, tmp_path / "a")
        b = build(refs + more, noise, tmp_path / "b")
        np.testing.assert_array_equal(np.asarray(a.waves), np.asarray(b.waves))
        n = len(refs)
        np.testing.assert_array_equal(a.waves[n], a.waves[n + 1])
        np.testing.assert_array_equal(a.waves[n], a.waves[7])
        assert not np.array_equal(a.waves[n], a.waves[n + 2])

    def test_noise_silence_without_noise_files_is_an_error(self, tmp_path):
        with pytest.raises(DatasetError, match="noise files"):
            build([ClipRef(None, 0, silence="noise", seed=1)], [], tmp_path / "cache")
        assert list((tmp_path / "cache").iterdir()) == []


class TestErrors:
    def test_corrupt_file_names_the_file(self, dataset, tmp_path):
        refs, noise = dataset
        bad = tmp_path / "src" / "corrupt.wav"
        bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
        with pytest.raises(AudioError, match="corrupt.wav"):
            build([*refs, ClipRef(str(bad), 0)], noise, tmp_path / "cache")
        assert list((tmp_path / "cache").iterdir()) == []

    def test_corrupt_file_in_a_worker_names_the_file(self, dataset, tmp_path, monkeypatch):
        refs, noise = dataset
        bad = tmp_path / "src" / "corrupt.wav"
        bad.write_bytes(b"not audio at all")
        monkeypatch.setattr(cache_mod, "_MIN_PARALLEL", 0)
        with pytest.raises(AudioError, match="corrupt.wav") as info:
            build([*refs, ClipRef(str(bad), 0)], noise, tmp_path / "cache", jobs=2)
        assert info.value.path == str(bad)

    def test_missing_file_names_the_file(self, dataset, tmp_path):
        refs, noise = dataset
        with pytest.raises(AudioError, match="gone.wav"):
            build([*refs, ClipRef(str(tmp_path / "gone.wav"), 0)], noise, tmp_path / "cache")

    def test_empty_split(self, tmp_path):
        split = build([], [], tmp_path / "cache")
        assert len(split) == 0 and split.waves.shape == (0, T) and len(split.noise) == 0
