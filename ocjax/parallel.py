"""Device mesh, shardings and host-to-device batch transfer for data-parallel training.

Parameters are replicated; every batch is split along its leading axis over the `data`
axis of a `jax.sharding.Mesh`. The same code serves one CPU, N fake CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N`), a GPU and a multi-host TPU pod.
"""

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Connects the hosts of a multi-host job when `OCJAX_DISTRIBUTED=1` (see launch/)."""
    if os.environ.get("OCJAX_DISTRIBUTED") == "1":
        jax.distributed.initialize()


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
