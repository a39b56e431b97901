"""Run commands side by side, each pinned to its own share of this process's CPUs.

Small models train faster per core on one thread than on several (the convolutions of the
2-core CPU presets gain little from a second thread), so the reproduction driver trains
seeds concurrently, one process per group of cores, instead of one after another.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence


def available_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_groups(jobs: int, cpus: Sequence[int]) -> list[list[int]]:
    """Splits `cpus` into `jobs` disjoint groups of consecutive CPUs, sizes differing by at most one."""
    if not 1 <= jobs <= len(cpus):
        raise ValueError(
            f"Cannot run {jobs} jobs on {len(cpus)} CPU(s) {list(cpus)}: --jobs must be between "
            f"1 and {len(cpus)}."
        )
    size, extra = divmod(len(cpus), jobs)
    groups, start = [], 0
    for j in range(jobs):
        end = start + size + (j < extra)
        groups.append(list(cpus[start:end]))
        start = end
    return groups


def _start(command: Sequence[str], log: str, cpus: Sequence[int]) -> subprocess.Popen:
    """Starts `command` with its output appended to `log`, restricted to `cpus`.

    The child inherits the affinity this thread has when it forks, so the thread narrows its
    own mask around the fork (no `preexec_fn`, which is unsafe once threads exist).
    """
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    pinned = hasattr(os, "sched_setaffinity")
    previous = os.sched_getaffinity(0) if pinned else None
    with open(log, "ab") as output:
        if pinned:
            os.sched_setaffinity(0, cpus)
        try:
            return subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT)
        finally:
            if pinned:
                os.sched_setaffinity(0, previous)


def run_pinned(
    commands: Sequence[Sequence[str]],
    logs: Sequence[str],
    jobs: int,
    *,
    cpus: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Runs `commands` at most `jobs` at a time, each on its own CPU group, output to its log.

    Commands start in order as groups free up. When one fails, the others are stopped with
    SIGTERM (a training run saves its step) and `RuntimeError` names the failed command and
    its log; Ctrl-C stops them all the same way and re-raises.
    """
    if len(commands) != len(logs):
        raise ValueError(f"{len(commands)} commands but {len(logs)} log files.")
    names = list(names) if names is not None else [" ".join(c) for c in commands]
    groups = cpu_groups(jobs, available_cpus() if cpus is None else list(cpus))
    pending = list(range(len(commands)))
    running: dict[int, tuple[subprocess.Popen, list[int]]] = {}
    free = list(groups)
    try:
        while pending or running:
            while pending and free:
                index, group = pending.pop(0), free.pop(0)
                running[index] = (_start(commands[index], logs[index], group), group)
                print(f"{names[index]}: started on CPU {group}, log {logs[index]}", flush=True)
            time.sleep(poll_seconds)
            for index, (process, group) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[index]
                if code != 0:
                    raise RuntimeError(
                        f"{names[index]} failed (exit code {code}); its output is in "
                        f"{logs[index]}. Rerun the same command to resume."
                    )
                free.append(group)
                print(f"{names[index]}: done", flush=True)
    finally:
        _stop([process for process, _ in running.values()])


def _stop(processes: Sequence[subprocess.Popen], grace_seconds: float = 60.0) -> None:
    """SIGTERM every still-running process, then wait for it (SIGKILL after the grace time)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
