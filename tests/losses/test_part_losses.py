"""Part-discovery losses against float64 numpy written from the paper's formulas."""

import jax
import numpy as np
import pytest

from ocjax.losses import parts

RNG = np.random.default_rng(0)


def _masks(b=2, k=3, h=5, w=6):
    logits = RNG.normal(size=(b, k, h, w))
    e = np.exp(logits)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _spread_reference(masks, values, fg):
    b, k = masks.shape[:2]
    total, count = 0.0, fg.sum()
    for n in range(b):
        for j in range(k):
            m = masks[n, j] * fg[n]
            z = (m[..., None] * values[n]).sum((0, 1)) / (m.sum() + 1e-8)
            total += (m * ((values[n] - z) ** 2).sum(-1)).sum()
    return total / count


def test_feature_and_visual_losses_equal_the_formula():
    masks = _masks()
    features = RNG.normal(size=(2, 5, 6, 4)).astype(np.float32)
    images = RNG.random((2, 5, 6, 3)).astype(np.float32)
    fg = (RNG.random((2, 5, 6)) < 0.7).astype(np.float32)
    m64, f64 = masks.astype(np.float64), features.astype(np.float64)
    assert float(parts.feature_loss(masks, features, fg)) == pytest.approx(
        _spread_reference(m64, f64, fg), rel=1e-5
    )
    assert float(parts.visual_consistency_loss(masks, images, fg)) == pytest.approx(
        _spread_reference(m64, images.astype(np.float64), fg), rel=1e-5
    )


def test_contrastive_loss_equals_the_formula():
    z = RNG.normal(size=(3, 4, 5)).astype(np.float32)
    tau = 0.3
    a = z.astype(np.float64) / np.linalg.norm(z, axis=-1, keepdims=True)
    losses = []
    for n in range(3):
        for k in range(4):
            neg = sum(np.exp(a[n, k] @ a[m, j] / tau) for m in range(3) for j in range(4) if j != k)
            for i in range(3):
                if i != n:
                    pos = np.exp(a[n, k] @ a[i, k] / tau)
                    losses.append(-np.log(pos / (pos + neg)))
    got = jax.jit(parts.contrastive_loss, static_argnums=1)(z, tau)
    assert float(got) == pytest.approx(np.mean(losses), rel=1e-5)


def test_contrastive_loss_prefers_parts_consistent_across_images():
    base = RNG.normal(size=(1, 4, 8))
    consistent = base + 0.05 * RNG.normal(size=(5, 4, 8))
    shuffled = np.stack([row[RNG.permutation(4)] for row in consistent])
    assert float(parts.contrastive_loss(consistent, 0.2)) < float(
        parts.contrastive_loss(shuffled, 0.2)
    )


def test_contrastive_loss_needs_two_images():
    with pytest.raises(ValueError, match=">= 2 images"):
        parts.contrastive_loss(np.ones((1, 4, 3), np.float32), 0.1)


def test_equivariance_loss_is_symmetric_kl_and_zero_for_equal_masks():
    p, q = _masks(), _masks()
    valid = RNG.random((2, 5, 6)) < 0.8
    kl = (p * np.log(p / q)).sum(1) + (q * np.log(q / p)).sum(1)
    expected = (kl * valid).sum() / valid.sum()
    assert float(parts.equivariance_loss(q, p, valid)) == pytest.approx(expected, rel=1e-5)
    assert float(parts.equivariance_loss(p, q, valid)) == pytest.approx(expected, rel=1e-5)
    assert float(parts.equivariance_loss(p, p)) == pytest.approx(0.0, abs=1e-7)


def test_equivariance_loss_passes_gradient_only_to_the_masks_of_the_transformed_image():
    p, q = _masks(), _masks()
    grad_q, grad_p = jax.grad(parts.equivariance_loss, argnums=(0, 1))(q, p)
    assert np.abs(np.asarray(grad_p)).max() == 0
    # d/dq of sum p log(p/q) + q log(q/p), averaged over the 2*5*6 pixels.
    expected = (-p / q + np.log(q / p) + 1.0) / p[:, 0].size
    np.testing.assert_allclose(np.asarray(grad_q), expected, rtol=1e-4, atol=1e-6)


def test_contrastive_gradient_is_finite_for_an_empty_part():
    z = RNG.normal(size=(3, 4, 8)).astype(np.float32)
    z[1, 2] = 0.0  # A part with no pixels has a zero descriptor.
    grad = jax.grad(parts.contrastive_loss)(z, 0.2)
    assert np.isfinite(np.asarray(grad)).all()
