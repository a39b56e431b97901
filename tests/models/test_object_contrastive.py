"""The global + object contrastive model: outputs, attention normalisation, variants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models import build_model

SMALL = dict(
    patch_size=4,
    dim=16,
    depth=1,
    num_heads=2,
    mlp_dim=32,
    num_queries=5,
    global_dim=12,
    projection_dim=8,
)


def _run(**kwargs):
    model = build_model("object_contrastive", **{**SMALL, **kwargs})
    images = jax.random.normal(jax.random.key(0), (3, 16, 16, 3))
    rngs = {"params": jax.random.key(1), "slots": jax.random.key(2)}
    variables = model.init(rngs, images)
    return model.apply(variables, images, rngs={"slots": jax.random.key(3)}), variables


@pytest.mark.parametrize("query_init", ["learned", "gaussian", "mixture", "kmeans"])
def test_slot_attention_variant(query_init):
    out, _ = _run(query_init=query_init)
    assert out["objects"].shape == (3, 5, 16) and out["object_projections"].shape == (3, 5, 16)
    assert out["attention"].shape == (3, 5, 16)  # 16 patches of 4x4 in a 16x16 image
    assert out["global"].shape == (3, 12) and out["global_projection"].shape == (3, 8)
    # Slot Attention normalises over the queries: every patch's weights sum to one.
    np.testing.assert_allclose(out["attention"].sum(axis=1), 1.0, rtol=1e-5)


def test_cross_attention_variant():
    out, variables = _run(object_function="cross_attention", cross_layers=2)
    # Cross attention normalises over the patches: every query's weights sum to one.
    np.testing.assert_allclose(out["attention"].sum(axis=2), 1.0, rtol=1e-5)
    assert {"layer_0", "layer_1"} <= set(variables["params"]["cross_attention"])


def test_global_only_uses_cls_token_and_no_objects():
    out, variables = _run(object_function="none")
    assert set(out) == {"global", "global_projection"}
    assert "cls_token" in variables["params"]["backbone"]


def test_global_branch_pools_object_tokens():
    out, variables = _run()
    dense = variables["params"]["global"]
    expected = np.asarray(out["objects"]).mean(axis=1) @ np.asarray(dense["kernel"]) + np.asarray(
        dense["bias"]
    )
    np.testing.assert_allclose(out["global"], expected, rtol=1e-4, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
    out, variables = _run(dtype="bfloat16")
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    assert all(v.dtype == jnp.float32 for v in out.values())


def test_unknown_variants_are_rejected():
    with pytest.raises(ValueError, match="object_function"):
        _run(object_function="routing")
    with pytest.raises(ValueError, match="query_init"):
        _run(query_init="grid")
