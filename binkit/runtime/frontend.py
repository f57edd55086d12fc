"""The numpy twin of the torchaudio front-end (``binkit.data.features.FrontEnd``), torch-free.

A deployment device (a Raspberry Pi running :mod:`binkit.runtime`) turns a waveform into the
features the model was trained on with :class:`NumpyFrontEnd`; it imports numpy only. The three
kinds are defined in the :class:`binkit.specs.FeaturesSpec` docstring; the functions below mirror
``torchaudio.functional`` (same names and argument names: ``n_fft``, ``hop_length``, ``n_mels``,
``sample_rate``), so the two can be compared argument by argument:

* :func:`hann_window` = ``torch.hann_window(win_length)`` (periodic);
* :func:`spectrogram` = ``torchaudio.functional.spectrogram`` (centred, reflect padding, power);
* :func:`melscale_fbanks` = ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``;
* :func:`create_dct` = ``torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")``;
* :func:`amplitude_to_db` = ``torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)``.

Everything is computed in float64 and returned as float32. A 1 s clip takes about 0.4-0.6 ms
on one x86 Xeon thread at each kind's defaults, on par with the torch front-end
(``benchmarks/bench_frontend.py``); the FFT and the filterbank matmul are most of it.

Parity with the torch front-end (float32 throughout) is asserted by
``tests/runtime/test_frontend.py`` for every kind, at default and non-default specs, on
speech-like signals, white noise, silence, a clipped square wave, DC, an impulse, a
1e-6-amplitude signal and a full-scale bin-centred tone. Call a band's mel power ``P`` and its
frame's spectral energy ``E`` (the power summed over all ``n_fft // 2 + 1`` bins; ``P <= E``); the
band is *in range* when ``P >= 1e-8 E`` (within ``PARITY_RANGE_DB`` = 80 dB of ``E``). Then, with
the maxima measured on those signals (numpy 2.4, torch 2.14, x86-64; on speech and noise alone):

* ``bifsmn_logmel``: ``|diff| <= PARITY_DB`` = 0.01 dB in in-range bands and in bands at the
  -100 dB floor on both sides (measured 7.1e-4 dB; 2.3e-4 dB);
* ``logmel``: ``|diff| <= PARITY_NATS`` = 1e-3 nats where ``P + log_offset >= 1e-8 E``
  (measured 1.7e-4; 5.9e-5);
* ``mfcc``: ``|diff| <= PARITY_MFCC`` = 0.01 on frames whose every band is in range or at the
  floor (measured 4.4e-4; 1.4e-4). On other frames the orthonormal DCT keeps each frame's L2
  error at most that of its dB spectrum (+ 0.01);
* every band (dB kinds): ``|sqrt(P_torch) - sqrt(P_numpy)| <= PARITY_AMPLITUDE sqrt(E)`` with
  ``PARITY_AMPLITUDE`` = 1e-5 (measured 2.0e-6).

Where the differences come from: torch builds the window, the filterbank and the DCT matrix in
float32 (off from the exact values by up to 2.5e-7, 6e-6 and 3e-6), and its float32 STFT adds
round-off of about 1e-7 of the frame's amplitude to every bin. In-range bands thus differ by ~1e-5
relative (~1e-4 dB). A band far below ``E`` holds torch's round-off rather than its value: a DC
clip or a bin-centred tone has exact spectral zeros, float64 round-off here (clamped to the
-100 dB floor, ``AMIN`` = 1e-10) but ~140 dB below ``E`` in torch, which is above the floor for a
full-scale signal. There the dB kinds differ by up to ~9 dB (0.33 on mfcc coefficients; 1.5e-3
nats for logmel, whose ``log_offset`` hides them). Speech and anything with a noise floor stay in
range, and silence is exactly the floor on both sides.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from binkit.specs import FeaturesSpec

__all__ = [
    "AMIN",
    "PARITY_AMPLITUDE",
    "PARITY_DB",
    "PARITY_MFCC",
    "PARITY_NATS",
    "PARITY_RANGE_DB",
    "NumpyFrontEnd",
    "amplitude_to_db",
    "create_dct",
    "hann_window",
    "melscale_fbanks",
    "spectrogram",
]

#: Power floor of the dB conversion: ``10 log10(max(P, AMIN))`` (torchaudio ``AmplitudeToDB``).
AMIN = 1e-10
# Parity with the torch front-end (module docstring; asserted by tests/runtime/test_frontend.py).
#: A band is "in range" when its mel power is at most this many dB below its frame's energy.
PARITY_RANGE_DB = 80.0
#: ``bifsmn_logmel``: max abs difference (dB) in in-range bands and bands at the floor on both sides.
PARITY_DB = 0.01
#: ``logmel``: max abs difference (nats) where ``P + log_offset`` is in range.
PARITY_NATS = 1e-3
#: ``mfcc``: max abs difference on frames whose every band is in range or at the floor.
PARITY_MFCC = 0.01
#: Every band: ``|sqrt(P_torch) - sqrt(P_numpy)| <= PARITY_AMPLITUDE * sqrt(E_frame)``.
PARITY_AMPLITUDE = 1e-5


# ---------------------------------------------------------------------------------------------
# functional: stateless, every array passed explicitly
# ---------------------------------------------------------------------------------------------


def hann_window(win_length: int) -> np.ndarray:
    """Periodic Hann window, as ``torch.hann_window(win_length)``.

    ``w[n] = 0.5 - 0.5 cos(2 pi n / win_length)`` for ``n = 0 .. win_length - 1``.

    Returns:
        float64 array of shape ``(win_length,)``.
    """
    if win_length < 1:
        raise ValueError(f"win_length must be >= 1, got {win_length}")
    n = np.arange(win_length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * math.pi * n / win_length)


def spectrogram(
    waveform: np.ndarray,
    window: np.ndarray,
    n_fft: int,
    hop_length: int,
    win_length: int,
    power: float = 2.0,
    normalized: bool = False,
    center: bool = True,
) -> np.ndarray:
    """Magnitude spectrogram ``|STFT(waveform)| ** power``, as ``torchaudio.functional.spectrogram``.

    With ``center``, the signal is reflect-padded by ``n_fft // 2`` on both sides (no edge
    repeat, ``pad_mode="reflect"``). Frame ``t`` covers padded samples ``[t * hop_length,
    t * hop_length + n_fft)``; the window (``win_length`` samples) sits centred in it, at offset
    ``(n_fft - win_length) // 2``, as ``torch.stft`` pads it. Only magnitudes are returned (no
    complex output), so the FFT is taken of the ``win_length`` windowed samples zero-padded at the
    end to ``n_fft``: that changes the phase by a linear term, never ``|X|``.

    Args:
        waveform: real array of shape ``(..., samples)``; computed in float64.
        window: array of shape ``(win_length,)`` (e.g. :func:`hann_window`).
        n_fft: FFT size; ``n_fft // 2 + 1`` frequency bins.
        hop_length: samples between frame starts.
        win_length: window length in samples, ``<= n_fft``.
        power: exponent of the magnitude (2.0 = power spectrum), > 0.
        normalized: divide the STFT by ``sqrt(sum(window ** 2))`` (torchaudio's ``True`` /
            ``"window"``), i.e. the power spectrum by the window's energy.
        center: pad as above; else frames start at sample 0.

    Returns:
        float64 array of shape ``(..., n_fft // 2 + 1, frames)`` with
        ``frames = 1 + (samples + 2 * (n_fft // 2) - n_fft) // hop_length`` when centred
        (``1 + samples // hop_length`` for even ``n_fft``), ``1 + (samples - n_fft) // hop_length`` if not.

    Raises:
        ValueError: quoting the argument or shape that does not fit.
    """
    if not 1 <= win_length <= n_fft:
        raise ValueError(f"win_length must be in [1, n_fft={n_fft}], got {win_length}")
    if hop_length < 1:
        raise ValueError(f"hop_length must be >= 1, got {hop_length}")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    window = np.asarray(window, dtype=np.float64)
    if window.shape != (win_length,):
        raise ValueError(f"window must have shape ({win_length},), got {window.shape}")
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError(f"waveform must have shape (..., samples), got a 0-d array {x!r}")
    if center and n_fft // 2 >= x.shape[-1]:
        raise ValueError(f"reflect padding of n_fft // 2 = {n_fft // 2} needs more samples, got shape {x.shape}")
    if not center and x.shape[-1] < n_fft:
        raise ValueError(f"need at least n_fft = {n_fft} samples, got shape {x.shape}")
    if center:
        pad = n_fft // 2
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")  # (..., samples + 2 * pad)
    num_frames = 1 + (x.shape[-1] - n_fft) // hop_length
    offset = (n_fft - win_length) // 2  # torch.stft centres the window in the n_fft frame
    # (..., padded) -> (..., frames, win_length): a strided view, no copy
    frames = np.lib.stride_tricks.sliding_window_view(x[..., offset:], win_length, axis=-1)
    frames = frames[..., : (num_frames - 1) * hop_length + 1 : hop_length, :]
    # (..., frames, win_length) * (win_length,) -> rfft -> (..., frames, n_fft // 2 + 1) complex
    spec = np.fft.rfft(frames * window, n=n_fft, axis=-1)
    if power == 2.0:
        out = spec.real * spec.real
        out += spec.imag * spec.imag
        if normalized:
            out /= np.dot(window, window)
    else:
        out = np.abs(spec)
        if normalized:
            out /= math.sqrt(np.dot(window, window))
        out **= power
    return np.swapaxes(out, -1, -2)  # (..., n_fft // 2 + 1, frames)


def _hz_to_mel(freq: float | np.ndarray) -> float | np.ndarray:
    # HTK mel scale
    return 2595.0 * np.log10(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def melscale_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> np.ndarray:
    """Triangular HTK mel filterbank without normalisation, as ``torchaudio.functional.melscale_fbanks``.

    ``n_mels + 2`` points equally spaced on the HTK mel scale ``m = 2595 log10(1 + f / 700)``
    from ``f_min`` to ``f_max`` give the filter edges ``f_0 .. f_{n_mels + 1}`` in Hz; filter
    ``j`` rises linearly from 0 at ``f_j`` to 1 at ``f_{j+1}`` and falls back to 0 at ``f_{j+2}``
    (peak 1, no area normalisation; ``norm=None``). The STFT bins are taken at
    ``linspace(0, sample_rate // 2, n_freqs)`` Hz, exactly as torchaudio does (note the integer
    ``sample_rate // 2``).

    Returns:
        float64 array of shape ``(n_freqs, n_mels)``; ``power (..., frames, n_freqs) @ fb``
        gives ``(..., frames, n_mels)``.
    """
    all_freqs = np.linspace(0.0, float(sample_rate // 2), n_freqs)  # (n_freqs,)
    m_pts = np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    f_pts = _mel_to_hz(m_pts)  # (n_mels + 2,)
    f_diff = np.diff(f_pts)  # (n_mels + 1,)
    slopes = f_pts[None, :] - all_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]  # (n_freqs, n_mels)
    up = slopes[:, 2:] / f_diff[1:]  # (n_freqs, n_mels)
    return np.maximum(0.0, np.minimum(down, up))


def create_dct(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II matrix, as ``torchaudio.functional.create_dct(n_mfcc, n_mels, "ortho")``.

    ``D[n, k] = sqrt(2 / n_mels) cos(pi / n_mels (n + 1/2) k)``, with column ``k = 0`` further
    scaled by ``1 / sqrt(2)``.

    Returns:
        float64 array of shape ``(n_mels, n_mfcc)``; ``x (..., n_mels) @ D`` gives ``(..., n_mfcc)``.
    """
    n = np.arange(n_mels, dtype=np.float64)
    k = np.arange(n_mfcc, dtype=np.float64)[:, None]
    dct = np.cos(math.pi / n_mels * (n + 0.5) * k)  # (n_mfcc, n_mels)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / n_mels)
    return dct.T  # (n_mels, n_mfcc)


def amplitude_to_db(x: np.ndarray) -> np.ndarray:
    """Power to decibels, ``10 log10(max(x, AMIN))`` with ``AMIN = 1e-10`` (floor -100 dB).

    As ``torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)`` (reference 1.0).
    Any shape in, the same shape out.
    """
    return 10.0 * np.log10(np.maximum(x, AMIN))


# ---------------------------------------------------------------------------------------------
# the front-end object
# ---------------------------------------------------------------------------------------------


class NumpyFrontEnd:
    """``(..., samples) -> (..., 1, n_bins, frames)``: the numpy twin of ``FrontEnd``.

    Window, mel filterbank and DCT matrix are built once here; a call is :func:`spectrogram`, a
    matmul with the filterbank, the kind's log and, for ``mfcc``, a matmul with the DCT matrix.
    Clips are processed a few at a time (``chunk_clips``) so the temporaries stay in cache.

    Args:
        spec: a :class:`binkit.specs.FeaturesSpec` or a dict of its fields (validated with
            ``FeaturesSpec.model_validate``; unset fields take the kind's defaults).

    Example::

        fe = NumpyFrontEnd({"kind": "logmel"})
        feats = fe(np.zeros(16000, np.float32))  # (1, 40, 101)
    """

    #: Float64 values per STFT block (clips x frames x n_fft); 2**18 = 2 MiB, 4-5 clips at the kinds'
    #: defaults. Blocks of 2 to 8 clips ran 20-35% faster per clip than one 64-clip block, whose
    #: temporaries (~33 MB) spill the cache and are mapped afresh by malloc on every call (x86 Xeon).
    CHUNK_VALUES = 2**18

    def __init__(self, spec: FeaturesSpec | dict[str, Any]) -> None:
        self.spec = spec if isinstance(spec, FeaturesSpec) else FeaturesSpec.model_validate(spec)
        s = self.spec
        self.window = hann_window(s.win_length)  # (win_length,)
        self.fb = melscale_fbanks(s.n_fft // 2 + 1, s.f_min, s.mel_f_max, s.n_mels, s.sample_rate)  # (n_freqs, n_mels)
        self.dct = create_dct(s.n_mfcc, s.n_mels) if s.kind == "mfcc" else None  # (n_mels, n_mfcc)
        frames = 1 + (s.num_samples + 2 * (s.n_fft // 2) - s.n_fft) // s.hop_length  # as torch.stft
        self.out_shape = (1, s.num_bins, frames)  # = spec.shape for even n_fft
        self.chunk_clips = max(1, self.CHUNK_VALUES // (frames * s.n_fft))

    def _features(self, x: np.ndarray) -> np.ndarray:
        """``(clips, samples) -> (clips, frames, n_bins)`` float64, for a few clips at a time."""
        s = self.spec
        power = spectrogram(x, self.window, s.n_fft, s.hop_length, s.win_length, power=2.0,
                            normalized=s.normalized).swapaxes(-1, -2)  # (clips, frames, n_freqs), C-contiguous
        mel = power @ self.fb  # (clips, frames, n_freqs) @ (n_freqs, n_mels) -> (clips, frames, n_mels)
        if s.kind == "logmel":
            return np.log(mel + s.log_offset)
        feats = amplitude_to_db(mel)
        if self.dct is not None:
            feats = feats @ self.dct  # (clips, frames, n_mels) @ (n_mels, n_mfcc) -> (clips, frames, n_mfcc)
        return feats

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """Features of ``waveform``.

        Args:
            waveform: float32 or float64 array of shape ``(..., samples)`` with
                ``samples == spec.num_samples``, finite, nominally in [-1, 1].

        Returns:
            float32 array of shape ``(..., 1, n_bins, frames)`` (``spec.shape`` per clip).

        Raises:
            ValueError: wrong dtype (not floating: scale PCM to [-1, 1] first), wrong shape
                (quoted), or NaN/inf samples (count, first index and value quoted).
        """
        x = np.asarray(waveform)
        if x.dtype.kind != "f":
            raise ValueError(f"waveform must be float32 or float64 in [-1, 1], got dtype {x.dtype}")
        if x.ndim == 0 or x.shape[-1] != self.spec.num_samples:
            raise ValueError(
                f"waveform must have shape (..., {self.spec.num_samples}) "
                f"({self.spec.clip_seconds} s at {self.spec.sample_rate} Hz), got shape {x.shape}")
        bad = ~np.isfinite(x)
        if bad.any():
            first = tuple(int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"waveform holds non-finite samples ({int(bad.sum())} NaN/inf; first at "
                             f"index {first}, value {x[first]}) in shape {x.shape}")
        lead = x.shape[:-1]
        clips = x.reshape(-1, x.shape[-1]).astype(np.float64, copy=False)  # pack batch: (clips, samples)
        out = np.empty((clips.shape[0], *self.out_shape), np.float32)  # (clips, 1, n_bins, frames)
        for i in range(0, clips.shape[0], self.chunk_clips):
            block = clips[i : i + self.chunk_clips]
            out[i : i + block.shape[0], 0] = self._features(block).swapaxes(-1, -2)  # -> (clips, n_bins, frames)
        return out.reshape(*lead, *self.out_shape)  # unpack batch: (..., 1, n_bins, frames)
