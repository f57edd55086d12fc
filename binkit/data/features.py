"""Feature front-ends (torchaudio), built from a :class:`binkit.specs.FeaturesSpec`.

``bifsmn_logmel`` is BiFSMN's front-end (bifsmn.md §2): ``MelSpectrogram(n_fft, hop, n_mels,
normalized)`` (Hann window, centred, reflect padding, power 2, HTK mel, no filter norm) then
``AmplitudeToDB`` (``10 log10(max(P, 1e-10))``, no ``top_db``). ``logmel`` is the same with
``normalized=False`` and ``log(P + 1e-6)``; ``mfcc`` is torchaudio's MFCC over the log-mel.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from binkit.specs import FeaturesSpec

__all__ = ["FrontEnd", "build_frontend"]


class FrontEnd(nn.Module):
    """``(..., samples) -> (..., 1, n_bins, frames)``: waveform to per-clip features."""

    def __init__(self, spec: FeaturesSpec) -> None:
        super().__init__()
        self.spec = spec
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=spec.sample_rate, n_fft=spec.n_fft, win_length=spec.win_length,
            hop_length=spec.hop_length, n_mels=spec.n_mels,
            normalized=spec.normalized if spec.kind == "bifsmn_logmel" else False,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)
        self.dct = None
        if spec.kind == "mfcc":
            dct = torchaudio.functional.create_dct(spec.n_mfcc, spec.n_mels, norm="ortho")
            self.register_buffer("dct_mat", dct)  # (n_mels, n_mfcc)
            self.dct = True

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = self.mel(waveform)  # (..., n_mels, frames)
        if self.spec.kind == "bifsmn_logmel":
            feats = self.to_db(spec)
        else:
            feats = torch.log(spec + 1e-6)
            if self.dct is not None:
                feats = torch.matmul(feats.transpose(-1, -2), self.dct_mat).transpose(-1, -2)  # (..., n_mfcc, frames)
        return feats.unsqueeze(-3)


def build_frontend(spec: FeaturesSpec) -> FrontEnd:
    """The torch front-end for ``spec``."""
    return FrontEnd(spec)
