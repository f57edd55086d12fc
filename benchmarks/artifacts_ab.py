"""Several artifacts on one build of the neon engine, side by side, every view.

The companion of ``engine_ab.py`` (two builds, one artifact): each round runs a fresh process per
artifact (per view: 3,000 batch-1 calls after 300 warm-up calls, one thread), the artifacts in
alternating order, with any running ``binkit compare`` job paused meanwhile; prints each
artifact's median over rounds per view (us).

    python benchmarks/artifacts_ab.py A.bkm B.bkm ... [--rounds 12]
    python benchmarks/artifacts_ab.py A.bkm B.bkm ... --agree RUN [--backend neon]

``--agree RUN`` times nothing: it runs every artifact on RUN's test split (the run's own
features) and prints, per view, each artifact's accuracy, the largest logit difference from the
first artifact and the clips whose argmax differs from it: the check that an export change (the
same model exported twice) leaves the function alone.

Used for benchmarks/RESULTS.md "On the engine: every copy of a thin view's block takes RPReLU's
shift" (the same model exported before and after the fix, beside ReActNet + TBA).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_ab import CHILD_HEAD, paused_training  # noqa: E402

CHILD = CHILD_HEAD + r'''
print(json.dumps({view: median_us(view) for view in prog.views}))
'''


def agreement(models: list[str], run: str, backend: str) -> None:
    from binkit.runtime import load
    from binkit.train.report import split_arrays

    x, y, _ = split_arrays(run)
    progs = {m: load(m, backend=backend).program for m in models}
    first = progs[models[0]]
    print(f"{len(y)} clips of {run}'s test split, backend {backend}; differences from {models[0]}")
    for view in first.views:
        ref = first.run(x, view)
        for m, prog in progs.items():
            if view not in prog.views:
                print(f"  view {view} {m}: no such view")
                continue
            z = ref if prog is first else prog.run(x, view)
            pred = z.argmax(-1)
            print(f"  view {view} {m}: accuracy {(pred == y).mean():.4f}, max |logit diff| "
                  f"{np.abs(z - ref).max():.3g}, argmax differs on {int((pred != ref.argmax(-1)).sum())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="artifacts (.bkm)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--agree", metavar="RUN", help="compare outputs on RUN's test split instead of timing")
    ap.add_argument("--backend", default="neon", help="backend for --agree (default neon)")
    a = ap.parse_args()
    models = list(dict.fromkeys(a.models))
    if a.agree:
        agreement(models, a.agree, a.backend)
        return 0
    res: dict[str, list[dict]] = {m: [] for m in models}
    with paused_training():
        for r in range(a.rounds):
            for m in (models if r % 2 == 0 else models[::-1]):
                out = subprocess.run([sys.executable, "-c", CHILD, str(Path(m).resolve())], capture_output=True, text=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
                if out.returncode:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return 1
                res[m].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for m, rs in res.items():
        print(m, " ".join(f"{v}:{np.median([d[v] for d in rs]):.2f}" for v in rs[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
