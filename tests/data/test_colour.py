"""Tests for the on-device colour operations, against skimage and float64 formulas."""

import numpy as np
import pytest
import skimage.color

from ocjax.data import colour


def random_images(seed: int, shape=(3, 12, 16, 3)) -> np.ndarray:
    """Uniform float32 images in [0, 1] with grey, black, white and pure-colour pixels."""
    images = np.random.default_rng(seed).random(shape).astype(np.float32)
    images[:, 0, :4] = [[0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 1], [1, 0, 0]]
    images[:, 1, :3] = [[0, 1, 0], [0, 0, 1], [1, 1, 0]]
    return images


def luma(images: np.ndarray) -> np.ndarray:
    """float64 ITU-R 601 luma `[..., 1]`."""
    return (images.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[..., None]


def per_image(values) -> np.ndarray:
    """`[b]` values shaped to broadcast over `[b, h, w, c]`."""
    return np.asarray(values, np.float64)[:, None, None, None]


def test_brightness_scales_each_image_by_its_factor_and_clips():
    images, factors = random_images(0), np.array([0.0, 0.8, 1.5], np.float32)
    expected = np.clip(images * per_image(factors), 0, 1)
    np.testing.assert_allclose(colour.adjust_brightness(images, factors), expected, atol=1e-6)


def test_contrast_blends_with_each_images_mean_luma():
    images, factors = random_images(1), np.array([0.0, 0.7, 1.3], np.float32)
    mean = luma(images).mean(axis=(1, 2, 3), keepdims=True)
    expected = np.clip(mean + per_image(factors) * (images - mean), 0, 1)
    np.testing.assert_allclose(colour.adjust_contrast(images, factors), expected, atol=1e-6)


def test_saturation_blends_with_each_pixels_luma():
    images, factors = random_images(2), np.array([0.0, 0.5, 1.8], np.float32)
    grey = luma(images)
    expected = np.clip(grey + per_image(factors) * (images - grey), 0, 1)
    np.testing.assert_allclose(colour.adjust_saturation(images, factors), expected, atol=1e-6)


@pytest.mark.parametrize("shifts", [(0.3, -0.05, 0.5), (-0.5, 0.0, 0.97)])
def test_hue_rotation_matches_skimage_hsv(shifts):
    images = random_images(3)
    for image, shift, got in zip(images, shifts, np.asarray(colour.adjust_hue(images, shifts))):
        hsv = skimage.color.rgb2hsv(image.astype(np.float64))
        hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
        np.testing.assert_allclose(got, skimage.color.hsv2rgb(hsv), atol=1e-5)


def test_hsv_conversions_match_skimage_both_ways():
    images = random_images(4)
    hsv = np.asarray(colour.rgb_to_hsv(images))
    np.testing.assert_allclose(hsv, skimage.color.rgb2hsv(images.astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(colour.hsv_to_rgb(hsv), images, atol=1e-6)


def test_imagenet_normalize_equals_the_host_normalisation():
    from ocjax.data import augment

    images = np.random.default_rng(0).random((2, 5, 7, 3)).astype(np.float32)
    expected = np.stack([augment.normalize(image) for image in images])
    np.testing.assert_allclose(colour.imagenet_normalize(images), expected, rtol=1e-6, atol=1e-6)
