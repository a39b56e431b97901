"""Shapes and dtypes of every module, in float32 and bfloat16, and the image-size check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models import build_model
from ocjax.models.decoders import SpatialBroadcastDecoder
from ocjax.models.encoders import CNNEncoder, SoftPositionEmbedding, position_grid

SMALL = dict(
    num_slots=3,
    num_iterations=2,
    slot_dim=8,
    mlp_hidden_dim=8,
    encoder_channels=[4, 4],
    decoder_initial_size=4,
    decoder_upsample_channels=[4, 4],
    decoder_hidden_channels=[4],
    kernel_size=3,
)


def test_position_grid_corners():
    grid = np.asarray(position_grid(3, 5))
    assert grid.shape == (3, 5, 4)
    np.testing.assert_allclose(grid[0, 0], [0, 0, 1, 1])
    np.testing.assert_allclose(grid[-1, -1], [1, 1, 0, 0])
    np.testing.assert_allclose(grid[1, 2], [0.5, 0.5, 0.5, 0.5])


def test_soft_position_embedding_is_affine_in_grid():
    x = jnp.zeros((2, 3, 5, 6))
    module = SoftPositionEmbedding()
    params = module.init(jax.random.key(0), x)
    out = module.apply(params, x)
    dense = params["params"]["projection"]
    expected = np.asarray(position_grid(3, 5)) @ np.asarray(dense["kernel"]) + np.asarray(
        dense["bias"]
    )
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0], out[1])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_encoder_and_decoder_shapes(dtype):
    images = jnp.zeros((2, 16, 16, 3))
    encoder = CNNEncoder(channels=(4, 4), kernel_size=3, token_dim=8, dtype=dtype)
    tokens = encoder.apply(encoder.init(jax.random.key(0), images), images)
    assert tokens.shape == (2, 256, 8) and tokens.dtype == dtype
    decoder = SpatialBroadcastDecoder(initial_size=4, upsample_channels=(4, 4), dtype=dtype)
    assert decoder.output_size == 16
    slots = jnp.zeros((2, 3, 8))
    rgb, alpha = decoder.apply(decoder.init(jax.random.key(0), slots), slots)
    assert rgb.shape == (2, 3, 16, 16, 3) and alpha.shape == (2, 3, 16, 16)
    assert rgb.dtype == alpha.dtype == jnp.float32


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_autoencoder_outputs(dtype):
    model = build_model("slot_attention_autoencoder", dtype=dtype, **SMALL)
    images = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1, maxval=1)
    rngs = {"params": jax.random.key(1), "slots": jax.random.key(2)}
    variables = model.init(rngs, images)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    out = model.apply(variables, images, rngs={"slots": jax.random.key(3)})
    shapes = {k: v.shape for k, v in out.items()}
    assert shapes == {
        "reconstruction": (2, 16, 16, 3),
        "slot_images": (2, 3, 16, 16, 3),
        "masks": (2, 3, 16, 16),
        "slots": (2, 3, 8),
        "attention": (2, 3, 256),
    }
    assert all(v.dtype == jnp.float32 for v in out.values())
    tol = 1e-5 if dtype == "float32" else 1e-2
    np.testing.assert_allclose(out["masks"].sum(axis=1), 1.0, atol=tol)
    np.testing.assert_allclose(out["attention"].sum(axis=1), 1.0, atol=1e-5)
    expected = (out["masks"][..., None] * out["slot_images"]).sum(axis=1)
    np.testing.assert_allclose(out["reconstruction"], expected, atol=10 * tol)


def test_wrong_image_size_is_explained():
    model = build_model("slot_attention_autoencoder", **SMALL)
    images = jnp.zeros((1, 24, 24, 3))
    with pytest.raises(ValueError, match="decoder_initial_size"):
        model.init({"params": jax.random.key(0), "slots": jax.random.key(1)}, images)


def test_unknown_model_and_dtype():
    with pytest.raises(ValueError, match="model.name"):
        build_model("nope")
    with pytest.raises(ValueError, match="model.dtype"):
        build_model("slot_attention_autoencoder", dtype="float16")
