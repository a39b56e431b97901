"""Spatial broadcast decoder: each slot is painted into an RGB image and an alpha mask."""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.conv import SubPixelConvTranspose, transpose_same_padding
from ocjax.models.encoders import SoftPositionEmbedding
from ocjax.models.initializers import kernel_init

Dtype = Any


def _conv_transpose(
    features: int, kernel: tuple[int, int], stride: int, dtype: Dtype, init: str, name: str
) -> SubPixelConvTranspose:
    """`nn.ConvTranspose(features, kernel, strides=stride, padding="SAME")` with its bias, in
    the sub-pixel form (same parameters and outputs, fast on XLA:CPU)."""
    strides = (stride, stride)
    return SubPixelConvTranspose(
        features,
        kernel,
        strides,
        transpose_same_padding(kernel, strides),
        use_bias=True,
        dtype=dtype,
        kernel_init=kernel_init(init),
        name=name,
    )


class SpatialBroadcastDecoder(nn.Module):
    """Broadcasts every slot to a small grid and upsamples it with transposed convolutions.

    Each stride-2 layer doubles the grid, so the output side is
    `initial_size * 2 ** len(upsample_channels)`. The layers are `nn.ConvTranspose` with
    "SAME" padding, as in the official code, computed in the sub-pixel form.
    """

    initial_size: int = 8
    upsample_channels: Sequence[int] = (64, 64, 64, 64)
    hidden_channels: Sequence[int] = (64,)
    kernel_size: int = 5
    output_channels: int = 3
    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"  # See `ocjax.models.initializers`.

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
        x = SoftPositionEmbedding(self.dtype, self.kernel_init, name="position")(x)
        kernel, init = (self.kernel_size, self.kernel_size), self.kernel_init
        for i, c in enumerate(self.upsample_channels):
            x = nn.relu(_conv_transpose(c, kernel, 2, self.dtype, init, f"upsample_{i}")(x))
        for i, c in enumerate(self.hidden_channels):
            x = nn.relu(_conv_transpose(c, kernel, 1, self.dtype, init, f"hidden_{i}")(x))
        x = _conv_transpose(self.output_channels + 1, (3, 3), 1, self.dtype, init, "output")(x)
        x = x.reshape(batch, num_slots, *x.shape[1:]).astype(jnp.float32)
        return x[..., :-1], x[..., -1]
