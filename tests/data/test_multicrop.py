"""Tests for the multi-crop (DINO / MoCo v3 / MAE) augmentations, against numpy, scipy,
skimage, PIL and torchvision references."""

import dataclasses
import itertools
import math

import grain
import jax
import numpy as np
import pytest
import scipy.ndimage
import skimage.color
import skimage.transform
import torch
import torchvision.transforms.functional as tvf
from PIL import Image, ImageOps

from ocjax.data import augment, multicrop
from ocjax.data.multicrop import MultiCropAugment

MEAN, STD = np.array(augment.IMAGENET_MEAN), np.array(augment.IMAGENET_STD)
# Every random operation off: a view is a normalised crop.
PLAIN = {
    "jitter_probability": 0.0,
    "grayscale_probability": 0.0,
    "global_blur": (0.0, 0.0),
    "local_blur": 0.0,
    "global_solarize": (0.0, 0.0),
    "local_solarize": 0.0,
}
# PIL's luma (ITU-R 601), which ocjax uses, and torchvision's tensor grayscale weights.
LUMA = np.array([0.299, 0.587, 0.114])
# float32 rounding of the normalisation and of its inverse: "equal" after `unnormalized`.
EXACT = 3e-6


def uint8_images(seed: int, count: int, height: int = 40, width: int = 48) -> list[np.ndarray]:
    """`count` random uint8 RGB images `[height, width, 3]`."""
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8))


def draw(aug: MultiCropAugment, images: list[np.ndarray], seed: int = 0, image: bool = True):
    """The host half on each image (one generator per example), stacked into a batch."""
    drawn = [aug({"image": im}, np.random.default_rng(seed + i)) for i, im in enumerate(images)]
    return {k: np.stack([d[k] for d in drawn]) for k in drawn[0] if image or k != "image"}


def render(aug: MultiCropAugment, batch: dict) -> dict:
    """The device half, jitted, as numpy arrays."""
    return {k: np.asarray(v) for k, v in jax.jit(aug.render)(batch).items()}


def unnormalized(views: np.ndarray) -> np.ndarray:
    """float64 views back in [0, 1]."""
    return views.astype(np.float64) * STD + MEAN


def view_params(batch: dict, group: str, i: int, v: int) -> dict:
    """The parameters of view `v` of example `i` in `group`."""
    return {key: batch[f"{group}_{key}"][i, v] for key in multicrop.PARAMETERS}


CROP_AND_RESIZE = jax.jit(augment.crop_and_resize, static_argnums=2)


def crops(batch: dict, group: str, size: int) -> np.ndarray:
    """float64 `[b, n, size, size, 3]` crops (flip included) of a group, before any colour
    operation: `augment.crop_and_resize`, tested against skimage in test_augment."""
    boxes, flipped = batch[f"{group}_box"], batch[f"{group}_flipped"]
    b, n = flipped.shape
    images = np.repeat(batch["image"], n, axis=0) / 255.0
    out = CROP_AND_RESIZE(images, boxes.reshape(-1, 4), size, flipped.reshape(-1))
    return np.asarray(out, np.float64).reshape(b, n, size, size, 3)


def luma(image: np.ndarray) -> np.ndarray:
    """float64 PIL/ITU-R 601 luma `[..., 1]`."""
    return (image @ LUMA)[..., None]


def torchvision_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """torchvision's tensor `adjust_contrast` of an `[h, w, 3]` float64 image."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return tvf.adjust_contrast(tensor, float(factor)).numpy().transpose(1, 2, 0)


def contrast_weight_bound(image: np.ndarray, factor: float) -> float:
    """Largest difference between ocjax's contrast (PIL's 0.299 red weight in the mean luma)
    and torchvision's tensor one (0.2989): `|1 - factor| * 1e-4 * mean(red)`."""
    return abs(1 - factor) * 1e-4 * float(image[..., 0].mean())


def hue_shifted(image: np.ndarray, shift: float) -> np.ndarray:
    """skimage's HSV round trip with the hue rotated by `shift` turns, clipped."""
    hsv = skimage.color.rgb2hsv(image)
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    return np.clip(skimage.color.hsv2rgb(hsv), 0, 1)


def scipy_blur(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Separable Gaussian of `[h, w, c]` with scipy, truncated at `radius`, edge padding."""
    for axis in (0, 1):
        image = scipy.ndimage.gaussian_filter1d(
            image, sigma, axis=axis, mode="nearest", truncate=radius / sigma
        )
    return image


def reference_view(image: np.ndarray, params: dict, size: int, radius: int):
    """float64 view in [0, 1] of uint8 `image` from its parameters, composed from the
    references in DINO's order, and the values before solarization."""
    top, left, crop_h, crop_w = params["box"]
    crop = image[top : top + crop_h, left : left + crop_w] / 255.0
    view = skimage.transform.resize(crop, (size, size), order=1, mode="edge", anti_aliasing=False)
    view = view[:, ::-1] if params["flipped"] else view
    if params["jittered"]:
        brightness, contrast, saturation, hue = params["jitter"].astype(np.float64)
        operations = (
            lambda x: np.clip(x * brightness, 0, 1),
            lambda x: torchvision_contrast(x, contrast),
            lambda x: np.clip(luma(x) + saturation * (x - luma(x)), 0, 1),
            lambda x: hue_shifted(x, hue),
        )
        for index in params["order"]:
            view = operations[index](view)
    if params["grayscale"]:
        view = np.repeat(luma(view), 3, axis=-1)
    if params["sigma"] > 0:
        view = scipy_blur(view, float(params["sigma"]), radius)
    before = view
    if params["solarized"]:
        view = np.where(view >= 128 / 255, 1 - view, view)
    return view, before


def assert_binomial(flags: np.ndarray, probability: float, what: str) -> None:
    """The count of set flags is within 5 binomial standard deviations of its mean."""
    flags = np.asarray(flags, bool).ravel()
    n, count = flags.size, int(flags.sum())
    if probability in (0.0, 1.0):
        assert count == n * probability, f"{what}: {count}/{n} set, expected p={probability}"
        return
    spread = 5 * math.sqrt(n * probability * (1 - probability))
    assert abs(count - n * probability) <= spread, f"{what}: {count}/{n}, p={probability}"


# ------------------------------------------------------------------------ sampler

HEIGHT, WIDTH = 240, 320
CUSTOM = {
    "global_count": 3,
    "global_area": (0.2, 0.6),
    "local_count": 2,
    "local_area": (0.1, 0.2),
    "flip": False,
    "jitter_probability": 0.3,
    "brightness": 0.1,
    "contrast": 0.0,
    "saturation": 0.5,
    "hue": 0.3,
    "grayscale_probability": 0.6,
    "global_blur": (0.25, 0.0, 1.0),
    "local_blur": 0.9,
    "blur_sigma": (0.5, 1.0),
    "global_solarize": (0.7, 1.0, 0.0),
    "local_solarize": 0.4,
}


@pytest.fixture(scope="module", params=["dino", "custom"])
def sampled(request):
    """1500 draws of the parameters of one image, from DINO's recipe and a custom one."""
    aug = (
        MultiCropAugment.dino(local_count=4)
        if request.param == "dino"
        else MultiCropAugment(**CUSTOM)
    )
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    seed = 0 if request.param == "dino" else 10_000
    return aug, draw(aug, [image] * 1500, seed=seed, image=False)


def test_sampler_boxes_lie_inside_the_image_with_areas_in_each_groups_range(sampled):
    aug, batch = sampled
    for group, area_range in (("global", aug.global_area), ("local", aug.local_area)):
        boxes = batch[f"{group}_box"]
        assert boxes.dtype == np.int32 and boxes.shape[1:] == (getattr(aug, f"{group}_count"), 4)
        top, left, crop_h, crop_w = boxes.reshape(-1, 4).T
        assert np.all((top >= 0) & (left >= 0) & (crop_h >= 1) & (crop_w >= 1))
        assert np.all((top + crop_h <= HEIGHT) & (left + crop_w <= WIDTH))
        # `sample_crop` rounds the sides: the unrounded box was within half a pixel of each.
        area_low = (crop_h - 0.5) * (crop_w - 0.5) / (HEIGHT * WIDTH)
        area_high = (crop_h + 0.5) * (crop_w + 0.5) / (HEIGHT * WIDTH)
        assert np.all(area_high >= area_range[0]) and np.all(area_low <= area_range[1])
        assert np.all((crop_w + 0.5) / (crop_h - 0.5) >= aug.aspect_range[0])
        assert np.all((crop_w - 0.5) / (crop_h + 0.5) <= aug.aspect_range[1])
        areas = crop_h * crop_w / (HEIGHT * WIDTH)
        width = area_range[1] - area_range[0]
        assert areas.min() < area_range[0] + 0.05 * width  # The whole range is used.
        assert areas.max() > area_range[1] - 0.05 * width


def test_sampler_draws_each_operation_with_its_probability(sampled):
    aug, batch = sampled
    for group in ("global", "local"):
        count = getattr(aug, f"{group}_count")
        assert_binomial(batch[f"{group}_flipped"], 0.5 if aug.flip else 0.0, f"{group} flip")
        assert_binomial(batch[f"{group}_jittered"], aug.jitter_probability, f"{group} jitter")
        assert_binomial(batch[f"{group}_grayscale"], aug.grayscale_probability, f"{group} grey")
        blur = aug.global_blur if group == "global" else (aug.local_blur,) * count
        solarize = aug.global_solarize if group == "global" else (aug.local_solarize,) * count
        sigmas, solarized = batch[f"{group}_sigma"], batch[f"{group}_solarized"]
        for view in range(count):  # Each view's own probability.
            assert_binomial(sigmas[:, view] > 0, blur[view], f"{group} {view} blur")
            assert_binomial(solarized[:, view], solarize[view], f"{group} {view} solarize")
        drawn = sigmas[sigmas > 0]
        assert drawn.dtype == np.float32
        assert drawn.min() >= aug.blur_sigma[0] and drawn.max() <= aug.blur_sigma[1]
        assert abs(drawn.mean() - np.mean(aug.blur_sigma)) < 0.05 * np.ptp(aug.blur_sigma)
        for key in ("flipped", "jittered", "grayscale", "solarized"):
            assert batch[f"{group}_{key}"].dtype == np.bool_


def test_sampler_draws_torchvision_colour_jitter_factors_and_orders(sampled):
    aug, batch = sampled
    factors = np.concatenate([batch["global_jitter"], batch["local_jitter"]], 1).reshape(-1, 4)
    orders = np.concatenate([batch["global_order"], batch["local_order"]], 1).reshape(-1, 4)
    assert factors.dtype == np.float32 and orders.dtype == np.int32
    strengths = (aug.brightness, aug.contrast, aug.saturation)
    for k, strength in enumerate(strengths):
        low, high = max(0.0, 1 - strength), 1 + strength
        assert factors[:, k].min() >= low - 1e-6 and factors[:, k].max() <= high + 1e-6
        assert abs(factors[:, k].mean() - (low + high) / 2) <= 0.05 * max(strength, 1e-3)
    assert np.abs(factors[:, 3]).max() <= aug.hue + 1e-6
    assert abs(factors[:, 3].mean()) <= 0.05 * aug.hue
    np.testing.assert_array_equal(np.sort(orders, axis=1), [[0, 1, 2, 3]] * len(orders))
    for position in range(4):  # A uniform permutation puts each operation anywhere.
        for k in range(4):
            assert_binomial(orders[:, position] == k, 0.25, f"operation {k} at {position}")


def test_dino_recipe_always_blurs_the_first_global_view_and_never_solarizes_it():
    aug = MultiCropAugment.dino(local_count=2)
    batch = draw(aug, [np.zeros((60, 80, 3), np.uint8)] * 300, image=False)
    assert np.all(batch["global_sigma"][:, 0] > 0) and not batch["global_solarized"][:, 0].any()
    assert batch["global_solarized"][:, 1].any() and not batch["local_solarized"].any()


def test_draws_are_a_function_of_the_generator_and_independent_of_probabilities():
    images = uint8_images(0, 3)
    aug = MultiCropAugment.dino(size=32, local_count=2)
    first, again, other = (draw(aug, images, seed) for seed in (0, 0, 10))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["global_box"], other["global_box"])
    # Every draw is made whatever the probabilities, so they leave the other draws alone.
    plain = draw(dataclasses.replace(aug, **PLAIN), images, 0)
    for key in ("global_box", "local_box", "global_order", "local_jitter"):
        np.testing.assert_array_equal(first[key], plain[key])
    assert not plain["global_jittered"].any() and not (plain["local_sigma"] > 0).any()


def test_multicrop_runs_in_a_grain_random_map():
    ds = grain.MapDataset.source([{"image": image} for image in uint8_images(1, 2)]).seed(3)
    augmented = ds.random_map(MultiCropAugment.dino(size=16, local_count=2))
    first, again = augmented[1], augmented[1]
    np.testing.assert_array_equal(first["local_box"], again["local_box"])
    np.testing.assert_array_equal(first["global_jitter"], again["global_jitter"])
    assert not np.array_equal(augmented[0]["global_box"], first["global_box"])


def test_recipes_carry_the_papers_numbers():
    dino = MultiCropAugment.dino()
    assert (dino.global_count, dino.global_size, dino.global_area) == (2, 224, (0.4, 1.0))
    assert (dino.local_count, dino.local_size, dino.local_area) == (10, 96, (0.05, 0.4))
    assert (dino.brightness, dino.contrast, dino.saturation, dino.hue) == (0.4, 0.4, 0.2, 0.1)
    assert (dino.jitter_probability, dino.grayscale_probability) == (0.8, 0.2)
    assert (dino.global_blur, dino.local_blur, dino.blur_sigma) == ((1.0, 0.1), 0.5, (0.1, 2.0))
    assert (dino.global_solarize, dino.local_solarize) == ((0.0, 0.2), 0.0)
    assert dino == MultiCropAugment(local_count=10)  # The defaults are DINO's recipe.
    assert MultiCropAugment.dino(112, local_count=6).local_size == 48
    moco = MultiCropAugment.mocov3(size=160)
    assert moco == MultiCropAugment(global_size=160, global_area=(0.08, 1.0))
    mae = MultiCropAugment.mae()
    assert (mae.global_count, mae.global_area, mae.local_count) == (1, (0.2, 1.0), 0)
    assert mae.jitter_probability == mae.grayscale_probability == 0.0
    assert mae.global_blur == mae.global_solarize == (0.0,) and mae.flip
    assert MultiCropAugment.mae(global_area=(0.5, 1.0)).global_area == (0.5, 1.0)
    # A recipe stored in a config comes back with lists: it is rebuilt equal and hashable.
    fields = dataclasses.asdict(dino)
    listed = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    assert MultiCropAugment(**listed) == dino and hash(MultiCropAugment(**listed)) == hash(dino)


# --------------------------------------------------------------------------- render


def test_render_shapes_dtypes_and_jit_for_dino_and_mae():
    images = uint8_images(2, 3, 36, 44)
    aug = MultiCropAugment.dino(size=24, local_count=3, local_size=12)
    batch = {**draw(aug, images), "index": np.arange(3)}
    out = render(aug, batch)
    assert out["global_views"].shape == (3, 2, 24, 24, 3)
    assert out["local_views"].shape == (3, 3, 12, 12, 3)
    assert out["global_views"].dtype == out["local_views"].dtype == np.float32
    np.testing.assert_array_equal(out["index"], np.arange(3))
    assert np.isfinite(out["global_views"]).all() and np.isfinite(out["local_views"]).all()
    # MAE: one view, no local views, nothing but the normalised flipped crop.
    mae = MultiCropAugment.mae(size=24)
    batch = draw(mae, images)
    out = render(mae, batch)
    assert set(out) == set(batch) | {"global_views"} and "local_box" not in batch
    assert out["global_views"].shape == (3, 1, 24, 24, 3)
    np.testing.assert_allclose(
        unnormalized(out["global_views"]), crops(batch, "global", 24), atol=EXACT
    )


def test_grayscale_is_the_601_luma_and_matches_torchvision_up_to_its_red_weight():
    aug = MultiCropAugment(
        global_size=20, local_count=2, local_size=12, **{**PLAIN, "grayscale_probability": 0.5}
    )
    batch = draw(aug, uint8_images(3, 6))
    out = render(aug, batch)
    for group, size in (("global", 20), ("local", 12)):
        flags, views = batch[f"{group}_grayscale"], unnormalized(out[f"{group}_views"])
        assert set(flags.ravel().tolist()) == {True, False}
        for base, view, grey in zip(
            crops(batch, group, size).reshape(-1, size, size, 3),
            views.reshape(-1, size, size, 3),
            flags.ravel(),
        ):
            if not grey:
                np.testing.assert_allclose(view, base, atol=EXACT)
                continue
            np.testing.assert_allclose(view, np.repeat(luma(base), 3, -1), atol=EXACT)
            tensor = torch.from_numpy(np.ascontiguousarray(base.transpose(2, 0, 1)))
            expected = tvf.rgb_to_grayscale(tensor, num_output_channels=3).numpy()
            # torchvision's tensor red weight is 0.2989, PIL's (and ocjax's) 0.299.
            bound = 1e-4 * base[..., :1] + EXACT
            assert np.all(np.abs(view - expected.transpose(1, 2, 0)) <= bound)


IDENTITY = {  # A square power-of-two image cropped whole at its own size: the image itself.
    "global_size": 32,
    "global_area": (1.0, 1.0),
    "aspect_range": (1.0, 1.0),
    "local_count": 1,
    "local_size": 32,
    "local_area": (1.0, 1.0),
}


def identity_images() -> list[np.ndarray]:
    """Random 32x32 uint8 images with the values around 128 and the extremes."""
    images = uint8_images(4, 4, 32, 32)
    for image in images:
        image[0, :5] = [[127] * 3, [128] * 3, [129] * 3, [0] * 3, [255] * 3]
    return images


def test_solarize_matches_pil_on_uint8():
    # Each view is the (flipped) image, so PIL's solarize of the uint8 image is the reference.
    images = identity_images()
    changes = {"global_solarize": (1.0, 0.0), "local_solarize": 1.0}
    aug = MultiCropAugment(**IDENTITY, **{**PLAIN, **changes})
    batch = draw(aug, images)
    out = render(aug, batch)
    for i, image in enumerate(images):
        for group, view in (("global", 0), ("global", 1), ("local", 0)):
            source = image[:, ::-1] if batch[f"{group}_flipped"][i, view] else image
            if batch[f"{group}_solarized"][i, view]:
                source = np.asarray(ImageOps.solarize(Image.fromarray(source), threshold=128))
            # PIL is exact on uint8; here so is ocjax (well within PIL's 1/255 step).
            got = unnormalized(out[f"{group}_views"][i, view])
            np.testing.assert_allclose(got, source / 255.0, atol=EXACT)
    assert batch["global_solarized"][:, 0].all() and not batch["global_solarized"][:, 1].any()


def test_grayscale_matches_pils_convert_l_on_uint8():
    # DINO's RandomGrayscale runs PIL's convert("L") (rounded to uint8) on its PIL images.
    images = identity_images()
    aug = MultiCropAugment(**IDENTITY, **{**PLAIN, "grayscale_probability": 1.0})
    batch = draw(aug, images)
    out = render(aug, batch)
    for i, image in enumerate(images):
        source = image[:, ::-1] if batch["global_flipped"][i, 0] else image
        grey = np.asarray(Image.fromarray(source).convert("L"), np.float64)[..., None] / 255
        got = unnormalized(out["global_views"][i, 0])
        np.testing.assert_allclose(got, np.repeat(grey, 3, -1), atol=0.5 / 255 + EXACT)


def test_blur_matches_scipy_and_leaves_unblurred_views_alone():
    aug = MultiCropAugment(
        global_size=24,
        local_count=2,
        local_size=10,
        **{**PLAIN, "global_blur": (1.0, 0.5), "local_blur": 1.0},
    )
    assert aug.blur_radius == 6  # ceil(3 * 2.0): wider than the 10-pixel local views.
    batch = draw(aug, uint8_images(5, 5))
    out = render(aug, batch)
    for group, size in (("global", 24), ("local", 10)):
        sigmas = batch[f"{group}_sigma"].ravel()
        assert (sigmas == 0).any() or group == "local"
        for base, view, sigma in zip(
            crops(batch, group, size).reshape(-1, size, size, 3),
            unnormalized(out[f"{group}_views"]).reshape(-1, size, size, 3),
            sigmas,
        ):
            expected = scipy_blur(base, float(sigma), 6) if sigma > 0 else base
            np.testing.assert_allclose(view, expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 9, 11, 3), (4, 3, 5, 2)])
def test_gaussian_blur_matches_scipy_at_each_sigma_and_is_exact_where_off(shape):
    images = np.random.default_rng(6).random(shape).astype(np.float32)
    sigmas = np.array([0.1, 0.0, 1.3, 2.0], np.float32)
    result = np.asarray(jax.jit(multicrop.gaussian_blur, static_argnums=2)(images, sigmas, 6))
    for image, sigma, got in zip(images.astype(np.float64), sigmas, result):
        if sigma > 0:
            np.testing.assert_allclose(got, scipy_blur(image, float(sigma), 6), atol=1e-5)
    np.testing.assert_array_equal(result[1], images[1])  # Bit for bit.
    assert np.abs(result[3] - images[3]).max() > 0.05  # It does blur.


def test_contrast_matches_torchvision_where_the_jitter_applies():
    aug = MultiCropAugment(
        global_size=20,
        local_count=2,
        local_size=12,
        **{**PLAIN, "jitter_probability": 0.5, "brightness": 0.0, "saturation": 0.0, "hue": 0.0},
    )
    batch = draw(aug, uint8_images(7, 5))
    out = render(aug, batch)
    for group, size in (("global", 20), ("local", 12)):
        factors = batch[f"{group}_jitter"][..., 1].ravel()
        applied = batch[f"{group}_jittered"].ravel()
        assert np.ptp(factors[applied]) > 0.2 and not applied.all()
        for base, view, factor, jittered in zip(
            crops(batch, group, size).reshape(-1, size, size, 3),
            unnormalized(out[f"{group}_views"]).reshape(-1, size, size, 3),
            factors,
            applied,
        ):
            if not jittered:
                np.testing.assert_allclose(view, base, atol=EXACT)
                continue
            expected = torchvision_contrast(base, factor)
            atol = 1e-5 + contrast_weight_bound(base, factor)  # Below 3e-5 here.
            np.testing.assert_allclose(view, expected, atol=atol)


def test_color_jitter_applies_each_views_four_operations_in_its_order():
    images = np.random.default_rng(8).random((24, 6, 7, 3)).astype(np.float32)
    orders = np.array(list(itertools.permutations(range(4))), np.int32)
    factors = np.array([[1.3, 0.6, 1.5, 0.2]] * 24, np.float32)
    result = np.asarray(jax.jit(multicrop.color_jitter)(images, orders, factors))
    operations = (
        lambda x: np.clip(x * 1.3, 0, 1),
        lambda x: np.clip(luma(x).mean() + 0.6 * (x - luma(x).mean()), 0, 1),
        lambda x: np.clip(luma(x) + 1.5 * (x - luma(x)), 0, 1),
        lambda x: hue_shifted(x, 0.2),
    )
    for image, order, got in zip(images.astype(np.float64), orders, result):
        for index in order:
            image = operations[index](image)
        np.testing.assert_allclose(got, image, atol=1e-5)
    assert np.ptp(result.reshape(24, -1), axis=0).max() > 0.1  # The order matters.


@pytest.mark.parametrize("grey", [1.0, 0.0])
def test_full_view_with_every_operation_on_matches_the_composed_references(grey):
    forced = {
        "jitter_probability": 1.0,
        "hue": 0.3,
        "grayscale_probability": grey,
        "global_blur": (1.0, 1.0),
        "local_blur": 1.0,
        "global_solarize": (1.0, 1.0),
        "local_solarize": 1.0,
    }
    aug = MultiCropAugment.dino(size=20, local_count=2, local_size=12, **forced)
    images = uint8_images(9, 3)
    batch = draw(aug, images)
    out = render(aug, batch)
    masked = total = 0
    for group, size in (("global", 20), ("local", 12)):
        views = unnormalized(out[f"{group}_views"])
        for i, v in itertools.product(range(3), range(views.shape[1])):
            params = view_params(batch, group, i, v)
            assert params["jittered"] and params["sigma"] > 0 and params["solarized"]
            assert params["grayscale"] == bool(grey)
            expected, before = reference_view(images[i], params, size, aug.blur_radius)
            # Pixels within 2e-4 of the threshold may fall on either side of it.
            clear = np.abs(before - 128 / 255) > 2e-4
            masked, total = masked + (~clear).sum(), total + clear.size
            np.testing.assert_allclose(views[i, v][clear], expected[clear], atol=1e-4)
    assert masked < 0.01 * total
    assert batch["global_flipped"].any() and not batch["global_flipped"].all()


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "field,value",
    [
        ("global_count", 0),
        ("local_count", -1),
        ("global_size", 0),
        ("local_size", 2.5),
        ("global_area", (0.0, 0.5)),
        ("local_area", (0.5, 0.2)),
        ("aspect_range", (2.0, 1.0)),
        ("brightness", -0.1),
        ("contrast", -1.0),
        ("saturation", -0.2),
        ("hue", 0.6),
        ("jitter_probability", 1.5),
        ("grayscale_probability", -0.1),
        ("global_blur", (1.0,)),
        ("global_blur", 0.5),
        ("global_blur", (1.0, 1.2)),
        ("local_blur", 2.0),
        ("blur_sigma", (0.0, 2.0)),
        ("blur_sigma", (2.0, 1.0)),
        ("global_solarize", (0.0, 0.2, 0.2)),
        ("local_solarize", -0.5),
    ],
)
def test_bad_fields_raise_one_message_naming_the_field_and_the_fix(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must .*fix {field}"):
        MultiCropAugment(**{field: value})


def test_per_view_probabilities_must_match_the_global_count():
    with pytest.raises(ValueError, match=r"one probability per global view \(global_count=3"):
        MultiCropAugment(global_count=3)
    MultiCropAugment(global_count=3, global_blur=[1, 0, 0.5], global_solarize=(0, 0, 0))


def test_rejects_non_uint8_images():
    with pytest.raises(ValueError, match="uint8"):
        MultiCropAugment()({"image": np.zeros((8, 8, 3), np.float32)}, np.random.default_rng(0))
