"""Metric and image logging: `metrics.jsonl` (one JSON object per log step) and TensorBoard."""

import json
import os
from collections.abc import Callable, Mapping

import numpy as np
import tensorboardX


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard, images to TensorBoard.

    A run resumed from step `resume_step` first rewinds both logs to it: records of later
    steps (written after that checkpoint by the interrupted run) are dropped from
    `metrics.jsonl`, as are those at `resume_step` that `drop_at_resume` selects (e.g. a
    final evaluation about to be repeated), and TensorBoard purges its events after it.
    """

    def __init__(
        self,
        workdir: str,
        enabled: bool = True,
        resume_step: int = 0,
        drop_at_resume: Callable[[dict], bool] = lambda record: False,
    ):
        self.enabled = enabled
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            path = os.path.join(workdir, "metrics.jsonl")
            if resume_step:
                rewind_jsonl(path, resume_step, drop_at_resume)
            self._jsonl = open(path, "a", encoding="utf-8")
            self._tensorboard = tensorboardX.SummaryWriter(
                os.path.join(workdir, "tensorboard"),
                purge_step=resume_step + 1 if resume_step else None,
            )

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Logs a dict of scalars at `step`."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        for key, value in values.items():
            self._tensorboard.add_scalar(key, float(value), int(step))

    def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Logs uint8 images `[h, w, 3]` at `step`."""
        if not self.enabled:
            return
        for key, image in images.items():
            self._tensorboard.add_image(key, image, int(step), dataformats="HWC")
        self._tensorboard.flush()

    def close(self) -> None:
        """Flushes and closes both outputs."""
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()


def rewind_jsonl(path: str, step: int, drop_at_step: Callable[[dict], bool]) -> int:
    """Drops the records of `path` after `step` (and those at `step` that `drop_at_step`
    selects), rewriting the file atomically; returns how many were dropped."""
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # A line cut short by the interruption.
            continue
        if record["step"] < step or (record["step"] == step and not drop_at_step(record)):
            kept.append(line)
    if len(kept) < len(lines):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
    return len(lines) - len(kept)
