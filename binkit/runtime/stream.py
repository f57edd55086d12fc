"""Streaming keyword detection over long audio (torch-free): ``binkit stream MODEL AUDIO``.

The model classifies clips of one fixed length (1 s for the Speech Commands models). Over a
longer recording or a live stream, :class:`StreamingDetector` runs it on a window of that length
every ``hop_ms``, then:

1. **posterior smoothing**: each class's softmax score is averaged over the windows of the last
   ``smooth_ms`` (at least the current one);
2. **decision**: the class with the best smoothed score fires when that score reaches
   ``threshold``, unless it is a background label (``_silence_``, ``_unknown_`` by default);
3. **suppression**: after a detection, nothing fires for ``suppress_ms`` (one spoken word spans
   several overlapping windows);
4. **minimum count**: nothing fires until ``min_windows`` windows are in the average, so at the
   start of a stream one window's scores cannot fire alone (default 1: no such wait).

A detection is stamped with the window that fired (``start_s``, ``end_s``: the detector knows
of the word at ``end_s``), its label and smoothed score. Feeding audio in chunks of any size
gives the same detections as feeding it whole (windows are computed in batches either way).
This is the scheme of the TensorFlow speech_commands streaming example (``RecognizeCommands``:
average window, detection threshold, suppression time, minimum count). With a regular hop the
average holds ``smooth_ms // hop_ms + 1`` windows once the stream is that long, so the minimum
count only matters at the start, as in the TF example.

    model = binkit.runtime.load("bifsmn.bkm")
    detections = detect(model, waveform)                      # a whole recording
    detector = StreamingDetector(model, StreamSpec(threshold=0.8))
    for chunk in microphone_chunks():                         # a live stream
        for d in detector.push(chunk):
            print(d.end_s, d.label, d.score)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Detection", "StreamSpec", "StreamingDetector", "add_spec_arguments", "detect", "detect_file",
           "spec_from_args"]

BACKGROUND = ("_silence_", "_unknown_")


class StreamSpec(BaseModel):
    """Settings of the streaming detector (validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hop_ms: float = Field(100.0, gt=0, description="one window every hop_ms")
    smooth_ms: float = Field(500.0, ge=0, description="average the scores of the windows of the last smooth_ms")
    threshold: float = Field(0.7, gt=0, le=1, description="smoothed score at which a keyword fires")
    suppress_ms: float = Field(1000.0, ge=0, description="no detection for suppress_ms after one")
    min_windows: int = Field(1, ge=1, description="windows that must be in the average before a keyword "
                             "fires (the TF example's minimum_count)")
    background: tuple[str, ...] = Field(BACKGROUND, description="labels that never fire")
    batch: int = Field(64, ge=1, description="windows run through the model at once")

    @model_validator(mode="after")
    def _finite(self) -> StreamSpec:
        for name in ("hop_ms", "smooth_ms", "suppress_ms"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        return self


@dataclass(frozen=True)
class Detection:
    """A keyword found in the stream: the window ``[start_s, end_s)`` that fired."""

    label: str
    score: float
    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StreamingDetector:
    """Push audio in, get :class:`Detection` s out (see the module docstring).

    Args:
        model: a :class:`binkit.runtime.model.RuntimeModel` with a front-end (it takes waveforms).
        spec: the detector settings; ``None`` for the defaults.
        view: the model view (thinness) to run; ``None`` for its default.

    Raises:
        ValueError: the model takes features, not audio; no label would ever fire (every label is
            background, or ``min_windows`` exceeds the smoothing span); the hop is shorter than
            one sample.
    """

    def __init__(self, model: Any, spec: StreamSpec | None = None, view: str | int | None = None) -> None:
        if getattr(model, "frontend", None) is None:
            raise ValueError("the model has no front-end spec: it takes features, not audio, so it cannot stream")
        self.model = model
        self.spec = spec or StreamSpec()
        self.view = model.resolve_view(view)
        fe = model.frontend.spec
        self.sample_rate = int(fe.sample_rate)
        self.window = int(fe.num_samples)
        self.hop = int(round(self.spec.hop_ms * self.sample_rate / 1000))
        if self.hop < 1:
            raise ValueError(f"hop_ms = {self.spec.hop_ms} is shorter than one sample at {self.sample_rate} Hz")
        self.smooth = int(self.spec.smooth_ms // self.spec.hop_ms) + 1  # windows starting within smooth_ms
        if self.spec.min_windows > self.smooth:
            raise ValueError(f"min_windows = {self.spec.min_windows} exceeds the {self.smooth} window(s) that "
                             f"smooth_ms = {self.spec.smooth_ms:g} averages at hop_ms = {self.spec.hop_ms:g}; "
                             "nothing could fire")
        self.suppress = int(round(self.spec.suppress_ms * self.sample_rate / 1000))
        self.keywords = np.array([label not in self.spec.background for label in model.labels])
        if not self.keywords.any():
            raise ValueError(f"every label of the model is a background label ({', '.join(model.labels)}); "
                             "nothing could fire")
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample pushed is at time 0."""
        self._buffer = np.zeros(0, np.float32)  # samples from _start on
        self._start = 0  # stream position of _buffer[0]
        self._next = 0  # stream position where the next window starts
        self._recent: list[np.ndarray] = []  # scores of the last `smooth` windows
        self._last_fire: int | None = None  # end sample of the last detection

    def push(self, samples: Any) -> list[Detection]:
        """Append ``samples`` (float, mono, in [-1, 1], at the model's rate); return the detections
        of every window that is now complete."""
        x = np.asarray(samples)
        if x.dtype.kind != "f" or x.ndim != 1:
            raise ValueError(f"push takes mono float samples (n,), got dtype {x.dtype} shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"the audio holds {int((~np.isfinite(x)).sum())} NaN/inf sample(s)")
        self._buffer = np.concatenate([self._buffer, x.astype(np.float32, copy=False)])
        found: list[Detection] = []
        end = self._start + len(self._buffer)
        while self._next + self.window <= end:
            starts = list(range(self._next, min(end - self.window, self._next + (self.spec.batch - 1) * self.hop) + 1,
                                self.hop))
            windows = np.stack([self._buffer[s - self._start:s - self._start + self.window] for s in starts])
            scores, _ = self.model.predict(windows, view=self.view)
            for start, row in zip(starts, scores):
                d = self._decide(start, row)
                if d is not None:
                    found.append(d)
            self._next = starts[-1] + self.hop
        drop = min(self._next, end) - self._start  # samples no future window needs
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._start += drop
        return found

    def flush(self) -> list[Detection]:
        """End of stream: a stream shorter than one window is zero-padded to one window (so a
        short file still gets an answer); otherwise nothing is added."""
        if self._next == 0 and len(self._buffer):
            return self.push(np.zeros(self.window - len(self._buffer), np.float32))
        return []

    def _decide(self, start: int, row: np.ndarray) -> Detection | None:
        self._recent.append(np.asarray(row, np.float64))
        if len(self._recent) > self.smooth:
            self._recent.pop(0)
        avg = np.mean(self._recent, axis=0)
        end = start + self.window
        if len(self._recent) < self.spec.min_windows:
            return None
        if self._last_fire is not None and end - self._last_fire < self.suppress:
            return None
        best = int(np.argmax(avg))
        if not self.keywords[best] or avg[best] < self.spec.threshold:
            return None
        self._last_fire = end
        sr = self.sample_rate
        return Detection(self.model.labels[best], float(avg[best]), start / sr, end / sr)


def add_spec_arguments(parser: Any) -> None:
    """Add the detector settings to an ``argparse`` parser (``binkit stream``, stream_eval.py)."""
    d = StreamSpec()
    parser.add_argument("--hop-ms", type=float, default=d.hop_ms, help=f"window hop (default {d.hop_ms:g})")
    parser.add_argument("--smooth-ms", type=float, default=d.smooth_ms,
                        help=f"score averaging span (default {d.smooth_ms:g})")
    parser.add_argument("--threshold", type=float, default=d.threshold,
                        help=f"smoothed score that fires (default {d.threshold:g})")
    parser.add_argument("--suppress-ms", type=float, default=d.suppress_ms,
                        help=f"quiet time after a detection (default {d.suppress_ms:g})")
    parser.add_argument("--min-windows", type=int, default=d.min_windows,
                        help="windows that must be in the average before anything fires; matters at the "
                        f"start of a stream (default {d.min_windows})")
    parser.add_argument("--background", default=None,
                        help=f"comma-separated labels that never fire (default {','.join(d.background)})")


def spec_from_args(args: Any) -> StreamSpec:
    """The :class:`StreamSpec` of arguments added by :func:`add_spec_arguments`.

    Raises:
        pydantic.ValidationError: a setting is out of range (a ``ValueError``).
    """
    extra = {} if args.background is None else {"background": tuple(b for b in args.background.split(",") if b)}
    return StreamSpec(hop_ms=args.hop_ms, smooth_ms=args.smooth_ms, threshold=args.threshold,
                      suppress_ms=args.suppress_ms, min_windows=args.min_windows, **extra)


def detect(model: Any, audio: Any, spec: StreamSpec | None = None, view: str | int | None = None) -> list[Detection]:
    """Every detection in a whole recording ``audio`` (mono float samples at the model's rate)."""
    det = StreamingDetector(model, spec, view)
    return det.push(audio) + det.flush()


def detect_file(model_path: str, audio_path: str, spec: StreamSpec | None = None, *, backend: str = "auto",
                view: str | None = None) -> tuple[list[Detection], float]:
    """``binkit stream``: load the artifact and the audio file (mixed to mono, resampled to the
    model's rate); returns the detections and the audio's duration in seconds.

    Raises:
        AudioError: the file is missing, corrupt, empty or unreadable.
        ArtifactError: the artifact is missing or invalid.
        ValueError: bad settings, or a model that takes features rather than audio.
    """
    from binkit.runtime.audio import load_clip
    from binkit.runtime.model import load

    model = load(model_path, backend=backend)
    if model.frontend is None:
        raise ValueError(f"{model_path}: the model has no front-end spec; it takes features, not audio")
    sr = int(model.frontend.spec.sample_rate)
    audio = load_clip(audio_path, sr, None)
    return detect(model, audio, spec, view), len(audio) / sr
