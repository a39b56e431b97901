"""Tests for the two-view augmentations, against skimage, PIL and explicit formulas."""

import grain
import numpy as np
import pytest
import scipy.stats
import skimage.color
import skimage.transform
from PIL import Image

from ocjax.data import augment
from ocjax.data.augment import TwoViewAugment

NO_JITTER = {"brightness": 0.0, "saturation": (1.0, 1.0), "hue": 0.0}


def random_image(seed: int, shape=(24, 32, 3)) -> np.ndarray:
    """Uniform float32 image in [0, 1] with a few grey, black, white and pure-colour pixels."""
    image = np.random.default_rng(seed).random(shape).astype(np.float32)
    image[0, :4] = [[0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 1], [1, 0, 0]]
    image[1, :3] = [[0, 1, 0], [0, 0, 1], [1, 1, 0]]
    return image


def uint8_image(seed: int, height: int = 240, width: int = 320) -> np.ndarray:
    """Random uint8 RGB image `[height, width, 3]`."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def draw_boxes(seed: int, count: int, height: int, width: int, **kwargs) -> np.ndarray:
    """`count` boxes from one generator, int `[count, 4]`."""
    rng = np.random.default_rng(seed)
    return np.array([augment.sample_crop(rng, height, width, **kwargs) for _ in range(count)])


# ------------------------------------------------------------------ sample_crop


@pytest.mark.parametrize(
    "area_range,aspect_range", [((0.3, 1.0), (3 / 4, 4 / 3)), ((0.1, 0.3), (0.5, 2.0))]
)
def test_sample_crop_boxes_respect_bounds(area_range, aspect_range):
    height, width = 240, 320
    top, left, crop_h, crop_w = draw_boxes(
        0, 2000, height, width, area_range=area_range, aspect_range=aspect_range
    ).T
    assert np.all((top >= 0) & (left >= 0) & (crop_h >= 1) & (crop_w >= 1))
    assert np.all((top + crop_h <= height) & (left + crop_w <= width))
    # Sides are rounded, so the unrounded box lay within half a pixel of each side.
    area_low, area_high = (crop_h - 0.5) * (crop_w - 0.5), (crop_h + 0.5) * (crop_w + 0.5)
    assert np.all(area_high >= area_range[0] * height * width)
    assert np.all(area_low <= area_range[1] * height * width)
    assert np.all((crop_w + 0.5) / (crop_h - 0.5) >= aspect_range[0])
    assert np.all((crop_w - 0.5) / (crop_h + 0.5) <= aspect_range[1])


def test_sample_crop_area_is_uniform_and_aspect_log_uniform():
    # Every draw fits in this image, so no draw is rejected and the laws are exact
    # up to the side rounding.
    height = width = 200
    _, _, crop_h, crop_w = draw_boxes(
        1, 4000, height, width, area_range=(0.1, 0.5), aspect_range=(0.5, 2.0)
    ).T
    areas = crop_h * crop_w / (height * width)
    assert scipy.stats.kstest(areas, scipy.stats.uniform(0.1, 0.4).cdf).pvalue > 1e-3
    log_aspects = np.log(crop_w / crop_h)
    uniform_log = scipy.stats.uniform(np.log(0.5), np.log(4.0)).cdf
    assert scipy.stats.kstest(log_aspects, uniform_log).pvalue > 1e-3
    positions = draw_boxes(
        2, 4000, height, width, area_range=(0.25, 0.25), aspect_range=(1.0, 1.0)
    )[:, :2]
    assert np.all(positions <= 100) and np.abs(positions.mean(axis=0) - 50).max() < 2


def test_sample_crop_is_deterministic_given_the_seed():
    np.testing.assert_array_equal(draw_boxes(3, 50, 240, 320), draw_boxes(3, 50, 240, 320))
    assert not np.array_equal(draw_boxes(3, 50, 240, 320), draw_boxes(4, 50, 240, 320))


def test_sample_crop_falls_back_to_a_centre_crop_with_clamped_aspect():
    # A 10x100 strip cannot hold 90% of its area at an aspect ratio of at most 4/3.
    box = augment.sample_crop(np.random.default_rng(0), 10, 100, area_range=(0.9, 1.0))
    assert box == (0, 43, 10, 13)
    box = augment.sample_crop(np.random.default_rng(0), 100, 10, area_range=(0.9, 1.0))
    assert box == (43, 0, 13, 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"area_range": (0.0, 0.5)},
        {"area_range": (0.6, 0.5)},
        {"area_range": (0.5, 1.5)},
        {"aspect_range": (0.0, 1.0)},
        {"aspect_range": (2.0, 1.0)},
        {"max_tries": 0},
    ],
)
def test_sample_crop_rejects_bad_ranges(kwargs):
    with pytest.raises(ValueError):
        augment.sample_crop(np.random.default_rng(0), 10, 10, **kwargs)


# ----------------------------------------------------------------------- resize


@pytest.mark.parametrize(
    "shape,size",
    [
        ((24, 32, 3), (16, 16)),
        ((24, 32, 3), (50, 71)),
        ((240, 320, 3), 128),
        ((7, 5), (3, 11)),
        ((1, 9, 2), (4, 4)),
    ],
)
def test_bilinear_resize_matches_skimage(shape, size):
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    out_size = (size, size) if isinstance(size, int) else size
    expected = skimage.transform.resize(
        image, out_size + shape[2:], order=1, mode="edge", anti_aliasing=False
    )
    result = augment.resize(image, size)
    assert result.dtype == np.float32 and result.shape == out_size + shape[2:]
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_bilinear_resize_of_uint8_keeps_the_value_scale():
    image = uint8_image(0, 30, 40)
    expected = skimage.transform.resize(
        image.astype(np.float64),
        (16, 20),
        order=1,
        mode="edge",
        anti_aliasing=False,
        preserve_range=True,
    )
    np.testing.assert_allclose(augment.resize(image, (16, 20)), expected, atol=1e-3)


@pytest.mark.parametrize(
    "shape,size", [((240, 320), (128, 128)), ((37, 53), (128, 90)), ((100, 7), (13, 200))]
)
def test_nearest_resize_matches_pil_and_keeps_labels(shape, size):
    labels = np.random.default_rng(0).choice([0, 3, 7, 11], size=shape).astype(np.int32)
    result = augment.resize(labels, size, method="nearest")
    expected = np.asarray(Image.fromarray(labels).resize(size[::-1], Image.NEAREST))
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, expected)
    assert set(np.unique(result)) <= {0, 3, 7, 11}


def test_resize_rejects_bad_arguments():
    image = np.zeros((4, 4, 3), np.float32)
    for size in (0, (4, 0), 2.5):
        with pytest.raises(ValueError, match="size"):
            augment.resize(image, size)
    with pytest.raises(ValueError, match="method"):
        augment.resize(image, 2, method="bicubic")
    with pytest.raises(ValueError, match=r"\[h, w\]"):
        augment.resize(np.zeros(4), 2)


def test_crop_and_resize_resizes_the_box_and_checks_it():
    image = random_image(0)
    np.testing.assert_array_equal(
        augment.crop_and_resize(image, (2, 3, 10, 20), 8), augment.resize(image[2:12, 3:23], 8)
    )
    with pytest.raises(ValueError, match="inside"):
        augment.crop_and_resize(image, (20, 0, 10, 10), 8)


def test_flip_mirrors_columns():
    image = random_image(1)
    np.testing.assert_array_equal(augment.flip(image), image[:, ::-1])
    np.testing.assert_array_equal(augment.flip(image)[:, 0], image[:, -1])


# ------------------------------------------------------------------------ colour


@pytest.mark.parametrize("shift", [0.3, -0.05, 0.5, -0.5, 0.0])
def test_adjust_hue_matches_skimage_hsv(shift):
    image = random_image(2)
    hsv = skimage.color.rgb2hsv(image.astype(np.float64))
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    expected = skimage.color.hsv2rgb(hsv)
    result = augment.adjust_hue(image, shift)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_adjust_hue_rejects_shifts_beyond_half_a_turn():
    with pytest.raises(ValueError, match="hue"):
        augment.adjust_hue(random_image(0), 0.6)


@pytest.mark.parametrize("factor", [0.0, 0.5, 0.95, 1.0, 1.8])
def test_adjust_saturation_blends_with_luma(factor):
    image = random_image(3)
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    grey = (0.299 * red + 0.587 * green + 0.114 * blue)[..., None]
    expected = np.clip(factor * image + (1 - factor) * grey, 0, 1)
    np.testing.assert_allclose(augment.adjust_saturation(image, factor), expected, atol=1e-6)


@pytest.mark.parametrize("factor", [0.0, 0.8, 1.0, 1.5])
def test_adjust_brightness_scales_and_clips(factor):
    image = random_image(4)
    result = augment.adjust_brightness(image, factor)
    np.testing.assert_allclose(result, np.minimum(image * factor, 1.0), atol=1e-6)
    assert result.min() >= 0 and result.max() <= 1
    with pytest.raises(ValueError, match="brightness"):
        augment.adjust_brightness(image, -0.1)


def test_color_jitter_brightness_only_scales_by_a_factor_in_range():
    image = 0.1 + 0.7 * random_image(5)
    for seed in range(20):
        result = augment.color_jitter(
            np.random.default_rng(seed), image, brightness=0.2, saturation=(1.0, 1.0), hue=0.0
        )
        ratios = result / image
        assert np.ptp(ratios) < 1e-5 and 0.8 <= ratios.mean() <= 1.2


def test_color_jitter_saturation_only_keeps_luma_and_factor_in_range():
    image = random_image(6)
    luma = image @ np.array([0.299, 0.587, 0.114])
    factors = []
    for seed in range(20):
        result = augment.color_jitter(
            np.random.default_rng(seed), image, brightness=0.0, saturation=(0.5, 0.9), hue=0.0
        )
        np.testing.assert_allclose(result @ np.array([0.299, 0.587, 0.114]), luma, atol=1e-5)
        # result - grey = factor * (image - grey); recover the factor by least squares.
        centred, out_centred = image - luma[..., None], result - luma[..., None]
        factors.append(np.sum(centred * out_centred) / np.sum(centred**2))
    assert 0.5 <= min(factors) and max(factors) <= 0.9 and np.ptp(factors) > 0.1


def test_color_jitter_hue_only_keeps_saturation_and_value():
    image = random_image(7)
    hsv = skimage.color.rgb2hsv(image)
    shifts = []
    for seed in range(20):
        result = augment.color_jitter(
            np.random.default_rng(seed), image, brightness=0.0, saturation=(1.0, 1.0), hue=0.05
        )
        result_hsv = skimage.color.rgb2hsv(result)
        np.testing.assert_allclose(result_hsv[..., 1:], hsv[..., 1:], atol=1e-5)
        coloured = hsv[..., 1] > 0.2
        shift = (result_hsv[..., 0] - hsv[..., 0] + 0.5) % 1.0 - 0.5
        assert np.ptp(shift[coloured]) < 1e-4
        shifts.append(shift[coloured].mean())
    assert max(np.abs(shifts)) <= 0.05 + 1e-5 and np.ptp(shifts) > 0.02


def test_color_jitter_is_deterministic_and_identity_when_disabled():
    image = random_image(8)
    first = augment.color_jitter(np.random.default_rng(0), image)
    np.testing.assert_array_equal(first, augment.color_jitter(np.random.default_rng(0), image))
    assert not np.array_equal(first, augment.color_jitter(np.random.default_rng(1), image))
    np.testing.assert_array_equal(
        augment.color_jitter(np.random.default_rng(0), image, **NO_JITTER), image
    )


def test_normalize_matches_formula():
    image = random_image(9)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    result = augment.normalize(image)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, (image - mean) / std, atol=1e-5)
    np.testing.assert_allclose(
        augment.normalize(image, (0.5,) * 3, (2.0,) * 3), (image - 0.5) / 2, atol=1e-6
    )
    with pytest.raises(ValueError, match="per channel"):
        augment.normalize(image[..., :2])


# ---------------------------------------------------------------- TwoViewAugment


def example(seed: int = 0) -> dict:
    """A CLEVR-sized example with a segmentation and an unrelated field."""
    labels = np.random.default_rng(seed).integers(0, 7, (240, 320)).astype(np.int32)
    return {"image": uint8_image(seed), "segmentation": labels, "index": 5}


def test_two_views_have_the_documented_shapes_and_dtypes():
    ex = example()
    out = TwoViewAugment(size=64)(ex, np.random.default_rng(0))
    for name in ("view_a", "view_b", "image"):
        assert out[name].shape == (64, 64, 3) and out[name].dtype == np.float32
    for name in ("view_a_box", "view_b_box"):
        assert out[name].shape == (4,) and out[name].dtype == np.int32
    for name in ("view_a_flipped", "view_b_flipped"):
        assert out[name].shape == () and out[name].dtype == np.bool_
    assert out["segmentation"].shape == (64, 64) and out["segmentation"].dtype == np.int32
    assert set(np.unique(out["segmentation"])) <= set(np.unique(ex["segmentation"]))
    assert out["index"] == 5 and ex["image"].dtype == np.uint8  # input left untouched
    expected_image = augment.normalize(
        skimage.transform.resize(
            ex["image"] / 255.0, (64, 64), order=1, mode="edge", anti_aliasing=False
        )
    )
    np.testing.assert_allclose(out["image"], expected_image, atol=1e-4)


def test_two_views_are_deterministic_given_the_rng_and_differ_otherwise():
    augment_fn, ex = TwoViewAugment(), example()
    first = augment_fn(ex, np.random.default_rng(0))
    again = augment_fn(ex, np.random.default_rng(0))
    other = augment_fn(ex, np.random.default_rng(1))
    for name in ("view_a", "view_b", "view_a_box", "view_b_box"):
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["view_a"], other["view_a"])
    assert not np.array_equal(first["view_a"], first["view_b"])


def test_flip_mirrors_the_full_image_view():
    # Area 1 at the image's own aspect ratio crops the whole image; no colour change.
    augment_fn = TwoViewAugment(
        size=32, area_range=(1.0, 1.0), aspect_range=(4 / 3, 4 / 3), **NO_JITTER
    )
    seen = set()
    for seed in range(8):
        out = augment_fn(example(seed), np.random.default_rng(seed))
        for name in ("view_a", "view_b"):
            np.testing.assert_array_equal(out[f"{name}_box"], [0, 0, 240, 320])
            flipped = bool(out[f"{name}_flipped"])
            expected = out["image"][:, ::-1] if flipped else out["image"]
            np.testing.assert_allclose(out[name], expected, atol=1e-5)
            seen.add(flipped)
    assert seen == {True, False}
    no_flip = TwoViewAugment(flip=False)
    assert not any(no_flip(example(), np.random.default_rng(s))["view_a_flipped"] for s in range(8))


def test_view_pixels_come_from_the_reported_box():
    # Red encodes the column and green the row, so a jitter-free view reveals where each of
    # its pixels was sampled; compare with half-pixel-centre coordinates inside the box.
    rows, cols = np.meshgrid(np.arange(200), np.arange(250), indexing="ij")
    image = np.stack([cols, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    augment_fn = TwoViewAugment(size=40, **NO_JITTER)
    mean, std = np.array(augment.IMAGENET_MEAN), np.array(augment.IMAGENET_STD)
    for seed in range(6):
        out = augment_fn({"image": image}, np.random.default_rng(seed))
        for name in ("view_a", "view_b"):
            top, left, crop_h, crop_w = out[f"{name}_box"]
            pixels = (out[name] * std + mean) * 255
            x = left + np.clip((np.arange(40) + 0.5) * crop_w / 40 - 0.5, 0, crop_w - 1)
            y = top + np.clip((np.arange(40) + 0.5) * crop_h / 40 - 0.5, 0, crop_h - 1)
            if out[f"{name}_flipped"]:
                x = x[::-1]
            np.testing.assert_allclose(pixels[0, :, 0], x, atol=1e-2)
            np.testing.assert_allclose(pixels[:, 0, 1], y, atol=1e-2)


def test_two_view_augment_runs_in_a_grain_random_map():
    ds = grain.MapDataset.source([example(0), example(1)]).seed(3)
    augmented = ds.random_map(TwoViewAugment(size=16))
    first, again = augmented[1], augmented[1]
    np.testing.assert_array_equal(first["view_a"], again["view_a"])
    assert not np.array_equal(augmented[0]["view_a_box"], first["view_a_box"])


@pytest.mark.parametrize(
    "field,value",
    [
        ("size", 0),
        ("area_range", (0.0, 0.5)),
        ("area_range", (0.6, 0.5)),
        ("area_range", (0.5, 1.2)),
        ("aspect_range", (0.0, 1.0)),
        ("aspect_range", (2.0, 1.0)),
        ("brightness", -0.1),
        ("saturation", (-0.1, 1.0)),
        ("saturation", (1.0, 0.9)),
        ("hue", -0.01),
        ("hue", 0.51),
    ],
)
def test_two_view_augment_rejects_each_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        TwoViewAugment(**{field: value})


def test_two_view_augment_rejects_non_uint8_images():
    with pytest.raises(ValueError, match="uint8"):
        TwoViewAugment()({"image": np.zeros((8, 8, 3), np.float32)}, np.random.default_rng(0))
