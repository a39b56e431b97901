"""Training-step speed of an experiment config on random data: ms/step, img/s, FLOPs, memory.

Times the same jitted train step the trainer runs (forward, backward, optimiser update,
sharded over every visible device) on random inputs of the config's shapes, as
`../shared/ANCHORS.md` measures its anchors: median of three windows of `--steps` steps
after `--warmup` steps. FLOPs come from XLA's cost analysis of the compiled step; the
fraction of the floor uses `--peak_tflops` (H100 SXM dense bf16: 790).

    python benchmarks/train_step.py --config configs/clevr_sa_ae.py --config.model.dtype=bfloat16
    python benchmarks/train_step.py --config configs/clevr_slots.py
"""

import functools
import json
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from ocjax import parallel
from ocjax.models import build_model
from ocjax.training import optim
from ocjax.training.objectives import build_objective
from ocjax.training.state import create_state
from ocjax.training.steps import train_step

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_integer("warmup", 15, "Steps before timing.")
flags.DEFINE_integer("steps", 60, "Steps per timed window (three windows).")
flags.DEFINE_float("peak_tflops", 790.0, "Device peak dense TFLOP/s for the floor.")


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
    if config.data.get("views") is not None:
        size = config.data.views.size
        for view in ("view_a", "view_b"):
            batch[view] = rng.normal(size=(batch_size, size, size, 3)).astype(np.float32)
    return batch


def main(argv: list[str]) -> None:
    """Prints one JSON line with the step's speed, work and memory."""
    del argv
    config = FLAGS.config
    mesh = parallel.make_mesh(config.mesh.num_devices)
    batch_size = config.training.batch_size
    model = build_model(**config.model)
    objective = build_objective(**config.objective)
    schedule = optim.learning_rate_schedule(
        total_steps=10_000, **optim.in_steps(config.optimizer.schedule, 1_000)
    )
    tx = optim.make_optimizer(
        config.optimizer.name,
        schedule,
        weight_decay=config.optimizer.weight_decay,
        grad_clip_norm=config.optimizer.grad_clip_norm,
    )
    batch = random_batch(config, batch_size)
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
        ),
        in_shardings=(replicated, sharded),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    state = init(batch["image"][:1])
    device_batch = parallel.to_global(batch, mesh)
    compiled = step.lower(state, device_batch).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    for _ in range(FLAGS.warmup):
        state, metrics = step(state, device_batch)
    jax.block_until_ready(metrics)
    windows = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            state, metrics = step(state, device_batch)
        jax.block_until_ready(metrics)
        windows.append((time.perf_counter() - start) / FLAGS.steps)
    seconds = statistics.median(windows)
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    stats = jax.devices()[0].memory_stats() or {}
    print(
        json.dumps(
            {
                "device": jax.devices()[0].device_kind,
                "num_devices": mesh.devices.size,
                "dtype": config.model.dtype,
                "batch": batch_size,
                "ms_per_step": 1e3 * seconds,
                "img_per_s": batch_size / seconds,
                "tflop_per_step": flops / 1e12,
                "fraction_of_floor": flops / seconds / (FLAGS.peak_tflops * 1e12),
                "peak_gib": stats.get("peak_bytes_in_use", float("nan")) / 2**30,
            }
        )
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
