"""``tones``: a synthetic "keyword" task made of short tone melodies.

Each class is a fixed melody of two or three notes (a pitch contour, as a keyword is a spectral
contour). Every clip draws a speaker-like pitch shift, tempo, onset, loudness and background
noise from a seeded generator, so classes overlap enough that binarization costs accuracy, yet
the task trains in seconds on a CPU. It goes through the same feature front-end as speech.

This is a stand-in for tests and the quick demo; the speech corpus is the real target.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from binkit.data.splits import LabeledSplits
from binkit.entries import DatasetEntry

# Notes in semitones above the base pitch; one melody per class.
MELODIES: list[tuple[int, ...]] = [
    (0, 7), (7, 0), (0, 4, 7), (7, 4, 0), (0, 12), (12, 0),
    (4, 4, 0), (0, 0, 7), (7, 12, 7), (0, 5, 0), (5, 0, 5), (12, 7, 12),
]


class TonesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    num_classes: int = Field(8, ge=2, le=len(MELODIES))
    train_per_class: int = Field(160, ge=1, le=100000)
    val_per_class: int = Field(40, ge=1, le=100000)
    test_per_class: int = Field(40, ge=1, le=100000)
    snr_db_min: float = Field(0.0, ge=-20, le=60, description="lowest signal-to-noise ratio, dB")
    snr_db_max: float = Field(20.0, ge=-20, le=60)
    seed: int = Field(1234, ge=0)


def synth_clip(melody: tuple[int, ...], rng: np.random.Generator, sample_rate: int,
               num_samples: int, snr_db: float) -> np.ndarray:
    """One clip ``(num_samples,)`` float32 in [-1, 1]."""
    base = 220.0 * 2 ** rng.uniform(-0.5, 0.5)  # "speaker" pitch, +-6 semitones
    note_s = rng.uniform(0.08, 0.16)  # tempo
    onset = rng.uniform(0.0, max(0.0, num_samples / sample_rate - note_s * len(melody) - 0.05))
    t = np.arange(num_samples) / sample_rate
    x = np.zeros(num_samples)
    for i, semis in enumerate(melody):
        f = base * 2 ** ((semis + rng.normal(0, 0.3)) / 12)
        start, stop = onset + i * note_s, onset + (i + 1) * note_s
        env = np.clip(np.minimum(t - start, stop - t) / 0.01, 0, 1)
        x += env * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t))
    signal_power = np.mean(x**2) + 1e-12
    noise = rng.normal(0, 1, num_samples) * np.sqrt(signal_power / 10 ** (snr_db / 10))
    y = x + noise
    return (0.5 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def make_tones(params: TonesParams, features) -> LabeledSplits:
    """Generate waveforms, featurize them with ``features`` (a FeaturesSpec), return splits."""
    from binkit.data.features import build_frontend

    rng = np.random.default_rng(params.seed)
    frontend = build_frontend(features)
    labels = ["tone_" + "-".join(map(str, m)) for m in MELODIES[: params.num_classes]]
    splits = {}
    for split, per_class in (("train", params.train_per_class), ("val", params.val_per_class),
                             ("test", params.test_per_class)):
        waves, ys = [], []
        for c in range(params.num_classes):
            for _ in range(per_class):
                snr = rng.uniform(params.snr_db_min, params.snr_db_max)
                waves.append(synth_clip(MELODIES[c], rng, features.sample_rate, features.num_samples, snr))
                ys.append(c)
        with torch.no_grad():
            x = frontend(torch.from_numpy(np.stack(waves)))  # (N, 1, n_bins, frames)
        splits[split] = torch.utils.data.TensorDataset(x, torch.tensor(ys, dtype=torch.long))
    return LabeledSplits(labels=labels, splits=splits, feature_shape=tuple(features.shape))


ENTRY = DatasetEntry(
    name="tones",
    factory=make_tones,
    params=TonesParams,
    description="synthetic tone-melody classes through the speech front-end (tests, quick demo)",
    reference="binkit",
)
