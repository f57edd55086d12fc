"""binkit/runtime/audio.py: reading, mixdown, resampling, length fixing, errors naming files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from binkit.errors import AudioError
from binkit.runtime.audio import fix_length, load_clip, read_audio, resample


def tone(freq: float, sr: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)


class TestResample:
    @pytest.mark.parametrize("sr_in,sr_out", [(22050, 16000), (16000, 48000), (44100, 16000), (8000, 16000)])
    def test_in_band_tone_is_preserved(self, sr_in, sr_out):
        y = resample(tone(440, sr_in), sr_in, sr_out)
        assert y.dtype == np.float32 and y.shape == (int(np.ceil(sr_in * 1.0 * sr_out / sr_in)),)
        edge = sr_out // 50  # kernel edge effects at the borders
        np.testing.assert_allclose(y[edge:-edge], tone(440, sr_out)[edge:len(y) - edge], atol=2e-4)

    def test_out_of_band_tone_is_removed(self):
        y = resample(tone(10000, 22050), 22050, 16000)  # above the new Nyquist (8 kHz)
        assert np.sqrt(np.mean(y[400:-400] ** 2)) < 1e-3

    def test_leading_dims_and_identity(self):
        x = np.stack([tone(300, 22050), tone(600, 22050)])
        y = resample(x, 22050, 16000)
        np.testing.assert_allclose(y[1], resample(x[1], 22050, 16000), atol=1e-7)
        np.testing.assert_array_equal(resample(x, 16000, 16000), x.astype(np.float32))

    def test_bad_rates(self):
        with pytest.raises(ValueError, match="positive"):
            resample(np.zeros(10), 0, 16000)


class TestLoadClip:
    def test_pcm16_roundtrip_and_padding(self, tmp_path):
        x = (0.5 * tone(440, 16000, 0.5)).astype(np.float32)
        sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
        clip = load_clip(tmp_path / "a.wav")
        assert clip.shape == (16000,) and clip.dtype == np.float32
        np.testing.assert_allclose(clip[:8000], x, atol=1 / 32768 + 1e-7)
        assert not clip[8000:].any()

    def test_trim_stereo_mixdown_and_resample(self, tmp_path):
        left, right = tone(440, 22050, 1.5), tone(880, 22050, 1.5)
        sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1) * 0.4, 22050, subtype="FLOAT")
        clip = load_clip(tmp_path / "s.wav")
        assert clip.shape == (16000,)
        expected = 0.4 * (tone(440, 16000, 1.5) + tone(880, 16000, 1.5)) / 2
        np.testing.assert_allclose(clip[400:-400], expected[400:16000 - 400], atol=1e-3)

    def test_keep_length(self, tmp_path):
        sf.write(tmp_path / "a.wav", np.zeros(1234, dtype=np.float32), 16000)
        assert load_clip(tmp_path / "a.wav", num_samples=None).shape == (1234,)

    def test_missing_corrupt_empty_files_name_the_file(self, tmp_path):
        with pytest.raises(AudioError, match="nope.wav: no such file"):
            load_clip(tmp_path / "nope.wav")
        bad = tmp_path / "bad.wav"
        bad.write_bytes(b"RIFF\x00\x00\x00\x00garbage that is not audio")
        with pytest.raises(AudioError, match="bad.wav: cannot decode audio"):
            read_audio(bad)
        empty = tmp_path / "empty.wav"
        sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
        with pytest.raises(AudioError, match="empty.wav: file holds no samples"):
            load_clip(empty)

    def test_fix_length(self):
        assert fix_length(np.ones((2, 5)), 3).shape == (2, 3)
        np.testing.assert_array_equal(fix_length(np.ones(2), 4), [1, 1, 0, 0])
