"""Learning-rate calibration of a pretraining config's `cpu` preset: a short run per rate.

Each run is the preset with `--steps` steps (its cosine over those steps, a warm-up of a
tenth of them), then scored on the first `--examples` test scenes: the encoder's token
k-means (FG-ARI, mBO), the VQA probe on its tokens and its collapse statistics. One JSON
line per rate goes to stdout.

    python docs/reproductions/calibrate_lr.py mae 3.75e-5 1.5e-4 6e-4 --steps 400
"""

import argparse
import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ocjax.training import trainer


def main() -> None:
    """Trains and scores the preset once per learning rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="dino, mocov3 or mae")
    parser.add_argument("rates", nargs="+", type=float)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--workroot", default="runs/calibration")
    args = parser.parse_args()
    for rate in args.rates:
        config = importlib.import_module(f"configs.{args.config}").get_config("cpu")
        steps_per_epoch = config.data.clevr_like.num_train / config.training.batch_size
        config.optimizer.schedule.update(
            learning_rate=rate, warmup_epochs=args.steps / 10 / steps_per_epoch
        )
        config.training.update(
            num_epochs=None,
            num_steps=args.steps,
            log_every=50,
            checkpoint_every=args.steps,
            image_every=args.steps,
        )
        config.evaluation.update(every_steps=args.steps, max_examples=args.examples)
        config.evaluation.probe.steps = 300
        workdir = os.path.join(args.workroot, f"{args.config}_lr{rate:g}")
        start = time.time()
        trainer.train_and_evaluate(config, workdir)
        with open(os.path.join(workdir, "eval.json"), encoding="utf-8") as f:
            scores = json.load(f)
        with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
            losses = [r["loss"] for r in map(json.loads, f) if "loss" in r]
        row = {"config": f"{args.config}:cpu", "lr": rate, "steps": args.steps}
        row.update(seconds=round(time.time() - start), final_loss=round(losses[-1], 4))
        row.update({k: round(v, 4) for k, v in scores.items() if isinstance(v, float)})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
