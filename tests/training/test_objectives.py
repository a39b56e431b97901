"""Objectives wire model outputs to the losses as the configs say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.losses import contrastive
from ocjax.training.objectives import attention_masks, build_objective


def _outputs(b=3, k=4, d=6):
    keys = jax.random.split(jax.random.key(0), 3)
    return {
        "objects": jax.random.normal(keys[0], (2 * b, k, d)),
        "object_projections": jax.random.normal(keys[1], (2 * b, k, d)),
        "global_projection": jax.random.normal(keys[2], (2 * b, 5)),
    }


@pytest.mark.parametrize("object_loss", ["cossim", "ctr_img", "ctr_all"])
def test_contrastive_loss_is_the_weighted_sum(object_loss):
    out = _outputs()
    objective = build_objective(
        "contrastive",
        global_weight=0.7,
        object_weight=0.2,
        object_loss=object_loss,
        temperature=0.3,
    )
    loss, terms = objective.loss(out, {})
    s_a, s_b = out["objects"][:3], out["objects"][3:]
    p_a, p_b = out["object_projections"][:3], out["object_projections"][3:]
    assignment = contrastive.match_tokens(s_a, s_b)
    if object_loss == "cossim":
        expected_object = contrastive.cossim(p_a, p_b, s_a, s_b, assignment)
    else:
        expected_object = getattr(contrastive, object_loss)(p_a, p_b, assignment, 0.3)
    expected_global = contrastive.nt_xent(
        out["global_projection"][:3], out["global_projection"][3:], 0.3
    )
    np.testing.assert_allclose(terms[object_loss], expected_object, rtol=1e-6)
    np.testing.assert_allclose(terms["global"], expected_global, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.7 * expected_global + 0.2 * expected_object, rtol=1e-6)


def test_zero_weight_drops_the_term_and_sinkhorn_runs_under_jit():
    objective = build_objective(
        "contrastive", global_weight=0.0, object_weight=1.0, matching="sinkhorn"
    )
    loss, terms = jax.jit(objective.loss)(_outputs(), {})
    assert set(terms) == {"cossim"} and np.isfinite(loss)


def test_bad_options():
    with pytest.raises(ValueError, match="temperature"):
        build_objective("contrastive", temperature=0.0)
    with pytest.raises(ValueError, match="object_loss"):
        build_objective("contrastive", object_loss="ctr")
    with pytest.raises(ValueError, match="objective.name"):
        build_objective("vae")


def test_attention_masks_upsample_nearest():
    attention = jax.random.uniform(jax.random.key(0), (2, 3, 16))
    masks = np.asarray(attention_masks(attention, (8, 8)))
    grid = np.asarray(attention).reshape(2, 3, 4, 4)
    np.testing.assert_array_equal(masks, grid.repeat(2, axis=2).repeat(2, axis=3))


def test_token_statistics_against_numpy():
    from ocjax.training.objectives import token_statistics

    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((3, 10, 6)) + np.array([2.0, 0, 0, 0, 0, 0])
    stats = token_statistics({"tokens": jnp.asarray(tokens, jnp.float32)})
    for i, x in enumerate(tokens):

        def cosines(t):
            u = t / np.linalg.norm(t, axis=1, keepdims=True)
            c = u @ u.T
            return c[~np.eye(len(t), dtype=bool)].mean()

        mean = x.mean(0)
        np.testing.assert_allclose(float(stats["cosine"][i]), cosines(x), atol=1e-5)
        np.testing.assert_allclose(float(stats["residual_cosine"][i]), cosines(x - mean), atol=1e-5)
        share = len(x) * (mean**2).sum() / (x**2).sum()
        np.testing.assert_allclose(float(stats["mean_energy"][i]), share, rtol=1e-5)
