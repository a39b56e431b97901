"""Cross attention against a float64 numpy re-implementation of pre-norm transformer layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from ocjax.models.cross_attention import CrossAttention, MultiHeadAttention


def layer_norm(x, p, eps=1e-6):
    """LayerNorm over the last axis with flax's parameter names."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def dense(x, p):
    """Affine map with flax's parameter names (bias optional)."""
    return x @ p["kernel"] + p.get("bias", 0.0)


def mlp(x, p):
    """Dense -> exact GELU -> Dense."""
    h = dense(x, p["dense_1"])
    return dense(0.5 * h * (1.0 + erf(h / np.sqrt(2.0))), p["dense_2"])


def multi_head_attention(queries, inputs, p, num_heads):
    """Per-head softmax(q k^T / sqrt(d_head)) v over the keys, heads concatenated, projected."""
    b, nq, dim = queries.shape
    hd = dim // num_heads
    out = np.zeros((b, nq, dim))
    attention = np.zeros((b, num_heads, nq, inputs.shape[1]))
    q, k, v = (
        dense(x, p[name]) for x, name in [(queries, "query"), (inputs, "key"), (inputs, "value")]
    )
    for h in range(num_heads):
        sl = slice(h * hd, (h + 1) * hd)
        logits = q[..., sl] @ k[..., sl].transpose(0, 2, 1) / np.sqrt(hd)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        attention[:, h] = e / e.sum(-1, keepdims=True)
        out[..., sl] = attention[:, h] @ v[..., sl]
    return dense(out, p["out"]), attention


def reference_cross_attention(queries, inputs, params, num_layers, num_heads):
    """Returns final queries and every layer's per-head attention `[b, heads, q, n]`."""
    maps = []
    for i in range(num_layers):
        p = params[f"layer_{i}"]
        update, attention = multi_head_attention(
            layer_norm(queries, p["norm_queries"]),
            layer_norm(inputs, p["norm_inputs"]),
            p["attention"],
            num_heads,
        )
        queries = queries + update
        queries = queries + mlp(layer_norm(queries, p["norm_mlp"]), p["mlp"])
        maps.append(attention)
    return queries, maps


def random_params(module, *inputs, seed=0, scale=0.5):
    """Draws every parameter of `module` from N(0, scale^2), so biases and norm scales matter.

    Shapes come from `jax.eval_shape` of `init`, which keeps the tests free of compilations.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)["params"]
    return jax.tree.map(lambda x: (scale * rng.normal(size=x.shape)).astype(np.float32), shapes)


def to_float64(tree):
    """Copies a parameter tree to float64 numpy arrays."""
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_matches_float64_numpy(num_layers):
    rng = np.random.default_rng(num_layers)
    queries = rng.normal(size=(2, 5, 16)).astype(np.float32)
    inputs = rng.normal(size=(2, 12, 16)).astype(np.float32)
    module = CrossAttention(num_layers=num_layers, num_heads=4, mlp_dim=24)
    with jax.default_matmul_precision("highest"):
        params = random_params(module, queries, inputs, seed=num_layers)
        out, attention = jax.jit(module.apply)({"params": params}, queries, inputs)
    ref, maps = reference_cross_attention(
        queries.astype(np.float64),
        inputs.astype(np.float64),
        to_float64(params),
        num_layers,
        num_heads=4,
    )
    assert out.shape == (2, 5, 16) and attention.shape == (2, 5, 12)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(attention, maps[0].mean(axis=1), rtol=1e-4, atol=1e-6)
    if num_layers == 2:
        assert not np.allclose(attention, maps[1].mean(axis=1), atol=1e-3)


def test_attention_rows_sum_to_one_over_inputs():
    rng = np.random.default_rng(0)
    queries, inputs = rng.normal(size=(3, 4, 8)), rng.normal(size=(3, 9, 8))
    module = CrossAttention(num_layers=2, num_heads=2, mlp_dim=8)
    params = random_params(module, queries, inputs)
    _, attention = jax.jit(module.apply)({"params": params}, queries, inputs)
    assert attention.dtype == jnp.float32 and np.all(np.asarray(attention) >= 0)
    np.testing.assert_allclose(attention.sum(axis=-1), 1.0, rtol=1e-5)
    # Softmax is over the inputs, not over the queries (no competition between queries).
    assert not np.allclose(attention.sum(axis=1), 1.0, atol=1e-2)


def test_attention_map_is_the_head_mean():
    rng = np.random.default_rng(1)
    queries, inputs = rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 6, 8))
    module = MultiHeadAttention(num_heads=4)
    params = random_params(module, queries, inputs)
    _, per_head = jax.jit(module.apply)({"params": params}, queries, inputs)
    assert per_head.shape == (2, 4, 3, 6)
    assert not np.allclose(per_head[:, 0], per_head[:, 1], atol=1e-3)
    np.testing.assert_allclose(per_head.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_and_float32_params(dtype):
    queries, inputs = jnp.ones((2, 3, 8)), jnp.ones((2, 6, 8))
    module = CrossAttention(num_layers=1, num_heads=2, mlp_dim=8, dtype=dtype)
    variables = jax.eval_shape(module.init, jax.random.key(0), queries, inputs)
    out, attention = jax.eval_shape(module.apply, variables, queries, inputs)
    assert out.dtype == dtype and attention.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))


def test_bad_arguments():
    queries, inputs = jnp.ones((1, 3, 10)), jnp.ones((1, 6, 10))
    with pytest.raises(ValueError, match="not divisible by num_heads=4"):
        jax.eval_shape(CrossAttention(num_heads=4).init, jax.random.key(0), queries, inputs)
    with pytest.raises(ValueError, match="num_layers >= 1"):
        jax.eval_shape(
            CrossAttention(num_layers=0, num_heads=2).init, jax.random.key(0), queries, inputs
        )
