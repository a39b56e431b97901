"""Orbax checkpoints of the `TrainState`, with restore onto the mesh's shardings."""

import gc
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


# What a failed write (disk full, quota, permissions, a lost bucket) raises through Orbax.
_WRITE_ERRORS = (OSError, ValueError, RuntimeError)


def _write_failed(manager: ocp.CheckpointManager, error: Exception) -> OSError:
    """One clear error for a checkpoint write that failed, naming the folder and the cause.

    The manager is closed and its abandoned futures collected first, so that everything Orbax
    prints about the failure comes before ocjax's error, not after it."""
    cause = (str(error).splitlines() or [""])[0]
    if len(cause) > 300:  # Storage errors name the OS reason (e.g. "No space left") at the end.
        cause = "..." + cause[-200:]
    latest = manager.latest_step()
    try:
        manager.close()
    except _WRITE_ERRORS:  # The same failed write, reported again; the error below names it.
        pass
    gc.collect()  # asyncio logs "exception was never retrieved" when a future is collected.
    return OSError(
        f"Writing a checkpoint in {manager.directory} failed ({type(error).__name__}: {cause}). "
        "Free disk space (or fix the quota or permissions) and rerun the same command: it "
        + (f"resumes from step {latest}." if latest is not None else "starts afresh.")
    )


def save(manager: ocp.CheckpointManager, state: Any) -> None:
    """Saves `state` under its step (asynchronously; `wait` before exiting). A save that
    Orbax declines (e.g. a step already saved by an earlier, longer run) raises, and so does
    a write that failed (disk full): here or, as writes run in the background, at the next
    `save` or `wait`."""
    step = int(jax.device_get(state.step))
    try:
        saved = manager.save(step, args=ocp.args.StandardSave(state))
    except _WRITE_ERRORS as error:
        raise _write_failed(manager, error) from error
    if not saved and step not in manager.all_steps():
        raise OSError(f"Orbax did not save step {step} in {manager.directory}.")


def wait(manager: ocp.CheckpointManager) -> None:
    """Blocks until every pending save is on disk; a failed write raises one clear OSError."""
    try:
        manager.wait_until_finished()
    except _WRITE_ERRORS as error:
        raise _write_failed(manager, error) from error


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
