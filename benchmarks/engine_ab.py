"""A/B timing of two builds of the neon engine on one artifact, side by side.

On a shared machine only alternating, same-minute measurements compare: each round runs a fresh
process per build (3,000 batch-1 calls after 300 warm-up calls, then a 300-repeat per-op profile),
builds alternating, with any running `binkit compare` job paused (SIGSTOP / SIGCONT) meanwhile.

    git worktree add /tmp/base <commit> && (cd /tmp/base && python setup.py build_ext --inplace)
    python benchmarks/engine_ab.py MODEL.bkm /tmp/base . [--rounds 10] [--view 8]

Prints each build's per-round medians (us) and per-layer profile medians (us, summed over the
layer's ops). Used for benchmarks/RESULTS.md "Engine tuning, third session".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

# child-process source: load the artifact in sys.argv[1]; median_us(view) times one view
CHILD_HEAD = r'''
import sys, time, json
import numpy as np
from binkit_neon import NeonBackend
prog = NeonBackend().load(sys.argv[1])
x = np.random.default_rng(0).standard_normal((1, *prog.input_shape)).astype(np.float32)
def median_us(view):
    for _ in range(300):
        prog.run(x, view)
    t = []
    for _ in range(3000):
        t0 = time.perf_counter()
        prog.run(x, view)
        t.append(time.perf_counter() - t0)
    return float(np.median(t)) * 1e6
'''

CHILD = CHILD_HEAD + r'''
view = sys.argv[2]
median = median_us(view)
agg = {}
for r in prog.profile(x, view, repeats=300):
    k = r["op"] + ":" + (r["name"].rsplit(".", 1)[-1] if "blocks" in r["name"] else r["name"])
    agg[k] = agg.get(k, 0) + r["seconds"] * 1e6
print(json.dumps({"median": median, "prof": {k: v for k, v in agg.items() if v > 0.01}}))
'''


@contextlib.contextmanager
def paused_training():
    """Pause every running ``binkit compare`` job (SIGSTOP) for the duration; resume them after."""
    pids = [int(p) for p in subprocess.run(["pgrep", "-f", "binkit compare"], capture_output=True,
                                           text=True).stdout.split()]
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("base", help="checkout with the base build (backends/ built in place)")
    ap.add_argument("new", help="checkout with the new build")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--view", default="8")
    a = ap.parse_args()
    builds = {"base": Path(a.base).resolve(), "new": Path(a.new).resolve()}
    res: dict[str, list[dict]] = {k: [] for k in builds}
    with paused_training():
        for _ in range(a.rounds):
            for name, root in builds.items():
                env = dict(os.environ, PYTHONPATH=f"{root / 'backends'}:{root}", OMP_NUM_THREADS="1")
                out = subprocess.run([sys.executable, "-c", CHILD, str(Path(a.model).resolve()), a.view],
                                     capture_output=True, text=True, env=env, cwd="/tmp")
                if out.returncode:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return 1
                res[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for name, rs in res.items():
        print(name, "medians", " ".join(f"{r['median']:.2f}" for r in rs))
    for k in res["base"][0]["prof"]:
        print(f"  {k:32s} " + "  ".join(f"{n} {np.median([r['prof'].get(k, 0) for r in rs]):5.2f}"
                                        for n, rs in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
