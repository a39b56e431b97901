"""Panels of `ocjax.visualize`: upscaled tiles, a titled header, row labels and id legends."""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from ocjax import visualize

PAD = 2  # White pixels between tiles.
WHITE = 255


def _runs(nonwhite: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], nonwhite.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _find_row(picture: np.ndarray, tile: np.ndarray, x: int) -> int:
    """The y at which `tile` sits in `picture` with its left edge at `x`."""
    h, w = tile.shape[:2]
    hits = [
        y
        for y in range(picture.shape[0] - h + 1)
        if np.array_equal(picture[y : y + h, x : x + w], tile)
    ]
    assert len(hits) == 1, hits
    return hits[0]


def _swatch_lines(strip: np.ndarray, side: int = 8) -> list[list[tuple[int, ...]]]:
    """Colours of the solid non-white squares (at least `side` px) in `strip`, per line, by x."""
    windows = sliding_window_view(strip, (side, side), axis=(0, 1))  # [y, x, 3, side, side]
    uniform = (windows == windows[..., :1, :1]).all(axis=(-1, -2)).all(axis=-1)
    corners = uniform & (windows[..., 0, 0] != WHITE).any(axis=-1)
    labels, _ = ndimage.label(corners)
    swatches = []
    for found in ndimage.find_objects(labels):
        y, x = found[0].start, found[1].start
        swatches.append((y, x, tuple(int(c) for c in strip[y, x])))
    lines: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
    for y, x, color in swatches:
        key = next((k for k in lines if abs(k - y) < side), y)
        lines.setdefault(key, []).append((x, color))
    return [[color for _, color in sorted(lines[k])] for k in sorted(lines)]


def _colors(colors: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(c) for c in color) for color in colors]


def _has_text(region: np.ndarray) -> bool:
    """Dark (text) pixels on a mostly white background."""
    dark = (region < 100).all(axis=-1)
    return bool(dark.sum() >= 10 and np.median(region) == WHITE)


def _random_scenes(rng, b, h, w, k, num_true):
    images = rng.integers(0, WHITE, (b, h, w, 3), dtype=np.uint8)  # Never pure white.
    masks = rng.random((b, k, h, w)) + 0.05
    masks /= masks.sum(axis=1, keepdims=True)
    true_ids = rng.integers(0, num_true, (b, h, w))
    return images, masks, true_ids


def test_upscale_repeats_pixels_by_the_least_factor_reaching_the_minimum_side():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    big = visualize.upscale(image, min_side=96)
    factor = 5  # 4 * 20 = 80 < 96 <= 5 * 20.
    assert big.shape == (20 * factor, 30 * factor, 3)
    np.testing.assert_array_equal(big[::factor, ::factor], image)
    np.testing.assert_array_equal(big[factor - 1 :: factor, factor - 1 :: factor], image)
    large = np.zeros((128, 100, 3), np.uint8)
    assert visualize.upscale(large, min_side=96).shape == large.shape


def test_slot_panel_titles_each_upscaled_column_and_has_a_legend_of_palette_colours():
    rng = np.random.default_rng(1)
    b, h, w, k, num_true = 2, 24, 24, 3, 6
    images, masks, true_ids = _random_scenes(rng, b, h, w, k, num_true)
    recons = images[:, ::-1]
    panel = visualize.slot_panel(images, masks, true_ids, num_true, reconstructions=recons)
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[-1] == 3

    side = h * math.ceil(visualize.MIN_TILE / h)  # 96: each 24 px tile grows 4x.
    columns = 4 + k  # image, recon., true segments, predicted, then one per slot.
    assert panel.shape[1] == columns * (side + PAD) + PAD  # Single-row scenes: no label column.
    up = np.kron(images[0], np.ones((4, 4, 1), np.uint8))
    top = _find_row(panel, up, PAD)
    header = panel[: top - PAD]
    assert header.shape[0] >= 10 and _has_text(header)

    band = panel[top : top + side]
    tiles = _runs((band != WHITE).any(axis=(0, 2)))
    assert len(tiles) == columns
    assert all(end - start == side for start, end in tiles)
    assert [start for start, _ in tiles] == [PAD + j * (side + PAD) for j in range(columns)]
    for start, end in tiles:
        assert _has_text(header[:, start:end])  # A title over every column.
    truth = visualize.palette(num_true)[true_ids[0]]
    np.testing.assert_array_equal(
        band[:, tiles[2][0] : tiles[2][1]], np.kron(truth, np.ones((4, 4, 1)))
    )

    body_end = top + b * (side + PAD)
    assert panel.shape[0] > body_end  # The legend follows the scenes.
    lines = _swatch_lines(panel[body_end:])
    assert lines == [
        _colors(visualize.palette(num_true)),
        _colors(visualize.palette(k + 1)[1:]),
    ]
    assert _has_text(panel[body_end:])


def test_slot_panel_labels_the_otsu_row_of_each_scene():
    rng = np.random.default_rng(2)
    b, h, w, k, num_true = 2, 32, 32, 3, 5
    images, masks, true_ids = _random_scenes(rng, b, h, w, k, num_true)
    binary = rng.random((b, k, h, w)) > 0.5
    panel = visualize.slot_panel(images, masks, true_ids, num_true, binary=binary)

    side = 3 * h  # 32 px tiles grow 3x to 96.
    columns = 3 + k  # image, true segments, predicted, slots.
    left = panel.shape[1] - (columns * (side + PAD) + PAD)
    assert left > 0  # A column of row labels.
    top = _find_row(panel, np.kron(images[0], np.ones((3, 3, 1), np.uint8)), left + PAD)
    last_slot = panel[:, panel.shape[1] - PAD - side : panel.shape[1] - PAD]
    rows = [run for run in _runs((last_slot != WHITE).any(axis=(1, 2))) if run[0] >= top]
    rows = [run for run in rows if run[1] - run[0] == side]
    assert [start for start, _ in rows] == [top + i * (side + PAD) for i in range(2 * b)]
    for start, end in rows:
        assert _has_text(panel[start:end, :left])  # "soft mask" / "Otsu mask".
    otsu_lead = panel[rows[1][0] : rows[1][1], left : left + 3 * (side + PAD)]
    assert (otsu_lead == WHITE).all()  # The Otsu row leaves the scene's columns blank.
    lines = _swatch_lines(panel[top + 2 * b * (side + PAD) :])
    assert lines == [_colors(visualize.palette(num_true)), _colors(visualize.palette(k + 1)[1:])]


def test_readout_panel_of_small_images_is_upscaled_titled_and_lists_every_cluster():
    rng = np.random.default_rng(3)
    b, h, w, num_colors = 3, 32, 32, 5
    images = rng.integers(0, WHITE, (b, h, w, 3), dtype=np.uint8)
    points = rng.normal(size=(b, h, w, 2))
    clusters = rng.integers(0, 7, (b, h, w))  # More clusters than ground-truth colours.
    true_ids = rng.integers(0, num_colors, (b, h, w))
    panel = visualize.readout_panel(images, images, points, clusters, true_ids, num_colors)

    side = 3 * h
    columns = 5  # image, recon., true segments, read-out, clusters.
    assert panel.shape[1] == columns * (side + PAD) + PAD
    top = _find_row(panel, np.kron(images[0], np.ones((3, 3, 1), np.uint8)), PAD)
    assert _has_text(panel[: top - PAD])
    body_end = top + b * (side + PAD)
    assert panel.shape[0] > body_end
    tiles = _runs((panel[top : top + side] != WHITE).any(axis=(0, 2)))
    assert len(tiles) == columns
    lines = _swatch_lines(panel[body_end:])
    assert lines == [_colors(visualize.palette(num_colors)), _colors(visualize.palette(7))]
