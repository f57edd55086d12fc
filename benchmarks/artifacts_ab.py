"""Several artifacts on one build of the neon engine, side by side, every view.

The companion of ``engine_ab.py`` (two builds, one artifact): each round runs a fresh process per
artifact (per view: 3,000 batch-1 calls after 300 warm-up calls, one thread), the artifacts in
alternating order, with any running ``binkit compare`` job paused meanwhile; prints each
artifact's median over rounds per view (us).

    python benchmarks/artifacts_ab.py A.bkm B.bkm ... [--rounds 12]

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="artifacts (.bkm)")
    ap.add_argument("--rounds", type=int, default=12)
    a = ap.parse_args()
    models = list(dict.fromkeys(a.models))
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
