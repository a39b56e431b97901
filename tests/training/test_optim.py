"""Optimisers and schedules against independent references (PyTorch's clipping, formulas)."""

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
