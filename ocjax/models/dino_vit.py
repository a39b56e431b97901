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
import numpy as np

from ocjax.models.initializers import KERNEL_INITS, torch_bias
from ocjax.models.vit import ViTOutput

Dtype = Any


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Hyper-parameters of one released ViT: width, depth, heads, patch and extras.

    `positions` says what the released `pos_embed` holds: `"learned"` (DINO, DINOv2) or
    MoCo v3's and MAE's fixed 2-D sin-cos table (`"sincos"`); the loader warns if a file's
    differ, as the number of heads is not in the file (DINO's ViT-S has 6, MoCo v3's 12).
    MAE's release has no ViT-S (ViT-B/L/H only, and timm's neither): an MAE-layout ViT-S
    trained elsewhere loads as the ViT-S entry with its number of heads.
    """

    dim: int
    depth: int
    num_heads: int
    patch_size: int
    mlp_ratio: float = 4.0
    num_registers: int = 0
    layer_scale: bool = False
    url: str = ""  # Where the weights are published.
    positions: str = "learned"

    @property
    def mlp_dim(self) -> int:
        """Hidden width of the block MLP."""
        return int(self.dim * self.mlp_ratio)


_DINO = "https://dl.fbaipublicfiles.com/dino/"
_DINOV2 = "https://dl.fbaipublicfiles.com/dinov2/"
_MOCOV3 = "https://dl.fbaipublicfiles.com/moco-v3/"
_MAE = "https://dl.fbaipublicfiles.com/mae/pretrain/"
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
    # MoCo v3 (facebookresearch/moco-v3 vits.py): its ViT-S has 12 heads, not DeiT's 6. The
    # `.pth.tar` holds the training checkpoint; the loader keeps `module.base_encoder.`.
    "mocov3_vits16": Architecture(
        384, 12, 12, 16, url=_MOCOV3 + "vit-s-300ep/vit-s-300ep.pth.tar", positions="sincos"
    ),
    "mocov3_vitb16": Architecture(
        768, 12, 12, 16, url=_MOCOV3 + "vit-b-300ep/vit-b-300ep.pth.tar", positions="sincos"
    ),
    # MAE (facebookresearch/mae): the encoder under `model`, or timm's
    # `vit_<base,large>_patch16_224.mae`. No ViT-S was released (see `Architecture`).
    "mae_vitb16": Architecture(
        768, 12, 12, 16, url=_MAE + "mae_pretrain_vit_base.pth", positions="sincos"
    ),
    "mae_vitl16": Architecture(
        1024, 24, 16, 16, url=_MAE + "mae_pretrain_vit_large.pth", positions="sincos"
    ),
}


INITS = ("dino", "mae", "mocov3")


def _dense_init(init: str) -> nn.initializers.Initializer:
    """Linear kernels of the ViT under `init`: DINO's trunc-normal(0.02), MAE's and MoCo v3's
    Xavier-uniform (biases are zero in all three)."""
    if init not in INITS:
        raise ValueError(f"Unknown ViT init {init!r}; use one of {INITS}.")
    return KERNEL_INITS["truncated_normal" if init == "dino" else "xavier_uniform"]


def _mocov3_qkv(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """MoCo v3's fused `qkv` kernel `[d, 3d]`: Xavier-uniform of one `[d, d]` projection,
    U(+-sqrt(6 / (d + d)))."""
    limit = (6.0 / (shape[0] + shape[1] // 3)) ** 0.5
    return jax.random.uniform(key, shape, dtype, -limit, limit)


_QKV_INITS = {"mocov3": _mocov3_qkv}


def _patch_embed_init(init: str) -> nn.initializers.Initializer:
    """The patch projection `[p, p, c, dim]`: PyTorch's Conv2d default under DINO's init
    (it only re-draws Linear layers), Xavier-uniform of the flattened `[p * p * c, dim]`
    kernel under MAE's and MoCo v3's."""
    if init == "dino":
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    return nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1, 2))


def sincos_positions(grid: tuple[int, int], dim: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding `[gh * gw, dim]` of MoCo v3 and MAE: half the
    channels encode the column, half the row, each `[sin(p w_k), cos(p w_k)]` with
    `w_k = 10000 ** (-k / (dim / 4))`."""
    if dim % 4:
        raise ValueError(f"A 2-D sin-cos position embedding needs dim divisible by 4, got {dim}.")
    rows, cols = np.meshgrid(
        np.arange(grid[0], dtype=np.float64), np.arange(grid[1], dtype=np.float64), indexing="ij"
    )
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))

    def encode(positions: np.ndarray) -> np.ndarray:
        angles = positions.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(cols), encode(rows)], axis=1).astype(np.float32)


POSITIONS = ("learned", "sincos")


def resize_positions(
    positions: jax.Array, grid: tuple[int, int], new_grid: tuple[int, int]
) -> jax.Array:
    """Patch positions `[1, gh * gw, d]` resampled to `new_grid` (`[1, nh * nw, d]`) with
    PyTorch's bicubic kernel (a = -0.75, no antialiasing), as DINO's
    `interpolate_pos_encoding` does for its local crops; differentiable."""
    from ocjax.models.checkpoints import bicubic_matrix  # pylint: disable=import-outside-toplevel

    rows = jnp.asarray(bicubic_matrix(grid[0], new_grid[0], antialias=False), jnp.float32)
    cols = jnp.asarray(bicubic_matrix(grid[1], new_grid[1], antialias=False), jnp.float32)
    d = positions.shape[-1]
    table = positions.reshape(grid[0], grid[1], d).astype(jnp.float32)
    table = jnp.einsum("ih,jw,hwd->ijd", rows, cols, table)
    return table.reshape(1, new_grid[0] * new_grid[1], d).astype(positions.dtype)


class PatchEmbed(nn.Module):
    """Non-overlapping `patch_size` patches of `[b, h, w, c]` linearly projected to
    `[b, h / p, w / p, dim]` (a strided convolution, params `kernel [p, p, c, dim]`, `bias`);
    with `frozen` the projection gets no gradient (MoCo v3's random patch projection)."""

    dim: int
    patch_size: int
    weight_init: str = "dino"
    frozen: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Projects the patches of `images [b, h, w, c]`."""
        p, c = self.patch_size, images.shape[-1]
        kernel = self.param("kernel", _patch_embed_init(self.weight_init), (p, p, c, self.dim))
        # DINO keeps PyTorch's Conv2d bias, U(+-1/sqrt(fan_in)); MAE and MoCo v3 zero it.
        bias_init = torch_bias(p * p * c) if self.weight_init == "dino" else nn.initializers.zeros
        bias = self.param("bias", bias_init, (self.dim,))
        if self.frozen:
            kernel, bias = jax.lax.stop_gradient(kernel), jax.lax.stop_gradient(bias)
        x = jax.lax.conv_general_dilated(
            images.astype(self.dtype),
            kernel.astype(self.dtype),
            window_strides=(p, p),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return x + bias.astype(self.dtype)


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
    weight_init: str = "dino"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps tokens `[b, n, dim]` to `[b, n, dim]`."""
        b, n, dim = x.shape
        head_dim = dim // self.num_heads
        qkv_init = (
            _QKV_INITS[self.weight_init]
            if self.weight_init in _QKV_INITS
            else _dense_init(self.weight_init)
        )
        qkv = nn.Dense(3 * dim, kernel_init=qkv_init, dtype=self.dtype, name="qkv")(x)
        q, k, v = jnp.split(qkv.reshape(b, n, 3, self.num_heads, head_dim), 3, axis=2)
        q, k, v = (t[:, :, 0] for t in (q, k, v))  # [b, n, heads, head_dim]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(self.dtype)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, dim)
        return nn.Dense(
            dim, kernel_init=_dense_init(self.weight_init), dtype=self.dtype, name="proj"
        )(out)


class Block(nn.Module):
    """Pre-norm block: `x += ls1(attn(norm1(x)))`, then `x += ls2(mlp(norm2(x)))`."""

    num_heads: int
    mlp_dim: int
    layer_scale: bool
    weight_init: str = "dino"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps tokens `[b, n, dim]` to `[b, n, dim]`."""
        dim = x.shape[-1]
        scale = (lambda name: LayerScale(name=name)) if self.layer_scale else None
        h = Attention(self.num_heads, self.weight_init, dtype=self.dtype, name="attn")(
            nn.LayerNorm(1e-6, dtype=self.dtype, name="norm1")(x)
        )
        x = x + (scale("ls1")(h) if scale else h)
        h = nn.LayerNorm(1e-6, dtype=self.dtype, name="norm2")(x)
        dense = _dense_init(self.weight_init)
        h = nn.Dense(self.mlp_dim, kernel_init=dense, dtype=self.dtype, name="fc1")(h)
        h = nn.gelu(h, approximate=False)
        h = nn.Dense(dim, kernel_init=dense, dtype=self.dtype, name="fc2")(h)
        return x + (scale("ls2")(h) if scale else h)


class DinoViT(nn.Module):
    """DINO / DINOv2 ViT: images `[b, h, w, 3]` (ImageNet-normalised) to patch tokens.

    `architecture` names an entry of `ARCHITECTURES` or is an `Architecture` itself (a ViT
    trained in ocjax, e.g. by `ocjax.models.pretraining`). The positional embedding covers the
    patch grid of `image_size` (loaded weights are resampled to it).
    `feature_block` picks the block whose output becomes the tokens (default: the last;
    negative counts from the end); `final_norm` applies the final LayerNorm to them (DINO's
    features) or not (DINOSAUR reads the last block's output before it).
    `hidden_block` also hands on the whole sequence (CLS, registers, patches) after that
    block as `hidden`; with `start_block`, the call takes such a sequence (`tokens`, the
    input of block `start_block`) instead of images and runs the blocks from there (SPOT's
    student fine-tunes the last blocks of a frozen ViT on the cached output of the others).

    For training in ocjax (`ocjax.models.pretraining`): `weight_init` draws the weights as DINO
    (`"dino"`: trunc-normal 0.02), MAE (`"mae"`: Xavier-uniform, the patch projection as a
    flattened linear layer) or MoCo v3 (`"mocov3"`: MAE's, with the fused `qkv` drawn as
    one `[d, d]` projection) do; `positions="sincos"` fixes the patch positions to the 2-D
    sine-cosine table of MAE and MoCo v3 (`pos_embed` is still a parameter, so released
    weights load, but gets no gradient); `frozen_patch_embed` stops the gradient at the
    patch projection (MoCo v3's random patch projection). Images of another size than
    `image_size` (DINO's local crops) read the positions resampled bicubically to their
    grid; `keep [b, m]` encodes only those patches (MAE's visible ones).
    """

    architecture: str | Architecture = "dino_vits16"
    image_size: tuple[int, int] = (224, 224)
    feature_block: int = -1
    final_norm: bool = True
    hidden_block: int | None = None
    start_block: int = 0
    weight_init: str = "dino"
    positions: str = "learned"
    frozen_patch_embed: bool = False
    dtype: Dtype = jnp.float32

    @property
    def spec(self) -> Architecture:
        """The `Architecture` this module builds."""
        if isinstance(self.architecture, Architecture):
            return self.architecture
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
    def __call__(
        self,
        images: jax.Array | None,
        tokens: jax.Array | None = None,
        keep: jax.Array | None = None,
    ) -> ViTOutput:
        """Encodes images `[b, h, w, 3]`, or from `start_block` on the sequence
        `tokens [b, extra + gh * gw, dim]`, into a `ViTOutput`; with `keep [b, m]` (patch
        indices, row-major) only those patches are encoded (`tokens [b, m, dim]`)."""
        spec, grid = self.spec, self.grid
        extra = 1 + spec.num_registers
        if self.start_block:
            if tokens is None:
                raise ValueError(f"DinoViT(start_block={self.start_block}) needs `tokens`.")
            return self._blocks(tokens, self.start_block, extra, grid)
        if self.positions not in POSITIONS:
            raise ValueError(f"Unknown ViT positions {self.positions!r}; use one of {POSITIONS}.")
        b, h, w = images.shape[:3]
        p = spec.patch_size
        if h % p or w % p:
            raise ValueError(
                f"{h}x{w} images do not split into the {p}x{p} patches of {self.architecture}; "
                f"use sides divisible by {p}."
            )
        x = PatchEmbed(
            spec.dim,
            p,
            self.weight_init,
            self.frozen_patch_embed,
            dtype=self.dtype,
            name="patch_embed",
        )(images)
        x = x.reshape(b, (h // p) * (w // p), spec.dim)
        init = KERNEL_INITS["truncated_normal"]
        if self.positions == "sincos":
            table = jnp.asarray(sincos_positions(grid, spec.dim))[None]
            pos = jax.lax.stop_gradient(self.param("pos_embed", lambda *_: table))
        else:
            pos = self.param("pos_embed", init, (1, grid[0] * grid[1], spec.dim))
        # Patch positions only; the CLS token's position is folded into `cls_token` (the
        # checkpoint converter adds it), which is the same sum for every released layout.
        if (h // p, w // p) != grid:
            pos = resize_positions(pos, grid, (h // p, w // p))
        x = x + pos.astype(self.dtype)
        if keep is not None:
            x = jnp.take_along_axis(x, keep[:, :, None], axis=1)
        cls_init = nn.initializers.normal(1e-6 if self.weight_init == "mocov3" else 0.02)
        prefix = [
            self.param(
                "cls_token", cls_init if self.weight_init != "dino" else init, (1, 1, spec.dim)
            )
        ]
        if spec.num_registers:  # Registers carry no position.
            prefix.append(self.param("reg_token", init, (1, spec.num_registers, spec.dim)))
        prefix = [jnp.broadcast_to(t.astype(self.dtype), (b,) + t.shape[1:]) for t in prefix]
        x = jnp.concatenate(prefix + [x], axis=1)
        return self._blocks(x, 0, extra, (h // p, w // p))

    def _blocks(self, x: jax.Array, start: int, extra: int, grid: tuple[int, int]) -> ViTOutput:
        """Blocks `start` .. `feature_block` on the sequence `x [b, extra + n, dim]`."""
        spec = self.spec
        last = self.feature_block % spec.depth
        hidden = None
        for i in range(start, last + 1):
            x = Block(
                spec.num_heads,
                spec.mlp_dim,
                spec.layer_scale,
                self.weight_init,
                dtype=self.dtype,
                name=f"blocks_{i}",
            )(x)
            if self.hidden_block is not None and i == self.hidden_block % spec.depth:
                hidden = x
        if self.final_norm:
            x = nn.LayerNorm(1e-6, dtype=self.dtype, name="norm")(x)
        return ViTOutput(tokens=x[:, extra:], cls=x[:, 0], grid=grid, hidden=hidden)
