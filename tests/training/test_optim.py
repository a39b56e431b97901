"""Optimisers and schedules against independent references (PyTorch's clipping, formulas,
the releases' schedules in float64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from ocjax.training import optim


def _grads(seed: int, scale: float) -> dict[str, jax.Array]:
    """Random gradients of three parameters, entries about `scale` in size."""
    rng = np.random.default_rng(seed)
    return {
        "dense": {"kernel": rng.normal(0, scale, (5, 7)).astype(np.float32)},
        "bias": rng.normal(0, scale, (7,)).astype(np.float32),
        "conv": rng.normal(0, scale, (3, 3, 2, 4)).astype(np.float32),
    }


def _torch_clipped(grads: dict, max_norm: float, norm_type: float) -> list[np.ndarray]:
    """The same gradients clipped by `torch.nn.utils.clip_grad_norm_`."""
    params = []
    for g in jax.tree.leaves(grads):
        p = torch.nn.Parameter(torch.zeros(g.shape))
        p.grad = torch.from_numpy(np.array(g))
        params.append(p)
    torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    return [p.grad.numpy() for p in params]


@pytest.mark.parametrize("norm_type", ["l2", "inf"])
@pytest.mark.parametrize("scale", [0.01, 1.0])
def test_clipping_equals_pytorch(norm_type, scale):
    grads = _grads(0, scale)
    max_norm = 0.3
    clip = optim.clip_by_total_norm(max_norm, norm_type)
    out, _ = clip.update(grads, clip.init(grads))
    expected = _torch_clipped(grads, max_norm, 2.0 if norm_type == "l2" else math.inf)
    for got, want in zip(jax.tree.leaves(out), expected):
        # PyTorch divides by norm + 1e-6: 1e-6 relative at these norms.
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-9)
    if scale == 1.0:  # Clipped: the total norm is now max_norm.
        leaves = [np.asarray(g) for g in jax.tree.leaves(out)]
        if norm_type == "inf":
            total = max(np.abs(g).max() for g in leaves)
        else:
            total = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in leaves))
        assert total == pytest.approx(max_norm, rel=1e-5)


def test_unknown_clip_norm_type_is_named():
    with pytest.raises(ValueError, match="grad_clip_norm_type 'l1'.*'l2'.*'inf'"):
        optim.clip_by_total_norm(1.0, "l1")


def test_frozen_subtrees_neither_move_nor_count_in_the_clip_norm():
    params = {"backbone": {"w": jnp.ones((3,))}, "head": {"w": jnp.ones((4,))}}
    grads = {"backbone": {"w": jnp.full((3,), 100.0)}, "head": {"w": jnp.full((4,), 0.1)}}
    tx = optim.make_optimizer(
        "sgd",
        optax.constant_schedule(1.0),
        grad_clip_norm=0.5,
        grad_clip_norm_type="inf",
        frozen=("backbone",),
    )
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(updates["backbone"]["w"]), 0.0)
    # The head's largest entry (0.1) is below 0.5: unclipped, despite the backbone's 100.
    np.testing.assert_allclose(np.asarray(updates["head"]["w"]), -0.1, rtol=1e-6)


def test_warmup_then_cosine_follows_the_formula():
    schedule = optim.learning_rate_schedule(
        learning_rate=4e-4,
        warmup_steps=10,
        decay="cosine",
        total_steps=110,
        end_learning_rate=4e-7,
    )
    for step in (0, 5, 10, 60, 110):
        if step < 10:
            want = 4e-4 * step / 10
        else:
            t = (step - 10) / 100
            want = 4e-7 + (4e-4 - 4e-7) * 0.5 * (1 + math.cos(math.pi * t))
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-12)


def test_exponential_decay_counted_from_the_warmup_end_follows_dinosaurs_release():
    lr, warmup, every, rate = 4e-4, 10, 25, 0.5
    schedule = optim.learning_rate_schedule(
        learning_rate=lr,
        warmup_steps=warmup,
        decay="exponential",
        total_steps=200,
        decay_steps=every,
        decay_rate=rate,
        decay_from="warmup_end",
    )
    for step in (0, 3, 9, 10, 11, 35, 60, 199):
        # OCLF: the warm-up factor alone before `warmup`, then decay by (step - warmup).
        want = lr * step / warmup if step < warmup else lr * rate ** ((step - warmup) / every)
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-12)


def test_exponential_decay_from_step_0_stays_the_default():
    lr, warmup, every, rate = 1e-3, 10, 25, 0.5
    schedule = optim.learning_rate_schedule(
        learning_rate=lr,
        warmup_steps=warmup,
        decay="exponential",
        total_steps=200,
        decay_steps=every,
        decay_rate=rate,
    )
    for step in (0, 5, 10, 35, 199):
        want = lr * min(1.0, step / warmup) * rate ** (step / every)
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-12)


def _spot_cosine(base: float, final: float, total: int, warmup: int) -> np.ndarray:
    """SPOT's per-step learning rates in float64: `np.linspace(0, base, warmup)`, then a cosine
    from `base` towards `final` over the remaining steps (the last value not quite `final`)."""
    steps = np.arange(total - warmup)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / len(steps)))
    return np.concatenate([np.linspace(0.0, base, warmup), cosine])


def test_cosine_with_the_warmup_endpoint_equals_spots_scheduler_at_every_step():
    total, warmup = 60, 12
    schedule = optim.learning_rate_schedule(
        learning_rate=4e-4,
        warmup_steps=warmup,
        decay="cosine",
        total_steps=total,
        end_learning_rate=4e-7,
        warmup_endpoint=True,
    )
    got = np.array([float(schedule(step)) for step in range(total)])
    np.testing.assert_allclose(got, _spot_cosine(4e-4, 4e-7, total, warmup), rtol=1e-5, atol=1e-12)


def test_configs_schedules_follow_their_releases():
    from configs import coco_dinosaur, coco_spot

    dinosaur = coco_dinosaur.get_config()
    schedule = optim.learning_rate_schedule(
        total_steps=dinosaur.training.num_steps, **dinosaur.optimizer.schedule
    )
    for step in (5_000, 10_000, 110_000, 499_999):  # OCLF: 4e-4, 10k warm-up, x0.5 / 100k.
        want = 4e-4 * step / 10_000 if step < 10_000 else 4e-4 * 0.5 ** ((step - 10_000) / 1e5)
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5)
    for preset, images, epochs in (("teacher", 118_287, 50), ("teacher+voc", 10_582, 560)):
        spot = coco_spot.get_config(preset)
        schedule = optim.learning_rate_schedule(
            total_steps=spot.training.num_steps, **spot.optimizer.schedule
        )
        # train_spot.py: drop_last batches of 64, warm-up int(10000 / (N / 64)) whole epochs.
        per_epoch = images // 64
        want = _spot_cosine(4e-4, 4e-7, epochs * per_epoch, int(10_000 / (images / 64)) * per_epoch)
        steps = np.arange(0, len(want), 97)
        got = np.array([float(schedule(step)) for step in steps])
        np.testing.assert_allclose(got, want[steps], rtol=2e-5, atol=1e-10)


def test_unknown_decay_start_is_named():
    with pytest.raises(ValueError, match="decay_from 'warmup'.*'start'.*'warmup_end'"):
        optim.learning_rate_schedule(
            learning_rate=1.0,
            warmup_steps=1,
            decay="exponential",
            total_steps=10,
            decay_steps=5,
            decay_from="warmup",
        )


def test_adamw_of_the_pretraining_recipes_equals_torch_param_groups():
    """b2 = 0.95, no decay on 1-D parameters (biases, norms), as DINO / MoCo v3 / MAE's
    `param_groups_weight_decay` with torch.optim.AdamW."""
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(3)]
    tx = optim.make_optimizer(
        "adamw", lambda step: 1e-2, weight_decay=0.3, b2=0.95, decay_matrices_only=True
    )
    ours = jax.tree.map(jnp.asarray, params)
    state = tx.init(ours)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, ours)
        ours = optax.apply_updates(ours, updates)
    w, b = (torch.tensor(params[k], requires_grad=True) for k in ("w", "b"))
    ref = torch.optim.AdamW(
        [{"params": [w], "weight_decay": 0.3}, {"params": [b], "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    for g in grads:
        w.grad, b.grad = torch.tensor(g["w"]), torch.tensor(g["b"])
        ref.step()
    np.testing.assert_allclose(np.asarray(ours["w"]), w.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours["b"]), b.detach().numpy(), atol=1e-5)


def test_weight_decay_schedule_is_dinos_cosine():
    """DINO's `cosine_scheduler(0.04, 0.4, epochs, niter_per_ep)` (no warm-up), per step."""
    total = 50
    schedule = optim.cosine_value(0.04, 0.4, total)
    iters = np.arange(total)
    expected = 0.4 + 0.5 * (0.04 - 0.4) * (1 + np.cos(np.pi * iters / total))
    np.testing.assert_allclose([float(schedule(i)) for i in iters], expected, rtol=1e-6)
    # AdamW decays by the scheduled rate at each step: with zero gradients, p *= 1 - lr * wd.
    tx = optim.make_optimizer(
        "adamw", lambda step: 0.1, weight_decay=0.04, weight_decay_end=0.4, total_steps=total
    )
    p = {"w": jnp.ones((2, 2))}
    state = tx.init(p)
    for i in range(3):
        updates, state = tx.update({"w": jnp.zeros((2, 2))}, state, p)
        new = optax.apply_updates(p, updates)
        np.testing.assert_allclose(
            np.asarray(new["w"]), np.asarray(p["w"]) * (1 - 0.1 * expected[i]), rtol=1e-6
        )
        p = new


def test_per_tensor_clipping_is_dinos_clip_gradients():
    """DINO's `clip_gradients`: each gradient scaled by clip / (norm + 1e-6) where < 1."""
    rng = np.random.default_rng(1)
    grads = {"a": rng.standard_normal((5, 5)) * 3, "b": rng.standard_normal(3) * 0.01}
    clip = optim.clip_by_total_norm(2.0, "per_tensor")
    ours, _ = clip.update(jax.tree.map(jnp.asarray, grads), clip.init(grads))
    for k, g in grads.items():
        coef = 2.0 / (np.linalg.norm(g) + 1e-6)
        expected = g * coef if coef < 1 else g
        np.testing.assert_allclose(np.asarray(ours[k]), expected, rtol=1e-5)
