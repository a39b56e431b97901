"""MAE (He et al., 2022): a ViT trained to reconstruct the pixels of masked patches.

The encoder sees only the visible patches (`mask_ratio` of them removed at random per
image, `ocjax.losses.self_supervised.random_masking`); a light decoder (`decoder_dim`
wide, `decoder_depth` blocks) receives the encoded tokens and a learned mask token in the
place of each removed patch, both with the fixed 2-D sine-cosine positions, and predicts
every patch's pixels. Weights are initialised as the release does (Xavier-uniform linear
layers, the patch projection as a flattened linear layer, tokens N(0, 0.02)).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.losses import self_supervised as ssl
from ocjax.models import pretraining
from ocjax.models.dino_vit import Block, sincos_positions
from ocjax.models.initializers import KERNEL_INITS

Dtype = Any


class MAE(nn.Module):
    """MAE pretraining. Training input: images `[b, S, S, 3]` (a random-resized crop each);
    outputs `predictions [b, n, p * p * 3]` of every patch and `mask [b, n]` (1 = removed).
    Evaluation input: images; outputs the encoder's patch `tokens [b, n, dim]` (no patch
    removed) and `cls`. Draws the masks from the `slots` random stream."""

    ENCODER: ClassVar[tuple[str, ...]] = ("encoder",)

    image_size: int = 224
    patch_size: int = 16
    dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_registers: int = 0
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    mask_ratio: float = 0.75
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """Pixels of every patch from the visible ones (training), or encoder features."""
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"model.mask_ratio must lie in [0, 1), got {self.mask_ratio}.")
        spec = pretraining.architecture_of(self)
        encoder = pretraining.vit(
            spec, self.image_size, "mae", self.dtype, name="encoder", positions="sincos"
        )
        if not train and not self.is_initializing():
            features = encoder(images)
            return {"tokens": features.tokens, "cls": features.cls}
        b, h, w = images.shape[:3]
        p = self.patch_size
        grid = (h // p, w // p)
        n = grid[0] * grid[1]
        keep, mask, restore = ssl.random_masking(self.make_rng("slots"), b, n, self.mask_ratio)
        latent = encoder(images, keep=keep)
        xavier = KERNEL_INITS["xavier_uniform"]
        sequence = jnp.concatenate([latent.cls[:, None], latent.tokens], axis=1)
        x = nn.Dense(self.decoder_dim, kernel_init=xavier, dtype=self.dtype, name="decoder_embed")(
            sequence
        )
        mask_token = self.param(
            "mask_token", nn.initializers.normal(0.02), (1, 1, self.decoder_dim)
        )
        removed = jnp.broadcast_to(
            mask_token.astype(x.dtype), (b, n - keep.shape[1], self.decoder_dim)
        )
        patches = jnp.concatenate([x[:, 1:], removed], axis=1)
        patches = jnp.take_along_axis(patches, restore[:, :, None], axis=1)  # Raster order.
        positions = jnp.asarray(sincos_positions(grid, self.decoder_dim))[None]
        x = jnp.concatenate([x[:, :1], patches + positions.astype(x.dtype)], axis=1)
        mlp_dim = int(self.decoder_dim * self.mlp_ratio)
        for i in range(self.decoder_depth):
            x = Block(
                self.decoder_heads,
                mlp_dim,
                False,
                "mae",
                dtype=self.dtype,
                name=f"decoder_blocks_{i}",
            )(x)
        x = nn.LayerNorm(1e-6, dtype=self.dtype, name="decoder_norm")(x)
        predictions = nn.Dense(
            p * p * images.shape[-1], kernel_init=xavier, dtype=self.dtype, name="decoder_pred"
        )(x)
        return {"predictions": predictions[:, 1:].astype(jnp.float32), "mask": mask}
