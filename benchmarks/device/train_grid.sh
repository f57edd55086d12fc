#!/usr/bin/env bash
# On a lent GPU machine, from the repository root, after benchmarks/device/prepare.sh here:
# install the staged wheels and binkit, rebuild the tree's file facts and the decode caches, and
# train a grid's cells side by side (one process per cell under CUDA MPS, TF32 off).
#
#   GRID=configs/compare_bifsmn_shifts.toml JOBS=20 TRAIN_S=450 bash benchmarks/device/train_grid.sh
#
# TREE (default data/speech_commands_synth_full) must be the grid's data root. The finished runs
# (without checkpoints) come back in $OUT as runs.tar.xz.part-* (15 MiB pieces):
#   cat runs.tar.xz.part-* | tar -xJf - -C runs/GRIDNAME
# The cache fingerprints hold absolute paths, so the job runs from a copy at this machine's
# checkout path (/work/main).
set -uo pipefail
T0=$SECONDS
GRID=${GRID:?GRID=configs/....toml}
JOBS=${JOBS:-16}
TREE=${TREE:-data/speech_commands_synth_full}
DEV=${DEV_ROOT:-/work/main}
python3 -m pip install -q --no-index --no-deps .device/wheels/*.whl 2>&1 | tail -2
here=$PWD
if [ "$here" != "$DEV" ]; then mkdir -p "$DEV" && cp -a "$here/." "$DEV/"; fi
cd "$DEV"
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
echo "installed: $((SECONDS - T0)) s"
python3 benchmarks/device/tree_facts.py make .device/tree.tar.xz "$TREE"
export BINKIT_CACHE=/root/.cache/binkit NVIDIA_TF32_OVERRIDE=0 OMP_NUM_THREADS=1
mkdir -p "$BINKIT_CACHE" && tar -xJf .device/cache.tar.xz -C "$BINKIT_CACHE"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
nvidia-cuda-mps-control -d 2>/dev/null && echo "MPS on"
echo "prepared: $((SECONDS - T0)) s"
timeout "${TRAIN_S:-450}" binkit compare "$GRID" --jobs "$JOBS" -q > "$OUT/compare.log" 2>&1
echo "compare exit $? at $((SECONDS - T0)) s"
grep -v '^|' "$OUT/compare.log" | tail -30
name=$(python3 -c "import sys, tomllib; print(tomllib.load(open(sys.argv[1], 'rb'))['name'])" "$GRID")
cd "runs/$name" && for d in */; do [ -f "$d/model.pt" ] && echo "finished ${d%/}"; done | tee "$OUT/finished.txt"
tar --exclude=checkpoints -cf - . | xz -3 -T0 | split -b 15m - "$OUT/runs.tar.xz.part-"
ls -la "$OUT"
echo "total: $((SECONDS - T0)) s"
