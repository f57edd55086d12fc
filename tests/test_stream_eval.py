"""benchmarks/stream_eval.py: the long test recording and how detections are scored."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from binkit.runtime.stream import Detection

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def load_script():
    spec = importlib.util.spec_from_file_location("stream_eval", ROOT / "benchmarks" / "stream_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scoring_counts_hits_confusions_and_false_alarms():
    mod = load_script()
    # clips: yes [1, 2) s, no [3, 4) s, a non-keyword [5, 6) s
    spans = [(1 * SR, 2 * SR, "yes"), (3 * SR, 4 * SR, "no"), (5 * SR, 6 * SR, None)]
    found = [Detection("yes", 0.9, 0.6, 1.6),   # hit
             Detection("yes", 0.9, 1.5, 2.5),   # the same word again: false alarm
             Detection("yes", 0.8, 3.2, 4.2),   # on "no": confusion
             Detection("no", 0.8, 5.1, 6.1),    # on a non-keyword: false alarm
             Detection("no", 0.8, 7.0, 8.0)]    # in a gap: false alarm
    r = mod.score(found, spans, SR, 36.0)
    assert (r["hits"], r["confusions"], r["false_alarms"]) == (1, 1, 3)
    assert r["keyword_clips"] == 2 and r["other_clips"] == 1 and r["hit_rate"] == 0.5
    assert r["false_alarms_per_hour"] == pytest.approx(300.0)


def make_tree(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    clips = {}
    for rel, n in (("yes/a_nohash_0.wav", 8000), ("no/a_nohash_0.wav", 12000), ("bed/a_nohash_0.wav", 9000),
                   ("cat/a_nohash_0.wav", 7000), ("dog/a_nohash_0.wav", 6000), ("yes/b_nohash_0.wav", 5000)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        x = (0.3 * rng.standard_normal(n)).clip(-1, 1).astype(np.float32)
        sf.write(root / rel, x, SR, subtype="FLOAT")
        clips[rel] = x
    (root / "testing_list.txt").write_text("yes/a_nohash_0.wav\nno/a_nohash_0.wav\nbed/a_nohash_0.wav\n"
                                           "cat/a_nohash_0.wav\ndog/a_nohash_0.wav\n")  # yes/b: training
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white_noise.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32),
             SR, subtype="FLOAT")
    return clips


def test_the_recording_holds_each_test_keyword_clip_and_as_many_others(tmp_path):
    mod = load_script()
    clips = make_tree(tmp_path)
    audio, spans = mod.build_stream(tmp_path, ["yes", "no"], SR, 250.0, seed=3)
    assert sorted(w for *_, w in spans if w) == ["no", "yes"]  # the training clip yes/b is not used
    assert sum(1 for *_, w in spans if w is None) == 2  # two of the three others
    gap = SR // 4
    assert len(audio) == gap + sum(e - s + gap for s, e, _ in spans)
    for s, e, w in spans:
        matches = [rel for rel, x in clips.items() if len(x) == e - s and np.array_equal(audio[s:e], x)]
        assert len(matches) == 1 and (w is None or matches[0].startswith(w + "/"))
        assert not audio[e:e + gap].any()
    again, _ = mod.build_stream(tmp_path, ["yes", "no"], SR, 250.0, seed=3)
    assert np.array_equal(again, audio)
    noisy, spans2 = mod.build_stream(tmp_path, ["yes", "no"], SR, 250.0, seed=3, snr_db=6.0)
    assert spans2 == spans
    speech = np.concatenate([audio[s:e] for s, e, _ in spans])
    added = noisy - audio
    # the noise runs through the gaps too; its power is set against the speech power
    snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert snr == pytest.approx(6.0, abs=0.05)


def test_a_tree_without_keyword_test_clips_is_refused(tmp_path):
    mod = load_script()
    make_tree(tmp_path)
    with pytest.raises(SystemExit, match="no test clip of the model's keywords"):
        mod.build_stream(tmp_path, ["left"], SR, 100.0, seed=0)


def test_a_missing_model_is_a_clean_error(tmp_path, capsys):
    mod = load_script()
    with pytest.raises(SystemExit) as exc:
        mod.main([str(tmp_path / "absent.bkm"), str(tmp_path)])
    assert exc.value.code == 2 and "artifact not found" in capsys.readouterr().err
