r"""Reproduction driver: run a named CPU protocol end to end and record the result.

    python -m ocjax.reproduce cae_2shapes --seeds 3
    python -m ocjax.reproduce cae_2shapes --seeds 3 --jobs 2   # two seeds at a time, one core each
    python -m ocjax.reproduce --list

A protocol (`PROTOCOLS`) names a config preset (`:cpu`, the paper's protocol scaled to about
an hour on a 2-core CPU, see each config's docstring), the metric the paper reports and the
target. For each seed the driver trains and evaluates into `<workroot>/<name>/seed<k>`
(rerunning the command resumes unfinished seeds and reuses finished ones; each seed's
`run.json` keeps its wall time and the commits that trained it; with `--jobs J` the seeds
train J at a time as separate processes, each pinned to its own share of the CPUs), then
appends a row to `docs/reproductions.md` (system, data, protocol, steps, seeds, metric mean ± std,
paper, target, wall time, machine, date, commit) and writes the learning curve
(`<name>_curve.png`: held-out metric and training loss against step, one line per seed) and
the first seed's mask picture (`<name>_masks.png`) into `docs/reproductions/`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from ocjax import cpu_jobs
from ocjax.training import console
from ocjax.training.preemption import Interrupted

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE_HEADER = (
    "| protocol | system | data | steps | seeds | metric | result (mean ± std) | paper | target "
    "| reached | wall time | machine | date | commit | curve | masks |"
)
TABLE_COLUMNS = [c.strip() for c in TABLE_HEADER.strip("|").split("|")]


@dataclasses.dataclass(frozen=True)
class Ordering:
    """A claim of the paper between two protocols: the mean of `metric` here is `relation`
    (`">"` or `"<"`) its mean in protocol `other` (same workroot, same seed count)."""

    metric: str  # Key of eval.json.
    label: str
    relation: str
    other: str

    def __post_init__(self) -> None:
        if self.relation not in (">", "<"):
            raise ValueError(f"Ordering relation must be '>' or '<', got {self.relation!r}.")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One reproduction: a config preset, the metric the paper reports and the target here
    (an absolute `target`, the paper's `orderings` against other protocols, or both)."""

    system: str
    data: str
    config: str  # `path.py:preset`, relative to the repository root.
    metric: str  # Key of eval.json, e.g. "decoder/fg_ari".
    metric_label: str
    paper: str
    target: float | None
    picture: str | None  # Stem of the picture under images/ ("slots_decoder"); None: no masks.
    extra_metrics: tuple[tuple[str, str], ...] = ()  # (eval.json key, label) also reported.
    orderings: tuple[Ordering, ...] = ()
    # (eval.json key, a baseline's key in the same eval.json, label): the mean must be higher.
    beats: tuple[tuple[str, str, str], ...] = ()
    # Protocols whose run this one reads seed by seed (a SPOT student its own seed's
    # teacher): their `seed0` workdir in the config becomes `seed<i>` for seed i.
    paired: tuple[str, ...] = ()

    def describe_target(self) -> str:
        """The target column: `≥ t` and/or the orderings, e.g. `Otsu-IoU > flagship_x`."""
        parts = [f"≥ {self.target}"] if self.target is not None else []
        parts += [f"{o.label} {o.relation} `{o.other}`" for o in self.orderings]
        parts += [f"{label} above its baseline" for _, _, label in self.beats]
        return "; ".join(parts) or "– (reported)"


# The SPOT paper's encoder table (COCO, ViT-B/16 encoders pretrained on ImageNet):
# (DINOSAUR mBO, FG-ARI), (SPOT mBO, FG-ARI).
ENCODER_TABLE = {
    "dino": ("DINO", (31.6, 34.1), (35.0, 37.0)),
    "mocov3": ("MoCo v3", (31.4, 35.2), (32.9, 34.8)),
    "mae": ("MAE", (30.2, 32.8), (33.4, 37.7)),
}
_SCENES = "embedded CLEVR-like 64×64, 3–6 objects"
_SLOT_METRICS = (
    ("decoder/fg_ari", "FG-ARI"),
    ("attention/fg_ari", "attention FG-ARI"),
    ("attention/mbo", "attention mBO"),
)


def _encoder_protocols(encoder: str) -> dict[str, Protocol]:
    """The encoder table's rows for one encoder pretrained here: the encoder itself (its token
    diagnostics), DINOSAUR and SPOT's two stages on it, and part discovery with it as phi."""
    label, (dinosaur_mbo, dinosaur_ari), (spot_mbo, spot_ari) = ENCODER_TABLE[encoder]
    paper = f"COCO, {label} ViT-B/16:"
    on = f"on the {label} encoder pretrained here"
    return {
        f"{encoder}_clevr": Protocol(
            system=f"{label} encoder (ViT, 4×4 patches, 128-d, 4 blocks)",
            data=f"{_SCENES}, 10,000 scenes",
            config=f"configs/{encoder}.py:cpu",
            metric="readout/ari_bg",
            metric_label="token k-means FG-ARI",
            paper=f"{paper} DINOSAUR on it mBO {dinosaur_mbo}, FG-ARI {dinosaur_ari}",
            target=None,  # A diagnostic: how well the frozen tokens separate the objects.
            picture="readout_clusters",
            extra_metrics=(
                ("readout/mbo", "token k-means mBO"),
                ("vqa/ap", "token VQA AP"),
                ("tokens/residual_cosine", "residual token cosine"),
                ("tokens/mean_energy", "energy in the scene mean"),
            ),
        ),
        f"dinosaur_{encoder}": Protocol(
            system=f"DINOSAUR (MLP decoder) {on}",
            data=f"{_SCENES}, 7 slots",
            config=f"configs/coco_dinosaur.py:cpu+{encoder}",
            metric="decoder/fg_ari",
            metric_label="FG-ARI",
            paper=f"{paper} mBO {dinosaur_mbo}, FG-ARI {dinosaur_ari}",
            target=0.70,  # On the best encoder (the Slot Attention AE reaches 0.725 here).
            picture="slots_decoder",
            extra_metrics=(("decoder/mbo", "mBO"), *_SLOT_METRICS[1:]),
        ),
        f"spot_teacher_{encoder}": Protocol(
            system=f"SPOT teacher (stage 1) {on}",
            data=f"{_SCENES}, 7 slots",
            config=f"configs/coco_spot.py:teacher+cpu+{encoder}",
            metric="decoder/mbo",
            metric_label="mBO",
            paper=f"{paper} stage 1 below stage 2",
            target=None,
            picture="slots_decoder",
            extra_metrics=_SLOT_METRICS,
            orderings=(Ordering("decoder/mbo", "mBO", "<", f"spot_student_{encoder}"),),
        ),
        f"spot_student_{encoder}": Protocol(
            system=f"SPOT student (stage 2) {on}",
            data=f"{_SCENES}, 7 slots",
            config=f"configs/coco_spot.py:student+cpu+{encoder}",
            metric="decoder/mbo",
            metric_label="mBO",
            paper=f"{paper} mBO {spot_mbo}, FG-ARI {spot_ari}",
            target=None,
            picture="slots_decoder",
            extra_metrics=_SLOT_METRICS,
            orderings=(
                Ordering("decoder/mbo", "mBO", ">", f"spot_teacher_{encoder}"),
                Ordering("decoder/mbo", "mBO", ">", f"dinosaur_{encoder}"),
            ),
            paired=(f"spot_teacher_{encoder}",),
        ),
        f"parts_{encoder}": Protocol(
            system=f"Part discovery, phi {on}",
            data="embedded part figures 64×64, K = 4 (6 labelled parts)",
            config=f"configs/parts.py:cpu+{encoder}",
            metric="parts/pooled_fg_ari",
            metric_label="pooled FG-ARI",
            paper="CUB FG-NMI 46.0, FG-ARI 21.0 vs k-means of VGG19 34.9, 14.7",
            target=0.386,  # k-means of the pixel positions alone on these figures.
            picture="slots_parts",
            extra_metrics=(
                ("parts/pooled_fg_nmi", "pooled FG-NMI"),
                ("readout/pooled_fg_ari", "pooled k-means baseline FG-ARI"),
                ("parts/fg_ari", "per-image FG-ARI"),
            ),
            beats=(
                ("parts/pooled_fg_ari", "readout/pooled_fg_ari", "FG-ARI"),
                ("parts/pooled_fg_nmi", "readout/pooled_fg_nmi", "FG-NMI"),
            ),
        ),
    }


PROTOCOLS: dict[str, Protocol] = {
    "sa_ae_tetrominoes": Protocol(
        system="Slot Attention AE",
        data="embedded Tetrominoes 35×35, 4 slots",
        config="configs/tetrominoes_sa_ae.py:cpu",
        metric="decoder/fg_ari",
        metric_label="FG-ARI",
        paper="99.5 ± 0.2 (real Tetrominoes)",
        target=0.95,
        picture="slots_decoder",
        extra_metrics=(("decoder/mbo", "mBO"),),
    ),
    "sa_ae_clevr": Protocol(
        system="Slot Attention AE",
        data="embedded CLEVR-like 64×64, 3–6 objects, 7 slots",
        config="configs/clevr_sa_ae.py:cpu",
        metric="decoder/fg_ari",
        metric_label="FG-ARI",
        paper="98.8 ± 0.3 (CLEVR6, 128², 500k steps)",
        target=0.85,
        picture="slots_decoder",
        extra_metrics=(("decoder/mbo", "mBO"),),
    ),
    "cae_2shapes": Protocol(
        system="CAE",
        data="2Shapes 32×32",
        config="configs/shapes_cae.py:cpu",
        metric="readout/ari_bg",
        metric_label="ARI-BG",
        paper="≈ 0.999 (independent re-run, 10k steps)",
        target=0.95,
        picture="readout_clusters",
        extra_metrics=(("readout/mbo", "mBO"),),
    ),
    "rotating_4shapes": Protocol(
        system="Rotating Features",
        data="4Shapes 32×32, n = 8",
        config="configs/shapes_rotating.py:cpu",
        metric="readout/ari_bg",
        metric_label="ARI-BG",
        paper='"perfect separation"',
        target=0.90,
        picture="readout_clusters",
        extra_metrics=(("readout/mbo", "mBO"),),
    ),
    # The flagship's figure 4: Slot+COSSIM segments better than Cross+COSSIM (Otsu-IoU 43.0
    # vs 19.7), and the probe orders Slot+COSSIM > Cross+COSSIM > global-only (AP 85.6 >
    # 80.8 > 71.9). Each ordering is checked against the other protocol's seeds.
    "flagship_slot_cossim": Protocol(
        system="Slot Attention + COSSIM (flagship)",
        data="embedded CLEVR-like 64×64, 3–10 objects",
        config="configs/clevr_slots.py:slot_cossim+cpu",
        metric="attention/otsu_iou",
        metric_label="Otsu-IoU",
        paper="IoU 43.0 ± 3.1; AP 85.6 ± 2.3",
        target=0.30,
        picture="slots_attention",
        extra_metrics=(("vqa/ap", "VQA AP"),),
        orderings=(
            Ordering("attention/otsu_iou", "Otsu-IoU", ">", "flagship_cross_cossim"),
            Ordering("vqa/ap", "VQA AP", ">", "flagship_cross_cossim"),
        ),
    ),
    "flagship_cross_cossim": Protocol(
        system="Cross Attention + COSSIM",
        data="embedded CLEVR-like 64×64, 3–10 objects",
        config="configs/clevr_slots.py:cross_cossim+cpu",
        metric="attention/otsu_iou",
        metric_label="Otsu-IoU",
        paper="IoU 19.7 ± 1.6; AP 80.6–80.8",
        target=None,
        picture="slots_attention",
        extra_metrics=(("vqa/ap", "VQA AP"),),
        orderings=(
            Ordering("attention/otsu_iou", "Otsu-IoU", "<", "flagship_slot_cossim"),
            Ordering("vqa/ap", "VQA AP", ">", "flagship_global_only"),
        ),
    ),
    # DINOSAUR on the flagship's frozen ViT (needs flagship_slot_cossim's seed 0 workdir).
    "dinosaur_clevr": Protocol(
        system="DINOSAUR (frozen flagship ViT, MLP decoder)",
        data="embedded CLEVR-like 64×64, 3–6 objects, 7 slots",
        config="configs/coco_dinosaur.py:cpu",
        metric="decoder/fg_ari",
        metric_label="FG-ARI",
        paper="COCO mBO_i 27.7, mBO_c 30.9 (SPOT's DINOSAUR-MLP row; it gives no FG-ARI)",
        target=None,  # Reported next to the flagship's attention masks on the same data.
        picture="slots_decoder",
        extra_metrics=(("decoder/mbo", "mBO"), ("attention/fg_ari", "attention FG-ARI")),
    ),
    # SPOT's two stages on the same frozen ViT; the student must beat its teacher on mBO.
    "spot_teacher_clevr": Protocol(
        system="SPOT teacher (stage 1: patch-order permutations)",
        data="embedded CLEVR-like 64×64, 3–6 objects, 7 slots",
        config="configs/coco_spot.py:teacher+cpu",
        metric="decoder/mbo",
        metric_label="mBO",
        paper="COCO stage 1 below stage 2 (student mBO_i 35.0)",
        target=None,
        picture="slots_decoder",
        extra_metrics=(("decoder/fg_ari", "FG-ARI"),),
        orderings=(Ordering("decoder/mbo", "mBO", "<", "spot_student_clevr"),),
    ),
    "spot_student_clevr": Protocol(
        system="SPOT student (stage 2: attention distillation)",
        data="embedded CLEVR-like 64×64, 3–6 objects, 7 slots",
        config="configs/coco_spot.py:student+cpu",
        metric="decoder/mbo",
        metric_label="mBO",
        paper="COCO mBO_i 35.0, mBO_c 44.7, FG-ARI 37.0",
        target=None,
        picture="slots_decoder",
        extra_metrics=(("decoder/fg_ari", "FG-ARI"),),
        orderings=(Ordering("decoder/mbo", "mBO", ">", "spot_teacher_clevr"),),
    ),
    # DINOSAUR and SPOT side by side with the official releases (their curves as CSV in
    # docs/reproductions/): the same embedded data and protocol, raw-patch features.
    "dinosaur_patches": Protocol(
        system="DINOSAUR (raw 4×4 patches, MLP decoder), beside the official code",
        data="embedded CLEVR-like 64×64, 3–6 objects, 7 slots",
        config="configs/coco_dinosaur.py:cpu+patches",
        metric="decoder/fg_ari",
        metric_label="FG-ARI",
        paper="the official release on the same features and protocol (its CSVs beside the curves)",
        target=None,
        picture="slots_decoder",
        extra_metrics=(("decoder/mbo", "mBO"), ("attention/fg_ari", "attention FG-ARI")),
    ),
    "spot_teacher_patches": Protocol(
        system="SPOT teacher (raw 4×4 patches), beside the official code",
        data="embedded CLEVR-like 64×64, 3–6 objects, 7 slots",
        config="configs/coco_spot.py:teacher+cpu+patches",
        metric="decoder/mbo",
        metric_label="mBO",
        paper="the official release on the same features and protocol (its CSVs beside the curves)",
        target=None,
        picture="slots_decoder",
        extra_metrics=(("decoder/fg_ari", "FG-ARI"), ("attention/fg_ari", "attention FG-ARI")),
    ),
    "spot_student_patches": Protocol(
        system="SPOT student (raw 4×4 patches), beside the official code",
        data="embedded CLEVR-like 64×64, 3–6 objects, 7 slots",
        config="configs/coco_spot.py:student+cpu+patches",
        metric="decoder/mbo",
        metric_label="mBO",
        paper="the official release on the same features and protocol (its CSVs beside the curves)",
        target=None,
        picture="slots_decoder",
        extra_metrics=(("decoder/fg_ari", "FG-ARI"), ("attention/fg_ari", "attention FG-ARI")),
        paired=("spot_teacher_patches",),
    ),
    # Part discovery on the embedded figures, phi the flagship's frozen ViT.
    "parts_figures": Protocol(
        system="Part discovery (Choudhury et al.)",
        data="embedded part figures 64×64, K = 4 (6 labelled parts)",
        config="configs/parts.py:cpu",
        # The paper's FG-ARI / FG-NMI pool the pixels of every test image (part k must be
        # the same part everywhere), and so does its k-means baseline; per-image scores of
        # both are reported beside them.
        metric="parts/pooled_fg_ari",
        metric_label="pooled FG-ARI",
        paper="CUB FG-NMI 46.0, FG-ARI 21.0 vs k-means of VGG19 34.9, 14.7",
        target=None,
        picture="slots_parts",
        extra_metrics=(
            ("parts/pooled_fg_nmi", "pooled FG-NMI"),
            ("readout/pooled_fg_ari", "pooled k-means baseline FG-ARI"),
            ("readout/pooled_fg_nmi", "pooled k-means baseline FG-NMI"),
            ("parts/fg_ari", "per-image FG-ARI"),
            ("readout/ari_bg", "per-image k-means FG-ARI"),
        ),
        beats=(
            ("parts/pooled_fg_ari", "readout/pooled_fg_ari", "FG-ARI"),
            ("parts/pooled_fg_nmi", "readout/pooled_fg_nmi", "FG-NMI"),
        ),
    ),
    "flagship_global_only": Protocol(
        system="Global only (SimCLR, CLS token)",
        data="embedded CLEVR-like 64×64, 3–10 objects",
        config="configs/clevr_slots.py:global_only+cpu",
        metric="vqa/ap",
        metric_label="VQA AP",
        paper="AP 71.9 ± 9.2",
        target=None,
        picture=None,  # A global model has no object masks.
        orderings=(Ordering("vqa/ap", "VQA AP", "<", "flagship_cross_cossim"),),
    ),
    # The SPOT paper's encoder table on this CPU: DINO, MoCo v3 and MAE pretrained here.
    **{k: v for encoder in ENCODER_TABLE for k, v in _encoder_protocols(encoder).items()},
}


def describe_load(loads: Sequence[float | None]) -> str:
    """The machine load of a row: the largest recorded while its seeds trained, or, where a
    seed predates that record, the load now, said so."""
    if loads and all(load is not None for load in loads):
        return f"load {max(loads):.1f}"
    return f"load {os.getloadavg()[0]:.1f} when the row was written"


def machine() -> str:
    """The CPU model, core count and JAX backend of this machine."""
    import jax  # pylint: disable=import-outside-toplevel

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} {jax.default_backend()}"


def commit() -> str:
    """Short hash of HEAD, with `-dirty` if the working tree has changes (or `unknown`)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def load_protocol_config(protocol: Protocol) -> ml_collections.ConfigDict:
    """The protocol's config (`path.py:preset`, path relative to the repository root)."""
    from ocjax.main import load_config  # pylint: disable=import-outside-toplevel

    path, _, preset = protocol.config.partition(":")
    return load_config(os.path.join(REPO, path) + (f":{preset}" if preset else ""))


def read_metrics(workdir: str) -> list[dict[str, float]]:
    """Records of `workdir/metrics.jsonl`, the last one kept where a resume repeated a step."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    merged: dict[int, dict[str, float]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            merged.setdefault(record["step"], {}).update(record)
    return [merged[step] for step in sorted(merged)]


def run_seed(
    config: ml_collections.ConfigDict, workdir: str, code_version: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trains and evaluates one seed into `workdir` (resuming); returns eval.json and the
    run record `{"seconds", "commits", "load"}` kept in `workdir/run.json`.

    A seed whose `eval.json` already holds the final step is not run again. `seconds`
    accumulates over interrupted runs (Ctrl-C or SIGTERM); `commits` lists every commit
    (`code_version`) that trained the seed, so a row never names code that did not run;
    `load` is the machine's 15-minute load average when training stopped (the largest over
    interrupted runs), so a row written later still says how busy the machine was.
    """
    from ocjax.training import trainer  # pylint: disable=import-outside-toplevel

    eval_path = os.path.join(workdir, "eval.json")
    record_path = os.path.join(workdir, "run.json")
    record: dict[str, Any] = {"seconds": 0.0, "commits": []}
    if os.path.exists(record_path):
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
    results = finished_seed(config, workdir)
    if results is not None:
        return results, record
    if code_version not in record["commits"]:
        record["commits"].append(code_version)
    start = time.perf_counter()
    try:
        trainer.train_and_evaluate(config, workdir)
    finally:  # An interrupted seed keeps its time, so the resumed run reports the total.
        record["seconds"] += time.perf_counter() - start
        record["load"] = max(record.get("load", 0.0), os.getloadavg()[2])
        os.makedirs(workdir, exist_ok=True)
        with open(record_path, "w", encoding="utf-8") as f:
            json.dump(record, f)
    with open(eval_path, encoding="utf-8") as f:
        return json.load(f), record


def finished_seed(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
    """eval.json of the seed in `workdir` if it has trained all of `config`'s steps, else None."""
    eval_path = os.path.join(workdir, "eval.json")
    if not (os.path.exists(eval_path) and os.path.exists(os.path.join(workdir, "run.json"))):
        return None
    with open(eval_path, encoding="utf-8") as f:
        results = json.load(f)
    if config.training.num_steps is None or results.get("step") == config.training.num_steps:
        return results
    return None


def train_seeds_in_parallel(name: str, seeds: int, jobs: int, workroot: str) -> None:
    """Trains the unfinished seeds among 0..seeds-1 of protocol `name`, `jobs` at a time.

    Each seed is a `--only_seed` process pinned to its own share of the CPUs, its output in
    `<workroot>/<name>/seed<k>.log`; finished seeds are skipped.
    """
    protocol = PROTOCOLS[name]
    base = load_protocol_config(protocol)
    todo = [
        seed
        for seed in range(seeds)
        if finished_seed(
            seed_config(base, seed, workroot, protocol.paired), seed_workdir(workroot, name, seed)
        )
        is None
    ]
    command = [sys.executable, "-m", "ocjax.reproduce", name, "--workroot", workroot]
    cpu_jobs.run_pinned(
        [command + ["--only_seed", str(seed)] for seed in todo],
        [seed_workdir(workroot, name, seed) + ".log" for seed in todo],
        max(1, min(jobs, len(todo))),
        names=[f"{name} seed {seed}" for seed in todo],
    )


def seed_workdir(workroot: str, name: str, seed: int) -> str:
    """Workdir of seed index `seed` of protocol `name`."""
    return os.path.join(workroot, name, f"seed{seed}")


DEFAULT_WORKROOT = "runs/reproduce"


def seed_config(
    base: ml_collections.ConfigDict,
    seed: int,
    workroot: str = DEFAULT_WORKROOT,
    paired: tuple[str, ...] = (),
) -> ml_collections.ConfigDict:
    """`base` with its seed offset by the seed index, and the workdirs of other protocols it
    reads (`runs/reproduce/<protocol>/seed0` in the configs) moved under `workroot`; those
    of the `paired` protocols are the same seed's (`seed<seed>`)."""
    tree = base.to_dict()

    def relocate(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: relocate(v) for k, v in node.items()}
        if isinstance(node, str) and node.startswith(DEFAULT_WORKROOT + "/"):
            protocol, rest = node[len(DEFAULT_WORKROOT) + 1 :].split("/", 1)
            if protocol in paired and rest == "seed0":
                rest = f"seed{seed}"
            return os.path.join(workroot, protocol, rest)
        return node

    config = ml_collections.ConfigDict(relocate(tree))
    config.seed = base.seed + seed
    return config


def train_one_seed(
    name: str,
    seed: int,
    *,
    workroot: str = "runs/reproduce",
    protocol: Protocol | None = None,
    config: ml_collections.ConfigDict | None = None,
) -> dict[str, Any]:
    """Trains and evaluates seed index `seed` of protocol `name` only (no row); returns its
    eval.json. A later `reproduce` with enough seeds reuses it."""
    protocol = protocol or PROTOCOLS[name]
    base = config if config is not None else load_protocol_config(protocol)
    result, _ = run_seed(
        seed_config(base, seed, workroot, protocol.paired),
        seed_workdir(workroot, name, seed),
        commit(),
    )
    return result


def finished_results(workroot: str, name: str, seeds: int) -> list[dict[str, Any]] | None:
    """eval.json of seeds 0..seeds-1 of protocol `name` under `workroot`, or None if any has
    not trained all of its steps (`finished_seed`)."""
    base = load_protocol_config(PROTOCOLS[name])
    results = []
    for seed in range(seeds):
        result = finished_seed(
            seed_config(base, seed, workroot, PROTOCOLS[name].paired),
            seed_workdir(workroot, name, seed),
        )
        if result is None:
            return None
        results.append(result)
    return results


def judge(
    protocol: Protocol, results: Sequence[dict[str, Any]], workroot: str
) -> tuple[str, list[str]]:
    """The `reached` column (`yes`, `no` or `pending`) and one line per check.

    The target holds if the metric's mean reaches it; an ordering if this protocol's mean
    of its metric stands in its relation to the other protocol's mean over as many seeds.
    An ordering whose other protocol has not finished those seeds is `pending`.
    """
    checks, verdicts = [], []
    for key, baseline, label in protocol.beats:
        mine = float(np.mean([r[key] for r in results]))
        theirs = float(np.mean([r[baseline] for r in results]))
        verdicts.append(mine > theirs)
        checks.append(f"{label} {mine:.3f} > baseline {theirs:.3f}: {verdicts[-1]}")
    if protocol.target is None and not protocol.orderings and not protocol.beats:
        return "–", ["no target: the row reports the result"]
    if protocol.target is not None:
        mean = float(np.mean([r[protocol.metric] for r in results]))
        verdicts.append(mean >= protocol.target)
        checks.append(f"{protocol.metric_label} {mean:.3f} ≥ {protocol.target}: {verdicts[-1]}")
    for o in protocol.orderings:
        others = finished_results(workroot, o.other, len(results))
        if others is None:
            verdicts.append(None)
            checks.append(f"{o.label} {o.relation} {o.other}: pending ({o.other} not finished)")
            continue
        mine = float(np.mean([r[o.metric] for r in results]))
        theirs = float(np.mean([r[o.metric] for r in others]))
        verdicts.append(mine > theirs if o.relation == ">" else mine < theirs)
        checks.append(f"{o.label} {mine:.3f} {o.relation} {theirs:.3f} ({o.other}): {verdicts[-1]}")
    if any(v is False for v in verdicts):
        return "no", checks
    return ("pending" if None in verdicts else "yes"), checks


def summarize(values: Sequence[float]) -> str:
    """`mean ± std` (sample std over seeds; `mean` alone for one seed), three decimals."""
    values = np.asarray(values, np.float64)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def read_reference(paths: Sequence[str], column: str) -> dict[int, list[float]]:
    """Values of `column` by step from reference CSV files (one per seed, a `step` column)."""
    by_step: dict[int, list[float]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows or "step" not in rows[0] or column not in rows[0]:
            raise ValueError(
                f"Reference {path} needs columns 'step' and {column!r}; it has "
                f"{sorted(rows[0]) if rows else 'no rows'}."
            )
        for row in rows:
            by_step.setdefault(int(row["step"]), []).append(float(row[column]))
    return by_step


def plot_curve(
    name: str,
    protocol: Protocol,
    histories: Sequence[list[dict[str, float]]],
    path: str,
    reference: dict[int, list[float]] | None = None,
    reference_label: str = "reference",
    tests: Sequence[tuple[int, float]] = (),
) -> None:
    """Held-out metric and training loss against step, one line per seed, as a PNG.

    `reference` (values by step over seeds, e.g. the official code on the same data) is
    drawn as its mean with error bars of its sample std; `tests` (each seed's final step and
    test-split value) as stars, so a metric only the final evaluation computes (the VQA
    probe) is on the curve too.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    key = f"eval/{protocol.metric}"
    for seed, records in enumerate(histories):
        points = [(r["step"], r[key]) for r in records if key in r]
        colour = f"C{seed % 10}"
        if points:
            left.plot(
                *zip(*points), marker="o", markersize=3, color=colour, label=f"ocjax seed {seed}"
            )
        if seed < len(tests):
            left.plot(
                *tests[seed],
                marker="*",
                markersize=9,
                color=colour,
                linestyle="none",
                label=f"seed {seed}, test split",
            )
        losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
        if losses:
            right.plot(*zip(*losses), label=f"seed {seed}")
    if reference:
        steps = sorted(reference)
        means = [float(np.mean(reference[k])) for k in steps]
        stds = [float(np.std(reference[k], ddof=1)) if len(reference[k]) > 1 else 0 for k in steps]
        seeds = max(len(v) for v in reference.values())
        left.errorbar(
            steps,
            means,
            yerr=stds,
            color="black",
            marker="s",
            markersize=4,
            capsize=3,
            label=f"{reference_label} ({seeds} seed{'s' * (seeds > 1)})",
        )
    if protocol.target is not None:
        left.axhline(
            protocol.target, color="grey", linestyle="--", label=f"target {protocol.target}"
        )
    left.set(
        xlabel="step",
        ylabel=f"{protocol.metric_label} (held-out; stars: test)",
        title=f"{protocol.system}: {protocol.metric_label}",
        ylim=(0, 1),
    )
    right.set(xlabel="step", ylabel="training loss", title="loss", yscale="log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"{name}: {protocol.data}", fontsize=10)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_row(values: dict[str, str]) -> str:
    """One Markdown table row in `TABLE_COLUMNS` order; `|` inside a value is escaped."""
    missing = [c for c in TABLE_COLUMNS if c not in values]
    if missing:
        raise KeyError(f"Row lacks columns {missing}.")
    cells = [str(values[c]).replace("|", "\\|") for c in TABLE_COLUMNS]
    return "| " + " | ".join(cells) + " |"


# A rerun appends a row only if one of these changed (e.g. an ordering no longer pending).
_ROW_IDENTITY = ("protocol", "steps", "seeds", "result (mean ± std)", "reached", "commit")


def _same_result(line: str, values: dict[str, str]) -> bool:
    """Whether table `line` reports the same protocol, budget, result, verdict and commit as
    `values`."""
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
    if len(cells) != len(TABLE_COLUMNS):
        return False
    row = dict(zip(TABLE_COLUMNS, cells))
    return all(row[k] == str(values[k]).replace("|", "\\|") for k in _ROW_IDENTITY)


def append_row(report: str, row: str, values: dict[str, str] | None = None) -> bool:
    """Appends `row` to the table of `report` (created with its header if missing).

    With `values` (the row's cells), a row that repeats an existing one (same protocol,
    steps, seeds, result and commit, e.g. a rerun that only redraws the curve) is not
    appended again. Returns whether the row was appended.
    """
    if not os.path.exists(report):
        os.makedirs(os.path.dirname(report) or ".", exist_ok=True)
        with open(report, "w", encoding="utf-8") as f:
            f.write(
                "# Reproductions\n\nRows appended by `python -m ocjax.reproduce NAME`; "
                "see `docs/reproductions/` for curves and masks.\n\n"
            )
    with open(report, encoding="utf-8") as f:
        text = f.read()
    if values is not None and any(_same_result(line, values) for line in text.splitlines()):
        return False
    if TABLE_HEADER not in text:
        separator = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
        text = text.rstrip("\n") + "\n\n" + TABLE_HEADER + "\n" + separator + "\n"
    with open(report, "w", encoding="utf-8") as f:
        f.write(text + row + "\n")
    return True


def reproduce(
    name: str,
    *,
    seeds: int = 3,
    workroot: str = "runs/reproduce",
    docs: str = os.path.join(REPO, "docs"),
    protocol: Protocol | None = None,
    config: ml_collections.ConfigDict | None = None,
    reference: Sequence[str] = (),
    reference_label: str = "reference",
) -> dict[str, Any]:
    """Runs protocol `name` for `seeds` seeds, appends its row and writes its pictures.

    `protocol` and `config` replace the registered protocol and its config (tests use a
    tiny one). `reference` CSV files (one per seed; `step` and a column named like the
    metric's last part, e.g. `ari_bg`) are overlaid on the curve. Returns the row's values
    plus per-seed `results`.
    """
    protocol = protocol or PROTOCOLS[name]
    code_version = commit()  # Recorded per seed when it trains, even if HEAD moves later.
    base = config if config is not None else load_protocol_config(protocol)
    results, seconds, histories, commits, loads = [], [], [], [], []
    for seed in range(seeds):
        workdir = seed_workdir(workroot, name, seed)
        result, record = run_seed(
            seed_config(base, seed, workroot, protocol.paired), workdir, code_version
        )
        if protocol.metric not in result:
            raise KeyError(
                f"eval.json of {workdir} has no {protocol.metric!r}; it has {sorted(result)}."
            )
        results.append(result)
        seconds.append(record["seconds"])
        loads.append(record.get("load"))
        commits.extend(c for c in record["commits"] if c not in commits)
        histories.append(read_metrics(workdir))
    pictures = os.path.join(docs, "reproductions")
    curve = os.path.join(pictures, f"{name}_curve.png")
    column = protocol.metric.rsplit("/", 1)[-1]
    plot_curve(
        name,
        protocol,
        histories,
        curve,
        read_reference(reference, column) if reference else None,
        reference_label,
        [(int(r.get("step", 0)), r[protocol.metric]) for r in results],
    )
    if protocol.picture is not None:
        shutil.copyfile(
            os.path.join(seed_workdir(workroot, name, 0), "images", protocol.picture + ".png"),
            os.path.join(pictures, f"{name}_masks.png"),
        )
    metric_values = [r[protocol.metric] for r in results]
    reached, checks = judge(protocol, results, workroot)
    shown = [f"{protocol.metric_label} {summarize(metric_values)}"] + [
        f"{label} {summarize([r[key] for r in results])}"
        for key, label in protocol.extra_metrics
        if all(key in r for r in results)
    ]
    row = {
        "protocol": f"`{name}` (`{protocol.config}`)",
        "system": protocol.system,
        "data": protocol.data,
        "steps": f"{results[0]['step']:,} × batch {base.training.batch_size}",
        "seeds": str(seeds),
        "metric": f"{protocol.metric_label} ({base.evaluation.split}, {results[0]['num_images']} images)",
        "result (mean ± std)": "; ".join(shown),
        "paper": protocol.paper,
        "target": protocol.describe_target(),
        "reached": reached,
        "wall time": f"{sum(seconds) / 60:.0f} min ({np.mean(seconds) / 60:.0f} per seed)",
        "machine": f"{machine()}; {describe_load(loads)}",
        "date": datetime.date.today().isoformat(),
        "commit": ", ".join(commits),
        "curve": f"[curve](reproductions/{name}_curve.png)",
        "masks": f"[masks](reproductions/{name}_masks.png)" if protocol.picture else "–",
    }
    append_row(os.path.join(docs, "reproductions.md"), format_row(row), row)
    return {**row, "results": results, "metric_values": metric_values, "checks": checks}


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """Turns SIGTERM into SystemExit so that the running seed records its wall time."""
    del frame
    sys.exit(f"Stopped by signal {signum}; rerun the same command to resume.")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `python -m ocjax.reproduce NAME [--seeds 3] [--workroot runs/reproduce]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help=f"one of {sorted(PROTOCOLS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds to run (default 3)")
    parser.add_argument("--workroot", default="runs/reproduce", help="where the workdirs go")
    parser.add_argument("--docs", default=os.path.join(REPO, "docs"), help="report directory")
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        help="CSV of a reference implementation's curve on the same data (one per seed; "
        "columns step and the metric, e.g. ari_bg); repeatable",
    )
    parser.add_argument("--reference_label", default="reference", help="legend of --reference")
    parser.add_argument(
        "--only_seed",
        type=int,
        default=None,
        help="train and evaluate only this seed index (e.g. one per machine or core) and "
        "write no row; a later run with --seeds reuses it",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many seeds at once, each a process on its own share of the CPUs "
        "(on a 2-core machine, --jobs 2 trains two single-core seeds side by side)",
    )
    parser.add_argument("--list", action="store_true", help="list the protocols and exit")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        for key, p in PROTOCOLS.items():
            print(f"{key:22s} {p.system}, {p.data}")
            print(f"{'':22s} {p.metric_label}; target {p.describe_target()}; {p.config}")
        return
    if args.name not in PROTOCOLS:
        sys.exit(f"Unknown protocol {args.name!r}; use one of {sorted(PROTOCOLS)} (--list).")
    if args.seeds < 1:
        sys.exit(f"--seeds must be at least 1, got {args.seeds}.")
    if args.only_seed is not None and args.only_seed < 0:
        sys.exit(f"--only_seed must be a seed index ≥ 0, got {args.only_seed}.")
    if args.jobs > 1 and args.only_seed is not None:
        sys.exit("--jobs trains several seeds side by side; --only_seed trains one. Use one.")
    try:
        cpu_jobs.cpu_groups(args.jobs, cpu_jobs.available_cpus())
    except ValueError as error:
        sys.exit(str(error))
    console.quiet_libraries()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _run(args)
    except Interrupted as stop:  # Ctrl-C or SIGTERM while training: the step is saved.
        print(f"ocjax: {stop}", file=sys.stderr)
        sys.exit(stop.exit_code)


def _run(args: argparse.Namespace) -> None:
    """Trains one seed (`--only_seed`) or every seed and writes the row."""
    if args.only_seed is not None:
        result = train_one_seed(args.name, args.only_seed, workroot=args.workroot)
        protocol = PROTOCOLS[args.name]
        print(
            f"{args.name} seed {args.only_seed}: {protocol.metric_label} "
            f"{result[protocol.metric]:.3f} (no row; rerun with --seeds to write it)"
        )
        return
    if args.jobs > 1:
        try:
            train_seeds_in_parallel(args.name, args.seeds, args.jobs, args.workroot)
        except RuntimeError as failure:
            sys.exit(f"ocjax: {failure}")
        except KeyboardInterrupt:
            sys.exit("ocjax: stopped; every seed saved its step. Rerun the same command to resume.")
    row = reproduce(
        args.name,
        seeds=args.seeds,
        workroot=args.workroot,
        docs=args.docs,
        reference=args.reference,
        reference_label=args.reference_label,
    )
    print(format_row({k: row[k] for k in TABLE_COLUMNS}))
    for line in row["checks"]:
        print(line)


if __name__ == "__main__":
    main()
