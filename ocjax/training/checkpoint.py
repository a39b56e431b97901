"""Orbax checkpoints of the `TrainState`, with restore onto the mesh's shardings."""

from typing import Any

import jax
import orbax.checkpoint as ocp

from ocjax import files
from ocjax.training.console import LOGGER


def checkpoint_manager(workdir: str, max_to_keep: int) -> ocp.CheckpointManager:
    """Opens (creating if needed) `workdir/checkpoints` (local or a bucket) keeping the last
    `max_to_keep`."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(files.workdir_path(workdir) / "checkpoints", options=options)


def save(manager: ocp.CheckpointManager, state: Any) -> None:
    """Saves `state` under its step (asynchronously; `wait` before exiting). A save that
    Orbax declines (e.g. a step already saved by an earlier, longer run) raises."""
    step = int(jax.device_get(state.step))
    if (
        not manager.save(step, args=ocp.args.StandardSave(state))
        and step not in manager.all_steps()
    ):
        raise OSError(f"Orbax did not save step {step} in {manager.directory}.")


def restore_latest(manager: ocp.CheckpointManager, state: Any) -> Any:
    """The latest readable checkpoint restored with `state`'s shapes and shardings, or `state`.

    A checkpoint that cannot be read (truncated or corrupt files) is moved aside to
    `<step>.unreadable` with a warning naming its step, and the one before it is tried (so
    the step is trained and saved again); if none can be read, this raises.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    steps = sorted(manager.all_steps(), reverse=True)
    for step in steps:
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            aside = manager.directory / f"{step}.unreadable"
            LOGGER.warning(
                "The checkpoint of step %d in %s cannot be read (%s: %s); it is moved to %s "
                "and %s.",
                step,
                manager.directory,
                type(error).__name__,
                (str(error).splitlines() or [""])[0][:200],
                aside,
                "the one before it is tried" if step != steps[-1] else "no earlier one is left",
            )
            (manager.directory / str(step)).rename(aside)
            manager.reload()
    if steps:
        raise OSError(
            f"No checkpoint in {manager.directory} can be read (steps {steps}); move the "
            "folder away to start afresh."
        )
    return state
