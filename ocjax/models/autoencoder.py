"""Slot Attention autoencoder (Locatello et al., 2020): CNN encoder, Slot Attention, broadcast decoder."""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.decoders import SpatialBroadcastDecoder
from ocjax.models.encoders import CNNEncoder
from ocjax.models.queries import GaussianQueries
from ocjax.models.slot_attention import SlotAttention

Dtype = Any


class SlotAttentionAutoEncoder(nn.Module):
    """Reconstructs an image as an alpha-composite of one decoded image per slot."""

    num_slots: int = 7
    num_iterations: int = 3
    slot_dim: int = 64
    mlp_hidden_dim: int = 128
    encoder_channels: Sequence[int] = (64, 64, 64, 64)
    decoder_initial_size: int = 8
    decoder_upsample_channels: Sequence[int] = (64, 64, 64, 64)
    decoder_hidden_channels: Sequence[int] = (64,)
    kernel_size: int = 5
    kernel_init: str = "lecun_normal"  # "glorot_uniform": the official TF2 code's (Keras).
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """Maps images `[b, h, w, 3]` in [-1, 1] to a dict of outputs (`train` is unused).

        Returns `reconstruction [b, h, w, 3]`, `slot_images [b, k, h, w, 3]`,
        `masks [b, k, h, w]` (softmax over slots of the decoder alphas), `slots [b, k, d]`
        and `attention [b, k, h * w]` (first Slot Attention iteration).
        """
        batch, height, width, _ = images.shape
        decoder = SpatialBroadcastDecoder(
            initial_size=self.decoder_initial_size,
            upsample_channels=self.decoder_upsample_channels,
            hidden_channels=self.decoder_hidden_channels,
            kernel_size=self.kernel_size,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            name="decoder",
        )
        if (height, width) != (decoder.output_size, decoder.output_size):
            raise ValueError(
                f"Images are {height}x{width} but the decoder paints {decoder.output_size}x"
                f"{decoder.output_size} (initial_size {self.decoder_initial_size} doubled "
                f"{len(self.decoder_upsample_channels)} times). Set model.decoder_initial_size to "
                f"{height} / 2**{len(self.decoder_upsample_channels)} or change data.resolution."
            )
        tokens = CNNEncoder(
            channels=self.encoder_channels,
            kernel_size=self.kernel_size,
            token_dim=self.slot_dim,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            name="encoder",
        )(images)
        slots = GaussianQueries(self.num_slots, self.slot_dim, name="slot_init")(batch)
        slots, attention = SlotAttention(
            num_iterations=self.num_iterations,
            mlp_hidden_dim=self.mlp_hidden_dim,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            name="slot_attention",
        )(slots, tokens)
        slot_images, alpha_logits = decoder(slots)
        masks = jax.nn.softmax(alpha_logits, axis=1)
        reconstruction = jnp.sum(masks[..., None] * slot_images, axis=1)
        return {
            "reconstruction": reconstruction,
            "slot_images": slot_images,
            "masks": masks,
            "slots": slots.astype(jnp.float32),
            "attention": attention,
        }
