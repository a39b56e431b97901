"""Command line: `python -m ocjax.main --config configs/<name>.py[:preset] --workdir DIR`."""

from absl import app, flags, logging
from ml_collections import config_flags

from ocjax import parallel
from ocjax.training import trainer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs, eval.json and images go.")
flags.DEFINE_enum("mode", "train", ["train", "eval"],
                  "train: train (resuming from workdir) then evaluate; eval: evaluate the "
                  "latest checkpoint in workdir.")
flags.mark_flags_as_required(["config", "workdir"])


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
  app.run(main)
