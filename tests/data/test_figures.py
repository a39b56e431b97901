"""The embedded part figures keep their semantic layout under every pose."""

import numpy as np

from ocjax.data.generators.figures import PARTS, render_figure

SAMPLES = [render_figure(seed, 64) for seed in range(150)]


def _centroid_in_figure_frame(figure, name):
    """Centroid (row, col) of a part, rotated back by the figure's tilt about the image
    centre (the tilt turns the figure, so undoing it restores the upright layout)."""
    rows, cols = np.nonzero(figure["parts"] == PARTS.index(name) + 1)
    t = np.deg2rad(figure["tilt"])
    r, c = rows.mean() - 32, cols.mean() - 32
    return np.cos(t) * r + np.sin(t) * c, -np.sin(t) * r + np.cos(t) * c


def test_render_is_a_pure_function_of_the_seed():
    a, b = render_figure(7, 64), render_figure(7, 64)
    for key in ("image", "parts", "foreground"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], render_figure(8, 64)["image"])


def test_every_part_is_visible_and_the_figure_is_inside():
    for figure in SAMPLES:
        _check_visible_and_inside(figure)


def _check_visible_and_inside(figure):
    counts = np.bincount(figure["parts"].ravel(), minlength=len(PARTS) + 1)
    assert (counts[1:] >= 15).all(), counts
    np.testing.assert_array_equal(figure["foreground"], figure["parts"] > 0)
    border = np.concatenate(
        [
            figure["foreground"][0],
            figure["foreground"][-1],
            figure["foreground"][:, 0],
            figure["foreground"][:, -1],
        ]
    )
    assert not border.any()
    assert figure["image"].dtype == np.uint8 and figure["image"].shape == (64, 64, 3)


def test_layout_is_semantic_in_every_pose():
    for figure in SAMPLES:
        head = _centroid_in_figure_frame(figure, "head")
        torso = _centroid_in_figure_frame(figure, "torso")
        legs = [_centroid_in_figure_frame(figure, p) for p in ("left_leg", "right_leg")]
        arms = [_centroid_in_figure_frame(figure, p) for p in ("left_arm", "right_arm")]
        assert head[0] < torso[0] < min(leg[0] for leg in legs)
        assert legs[0][1] < legs[1][1] and arms[0][1] < arms[1][1]


def test_pose_scale_and_colour_vary():
    tilts = np.array([f["tilt"] for f in SAMPLES])
    scales = np.array([f["scale"] for f in SAMPLES])
    assert tilts.min() < -15 and tilts.max() > 15 and scales.min() < 0.8 and scales.max() > 0.95
    # The same part has very different colours across images: colour alone does not name it.
    torso = np.array([f["image"][f["parts"] == 2].mean(0) for f in SAMPLES])
    assert torso.std(0).min() > 40
