"""Stopping cleanly: SIGINT (Ctrl-C) and SIGTERM (preemption) end training after the current
step, with a checkpoint of that step, instead of losing the work since the last one.

In a multi-host job a signal to any one host stops all of them at the same step: the hosts
vote every step (`StopRequest.poll`) and all checkpoint that step and exit.
"""

import signal
import threading
from types import FrameType, TracebackType

import jax
from jax.sharding import Mesh

from ocjax import parallel


class Interrupted(Exception):
    """Training stopped on a signal after checkpointing step `step` in `workdir`."""

    def __init__(self, signum: int, step: int, workdir: str):
        self.signum, self.step, self.workdir = signum, step, workdir
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step:,}; its checkpoint is in "
            f"{workdir}/checkpoints. Rerun the same command to resume from there."
        )

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal (130 for SIGINT)."""
        return 128 + self.signum


class StopRequest:
    """Within `with StopRequest(mesh) as stop:`, SIGINT and SIGTERM set `stop.signum` instead
    of killing the process, and `stop.poll()` tells the training loop when to stop; a second
    signal of the same kind acts as usual (Ctrl-C twice quits at once). Outside the main
    thread (where handlers cannot be installed) it never fires."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, mesh: Mesh | None = None):
        self.signum: int | None = None
        self._mesh = mesh if jax.process_count() > 1 else None
        self._vote: jax.Array | None = None
        self._previous: dict[int, object] = {}

    def poll(self) -> int | None:
        """The signal to stop on after this step, the same on every host, or None.

        One process: the signal received so far. Several (a `mesh` spanning them): each host
        calls this once per step; the hosts vote (`parallel.max_over_hosts` of their
        `signum`) and act on the previous step's vote, read one step late so that it never
        waits for the step just dispatched. So all hosts stop at the same step, the one after
        the step in which the first signal arrived.
        """
        if self._mesh is None:
            return self.signum
        previous = 0 if self._vote is None else int(self._vote)
        if previous:
            return previous
        self._vote = parallel.max_over_hosts(self.signum or 0, self._mesh)
        return None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Records the first signal and restores the previous handler for the next one."""
        del frame
        self.signum = signum
        signal.signal(signum, self._previous[signum])

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
