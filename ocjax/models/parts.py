"""Unsupervised part discovery (Choudhury et al., NeurIPS 2021): the segmenter and its views.

`PartNet` is the part segmenter f: an image `[b, h, w, 3]` and its foreground mask
`[b, h, w]` (given, as in the paper) -> K soft part masks `[b, K, h, w]` (softmax over
the parts, zero off the foreground). The paper uses DeepLab-v2; here a stack of 'same'
convolutions with a soft position embedding (parts are found from shape and position),
optionally dilated like DeepLab's atrous convolutions (`dilations`), which widens the
receptive field at the same cost.

`PartDiscovery` wraps it for training: in training mode it also draws the equivariance
transform T per image (`ocjax.data.equivariance`, bounded by the paper's ranges), runs f on
T(I) and warps f(I) by T, and reads a frozen feature extractor phi (any
`ocjax.models.backbones` backbone, upsampled bilinearly to the pixels) on I; the
four losses live in `ocjax.losses.parts` and are combined by the `part_discovery` objective.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.data import colour
from ocjax.data import equivariance as eq
from ocjax.models.backbones import Backbone, Options
from ocjax.models.encoders import SoftPositionEmbedding

Dtype = Any


POSITIONS = ("image", "object")


def object_coordinates(foreground: jax.Array) -> jax.Array:
    """Each pixel's offset `[b, h, w, 2]` (y, x) from the centroid of its image's foreground
    `[b, h, w]`, over the square root of the foreground's area (images without one: 0)."""
    _, h, w = foreground.shape
    fg = foreground.astype(jnp.float32)
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1)
    grid = grid.astype(jnp.float32)
    area = jnp.sum(fg, axis=(1, 2))
    centre = jnp.einsum("bhw,hwc->bc", fg, grid) / jnp.maximum(area, 1.0)[:, None]
    offsets = (grid[None] - centre[:, None, None]) / jnp.sqrt(jnp.maximum(area, 1.0))[
        :, None, None, None
    ]
    return jnp.where((area > 0)[:, None, None, None], offsets, 0.0)


class PartNet(nn.Module):
    """f: image `[b, h, w, 3]` in [0, 1] and foreground `[b, h, w]` -> parts `[b, K, h, w]`.

    `position` "image" adds a learned projection of the image's coordinate grid after the
    first convolution; "object" one of each pixel's position in the object's own frame
    (`object_coordinates`, from the given foreground), which moves, scales and rotates with
    the object, so a small receptive field still knows where on the object a pixel lies.
    """

    num_parts: int = 4
    channels: tuple[int, ...] = (64, 64, 64, 64)
    kernel_size: int = 5
    dilations: tuple[int, ...] | None = None  # One per conv; None: all 1.
    position: str = "image"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, foreground: jax.Array) -> jax.Array:
        """Soft part masks, softmax over the K parts on the foreground, 0 elsewhere."""
        dilations = self.dilations or (1,) * len(self.channels)
        if len(dilations) != len(self.channels) or min(dilations) < 1:
            raise ValueError(
                f"model.dilations {tuple(dilations)} must hold one rate >= 1 per entry of "
                f"model.channels {tuple(self.channels)}."
            )
        if self.position not in POSITIONS:
            raise ValueError(f"model.position is {self.position!r}; use one of {POSITIONS}.")
        fg = foreground.astype(self.dtype)
        x = jnp.concatenate([images.astype(self.dtype), fg[..., None]], axis=-1)
        for i, (c, rate) in enumerate(zip(self.channels, dilations)):
            conv = nn.Conv(
                c,
                (self.kernel_size,) * 2,
                kernel_dilation=rate,
                dtype=self.dtype,
                name=f"conv_{i}",
            )
            x = nn.relu(conv(x))
            if i == 0 and self.position == "image":
                x = SoftPositionEmbedding(dtype=self.dtype, name="position")(x)
            elif i == 0:
                frame = object_coordinates(foreground).astype(self.dtype)
                x = x + nn.Dense(c, dtype=self.dtype, name="object_position")(frame)
        logits = nn.Conv(self.num_parts, (1, 1), dtype=self.dtype, name="logits")(x)
        masks = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * fg[..., None]
        return jnp.moveaxis(masks, -1, 1)


class PartDiscovery(nn.Module):
    """The part segmenter with what its four losses need (see the module doc).

    Inputs are `[b, h, w, 4]`: the image in [0, 1] and the foreground mask as the last
    channel (3-channel inputs count as all foreground).
    """

    backbone: Options
    num_parts: int = 4
    channels: tuple[int, ...] = (64, 64, 64, 64)
    kernel_size: int = 5
    dilations: tuple[int, ...] | None = None
    position: str = "image"
    max_rotation: float = eq.MAX_ROTATION
    max_translation: float = eq.MAX_TRANSLATION
    jitter: float = eq.MAX_JITTER
    dtype: Dtype = jnp.float32

    def _features(self, phi: nn.Module, images: jax.Array) -> jax.Array:
        """Frozen features `[b, h, w, c]` of images in [0, 1], upsampled to the pixels."""
        b, h, w, _ = images.shape
        out = phi(colour.imagenet_normalize(images))
        grid = out.tokens.reshape(b, *out.grid, -1).astype(jnp.float32)
        return jax.image.resize(grid, (b, h, w, grid.shape[-1]), "bilinear")

    @nn.compact
    def __call__(self, inputs: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """Returns `masks [b, K + 1, h, w]` (channel 0 the background, 1 - foreground),
        `parts [b, K, h, w]` and `features [b, h, w, c]`; in training also the transformed
        `view_parts`, `view_foreground`, `view_images`,
        `warped_parts` (T(f(I))) and `view_valid`."""
        if self.num_parts < 2:
            raise ValueError(
                f"model.num_parts is {self.num_parts}; part discovery needs at least 2 parts."
            )
        ranges = eq.TransformRanges(self.max_rotation, self.max_translation, self.jitter)
        images = inputs[..., :3].astype(jnp.float32)
        fg = inputs[..., 3] if inputs.shape[-1] > 3 else jnp.ones(inputs.shape[:3])
        fg = (fg > 0.5).astype(jnp.float32)
        net = PartNet(
            self.num_parts,
            tuple(self.channels),
            self.kernel_size,
            tuple(self.dilations) if self.dilations else None,
            self.position,
            dtype=self.dtype,
            name="net",
        )
        parts = net(images, fg)
        phi = Backbone(self.backbone, dtype=self.dtype, name="backbone")
        out = {
            "parts": parts,
            "masks": jnp.concatenate([(1.0 - fg)[:, None], parts], axis=1),
            "foreground": fg,
            "features": self._features(phi, images),
        }
        if not train:
            return out
        params = eq.random_transform(self.make_rng("slots"), images.shape[0], ranges)
        warped, valid = eq.warp(jnp.concatenate([images, fg[..., None]], -1), params)
        view_images = eq.jitter_colours(jnp.clip(warped[..., :3], 0.0, 1.0), params)
        view_fg = (warped[..., 3] > 0.5).astype(jnp.float32)
        warped_parts, _ = eq.warp(jnp.moveaxis(parts, 1, -1), params)
        out.update(
            view_images=view_images,
            view_foreground=view_fg,
            view_parts=net(view_images, view_fg),
            warped_parts=jnp.moveaxis(warped_parts, -1, 1),
            view_valid=valid & (view_fg > 0),
        )
        return out
