"""Render the synthetic corpus: clips, background noise, split lists and manifest.

Tree written (Speech Commands V2 layout, speech_commands.md §2)::

    OUT/
      <word>/<voiceid>_nohash_<take>.wav     16 kHz mono PCM16, exactly 16,000 samples
      _background_noise_/                     white, pink, brown and babble noise + README.md
      validation_list.txt, testing_list.txt  10/10 hash rule on the voice ID (§3)
      manifest.json, README.md

One clip (:func:`render_clip`), in order:

1. speak the word with per-take jitter: tempo U(0.95, 1.05), pitch jitter U(-1, 1) (engine units,
   see ``engines.py``), and for piper the seeded VITS noise;
2. resample to 16 kHz (``binkit.runtime.audio.resample``), reading the engine output as if its rate
   were ``rate * warp`` (the voice's vocal-tract warp);
3. trim leading and trailing silence: 5 ms frames, keep from the first to the last frame within
   :data:`TRIM_THRESHOLD_DB` of the loudest frame, plus :data:`TRIM_PAD` samples each side;
4. fit in ``16000 - 2 * EDGE_MARGIN`` samples: a longer word is sped up by resampling (pitch rises
   with it) by at most :data:`MAX_COMPRESSION`; if still too long its end is cut with a 10 ms fade.
   Both are counted in the manifest (``compressed``, ``truncated``); the preset voices need neither
   except rarely;
5. 5 ms raised-cosine fades at both ends;
6. loudness: RMS of the trimmed word set to a level drawn from U(:data:`LOUDNESS_DBFS`) dBFS,
   unless that would put the peak above :data:`PEAK_LIMIT`, in which case the peak is set to
   :data:`PEAK_LIMIT` (counted as ``peak_limited``);
7. place at a uniform random offset with at least :data:`EDGE_MARGIN` zero samples at both edges;
8. quantise to int16 (round half to even, clip to +-32767).

Determinism: every random draw comes from a generator seeded by SHA-256 of
``(seed, voice_id, word, take)`` (or ``(seed, "noise", kind)``), and a piper speaker's session is
seeded from ``(seed, voice_id)``. One task renders one whole voice, words in the given order, so the
bytes written do not depend on ``jobs`` or on scheduling.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
import wave
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from binkit.atomic import atomic_write_text
from binkit.data.synth.engines import ENGINES, Speaker, get_engine, require_engines
from binkit.data.synth.voices import (
    SIZES,
    WORDS,
    Voice,
    babble_talkers,
    choose_salt,
    settings_table,
    voice_split,
    voices_for,
    which_set,
)
from binkit.errors import DatasetError
from binkit.runtime.audio import fix_length, resample

__all__ = [
    "SAMPLE_RATE",
    "CLIP_SAMPLES",
    "EDGE_MARGIN",
    "LOUDNESS_DBFS",
    "PEAK_LIMIT",
    "NOISE_KINDS",
    "BABBLE_SENTENCES",
    "synthesize",
    "render_clip",
    "trim_silence",
    "rms_dbfs",
]

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000  # 1 s
EDGE_MARGIN = 320  # 20 ms of digital silence kept at both ends of every clip
TRIM_THRESHOLD_DB = -35.0  # below the loudest 5 ms frame; kal16 and awb have a -40..-50 dB floor
TRIM_FRAME = 80  # 5 ms
TRIM_PAD = 160  # 10 ms kept outside the first/last loud frame
FADE = 80  # 5 ms raised-cosine fade at both ends of the word
MAX_COMPRESSION = 1.2  # most a too-long word is sped up before its end is cut
LOUDNESS_DBFS = (-30.0, -20.0)  # RMS of the trimmed word, drawn uniformly per clip
PEAK_LIMIT = 0.95
NOISE_DBFS = -20.0  # RMS of every background-noise file
NOISE_KINDS = ("white", "pink", "brown", "babble")
TEMPO_JITTER = 0.05  # per-take tempo in U(1 - j, 1 + j)
LISTS = ("validation_list.txt", "testing_list.txt")

# Babble text: neutral sentences with none of the 35 words (nor to/too/for/know/write/ate/won),
# so babble used as background noise never says a keyword.
BABBLE_SENTENCES = (
    "The morning train was late again because of the heavy rain.",
    "She bought fresh bread, cheese and apples at the market.",
    "Please remember the plants in the kitchen need water.",
    "We walked along the river until the sun sank behind the hills.",
    "The meeting is in the small room at the end of the hall.",
    "My brother likes painting pictures of boats and lighthouses.",
    "A warm cup of tea is the best way of starting a cold afternoon.",
    "The children built a castle of sand near the water.",
    "Could you pass me the salt and the pepper, please?",
    "The library closes early during the summer holidays.",
    "They planted roses and tulips in the garden last spring.",
    "The old clock in the station keeps perfect time.",
    "Our neighbours are having a party with music and dancing.",
    "The bus driver waved at the people waiting at the corner.",
    "I think the weather will be much better by the weekend.",
    "The museum has a new exhibition about ancient ships.",
)

_WORD_RE = re.compile(r"^[a-z]+$")


# --- seeding -----------------------------------------------------------------------------------


def _seed_int(*parts: object) -> int:
    """A 128-bit integer from SHA-256 of the parts: stable across processes and platforms."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:16], "little")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(_seed_int(*parts))


# --- signal helpers ----------------------------------------------------------------------------


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of ``x`` in dB relative to full scale 1.0 (``-inf`` for silence)."""
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20.0 * math.log10(r) if r > 0 else -math.inf


def trim_silence(x: np.ndarray, threshold_db: float = TRIM_THRESHOLD_DB, frame: int = TRIM_FRAME,
                 pad: int = TRIM_PAD) -> tuple[int, int]:
    """``(start, stop)`` of the voiced part of ``x`` ``(samples,)``; ``(0, 0)`` if all silent.

    Frames of ``frame`` samples whose RMS is within ``threshold_db`` of the loudest frame are
    voiced; the span from the first to the last voiced frame is widened by ``pad`` samples.
    """
    n = len(x) // frame
    if n == 0:
        return (0, len(x)) if np.any(x) else (0, 0)
    energy = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))  # (n,)
    peak = energy.max()
    if peak <= 0:
        return 0, 0
    loud = np.flatnonzero(energy >= peak * 10.0 ** (threshold_db / 20.0))
    return max(0, int(loud[0]) * frame - pad), min(len(x), (int(loud[-1]) + 1) * frame + pad)


def _fade(x: np.ndarray, head: int, tail: int) -> np.ndarray:
    x = x.copy()
    if head:
        head = min(head, len(x))
        x[:head] *= 0.5 - 0.5 * np.cos(np.pi * (np.arange(head) + 0.5) / head)
    if tail:
        tail = min(tail, len(x))
        x[len(x) - tail:] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(tail) + 0.5) / tail)
    return x


def _to_16k(audio: np.ndarray, sample_rate: int, warp: float = 1.0) -> np.ndarray:
    """Resample to 16 kHz, reading the input as if sampled at ``sample_rate * warp``."""
    rate = round(sample_rate * warp)
    if rate == SAMPLE_RATE:
        return np.asarray(audio, dtype=np.float32)
    return resample(audio, rate, SAMPLE_RATE)


def _fit(x: np.ndarray, max_len: int) -> tuple[np.ndarray, str]:
    """Speed up (at most MAX_COMPRESSION) and then cut ``x`` to ``max_len``; returns the action."""
    n = len(x)
    if n <= max_len:
        return x, ""
    if n <= max_len * MAX_COMPRESSION:
        return fix_length(resample(x, n, max_len), max_len), "compressed"
    x = resample(x, n, math.ceil(n / MAX_COMPRESSION))
    return _fade(x[:max_len], 0, 160), "truncated"


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32767, 32767).astype(np.int16)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    """16 kHz mono PCM16 WAV with the plain 44-byte header.

    The stdlib writer, not soundfile: libsndfile fsyncs every file on close (7 ms a clip here).
    """
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(np.asarray(samples, dtype="<i2").tobytes())


# --- one clip ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipStats:
    """What post-processing did to one clip."""

    word_samples: int  # length of the placed word
    action: str  # "", "compressed" or "truncated"
    peak_limited: bool


def render_clip(speaker: Speaker, voice: Voice, word: str, take: int, seed: int) -> tuple[np.ndarray, ClipStats]:
    """One utterance as int16 ``(16000,)`` plus what was done to it (module docstring, steps 1-8)."""
    rng = _rng(seed, voice.voice_id, word, take)
    tempo = float(rng.uniform(1.0 - TEMPO_JITTER, 1.0 + TEMPO_JITTER))
    pitch = float(rng.uniform(-1.0, 1.0))
    audio, sr = speaker.say(word, tempo=tempo, pitch=pitch)
    # coarse trim at the native rate (halves the resampling work), exact trim at 16 kHz
    start, stop = trim_silence(audio, frame=sr // 200, pad=sr // 20)
    x = _to_16k(audio[start:stop], sr, voice.warp)
    start, stop = trim_silence(x)
    if stop <= start:
        raise RuntimeError(f"{voice.engine} voice {voice.settings!r} produced silence for {word!r}")
    x, action = _fit(x[start:stop], CLIP_SAMPLES - 2 * EDGE_MARGIN)
    x = _fade(x, FADE, FADE)
    target = float(rng.uniform(*LOUDNESS_DBFS))
    gain = 10.0 ** ((target - rms_dbfs(x)) / 20.0)
    peak = float(np.max(np.abs(x)))
    limited = peak * gain > PEAK_LIMIT
    if limited:
        gain = PEAK_LIMIT / peak
    offset = int(rng.integers(EDGE_MARGIN, CLIP_SAMPLES - EDGE_MARGIN - len(x) + 1))
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float64)
    clip[offset:offset + len(x)] = x * gain
    return _to_int16(clip), ClipStats(len(x), action, limited)


# --- tasks (run in worker processes) -----------------------------------------------------------


def _voice_task(root: str, voice: Voice, words: Sequence[str], takes: int, seed: int) -> dict:
    """Render every (word, take) of one voice into ``root``; returns counters."""
    speaker = get_engine(voice.engine).speaker(voice, seed=_seed_int(seed, voice.voice_id, "speaker") % 2**31)
    stats = {"voice": voice.voice_id, "clips": 0, "compressed": 0, "truncated": 0, "peak_limited": 0,
             "max_word_ms": 0.0}
    for word in words:  # fixed order: a piper session's noise stream advances call by call
        for take in range(takes):
            clip, st = render_clip(speaker, voice, word, take, seed)
            _write_wav(Path(root) / word / f"{voice.voice_id}_nohash_{take}.wav", clip)
            stats["clips"] += 1
            if st.action:
                stats[st.action] += 1
            stats["peak_limited"] += int(st.peak_limited)
            stats["max_word_ms"] = max(stats["max_word_ms"], 1000.0 * st.word_samples / SAMPLE_RATE)
    return stats


def _colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown) above 20 Hz."""
    white = rng.standard_normal(n)
    if exponent == 0:
        return white
    spec = np.fft.rfft(white)  # (n // 2 + 1,)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    # flat below 20 Hz: no DC drift, no sub-audio rumble dominating the level
    spec *= np.maximum(freqs, 20.0) ** (-exponent / 2.0)
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def _normalise_noise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    x = x * 10.0 ** ((NOISE_DBFS - rms_dbfs(x)) / 20.0)
    peak = float(np.max(np.abs(x)))
    return x * (PEAK_LIMIT / peak) if peak > PEAK_LIMIT else x


def _babble(rng: np.random.Generator, n: int, talkers: Sequence[Voice], seed: int) -> np.ndarray:
    """Mix of ``talkers`` each reading the babble sentences in a random order with random pauses."""
    mix = np.zeros(n)
    for talker in talkers:
        speaker = get_engine(talker.engine).speaker(talker, seed=_seed_int(seed, "babble", talker.settings) % 2**31)
        pieces, length = [], 0
        order: list[int] = []
        while length < n:
            if not order:
                order = list(rng.permutation(len(BABBLE_SENTENCES)))
            audio, sr = speaker.say(BABBLE_SENTENCES[order.pop()])
            x = _to_16k(audio, sr, talker.warp)
            start, stop = trim_silence(x)
            x = x[start:stop]
            x = x * 10.0 ** ((NOISE_DBFS - rms_dbfs(x)) / 20.0)
            pause = np.zeros(int(rng.integers(int(0.15 * SAMPLE_RATE), int(0.6 * SAMPLE_RATE))))
            pieces += [x, pause]
            length += len(x) + len(pause)
        stream = np.concatenate(pieces)[:n]
        stream = np.roll(stream, int(rng.integers(0, n)))  # talkers start at different points
        mix += stream * 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0)
    return mix


def _noise_task(root: str, kind: str, seconds: float, talkers: Sequence[Voice], seed: int) -> dict:
    rng = _rng(seed, "noise", kind)
    n = round(seconds * SAMPLE_RATE)
    if kind == "babble":
        x = _babble(rng, n, talkers, seed)
    else:
        x = _colored_noise(rng, n, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    _write_wav(Path(root) / "_background_noise_" / f"{kind}_noise.wav", _to_int16(_normalise_noise(x)))
    return {"noise": kind, "file": f"{kind}_noise.wav", "seconds": n / SAMPLE_RATE}


def _run_task(task: tuple) -> dict:
    kind, args = task
    return _voice_task(*args) if kind == "voice" else _noise_task(*args)


# --- orchestration -----------------------------------------------------------------------------


class _Progress:
    """tqdm when installed, else a line on stderr every 10 %."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.done, self.enabled, self._bar, self._next = total, 0, enabled, None, 0.1
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="file")
            except ImportError:
                print(f"{desc}: {total} files", file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and self.done >= self._next * self.total:
            print(f"  {self.done}/{self.total} files", file=sys.stderr)
            self._next = math.floor(10 * self.done / self.total) / 10 + 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _check_words(words: Iterable[str] | None) -> list[str]:
    if words is None:
        return list(WORDS)
    words = list(words)
    bad = [w for w in words if not isinstance(w, str) or not _WORD_RE.match(w)]
    if not words or bad:
        raise ValueError(f"words must be a non-empty list of lowercase a-z words, got {bad or words!r}")
    if len(set(words)) != len(words):
        raise ValueError(f"words must be unique, got {words!r}")
    return words


def _check_engines(engines: Iterable[str] | None) -> list[str]:
    names = list(ENGINES) if engines is None else list(engines)
    for name in names:
        get_engine(name)  # ValueError listing the known engines
    if not names:
        raise ValueError("engines must name at least one engine")
    return names


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise DatasetError(f"{out}: directory is not empty; choose a new or empty folder, or pass "
                               "overwrite=True (binkit synth --overwrite) to replace it")


def _install_tree(tmp: Path, out: Path) -> None:
    """Move the finished tree to ``out`` with renames only: no moment shows half a tree."""
    os.chmod(tmp, 0o755)  # mkdtemp made it 0700
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _readme(manifest: dict) -> str:
    return (
        "Synthetic Speech Commands V2-layout corpus written by `binkit synth` "
        f"(size {manifest['size']}, seed {manifest['seed']}).\n\n"
        f"{manifest['counts']['clips']} one-second clips of {len(manifest['words'])} words from "
        f"{len(manifest['voices'])} synthetic voices ({', '.join(manifest['engines'])}); every voice is "
        "in exactly one split (10/10 hash rule on the voice ID).\n"
        "All settings, versions and counts are in manifest.json. Not real speech: report accuracy on "
        "this set separately from accuracy on recorded speech.\n"
    )


_NOISE_README = (
    "Background noise for augmentation and the silence class, 16 kHz mono PCM16, RMS -20 dBFS.\n\n"
    "- white_noise.wav, pink_noise.wav (1/f), brown_noise.wav (1/f^2, flat below 20 Hz): Gaussian.\n"
    "- babble_noise.wav: several synthetic talkers (not corpus voices) reading neutral sentences "
    "that contain none of the keywords, mixed.\n"
)


def synthesize(out_dir: str | os.PathLike[str], size: str = "small", seed: int = 0, jobs: int = 2,
               progress: bool = True, engines: Iterable[str] | None = None,
               words: Iterable[str] | None = None, *, overwrite: bool = False,
               noise_seconds: float | None = None) -> dict:
    """Write a synthetic Speech Commands V2-layout corpus to ``out_dir``; returns the manifest.

    Args:
        out_dir: destination folder; must be absent or empty unless ``overwrite``. The tree is
            built in a hidden sibling folder and renamed into place at the end.
        size: ``"small"`` (12 voices, 20 s noise files; under a minute on 2 cores) or ``"full"``
            (96 voices, 60 s noise files). See :data:`~binkit.data.synth.voices.SIZES`.
        seed: one integer fixing every random choice (jitter, gains, offsets, piper noise, noise
            files, voice-ID salt). The same seed gives byte-identical audio and lists for any ``jobs``.
        jobs: worker processes (>= 1; 1 renders in this process).
        progress: show a progress bar (tqdm if installed) on stderr.
        engines: engine names to use (default all: ``espeak-ng``, ``flite``, ``piper``); the size's
            voices of other engines are dropped.
        words: words to record (default the 35 V2 words); lowercase a-z.
        overwrite: replace a non-empty ``out_dir``.
        noise_seconds: length of each background-noise file (default from the size).

    Returns:
        The manifest, also written to ``out_dir/manifest.json``.

    Raises:
        EngineNotFoundError: an engine is not installed; the message names the package.
        DatasetError: ``out_dir`` is a file, or is not empty and ``overwrite`` is false.
        ValueError: unknown size or engine, bad words, ``jobs < 1``.
    """
    t0 = time.perf_counter()
    spec = SIZES.get(size)
    if spec is None:
        raise ValueError(f"unknown synth size {size!r}; known sizes: {', '.join(SIZES)}")
    if int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    word_list = _check_words(words)
    engine_names = _check_engines(engines)
    out = Path(out_dir)
    _prepare_out(out, overwrite)
    require_engines(engine_names)
    noise_seconds = spec.noise_seconds if noise_seconds is None else float(noise_seconds)
    if noise_seconds <= 0:
        raise ValueError(f"noise_seconds must be > 0, got {noise_seconds}")

    base = voices_for(size, engine_names)
    salt = choose_salt(base, int(seed), min_per_split=min(spec.min_voices_per_split, (len(base) - 1) // 2))
    voices = [v.with_salt(salt) for v in base]
    settings_table(voices)  # raises on an ID collision
    splits = {v.voice_id: voice_split(v) for v in voices}
    talkers = babble_talkers(spec.babble_talkers, engine_names)
    versions = {name: get_engine(name).version() for name in engine_names}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.synth-", dir=out.parent))
    try:
        for word in word_list:
            (tmp / word).mkdir()
        (tmp / "_background_noise_").mkdir()
        root = str(tmp)
        # Longest task first (babble), then voices; white/pink/brown are cheap.
        tasks = [("noise", (root, "babble", noise_seconds, talkers, seed))]
        tasks += [("voice", (root, v, word_list, spec.takes, seed)) for v in voices]
        tasks += [("noise", (root, kind, noise_seconds, (), seed)) for kind in NOISE_KINDS if kind != "babble"]
        total = len(voices) * len(word_list) * spec.takes + len(NOISE_KINDS)
        bar = _Progress(total, f"synth {size}", progress)
        results = []
        try:
            if jobs == 1:
                for task in tasks:
                    results.append(_run_task(task))
                    bar.update(results[-1].get("clips", 1))
            else:
                ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold torch threads
                pool = ProcessPoolExecutor(max_workers=int(jobs), mp_context=ctx)
                try:
                    pending = {pool.submit(_run_task, t) for t in tasks}
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            results.append(fut.result())  # re-raises a worker's error
                            bar.update(results[-1].get("clips", 1))
                finally:
                    # on error: drop queued tasks, let running ones finish before tmp is removed
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            bar.close()

        manifest = _manifest(size, seed, jobs, spec.takes, word_list, engine_names, versions, voices,
                             splits, salt, talkers, results, noise_seconds)
        for list_name, split in zip(LISTS, ("validation", "testing")):
            lines = sorted(f"{w}/{v.voice_id}_nohash_{t}.wav" for w in word_list for v in voices
                           if splits[v.voice_id] == split for t in range(spec.takes))
            assert all(which_set(line) == split for line in lines)
            (tmp / list_name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        (tmp / "_background_noise_" / "README.md").write_text(_NOISE_README, encoding="utf-8")
        (tmp / "README.md").write_text(_readme(manifest), encoding="utf-8")
        manifest["elapsed_s"] = round(time.perf_counter() - t0, 3)
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        _install_tree(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _manifest(size: str, seed: int, jobs: int, takes: int, words: list[str], engine_names: list[str],
              versions: dict, voices: list[Voice], splits: dict[str, str], salt: str,
              talkers: Sequence[Voice], results: list[dict], noise_seconds: float) -> dict:
    from binkit import __version__

    split_names = ("training", "validation", "testing")
    voice_stats = {r["voice"]: r for r in results if "voice" in r}
    per_split = {s: sum(1 for v in voices if splits[v.voice_id] == s) for s in split_names}
    clips_per_split = {s: per_split[s] * len(words) * takes for s in split_names}
    return {
        "format": "binkit-synth/1",
        "binkit_version": __version__,
        "size": size,
        "seed": int(seed),
        "jobs": int(jobs),
        "salt": salt,
        "sample_rate": SAMPLE_RATE,
        "clip_samples": CLIP_SAMPLES,
        "words": words,
        "takes": takes,
        "engines": {name: {"versions": versions[name], "install": get_engine(name).install_hint,
                           "voices": sum(1 for v in voices if v.engine == name)} for name in engine_names},
        "voices": [dict(v.to_dict(), split=splits[v.voice_id],
                        max_word_ms=round(voice_stats[v.voice_id]["max_word_ms"], 1)) for v in voices],
        "splits": {s: {"voices": per_split[s], "clips": clips_per_split[s]} for s in split_names},
        "counts": {
            "clips": sum(clips_per_split.values()),
            "voices": len(voices),
            "per_word": {w: {s: per_split[s] * takes for s in split_names} for w in words},
            "compressed": sum(r["compressed"] for r in voice_stats.values()),
            "truncated": sum(r["truncated"] for r in voice_stats.values()),
            "peak_limited": sum(r["peak_limited"] for r in voice_stats.values()),
        },
        "background_noise": {
            "files": sorted((r for r in results if "noise" in r), key=lambda r: NOISE_KINDS.index(r["noise"])),
            "rms_dbfs": NOISE_DBFS,
            "babble_talkers": [t.to_dict() for t in talkers],
        },
        "postprocessing": {
            "tempo_jitter": TEMPO_JITTER,
            "trim_threshold_db": TRIM_THRESHOLD_DB,
            "edge_margin_ms": 1000.0 * EDGE_MARGIN / SAMPLE_RATE,
            "loudness_dbfs": list(LOUDNESS_DBFS),
            "peak_limit": PEAK_LIMIT,
            "max_compression": MAX_COMPRESSION,
        },
    }
