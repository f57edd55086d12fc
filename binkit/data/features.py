"""Feature front-ends (torchaudio), built from a :class:`binkit.specs.FeaturesSpec`.

The numpy twin in :mod:`binkit.runtime.frontend` computes the same features without torch;
tests bind the two within a stated tolerance. The definition of each kind is in the
``FeaturesSpec`` docstring.
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


def build_frontend(spec: FeaturesSpec) -> FrontEnd:
    """The torch front-end for ``spec``."""
    return FrontEnd(spec)
