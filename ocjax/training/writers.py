"""Metric and image logging: `metrics.jsonl` (one JSON object per log step) and TensorBoard."""

import json
import os
from typing import Mapping

import numpy as np
import tensorboardX


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard, images to TensorBoard."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
            self._tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

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
