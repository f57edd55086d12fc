"""More test clips from the held-out voices: evaluate trained runs on fresh renders of them.

The synthetic full corpus holds out 11 voices for testing: 264 clips under the 12-class tf
protocol, where one clip is 0.38 points and the binomial standard error of an accuracy near
0.96 is 1.2 points, more than the spread between the binarizers being compared. A corpus
synthesized with another seed renders the same 96 voice settings again (new tempo, pitch,
loudness and position draws; new piper noise) but splits them by another salt. This script
rewrites each such tree's list files so that its test split holds exactly the original corpus's
testing voices (and its validation split the original validation voices), then evaluates every
run on the original test split and on each render's, and pools them.

No voice of the pooled test set was ever seen in training, in any rendering. The extra clips
shrink the clip-sampling noise; they add no voices, so differences between voices still weigh
as in the original split.

    binkit synth data/speech_commands_synth_full_seed1 --size full --seed 1   # and so on
    python benchmarks/heldout_renders.py data/speech_commands_synth_full \\
        data/speech_commands_synth_full_seed{1,2,3,4} \\
        --runs runs/bifsmn-full/* runs/bifsmn-full-seeds/*

Prints Markdown tables: accuracy per run and tree, then per method (cell name without its
``-seedN`` suffix) over seeds, and BiFSMN's paired differences. ``--last`` also evaluates each
run's final-epoch weights (``checkpoints/last.pt``) as ``NAME@last``, to see what checkpoint
selection on a small validation split adds to the seed-to-seed spread. Rewrites the render trees'
``testing_list.txt`` and ``validation_list.txt`` (the originals are kept as ``*.orig``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path


def voices_by_settings(tree: Path) -> dict[str, dict]:
    manifest = json.loads((tree / "manifest.json").read_text())
    return {v["settings"]: v for v in manifest["voices"]}


def relist(original: Path, render: Path) -> dict[str, int]:
    """Point ``render``'s list files at the clips of ``original``'s testing / validation voices."""
    want = voices_by_settings(original)
    have = voices_by_settings(render)
    if set(want) != set(have):
        raise SystemExit(f"{render}: not a render of the same voices as {original}")
    counts = {}
    for split, list_name in (("testing", "testing_list.txt"), ("validation", "validation_list.txt")):
        ids = {have[s]["id"] for s, v in want.items() if v["split"] == split}
        lines = sorted(f"{word.name}/{wav.name}" for word in render.iterdir()
                       if word.is_dir() and not word.name.startswith("_")
                       for wav in word.glob("*.wav") if wav.name.split("_")[0] in ids)
        path = render / list_name
        backup = render / (list_name + ".orig")
        if not backup.exists():
            path.replace(backup)
        path.write_text("\n".join(lines) + "\n")
        counts[split] = len(lines)
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("original", type=Path, help="the corpus the runs trained on")
    ap.add_argument("renders", type=Path, nargs="+", help="corpora of the same voices, other seeds")
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders (model.pt)")
    ap.add_argument("--last", action="store_true", help="also the final-epoch weights (checkpoints/last.pt)")
    args = ap.parse_args()

    from binkit.train import load_checkpoint
    from binkit.train.trainer import evaluate

    for render in args.renders:
        print(f"{render}: lists rewritten, {relist(args.original, render)} clips", file=sys.stderr)
    import torch

    entries = []  # (label, run folder, final-epoch weights?)
    for r in args.runs:
        if (r / "model.pt").is_file():
            entries.append((r.name, r, False))
            if args.last and (r / "checkpoints" / "last.pt").is_file():
                entries.append((r.name + "@last", r, True))
    trees = [args.original, *args.renders]
    data_by = {}  # (tree, features) -> splits: runs with other features get their own
    table = {}  # label -> tree -> (acc by view, clips)
    for label, run, last in entries:
        model, meta = load_checkpoint(run / "model.pt")
        if last:
            state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
        resolved = meta["resolved"]
        views = list(resolved.views) or [None]
        table[label] = {}
        for tree in trees:
            key = (tree, resolved.spec.features.model_dump_json())
            if key not in data_by:
                params = resolved.dataset_params.model_copy(update={"root": str(tree)})
                data_by[key] = resolved.dataset.factory(params, resolved.spec.features)
            data = data_by[key]
            if list(data.labels) != list(meta["labels"]):
                raise SystemExit(f"{label}: labels differ from {tree}'s")
            table[label][tree] = (evaluate(model, data, views, split="test"), len(data.splits["test"]))
        print(f"{label}: done", file=sys.stderr, flush=True)
    runs = [label for label, _, _ in entries]

    n = {t: table[runs[0]][t][1] for t in trees}
    total = sum(n.values())
    print(f"Test clips: {', '.join(f'{t.name} {n[t]}' for t in trees)}; pooled {total}.\n")
    print("| run | view | " + " | ".join(t.name for t in trees) + " | pooled |")
    print("|---|---|" + "---:|" * (len(trees) + 1))
    pooled: dict[tuple[str, str], float] = {}
    for run in runs:
        for view in table[run][trees[0]][0]:
            accs = [table[run][t][0][view] for t in trees]
            p = sum(table[run][t][0][view] * table[run][t][1] for t in trees) / total
            pooled[run, view] = p
            print(f"| {run} | {view} | " + " | ".join(f"{a:.4f}" for a in accs) + f" | {p:.4f} |")

    # per method over seeds (cells named METHOD or METHOD-seedN), the full view
    methods: dict[str, list[tuple[int, float, float]]] = {}
    for run in runs:
        m = re.fullmatch(r"(.+?)(?:-seed(\d+))?(@last)?", run)
        full = next(iter(table[run][trees[0]][0]))
        methods.setdefault(m.group(1) + (m.group(3) or ""), []).append(
            (int(m.group(2) or 0), table[run][trees[0]][0][full], pooled[run, full]))
    print("\n| method | seeds | original test: mean | sd | pooled: mean | sd |\n|---|---:|---:|---:|---:|---:|")
    for name, rows in methods.items():
        rows.sort()
        o = [r[1] for r in rows]
        p = [r[2] for r in rows]
        sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else float("nan"))
        print(f"| {name} | {len(rows)} | {statistics.mean(o):.4f} | {sd(o):.4f} | {statistics.mean(p):.4f} | {sd(p):.4f} |")
    for variant in ("", "@last"):
        if "bifsmn" + variant not in methods:
            continue
        base = {s: p for s, _, p in methods["bifsmn" + variant]}
        print(f"\n| BiFSMN{variant} minus | per seed, pooled (points) | mean | sd | paired t |\n|---|---|---:|---:|---:|")
        for name, rows in methods.items():
            if name == "bifsmn" + variant or len(rows) < 2 or name.endswith("@last") != bool(variant):
                continue
            d = [100 * (base[s] - p) for s, _, p in rows if s in base]
            if len(d) < 2:
                continue
            sd = statistics.stdev(d)
            t = statistics.mean(d) / (sd / len(d) ** 0.5) if sd else float("inf")
            print(f"| {name} | " + ", ".join(f"{x:+.2f}" for x in d) + f" | {statistics.mean(d):+.2f} | {sd:.2f} | {t:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
