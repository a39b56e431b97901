"""Stopping cleanly: SIGINT (Ctrl-C) and SIGTERM (preemption) end training after the current
step, with a checkpoint of that step, instead of losing the work since the last one."""

import signal
import threading
from types import FrameType, TracebackType


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
    """Within `with StopRequest() as stop:`, SIGINT and SIGTERM set `stop.signum` instead of
    killing the process; a second signal of the same kind acts as usual (Ctrl-C twice quits
    at once). Outside the main thread (where handlers cannot be installed) it never fires."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

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
