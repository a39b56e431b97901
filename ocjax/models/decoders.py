"""Spatial broadcast decoder: each slot is painted into an RGB image and an alpha mask."""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.encoders import SoftPositionEmbedding

Dtype = Any


class SpatialBroadcastDecoder(nn.Module):
    """Broadcasts every slot to a small grid and upsamples it with transposed convolutions.

    Each stride-2 layer doubles the grid, so the output side is
    `initial_size * 2 ** len(upsample_channels)`.
    """

    initial_size: int = 8
    upsample_channels: Sequence[int] = (64, 64, 64, 64)
    hidden_channels: Sequence[int] = (64,)
    kernel_size: int = 5
    output_channels: int = 3
    dtype: Dtype = jnp.float32

    @property
    def output_size(self) -> int:
        """Side of the decoded square image in pixels."""
        return self.initial_size * 2 ** len(self.upsample_channels)

    @nn.compact
    def __call__(self, slots: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Decodes slots `[b, k, d]` into per-slot RGB `[b, k, h, w, c]` and alpha logits `[b, k, h, w]`."""
        batch, num_slots, dim = slots.shape
        size = self.initial_size
        x = jnp.broadcast_to(
            slots.reshape(batch * num_slots, 1, 1, dim), (batch * num_slots, size, size, dim)
        ).astype(self.dtype)
        x = SoftPositionEmbedding(dtype=self.dtype, name="position")(x)
        kernel = (self.kernel_size, self.kernel_size)
        for i, c in enumerate(self.upsample_channels):
            x = nn.relu(
                nn.ConvTranspose(c, kernel, strides=(2, 2), dtype=self.dtype, name=f"upsample_{i}")(
                    x
                )
            )
        for i, c in enumerate(self.hidden_channels):
            x = nn.relu(nn.ConvTranspose(c, kernel, dtype=self.dtype, name=f"hidden_{i}")(x))
        x = nn.ConvTranspose(self.output_channels + 1, (3, 3), dtype=self.dtype, name="output")(x)
        x = x.reshape(batch, num_slots, *x.shape[1:]).astype(jnp.float32)
        return x[..., :-1], x[..., -1]
