#!/usr/bin/env bash
# Issue 22: the three paper comparisons at the CPU decide scale, the way they were run here -- every seed of
# every comparison as its own one-thread process, two at a time on a 2-core machine (a few hours each lane),
# then one call that reuses every finished run and writes the report. Any call can be killed and rerun: the
# occlusion caches, the margin pilot, every training run and every generator resume where they stopped.
# Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OCCLUFACE="${OCCLUFACE:-.venv/bin/occluface}"
W="${WORK:-runs/papers-decide}"
one() { OMP_NUM_THREADS=1 "$OCCLUFACE" bench papers --scale decide --experiments "$1" --seed "$2" --device cpu \
          --threads 1 --work "$W" --out "$W/$1-s$2"; }
# lane 1 starts with mask seed 0, which trains the margin pilot the other mask seeds reuse; both lanes end on mask
# seed 2, whose two models they then train side by side (per-model run locks: a model another process is training
# is skipped, then waited for and reused)
(one mask 0; one coal 0; one synth 0; one mask 2) &
(one coal 1; one coal 2; one synth 1; one synth 2; one mask 1; one mask 2) &
wait
OMP_NUM_THREADS=1 "$OCCLUFACE" bench papers --scale decide --device cpu --threads 1 --work "$W" --out docs/results/papers-decide
