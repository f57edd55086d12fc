#!/usr/bin/env bash
# Stage a grid for a lent GPU machine (which has torch but no espeak-ng, flite or package index):
# wheels its image lacks, the decode caches built here, and the data tree's file facts, all under
# .device/ (ignored by git; carry it, with the teacher checkpoint the grid names).
#
#   binkit compare GRID --only teacher         # or any cell: it builds the decode caches here
#   benchmarks/device/prepare.sh data/speech_commands_synth_full
#   # then, with the device tool:  run  command="GRID=configs/X.toml JOBS=20 bash benchmarks/device/train_grid.sh"
#   #                              carry=[".device", "runs/.../teacher/model.pt"]
#
# What travels must stay under the device tool's 64 MiB: the full corpus's three caches pack to
# 44 MB with xz.
set -euo pipefail
cd "$(dirname "$0")/../.."
tree=${1:?usage: prepare.sh TREE}
py=${PYTHON:-.venv/bin/python}
cache=${BINKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/binkit}
mkdir -p .device/wheels
"$py" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform any --no-deps -d .device/wheels \
  pydantic pydantic-core annotated-types typing-inspection typing-extensions soundfile cffi pycparser tomli-w
# only the caches of this tree (their meta.json names its background-noise files)
caches=$("$py" - "$tree" "$cache" <<'PY'
import json, sys
from pathlib import Path
tree = str(Path(sys.argv[1]).absolute()) + "/"
for d in sorted(Path(sys.argv[2]).iterdir()):
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        continue
    if any(f.startswith(tree) for f in meta.get("noise_files", [])):
        print(d.name)
PY
)
if [ -z "$caches" ]; then
  echo "prepare.sh: no decode cache of $tree in $cache: train a cell of the grid here first (--epochs 1 will do)" >&2
  exit 1
fi
echo "caches of $tree: $(echo $caches)"
XZ_OPT="-6 -T2" tar -cJf .device/cache.tar.xz -C "$cache" $caches
"$py" benchmarks/device/tree_facts.py save "$tree" .device/tree.tar.xz
du -sh .device .device/*
