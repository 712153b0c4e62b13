#!/usr/bin/env bash
# The four CPU smoke-scale runs behind docs/results/masksynth (issue 7): the same CPU budget for each
# method (6 CPU-minutes, one thread), run side by side. Run from the repository root; results go to
# runs/masksynth/<loss>/generator.pt, which `occluface synth-eval -c runs/masksynth` picks up.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OCCLUFACE="${OCCLUFACE:-.venv/bin/occluface}"
COMMON=(--data ../shared/data --cache runs/masksynth/data.npz --width 16 --critic-width 16 --batch-size 8
        --steps 2 --threads 1 --iters 5000 --max-cpu-minutes 6 --max-minutes 48)
pids=()
for spec in "gan --no-pyconv" "dcgan --no-pyconv" "wgan --no-pyconv --n-critic 2" "wgan-div --pyconv --n-critic 2"; do
  set -- $spec
  loss=$1; shift
  OMP_NUM_THREADS=1 "$OCCLUFACE" train-masksynth "${COMMON[@]}" --loss "$loss" --out "runs/masksynth/$loss" "$@" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
