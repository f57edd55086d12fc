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
``-seedN`` suffix) over seeds, and each ``--baseline`` method's paired differences (BiFSMN's by
default: ``bifsmn minus`` every method that shares at least two seeds with it). ``--last`` also evaluates each
run's final-epoch weights (``checkpoints/last.pt``) as ``NAME@last``, to see what checkpoint
selection on a small validation split adds to the seed-to-seed spread. Rewrites the render trees'
``testing_list.txt`` and ``validation_list.txt`` (the originals are kept as ``*.orig``).

A harder test from the same clips: ``--snr 10 5 0`` also scores every tree's test split with
one crop of the tree's own background noise (white, pink, brown, babble in the synthetic corpus:
the files training augmentation blends in) added to each clip at each signal-to-noise
ratio, the power of each taken over the whole clip; silence entries stay as they are, and the
crops are seeded by tree and SNR, so every run meets the same noisy clips. Each noise level gets
its own tables. The clean clips saturate near 97%, where methods differ by tenths of a point;
noise spreads them apart::

    python benchmarks/heldout_renders.py data/speech_commands_synth_full \\
        data/speech_commands_synth_full_seed{1,2,3,4} --snr 10 5 0 --runs runs/bifsmn-full-last/*

Scoring where the trees are not (a GPU machine that trained the runs but cannot synthesize):
``--features PACK.pt`` with the trees writes their test splits as the exact feature tensors the
runs are evaluated on (taken with the first run's features; 5 MiB for five trees); with no trees
it scores the runs on such a pack. ``--save FILE.json`` keeps the scores, and ``--scores
FILE.json ...`` prints the tables from saved scores (several files merge) without scoring::

    python benchmarks/heldout_renders.py data/speech_commands_synth_full \\
        data/speech_commands_synth_full_seed{1,2,3,4} --features heldout.pt --runs runs/bifsmn-full/bifsmn
    # on the other machine, beside the runs:
    python benchmarks/heldout_renders.py --features heldout.pt --runs RUNS... --jobs 15 --save scores.json
    # back here:
    python benchmarks/heldout_renders.py --scores scores.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Sequence
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


def condition(key: str) -> str:
    """``""`` for a clean test split, ``"10dB"`` for one scored with noise at 10 dB SNR."""
    m = re.fullmatch(r".*@(-?[0-9.e+-]+dB)", key)
    return m.group(1) if m else ""


def test_splits(original: Path, renders: list[Path], run: Path, snrs: list[float] = ()) -> dict:
    """The test split of every tree as the feature tensors ``run`` is evaluated on.

    With ``snrs``, each tree's test split also with background noise mixed in at each SNR
    (:func:`binkit.data.augment.mix_at_snr`, the tree's own ``_background_noise_`` files, crops
    seeded by the tree's name and the SNR), keyed ``TREE@SNRdB``.
    """
    import torch

    from binkit.data.pipeline import noisy_split, snr_key
    from binkit.train import load_checkpoint

    _, meta = load_checkpoint(run / "model.pt")
    resolved = meta["resolved"]
    pack = {"labels": list(meta["labels"]), "features": resolved.spec.features.model_dump_json(), "trees": {}}
    for tree in (original, *renders):
        params = resolved.dataset_params.model_copy(update={"root": str(tree)})
        data = resolved.dataset.factory(params, resolved.spec.features)
        if list(data.labels) != pack["labels"]:
            raise SystemExit(f"{tree}: labels differ from {run}'s")
        xs, ys = zip(*data.batches("test", 256))
        pack["trees"][tree.name] = (torch.cat(xs).contiguous(), torch.cat(ys).contiguous())
        for snr in snrs:
            try:
                x, y = noisy_split(data, "test", snr, tree.name)
            except ValueError as exc:
                raise SystemExit(f"--snr: {exc}") from None
            pack["trees"][snr_key(tree.name, snr)] = (x.contiguous(), y)  # its crops' seed too
    return pack


def score_run(job: tuple[Path, bool, dict, bool]) -> dict[str, list]:
    """``{tree: [accuracy by view, clips]}`` of one run (its final-epoch weights if asked)."""
    import torch

    from binkit.train import load_checkpoint
    from binkit.train.trainer import evaluate

    run, last, pack, one_thread = job
    if one_thread:  # one of several processes
        torch.set_num_threads(1)
    model, meta = load_checkpoint(run / "model.pt")
    if last:
        state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
    resolved = meta["resolved"]
    if list(meta["labels"]) != pack["labels"]:
        raise SystemExit(f"{run}: its labels differ from the test splits'")
    if resolved.spec.features.model_dump_json() != pack["features"]:
        raise SystemExit(f"{run}: its features differ from the test splits' (make a pack from one of its runs)")
    views = list(resolved.views) or [None]
    return {tree: [evaluate(model, torch.utils.data.TensorDataset(x, y), views), len(y)]
            for tree, (x, y) in pack["trees"].items()}


def report(table: dict[str, dict[str, list]], baselines: Sequence[str] = ("bifsmn",)) -> None:
    """Print the tables from ``{label: {tree: [accuracy by view, clips]}}``.

    Clean test splits and each noise level (keys ``TREE@SNRdB``) are tabulated separately, the
    first tree of each being its "original test". Each method of ``baselines`` gets a table of
    its paired differences (by seed) against every other method.
    """
    runs = list(table)
    trees = list(table[runs[0]])
    for run in runs:
        if list(table[run]) != trees:
            raise SystemExit(f"{run}: scored on {list(table[run])}, not on {trees}")
    conditions = list(dict.fromkeys(condition(t) for t in trees))
    for c in conditions:
        if len(conditions) > 1:
            print(f"\n### {'noise at ' + c[:-2] + ' dB SNR' if c else 'clean'}\n")
        _report(table, [t for t in trees if condition(t) == c], baselines)


def _report(table: dict[str, dict[str, list]], trees: list[str], baselines: Sequence[str]) -> None:
    runs = list(table)
    n = {t: table[runs[0]][t][1] for t in trees}
    total = sum(n.values())
    print(f"Test clips: {', '.join(f'{t} {n[t]}' for t in trees)}; pooled {total}.\n")
    print("| run | view | " + " | ".join(trees) + " | pooled |")
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
    # every view of a method with thin views: pooled mean over seeds
    by_view: dict[str, dict[str, list[float]]] = {}
    for (run, view), acc in pooled.items():
        m = re.fullmatch(r"(.+?)(?:-seed(\d+))?(@last)?", run)
        by_view.setdefault(m.group(1) + (m.group(3) or ""), {}).setdefault(view, []).append(acc)
    thin = {name: views for name, views in by_view.items() if len(views) > 1}
    if thin:
        print("\n| method | view | seeds | pooled: mean |\n|---|---|---:|---:|")
        for name, views in thin.items():
            for view, accs in views.items():
                print(f"| {name} | {view} | {len(accs)} | {statistics.mean(accs):.4f} |")
    for baseline, variant in ((b, v) for b in baselines for v in ("", "@last")):
        if baseline + variant not in methods:
            continue
        for col, which in ((1, "original test"), (2, "pooled")):
            base = {r[0]: r[col] for r in methods[baseline + variant]}
            lines = []
            for name, rows in methods.items():
                if name == baseline + variant or len(rows) < 2 or name.endswith("@last") != bool(variant):
                    continue
                d = [100 * (base[r[0]] - r[col]) for r in rows if r[0] in base]
                if len(d) < 2:
                    continue
                sd = statistics.stdev(d)
                t = statistics.mean(d) / (sd / len(d) ** 0.5) if sd else float("inf")
                lines.append(f"| {name} | " + ", ".join(f"{x:+.2f}" for x in d)
                             + f" | {statistics.mean(d):+.2f} | {sd:.2f} | {t:+.2f} |")
            if lines:  # no table when no method shares two or more seeds with the baseline
                title = "BiFSMN" if baseline == "bifsmn" else baseline
                print(f"\n| {title}{variant} minus | per seed, {which} (points) | mean | sd | paired t |"
                      "\n|---|---|---:|---:|---:|")
                print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", type=Path, nargs="*",
                    help="the corpus the runs trained on, then corpora of the same voices from other seeds")
    ap.add_argument("--runs", type=Path, nargs="+", default=[], help="run folders (model.pt)")
    ap.add_argument("--last", action="store_true", help="also the final-epoch weights (checkpoints/last.pt)")
    ap.add_argument("--features", type=Path, metavar="PACK",
                    help="with trees: write their test splits to PACK; without: score the runs on PACK")
    ap.add_argument("--snr", type=float, nargs="+", default=[], metavar="DB",
                    help="also score each tree's test split with its background noise mixed in at these "
                         "signal-to-noise ratios (dB); tabulated apart from the clean splits")
    ap.add_argument("--jobs", type=int, default=1, help="score this many runs at once (processes)")
    ap.add_argument("--save", type=Path, metavar="JSON", help="write the scores here")
    ap.add_argument("--scores", type=Path, nargs="+", metavar="JSON", help="print the tables of saved scores")
    ap.add_argument("--baseline", nargs="+", default=["bifsmn"], metavar="METHOD",
                    help="methods (cell names without -seedN) whose paired differences by seed against "
                         "every other method are tabulated (default: bifsmn)")
    args = ap.parse_args(argv)

    if args.scores:
        if args.trees or args.runs or args.snr:
            ap.error("--scores tabulates saved scores: give no trees, runs or --snr with it")
        table: dict[str, dict[str, list]] = {}
        for f in args.scores:
            table.update(json.loads(f.read_text()))
        report(table, args.baseline)
        return 0
    if not args.runs:
        ap.error("--runs is required (or --scores)")
    if len(args.trees) == 1 and not args.snr:
        ap.error("give the original tree and at least one render (or --snr)")
    import torch

    from binkit.atomic import atomic_path, atomic_write_text
    from binkit.train import load_checkpoint

    runs = [r for r in args.runs if (r / "model.pt").is_file()]
    if not runs:
        ap.error("no run among --runs has a model.pt")
    features = {r: load_checkpoint(r / "model.pt")[1]["resolved"].spec.features.model_dump_json() for r in runs}
    packs = {}  # features (JSON) -> test splits; runs with other features get their own
    if args.trees:
        for render in args.trees[1:]:
            print(f"{render}: lists rewritten, {relist(args.trees[0], render)} clips", file=sys.stderr)
        for r in runs:
            if features[r] not in packs:
                packs[features[r]] = test_splits(args.trees[0], args.trees[1:], r, args.snr)
        if args.features:
            pack = packs[features[runs[0]]]
            with atomic_path(args.features) as tmp:
                torch.save(pack, tmp)
            print(f"{args.features}: test splits of {len(pack['trees'])} trees, features of {runs[0]}",
                  file=sys.stderr)
    elif args.snr:
        ap.error("--snr mixes noise into the trees' clips: give the trees (a pack made with --snr has them)")
    elif args.features:
        pack = torch.load(args.features, weights_only=False)
        packs[pack["features"]] = pack
    else:
        ap.error("give the trees, or --features PACK made from them")

    jobs = []  # (label, (run folder, final-epoch weights?, test splits, one thread?))
    one = args.jobs > 1
    for r in runs:
        pack = packs.get(features[r]) or next(iter(packs.values()))  # score_run names the mismatch
        jobs.append((r.name, (r, False, pack, one)))
        if args.last and (r / "checkpoints" / "last.pt").is_file():
            jobs.append((r.name + "@last", (r, True, pack, one)))
    if one:
        from multiprocessing import get_context

        with get_context("spawn").Pool(args.jobs) as pool:
            scores = pool.map(score_run, [job for _, job in jobs])
    else:
        scores = [score_run(job) for _, job in jobs]
    table = {label: s for (label, _), s in zip(jobs, scores)}
    if args.save:
        atomic_write_text(args.save, json.dumps(table, indent=1) + "\n")
    report(table, args.baseline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
