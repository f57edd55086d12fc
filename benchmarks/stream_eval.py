"""How well `binkit stream` finds keywords in a long recording built from a tree's test split.

The recording strings together every test clip of the tree's keyword words (the model's labels
other than the ``--background`` ones, ``_silence_``/``_unknown_`` by default) and as many clips of
other words (non-keywords, which must not fire), in a seeded random order, each followed by a gap
of ``--gap-ms`` of silence;
``--snr DB`` adds the tree's background noise over the whole recording at that SNR (relative to
the speech power). Torch-free: the clips are read with soundfile, the model runs on the runtime.

A detection is a **hit** when its window overlaps a keyword clip of the same label that no
earlier detection claimed; a detection of the wrong label on a keyword clip is a **confusion**;
anything else (on a non-keyword clip, in a gap, a second detection of one word) is a **false
alarm**. Reported: hit rate over the keyword clips, confusions, false alarms per hour of audio.

    python benchmarks/stream_eval.py model.bkm data/speech_commands_synth_full --snr 10 \\
        --hop-ms 100 --smooth-ms 500 --threshold 0.7 --suppress-ms 1000 --min-windows 1

The detector flags are `binkit stream`'s (binkit.runtime.stream.add_spec_arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

def build_stream(tree: Path, keywords: list[str], sample_rate: int, gap_ms: float, seed: int,
                 snr_db: float | None = None) -> tuple[np.ndarray, list[tuple[int, int, str | None]]]:
    """``(audio, [(start, end, keyword or None), ...])`` from ``tree``'s testing_list.txt."""
    from binkit.runtime.audio import load_clip

    test = [line for line in (tree / "testing_list.txt").read_text().split() if line]
    if not test:
        raise SystemExit(f"{tree}: testing_list.txt lists no clips")
    words = [t for t in test if t.split("/")[0] in keywords]
    others = [t for t in test if t.split("/")[0] not in keywords]
    if not words:
        raise SystemExit(f"{tree}: no test clip of the model's keywords ({', '.join(keywords)})")
    rng = np.random.default_rng(seed)
    others = list(rng.permutation(others)[:len(words)]) if others else []
    order = rng.permutation(np.array(words + others, dtype=object))
    gap = np.zeros(int(gap_ms * sample_rate / 1000), np.float32)
    parts, spans, pos = [gap], [], len(gap)
    for rel in order:
        clip = load_clip(tree / rel, sample_rate, None)
        word = rel.split("/")[0]
        spans.append((pos, pos + len(clip), word if word in keywords else None))
        parts += [clip, gap]
        pos += len(clip) + len(gap)
    audio = np.concatenate(parts)
    if snr_db is not None:
        noise_files = sorted((tree / "_background_noise_").glob("*.wav"))
        if not noise_files:
            raise SystemExit(f"{tree}: --snr needs _background_noise_/*.wav")
        noise = np.concatenate([load_clip(f, sample_rate, None) for f in noise_files])
        reps = -(-len(audio) // len(noise))
        noise = np.tile(noise, reps)
        start = int(rng.integers(0, len(noise) - len(audio) + 1))
        noise = noise[start:start + len(audio)]
        speech = np.concatenate([audio[a:b] for a, b, _ in spans])
        gain = np.sqrt(np.mean(speech.astype(np.float64) ** 2) / (np.mean(noise.astype(np.float64) ** 2)
                                                                    * 10 ** (snr_db / 10)))
        audio = np.clip(audio + gain * noise, -1, 1).astype(np.float32)
    return audio, spans


def score(detections, spans, sample_rate: int, seconds: float) -> dict:
    """Hits, confusions and false alarms of ``detections`` against the clip ``spans``."""
    claimed: set[int] = set()
    hits = confusions = false_alarms = 0
    for d in detections:
        a, b = round(d.start_s * sample_rate), round(d.end_s * sample_rate)
        over = [i for i, (s, e, w) in enumerate(spans) if w is not None and s < b and a < e and i not in claimed]
        same = [i for i in over if spans[i][2] == d.label]
        if same:
            claimed.add(same[0])
            hits += 1
        elif over:
            claimed.add(over[0])
            confusions += 1
        else:
            false_alarms += 1
    keywords = sum(1 for *_, w in spans if w is not None)
    return {"keyword_clips": keywords, "other_clips": len(spans) - keywords, "detections": len(detections),
            "hits": hits, "hit_rate": hits / keywords, "confusions": confusions,
            "false_alarms": false_alarms, "false_alarms_per_hour": false_alarms / seconds * 3600,
            "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="artifact (.bkm) with a front-end")
    ap.add_argument("tree", type=Path, help="a Speech Commands tree (its testing_list.txt clips)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--view", default=None)
    ap.add_argument("--snr", type=float, default=None, help="add the tree's background noise at this SNR (dB)")
    ap.add_argument("--gap-ms", type=float, default=1000.0, help="silence after each clip (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="clip order and noise crop")
    from binkit.runtime.stream import add_spec_arguments, detect, spec_from_args

    add_spec_arguments(ap)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)

    import binkit.runtime

    from binkit.errors import BinkitError

    try:
        spec = spec_from_args(args)
        model = binkit.runtime.load(args.model, backend=args.backend)
    except (BinkitError, ValueError) as exc:
        ap.error(str(exc))
    if model.frontend is None:
        raise SystemExit(f"{args.model}: the model takes features, not audio")
    sr = int(model.frontend.spec.sample_rate)
    keywords = [label for label in model.labels if label not in spec.background]
    audio, spans = build_stream(args.tree, keywords, sr, args.gap_ms, args.seed, args.snr)
    found = detect(model, audio, spec, args.view)
    result = score(found, spans, sr, len(audio) / sr)
    result.update({"model": str(args.model), "tree": str(args.tree), "snr_db": args.snr, "view": args.view,
                   "backend": model.backend, "settings": spec.model_dump(mode="json")})
    print(f"{result['keyword_clips']} keyword + {result['other_clips']} other clips, {result['seconds']:.0f} s "
          f"(SNR {'clean' if args.snr is None else f'{args.snr:g} dB'}): hit rate {result['hit_rate']:.4f} "
          f"({result['hits']}), confusions {result['confusions']}, false alarms {result['false_alarms']} "
          f"({result['false_alarms_per_hour']:.1f} per hour)")
    if args.json:
        from binkit.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
