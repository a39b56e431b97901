"""Command line: `python -m ocjax.main --config configs/<name>.py[:preset] --workdir DIR`.

A mistake in the command (a bad config value, a missing file or dataset, shapes that cannot
work) prints one `ocjax: error: ...` line and exits with status 1; `--verbosity=1` or
`OCJAX_TRACEBACK=1` shows the traceback instead. Library logging stays quiet unless
`--verbosity` is given.
"""

import importlib.util
import os
import sys
import warnings
from typing import NoReturn

from ocjax.training import console

if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv):
    console.quiet_native_logs()  # Before TensorFlow is imported.

from absl import app, flags
from ml_collections import config_flags

from ocjax import parallel
from ocjax.data.datasets import DatasetError
from ocjax.training import trainer
from ocjax.training.preemption import Interrupted

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs, eval.json and images go.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval"],
    "train: train (resuming from workdir) then evaluate; eval: evaluate the "
    "latest checkpoint in workdir.",
)
flags.mark_flags_as_required(["config", "workdir"])

# What a wrong command raises; anything else is a bug in ocjax and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, OSError, DatasetError, FloatingPointError)


def unknown_override(config, overrides: list[str]) -> str | None:
    """Names the first `--config.a.b=v` override whose key the config lacks, and the valid keys."""
    for arg in overrides:
        path = arg.split("=", 1)[0][len("--config.") :].split(".")
        node = config
        for depth, key in enumerate(path):
            if not hasattr(node, "keys") or key not in node:
                parent = ".".join(["config"] + path[:depth])
                valid = sorted(node.keys()) if hasattr(node, "keys") else []
                return f"{parent} has no key {key!r} (from {arg}); valid keys: {valid}"
            node = node[key]
    return None


def load_config(spec: str):
    """Loads `path.py[:preset]` the way `--config` does, by calling its `get_config`."""
    path, _, preset = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("ocjax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(preset) if preset else module.get_config()


def show_traceback(argv: list[str]) -> bool:
    """Whether errors keep their traceback: `--verbosity` ≥ 1 (or `-v`) or OCJAX_TRACEBACK=1."""
    if os.environ.get("OCJAX_TRACEBACK", "0") not in ("", "0"):
        return True
    for i, arg in enumerate(argv):
        for name in ("--verbosity", "-v"):
            value = None
            if arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            elif arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            if value is not None:
                return value.lstrip("-").isdigit() and int(value) >= 1
    return False


def fail(error: BaseException) -> NoReturn:
    """Exits with status 1 after one line naming the problem (and how to see the traceback)."""
    message = str(error).strip() or type(error).__name__
    if "Traceback (most recent call last)" in message:  # A config file's own error, wrapped.
        message = message.splitlines()[-1].strip()
    if isinstance(error, OSError) and error.filename and error.filename not in message:
        message += f": {error.filename}"
    # A failed checkpoint write leaves Orbax's writer coroutines unfinished; Python would
    # warn about each as it shuts down, after the one line this error is.
    warnings.filterwarnings(
        "ignore", message="coroutine .* was never awaited", category=RuntimeWarning
    )
    sys.exit(f"ocjax: error: {message}\n(--verbosity=1 or OCJAX_TRACEBACK=1 shows the traceback)")


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags; an unknown `--config.*` key, a bad value or a missing config file is one
    error line."""
    spec = config_name(argv)
    if spec is not None and not os.path.isfile(spec.partition(":")[0]):
        fail(
            FileNotFoundError(
                f"Config file {spec.partition(':')[0]} does not exist (relative to {os.getcwd()}); "
                "the configs are in the repository's configs/ folder."
            )
        )
    try:
        return FLAGS(argv)
    except (KeyError, AttributeError):
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        message = unknown_override(load_config(spec), overrides) or "a --config override failed"
        fail(ValueError(message))
    except (flags.Error, *USER_ERRORS) as error:
        if show_traceback(argv):
            raise
        fail(error)


def main(argv: list[str]) -> None:
    """Runs the experiment named by the flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        console.quiet_libraries()
    parallel.initialize_distributed()
    try:
        if FLAGS.mode == "train":
            trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir, name=config_name(sys.argv))
        else:
            trainer.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)
    except Interrupted as stop:
        print(f"ocjax: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)
    except USER_ERRORS as error:
        if show_traceback(sys.argv):
            raise
        fail(error)


def config_name(argv: list[str]) -> str | None:
    """The `--config` argument as given (e.g. `configs/clevr_sa_ae.py:quick`)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
