"""Torch-free audio reading: soundfile in, float32 mono clips of a fixed length out.

Training (the dataset cache) and deployment (``binkit infer``) read audio through this one module,
so both see identical samples. ``torchaudio.load`` is never used (it needs torchcodec + FFmpeg).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import soundfile as sf

from binkit.errors import AudioError

__all__ = ["read_audio", "load_clip", "resample", "fix_length"]


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a file as float32 ``(channels, samples)`` in [-1, 1] plus its sample rate.

    Raises:
        AudioError: missing, unreadable, corrupt or empty file (the message names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(path, "no such file")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(path, f"cannot decode audio ({type(exc).__name__}: {exc})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "file holds no samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "file holds non-finite samples")
    return np.ascontiguousarray(data.T), int(sr)


def resample(x: np.ndarray, sr_in: int, sr_out: int, *, zero_crossings: int = 16,
             beta: float = 8.6, rolloff: float = 0.945) -> np.ndarray:
    """Band-limited resampling along the last axis (Kaiser-windowed sinc interpolation).

    ``(..., samples_in) -> (..., ceil(samples_in * sr_out / sr_in))`` float32. The cutoff is
    ``rolloff * min(sr_in, sr_out) / 2``; ``zero_crossings`` sets the kernel half-width.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    ratio = Fraction(sr_out, sr_in)
    x = np.asarray(x, dtype=np.float64)
    n_in = x.shape[-1]
    n_out = math.ceil(n_in * ratio)
    cutoff = rolloff * min(1.0, float(ratio))  # in cycles per input sample * 2
    half = int(math.ceil(zero_crossings / cutoff))
    t = np.arange(n_out) / float(ratio)  # output positions in input samples
    base = np.floor(t).astype(np.int64)
    taps = np.arange(-half + 1, half + 1)
    out = np.zeros(x.shape[:-1] + (n_out,))
    step = max(1, 262144 // (2 * half))  # bound memory: (step, 2*half) weights per chunk
    for s in range(0, n_out, step):
        idx = base[s:s + step, None] + taps  # (chunk, 2*half)
        d = t[s:s + step, None] - idx  # distance in input samples
        u = np.clip(d / half, -1.0, 1.0)
        w = cutoff * np.sinc(cutoff * d) * np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta)
        valid = (idx >= 0) & (idx < n_in)
        w = np.where(valid, w, 0.0)
        gathered = x[..., np.clip(idx, 0, n_in - 1)]  # (..., chunk, 2*half)
        out[..., s:s + step] = np.einsum("...ck,ck->...c", gathered, w)
    return out.astype(np.float32)


def fix_length(x: np.ndarray, num_samples: int) -> np.ndarray:
    """Right-pad with zeros or trim the last axis to ``num_samples``."""
    n = x.shape[-1]
    if n >= num_samples:
        return np.ascontiguousarray(x[..., :num_samples])
    pad = [(0, 0)] * (x.ndim - 1) + [(0, num_samples - n)]
    return np.pad(x, pad)


def load_clip(path: str | os.PathLike[str], sample_rate: int = 16000, num_samples: int | None = 16000) -> np.ndarray:
    """Read ``path`` as a float32 mono clip ``(num_samples,)`` at ``sample_rate``.

    Stereo is mixed down (channel mean), other rates are resampled, the result is right-padded
    with zeros or trimmed to ``num_samples`` (``None`` keeps the length).

    Raises:
        AudioError: the file is missing, corrupt, empty or unreadable.
    """
    data, sr = read_audio(path)
    mono = data.mean(axis=0) if data.shape[0] > 1 else data[0]
    if sr != sample_rate:
        mono = resample(mono, sr, sample_rate)
    if num_samples is not None:
        mono = fix_length(mono, num_samples)
    return np.ascontiguousarray(mono, dtype=np.float32)
