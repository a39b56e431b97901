"""Slot Attention against a float64 numpy re-implementation of Locatello et al. (2020), Alg. 1."""

import jax
import numpy as np
import pytest

from ocjax.models.slot_attention import SlotAttention


def _layer_norm(x, p, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gru(h, x, p):
    """GRU as in Cho et al. (2014) with flax's parameter names (input gates carry the biases)."""
    lin = lambda name, v: v @ p[name]["kernel"] + p[name].get("bias", 0.0)
    r = _sigmoid(lin("ir", x) + lin("hr", h))
    z = _sigmoid(lin("iz", x) + lin("hz", h))
    n = np.tanh(lin("in", x) + r * lin("hn", h))
    return (1.0 - z) * n + z * h


def reference_slot_attention(slots, inputs, p, num_iterations, eps=1e-8):
    """Plain float64 numpy Slot Attention; returns final slots and first-iteration attention."""
    d = slots.shape[-1]
    inputs = _layer_norm(inputs, p["norm_inputs"])
    k = inputs @ p["key"]["kernel"]
    v = inputs @ p["value"]["kernel"]
    first = None
    for _ in range(num_iterations):
        q = _layer_norm(slots, p["norm_slots"]) @ p["query"]["kernel"] / np.sqrt(d)
        logits = np.einsum("bkd,bnd->bkn", q, k)
        logits = logits - logits.max(axis=1, keepdims=True)
        attn = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # softmax over slots
        first = attn if first is None else first
        w = (attn + eps) / (attn + eps).sum(axis=2, keepdims=True)  # weighted mean over inputs
        updates = np.einsum("bkn,bnd->bkd", w, v)
        slots = _gru(slots, updates, p["gru"])
        h = np.maximum(
            _layer_norm(slots, p["norm_mlp"]) @ p["mlp"]["dense_1"]["kernel"]
            + p["mlp"]["dense_1"]["bias"],
            0.0,
        )
        slots = slots + h @ p["mlp"]["dense_2"]["kernel"] + p["mlp"]["dense_2"]["bias"]
    return slots, first


def _randomise(params, rng):
    """Replaces every parameter by random normals (so biases and norm scales matter too)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(rng, len(leaves))
    return jax.tree.unflatten(
        tree, [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    )


@pytest.mark.parametrize("num_iterations", [1, 3])
def test_matches_float64_numpy(num_iterations):
    rng = np.random.default_rng(num_iterations)
    slots = rng.normal(size=(3, 5, 16)).astype(np.float32)
    inputs = rng.normal(size=(3, 20, 12)).astype(np.float32)
    module = SlotAttention(num_iterations=num_iterations, mlp_hidden_dim=24)
    with jax.default_matmul_precision("highest"):
        params = _randomise(
            module.init(jax.random.key(0), slots, inputs)["params"], jax.random.key(1)
        )
        out, attn = module.apply({"params": params}, slots, inputs)
    p64 = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    ref, ref_attn = reference_slot_attention(
        slots.astype(np.float64), inputs.astype(np.float64), p64, num_iterations
    )
    np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(attn, ref_attn, rtol=2e-4, atol=1e-6)


def test_attention_sums_to_one_over_slots():
    rng = np.random.default_rng(0)
    slots, inputs = rng.normal(size=(2, 4, 8)), rng.normal(size=(2, 9, 8))
    module = SlotAttention(num_iterations=2)
    out, attn = module.apply(module.init(jax.random.key(0), slots, inputs), slots, inputs)
    assert out.shape == (2, 4, 8) and attn.shape == (2, 4, 9)
    np.testing.assert_allclose(attn.sum(axis=1), 1.0, rtol=1e-5)
