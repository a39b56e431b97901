"""Training-step speed of an experiment config against this device's own matmul peak.

Times the same jitted train step the trainer runs (forward, backward, optimiser update,
sharded over every visible device) as `../shared/ANCHORS.md` measures its anchors: median
of three windows of `--steps` steps after `--warmup` steps. The step's FLOPs come from
XLA's cost analysis of the compiled step. In the same process, a large `jnp.dot` measures
what this device reaches on dense float32 and bfloat16 matmuls (`peak_gflops`, the best of
several repeats); `fraction_of_peak` = achieved / float32 peak (bfloat16 peak for a
bfloat16 model), so the figure means the same on a laptop, a CI runner or an accelerator.
`--peak_tflops` adds the fraction of a named accelerator's datasheet figure.

With `--input pipeline` the steps read the config's real input pipeline (data rendered or
read as in training, augmentations on the host) instead of one random batch; the
difference is the time steps wait on input. A profile of `--profile_steps` steps gives
the 10 HLO ops that take the most time.

DINOSAUR / SPOT train on their frozen backbone's cached outputs where the config says so
(`data.cache_features`); `--cached_features` overrides it (`on`, `off`), or with `both`
times the step that recomputes the backbone and the step on cached outputs in one run,
one JSON line each and a last line with both and the speed-up.

    python benchmarks/train_step.py --config configs/shapes_rotating.py --batch 64
    python benchmarks/train_step.py --config configs/clevr_sa_ae.py:cpu --input pipeline
    python benchmarks/train_step.py --config configs/clevr_slots.py --peak_tflops 790
    python benchmarks/train_step.py --config configs/coco_dinosaur.py:cpu --cached_features both
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

# The config files import each other (`configs.coco_dinosaur`), as they do under `python -m`.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocjax import parallel  # noqa: E402
from ocjax.data import augment  # noqa: E402
from ocjax.models import build_model  # noqa: E402
from ocjax.models.dinosaur import frozen_subtrees  # noqa: E402
from ocjax.profiling import hlo_names, matmul_peak, op_kinds, top_ops  # noqa: E402
from ocjax.training import optim  # noqa: E402
from ocjax.training.cached_features import backbone_outputs  # noqa: E402
from ocjax.training.objectives import build_objective  # noqa: E402
from ocjax.training.state import create_state  # noqa: E402
from ocjax.training.steps import train_step  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_integer("batch", None, "Global batch size (default: the config's).")
flags.DEFINE_enum("input", "random", ["random", "pipeline"], "Random batch or real pipeline.")
flags.DEFINE_integer("warmup", 5, "Steps before timing.")
flags.DEFINE_integer("steps", 20, "Steps per timed window (three windows).")
flags.DEFINE_integer("profile_steps", 3, "Steps profiled for the top ops (0: no profile).")
flags.DEFINE_integer("top", 10, "HLO ops listed from the profile.")
flags.DEFINE_integer("peak_size", None, "Side of the peak matmul (default 2048 CPU, 8192 else).")
flags.DEFINE_float("peak_tflops", None, "Datasheet dense TFLOP/s of a named accelerator.")
flags.DEFINE_enum(
    "cached_features",
    "config",
    ["config", "on", "off", "both"],
    "DINOSAUR / SPOT: step on the backbone's cached outputs (on), recomputing the backbone "
    "(off), as data.cache_features says (config), or both timed side by side.",
)


def random_batch(config, batch_size: int) -> dict[str, np.ndarray]:
    """Random inputs with the shapes and dtypes the config's pipeline produces."""
    rng = np.random.default_rng(0)
    res, k = config.data.resolution, config.data.max_objects
    channels = config.data.get("channels", 3)
    low = 0.0 if config.data.get("normalization") == "unit" else -1.0
    batch = {
        "image": rng.uniform(low, 1, (batch_size, res, res, channels)).astype(np.float32),
        "segmentation": rng.integers(0, k + 1, (batch_size, res, res)).astype(np.int32),
        "pixel_valid": np.ones((batch_size, res, res), bool),
        "valid": np.ones(batch_size, bool),
    }
    if config.objective.name == "part_discovery":  # The object's mask is an input.
        batch["foreground"] = batch["segmentation"] > 0
    if config.data.get("views") is not None:  # uint8 images and drawn view parameters.
        batch["image"] = rng.integers(0, 256, (batch_size, res, res, channels), np.uint8)
        views = augment.TwoViewAugment(**config.data.views)
        drawn = [views({"image": image}, rng) for image in batch["image"]]
        for key in drawn[0].keys() - {"image"}:
            batch[key] = np.stack([d[key] for d in drawn])
    if config.data.get("cache_features"):  # The frozen backbone's outputs, as cached.
        model = build_model(**config.model)
        rngs = {"params": jax.random.key(0), "slots": jax.random.key(1)}
        variables = jax.eval_shape(lambda x: model.init(rngs, x, train=False), batch["image"])
        shapes = jax.eval_shape(
            functools.partial(backbone_outputs, model),
            variables["params"].get("backbone", {}),
            batch["image"],
        )
        for key, shape in shapes.items():
            batch[key] = rng.standard_normal(shape.shape).astype(np.float32)
    return batch


def build_step(config, batch_size: int, mesh) -> tuple[Callable, Any]:
    """The trainer's jitted train step for `config` and a fresh state."""
    model = build_model(**config.model)
    objective = build_objective(**config.objective)
    views = (
        augment.TwoViewAugment(**config.data.views)
        if config.data.get("views") is not None
        else None
    )
    schedule = optim.learning_rate_schedule(
        total_steps=10_000, **optim.in_steps(config.optimizer.schedule, 1_000)
    )
    tx = optim.from_config(config.optimizer, schedule, frozen=frozen_subtrees(model))
    rngs = {"params": jax.random.key(0), "slots": jax.random.key(1)}
    replicated, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    init = jax.jit(
        lambda x: create_state(model.init(rngs, x, train=False), tx), out_shardings=replicated
    )
    step = jax.jit(
        functools.partial(
            train_step,
            model=model,
            tx=tx,
            objective=objective,
            schedule=schedule,
            rng=jax.random.key(2),
            augment=views.render if views else None,
        ),
        in_shardings=(replicated, sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    image = random_batch(config, 1)["image"].astype(np.float32)
    return step, init(image)


def batches(config, batch_size: int, mesh) -> Iterator[Any]:
    """Device batches: one random batch forever, or the config's training pipeline."""
    if FLAGS.input == "random":
        batch = parallel.to_global(random_batch(config, batch_size), mesh)
        while True:
            yield batch
    from ocjax.training import trainer  # pylint: disable=import-outside-toplevel

    exp = trainer.Experiment(config)
    for batch in exp.train_data:
        yield parallel.to_global(batch, mesh)


def measure(config, batch_size: int, mesh) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compiles and times the step of `config`: ms, FLOPs and the ops profiled (all of them)."""
    step, state = build_step(config, batch_size, mesh)
    data = batches(config, batch_size, mesh)
    first = next(data)
    compiled = step.lower(state, first).compile()  # Timed below: one compilation in all.
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

    metrics = None

    def run() -> None:
        nonlocal state, metrics
        state, metrics = compiled(state, next(data))
        jax.block_until_ready(metrics)

    for _ in range(FLAGS.warmup):
        run()
    windows = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            state, metrics = compiled(state, next(data))
        jax.block_until_ready(metrics)
        windows.append((time.perf_counter() - start) / FLAGS.steps)
    seconds = statistics.median(windows)
    ops_all = []
    if FLAGS.profile_steps:
        ops_all = top_ops(run, FLAGS.profile_steps, None, hlo_names(compiled.as_text()))
    return {"seconds": seconds, "flops": flops}, ops_all


def report(
    config, batch_size: int, timing: dict[str, Any], ops_all: list[dict[str, Any]], mesh, peaks
) -> dict[str, Any]:
    """Prints the top ops and returns the JSON result of one timed step."""
    seconds, flops = timing["seconds"], timing["flops"]
    ops = ops_all[: FLAGS.top]
    dtype = config.model.get("dtype", "float32")
    achieved = flops / seconds / 1e9
    result = {
        "config": config_flags.get_config_filename(FLAGS["config"]),
        "device": jax.devices()[0].device_kind,
        "num_devices": mesh.devices.size,
        "dtype": dtype,
        "input": FLAGS.input,
        "batch": batch_size,
        "ms_per_step": 1e3 * seconds,
        "img_per_s": batch_size / seconds,
        "gflop_per_step": flops / 1e9,
        "achieved_gflops": achieved,
        "peak_gflops": peaks["bfloat16" if dtype == "bfloat16" else "float32"],
        "peak_gflops_float32": peaks["float32"],
        "peak_gflops_bfloat16": peaks["bfloat16"],
        "fraction_of_peak": achieved / peaks["bfloat16" if dtype == "bfloat16" else "float32"],
        "load_average": os.getloadavg()[0],
    }
    if config.data.get("cache_features") is not None:
        result["cached_features"] = bool(config.data.cache_features)
    if FLAGS.peak_tflops:
        result["fraction_of_named_peak"] = achieved / (FLAGS.peak_tflops * 1e3)
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:  # Of the process: every variant timed so far.
        result["peak_gib"] = stats["peak_bytes_in_use"] / 2**30
    if ops:
        print(f"top {len(ops)} HLO ops by time ({FLAGS.profile_steps} profiled steps):")
        for op in ops:
            print(
                f"  {op['ms_per_step']:9.2f} ms/step  {100 * op['share']:5.1f} %  "
                f"{op['op']:28s} {op['what'][:110]}"
            )
        kinds = op_kinds(ops_all)
        print("time by kind of op:", ", ".join(f"{k} {100 * v:.1f} %" for k, v in kinds[:6]))
        result["top_ops"] = [op["op"] for op in ops]
        result["top_ops_share"] = sum(op["share"] for op in ops)
    return result


def main(argv: list[str]) -> None:
    """Prints the top ops, then one JSON line with speed, work, peak and memory (per
    variant with `--cached_features both`, then one line comparing them)."""
    del argv
    config = FLAGS.config
    if FLAGS.batch is not None:
        with config.unlocked():
            config.training.batch_size = FLAGS.batch
    batch_size = config.training.batch_size
    mesh = parallel.make_mesh(config.mesh.num_devices)
    variants = {"config": [None], "on": [True], "off": [False], "both": [False, True]}
    measured = []
    for cached in variants[FLAGS.cached_features]:
        if cached is not None:
            with config.unlocked():
                config.data.cache_features = cached
        measured.append((cached, *measure(config, batch_size, mesh)))

    backend = jax.default_backend()
    size = FLAGS.peak_size or (2048 if backend == "cpu" else 8192)
    devices = mesh.devices.size
    peaks = {
        "float32": matmul_peak(jnp.float32, size) * devices,
        "bfloat16": matmul_peak(jnp.bfloat16, size) * devices,
    }
    results = []
    for cached, timing, ops_all in measured:
        if cached is not None:
            with config.unlocked():
                config.data.cache_features = cached
        result = report(config, batch_size, timing, ops_all, mesh, peaks)
        sys.stdout.flush()
        print(json.dumps(result))
        results.append(result)
    if len(results) == 2:
        recompute, cached = results
        print(
            json.dumps(
                {
                    "config": recompute["config"],
                    "ms_per_step_recomputed": recompute["ms_per_step"],
                    "ms_per_step_cached": cached["ms_per_step"],
                    "speedup": recompute["ms_per_step"] / cached["ms_per_step"],
                    "gflop_per_step_recomputed": recompute["gflop_per_step"],
                    "gflop_per_step_cached": cached["gflop_per_step"],
                    "load_average": os.getloadavg()[0],
                }
            )
        )


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
