#!/usr/bin/env bash
# Issue 22, masked task (paper 004) at the decide scale: the margin pilot and the 2 x 3 runs, two one-thread
# processes on a 2-core machine (about 1.5 h in all). Both lanes walk seeds 0, 1, 2 in order; per-candidate and
# per-model locks let them split the pilot's candidates and each seed's two models instead of training any twice.
# Kill and rerun at will: caches, pilot candidates and runs resume where they stopped. Then one call writes the
# report, taking the coal and synthesis comparisons from the committed report (their runs are not kept).
# Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OCCLUFACE="${OCCLUFACE:-.venv/bin/occluface}"
W="${WORK:-runs/papers-decide}"
one() { OMP_NUM_THREADS=1 "$OCCLUFACE" bench papers --scale decide --experiments mask --seed "$1" --device cpu \
          --threads 1 --work "$W" --out "$W/mask-s$1"; }
lane() { one 0; one 1; one 2; }
lane > "$W/lane1.log" 2>&1 &
sleep 20  # lane 1 takes the seed-0 cache lock first; lane 2 waits on it, then reuses the cache
lane > "$W/lane2.log" 2>&1 &
wait
OMP_NUM_THREADS=1 "$OCCLUFACE" bench papers --scale decide --experiments mask --device cpu --threads 1 --work "$W" \
  --out docs/results/papers-decide --reuse docs/results/papers-decide/papers.json
