"""Metric and image logging: `metrics.jsonl` (one JSON object per log step) and TensorBoard."""

import json
from collections.abc import Callable, Mapping

import numpy as np
import tensorboardX

from ocjax import files


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard, images to TensorBoard.

    The workdir may be local or a bucket (`ocjax.training.files`). A run that starts at step
    `resume_step` first rewinds both logs to it: records of later steps (written after that
    checkpoint by an interrupted run) are dropped from `metrics.jsonl`, as are those at
    `resume_step` that `drop_at_resume` selects (e.g. a final evaluation about to be
    repeated), and TensorBoard purges its events after it.
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
            root = files.workdir_path(workdir)
            self._path = root / "metrics.jsonl"
            lines = self._path.read_text().splitlines(True) if self._path.exists() else []
            self._lines = rewind(lines, resume_step, drop_at_resume)
            if len(self._lines) < len(lines):
                files.write_text(self._path, "".join(self._lines))
            self._tensorboard = tensorboardX.SummaryWriter(
                str(root / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
            )

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Logs a dict of scalars at `step`."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        self._lines.append(json.dumps(record) + "\n")
        files.write_text(self._path, "".join(self._lines))
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
        """Flushes and closes TensorBoard (`metrics.jsonl` is written at every record)."""
        if self.enabled:
            self._tensorboard.close()


def rewind(lines: list[str], step: int, drop_at_step: Callable[[dict], bool]) -> list[str]:
    """The lines of a `metrics.jsonl` up to `step`: later records, those at `step` that
    `drop_at_step` selects, and a last line cut short by a crash are left out."""
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # A line cut short by the interruption.
            continue
        if record["step"] < step or (record["step"] == step and not drop_at_step(record)):
            kept.append(line if line.endswith("\n") else line + "\n")
    return kept
