"""Procedural Tetrominoes in the distribution of DeepMind's Tetris dataset (Kabra et al. 2019).

The published description: every 35 x 35 RGB image holds three tetrominoes on a black
background, each one of a fixed set of shapes/orientations and one of six colours (red,
green, blue, yellow, magenta, cyan), without occlusion; the ground truth is an instance mask
per piece plus `x`, `y`, `shape` and `color` per piece and a `visibility` vector (entity 0
is the background). This module draws the same scene family:

* a piece is a fixed tetromino made of four `BLOCK` x `BLOCK` pixel squares (5 px, so a
  piece spans 10-20 px and a 7 x 7 grid of blocks fills the canvas);
* `shape` indexes `TETROMINOES`, the 19 fixed tetrominoes (every distinct rotation of the
  seven pieces I, O, T, S, Z, J, L); the official README counts "17 unique
  shapes/orientations" while its readers store `shape` codes 1..19, which is what this set
  matches. The order of the codes in the official files is not published;
* `color` indexes `COLORS`, pure primaries and secondaries at full intensity, drawn
  independently per piece (two pieces may share one);
* positions are uniform over every pixel offset that keeps the piece inside the canvas
  and overlaps no earlier piece (pieces may touch), so every mask is complete and the
  segmentation has no ambiguous pixel; a scene whose last piece finds no free offset is
  drawn again;
* `x`, `y` are the centre of the piece's bounding box in [0, 1] (column, row).

`render_tetrominoes(seed)` is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np

RESOLUTION = 35
BLOCK = 5
NUM_PIECES = 3
COLOR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
COLORS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
    np.uint8,
)
_BASE_PIECES = {
    "I": ["####"],
    "O": ["##", "##"],
    "T": ["###", ".#."],
    "S": [".##", "##."],
    "Z": ["##.", ".##"],
    "J": ["#..", "###"],
    "L": ["..#", "###"],
}


def _rotations(rows: list[str]) -> list[np.ndarray]:
    """The distinct 90-degree rotations of a piece given as rows of '#' and '.'."""
    cells = np.array([[c == "#" for c in row] for row in rows], bool)
    found: list[np.ndarray] = []
    for k in range(4):
        rotated = np.rot90(cells, k)
        if not any(r.shape == rotated.shape and (r == rotated).all() for r in found):
            found.append(rotated)
    return found


def _all_tetrominoes() -> tuple[tuple[str, np.ndarray], ...]:
    """(name, block grid `[rows, cols]` bool) of each fixed tetromino, I O T S Z J L order."""
    return tuple(
        (f"{name}{k}", grid)
        for name, rows in _BASE_PIECES.items()
        for k, grid in enumerate(_rotations(rows))
    )


TETROMINOES = _all_tetrominoes()
SHAPE_NAMES = tuple(name for name, _ in TETROMINOES)


def piece_mask(shape: int, block: int = BLOCK) -> np.ndarray:
    """Pixel mask `[rows * block, cols * block]` bool of fixed tetromino `shape`."""
    grid = TETROMINOES[shape][1]
    return np.kron(grid, np.ones((block, block), bool))


def render_tetrominoes(
    seed: int,
    *,
    resolution: int = RESOLUTION,
    num_pieces: int = NUM_PIECES,
    block: int = BLOCK,
    max_tries: int = 1000,
) -> dict[str, np.ndarray]:
    """One scene: `image` uint8 `[res, res, 3]`, `segmentation` uint8 `[res, res]` (0 =
    background, k = piece k), per piece `shape`, `color` int32 `[n]`, `position` float32
    `[n, 2]` (x, y of the bounding-box centre in [0, 1]) and `top_left` int32 `[n, 2]`."""
    if 4 * block > resolution:
        raise ValueError(
            f"A {block}-pixel block makes pieces {4 * block} px long, more than the "
            f"{resolution}-px canvas; lower the block size or raise the resolution."
        )
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):  # A scene whose last pieces find no room is drawn again.
        scene = _draw_scene(rng, resolution, num_pieces, block)
        if scene is not None:
            return scene
    raise RuntimeError(
        f"No room for {num_pieces} pieces on a {resolution}-px canvas in {max_tries} scenes "
        f"(seed {seed}); use fewer pieces or a larger canvas."
    )


def _free_places(segmentation: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Top-left corners `[m, 2]` (row, col) where `mask` fits without covering a piece."""
    windows = np.lib.stride_tricks.sliding_window_view(segmentation > 0, mask.shape)
    blocked = (windows & mask).any(axis=(2, 3))  # [rows, cols] of candidate corners.
    return np.argwhere(~blocked).astype(np.int32)


def _draw_scene(
    rng: np.random.Generator, resolution: int, num_pieces: int, block: int
) -> dict[str, np.ndarray] | None:
    """Pieces placed one by one, each uniformly over the places still free (the
    distribution of drawing positions until one is free); None if a piece finds none."""
    image = np.zeros((resolution, resolution, 3), np.uint8)
    segmentation = np.zeros((resolution, resolution), np.uint8)
    shapes = rng.integers(len(TETROMINOES), size=num_pieces).astype(np.int32)
    colors = rng.integers(len(COLORS), size=num_pieces).astype(np.int32)
    top_left = np.zeros((num_pieces, 2), np.int32)
    position = np.zeros((num_pieces, 2), np.float32)
    for k in range(num_pieces):
        mask = piece_mask(int(shapes[k]), block)
        h, w = mask.shape
        places = _free_places(segmentation, mask)
        if not len(places):
            return None
        row, col = (int(v) for v in places[rng.integers(len(places))])
        segmentation[row : row + h, col : col + w][mask] = k + 1
        image[row : row + h, col : col + w][mask] = COLORS[colors[k]]
        top_left[k] = (row, col)
        position[k] = ((col + w / 2) / resolution, (row + h / 2) / resolution)
    return {
        "image": image,
        "segmentation": segmentation,
        "shape": shapes,
        "color": colors,
        "position": position,
        "top_left": top_left,
    }
