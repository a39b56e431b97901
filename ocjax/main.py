"""Command line: `python -m ocjax.main --config configs/<name>.py[:preset] --workdir DIR`."""

import importlib.util
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from ocjax import parallel
from ocjax.training import trainer

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


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags, turning an unknown `--config.*` key into one clear error line."""
    try:
        return FLAGS(argv)
    except (KeyError, AttributeError):
        spec = next(
            argv[i + 1] if a == "--config" else a.split("=", 1)[1]
            for i, a in enumerate(argv)
            if a == "--config" or a.startswith("--config=")
        )
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        message = unknown_override(load_config(spec), overrides) or "a --config override failed"
        sys.exit(f"FATAL Flags parsing error: {message}")


def main(argv: list[str]) -> None:
    """Runs the experiment named by the flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    parallel.initialize_distributed()
    if FLAGS.mode == "train":
        trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
        trainer.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
