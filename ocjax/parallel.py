"""Device mesh, shardings and host-to-device batch transfer for data-parallel training.

Parameters are replicated; every batch is split along its leading axis over the `data`
axis of a `jax.sharding.Mesh`. The same code serves one CPU, N fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N`), a GPU and a multi-host TPU pod,
whose processes connect as the `OCJAX_*` variables of `ENVIRONMENT` say.
"""

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


# How the processes of a multi-host job find each other (see launch/ and README).
ENVIRONMENT = {
    "OCJAX_DISTRIBUTED": "1: connect through jax.distributed.initialize() (or a coordinator)",
    "OCJAX_COORDINATOR": "host:port of process 0 (unset: JAX detects it on TPU pods and Slurm)",
    "OCJAX_NUM_PROCESSES": "how many processes the job has (with OCJAX_COORDINATOR)",
    "OCJAX_PROCESS_ID": "this process's index, 0 to OCJAX_NUM_PROCESSES - 1",
    "OCJAX_INIT_TIMEOUT": "seconds to wait for all processes to connect (JAX default 300)",
    "OCJAX_HEARTBEAT_TIMEOUT": "seconds of silence after which a process counts as dead (100)",
    "OCJAX_SHUTDOWN_TIMEOUT": "seconds an exiting process waits for the others (300)",
}
_ARGUMENTS = {
    "OCJAX_COORDINATOR": "coordinator_address",
    "OCJAX_NUM_PROCESSES": "num_processes",
    "OCJAX_PROCESS_ID": "process_id",
    "OCJAX_INIT_TIMEOUT": "initialization_timeout",
    "OCJAX_HEARTBEAT_TIMEOUT": "heartbeat_timeout_seconds",
    "OCJAX_SHUTDOWN_TIMEOUT": "shutdown_timeout_seconds",
}


def distributed_arguments(environ: dict[str, str]) -> dict[str, str | int] | None:
    """The `jax.distributed.initialize` arguments the `OCJAX_*` variables of `ENVIRONMENT`
    set, or None for a single-process run (neither OCJAX_DISTRIBUTED=1 nor a coordinator)."""
    if environ.get("OCJAX_DISTRIBUTED") != "1" and not environ.get("OCJAX_COORDINATOR"):
        return None
    arguments: dict[str, str | int] = {}
    for variable, argument in _ARGUMENTS.items():
        value = environ.get(variable, "")
        if not value:
            continue
        if argument == "coordinator_address":
            arguments[argument] = value
        elif value.isdigit():
            arguments[argument] = int(value)
        else:
            raise ValueError(
                f"{variable} is {value!r}; it must be a whole number ({ENVIRONMENT[variable]})."
            )
    given = [
        v
        for v in ("OCJAX_COORDINATOR", "OCJAX_NUM_PROCESSES", "OCJAX_PROCESS_ID")
        if environ.get(v)
    ]
    if given and len(given) < 3:
        raise ValueError(
            f"Only {', '.join(given)} of OCJAX_COORDINATOR, OCJAX_NUM_PROCESSES and "
            "OCJAX_PROCESS_ID are set; set all three, or none to let JAX detect the cluster."
        )
    return arguments


def initialize_distributed() -> None:
    """Connects the processes of a multi-host job as the `OCJAX_*` variables say (see
    `ENVIRONMENT`); does nothing when none asks for it."""
    arguments = distributed_arguments(dict(os.environ))
    if arguments is not None:
        jax.distributed.initialize(**arguments)


def make_mesh(num_devices: int = -1) -> Mesh:
    """Builds a 1-D `data` mesh over the first `num_devices` devices (-1: all of them)."""
    devices = jax.devices()
    if num_devices == -1:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(
            f"mesh.num_devices is {num_devices} but {len(devices)} devices are "
            "visible; use -1 for all of them or a number in between."
        )
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError(
            f"mesh.num_devices is {num_devices}, but a job of {jax.process_count()} processes "
            f"must use all {len(devices)} devices; use --config.mesh.num_devices=-1."
        )
    return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over the mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def per_host_batch_size(global_batch_size: int, mesh: Mesh, name: str) -> int:
    """Checks that `global_batch_size` splits evenly over devices and returns this host's share."""
    num_devices = mesh.devices.size
    if global_batch_size % num_devices:
        raise ValueError(
            f"{name} is {global_batch_size}, which does not divide over {num_devices} devices; "
            f"use a multiple of {num_devices} (e.g. --config.{name}="
            f"{max(num_devices, global_batch_size // num_devices * num_devices)})."
        )
    return global_batch_size // jax.process_count()


def to_global(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles every host's local batch `[local, ...]` into global arrays `[global, ...]`."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def to_host(tree: Any) -> Any:
    """Fetches a pytree of (possibly multi-host) global arrays as numpy arrays."""
    return jax.tree.map(
        lambda x: (
            np.asarray(jax.experimental.multihost_utils.process_allgather(x, tiled=True))
            if jax.process_count() > 1
            else np.asarray(x)
        ),
        tree,
    )


@jax.jit
def _max(values: jax.Array) -> jax.Array:
    """The largest entry of `values` `[devices]`, replicated on every device."""
    return values.max()


def max_over_hosts(value: int, mesh: Mesh) -> jax.Array:
    """The largest of every host's integer `value`, as a scalar on the mesh.

    A collective that every host must call at the same point; it is dispatched
    asynchronously, so reading the result (`int(...)`) is what waits for all hosts.
    """
    local = np.full((mesh.local_mesh.size,), value, np.int32)
    return _max(jax.make_array_from_process_local_data(batch_sharding(mesh), local))
