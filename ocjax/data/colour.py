"""Colour changes of image batches on device (jnp, jit-able), one strength per image.

Each function takes RGB images `[b, h, w, 3]` in [0, 1] and a per-image value `[b]`, and
clips its output to [0, 1], as torchvision's functional colour ops do: brightness
multiplies, contrast blends with the image's mean luma, saturation blends with each
pixel's luma (ITU-R 601 weights), and hue rotates the HSV hue by a fraction of a turn.
`imagenet_normalize` maps [0, 1] images to the statistics ImageNet-trained backbones expect.
"""

import jax
import jax.numpy as jnp

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images: jax.Array) -> jax.Array:
    """`(images - mean) / std` per channel of RGB `[..., 3]` in [0, 1], ImageNet's statistics."""
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    return (images - mean) * (1.0 / jnp.asarray(IMAGENET_STD, jnp.float32))


def _per_image(values: jax.Array, images: jax.Array) -> jax.Array:
    """`values [b]` shaped `[b, 1, 1, 1]` to broadcast over `images [b, h, w, c]`."""
    return jnp.asarray(values, images.dtype).reshape((-1,) + (1,) * (images.ndim - 1))


def luma(images: jax.Array) -> jax.Array:
    """Luma `[b, h, w, 1]` of RGB `[b, h, w, 3]` (ITU-R 601 weights)."""
    red, green, blue = (images[..., k : k + 1] for k in range(3))
    return LUMA_WEIGHTS[0] * red + LUMA_WEIGHTS[1] * green + LUMA_WEIGHTS[2] * blue


def _blend(images: jax.Array, target: jax.Array, factors: jax.Array) -> jax.Array:
    """`target + factor * (images - target)` per image, clipped to [0, 1]."""
    return jnp.clip(target + _per_image(factors, images) * (images - target), 0.0, 1.0)


def adjust_brightness(images: jax.Array, factors: jax.Array) -> jax.Array:
    """`images [b, h, w, 3]` times `factors [b]` (>= 0), clipped to [0, 1]."""
    return jnp.clip(images * _per_image(factors, images), 0.0, 1.0)


def adjust_contrast(images: jax.Array, factors: jax.Array) -> jax.Array:
    """Blends `images [b, h, w, 3]` with each image's mean luma by `factors [b]`."""
    mean = jnp.mean(luma(images), axis=tuple(range(1, images.ndim)), keepdims=True)
    return _blend(images, mean, factors)


def adjust_saturation(images: jax.Array, factors: jax.Array) -> jax.Array:
    """Blends `images [b, h, w, 3]` with their per-pixel luma by `factors [b]`."""
    return _blend(images, luma(images), factors)


def _wrap(turns: jax.Array) -> jax.Array:
    """`turns` modulo 1, in [0, 1) (a floor, which XLA:CPU vectorises, unlike float `%`)."""
    wrapped = turns - jnp.floor(turns)
    return jnp.where(wrapped >= 1.0, wrapped - 1.0, wrapped)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    """HSV `[..., 3]` (hue in turns [0, 1), saturation, value) of RGB `[..., 3]` in [0, 1]."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = jnp.max(rgb, axis=-1)
    delta = value - jnp.min(rgb, axis=-1)
    saturation = jnp.where(value > 0, delta / jnp.where(value > 0, value, 1.0), 0.0)
    safe = jnp.where(delta > 0, delta, 1.0)
    sixths = jnp.where(
        value == red,
        (green - blue) / safe,
        jnp.where(value == green, 2.0 + (blue - red) / safe, 4.0 + (red - green) / safe),
    )
    hue = jnp.where(delta > 0, _wrap(sixths / 6.0), 0.0)
    return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """RGB `[..., 3]` of HSV `[..., 3]` (hue in turns, any real value; wraps)."""
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    channels = []
    for phase in (5.0, 3.0, 1.0):  # Red, green, blue: the sector ramp of each channel.
        sector = 6.0 * _wrap(hue + phase / 6.0)
        ramp = jnp.clip(jnp.minimum(sector, 4.0 - sector), 0.0, 1.0)
        channels.append(value * (1.0 - saturation * ramp))
    return jnp.stack(channels, axis=-1)


def adjust_hue(images: jax.Array, shifts: jax.Array) -> jax.Array:
    """Rotates the HSV hue of `images [b, h, w, 3]` by `shifts [b]` turns, clipped to [0, 1]."""
    hsv = rgb_to_hsv(images)
    hue = hsv[..., 0] + _per_image(shifts, images)[..., 0]
    return jnp.clip(hsv_to_rgb(jnp.stack([hue, hsv[..., 1], hsv[..., 2]], -1)), 0.0, 1.0)
