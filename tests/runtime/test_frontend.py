"""Parity of the numpy front-end (binkit/runtime/frontend.py) with the torch one (binkit/data/features.py).

The tolerances are the module constants ``PARITY_*`` of ``binkit.runtime.frontend`` (its docstring
states them and why they hold). Each parity case runs the torch ``FrontEnd`` (float32) and
``NumpyFrontEnd`` (float64 inside) on the same float32 waveform, for every kind with default
params and with non-default specs, on speech-like signals, white noise and edge cases (silence,
clipping, DC, an impulse, a 1e-6-amplitude signal, a bin-centred full-scale tone whose spectrum is
exactly zero away from the tone).
"""

from __future__ import annotations

import contextlib
import functools
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torchaudio

from binkit.data.features import build_frontend
from binkit.runtime import frontend as F
from binkit.runtime.frontend import PARITY_DB, PARITY_MFCC, PARITY_NATS, NumpyFrontEnd
from binkit.specs import FeaturesSpec

KINDS = ["bifsmn_logmel", "logmel", "mfcc"]

# Non-default specs (the kind is filled in per test); ids name what differs from the defaults.
NON_DEFAULT = {
    "64mel-20-7600Hz-hop320": {"n_mels": 64, "f_min": 20.0, "f_max": 7600.0, "hop_length": 320},
    "8kHz": {"sample_rate": 8000},
    "8kHz-256fft-200win-80hop": {"sample_rate": 8000, "n_fft": 256, "win_length": 200, "hop_length": 80},
    "normalized-flipped-13mfcc": {"n_mfcc": 13, "n_mels": 40},  # normalized set per kind below
    "half-second-odd-hop": {"clip_seconds": 0.5, "hop_length": 333},
}


def _spec(kind: str, extra: dict | None = None) -> FeaturesSpec:
    extra = dict(extra or {})
    if "n_mfcc" in extra:  # flip `normalized` relative to the kind's default
        extra["normalized"] = kind != "bifsmn_logmel"
    return FeaturesSpec(kind=kind, **extra)


ALL_SPECS = [pytest.param(_spec(k), id=f"{k}-default") for k in KINDS] + [
    pytest.param(_spec(k, extra), id=f"{k}-{name}") for name, extra in NON_DEFAULT.items() for k in KINDS
]


# ---------------------------------------------------------------------------------------------
# test signals, float32 in [-1, 1]
# ---------------------------------------------------------------------------------------------


@functools.cache
def speech_like(num_samples: int, sample_rate: int, seed: int) -> np.ndarray:
    """(Cached: do not modify.) Voiced harmonics with vibrato, three formant bumps, a syllable envelope and a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    f0 = rng.uniform(90, 250) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 7) * t))  # Hz, (samples,)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    formants = [(rng.uniform(500, 900), 150.0), (rng.uniform(1000, 1800), 200.0), (rng.uniform(2200, 3000), 300.0)]
    x = np.zeros(num_samples)
    for h in range(1, int(sample_rate / 2 / f0.max())):
        gain = sum(np.exp(-(((h * f0.mean()) - fc) / bw) ** 2) for fc, bw in formants) + 0.02
        x += gain / h * np.sin(h * phase)
    onset, length = rng.uniform(0.0, 0.3), rng.uniform(0.4, 0.6)
    env = np.clip((t - onset) / length, 0, 1)
    x = x * np.sin(np.pi * env) ** 2 + 3e-3 * rng.standard_normal(num_samples)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def signals(spec: FeaturesSpec) -> dict[str, np.ndarray]:
    return _signals(spec.num_samples, spec.sample_rate, spec.n_fft)


@functools.cache
def _signals(n: int, sr: int, n_fft: int) -> dict[str, np.ndarray]:
    t = np.arange(n) / sr
    rng = np.random.default_rng(123)
    impulse = np.zeros(n, np.float32)
    impulse[n // 3] = 1.0
    return {
        **{f"speech{seed}": speech_like(n, sr, seed) for seed in range(3)},
        "white-noise": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "silence": np.zeros(n, np.float32),
        "clipped-square": np.clip(3.0 * np.sin(2 * np.pi * 220.7 * t), -1, 1).astype(np.float32),
        "dc-0.5": np.full(n, 0.5, np.float32),
        "impulse": impulse,
        "quiet-1e-6": (2e-6 * speech_like(n, sr, 7)).astype(np.float32),
        # exact spectral zeros away from bins 36..38: numpy's float64 zeros meet torch's round-off
        "bin-centred-tone": np.sin(2 * np.pi * 37 * sr / n_fft * t).astype(np.float32),
    }


# ---------------------------------------------------------------------------------------------
# parity helpers
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@functools.cache
def _torch_frontend(spec_json: str):
    return build_frontend(FeaturesSpec.model_validate_json(spec_json))


def _torch(spec: FeaturesSpec, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return _torch_frontend(spec.model_dump_json())(torch.from_numpy(x)).numpy().astype(np.float64)


def _mel_power_and_energy(spec: FeaturesSpec, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mel power ``(..., n_mels, frames)`` and frame energy ``(..., 1, frames)`` (sum over all bins)."""
    power = F.spectrogram(x, F.hann_window(spec.win_length), spec.n_fft, spec.hop_length, spec.win_length,
                          power=2.0, normalized=spec.normalized)  # (..., n_freqs, frames)
    fb = F.melscale_fbanks(spec.n_fft // 2 + 1, spec.f_min, spec.mel_f_max, spec.n_mels, spec.sample_rate)
    mel = np.matmul(fb.T, power)  # (n_mels, n_freqs) @ (..., n_freqs, frames) -> (..., n_mels, frames)
    return mel, power.sum(axis=-2, keepdims=True)


def _db_twin(spec: FeaturesSpec) -> FeaturesSpec:
    return FeaturesSpec(**{**spec.model_dump(), "kind": "bifsmn_logmel"})


def _per_clip_max(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Max over the last two axes ``(n_bins, frames)`` of ``values`` where ``mask`` (0 elsewhere)."""
    if mask is not None:
        values = np.where(mask, values, 0.0)
    return values.max(axis=(-2, -1))


def _check(out: dict[str, np.ndarray], key: str, tol: float, names: list[str] | None) -> None:
    bad = np.flatnonzero(out[key].reshape(-1) > tol)
    assert bad.size == 0, {f"{key} > {tol}": {(names[i] if names else i): float(out[key].reshape(-1)[i]) for i in bad}}


def parity_errors(spec: FeaturesSpec, x: np.ndarray, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Assert every stated tolerance for clips ``x (..., samples)``; return per-clip maxima ``(...)``.

    ``names`` (one per clip, flattened) label failures.
    """
    got = NumpyFrontEnd(spec)(x).astype(np.float64)[..., 0, :, :]  # (..., n_bins, frames)
    want = _torch(spec, x)[..., 0, :, :]
    assert got.shape == want.shape
    diff = np.abs(got - want)
    mel, energy = _mel_power_and_energy(spec, x)
    range_floor = 10 ** (-F.PARITY_RANGE_DB / 10) * energy  # (..., 1, frames): 80 dB below the frame's energy
    out: dict[str, np.ndarray] = {}

    if spec.kind == "logmel":
        out["nats"] = _per_clip_max(diff, mel + spec.log_offset >= range_floor)
        _check(out, "nats", F.PARITY_NATS, names)
        out["nats_all"] = _per_clip_max(diff)
        return out

    # dB spectra of both sides (for mfcc: of the same spec with kind bifsmn_logmel)
    db_got, db_want = (got, want) if spec.kind == "bifsmn_logmel" else (
        NumpyFrontEnd(_db_twin(spec))(x).astype(np.float64)[..., 0, :, :], _torch(_db_twin(spec), x)[..., 0, :, :])
    both_floor = (db_got <= -100 + 1e-4) & (db_want <= -100 + 1e-4)
    ok = (mel >= range_floor) | both_floor  # (..., n_mels, frames)
    # every band: |sqrt(P_torch) - sqrt(P_numpy)| <= PARITY_AMPLITUDE * sqrt(E) (powers clamped at 1e-10)
    amp = np.abs(10 ** (db_got / 20) - 10 ** (db_want / 20)) / np.sqrt(np.maximum(energy, 1e-30))
    out["amplitude"] = _per_clip_max(amp)
    _check(out, "amplitude", F.PARITY_AMPLITUDE, names)
    if spec.kind == "bifsmn_logmel":
        out["db"] = _per_clip_max(diff, ok)
        _check(out, "db", F.PARITY_DB, names)
        out["db_all"] = _per_clip_max(diff)
        return out

    frames_ok = ok.all(axis=-2, keepdims=True)  # (..., 1, frames): every band in range or at the floor
    out["mfcc"] = _per_clip_max(diff, frames_ok)
    _check(out, "mfcc", F.PARITY_MFCC, names)
    out["mfcc_all"] = _per_clip_max(diff)
    # other frames: the orthonormal DCT cannot amplify the dB error, ||d mfcc||_2 <= ||d dB||_2 (+ rounding)
    excess = np.linalg.norm(got - want, axis=-2) - np.linalg.norm(db_got - db_want, axis=-2)  # (..., frames)
    out["mfcc_l2_excess"] = excess.max(axis=-1)
    _check(out, "mfcc_l2_excess", F.PARITY_MFCC, names)
    return out


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------


class TestParity:
    @pytest.mark.parametrize("spec", ALL_SPECS)
    def test_matches_torch(self, spec):
        # every test signal at once, as one batch: clips are independent (test_leading_dims_...)
        clips = signals(spec)
        parity_errors(spec, np.stack(list(clips.values())), names=list(clips))

    @pytest.mark.parametrize("kind", KINDS)
    def test_silence_is_the_floor(self, kind):
        spec = FeaturesSpec(kind=kind)
        feats = NumpyFrontEnd(spec)(np.zeros(spec.num_samples, np.float32))
        expected = {"bifsmn_logmel": -100.0, "logmel": np.log(np.float32(spec.log_offset)), "mfcc": None}[kind]
        if kind == "mfcc":
            # DCT of a constant -100 dB column: only c0 = -100 * sqrt(n_mels) is non-zero
            assert feats[0, 0] == pytest.approx(-100.0 * np.sqrt(spec.n_mels), abs=1e-3)
            np.testing.assert_allclose(feats[0, 1:], 0.0, atol=1e-4)
        else:
            np.testing.assert_array_equal(feats, np.float32(expected))

    @pytest.mark.parametrize("kind", KINDS)
    def test_float64_input_gives_the_same_features(self, kind):
        spec = FeaturesSpec(kind=kind)
        x = speech_like(spec.num_samples, spec.sample_rate, 0)
        fe = NumpyFrontEnd(spec)
        np.testing.assert_array_equal(fe(x), fe(x.astype(np.float64)))


class TestShapes:
    @pytest.mark.parametrize("spec", ALL_SPECS)
    def test_per_clip_shape_and_dtype(self, spec):
        feats = NumpyFrontEnd(spec)(np.zeros(spec.num_samples, np.float32))
        assert feats.shape == spec.shape
        assert feats.dtype == np.float32
        assert feats.flags.c_contiguous

    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("lead", [(), (1,), (4,), (2, 3)], ids=["1d", "batch1", "batch4", "2x3"])
    def test_leading_dims_match_torch_and_per_clip(self, kind, lead):
        spec = FeaturesSpec(kind=kind, n_mfcc=20)
        n = int(np.prod(lead, dtype=int))
        clips = np.stack([speech_like(spec.num_samples, spec.sample_rate, s) for s in range(n)])
        x = clips.reshape(*lead, spec.num_samples)
        fe = NumpyFrontEnd(spec)
        got = fe(x)
        assert got.shape == (*lead, *spec.shape)
        assert got.shape == _torch(spec, x).shape
        per_clip = np.stack([fe(c) for c in clips]).reshape(got.shape)
        np.testing.assert_allclose(got, per_clip, rtol=0, atol=1e-4)
        parity_errors(spec, x)

    def test_empty_batch(self):
        spec = FeaturesSpec()
        assert NumpyFrontEnd(spec)(np.zeros((0, spec.num_samples), np.float32)).shape == (0, *spec.shape)

    def test_odd_n_fft_is_refused(self):
        # torch.stft gives 1 + (samples - 1) // hop frames for odd n_fft and torchaudio's bin
        # frequencies are then off the rfft grid: the spec requires an even n_fft.
        from pydantic import ValidationError

        with pytest.raises(ValidationError, match=r"n_fft \(401\) must be even"):
            FeaturesSpec(kind="logmel", n_fft=401, win_length=400, hop_length=160)


class TestInputChecks:
    def test_dict_spec_is_validated_with_kind_defaults(self):
        fe = NumpyFrontEnd({"kind": "logmel"})
        assert fe.spec == FeaturesSpec(kind="logmel")
        assert fe.spec.n_fft == 512 and fe.spec.win_length == 400
        assert fe(np.zeros(16000, np.float32)).shape == (1, 40, 101)

    def test_dict_spec_errors_are_pydantic(self):
        from pydantic import ValidationError

        with pytest.raises(ValidationError, match="win_length"):
            NumpyFrontEnd({"n_fft": 256, "win_length": 512})

    @pytest.mark.parametrize("shape", [(15999,), (2, 16001), (16000, 2), ()])
    def test_wrong_length_quotes_the_shape(self, shape):
        with pytest.raises(ValueError, match=r"\(\.\.\., 16000\).*got shape " + re.escape(str(shape))):
            NumpyFrontEnd(FeaturesSpec())(np.zeros(shape, np.float32))

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_quotes_count_index_and_value(self, bad):
        x = np.zeros((2, 16000), np.float32)
        x[1, 7] = bad
        x[1, 9] = bad
        with pytest.raises(ValueError, match=rf"2 NaN/inf; first at index \(1, 7\), value {bad}"):
            NumpyFrontEnd(FeaturesSpec())(x)

    def test_integer_pcm_is_refused(self):
        with pytest.raises(ValueError, match="dtype int16"):
            NumpyFrontEnd(FeaturesSpec())(np.zeros(16000, np.int16))


class TestFunctional:
    @pytest.mark.parametrize("win_length", [16, 200, 400, 2048])
    def test_hann_window_is_torch_periodic_hann(self, win_length):
        got = F.hann_window(win_length)
        np.testing.assert_allclose(got, torch.hann_window(win_length, dtype=torch.float64).numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(got, torch.hann_window(win_length).double().numpy(), rtol=0, atol=1e-6)  # float32

    @pytest.mark.parametrize(
        "args",
        [(1025, 0.0, 8000.0, 32, 16000), (257, 0.0, 8000.0, 40, 16000), (1025, 20.0, 7600.0, 64, 16000),
         (129, 0.0, 4000.0, 40, 8000), (257, 0.0, 5512.5, 40, 11025), (201, 300.0, 3000.0, 10, 8000)],
        ids=["bifsmn", "logmel", "64mel", "8kHz", "odd-rate", "narrow"],
    )
    def test_melscale_fbanks_equals_torchaudio(self, args):
        got = F.melscale_fbanks(*args)
        with _torch_default_dtype(torch.float64):  # same formula: equal to float64 rounding
            want64 = torchaudio.functional.melscale_fbanks(*args, norm=None, mel_scale="htk").numpy()
        assert got.shape == want64.shape == (args[0], args[3])
        np.testing.assert_allclose(got, want64, rtol=0, atol=1e-12)
        # what FrontEnd uses: torchaudio builds it in float32 (linspace, 10 ** x), off by up to ~6e-6
        want32 = torchaudio.functional.melscale_fbanks(*args, norm=None, mel_scale="htk").double().numpy()
        np.testing.assert_allclose(got, want32, rtol=0, atol=1e-5)

    @pytest.mark.parametrize(("n_mfcc", "n_mels"), [(32, 32), (40, 40), (13, 40), (1, 1), (20, 64)])
    def test_create_dct_equals_torchaudio(self, n_mfcc, n_mels):
        got = F.create_dct(n_mfcc, n_mels)
        with _torch_default_dtype(torch.float64):
            want64 = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho").numpy()
        assert got.shape == want64.shape == (n_mels, n_mfcc)
        np.testing.assert_allclose(got, want64, rtol=0, atol=1e-12)
        # float32 cos of arguments up to ~pi * n_mfcc: off by up to ~3e-6
        want32 = torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho").double().numpy()
        np.testing.assert_allclose(got, want32, rtol=0, atol=1e-5)

    def test_create_dct_is_orthonormal(self):
        d = F.create_dct(40, 40)
        np.testing.assert_allclose(d.T @ d, np.eye(40), atol=1e-12)

    @pytest.mark.parametrize(("power", "normalized"), [(2.0, True), (2.0, False), (1.0, True), (1.0, False)])
    @pytest.mark.parametrize(("n_fft", "win_length", "hop_length"), [(512, 400, 160), (2048, 2048, 512), (255, 200, 64)])
    def test_spectrogram_equals_torchaudio(self, power, normalized, n_fft, win_length, hop_length):
        x = np.stack([speech_like(4000, 16000, s) for s in range(2)])  # (2, samples)
        window = torch.hann_window(win_length)
        want = torchaudio.functional.spectrogram(torch.from_numpy(x), 0, window, n_fft, hop_length, win_length,
                                                 power, normalized).double().numpy()
        got = F.spectrogram(x, F.hann_window(win_length), n_fft, hop_length, win_length, power, normalized)
        assert got.shape == want.shape == (2, n_fft // 2 + 1, want.shape[-1])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())

    def test_amplitude_to_db_equals_torchaudio(self):
        x = np.array([0.0, 1e-12, 1e-10, 1e-3, 1.0, 123.0])
        want = torchaudio.transforms.AmplitudeToDB("power", top_db=None)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(F.amplitude_to_db(x), want, atol=1e-9)
        assert F.amplitude_to_db(x)[0] == -100.0

    def test_spectrogram_argument_checks(self):
        w = F.hann_window(400)
        with pytest.raises(ValueError, match="win_length"):
            F.spectrogram(np.zeros(1000), w, 256, 160, 400)
        with pytest.raises(ValueError, match=r"window must have shape \(300,\), got \(400,\)"):
            F.spectrogram(np.zeros(1000), w, 512, 160, 300)
        with pytest.raises(ValueError, match="reflect padding"):
            F.spectrogram(np.zeros(200), w, 512, 160, 400)


def test_import_is_torch_free():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from binkit.runtime.frontend import NumpyFrontEnd
        feats = NumpyFrontEnd({"kind": "mfcc"})(np.zeros(16000, np.float32))
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
        assert "torchaudio" not in sys.modules
        print("ok", feats.shape)
    """)
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok (1, 40, 101)")


@pytest.mark.parametrize("kind", ["bifsmn_logmel", "logmel", "mfcc"])
def test_numpy_twin_matches_the_training_pipelines_fast_frontend(kind):
    """Deployment features vs the features training actually used (BatchFrontEnd)."""
    from binkit.data.features import BatchFrontEnd

    spec = FeaturesSpec(kind=kind)
    x = np.stack([speech_like(spec.num_samples, spec.sample_rate, s) for s in range(3)]).astype(np.float32)
    with torch.no_grad():
        fast = BatchFrontEnd(spec)(torch.from_numpy(x)).numpy().astype(np.float64)
    twin = NumpyFrontEnd(spec)(x).astype(np.float64)
    bound = {"bifsmn_logmel": PARITY_DB, "logmel": PARITY_NATS, "mfcc": PARITY_MFCC}[kind]
    assert np.abs(fast - twin).max() <= bound
