"""Tests for the two-view augmentations, against skimage, PIL and explicit formulas."""

import itertools

import grain
import jax
import jax.numpy as jnp
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


# ------------------------------------------------------- crop and resize, on device


def test_crop_and_resize_matches_skimage_on_each_box():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 40, 50, 3), np.uint8)
    boxes = draw_boxes(1, 5, 40, 50, area_range=(0.05, 1.0), aspect_range=(0.3, 3.0))
    boxes = np.concatenate([boxes, [[39, 0, 1, 50]]])  # A one-row box.
    result = np.asarray(jax.jit(augment.crop_and_resize, static_argnums=2)(images, boxes, 24))
    assert result.shape == (6, 24, 24, 3) and result.dtype == np.float32
    for image, (top, left, crop_h, crop_w), got in zip(images, boxes, result):
        crop = image[top : top + crop_h, left : left + crop_w].astype(np.float64)
        expected = skimage.transform.resize(
            crop, (24, 24), order=1, mode="edge", anti_aliasing=False
        )
        np.testing.assert_allclose(got, expected, atol=2e-3)  # 1e-5 of the 0..255 range.


# ------------------------------------------------------------------------ colour


def test_color_jitter_applies_each_images_operations_in_its_order():
    images = np.stack([random_image(s, (6, 7, 3)) for s in range(6)])
    orders = np.array(list(itertools.permutations(range(3))), np.int32)
    factors = np.array([[1.3, 0.5, 0.2]] * 6, np.float32)
    result = np.asarray(augment.color_jitter(jnp.asarray(images), orders, factors))
    operations = (
        lambda x: np.clip(x * 1.3, 0, 1),
        lambda x: np.clip(luma(x) + 0.5 * (x - luma(x)), 0, 1),
        lambda x: hue_shifted(x, 0.2),
    )
    for image, order, got in zip(images.astype(np.float64), orders, result):
        for index in order:
            image = operations[index](image)
        np.testing.assert_allclose(got, image, atol=2e-5)
    assert np.ptp(result.reshape(6, -1), axis=0).max() > 0.1  # The order matters.


def luma(image: np.ndarray) -> np.ndarray:
    """float64 luma `[..., 1]` of RGB `[..., 3]`."""
    return (image @ np.array([0.299, 0.587, 0.114]))[..., None]


def hue_shifted(image: np.ndarray, shift: float) -> np.ndarray:
    """skimage's HSV round trip with the hue rotated by `shift` turns."""
    hsv = skimage.color.rgb2hsv(image)
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    return skimage.color.hsv2rgb(hsv)


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


def draw(augment_fn: TwoViewAugment, examples: list[dict], seed: int = 0) -> dict:
    """The host half on each example (one generator per example), stacked into a batch."""
    drawn = [augment_fn(ex, np.random.default_rng(seed + i)) for i, ex in enumerate(examples)]
    return {k: np.stack([d[k] for d in drawn]) for k in drawn[0] if k != "segmentation"}


def reference_view(image: np.ndarray, params: dict, size: int) -> np.ndarray:
    """float64 view of uint8 `image`: skimage crop-resize, jitter in order, flip, normalise."""
    top, left, crop_h, crop_w = params["box"]
    crop = image[top : top + crop_h, left : left + crop_w] / 255.0
    view = skimage.transform.resize(crop, (size, size), order=1, mode="edge", anti_aliasing=False)
    brightness, saturation, hue = params["jitter"].astype(np.float64)
    operations = (
        lambda x: np.clip(x * brightness, 0, 1),
        lambda x: np.clip(luma(x) + saturation * (x - luma(x)), 0, 1),
        lambda x: np.clip(hue_shifted(x, hue), 0, 1),
    )
    for index in params["order"]:
        view = operations[index](view)
    view = view[:, ::-1] if params["flipped"] else view
    return (view - np.array(augment.IMAGENET_MEAN)) / np.array(augment.IMAGENET_STD)


def test_host_half_draws_the_documented_parameters_and_leaves_the_image():
    ex = example()
    out = TwoViewAugment(size=64)(ex, np.random.default_rng(0))
    assert out["image"] is ex["image"] and out["index"] == 5
    for name in ("view_a", "view_b"):
        assert out[f"{name}_box"].shape == (4,) and out[f"{name}_box"].dtype == np.int32
        assert sorted(out[f"{name}_order"]) == [0, 1, 2] and out[f"{name}_order"].dtype == np.int32
        brightness, saturation, hue = out[f"{name}_jitter"]
        assert out[f"{name}_jitter"].dtype == np.float32
        assert 0.8 <= brightness <= 1.2 and 0.9 <= saturation <= 1.0 and abs(hue) <= 0.05
        assert out[f"{name}_flipped"].shape == () and out[f"{name}_flipped"].dtype == np.bool_
        top, left, crop_h, crop_w = out[f"{name}_box"]
        assert 0 <= top and top + crop_h <= 240 and 0 <= left and left + crop_w <= 320


def test_rendered_views_match_a_float64_reference():
    augment_fn = TwoViewAugment(size=40, brightness=0.4, saturation=(0.5, 1.5), hue=0.3)
    examples = [example(seed) for seed in range(4)]
    batch = draw(augment_fn, examples)
    out = jax.jit(augment_fn.render)(batch)
    for name in ("view_a", "view_b"):
        assert out[name].shape == (4, 40, 40, 3) and out[name].dtype == jnp.float32
        for i, ex in enumerate(examples):
            params = {k: batch[f"{name}_{k}"][i] for k in ("box", "order", "jitter", "flipped")}
            expected = reference_view(ex["image"], params, 40)
            # 3e-4 after normalisation is 7e-5 of the [0, 1] range (float32 hue round trip).
            np.testing.assert_allclose(np.asarray(out[name][i]), expected, atol=3e-4)
    flips = batch["view_a_flipped"].tolist() + batch["view_b_flipped"].tolist()
    assert set(flips) == {True, False}


def test_two_views_are_deterministic_given_the_rng_and_differ_otherwise():
    augment_fn, examples = TwoViewAugment(size=32), [example(0)]
    first, again, other = (draw(augment_fn, examples, seed) for seed in (0, 0, 1))
    views = [augment_fn.render(batch) for batch in (first, again, other)]
    for name in ("view_a", "view_b", "view_a_box", "view_b_box", "view_a_jitter"):
        np.testing.assert_array_equal(views[0][name], views[1][name])
    assert not np.array_equal(views[0]["view_a"], views[2]["view_a"])
    assert not np.array_equal(views[0]["view_a"], views[0]["view_b"])


def test_flip_mirrors_the_full_image_view():
    # Area 1 at the image's own aspect ratio crops the whole image; no colour change.
    augment_fn = TwoViewAugment(
        size=32, area_range=(1.0, 1.0), aspect_range=(4 / 3, 4 / 3), **NO_JITTER
    )
    examples = [example(seed) for seed in range(8)]
    batch = draw(augment_fn, examples)
    out = augment_fn.render(batch)
    whole = np.asarray(augment.crop_and_resize(batch["image"], batch["view_a_box"], 32)) / 255
    whole = augment.normalize(whole.reshape(-1, 32, 3)).reshape(8, 32, 32, 3)
    for name in ("view_a", "view_b"):
        np.testing.assert_array_equal(batch[f"{name}_box"], [[0, 0, 240, 320]] * 8)
        flipped = batch[f"{name}_flipped"]
        expected = np.where(flipped[:, None, None, None], whole[:, :, ::-1], whole)
        np.testing.assert_allclose(out[name], expected, atol=1e-5)
    assert set(batch["view_a_flipped"].tolist() + batch["view_b_flipped"].tolist()) == {True, False}
    no_flip = draw(TwoViewAugment(flip=False), examples)
    assert not no_flip["view_a_flipped"].any() and not no_flip["view_b_flipped"].any()


def test_view_pixels_come_from_the_reported_box():
    # Red encodes the column and green the row, so a jitter-free view reveals where each of
    # its pixels was sampled; compare with half-pixel-centre coordinates inside the box.
    rows, cols = np.meshgrid(np.arange(200), np.arange(250), indexing="ij")
    image = np.stack([cols, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    augment_fn = TwoViewAugment(size=40, **NO_JITTER)
    batch = draw(augment_fn, [{"image": image}] * 6)
    out = augment_fn.render(batch)
    mean, std = np.array(augment.IMAGENET_MEAN), np.array(augment.IMAGENET_STD)
    for name in ("view_a", "view_b"):
        for i in range(6):
            top, left, crop_h, crop_w = batch[f"{name}_box"][i]
            pixels = (np.asarray(out[name][i]) * std + mean) * 255
            x = left + np.clip((np.arange(40) + 0.5) * crop_w / 40 - 0.5, 0, crop_w - 1)
            y = top + np.clip((np.arange(40) + 0.5) * crop_h / 40 - 0.5, 0, crop_h - 1)
            if batch[f"{name}_flipped"][i]:
                x = x[::-1]
            np.testing.assert_allclose(pixels[0, :, 0], x, atol=1e-2)
            np.testing.assert_allclose(pixels[:, 0, 1], y, atol=1e-2)


def test_two_view_augment_runs_in_a_grain_random_map():
    ds = grain.MapDataset.source([example(0), example(1)]).seed(3)
    augmented = ds.random_map(TwoViewAugment(size=16))
    first, again = augmented[1], augmented[1]
    np.testing.assert_array_equal(first["view_a_box"], again["view_a_box"])
    np.testing.assert_array_equal(first["view_a_jitter"], again["view_a_jitter"])
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
