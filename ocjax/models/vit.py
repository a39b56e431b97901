"""Vision Transformer backbone of Baldassarre & Azizpour (2022): images to patch tokens.

Patch embedding, then `depth` pre-LayerNorm transformer blocks with the learned positional
embedding added before every block (not only the first), then a final LayerNorm.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.cross_attention import MultiHeadAttention, TransformerMLP

Dtype = Any


@flax.struct.dataclass
class ViTOutput:
    """Backbone outputs: patch `tokens [b, gh * gw, dim]`, `cls [b, dim]` or None, `grid (gh, gw)`,
    and where asked for, the whole sequence after an inner block, `hidden [b, extra + gh * gw, dim]`.

    Tokens are in row-major patch order, so `tokens.reshape(b, gh, gw, dim)` is the feature
    map. `grid` is static (not a pytree leaf), so it stays a pair of ints under `jax.jit`.
    """

    tokens: jax.Array
    cls: jax.Array | None
    grid: tuple[int, int] = flax.struct.field(pytree_node=False)
    hidden: jax.Array | None = None


class TransformerBlock(nn.Module):
    """Pre-norm self-attention block: `x += MHA(LN(x))`, then `x += MLP(LN(x))`."""

    num_heads: int = 4
    mlp_dim: int = 512
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps tokens `[batch, num_tokens, dim]` to the same shape."""
        h = nn.LayerNorm(dtype=self.dtype, name="norm_attention")(x)
        update, _ = MultiHeadAttention(
            num_heads=self.num_heads, dtype=self.dtype, name="attention"
        )(h, h)
        x = x + update
        h = nn.LayerNorm(dtype=self.dtype, name="norm_mlp")(x)
        return x + TransformerMLP(self.mlp_dim, dtype=self.dtype, name="mlp")(h)


class ViT(nn.Module):
    """ViT with a learned positional embedding `[1, gh * gw, dim]` added at every layer.

    The optional CLS token (`use_cls_token`, for the global-only baseline) is a learned
    vector prepended to the patch tokens. It receives no positional embedding (zeros at
    every layer), as in the authors' code: the embedding covers the patches only. The
    positional embedding's size fixes the input resolution at initialisation.
    """

    patch_size: int = 4
    dim: int = 256
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 512
    use_cls_token: bool = False
    final_norm: bool = True  # False hands on the last block's output (DINOSAUR's features).
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> ViTOutput:
        """Encodes images `[batch, height, width, channels]` into a `ViTOutput`."""
        batch, height, width, _ = images.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(
                f"Images are {height}x{width} but the ViT patch_size is {p}, which does not "
                f"divide both sides. Resize the images to multiples of {p} (e.g. "
                f"{height // p * p}x{width // p * p}) or pick a patch_size dividing "
                f"{height} and {width}."
            )
        grid = (height // p, width // p)
        x = nn.Conv(
            self.dim,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            name="patch_embedding",
        )(images.astype(self.dtype))
        x = x.reshape(batch, grid[0] * grid[1], self.dim)
        position = self.param(
            "position_embedding",
            nn.initializers.truncated_normal(0.02),
            (1, grid[0] * grid[1], self.dim),
        ).astype(self.dtype)
        if self.use_cls_token:
            cls = self.param(
                "cls_token", nn.initializers.truncated_normal(0.02), (1, 1, self.dim)
            ).astype(self.dtype)
            x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, self.dim)), x], axis=1)
            position = jnp.concatenate([jnp.zeros_like(position[:, :1]), position], axis=1)
        for i in range(self.depth):
            x = TransformerBlock(
                num_heads=self.num_heads, mlp_dim=self.mlp_dim, dtype=self.dtype, name=f"block_{i}"
            )(x + position)
        if self.final_norm:
            x = nn.LayerNorm(dtype=self.dtype, name="norm")(x)
        if self.use_cls_token:
            return ViTOutput(tokens=x[:, 1:], cls=x[:, 0], grid=grid)
        return ViTOutput(tokens=x, cls=None, grid=grid)
