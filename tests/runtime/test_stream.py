"""The streaming detector (binkit.runtime.stream): windows, smoothing, decision, suppression.

A stand-in model at 1 kHz with 100-sample windows scores a window by what it holds: "yes" is the
fraction of samples equal to +1, "no" the fraction equal to -1, "_silence_" the rest. So a burst
of +1 samples is a word whose score rises and falls as the window slides over it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from binkit.runtime.stream import Detection, StreamingDetector, StreamSpec, detect

SR, WIN = 1000, 100


class FakeModel:
    labels = ["_silence_", "_unknown_", "yes", "no"]

    def __init__(self, frontend=True):
        self.frontend = SimpleNamespace(spec=SimpleNamespace(sample_rate=SR, num_samples=WIN)) if frontend else None
        self.calls = []

    def resolve_view(self, view):
        return "default" if view is None else str(view)

    def predict(self, windows, view=None):
        windows = np.asarray(windows)
        assert windows.shape[1:] == (WIN,) and windows.dtype == np.float32
        self.calls.append(len(windows))
        yes, no = (windows == 1).mean(1), (windows == -1).mean(1)
        scores = np.stack([1 - yes - no, np.zeros_like(yes), yes, no], axis=1)
        return scores, [self.labels[i] for i in scores.argmax(1)]


def stream(length_ms, bursts):
    """Silence with bursts ``(start_ms, length_ms, value)``."""
    x = np.zeros(length_ms * SR // 1000, np.float32)
    for start, n, v in bursts:
        x[start:start + n] = v
    return x


SHARP = StreamSpec(hop_ms=10, smooth_ms=0, threshold=0.7, suppress_ms=1000)


def test_a_word_fires_once_at_the_first_window_that_reaches_the_threshold():
    found = detect(FakeModel(), stream(2000, [(500, 100, 1.0)]), SHARP)
    # window [s, s + 100) holds (s + 100 - 500) / 100 of the word for s <= 500: 0.7 at s = 470
    assert found == [Detection("yes", pytest.approx(0.7), 0.47, 0.57)]


def test_smoothing_delays_a_word_and_drops_a_blip():
    model = FakeModel()
    smooth = SHARP.model_copy(update={"smooth_ms": 30})  # the last 4 windows
    (d,) = detect(model, stream(2000, [(500, 100, 1.0)]), smooth)
    # window s holds (s - 400) / 100 of the word; the mean of windows s-30..s is (4 s - 1660) / 400,
    # >= 0.7 first at s = 490 (0.75), not at 470 as unsmoothed
    assert (d.label, d.start_s, d.score) == ("yes", 0.49, pytest.approx(0.75))
    blip = stream(2000, [(500, 72, 1.0)])  # three windows see 0.72, their neighbours less
    assert [x.label for x in detect(model, blip, SHARP)] == ["yes"]
    # over 6 windows the best mean is (0.6 + 0.7 + 3 * 0.72 + 0.62) / 6 = 0.68
    assert detect(model, blip, SHARP.model_copy(update={"smooth_ms": 50})) == []


def test_suppression_merges_close_words_only():
    x = stream(3000, [(500, 100, 1.0), (900, 100, -1.0), (2200, 100, 1.0)])
    assert [d.label for d in detect(FakeModel(), x, SHARP)] == ["yes", "yes"]  # "no" 400 ms later: suppressed
    quick = SHARP.model_copy(update={"suppress_ms": 200})
    assert [d.label for d in detect(FakeModel(), x, quick)] == ["yes", "no", "yes"]


def test_nothing_fires_before_min_windows_windows_are_averaged():
    x = stream(2000, [(0, 100, 1.0)])  # a word at the very start: window s holds (100 - s) / 100 of it
    smooth = SHARP.model_copy(update={"smooth_ms": 30})  # 4 windows once the stream is 130 ms long
    (d,) = detect(FakeModel(), x, smooth)
    assert (d.start_s, d.score) == (0.0, pytest.approx(1.0))  # one window fires alone
    (d,) = detect(FakeModel(), x, smooth.model_copy(update={"min_windows": 4}))
    # the first full average is windows 0..30: (1.0 + 0.9 + 0.8 + 0.7) / 4
    assert (d.start_s, d.score) == (0.03, pytest.approx(0.85))
    # later in the stream the average is always full, so the rule changes nothing there
    late = stream(3000, [(1500, 100, 1.0)])
    assert detect(FakeModel(), late, smooth) == detect(FakeModel(), late, smooth.model_copy(update={"min_windows": 4}))
    with pytest.raises(ValueError, match="min_windows = 5 exceeds the 4 window"):
        StreamingDetector(FakeModel(), smooth.model_copy(update={"min_windows": 5}))


def test_background_labels_never_fire():
    assert detect(FakeModel(), stream(3000, []), SHARP) == []  # _silence_ scores 1.0 throughout
    # "yes" fires only because it is not listed as background
    x = stream(2000, [(500, 100, 1.0)])
    assert detect(FakeModel(), x, SHARP.model_copy(update={"background": ("_silence_", "yes")})) == []
    with pytest.raises(ValueError, match="every label of the model is a background label"):
        StreamingDetector(FakeModel(), SHARP.model_copy(update={"background": tuple(FakeModel.labels)}))


def test_chunks_of_any_size_give_the_same_detections_as_the_whole():
    rng = np.random.default_rng(0)
    x = stream(6000, [(300, 100, 1.0), (1700, 90, -1.0), (2600, 100, 1.0), (4100, 85, -1.0), (5800, 100, 1.0)])
    spec = StreamSpec(hop_ms=7, smooth_ms=20, threshold=0.7, suppress_ms=300, batch=3)
    whole = detect(FakeModel(), x, spec)
    assert [d.label for d in whole] == ["yes", "no", "yes", "no", "yes"]
    for _ in range(3):
        det = StreamingDetector(FakeModel(), spec)
        cuts = np.sort(rng.choice(np.arange(1, len(x)), size=40, replace=False))
        got = [d for part in np.split(x, cuts) for d in det.push(part)] + det.flush()
        assert got == whole
        assert len(det._buffer) < WIN + 7  # what is kept is bounded by one window and one hop
    # reset starts the clock again
    det.reset()
    assert det.push(x) == whole


def test_windows_run_in_batches_and_a_short_recording_is_padded_to_one_window():
    model = FakeModel()
    detect(model, stream(1000, []), StreamSpec(hop_ms=10, batch=16))
    assert sum(model.calls) == 91 and max(model.calls) == 16  # (1000 - 100) / 10 + 1 windows
    short = np.ones(80, np.float32)  # 80 ms of "yes": padded, the window scores 0.8
    (d,) = detect(FakeModel(), short, SHARP)
    assert (d.label, d.start_s, d.end_s, d.score) == ("yes", 0.0, 0.1, pytest.approx(0.8))


@pytest.mark.parametrize("bad", [{"hop_ms": 0}, {"threshold": 0}, {"threshold": 1.5}, {"smooth_ms": -1},
                                 {"suppress_ms": float("inf")}, {"hop_ms": float("nan")}, {"batch": 0},
                                 {"min_windows": 0},
                                 {"hop": 10}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        StreamSpec(**bad)


def test_bad_audio_and_models_are_refused():
    det = StreamingDetector(FakeModel(), SHARP)
    with pytest.raises(ValueError, match="mono float samples"):
        det.push(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="mono float samples"):
        det.push(np.zeros(100, np.int16))
    bad = np.zeros(300, np.float32)
    bad[7] = np.nan
    with pytest.raises(ValueError, match="1 NaN/inf sample"):
        det.push(bad)
    with pytest.raises(ValueError, match="takes features, not audio"):
        StreamingDetector(FakeModel(frontend=False))
    with pytest.raises(ValueError, match="shorter than one sample"):
        StreamingDetector(FakeModel(), StreamSpec(hop_ms=0.4))
