"""Pixel reconstruction losses."""

import jax
import jax.numpy as jnp


def mse(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error over all elements of `[batch, ...]` arrays, computed in float32."""
    diff = prediction.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff))
