"""Convolutional encoders and position embeddings that turn images into input tokens."""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.initializers import kernel_init

Dtype = Any


def position_grid(height: int, width: int) -> jax.Array:
    """Returns the `[height, width, 4]` grid of (y, x, 1 - y, 1 - x) in [0, 1]."""
    ys = jnp.linspace(0.0, 1.0, height)
    xs = jnp.linspace(0.0, 1.0, width)
    y, x = jnp.meshgrid(ys, xs, indexing="ij")
    return jnp.stack([y, x, 1.0 - y, 1.0 - x], axis=-1)


class SoftPositionEmbedding(nn.Module):
    """Adds a learned linear projection of the coordinate grid to a feature map."""

    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"  # See `ocjax.models.initializers`.

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        """Maps `[batch, height, width, c]` to the same shape, position-aware."""
        height, width, channels = features.shape[-3:]
        embedding = nn.Dense(
            channels, dtype=self.dtype, kernel_init=kernel_init(self.kernel_init), name="projection"
        )(position_grid(height, width))
        return features + embedding


class CNNEncoder(nn.Module):
    """Stack of stride-1 'same' convolutions with ReLU, then position embedding and an MLP.

    Output: tokens `[batch, height * width, token_dim]` (one per pixel).
    """

    channels: Sequence[int] = (64, 64, 64, 64)
    kernel_size: int = 5
    token_dim: int = 64
    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"  # See `ocjax.models.initializers`.

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Encodes images `[batch, height, width, 3]` into tokens `[batch, height * width, token_dim]`."""
        init = kernel_init(self.kernel_init)
        x = images.astype(self.dtype)
        for i, c in enumerate(self.channels):
            kernel = (self.kernel_size, self.kernel_size)
            x = nn.relu(nn.Conv(c, kernel, dtype=self.dtype, kernel_init=init, name=f"conv_{i}")(x))
        x = SoftPositionEmbedding(self.dtype, self.kernel_init, name="position")(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        x = nn.LayerNorm(dtype=self.dtype, name="norm")(x)
        dense = functools.partial(nn.Dense, self.token_dim, dtype=self.dtype, kernel_init=init)
        return dense(name="mlp_2")(nn.relu(dense(name="mlp_1")(x)))
