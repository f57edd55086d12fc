"""Feature front-ends, built from a :class:`binkit.specs.FeaturesSpec`.

:class:`FrontEnd` is the definition, in torchaudio; :class:`BatchFrontEnd` computes the same
features several times faster for the training pipeline; the numpy twin in
:mod:`binkit.runtime.frontend` computes them without torch for deployment. Tests bind all three
within stated tolerances. The definition of each kind is in the ``FeaturesSpec`` docstring.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
import torchaudio
from torch import nn

from binkit.specs import FeaturesSpec

__all__ = ["FrontEnd", "BatchFrontEnd", "build_frontend"]


class FrontEnd(nn.Module):
    """``(..., samples) -> (..., 1, n_bins, frames)``: waveform to per-clip features."""

    def __init__(self, spec: FeaturesSpec) -> None:
        super().__init__()
        self.spec = spec
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=spec.sample_rate, n_fft=spec.n_fft, win_length=spec.win_length,
            hop_length=spec.hop_length, f_min=spec.f_min, f_max=spec.mel_f_max, n_mels=spec.n_mels,
            power=2.0, normalized=spec.normalized, center=True, pad_mode="reflect",
            norm=None, mel_scale="htk",
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)
        if spec.kind == "mfcc":
            dct = torchaudio.functional.create_dct(spec.n_mfcc, spec.n_mels, norm="ortho")
            self.register_buffer("dct_mat", dct)  # (n_mels, n_mfcc)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.mel(waveform)  # (..., n_mels, frames)
        if self.spec.kind == "logmel":
            feats = torch.log(mel + self.spec.log_offset)
        else:
            feats = self.to_db(mel)
            if self.spec.kind == "mfcc":
                # (..., frames, n_mels) @ (n_mels, n_mfcc) -> (..., frames, n_mfcc)
                feats = torch.matmul(feats.transpose(-1, -2), self.dct_mat).transpose(-1, -2)
        return feats.unsqueeze(-3)


class BatchFrontEnd(nn.Module):
    """``(..., samples) -> (..., 1, n_bins, frames)``: the features of :class:`FrontEnd`, computed faster.

    Same definition (``FeaturesSpec`` docstring) and the same window and mel filterbank tensors
    (taken from a :class:`FrontEnd`), computed differently: it frames the reflect-padded signal
    itself, takes the power spectrum as ``re^2 + im^2`` folded into one matmul with the
    filterbank (the division by the window energy folded into the filterbank too), keeps frames
    on the second-to-last axis until the end, and works through the batch ``chunk`` clips at a
    time in preallocated per-thread buffers. torchaudio's ``Spectrogram`` spends most of its time
    in ``complex.abs()`` and an in-place complex division, and fresh 25 MB intermediates per
    batch cost more in page faults than the FFT itself; this is 3-10x faster on 2 cores and
    equal within float32 rounding (``tests/data/test_pipeline.py``).
    """

    def __init__(self, spec: FeaturesSpec, *, chunk: int = 32) -> None:
        super().__init__()
        self.spec = spec
        # clips per STFT call: 32 keeps each buffer <= 8 MB (benchmarks/bench_pipeline.py)
        self.chunk = chunk
        ref = FrontEnd(spec)
        win = ref.mel.spectrogram.window.to(torch.float32)  # (win_length,) periodic Hann
        left = (spec.n_fft - spec.win_length) // 2  # torch.stft centres a shorter window
        window = torch.zeros(spec.n_fft)
        window[left:left + spec.win_length] = win
        fb = ref.mel.mel_scale.fb.to(torch.float32)  # (n_freq, n_mels)
        if spec.normalized:  # |X|^2 / sum(w^2) (torchaudio normalized="window", power 2)
            fb = fb / win.pow(2).sum()
        self.register_buffer("window", window)
        # (2 * n_freq, n_mels): rows 2k and 2k+1 weight re^2 and im^2 of bin k
        self.register_buffer("fb2", fb.repeat_interleave(2, dim=0).contiguous())
        if spec.kind == "mfcc":
            self.register_buffer("dct_mat", ref.dct_mat.to(torch.float32))  # (n_mels, n_mfcc)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)  # per-thread buffers are not state
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._local = threading.local()

    def _buffers_for(self, length: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        key = (length, device, dtype, self.chunk)
        ws = getattr(self._local, "ws", None)
        if ws is None or ws["key"] != key:
            n_fft, frames, c = self.spec.n_fft, 1 + length // self.spec.hop_length, self.chunk
            ws = {"key": key,
                  "padded": torch.empty(c, length + 2 * (n_fft // 2), device=device, dtype=dtype),
                  "frames": torch.empty(c, frames, n_fft, device=device, dtype=dtype),
                  "spectrum": torch.empty(c, frames, n_fft // 2 + 1, device=device, dtype=torch.complex64),
                  "power": torch.empty(c, frames, 2 * (n_fft // 2 + 1), device=device, dtype=dtype)}
            self._local.ws = ws
        return ws

    def _mel(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T) -> (B, frames, n_mels)`` mel power, ``chunk`` clips at a time."""
        n_fft, hop, half = self.spec.n_fft, self.spec.hop_length, self.spec.n_fft // 2
        batch, length = x.shape
        if length <= half:
            raise ValueError(f"clips of {length} samples are too short for n_fft {n_fft} (reflect padding)")
        ws = self._buffers_for(length, x.device, x.dtype)
        mel = x.new_empty((batch, 1 + length // hop, self.spec.n_mels))
        for s in range(0, batch, self.chunk):
            xc = x[s:s + self.chunk]
            k = xc.shape[0]
            padded, frames, spectrum, power = (ws[n][:k] for n in ("padded", "frames", "spectrum", "power"))
            # centred STFT: reflect-pad n_fft // 2 on both sides (torch.stft center=True, "reflect")
            padded[:, half:half + length] = xc
            padded[:, :half] = xc[:, 1:half + 1].flip(-1)
            padded[:, half + length:] = xc[:, length - half - 1:length - 1].flip(-1)
            torch.mul(padded.unfold(-1, n_fft, hop), self.window, out=frames)  # (k, frames, n_fft)
            torch.fft.rfft(frames, out=spectrum)  # (k, frames, n_freq) complex
            torch.square(torch.view_as_real(spectrum).flatten(-2), out=power)  # (k, frames, 2 * n_freq)
            torch.matmul(power, self.fb2, out=mel[s:s + k])  # (k, frames, 2 n_freq) @ (2 n_freq, n_mels)
        return mel

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        lead, length = waveform.shape[:-1], waveform.shape[-1]
        x = waveform.reshape(-1, length).to(torch.float32)  # pack batch
        if x.shape[0] == 0:  # (an empty shard of a small last batch)
            return waveform.new_zeros((*lead, 1, self.spec.num_bins, 1 + length // self.spec.hop_length))
        mel = self._mel(x)  # (B, frames, n_mels)
        kind = self.spec.kind
        if kind == "logmel":
            feats = torch.log(mel + self.spec.log_offset)
        else:
            feats = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))  # AmplitudeToDB, ref 1, no top_db
            if kind == "mfcc":
                feats = feats @ self.dct_mat  # (B, frames, n_mels) @ (n_mels, n_mfcc) -> (B, frames, n_mfcc)
        feats = feats.transpose(-1, -2).unsqueeze(-3)  # (B, 1, n_bins, frames)
        return feats.reshape(*lead, *feats.shape[-3:]).contiguous()  # unpack batch


def build_frontend(spec: FeaturesSpec) -> FrontEnd:
    """The torch front-end for ``spec``."""
    return FrontEnd(spec)
