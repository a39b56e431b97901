"""Held-out FG-ARI of Slot Attention on Tetrominoes past the 4,000-step protocol (reproductions.md).

Reads the runs' `metrics.jsonl` and draws `sa_ae_tetrominoes_budget.png`:

python docs/reproductions/tetrominoes_budget.py \
    "seed 1, extended:runs/tetro_long_seed1" "seed 2, 2k warm-up:runs/tetro_warm2k_seed2" \
    "seed 0 (protocol):runs/tetro_warmup500/seed0" ...

Each argument is `LABEL:WORKDIR`.
"""

import os
import sys

from ocjax.reproduce import read_metrics

METRIC = "eval/decoder/fg_ari"
OUT = os.path.join(os.path.dirname(__file__), "sa_ae_tetrominoes_budget.png")


def main(runs: list[str]) -> None:
    """Plots held-out FG-ARI and the training loss of every `LABEL:WORKDIR` in `runs`."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        label, _, workdir = run.partition(":")
        if not workdir:
            raise SystemExit(f"Arguments are LABEL:WORKDIR, got {run!r}.")
        records = read_metrics(workdir)
        if not records:
            raise SystemExit(f"{workdir} has no metrics.jsonl.")
        points = [(r["step"], r[METRIC]) for r in records if METRIC in r]
        left.plot(*zip(*points), marker="o", markersize=3, label=label)
        right.plot(*zip(*[(r["step"], r["loss"]) for r in records if "loss" in r]), label=label)
        print(label, " ".join(f"{s}:{v:.3f}" for s, v in points))
    left.axhline(0.95, color="grey", linestyle="--", label="target 0.95")
    left.axvline(4_000, color="grey", linestyle=":", label="protocol's budget")
    left.set(xlabel="step", ylabel="FG-ARI (held-out, 256 images)", ylim=(0, 1))
    right.set(xlabel="step", ylabel="training loss", yscale="log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Slot Attention AE, embedded Tetrominoes, batch 16: past 4,000 steps")
    figure.tight_layout()
    figure.savefig(OUT, dpi=110)
    plt.close(figure)
    print("wrote", OUT)


if __name__ == "__main__":
    main(sys.argv[1:])
