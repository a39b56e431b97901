"""Orbax checkpoints of the `TrainState`, with restore onto the mesh's shardings."""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def checkpoint_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
    """Opens (creating if needed) `workdir/checkpoints` keeping the last `max_to_keep`."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"), options=options
    )


def save(manager: ocp.CheckpointManager, state: Any) -> None:
    """Saves `state` under its step (asynchronously; `wait` before exiting)."""
    manager.save(int(jax.device_get(state.step)), args=ocp.args.StandardSave(state))


def restore_latest(manager: ocp.CheckpointManager, state: Any) -> Any:
    """Returns the latest checkpoint restored with `state`'s shapes and shardings, or `state`."""
    step = manager.latest_step()
    if step is None:
        return state
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
