"""Synthetic voice identities: what a "speaker" is in the synthetic Speech Commands corpus.

A :class:`Voice` is an engine plus its voice name and settings. Its *settings string* is canonical
(``engine=...;voice=...;`` then the parameters sorted by name, numbers in a fixed format), and its
8-hex-digit ID is the first 8 hex digits of SHA-1 of ``settings + ";salt=" + salt``
(speech_commands.md §9.3). Files are named ``<voice_id>_nohash_<take>.wav``, so the hash split
(speech_commands.md §3) keeps every voice in one partition, as the real data does with speakers.

The salt is chosen per corpus by :func:`choose_salt`: the seed, plus a counter bumped until each of
validation and testing holds at least ``min_voices_per_split`` voices and training the rest (the
plain 80/10/10 hash rule on 24 voices often leaves validation or testing with 0 or 1 voice; with 96
voices almost never). It is deterministic for a seed, and a different seed gives other IDs.

Identity parameters (all engines also take ``warp``, a resampling factor applied after synthesis:
``warp > 1`` raises pitch and formants and speeds up by the same factor, like a shorter vocal tract):

- espeak-ng: ``voice = <accent>+<variant>``, ``pitch`` (0-99), ``speed`` (words/min);
- flite: ``voice`` in kal16/awb/rms/slt, ``duration_stretch``, ``f0_mean`` (Hz; rms ignores
  ``int_f0_target_mean``, so its identities vary ``warp`` instead);
- piper: ``voice = en_US-joe-medium``, ``length_scale``, ``noise_scale``, ``noise_w_scale``.

Sizes: ``full`` has 96 identities (espeak-ng 56, flite 24, piper 16), ``small`` 24 (10/8/6) with at
least 2 voices in each of validation and testing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from binkit.data.speech_commands import V2_WORDS, which_set

__all__ = [
    "WORDS",
    "Voice",
    "SynthSize",
    "SIZES",
    "voices_for",
    "babble_talkers",
    "which_set",
    "choose_salt",
]

# Speech Commands V2, in the loader's documented order (keywords, digits, auxiliaries, V2 additions).
WORDS: tuple[str, ...] = tuple(V2_WORDS)


def _fmt(value: object) -> str:
    """Canonical text of a parameter value: ints as ints, floats with up to 4 decimals."""
    if isinstance(value, bool):
        raise TypeError("voice parameters are numbers or strings, not bools")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return text if text not in ("", "-0") else "0"
    return str(value)


_REQUIRED = object()


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: ``engine`` + ``voice`` + sorted ``params``; ``salt`` only changes the ID.

    Example::

        Voice.make("espeak-ng", "en-gb+f3", pitch=60, speed=150).with_salt("0").voice_id
    """

    engine: str
    voice: str
    params: tuple[tuple[str, object], ...] = ()
    salt: str = ""

    @classmethod
    def make(cls, engine: str, voice: str, **params: object) -> Voice:
        return cls(engine, voice, tuple(sorted(params.items())))

    def param(self, name: str, default: object = _REQUIRED) -> object:
        """The value of parameter ``name``; ``default`` if absent, else ``KeyError``."""
        for key, value in self.params:
            if key == name:
                return value
        if default is _REQUIRED:
            raise KeyError(f"voice {self.settings!r} has no parameter {name!r}")
        return default

    @property
    def warp(self) -> float:
        return float(self.param("warp", 1.0))

    @property
    def settings(self) -> str:
        """Canonical settings string, salt excluded: equal strings mean equal audio."""
        parts = [f"engine={self.engine}", f"voice={self.voice}"]
        parts += [f"{k}={_fmt(v)}" for k, v in self.params]
        return ";".join(parts)

    @property
    def canonical(self) -> str:
        """The string the ID hashes: settings plus salt."""
        return f"{self.settings};salt={self.salt}"

    @property
    def voice_id(self) -> str:
        """First 8 hex digits of SHA-1 of :attr:`canonical`."""
        return hashlib.sha1(self.canonical.encode("utf-8")).hexdigest()[:8]

    def with_salt(self, salt: str) -> Voice:
        return Voice(self.engine, self.voice, self.params, salt)

    def to_dict(self) -> dict:
        return {"id": self.voice_id, "engine": self.engine, "voice": self.voice,
                "params": dict(self.params), "settings": self.settings, "salt": self.salt}


@dataclass(frozen=True)
class SynthSize:
    """A preset corpus size.

    Args:
        name: ``"small"`` or ``"full"``.
        takes: utterances per (voice, word); take ``n`` is file ``<id>_nohash_<n>.wav``.
        noise_seconds: length of each ``_background_noise_`` file.
        babble_talkers: voices mixed into ``babble_noise.wav``.
        voices: builds the voice list (unsalted).
        min_voices_per_split: fewest voices validation and testing may each get.
    """

    name: str
    takes: int
    noise_seconds: float
    babble_talkers: int
    voices: Callable[[], list[Voice]] = field(repr=False, compare=False)
    min_voices_per_split: int = 1


# --- voice tables ------------------------------------------------------------------------------

_ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                   "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
_ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
_ESPEAK_PITCH = (35, 50, 65)
_ESPEAK_SPEED = (140, 160, 180, 150)
# int_f0_target_mean (Hz) pairs around each voice's own mean (measured: kal16 ~100, awb ~135, slt ~190).
_FLITE_F0 = {"kal16": (90.0, 120.0), "awb": (110.0, 155.0), "slt": (165.0, 215.0)}
_FLITE_STRETCH = (0.9, 1.0, 1.12)
_PIPER = "en_US-joe-medium"


def _full_voices() -> list[Voice]:
    voices = []
    # espeak-ng: 8 accents x 7 variants = 56; variant k of accent a is (7a + k) mod 12, so each
    # accent gets 7 distinct variants and all 12 are used; pitch and speed cycle with other periods.
    for a, accent in enumerate(_ESPEAK_ACCENTS):
        for k in range(7):
            variant = _ESPEAK_VARIANTS[(7 * a + k) % len(_ESPEAK_VARIANTS)]
            voices.append(Voice.make("espeak-ng", f"{accent}+{variant}",
                                     pitch=_ESPEAK_PITCH[(a + k) % 3],
                                     speed=_ESPEAK_SPEED[(3 * a + k) % 4]))
    # flite: 4 voices x 3 stretches x 2 pitch settings = 24.
    for name in ("kal16", "awb", "rms", "slt"):
        for stretch in _FLITE_STRETCH:
            if name == "rms":  # rms ignores int_f0_target_mean: vary the vocal-tract warp instead
                for warp in (0.94, 1.06):
                    voices.append(Voice.make("flite", name, duration_stretch=stretch, warp=warp))
            else:
                for f0 in _FLITE_F0[name]:
                    voices.append(Voice.make("flite", name, duration_stretch=stretch, f0_mean=f0))
    # piper: 2 length scales x 2 noise settings x 4 warps = 16.
    for length in (0.9, 1.05):
        for noise, noise_w in ((0.5, 0.6), (0.8, 1.0)):
            for warp in (0.92, 0.97, 1.03, 1.08):
                voices.append(Voice.make("piper", _PIPER, length_scale=length, noise_scale=noise,
                                         noise_w_scale=noise_w, warp=warp))
    return voices


def _small_voices() -> list[Voice]:
    return [
        Voice.make("espeak-ng", "en-us+m3", pitch=50, speed=160),
        Voice.make("espeak-ng", "en-gb+f2", pitch=65, speed=150),
        Voice.make("espeak-ng", "en-gb-scotland+m1", pitch=35, speed=170),
        Voice.make("espeak-ng", "en-029+f4", pitch=55, speed=145),
        Voice.make("espeak-ng", "en-us-nyc+m6", pitch=45, speed=155),
        Voice.make("flite", "kal16", duration_stretch=1.0, f0_mean=105.0),
        Voice.make("flite", "awb", duration_stretch=0.95, f0_mean=135.0),
        Voice.make("flite", "rms", duration_stretch=1.05, warp=1.0),
        Voice.make("flite", "slt", duration_stretch=1.0, f0_mean=190.0),
        Voice.make("piper", _PIPER, length_scale=0.95, noise_scale=0.667, noise_w_scale=0.8, warp=0.96),
        Voice.make("piper", _PIPER, length_scale=1.05, noise_scale=0.667, noise_w_scale=0.8, warp=1.04),
        Voice.make("piper", _PIPER, length_scale=1.0, noise_scale=0.5, noise_w_scale=0.6, warp=1.0),
        Voice.make("espeak-ng", "en-us+f1", pitch=70, speed=150),
        Voice.make("espeak-ng", "en-gb-x-rp+m2", pitch=40, speed=165),
        Voice.make("espeak-ng", "en-gb-x-gbclan+f5", pitch=60, speed=140),
        Voice.make("espeak-ng", "en-us+m7", pitch=30, speed=175),
        Voice.make("espeak-ng", "en-gb-x-gbcwmd+m4", pitch=52, speed=158),
        Voice.make("flite", "kal16", duration_stretch=1.1, f0_mean=95.0, warp=1.05),
        Voice.make("flite", "awb", duration_stretch=1.05, f0_mean=120.0, warp=0.95),
        Voice.make("flite", "rms", duration_stretch=0.95, warp=1.08),
        Voice.make("flite", "slt", duration_stretch=1.08, f0_mean=215.0, warp=1.03),
        Voice.make("piper", _PIPER, length_scale=0.9, noise_scale=0.6, noise_w_scale=0.7, warp=1.08),
        Voice.make("piper", _PIPER, length_scale=1.1, noise_scale=0.75, noise_w_scale=0.9, warp=0.92),
        Voice.make("piper", _PIPER, length_scale=1.0, noise_scale=0.8, noise_w_scale=0.5, warp=0.98),
    ]


_BABBLE = (
    # Settings outside both tables, so babble talkers are not corpus speakers (no split leakage).
    Voice.make("espeak-ng", "en-us+m8", pitch=42, speed=175),
    Voice.make("flite", "slt", duration_stretch=0.95, f0_mean=200.0),
    Voice.make("piper", _PIPER, length_scale=1.1, noise_scale=0.9, noise_w_scale=0.9, warp=0.95),
    Voice.make("espeak-ng", "en-gb-x-rp+f4", pitch=62, speed=170),
    Voice.make("flite", "awb", duration_stretch=1.05, f0_mean=125.0),
    Voice.make("piper", _PIPER, length_scale=0.92, noise_scale=0.7, noise_w_scale=0.7, warp=1.06),
    Voice.make("espeak-ng", "en-029+m4", pitch=48, speed=165),
    Voice.make("flite", "kal16", duration_stretch=1.08, f0_mean=98.0),
)

SIZES: dict[str, SynthSize] = {
    "small": SynthSize("small", takes=2, noise_seconds=20.0, babble_talkers=4, voices=_small_voices,
                       min_voices_per_split=2),
    "full": SynthSize("full", takes=2, noise_seconds=60.0, babble_talkers=8, voices=_full_voices),
}


def _size(size: str) -> SynthSize:
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown synth size {size!r}; known sizes: {', '.join(SIZES)}") from None


def voices_for(size: str, engines: Iterable[str] | None = None) -> list[Voice]:
    """The unsalted voice list of a size, in table order, optionally restricted to ``engines``."""
    voices = _size(size).voices()
    if engines is not None:
        keep = set(engines)
        voices = [v for v in voices if v.engine in keep]
    return voices


def babble_talkers(count: int, engines: Iterable[str] | None = None) -> list[Voice]:
    """The first ``count`` babble talkers whose engine is in ``engines`` (all engines if None)."""
    keep = None if engines is None else set(engines)
    return [v for v in _BABBLE if keep is None or v.engine in keep][:count]


# --- hash split --------------------------------------------------------------------------------

def choose_salt(voices: list[Voice], seed: int, max_tries: int = 10_000, min_per_split: int = 1) -> str:
    """Smallest salt ``"<seed>"``, ``"<seed>.1"``, ... giving validation and testing at least
    ``min_per_split`` voices each and training at least one.

    Also requires the salted IDs to be distinct. Needs at least ``2 * min_per_split + 1`` voices.
    """
    if len(voices) < 2 * min_per_split + 1:
        raise ValueError(f"need at least {2 * min_per_split + 1} voices for a train/validation/test split "
                         f"with {min_per_split} per held-out split, got {len(voices)}")
    for k in range(max_tries):
        salt = str(seed) if k == 0 else f"{seed}.{k}"
        ids = [v.with_salt(salt).voice_id for v in voices]
        if len(set(ids)) != len(ids):
            continue
        splits = [which_set(f"{i}_nohash_0.wav") for i in ids]
        if (splits.count("training") >= 1 and splits.count("validation") >= min_per_split
                and splits.count("testing") >= min_per_split):
            return salt
    raise RuntimeError(f"no salt in {max_tries} tries gives non-empty splits for {len(voices)} voices")


def voice_split(voice: Voice) -> str:
    """Partition of a (salted) voice under the 10/10 hash rule."""
    return which_set(f"{voice.voice_id}_nohash_0.wav")


def settings_table(voices: Iterable[Voice]) -> Mapping[str, Voice]:
    """``{voice_id: voice}``; raises ``ValueError`` on an ID collision."""
    table: dict[str, Voice] = {}
    for v in voices:
        if v.voice_id in table:
            raise ValueError(f"voice ID {v.voice_id} collides: {table[v.voice_id].settings} / {v.settings}")
        table[v.voice_id] = v
    return table
