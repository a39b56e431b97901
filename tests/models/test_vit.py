"""ViT backbone against a float64 numpy re-implementation, plus shapes, dtypes and errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models.vit import TransformerBlock, ViT
from tests.models.test_cross_attention import (
    layer_norm,
    mlp,
    multi_head_attention,
    random_params,
    to_float64,
)

SMALL = dict(patch_size=4, dim=16, depth=2, num_heads=4, mlp_dim=24)


def reference_vit(images, p, patch_size, depth, num_heads, cls_token, pos_every_layer=True):
    """Float64 numpy ViT; returns (patch tokens, cls or None) after the final LayerNorm."""
    b, h, w, c = images.shape
    gh, gw = h // patch_size, w // patch_size
    patches = images.reshape(b, gh, patch_size, gw, patch_size, c).transpose(0, 1, 3, 2, 4, 5)
    kernel = p["patch_embedding"]["kernel"]
    x = (
        patches.reshape(b, gh * gw, -1) @ kernel.reshape(-1, kernel.shape[-1])
        + p["patch_embedding"]["bias"]
    )
    pos = p["position_embedding"]
    if cls_token:
        x = np.concatenate([np.broadcast_to(p["cls_token"], (b, 1, x.shape[-1])), x], axis=1)
        pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
    for i in range(depth):
        if pos_every_layer or i == 0:
            x = x + pos
        blk = p[f"block_{i}"]
        hn = layer_norm(x, blk["norm_attention"])
        x = x + multi_head_attention(hn, hn, blk["attention"], num_heads)[0]
        x = x + mlp(layer_norm(x, blk["norm_mlp"]), blk["mlp"])
    x = layer_norm(x, p["norm"])
    return (x[:, 1:], x[:, 0]) if cls_token else (x, None)


def _random_model(cls_token, seed=0):
    images = np.random.default_rng(seed).normal(size=(2, 16, 12, 3)).astype(np.float32)
    module = ViT(**SMALL, use_cls_token=cls_token)
    params = random_params(module, images, seed=seed, scale=0.3)
    return module, params, images


@pytest.mark.parametrize("cls_token", [False, True])
def test_matches_float64_numpy(cls_token):
    module, params, images = _random_model(cls_token)
    with jax.default_matmul_precision("highest"):
        out = jax.jit(module.apply)({"params": params}, images)
    p64 = to_float64(params)
    tokens, cls = reference_vit(images.astype(np.float64), p64, 4, 2, 4, cls_token)
    np.testing.assert_allclose(out.tokens, tokens, rtol=1e-4, atol=1e-4)
    if cls_token:
        np.testing.assert_allclose(out.cls, cls, rtol=1e-4, atol=1e-4)
    else:
        assert out.cls is None
    # The position embedding is added before every block: adding it once is not the same.
    once, _ = reference_vit(
        images.astype(np.float64), p64, 4, 2, 4, cls_token, pos_every_layer=False
    )
    assert np.abs(np.asarray(out.tokens) - once).max() > 1e-2


def test_position_embedding_is_the_second_block_input_offset():
    module, params, images = _random_model(cls_token=False)

    @jax.jit
    def block_inputs(p):
        """Maps block names to (input, output) of each transformer block."""
        seen = {}

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if isinstance(context.module, TransformerBlock):
                seen[context.module.name] = (args[0], out)
            return out

        with nn.intercept_methods(record):
            module.apply({"params": p}, images)
        return seen

    blocks = block_inputs(params)
    pos = np.asarray(params["position_embedding"])
    np.testing.assert_allclose(
        blocks["block_1"][0], blocks["block_0"][1] + pos, rtol=1e-6, atol=1e-6
    )
    zeroed = dict(params, position_embedding=jnp.zeros_like(params["position_embedding"]))
    no_pos = block_inputs(zeroed)
    np.testing.assert_allclose(no_pos["block_1"][0], no_pos["block_0"][1], atol=1e-6)
    assert np.abs(no_pos["block_1"][0] - blocks["block_1"][0]).max() > 1e-2


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("cls_token", [False, True])
def test_shapes_and_dtypes(dtype, cls_token):
    images = jnp.zeros((2, 16, 8, 3))
    module = ViT(**SMALL, use_cls_token=cls_token, dtype=dtype)
    variables = jax.eval_shape(module.init, jax.random.key(0), images)
    out = jax.eval_shape(module.apply, variables, images)
    assert out.grid == (4, 2) and isinstance(out.grid[0], int)
    assert out.tokens.shape == (2, 8, 16) and out.tokens.dtype == dtype
    assert variables["params"]["position_embedding"].shape == (1, 8, 16)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    if cls_token:
        assert out.cls.shape == (2, 16) and out.cls.dtype == dtype
        assert variables["params"]["cls_token"].shape == (1, 1, 16)
    else:
        assert out.cls is None and "cls_token" not in variables["params"]


def test_default_configuration_gives_32x32_grid():
    out, variables = jax.eval_shape(
        lambda x: ViT().init_with_output(jax.random.key(0), x), jnp.zeros((1, 128, 128, 3))
    )
    assert out.tokens.shape == (1, 1024, 256) and out.grid == (32, 32)
    assert variables["params"]["position_embedding"].shape == (1, 1024, 256)


def test_indivisible_image_size_is_rejected():
    with pytest.raises(ValueError, match=r"18x16 but the ViT patch_size is 4.*16x16"):
        jax.eval_shape(ViT(**SMALL).init, jax.random.key(0), jnp.zeros((1, 18, 16, 3)))
