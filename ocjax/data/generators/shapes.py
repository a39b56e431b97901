"""Procedural 2D shapes images in the style of the Shapes / 4Shapes datasets.

Every object is a filled, outline-free shape of fixed size (per resolution)
placed uniformly at random so that it lies fully inside the square image. One
object is drawn per entry of ``shape_ids`` (an id may repeat). At 32 x 32 the
sizes follow 4Shapes: a 13 x 13 square, 17-wide x 9-high triangles and a circle
of diameter 13; the other shapes use a 13 x 13 box (the sideways triangles are
9 wide x 17 high, the flat-topped hexagon is 11 high). All sizes scale linearly with the resolution.

Image channels:

* grey (default): one channel, shapes 1.0 on a 0.0 background, the union of
  all shapes;
* ``rgb=True``: three channels, each object gets one of ``num_colors`` fixed
  palette colours (evenly spaced saturated hues) chosen by the random
  generator; objects are painted in index order, so later objects cover
  earlier ones;
* ``rgb=True, depth=True``: four channels, the fourth holding each visible
  object's depth. Depths are a random permutation of ``1/n, 2/n, ..., 1``;
  a smaller depth is nearer and occludes larger ones in every channel.
  Background depth is 0.

Outputs: ``image`` [res, res, C] float32, ``labels`` [res, res] int32,
``shape`` [n] int32 (ids into ``SHAPE_NAMES``), ``top_left`` [n, 2] int32
(row, column of each bounding box, see ``shape_mask``), plus ``color`` [n]
int32 (indices into ``palette(num_colors)``) with ``rgb`` and ``depth`` [n]
float32 with ``depth``.

Labels are 0 for background and k for object k (1-based). Without depth,
pixels covered by two or more objects are labelled -1 as in the official
Shapes datasets, because the image alone cannot tell which object is in
front. With depth, occlusion is resolved and the visible object's label is
used, so -1 never appears.

Presets in ``VARIANTS`` (keyword arguments for ``render_shapes``):

* ``2shapes``: a square and an up-triangle (CAE 2Shapes);
* ``3shapes``: a square, an up-triangle and a down-triangle (3Shapes);
* ``4shapes``: those three plus a circle, greyscale (4Shapes);
* ``4shapes_rgb``: 4Shapes coloured from a 5-colour palette;
* ``4shapes_rgbd``: 4Shapes coloured, with a depth channel and occlusion;
* ``10shapes``: one of each of the ten shapes, coloured, at 48 x 48 so that
  ten objects still leave free space.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence

import numpy as np

SHAPE_NAMES = (
    "square",
    "up_triangle",
    "down_triangle",
    "circle",
    "diamond",
    "left_triangle",
    "right_triangle",
    "cross",
    "ring",
    "hexagon",
)
MIN_RESOLUTION = 16
BASE_RESOLUTION = 32
BASE_SIZE = 13
BASE_TRIANGLE_HEIGHT = 9

VARIANTS: dict[str, dict] = {
    "2shapes": dict(shape_ids=(0, 1)),
    "3shapes": dict(shape_ids=(0, 1, 2)),
    "4shapes": dict(shape_ids=(0, 1, 2, 3)),
    "4shapes_rgb": dict(shape_ids=(0, 1, 2, 3), rgb=True),
    "4shapes_rgbd": dict(shape_ids=(0, 1, 2, 3), rgb=True, depth=True),
    "10shapes": dict(shape_ids=tuple(range(10)), resolution=48, rgb=True),
}


def _scaled(length: int, resolution: int) -> int:
    """Length in pixels of a 32 x 32 reference length at the given resolution."""
    return int(np.floor(length * resolution / BASE_RESOLUTION + 0.5))


def shape_extent(shape_id: int, resolution: int) -> tuple[int, int]:
    """Bounding box (height, width) in pixels of a shape drawn at the given resolution."""
    _check_shape_id(shape_id)
    _check_resolution(resolution)
    name = SHAPE_NAMES[shape_id]
    if name in ("up_triangle", "down_triangle", "left_triangle", "right_triangle"):
        height = _scaled(BASE_TRIANGLE_HEIGHT, resolution)
        long_side = 2 * height - 1
        return (
            (height, long_side) if name in ("up_triangle", "down_triangle") else (long_side, height)
        )
    size = _scaled(BASE_SIZE, resolution)
    if name == "hexagon":
        return int(np.floor(size * np.sqrt(3.0) / 2.0 + 0.5)), size
    return size, size


def _box_coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre offsets from the box centre, rows [height, 1] and columns [1, width]."""
    rows = np.arange(height, dtype=np.float64)[:, None] - (height - 1) / 2.0
    cols = np.arange(width, dtype=np.float64)[None, :] - (width - 1) / 2.0
    return rows, cols


def _square(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Filled square mask [h, w] covering the whole box."""
    return np.ones((rows.shape[0], cols.shape[1]), dtype=bool)


def _up_triangle(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Upward triangle mask [h, w]: apex at the top centre, base on the bottom row."""
    return np.abs(cols) <= rows - rows[0, 0]


def _down_triangle(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Downward triangle mask [h, w]: base on the top row, apex at the bottom centre."""
    return np.abs(cols) <= rows[-1, 0] - rows


def _left_triangle(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Left-pointing triangle mask [h, w] with the apex at the left centre."""
    return np.abs(rows) <= cols - cols[0, 0]


def _right_triangle(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Right-pointing triangle mask [h, w] with the apex at the right centre."""
    return np.abs(rows) <= cols[0, -1] - cols


def _circle(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Filled disc mask [h, w] inscribed in the box."""
    radius = rows.shape[0] / 2.0
    return rows**2 + cols**2 <= radius**2


def _diamond(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Diamond (square rotated by 45 degrees) mask [h, w] touching the box edge midpoints."""
    return np.abs(rows) + np.abs(cols) <= rows.shape[0] / 2.0


def _cross(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Plus-sign mask [h, w] with arms about 40% of the box wide."""
    half_arm = 0.2 * rows.shape[0]
    return (np.abs(rows) <= half_arm) | (np.abs(cols) <= half_arm)


def _ring(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Annulus mask [h, w] with inner radius half of the outer radius."""
    radius = rows.shape[0] / 2.0
    squared = rows**2 + cols**2
    return (squared <= radius**2) & (squared >= (0.5 * radius) ** 2)


def _hexagon(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Regular flat-topped hexagon mask [h, w] with vertices on the left and right box edges."""
    radius = cols.shape[1] / 2.0
    return np.sqrt(3.0) * np.abs(cols) + np.abs(rows) <= np.sqrt(3.0) * radius


_MASK_FUNCTIONS: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    _square,
    _up_triangle,
    _down_triangle,
    _circle,
    _diamond,
    _left_triangle,
    _right_triangle,
    _cross,
    _ring,
    _hexagon,
)


def _check_shape_id(shape_id: int) -> None:
    """Raise ValueError unless shape_id indexes SHAPE_NAMES."""
    if not isinstance(shape_id, (int, np.integer)) or not 0 <= shape_id < len(SHAPE_NAMES):
        raise ValueError(
            f"unknown shape id {shape_id!r}; use an integer in [0, {len(SHAPE_NAMES) - 1}] "
            f"indexing SHAPE_NAMES = {SHAPE_NAMES}."
        )


def _check_resolution(resolution: int) -> None:
    """Raise ValueError unless the resolution is an integer large enough for every shape."""
    if not isinstance(resolution, (int, np.integer)) or resolution < MIN_RESOLUTION:
        raise ValueError(
            f"resolution must be an integer >= {MIN_RESOLUTION} so that the shapes fit, "
            f"got {resolution!r}."
        )


def shape_mask(shape_id: int, resolution: int, top_left: tuple[int, int]) -> np.ndarray:
    """Boolean mask [res, res] of one shape with its bounding box at (row, column) top_left."""
    height, width = shape_extent(shape_id, resolution)
    row, col = (int(value) for value in top_left)
    if not (0 <= row <= resolution - height and 0 <= col <= resolution - width):
        raise ValueError(
            f"{SHAPE_NAMES[shape_id]} of size {height}x{width} at top_left {tuple(top_left)} "
            f"does not fit in a {resolution}x{resolution} image; use "
            f"0 <= row <= {resolution - height} and 0 <= column <= {resolution - width}."
        )
    mask = np.zeros((resolution, resolution), dtype=bool)
    mask[row : row + height, col : col + width] = _MASK_FUNCTIONS[shape_id](
        *_box_coordinates(height, width)
    )
    return mask


def palette(num_colors: int) -> np.ndarray:
    """Fixed palette [num_colors, 3] of saturated colours in [0, 1] with evenly spaced hues."""
    if num_colors < 1:
        raise ValueError(f"num_colors must be >= 1, got {num_colors}.")
    hues = np.arange(num_colors) / num_colors
    return np.array([colorsys.hsv_to_rgb(hue, 0.85, 1.0) for hue in hues], dtype=np.float32)


def _validate(
    seed: int, shape_ids: Sequence[int], resolution: int, rgb: bool, depth: bool, num_colors: int
) -> None:
    """Raise ValueError for invalid render_shapes arguments."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if len(shape_ids) == 0:
        raise ValueError("shape_ids is empty; pass at least one shape id, e.g. (0, 1, 2, 3).")
    for shape_id in shape_ids:
        _check_shape_id(shape_id)
    _check_resolution(resolution)
    if depth and not rgb:
        raise ValueError(
            "depth=True needs rgb=True (the depth variant is RGB plus a depth channel)."
        )
    if rgb and num_colors < 1:
        raise ValueError(f"num_colors must be >= 1, got {num_colors}.")


def _labels(masks: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Labels [res, res] of masks [n, res, res]: k = object k, 0 = none, -1 = unordered overlap."""
    coverage = masks.sum(axis=0)
    if order is None:
        labels = (masks.argmax(axis=0) + 1).astype(np.int32)
        labels[coverage > 1] = -1
    else:
        ranked = np.where(masks, order[:, None, None], len(order))
        labels = (ranked.argmin(axis=0) + 1).astype(np.int32)
    labels[coverage == 0] = 0
    return labels


def _paint_rgb(masks: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """RGB image [res, res, 3] painting masks [n, res, res] in index order with colours [n, 3]."""
    painter = np.where(masks, np.arange(1, len(masks) + 1)[:, None, None], 0).max(axis=0)
    table = np.concatenate([np.zeros((1, 3)), colors])
    return table[painter].astype(np.float32)


def _paint_rgbd(labels: np.ndarray, colors: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """RGB-D image [res, res, 4] from visible labels [res, res], colours [n, 3], depths [n]."""
    table = np.concatenate([np.zeros((1, 4)), np.concatenate([colors, depths[:, None]], axis=1)])
    return table[labels].astype(np.float32)


def render_shapes(
    seed: int,
    shape_ids: Sequence[int] = (0, 1, 2, 3),
    resolution: int = 32,
    rgb: bool = False,
    depth: bool = False,
    num_colors: int = 5,
) -> dict[str, np.ndarray]:
    """Render shapes: image [res, res, C] float32 in [0, 1], labels [res, res] int32, shape [n]."""
    shape_ids = list(shape_ids)
    _validate(seed, shape_ids, resolution, rgb, depth, num_colors)
    rng = np.random.default_rng(seed)
    extents = np.array([shape_extent(shape_id, resolution) for shape_id in shape_ids])
    top_left = rng.integers(0, resolution - extents + 1)
    masks = np.stack(
        [shape_mask(s, resolution, tl) for s, tl in zip(shape_ids, top_left, strict=True)]
    )
    result = {"shape": np.asarray(shape_ids, dtype=np.int32), "top_left": top_left.astype(np.int32)}
    if not rgb:
        result["image"] = masks.any(axis=0)[..., None].astype(np.float32)
        result["labels"] = _labels(masks, None)
        return result
    color_ids = rng.integers(0, num_colors, len(shape_ids))
    colors = palette(num_colors)[color_ids]
    result["color"] = color_ids.astype(np.int32)
    if not depth:
        result["image"] = _paint_rgb(masks, colors)
        result["labels"] = _labels(masks, None)
        return result
    depth_order = rng.permutation(len(shape_ids))
    result["depth"] = ((depth_order + 1) / len(shape_ids)).astype(np.float32)
    result["labels"] = _labels(masks, depth_order)
    result["image"] = _paint_rgbd(result["labels"], colors, result["depth"])
    return result
