"""ocjax beside the official release on the same features and protocol: one plot per system.

Reads ocjax's seeds (`<workroot>/<system>_patches/seed<k>/metrics.jsonl`, written by
`python -m ocjax.reproduce <system>_patches`) and the official runs' curves
(`docs/reproductions/<system>_patches_official_seed<k>.csv`, columns `step, train_loss,
val_mse, val_fg_ari_decoder, val_mbo_decoder, val_fg_ari_slots, val_mbo_slots`), draws
held-out FG-ARI and mBO (decoder and slot attention) and the training loss of both, and
prints a Markdown table at `--steps` with each side's mean ± sample std over seeds and
whether ocjax's mean lies inside the official seeds' range.

    python docs/reproductions/side_by_side.py dinosaur spot_teacher spot_student
"""

import argparse
import csv
import glob
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# (label, ocjax metrics.jsonl key, official CSV column).
CURVES = (
    ("held-out FG-ARI, decoder", "eval/decoder/fg_ari", "val_fg_ari_decoder"),
    ("held-out mBO, decoder", "eval/decoder/mbo", "val_mbo_decoder"),
    ("held-out FG-ARI, slot attention", "eval/attention/fg_ari", "val_fg_ari_slots"),
    ("held-out mBO, slot attention", "eval/attention/mbo", "val_mbo_slots"),
    ("training loss (mean of 50 steps)", "loss", "train_loss"),
)


def ocjax_curves(workroot: str, system: str) -> list[dict[str, dict[int, float]]]:
    """Per seed: {metric key: {step: value}} from ocjax's metrics.jsonl files."""
    seeds = []
    pattern = os.path.join(workroot, f"{system}_patches", "seed*", "metrics.jsonl")
    for path in sorted(glob.glob(pattern)):
        curves: dict[str, dict[int, float]] = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                for key, value in record.items():
                    if key != "step" and isinstance(value, (int, float)):
                        curves.setdefault(key, {})[int(record["step"])] = float(value)
        seeds.append(curves)
    return seeds


def official_curves(system: str) -> list[dict[str, dict[int, float]]]:
    """Per seed: {CSV column: {step: value}} from the committed official runs."""
    seeds = []
    paths = glob.glob(os.path.join(HERE, f"{system}_patches_official_seed*.csv"))
    for path in sorted(paths, key=lambda p: int(re.search(r"seed(\d+)", p).group(1))):
        curves: dict[str, dict[int, float]] = {}
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key != "step" and value not in ("", None):
                        curves.setdefault(key, {})[int(row["step"])] = float(value)
        seeds.append(curves)
    return seeds


def at(seeds: list[dict[str, dict[int, float]]], key: str, step: int) -> list[float]:
    """The value of `key` at `step` in every seed that has it."""
    return [s[key][step] for s in seeds if step in s.get(key, {})]


def summary(values: list[float]) -> str:
    """`mean ± std (n)`, or `–` without values."""
    if not values:
        return "–"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {std:.3f} ({len(values)})"


def plot(system: str, ours: list, theirs: list, out: str) -> None:
    """One row of panels, one per curve, ocjax's seeds beside the official ones."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.3))
    for ax, (label, key, column) in zip(axes, CURVES):
        for seeds, name, colour, k in (
            (ours, "ocjax", "C0", key),
            (theirs, "official", "C3", column),
        ):
            for i, seed in enumerate(seeds):
                steps = sorted(seed.get(k, {}))
                ax.plot(
                    steps,
                    [seed[k][s] for s in steps],
                    color=colour,
                    alpha=0.8,
                    marker="o" if len(steps) < 12 else None,
                    markersize=3,
                    label=f"{name} ({len(seeds)} seed{'s' * (len(seeds) > 1)})" if i == 0 else None,
                )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{system} on raw 4×4 patches: ocjax beside the official code", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    """Draws the plots and prints the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("systems", nargs="+", help="dinosaur, spot_teacher, spot_student")
    parser.add_argument("--workroot", default="runs/reproduce")
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 3000])
    args = parser.parse_args()
    for system in args.systems:
        ours, theirs = ocjax_curves(args.workroot, system), official_curves(system)
        if not ours or not theirs:
            raise SystemExit(
                f"{system}: found {len(ours)} ocjax seeds under {args.workroot} and "
                f"{len(theirs)} official CSVs in {HERE}; train and copy them first."
            )
        out = os.path.join(HERE, f"{system}_patches_side_by_side.png")
        plot(system, ours, theirs, out)
        print(f"\n{system} ({out})\n")
        print("| curve | step | ocjax | official | ocjax mean inside the official range |")
        print("|---|---|---|---|---|")
        for label, key, column in CURVES:
            for step in args.steps:
                a, b = at(ours, key, step), at(theirs, column, step)
                inside = (
                    "–"
                    if not (a and b)
                    else (
                        "yes"
                        if min(b) <= np.mean(a) <= max(b)
                        else f"no (Δ {np.mean(a) - np.mean(b):+.3f})"
                    )
                )
                print(f"| {label} | {step} | {summary(a)} | {summary(b)} | {inside} |")


if __name__ == "__main__":
    main()
