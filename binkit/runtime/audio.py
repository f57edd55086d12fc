"""Torch-free audio reading: soundfile in, float32 mono clips of a fixed length out.

Training (the dataset cache) and deployment (``binkit infer``) read audio through this one module,
so both see identical samples. ``torchaudio.load`` is never used (it needs torchcodec + FFmpeg).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from functools import lru_cache

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


@lru_cache(maxsize=32)
def _polyphase_table(sr_in: int, sr_out: int, zero_crossings: int, beta: float,
                     rolloff: float) -> tuple[int, int, int, np.ndarray]:
    """``(p, q, half, weights (p, 2 * half))`` for ``sr_out / sr_in = p / q``.

    Output sample ``j`` sits at input position ``j * q / p``; its fractional part, hence its
    kernel, depends only on ``j mod p``, so the ``p`` kernels are computed once per rate pair.
    """
    ratio = Fraction(sr_out, sr_in)
    p, q = ratio.numerator, ratio.denominator
    cutoff = rolloff * min(1.0, float(ratio))  # of the input Nyquist
    half = math.ceil(zero_crossings / cutoff)
    taps = np.arange(-half + 1, half + 1)  # (2 * half,)
    frac = (np.arange(p) * q % p) / p  # (p,) fractional input position of phase r
    d = frac[:, None] - taps[None, :]  # (p, 2 * half) distance in input samples
    u = np.clip(d / half, -1.0, 1.0)
    w = cutoff * np.sinc(cutoff * d) * np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta)
    w.setflags(write=False)
    return p, q, half, w


def resample(x: np.ndarray, sr_in: int, sr_out: int, *, zero_crossings: int = 16,
             beta: float = 8.6, rolloff: float = 0.945) -> np.ndarray:
    """Band-limited resampling along the last axis (Kaiser-windowed sinc, polyphase).

    ``(..., samples_in) -> (..., ceil(samples_in * sr_out / sr_in))`` float32. The cutoff is
    ``rolloff * min(sr_in, sr_out) / 2``; ``zero_crossings`` sets the kernel half-width; samples
    outside the input count as zeros. Kernels are cached per rate pair.
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    p, q, half, w = _polyphase_table(int(sr_in), int(sr_out), zero_crossings, beta, rolloff)
    x = np.asarray(x, dtype=np.float64)
    n_out = -(-x.shape[-1] * p // q)  # ceil(n_in * sr_out / sr_in)
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)])  # zeros outside the input
    taps = np.arange(-half + 1, half + 1) + half  # (2 * half,) offsets into xp
    out = np.empty(x.shape[:-1] + (n_out,))
    step = 65536
    for s in range(0, n_out, step):
        j = np.arange(s, min(n_out, s + step))  # (chunk,)
        idx = (j * q // p)[:, None] + taps  # (chunk, 2 * half)
        out[..., s:s + len(j)] = np.einsum("...ck,ck->...c", xp[..., idx], w[j % p])
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
