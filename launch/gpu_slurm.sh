#!/usr/bin/env bash
# Train one experiment on one GPU node of a Slurm cluster:
#   sbatch launch/gpu_slurm.sh configs/clevr_sa_ae.py runs/sa_ae [--config.model.dtype=bfloat16 ...]
#SBATCH --job-name=ocjax
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=16
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail
config="$1"; workdir="$2"; shift 2
# Pre-render or point to the datasets on a shared disk so every job reuses them.
export OCJAX_DATA_DIR="${OCJAX_DATA_DIR:-$HOME/tensorflow_datasets}"
# Let XLA use most of the GPU memory up front (the default is 75%).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
# The job resumes from the latest checkpoint in $workdir if it was preempted.
srun python -m ocjax.main --config "$config" --workdir "$workdir" "$@"
