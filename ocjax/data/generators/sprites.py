"""Procedural Multi-dSprites-like scenes (Burgess et al. 2019; Kabra et al. 2019).

dSprites factors, as published with the dSprites dataset: shape in {square, ellipse,
heart}, scale in 6 values linearly spaced in [0.5, 1], orientation in 40 values linearly
spaced in [0, 2π), x and y positions in 32 values linearly spaced in [0, 1]. A scene of the
Multi-dSprites family paints `min_sprites .. max_sprites` such sprites, each in its own
colour, one after the other onto a 64 x 64 background, so later sprites occlude earlier
ones:

* `background="colored"` (the colored_on_colored variant): background and sprite colours
  are uniform random RGB;
* `background="grayscale"` (the colored_on_grayscale variant): a uniform random grey
  background and sprite colours of random hue at full saturation and value (HSV).

Geometry: at scale 1 a sprite spans `SPRITE_EXTENT` of the image side (the square's side,
the ellipse's long axis, the heart's width); positions map [0, 1] to the centres that keep
every rotation of the largest sprite inside the image. Sprites are binary (no
anti-aliasing), as in dSprites. The segmentation is the painter's order: id k where sprite k
is the top-most; a sprite hidden completely by later ones is not `visible`.

`render_sprites(seed)` is a pure function of its seed.
"""

from __future__ import annotations

import colorsys

import numpy as np

RESOLUTION = 64
SHAPE_NAMES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
POSITIONS = np.linspace(0.0, 1.0, 32)
SPRITE_EXTENT = 0.25
BACKGROUNDS = ("colored", "grayscale")


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether sprite-frame points (u right, v down; half extent 1) lie in `shape`."""
    if shape == 0:  # Square of side 2.
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == 1:  # Ellipse with semi-axes 1 and 0.5.
        return u**2 + (v / 0.5) ** 2 <= 1
    # Heart: (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans x in [-1.14, 1.14], y in [-1, 1.25];
    # scaled to half-width 1 and centred vertically, point up at the bottom.
    x, y = u * 1.14, -v * 1.125 + 0.125
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def sprite_mask(
    shape: int, scale: float, orientation: float, x: float, y: float, resolution: int
) -> np.ndarray:
    """Binary mask `[res, res]` of one sprite (position `x`, `y` in [0, 1])."""
    half = SPRITE_EXTENT * resolution / 2 * scale
    reach = SPRITE_EXTENT * resolution / 2 * np.sqrt(2)  # Largest sprite, any rotation.
    cx = reach + x * (resolution - 2 * reach)
    cy = reach + y * (resolution - 2 * reach)
    rows, cols = np.mgrid[0:resolution, 0:resolution] + 0.5
    dx, dy = (cols - cx) / half, (rows - cy) / half
    cos, sin = np.cos(orientation), np.sin(orientation)
    return _inside(shape, cos * dx + sin * dy, -sin * dx + cos * dy)


def _colors(rng: np.random.Generator, background: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Background `[3]` and sprite colours `[n, 3]` in [0, 1] for the variant."""
    if background == "colored":
        return rng.uniform(size=3), rng.uniform(size=(n, 3))
    grey = np.full(3, rng.uniform())
    hues = rng.uniform(size=n)
    return grey, np.array([colorsys.hsv_to_rgb(h, 1.0, 1.0) for h in hues])


def render_sprites(
    seed: int,
    *,
    resolution: int = RESOLUTION,
    min_sprites: int = 2,
    max_sprites: int = 5,
    background: str = "colored",
) -> dict[str, np.ndarray]:
    """One scene: `image` uint8 `[res, res, 3]`, `segmentation` uint8 `[res, res]` (0 =
    background, k = sprite k), per sprite `shape`, `visible` `[n]`, `scale`,
    `orientation` float32 `[n]`, `position` float32 `[n, 2]` (x, y in [0, 1]) and `color`
    float32 `[n, 3]`."""
    if background not in BACKGROUNDS:
        raise ValueError(f"Unknown background {background!r}; use one of {BACKGROUNDS}.")
    if not 1 <= min_sprites <= max_sprites:
        raise ValueError(
            f"Need 1 <= min_sprites <= max_sprites, got {min_sprites} and {max_sprites}."
        )
    rng = np.random.default_rng(seed)
    n = int(rng.integers(min_sprites, max_sprites + 1))
    shapes = rng.integers(len(SHAPE_NAMES), size=n).astype(np.int32)
    scales = rng.choice(SCALES, size=n).astype(np.float32)
    orientations = rng.choice(ORIENTATIONS, size=n).astype(np.float32)
    position = rng.choice(POSITIONS, size=(n, 2)).astype(np.float32)
    back, colors = _colors(rng, background, n)
    image = np.broadcast_to(back, (resolution, resolution, 3)).copy()
    segmentation = np.zeros((resolution, resolution), np.uint8)
    for k in range(n):
        mask = sprite_mask(
            int(shapes[k]), scales[k], orientations[k], *position[k], resolution=resolution
        )
        image[mask] = colors[k]
        segmentation[mask] = k + 1
    return {
        "image": np.round(image * 255).astype(np.uint8),
        "segmentation": segmentation,
        "shape": shapes,
        "scale": scales,
        "orientation": orientations,
        "position": position,
        "color": colors.astype(np.float32),
        "visible": np.array([(segmentation == k + 1).any() for k in range(n)]),
    }
