"""What a run prints: one line at start, the progress bar, a metrics table at the end.

Libraries around ocjax (Orbax, TensorFlow, tfds, grain, JAX's backend probing) log dozens of
INFO lines per run; `quiet_libraries` keeps only their errors unless `--verbosity` is given.
ocjax's own warnings (logger `ocjax`) always show.
"""

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

LOGGER = logging.getLogger("ocjax")
_LIBRARY_LOGGERS = (
    "absl",
    "jax",
    "jax._src",
    "orbax",
    "tensorflow",
    "tensorflow_datasets",
    "grain",
)


def quiet_native_logs() -> None:
    """Silences TensorFlow's and gRPC's C++ notices; call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # Its notice ignores the level above.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def quiet_libraries() -> None:
    """Silences library logging below ERROR (and TensorFlow's C++ notices) for this process."""
    quiet_native_logs()
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if not LOGGER.handlers:  # ocjax's warnings keep a plain one-line format.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("ocjax: %(levelname)s: %(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.propagate = False
    LOGGER.setLevel(logging.WARNING)
    for name in ("absl", "asyncio"):
        if not any(isinstance(f, _OrbaxThreadErrors) for f in logging.getLogger(name).filters):
            logging.getLogger(name).addFilter(_OrbaxThreadErrors())
    if sys.unraisablehook is sys.__unraisablehook__:
        sys.unraisablehook = _drop_closed_loop_callbacks


class _OrbaxThreadErrors(logging.Filter):
    """Drops what Orbax's writer threads (and their asyncio loops) log about a failed save:
    ocjax raises every failed save or restore as one error of its own (`checkpoint.py`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record logged from Orbax's code or by asyncio."""
        return not (f"{os.sep}orbax{os.sep}" in record.pathname or record.name == "asyncio")


def _drop_closed_loop_callbacks(unraisable: Any) -> None:
    """Drops "Event loop is closed" from TensorStore callbacks into the loop of an Orbax save
    that already failed (dozens of tracebacks; ocjax reports the failed write itself)."""
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    sys.__unraisablehook__(unraisable)


def start_line(
    config: Any, workdir: str, *, num_train: int, devices: str, start: int, num_steps: int
) -> str:
    """One line naming model, dataset, devices, workdir and whether the run resumes."""
    state = f"resuming at step {start:,}/{num_steps:,}" if start else f"fresh, {num_steps:,} steps"
    return (
        f"ocjax: {config.model.name} on {config.data.name} ({num_train:,} training images, "
        f"{config.data.resolution}²), batch {config.training.batch_size}, {devices}; "
        f"workdir {workdir}; {state}"
    )


def devices_text(devices: list[Any]) -> str:
    """`2 × cpu` style summary of `jax.devices()` (processes named when more than one)."""
    kinds = sorted({d.platform for d in devices})
    processes = len({d.process_index for d in devices})
    text = f"{len(devices)} × {'/'.join(kinds)}"
    return text + (f" on {processes} hosts" if processes > 1 else "")


def results_table(results: Mapping[str, Any], paths: Mapping[str, str]) -> str:
    """The evaluation metrics as an aligned two-column table, then where the outputs are."""
    rows = [(k, f"{v:.4f}") for k, v in sorted(results.items()) if isinstance(v, float)]
    rows += [(k, f"{v:,}") for k, v in sorted(results.items()) if isinstance(v, int)]
    title = f"{results.get('split', 'evaluation')} metrics"
    width = max([len(k) for k, _ in rows] + [len(title)])
    lines = [title, "-" * (width + 12)]
    lines += [f"{k:<{width}}  {v:>10}" for k, v in rows]
    lines.append("")
    lines += [f"{name:<12} {path}" for name, path in paths.items()]
    return "\n".join(lines)
