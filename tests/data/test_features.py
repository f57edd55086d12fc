"""Tests of binkit/data/features.py (torch front-ends) and of ``FeaturesSpec``'s checks.

Shapes follow ``FeaturesSpec.shape``: ``(1, n_bins, 1 + samples // hop)`` (centred STFT);
BiFSMN's defaults (n_fft 2048, hop 512, 32 mel bins, 16 kHz, 1 s) give (1, 32, 32).
"""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from binkit.data.features import FrontEnd, build_frontend
from binkit.specs import FeaturesSpec


def waveform(batch: int = 2, samples: int = 16000, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed)) * 0.1


class TestShapes:
    def test_default_is_bifsmn_32x32(self):
        spec = FeaturesSpec()
        assert spec.kind == "bifsmn_logmel"
        assert spec.shape == (1, 32, 32)
        feats = build_frontend(spec)(waveform(3))
        assert feats.shape == (3, *spec.shape) == (3, 1, 32, 32)
        assert torch.isfinite(feats).all()

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"kind": "logmel"},
            {"kind": "logmel", "n_mels": 40, "n_fft": 512, "win_length": 400, "hop_length": 160},
            {"kind": "mfcc", "n_mfcc": 13},
            {"kind": "mfcc", "n_mfcc": 10, "n_mels": 40, "n_fft": 640, "win_length": 640, "hop_length": 320},
            {"kind": "bifsmn_logmel", "clip_seconds": 0.5},
        ],
        ids=["logmel", "logmel-40x101", "mfcc", "mfcc-10x51", "bifsmn-half-second"],
    )
    def test_kind_shape(self, kwargs):
        spec = FeaturesSpec(**kwargs)
        feats = build_frontend(spec)(waveform(2, spec.num_samples))
        assert feats.shape == (2, *spec.shape)
        assert feats.shape[-2] == (spec.n_mfcc if spec.kind == "mfcc" else spec.n_mels)
        assert torch.isfinite(feats).all()

    def test_leading_dims(self):
        spec = FeaturesSpec(kind="logmel")
        feats = build_frontend(spec)(torch.zeros(2, 3, spec.num_samples))
        assert feats.shape == (2, 3, *spec.shape)

    def test_single_clip(self):
        spec = FeaturesSpec()
        assert build_frontend(spec)(torch.zeros(spec.num_samples)).shape == spec.shape

    def test_build_frontend_is_a_module(self):
        front = build_frontend(FeaturesSpec(kind="mfcc", n_mfcc=13))
        assert isinstance(front, FrontEnd)
        assert "dct_mat" in dict(front.named_buffers())  # follows .to()

    def test_mfcc_defaults_are_valid(self):
        spec = FeaturesSpec(kind="mfcc")
        assert build_frontend(spec)(waveform(1)).shape == (1, *spec.shape)


class TestValues:
    def test_bifsmn_logmel_of_silence_is_minus_100_db(self):
        # AmplitudeToDB: 10 log10(max(P, 1e-10)) with P = 0 everywhere
        feats = build_frontend(FeaturesSpec())(torch.zeros(2, 16000))
        assert torch.equal(feats, torch.full((2, 1, 32, 32), -100.0))

    def test_logmel_of_silence(self):
        feats = build_frontend(FeaturesSpec(kind="logmel"))(torch.zeros(1, 16000))
        torch.testing.assert_close(feats, torch.full_like(feats, torch.log(torch.tensor(1e-6)).item()))

    def test_mfcc_is_dct_of_db_mel(self):
        mfcc = build_frontend(FeaturesSpec(kind="mfcc", n_mfcc=13))
        x = waveform(2)
        mel = mfcc.mel(x)  # (batch, n_mels, frames) power
        lm = 10 * torch.log10(torch.clamp(mel, min=1e-10))
        n = torch.arange(40, dtype=torch.float64)
        k = torch.arange(13, dtype=torch.float64)[:, None]
        dct = torch.cos(torch.pi / 40 * (n + 0.5) * k) * (2.0 / 40) ** 0.5  # (13, 40), orthonormal
        dct[0] /= 2 ** 0.5
        expected = torch.einsum("km,bmt->bkt", dct, lm.double()).float()
        torch.testing.assert_close(mfcc(x)[:, 0], expected, rtol=1e-4, atol=1e-3)

    def test_louder_is_higher(self):
        front = build_frontend(FeaturesSpec())
        x = waveform(1)
        # power scales by 100, i.e. +20 dB in every bin that is above the 1e-10 floor
        torch.testing.assert_close(front(10 * x), front(x) + 20.0, rtol=0, atol=1e-3)


class TestSpecValidation:
    def test_win_length_above_n_fft(self):
        with pytest.raises(ValidationError, match=r"win_length \(1024\) must be <= n_fft \(512\)"):
            FeaturesSpec(n_fft=512, win_length=1024)

    def test_win_length_equal_n_fft_is_fine(self):
        assert FeaturesSpec(n_fft=512, win_length=512).win_length == 512

    def test_n_mfcc_above_n_mels(self):
        with pytest.raises(ValidationError, match=r"n_mfcc \(41\) must be <= n_mels \(40\)"):
            FeaturesSpec(kind="mfcc", n_mels=40, n_mfcc=41)

    def test_n_mfcc_ignored_for_other_kinds(self):
        assert FeaturesSpec(kind="logmel", n_mels=20, n_mfcc=40).shape == (1, 20, 101)

    def test_validated_on_assignment(self):
        spec = FeaturesSpec()
        with pytest.raises(ValidationError, match="win_length"):
            spec.win_length = 4096

    @pytest.mark.parametrize("field, value", [("kind", "spectrogram"), ("n_mels", 0), ("hop_length", 0),
                                              ("sample_rate", 100)])
    def test_field_checks(self, field, value):
        with pytest.raises(ValidationError, match=field):
            FeaturesSpec(**{field: value})

    def test_unknown_field(self):
        with pytest.raises(ValidationError, match="n_mel"):
            FeaturesSpec(n_mel=40)
