"""The equivariance transform of part discovery, applied alike to images and part masks.

`random_transform` draws, per image, a rotation within ±`max_rotation` degrees, a
translation within ±`max_translation` of the image size and colour-jitter factors
(brightness, contrast, saturation; hue shift) within ±`jitter`; `warp` applies the
geometry to any `[b, h, w, c]` map (bilinear, zeros outside the frame) and returns where
the warped map is inside the frame; `jitter_colours` applies the colours to images only.
Everything runs under `jax.jit` (the paper: colour jitter ±30 %, rotation ±60°,
translation ±10 %).
"""

import dataclasses

import jax
import jax.numpy as jnp

from ocjax.data import colour

MAX_ROTATION, MAX_TRANSLATION, MAX_JITTER = 60.0, 0.1, 0.3  # The paper's bounds.


@dataclasses.dataclass(frozen=True)
class TransformRanges:
    """Ranges of the random transform; bounded by the paper's (±60°, ±10 %, ±30 %)."""

    max_rotation: float = MAX_ROTATION  # Degrees.
    max_translation: float = MAX_TRANSLATION  # Fraction of the image side.
    jitter: float = MAX_JITTER  # Brightness, contrast, saturation factors 1 ± jitter; hue.

    def __post_init__(self) -> None:
        for name, value, bound in (
            ("max_rotation", self.max_rotation, MAX_ROTATION),
            ("max_translation", self.max_translation, MAX_TRANSLATION),
            ("jitter", self.jitter, MAX_JITTER),
        ):
            if not 0 <= value <= bound:
                raise ValueError(
                    f"objective.{name} is {value}; it must lie in [0, {bound}] (the paper's "
                    f"range; larger transforms move parts out of the frame)."
                )


def random_transform(rng: jax.Array, batch: int, ranges: TransformRanges) -> dict[str, jax.Array]:
    """Per-image parameters `[b]`: angle (radians), shift_y, shift_x (fractions), brightness,
    contrast, saturation factors and hue shift (fraction of a turn)."""
    keys = jax.random.split(rng, 7)

    def uniform(key: jax.Array, bound: float) -> jax.Array:
        return jax.random.uniform(key, (batch,), minval=-bound, maxval=bound)

    return {
        "angle": jnp.deg2rad(uniform(keys[0], ranges.max_rotation)),
        "shift_y": uniform(keys[1], ranges.max_translation),
        "shift_x": uniform(keys[2], ranges.max_translation),
        "brightness": 1 + uniform(keys[3], ranges.jitter),
        "contrast": 1 + uniform(keys[4], ranges.jitter),
        "saturation": 1 + uniform(keys[5], ranges.jitter),
        "hue": uniform(keys[6], ranges.jitter / 2),
    }


def source_coordinates(params: dict[str, jax.Array], h: int, w: int) -> jax.Array:
    """Where each output pixel `[b, 2, h, w]` (row, col) samples its input: the inverse of a
    rotation about the image centre followed by a translation."""
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y = rows[None] - cy - params["shift_y"][:, None, None] * h
    x = cols[None] - cx - params["shift_x"][:, None, None] * w
    cos, sin = jnp.cos(params["angle"])[:, None, None], jnp.sin(params["angle"])[:, None, None]
    src_y = cos * y + sin * x + cy  # Rotation by -angle undoes the forward rotation.
    src_x = -sin * y + cos * x + cx
    return jnp.stack([src_y, src_x], axis=1)


def warp(maps: jax.Array, params: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Maps `[b, h, w, c]` rotated and translated by `params` (bilinear; 0 outside the
    frame), and `valid [b, h, w]`: output pixels whose source lies inside the input."""
    _, h, w, c = maps.shape
    coords = source_coordinates(params, h, w)

    def one(image: jax.Array, where: jax.Array) -> jax.Array:
        channels = [
            jax.scipy.ndimage.map_coordinates(
                image[..., i], [where[0], where[1]], order=1, mode="constant", cval=0.0
            )
            for i in range(c)
        ]
        return jnp.stack(channels, axis=-1)

    warped = jax.vmap(one)(maps, coords)
    inside = (
        (coords[:, 0] >= 0)
        & (coords[:, 0] <= h - 1)
        & (coords[:, 1] >= 0)
        & (coords[:, 1] <= w - 1)
    )
    return warped, inside


def jitter_colours(images: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """Images `[b, h, w, 3]` in [0, 1] with brightness, contrast, saturation and hue changed
    by `params` (in that order, each clipped to [0, 1])."""
    x = colour.adjust_brightness(images, params["brightness"])
    x = colour.adjust_contrast(x, params["contrast"])
    x = colour.adjust_saturation(x, params["saturation"])
    return colour.adjust_hue(x, params["hue"])
