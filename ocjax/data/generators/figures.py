"""Articulated 2-D figures with part labels: the embedded data of part discovery.

Every image holds one figure made of the six parts of `PARTS` in a fixed semantic layout
(a head above a torso, an arm at each shoulder, a leg at each hip), so a part is defined by
its shape and its place in the figure. What varies per image, so that parts must be found
from shape and position rather than colour:

* pose: the whole figure turns by up to ±`MAX_TILT` degrees; each arm swings within
  `ARM_RANGE` and each leg within `LEG_RANGE` of its rest angle;
* scale (`SCALE_RANGE` of the canvas) and position (the figure stays inside);
* colour: one base colour per figure, each part a small random shift of it, so colours
  barely separate parts; the background is another random colour;
* texture: stripes of random frequency, phase and direction modulate the whole figure.

Parts are painted torso, legs, arms, head, so arms occlude the torso and the head the
neck; the label map records what is visible. Image sides of 64 or more look best; the
geometry scales with the resolution. `render_figure(seed, resolution)` is a pure function of
its arguments and returns the image, the part labels (0 background, k part k) and the
foreground.
"""

from __future__ import annotations

import numpy as np

PARTS = ("head", "torso", "left_arm", "right_arm", "left_leg", "right_leg")
MAX_TILT = 25.0  # Degrees.
ARM_RANGE = (-60.0, 60.0)  # Degrees around hanging down-and-out.
LEG_RANGE = (-25.0, 25.0)  # Degrees around straight down.
SCALE_RANGE = (0.75, 1.0)  # Figure size as a fraction of the largest that fits.


def _capsule(
    rows: np.ndarray, cols: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float
) -> np.ndarray:
    """Pixels within `radius` of the segment a-b (points as (row, col))."""
    ab = b - a
    t = ((rows - a[0]) * ab[0] + (cols - a[1]) * ab[1]) / max(float(ab @ ab), 1e-9)
    t = np.clip(t, 0.0, 1.0)
    dr, dc = rows - (a[0] + t * ab[0]), cols - (a[1] + t * ab[1])
    return dr * dr + dc * dc <= radius * radius


def _ellipse(
    rows: np.ndarray, cols: np.ndarray, centre: np.ndarray, radii: tuple[float, float], angle: float
) -> np.ndarray:
    """Pixels inside an ellipse with radii (along, across) turned by `angle` radians."""
    dr, dc = rows - centre[0], cols - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    along, across = cos * dr + sin * dc, -sin * dr + cos * dc
    return (along / radii[0]) ** 2 + (across / radii[1]) ** 2 <= 1.0


def _direction(angle: float) -> np.ndarray:
    """Unit (row, col) vector at `angle` radians from straight down, turning to +col."""
    return np.array([np.cos(angle), np.sin(angle)])


def render_figure(seed: int, resolution: int = 64) -> dict[str, np.ndarray]:
    """One figure: `image` uint8 `[r, r, 3]`, `parts` uint8 `[r, r]` (0 background, k the
    k-th of `PARTS`), `foreground` bool `[r, r]`, and the pose `tilt`, `scale` (floats)."""
    rng = np.random.default_rng(seed)
    r = resolution
    rows, cols = np.meshgrid(np.arange(r) + 0.5, np.arange(r) + 0.5, indexing="ij")
    scale = rng.uniform(*SCALE_RANGE)
    unit = 0.92 * r * scale / 9.2  # The figure spans about 9.2 units with its margins.
    tilt = np.deg2rad(rng.uniform(-MAX_TILT, MAX_TILT))

    def rotate(v: np.ndarray) -> np.ndarray:
        cos, sin = np.cos(tilt), np.sin(tilt)
        return np.array([cos * v[0] - sin * v[1], sin * v[0] + cos * v[1]])

    # Skeleton in figure units (row down, col right), centred on the hips, before tilting.
    skeleton = {
        "neck": np.array([-3.0, 0.0]),
        "shoulder_l": np.array([-2.6, -1.1]),
        "shoulder_r": np.array([-2.6, 1.1]),
        "hip_l": np.array([0.0, -0.6]),
        "hip_r": np.array([0.0, 0.6]),
        "head": np.array([-4.0, 0.0]),
        "torso": np.array([-1.5, 0.0]),
    }
    arms = [np.deg2rad(rng.uniform(*ARM_RANGE)) for _ in range(2)]
    legs = [np.deg2rad(rng.uniform(*LEG_RANGE)) for _ in range(2)]
    limb = {
        "left_arm": (skeleton["shoulder_l"], -np.deg2rad(35) - arms[0], 2.6, 0.45),
        "right_arm": (skeleton["shoulder_r"], np.deg2rad(35) + arms[1], 2.6, 0.45),
        "left_leg": (skeleton["hip_l"], -np.deg2rad(8) + legs[0], 3.2, 0.55),
        "right_leg": (skeleton["hip_r"], np.deg2rad(8) + legs[1], 3.2, 0.55),
    }
    # Every disc that makes up the figure, in figure units: (centre, radius).
    discs = [(skeleton["head"], 1.0), (skeleton["torso"], 1.9)]
    for start, angle, length, width in limb.values():
        discs += [(start, width), (start + length * _direction(angle), width)]
    # Place the figure uniformly where all of it (after the tilt) is inside the canvas.
    centres = np.array([rotate(c) for c, _ in discs]) * unit
    radii = np.array([rad for _, rad in discs])[:, None] * unit
    low = -(centres - radii).min(axis=0) + 1.0
    high = r - 1.0 - (centres + radii).max(axis=0)
    origin = np.array([rng.uniform(lo, max(lo, hi)) for lo, hi in zip(low, high)])

    def to_canvas(point: np.ndarray) -> np.ndarray:
        return origin + unit * rotate(point)

    masks = {
        "torso": _ellipse(
            rows, cols, to_canvas(skeleton["torso"]), (1.9 * unit, 1.2 * unit), -tilt
        ),
        "head": rows < -1,  # Replaced below; keeps the dict order irrelevant.
    }
    for name, (start, angle, length, width) in limb.items():
        a = to_canvas(start)
        b = to_canvas(start + length * _direction(angle))
        masks[name] = _capsule(rows, cols, a, b, width * unit)
    head = to_canvas(skeleton["head"])
    masks["head"] = (rows - head[0]) ** 2 + (cols - head[1]) ** 2 <= (1.0 * unit) ** 2
    neck = _capsule(rows, cols, to_canvas(skeleton["neck"]), head, 0.35 * unit)
    masks["head"] |= neck

    parts = np.zeros((r, r), np.uint8)
    for name in ("torso", "left_leg", "right_leg", "left_arm", "right_arm", "head"):
        parts[masks[name]] = PARTS.index(name) + 1
    foreground = parts > 0

    base = rng.uniform(0.15, 0.95, 3)
    background = rng.uniform(0.0, 1.0, 3)
    while np.abs(background - base).sum() < 0.6:  # Keep the figure visible.
        background = rng.uniform(0.0, 1.0, 3)
    colours = np.clip(base + rng.normal(0.0, 0.06, (len(PARTS), 3)), 0.0, 1.0)
    frequency = rng.uniform(0.15, 0.6)
    direction = rng.uniform(0.0, np.pi)
    stripes = 0.85 + 0.15 * np.sin(
        frequency * (np.cos(direction) * rows + np.sin(direction) * cols) + rng.uniform(0, 6.3)
    )
    image = np.broadcast_to(background, (r, r, 3)).copy()
    for k in range(len(PARTS)):
        inside = parts == k + 1
        image[inside] = colours[k] * stripes[inside][:, None]
    image = np.clip(image + rng.normal(0.0, 0.02, image.shape), 0.0, 1.0)
    return {
        "image": (image * 255).round().astype(np.uint8),
        "parts": parts,
        "foreground": foreground,
        "tilt": float(np.rad2deg(tilt)),
        "scale": float(scale),
    }
