"""The ViT of DINO and DINOv2 (timm's `VisionTransformer` layout), to load their weights.

It differs from `ocjax.models.vit.ViT` (the flagship's backbone) in what the released
checkpoints need: a CLS token, one positional embedding added once before the blocks
(resampled to the input's patch grid when weights are loaded, see
`ocjax.models.checkpoints`), optional register tokens without position (DINOv2 "reg"),
optional LayerScale on both residual branches (DINOv2), a fused `qkv` projection and
LayerNorm with eps 1e-6. `ARCHITECTURES` names the released variants.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.vit import ViTOutput

Dtype = Any


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Hyper-parameters of one released ViT: width, depth, heads, patch and extras."""

    dim: int
    depth: int
    num_heads: int
    patch_size: int
    mlp_ratio: float = 4.0
    num_registers: int = 0
    layer_scale: bool = False
    url: str = ""  # Where the weights are published.

    @property
    def mlp_dim(self) -> int:
        """Hidden width of the block MLP."""
        return int(self.dim * self.mlp_ratio)


_DINO = "https://dl.fbaipublicfiles.com/dino/"
_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2/"
ARCHITECTURES: dict[str, Architecture] = {
    "dino_vits16": Architecture(
        384, 12, 6, 16, url=_DINO + "dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
    ),
    "dino_vits8": Architecture(
        384, 12, 6, 8, url=_DINO + "dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth"
    ),
    "dino_vitb16": Architecture(
        768, 12, 12, 16, url=_DINO + "dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
    ),
    "dino_vitb8": Architecture(
        768, 12, 12, 8, url=_DINO + "dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth"
    ),
    "dinov2_vits14": Architecture(
        384, 12, 6, 14, layer_scale=True, url=_DINOV2 + "dinov2_vits14/dinov2_vits14_pretrain.pth"
    ),
    "dinov2_vitb14": Architecture(
        768, 12, 12, 14, layer_scale=True, url=_DINOV2 + "dinov2_vitb14/dinov2_vitb14_pretrain.pth"
    ),
    "dinov2_vits14_reg4": Architecture(
        384,
        12,
        6,
        14,
        num_registers=4,
        layer_scale=True,
        url=_DINOV2 + "dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
    ),
    "dinov2_vitb14_reg4": Architecture(
        768,
        12,
        12,
        14,
        num_registers=4,
        layer_scale=True,
        url=_DINOV2 + "dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
    ),
}


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch `[..., dim]` (DINOv2)."""

    init_value: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Scales `x [..., dim]` channel-wise."""
        gamma = self.param("gamma", nn.initializers.constant(self.init_value), (x.shape[-1],))
        return x * gamma.astype(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with one fused `qkv` projection and an output `proj`."""

    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps tokens `[b, n, dim]` to `[b, n, dim]`."""
        b, n, dim = x.shape
        head_dim = dim // self.num_heads
        qkv = nn.Dense(3 * dim, dtype=self.dtype, name="qkv")(x)
        q, k, v = jnp.split(qkv.reshape(b, n, 3, self.num_heads, head_dim), 3, axis=2)
        q, k, v = (t[:, :, 0] for t in (q, k, v))  # [b, n, heads, head_dim]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(self.dtype)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, dim)
        return nn.Dense(dim, dtype=self.dtype, name="proj")(out)


class Block(nn.Module):
    """Pre-norm block: `x += ls1(attn(norm1(x)))`, then `x += ls2(mlp(norm2(x)))`."""

    num_heads: int
    mlp_dim: int
    layer_scale: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps tokens `[b, n, dim]` to `[b, n, dim]`."""
        dim = x.shape[-1]
        scale = (lambda name: LayerScale(name=name)) if self.layer_scale else None
        h = Attention(self.num_heads, dtype=self.dtype, name="attn")(
            nn.LayerNorm(1e-6, dtype=self.dtype, name="norm1")(x)
        )
        x = x + (scale("ls1")(h) if scale else h)
        h = nn.LayerNorm(1e-6, dtype=self.dtype, name="norm2")(x)
        h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(h)
        h = nn.Dense(dim, dtype=self.dtype, name="fc2")(nn.gelu(h, approximate=False))
        return x + (scale("ls2")(h) if scale else h)


class DinoViT(nn.Module):
    """DINO / DINOv2 ViT: images `[b, h, w, 3]` (ImageNet-normalised) to patch tokens.

    `architecture` names an entry of `ARCHITECTURES`. The positional embedding covers the
    patch grid of `image_size` (loaded weights are resampled to it).
    `feature_block` picks the block whose output becomes the tokens (default: the last;
    negative counts from the end); `final_norm` applies the final LayerNorm to them (DINO's
    features) or not (DINOSAUR reads the last block's output before it).
    `hidden_block` also hands on the whole sequence (CLS, registers, patches) after that
    block as `hidden`; with `start_block`, the call takes such a sequence (`tokens`, the
    input of block `start_block`) instead of images and runs the blocks from there (SPOT's
    student fine-tunes the last blocks of a frozen ViT on the cached output of the others).
    """

    architecture: str = "dino_vits16"
    image_size: tuple[int, int] = (224, 224)
    feature_block: int = -1
    final_norm: bool = True
    hidden_block: int | None = None
    start_block: int = 0
    dtype: Dtype = jnp.float32

    @property
    def spec(self) -> Architecture:
        """The `Architecture` this module builds."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"Unknown ViT architecture {self.architecture!r}; use one of "
                f"{sorted(ARCHITECTURES)}."
            )
        return ARCHITECTURES[self.architecture]

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid `(gh, gw)` of `image_size`."""
        p = self.spec.patch_size
        h, w = self.image_size
        if h % p or w % p:
            raise ValueError(
                f"image_size {h}x{w} is not divisible by the patch size {p} of "
                f"{self.architecture}; use a multiple of {p} (e.g. {h // p * p}x{w // p * p})."
            )
        return h // p, w // p

    @nn.compact
    def __call__(self, images: jax.Array | None, tokens: jax.Array | None = None) -> ViTOutput:
        """Encodes images `[b, h, w, 3]` (h, w = `image_size`), or from `start_block` on the
        sequence `tokens [b, extra + gh * gw, dim]`, into a `ViTOutput`."""
        spec, grid = self.spec, self.grid
        extra = 1 + spec.num_registers
        if self.start_block:
            if tokens is None:
                raise ValueError(f"DinoViT(start_block={self.start_block}) needs `tokens`.")
            return self._blocks(tokens, self.start_block, extra, grid)
        if tuple(images.shape[1:3]) != tuple(self.image_size):
            raise ValueError(
                f"The backbone was built for {self.image_size[0]}x{self.image_size[1]} images "
                f"(its positional embedding), got {images.shape[1]}x{images.shape[2]}."
            )
        b = images.shape[0]
        p = spec.patch_size
        x = nn.Conv(
            spec.dim, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="patch_embed"
        )(images.astype(self.dtype))
        x = x.reshape(b, grid[0] * grid[1], spec.dim)
        init = nn.initializers.truncated_normal(0.02)
        # Patch positions only; the CLS token's position is folded into `cls_token` (the
        # checkpoint converter adds it), which is the same sum for every released layout.
        pos = self.param("pos_embed", init, (1, grid[0] * grid[1], spec.dim))
        x = x + pos.astype(self.dtype)
        prefix = [self.param("cls_token", init, (1, 1, spec.dim))]
        if spec.num_registers:  # Registers carry no position.
            prefix.append(self.param("reg_token", init, (1, spec.num_registers, spec.dim)))
        prefix = [jnp.broadcast_to(t.astype(self.dtype), (b,) + t.shape[1:]) for t in prefix]
        x = jnp.concatenate(prefix + [x], axis=1)
        return self._blocks(x, 0, extra, grid)

    def _blocks(self, x: jax.Array, start: int, extra: int, grid: tuple[int, int]) -> ViTOutput:
        """Blocks `start` .. `feature_block` on the sequence `x [b, extra + n, dim]`."""
        spec = self.spec
        last = self.feature_block % spec.depth
        hidden = None
        for i in range(start, last + 1):
            x = Block(
                spec.num_heads, spec.mlp_dim, spec.layer_scale, dtype=self.dtype, name=f"blocks_{i}"
            )(x)
            if self.hidden_block is not None and i == self.hidden_block % spec.depth:
                hidden = x
        if self.final_norm:
            x = nn.LayerNorm(1e-6, dtype=self.dtype, name="norm")(x)
        return ViTOutput(tokens=x[:, extra:], cls=x[:, 0], grid=grid, hidden=hidden)
