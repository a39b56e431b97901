#!/usr/bin/env bash
# Every CPU preset's train step against this machine's own matmul peak, random input and the
# real input pipeline, one JSON line each (the table in docs/benchmarks.md). Run it alone on
# the machine: about 16 minutes on 2 cores.
#
#   bash benchmarks/cpu_presets.sh runs/cpu_presets.jsonl
set -euo pipefail
out=${1:-cpu_presets.jsonl}
mkdir -p "$(dirname "$out")"
step() { python benchmarks/train_step.py --profile_steps 0 --warmup 2 "$@" | tail -n 1 >>"$out"; }

step --config configs/shapes_rotating.py --batch 64 --steps 3
step --config configs/clevr_sa_ae.py --batch 8 --warmup 1 --steps 2
for config in shapes_rotating clevr_sa_ae tetrominoes_sa_ae shapes_cae clevr_slots; do
  for input in random pipeline; do
    step --config "configs/$config.py:cpu" --input "$input" --steps 3
  done
done
echo "wrote $out"
