"""benchmarks/device/tree_facts.py: a tree rebuilt from its facts matches the decode caches of the original."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from binkit.data.cache import cache_fingerprint
from binkit.data.items import ClipRef

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("tree_facts", ROOT / "benchmarks" / "device" / "tree_facts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_tree(root: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    wavs = []
    for word, n in (("yes", 16000), ("no", 12000), ("_background_noise_", 24000)):
        (root / word).mkdir(parents=True)
        for i in range(2):
            p = root / word / f"s{i}_nohash_0.wav"
            sf.write(p, rng.uniform(-0.5, 0.5, n + 100 * i), 16000, subtype="PCM_16")
            os.utime(p, ns=(1_700_000_000_123_456_789 + i, 1_700_000_000_123_456_789 + i))
            wavs.append(p)
    (root / "testing_list.txt").write_text("yes/s0_nohash_0.wav\n")
    (root / "validation_list.txt").write_text("no/s1_nohash_0.wav\n")
    return wavs


def test_rebuilt_tree_has_the_same_facts_headers_and_fingerprint(tmp_path):
    mod = load_script()
    tree = tmp_path / "tree"
    wavs = make_tree(tree)
    refs = [ClipRef(str(p), label=i) for i, p in enumerate(wavs) if "noise" not in str(p)]
    noise = [str(p) for p in wavs if "noise" in str(p)]
    before = cache_fingerprint(refs, noise, sample_rate=16000, num_samples=16000)
    facts = {p: (p.stat().st_size, p.stat().st_mtime_ns, sf.info(p).frames) for p in wavs}

    pack = tmp_path / "tree.tar.xz"
    assert mod.main(["save", str(tree), str(pack)]) == 0
    shutil.rmtree(tree)
    assert mod.main(["make", str(pack), str(tree)]) == 0

    for p, (size, mtime, frames) in facts.items():
        st = p.stat()
        assert (st.st_size, st.st_mtime_ns) == (size, mtime)
        info = sf.info(p)  # the header is real: the dataset's scan reads it
        assert (info.frames, info.samplerate) == (frames, 16000)
        assert not sf.read(p)[0].any()  # the samples are silence: the caches hold the audio
    assert (tree / "testing_list.txt").read_text() == "yes/s0_nohash_0.wav\n"
    assert (tree / "validation_list.txt").read_text() == "no/s1_nohash_0.wav\n"
    assert cache_fingerprint(refs, noise, sample_rate=16000, num_samples=16000) == before


def test_refuses_a_wav_without_data_chunk_and_bad_usage(tmp_path, capsys):
    mod = load_script()
    (tmp_path / "tree" / "yes").mkdir(parents=True)
    (tmp_path / "tree" / "yes" / "bad.wav").write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(SystemExit, match="no data chunk"):
        mod.main(["save", str(tmp_path / "tree"), str(tmp_path / "p.tar.xz")])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["tree"]  # no pack, whole or partial
    assert mod.main(["copy", "a", "b"]) == 2
    assert "usage" in capsys.readouterr().err
