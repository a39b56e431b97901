#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM pod slice (each host runs the same command):
#   launch/tpu_pod.sh TPU_NAME ZONE configs/clevr_sa_ae.py gs://bucket/runs/sa_ae [overrides...]
# Install once on all hosts first:
#   gcloud compute tpus tpu-vm ssh TPU_NAME --zone ZONE --worker=all \
#     --command "pip install 'jax[tpu]' && git clone <your ocjax fork> ocjax && pip install -e ocjax"
set -euo pipefail
tpu="$1"; zone="$2"; config="$3"; workdir="$4"; shift 4
# OCJAX_DISTRIBUTED=1 makes ocjax call jax.distributed.initialize(), which finds the other hosts.
# Every host reads its own slice of each global batch; only host 0 writes logs and images.
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "cd ocjax && OCJAX_DISTRIBUTED=1 python -m ocjax.main --config $config --workdir $workdir $*"
