#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM pod slice, from your machine (needs gcloud):
#   launch/tpu_pod.sh install TPU_NAME ZONE    # copy this checkout to every host, install it
#   launch/tpu_pod.sh train TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]
# e.g.
#   launch/tpu_pod.sh install my-v4-32 us-central2-b
#   launch/tpu_pod.sh train my-v4-32 us-central2-b configs/clevr_sa_ae.py gs://my-bucket/runs/sa_ae
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: launch/tpu_pod.sh install TPU_NAME ZONE
       launch/tpu_pod.sh train TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]

install  copies this checkout (the files git tracks, plus new files it does not ignore) to
         every host of the TPU VM and runs pip install -e on it with "jax[tpu]"; run it
         again after changing the code.
train    runs python -m ocjax.main on every host at once (OCJAX_DISTRIBUTED=1: the hosts
         find each other through jax.distributed.initialize()); each host reads its block
         of every global batch and only host 0 writes logs and images. WORKDIR must be
         shared by all hosts, e.g. gs://BUCKET/runs/NAME; a rerun resumes from its
         checkpoint. A preempted host (SIGTERM) stops every host after the next step, with
         a checkpoint of that step.

  TPU_NAME, ZONE   as in: gcloud compute tpus tpu-vm ssh TPU_NAME --zone ZONE
  CONFIG           a config file of this checkout and optional preset, e.g. configs/clevr_sa_ae.py
  --config.KEY=VALUE   overrides, e.g. --config.model.dtype=bfloat16

Environment: OCJAX_REMOTE_DIR (default ocjax, under the home directory of each host) is
where the checkout goes; OCJAX_EXTRAS (e.g. tf) adds ocjax's pip extras at install.
How the hosts find each other (read by ocjax/parallel.py; tests/training/test_multihost.py
runs two processes on one machine with them):
  OCJAX_COORDINATOR, OCJAX_NUM_PROCESSES, OCJAX_PROCESS_ID
      host:port of process 0, the number of processes, this one's index. Not needed on
      TPU VMs, where JAX finds them itself; set all three elsewhere (per host).
  OCJAX_INIT_TIMEOUT (300), OCJAX_HEARTBEAT_TIMEOUT (100), OCJAX_SHUTDOWN_TIMEOUT (300)
      seconds to wait for all hosts to connect; of silence after which a host counts as
      dead, ending the others with JAX's "detected fatal errors" abort; that an exiting
      host waits for the others. Set here, they are passed on to every host.
EOF
  exit 2
}

case "${1:-}" in
  install) [[ $# -eq 3 ]] || usage ;;
  train) [[ $# -ge 5 ]] || usage ;;
  *) usage ;;
esac
action="$1"
tpu="$2"
zone="$3"
shift 3
for arg in "$tpu" "$zone"; do
  [[ "$arg" != -* ]] || usage
done
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
remote="${OCJAX_REMOTE_DIR:-ocjax}"
ssh_all=(gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command)

if [[ "$action" == install ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  export COPYFILE_DISABLE=1 # macOS tar: no resource-fork files in the archive
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' file; do
        if [[ -e "$repo/$file" ]]; then printf '%s\0' "$file"; fi
      done |
      tar -czf "$tmp/ocjax.tar.gz" -C "$repo" --null -T -
  else
    tar -czf "$tmp/ocjax.tar.gz" -C "$repo" --exclude=./.git --exclude=./runs \
      --exclude=./.venv --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ .
  fi
  package="$remote${OCJAX_EXTRAS:+[$OCJAX_EXTRAS]}"
  gcloud compute tpus tpu-vm scp "$tmp/ocjax.tar.gz" "$tpu:ocjax.tar.gz" --zone "$zone" --worker=all
  "${ssh_all[@]}" "mkdir -p $(printf %q "$remote") && tar -xzf ocjax.tar.gz -C $(printf %q "$remote") \
&& rm ocjax.tar.gz && python3 -m pip install -q -e $(printf %q "$package") 'jax[tpu]'"
  exit 0
fi

[[ "$1" != -* && "$2" != -* ]] || usage
config="$1"
workdir="$2"
shift 2
if [[ ! -f "$repo/${config%%:*}" ]]; then
  echo "tpu_pod.sh: no config file ${config%%:*} in $repo (CONFIG is relative to the checkout)." >&2
  exit 2
fi
if [[ "$workdir" != gs://* ]]; then
  echo "tpu_pod.sh: note: WORKDIR $workdir is not a gs:// path; every host must see the same one." >&2
fi
command="cd $(printf %q "$remote") && OCJAX_DISTRIBUTED=1"
for name in OCJAX_INIT_TIMEOUT OCJAX_HEARTBEAT_TIMEOUT OCJAX_SHUTDOWN_TIMEOUT; do
  if [[ -n "${!name:-}" ]]; then command+=" $name=$(printf %q "${!name}")"; fi
done
command+=" python3 -m ocjax.main"
command+=" --config $(printf %q "$config") --workdir $(printf %q "$workdir")"
for arg in ${@+"$@"}; do
  command+=" $(printf %q "$arg")"
done
"${ssh_all[@]}" "$command"
