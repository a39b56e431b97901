"""The part-discovery transform: geometry against the forward map, colours against colorsys."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.data import equivariance as eq


def _params(angle_deg=0.0, shift_y=0.0, shift_x=0.0, **colours):
    one = lambda v: jnp.array([v], jnp.float32)
    base = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, **colours}
    return {
        "angle": one(np.deg2rad(angle_deg)),
        "shift_y": one(shift_y),
        "shift_x": one(shift_x),
        **{k: one(v) for k, v in base.items()},
    }


@pytest.mark.parametrize(("angle", "dy", "dx"), [(0, 0.1, 0), (30, 0, -0.1), (-60, 0.05, 0.08)])
def test_a_pixel_moves_where_the_forward_rotation_and_translation_send_it(angle, dy, dx):
    h = w = 41
    image = np.zeros((1, h, w, 1), np.float32)
    r, c = 12, 27
    image[0, r, c, 0] = 1.0
    warped, _ = eq.warp(jnp.asarray(image), _params(angle, dy, dx))
    # Forward map in float64: rotate by +angle about the centre (row axis down, so a
    # positive angle turns x towards y), then translate.
    t = np.deg2rad(angle)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = r - cy, c - cx
    ry, rx = np.cos(t) * y - np.sin(t) * x, np.sin(t) * y + np.cos(t) * x
    target = (ry + cy + dy * h, rx + cx + dx * w)
    peak = np.unravel_index(np.argmax(np.asarray(warped)[0, ..., 0]), (h, w))
    assert abs(peak[0] - target[0]) <= 1 and abs(peak[1] - target[1]) <= 1


def test_valid_marks_pixels_whose_source_is_inside_and_masks_stay_normalised():
    masks = jax.nn.softmax(jax.random.normal(jax.random.key(0), (1, 20, 20, 4)), axis=-1)
    warped, valid = eq.warp(masks, _params(0.0, 0.0, 0.1))
    assert not np.asarray(valid)[0, :, :2].any() and np.asarray(valid)[0, :, 2:].all()
    sums = np.asarray(warped.sum(-1))[0]
    np.testing.assert_allclose(sums[np.asarray(valid)[0]], 1.0, atol=1e-5)


def test_colour_jitter_matches_colorsys_and_is_identity_at_neutral_factors():
    rgb = np.random.default_rng(0).random((1, 4, 5, 3)).astype(np.float32)
    same = eq.jitter_colours(jnp.asarray(rgb), _params())
    np.testing.assert_allclose(np.asarray(same), rgb, atol=1e-5)
    shifted = np.asarray(eq.jitter_colours(jnp.asarray(rgb), _params(hue=0.1)))
    for pixel, got in zip(rgb.reshape(-1, 3), shifted.reshape(-1, 3)):
        h, s, v = colorsys.rgb_to_hsv(*pixel.astype(float))
        np.testing.assert_allclose(got, colorsys.hsv_to_rgb((h + 0.1) % 1.0, s, v), atol=1e-5)


def test_ranges_beyond_the_papers_are_refused():
    eq.TransformRanges(60, 0.1, 0.3)
    with pytest.raises(ValueError, match=r"max_rotation is 90.*\[0, 60"):
        eq.TransformRanges(max_rotation=90)
    with pytest.raises(ValueError, match=r"max_translation is 0.5"):
        eq.TransformRanges(max_translation=0.5)
    params = eq.random_transform(jax.random.key(0), 64, eq.TransformRanges())
    assert np.abs(np.rad2deg(np.asarray(params["angle"]))).max() <= 60
    assert np.abs(np.asarray(params["shift_x"])).max() <= 0.1


def test_known_answers_a_quarter_turn_and_an_integer_shift():
    masks = jax.nn.softmax(jax.random.normal(jax.random.key(1), (1, 9, 9, 3)), axis=-1)
    turned, valid = eq.warp(masks, _params(90.0))
    # +90 degrees turns the frame counter-clockwise on screen, as np.rot90.
    np.testing.assert_allclose(np.asarray(turned)[0], np.rot90(np.asarray(masks)[0]), atol=1e-5)
    assert np.asarray(valid).all()
    shifted, valid = eq.warp(masks, _params(0.0, 2 / 9, -3 / 9))  # 2 rows down, 3 columns left.
    expected = np.zeros((9, 9, 3), np.float32)
    expected[2:, :6] = np.asarray(masks)[0, :7, 3:]
    np.testing.assert_allclose(np.asarray(shifted)[0], expected, atol=1e-5)
    inside = np.zeros((9, 9), bool)
    inside[2:, :6] = True
    np.testing.assert_array_equal(np.asarray(valid)[0], inside)
