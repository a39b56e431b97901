#!/usr/bin/env bash
# Train one experiment on one GPU node of a Slurm cluster (submit from the repository root):
#   sbatch launch/gpu_slurm.sh CONFIG WORKDIR [--config.KEY=VALUE ...]
#   sbatch launch/gpu_slurm.sh configs/clevr_sa_ae.py runs/sa_ae --config.model.dtype=bfloat16
# The job's Python needs ocjax and JAX's CUDA plugin, once: pip install -e ".[tf]" "jax[cuda12]"
# Several nodes: sbatch --nodes=N --ntasks-per-node=1 launch/gpu_slurm.sh ... (one process per
# node; they find each other through Slurm's variables, see OCJAX_DISTRIBUTED below).
#SBATCH --job-name=ocjax
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=16
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: sbatch launch/gpu_slurm.sh CONFIG WORKDIR [--config.KEY=VALUE ...]

Trains and evaluates one experiment on one GPU node; submit it from the repository root.
A preempted or resubmitted job resumes from the latest checkpoint in WORKDIR.

  CONFIG    a config file and optional preset, e.g. configs/clevr_sa_ae.py or
            configs/clevr_slots.py:slot_ctr_img
  WORKDIR   where checkpoints, metrics, eval.json and images go, e.g. runs/sa_ae
  --config.KEY=VALUE   overrides, e.g. --config.model.dtype=bfloat16

Environment: PYTHON (default python) runs ocjax; OCJAX_DATA_DIR (default
~/tensorflow_datasets) holds the datasets; XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.9).
Install once: pip install -e ".[tf]" "jax[cuda12]"

Several nodes (sbatch --nodes=N --ntasks-per-node=1): with more than one Slurm task this
sets OCJAX_DISTRIBUTED=1, and JAX finds the coordinator and each task's index from Slurm.
Each process reads its block of every global batch; only process 0 writes logs; SIGTERM to
any task stops all after the next step, with a checkpoint of that step. Read by
ocjax/parallel.py (tests/training/test_multihost.py runs two processes with them):
  OCJAX_COORDINATOR, OCJAX_NUM_PROCESSES, OCJAX_PROCESS_ID
      host:port of process 0, the number of processes, this one's index: set all three
      per process to connect processes without Slurm's help.
  OCJAX_INIT_TIMEOUT (300), OCJAX_HEARTBEAT_TIMEOUT (100), OCJAX_SHUTDOWN_TIMEOUT (300)
      seconds to wait for all processes to connect; of silence after which a process
      counts as dead, ending the others with JAX's "detected fatal errors" abort; that an
      exiting process waits for the others.
EOF
  exit 2
}

case "${1:-}" in -h | --help) usage ;; esac
if [[ $# -lt 2 || "$1" == -* || "$2" == -* ]]; then
  usage
fi
config="$1"
workdir="$2"
shift 2
if [[ ! -f "${config%%:*}" ]]; then
  echo "gpu_slurm.sh: no config file ${config%%:*} here ($PWD); submit from the repository root." >&2
  exit 2
fi
# Pre-render or point to the datasets on a shared disk so every job reuses them.
export OCJAX_DATA_DIR="${OCJAX_DATA_DIR:-$HOME/tensorflow_datasets}"
# Let XLA use most of the GPU memory up front (the default is 75%).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
# One process per Slurm task; with several, JAX connects them through Slurm's variables.
if [[ "${SLURM_NTASKS:-1}" -gt 1 ]]; then
  export OCJAX_DISTRIBUTED=1
fi
# The job resumes from the latest checkpoint in $workdir if it was preempted.
srun "${PYTHON:-python}" -m ocjax.main --config "$config" --workdir "$workdir" ${@+"$@"}
