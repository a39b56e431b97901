"""Multi-crop views for self-supervised pretraining: DINO, MoCo v3 and MAE augmentations.

Same two-phase design as `ocjax.data.augment.TwoViewAugment`. The host draws every view's
parameters with numpy, per example, inside a grain `random_map` (so the views are a pure
function of `(seed, step)`); the train step renders the pixels of the whole batch on
device, inside `jax.jit`::

    ds = grain.MapDataset.source(source).seed(seed).random_map(crops)  # host: parameters
    batch = crops.render(batch)                                        # device: pixels

Each view is, in DINO's order (facebookresearch/dino, `DataAugmentationDINO`):

    normalize(solarize(blur(grayscale(jitter(flip(resize(crop(image / 255, box))))))))

with every operation after the flip applied only where the view's draw says so. Crops,
boxes `(top, left, crop_h, crop_w)`, half-pixel bilinear resizing and the flip folded into
the sampling are `augment`'s (`sample_crop`, `crop_and_resize`); the later operations
commute with a left-right flip (per-pixel operations, an image-wide mean, a symmetric
blur kernel with symmetric padding), so folding the flip into the crop changes nothing.

The operations, on float32 images in [0, 1]:
  * colour jitter = torchvision `ColorJitter(brightness, contrast, saturation, hue)`: factors
    ~ U[max(0, 1 - x), 1 + x], hue shift ~ U[-hue, hue] turns, the four operations
    (`ocjax.data.colour`) in a random order per view; an operation whose strength is 0 is
    skipped, as torchvision skips it. Applied with probability `jitter_probability`
    (torchvision `RandomApply(..., p)`).
  * grayscale = `RandomGrayscale`: the ITU-R 601 luma (`colour.luma`, weights 0.299, 0.587,
    0.114 = PIL's `convert("L")`, which is what DINO runs on its PIL images) in all three
    channels.
  * blur = a separable Gaussian of standard deviation `sigma` pixels of the output view
    (DINO: PIL `GaussianBlur(radius=sigma)`, sigma ~ U[0.1, 2]), truncated at a kernel
    radius of `ceil(3 * blur_sigma[1])` pixels and normalised to sum 1, with EDGE padding
    (the border pixel repeated, scipy's mode "nearest", as PIL's blur extends the border).
    A view with sigma 0 is not blurred and is left exactly as it is.
  * solarize = PIL `ImageOps.solarize(threshold=128)`: pixels >= 128/255 become `1 - x`.
  * normalize = `colour.imagenet_normalize`.

Known deviations from the reference implementations (all PIL-on-uint8): resizing is
bilinear without antialiasing (DINO and MAE resize bicubically, MoCo v3 bilinearly, with
PIL's antialiasing); the blur is an exact truncated Gaussian (PIL approximates it with
repeated box blurs); every operation works in float32 without rounding to uint8 between
steps (PIL's contrast also rounds the mean luma to an integer); the random numbers come
from numpy, so only their distributions match torch's.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ocjax.data import colour
from ocjax.data.augment import _check_range, crop_and_resize, sample_crop

JITTER_OPERATIONS = ("brightness", "contrast", "saturation", "hue")
SOLARIZE_THRESHOLD = 128 / 255

# Per-view keys `__call__` adds for each group, with their per-view shape and dtype.
PARAMETERS = {
    "box": ((4,), np.int32),
    "flipped": ((), np.bool_),
    "jittered": ((), np.bool_),
    "order": ((4,), np.int32),
    "jitter": ((4,), np.float32),
    "grayscale": ((), np.bool_),
    "sigma": ((), np.float32),
    "solarized": ((), np.bool_),
}


def color_jitter(
    images: jax.Array,
    order: jax.Array,
    factors: jax.Array,
    active: tuple[bool, bool, bool, bool] = (True, True, True, True),
) -> jax.Array:
    """torchvision's `ColorJitter` on `[b, h, w, 3]` in [0, 1]: each image's operations in
    its `order [b, 4]` (a permutation of 0 brightness, 1 contrast, 2 saturation, 3 hue) with
    `factors [b, 4]` (brightness, contrast and saturation factors, hue shift in turns).
    An operation whose `active` entry is False (a strength of 0) is the identity."""
    factors = jnp.asarray(factors, jnp.float32)
    adjust = (
        colour.adjust_brightness,
        colour.adjust_contrast,
        colour.adjust_saturation,
        colour.adjust_hue,
    )
    operations = [
        (lambda x, k=k: adjust[k](x, factors[:, k])) if active[k] else (lambda x: x)
        for k in range(4)
    ]
    order = jnp.asarray(order, jnp.int32)

    def step(position: int, images: jax.Array) -> jax.Array:
        # A loop over the four positions keeps the program (and its compile time) small.
        which = jax.lax.dynamic_index_in_dim(order, position, axis=1).reshape(-1, 1, 1, 1)
        return jnp.select([which == k for k in range(4)], [op(images) for op in operations])

    return jax.lax.fori_loop(0, 4, step, jnp.asarray(images, jnp.float32))


def grayscale(images: jax.Array, flags: jax.Array) -> jax.Array:
    """`images [b, h, w, 3]` with the luma (`colour.luma`) in all three channels where
    `flags [b]` is set; the others are left as they are."""
    grey = jnp.broadcast_to(colour.luma(images), images.shape)
    return jnp.where(jnp.asarray(flags).reshape(-1, 1, 1, 1), grey, images)


def solarize(images: jax.Array, flags: jax.Array) -> jax.Array:
    """PIL's `ImageOps.solarize` at 128 on `[b, h, w, 3]` in [0, 1] where `flags [b]` is set:
    values >= 128/255 become `1 - x`."""
    flags = jnp.asarray(flags).reshape(-1, 1, 1, 1)
    threshold = jnp.float32(SOLARIZE_THRESHOLD)
    return jnp.where(flags & (images >= threshold), 1.0 - images, images)


def gaussian_weights(sigmas: jax.Array, radius: int) -> jax.Array:
    """Normalised Gaussian taps `[b, 2 * radius + 1]` at offsets `-radius..radius` for
    `sigmas [b]` (> 0; a sigma of 0 gives the identity kernel)."""
    sigmas = jnp.asarray(sigmas, jnp.float32)[:, None]
    offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    safe = jnp.where(sigmas > 0, sigmas, 1.0)
    weights = jnp.exp(-0.5 * jnp.square(offsets / safe))
    weights = weights / jnp.sum(weights, axis=1, keepdims=True)
    return jnp.where(sigmas > 0, weights, (offsets == 0).astype(jnp.float32))


def gaussian_blur(images: jax.Array, sigmas: jax.Array, radius: int) -> jax.Array:
    """Separable Gaussian blur of `[b, h, w, c]` with each image's `sigmas [b]` (pixels),
    taps truncated at `radius` (static), edge padding (scipy's `gaussian_filter1d` with
    `mode="nearest"`, `truncate=radius / sigma`, on both axes). Images with sigma <= 0 are
    returned unchanged, bit for bit (jit-able)."""
    images = jnp.asarray(images, jnp.float32)
    weights = gaussian_weights(sigmas, radius)
    blurred = images
    for axis in (1, 2):
        padding = [(0, 0)] * images.ndim
        padding[axis] = (radius, radius)
        padded = jnp.pad(blurred, padding, mode="edge")
        length = images.shape[axis]

        def tap(k: int, total: jax.Array, padded=padded, length=length, axis=axis) -> jax.Array:
            # A loop over the taps keeps the program (and its compile time) small.
            shifted = jax.lax.dynamic_slice_in_dim(padded, k, length, axis=axis)
            weight = jax.lax.dynamic_index_in_dim(weights, k, axis=1, keepdims=False)
            return total + weight.reshape(-1, 1, 1, 1) * shifted

        blurred = jax.lax.fori_loop(0, 2 * radius + 1, tap, jnp.zeros_like(images))
    blur = (jnp.asarray(sigmas) > 0).reshape(-1, 1, 1, 1)
    return jnp.where(blur, blurred, images)


def _check_count(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}; fix {name}.")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}; fix {name}.")


def _check_strength(name: str, value: float, high: float = np.inf) -> None:
    if not 0.0 <= value <= high:
        raise ValueError(
            f"{name} must be in [0, {high}] (a jitter strength, as torchvision's ColorJitter "
            f"takes it), got {value!r}; fix {name}."
        )


@dataclasses.dataclass(frozen=True)
class MultiCropAugment:
    """`global_count` views at `global_size` and `local_count` views at `local_size` of an
    example's image, each with its own crop, flip, colour jitter, grayscale, blur and
    solarization draws (module doc). Calling it draws the parameters (host); `render`
    makes the pixels (device). The defaults are DINO's ImageNet recipe with no local
    crops; `dino`, `mocov3` and `mae` give each paper's recipe.

    Fields: `*_area` is the random-resized-crop area range (fractions of the image),
    `aspect_range` its aspect range (`crop_w / crop_h`, log-uniform); `flip` flips each view
    with probability 1/2; `jitter_probability`, `brightness`, `contrast`, `saturation`,
    `hue` are torchvision's `RandomApply([ColorJitter(...)], p)`; `grayscale_probability` is
    `RandomGrayscale(p)`; `global_blur` (one probability per global view) and `local_blur`
    give the blur probabilities and `blur_sigma` the range of its U[min, max] sigma in
    pixels of the output view; `global_solarize` (one per global view) and
    `local_solarize` the solarization probabilities.
    """

    global_count: int = 2
    global_size: int = 224
    global_area: tuple[float, float] = (0.4, 1.0)
    local_count: int = 0
    local_size: int = 96
    local_area: tuple[float, float] = (0.05, 0.4)
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter_probability: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_probability: float = 0.2
    global_blur: tuple[float, ...] = (1.0, 0.1)
    local_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    global_solarize: tuple[float, ...] = (0.0, 0.2)
    local_solarize: float = 0.0

    def __post_init__(self):
        """Validates every field; raises ValueError naming the field, its valid range and
        the fix. Counts and sizes are stored as ints, ranges and per-view probabilities as
        tuples of floats (so a recipe read back from a config, lists and all, is hashable,
        as `jax.jit` of `render` needs, and equal to the original)."""
        counts = (("global_count", 1), ("local_count", 0), ("global_size", 1), ("local_size", 1))
        for name, low in counts:
            _check_count(name, getattr(self, name), low)
            object.__setattr__(self, name, int(getattr(self, name)))
        _check_range("global_area", self.global_area, 0.0, 1.0, low_inclusive=False)
        _check_range("local_area", self.local_area, 0.0, 1.0, low_inclusive=False)
        _check_range("aspect_range", self.aspect_range, 0.0, np.inf, low_inclusive=False)
        _check_range("blur_sigma", self.blur_sigma, 0.0, np.inf, low_inclusive=False)
        for name in ("global_area", "local_area", "aspect_range", "blur_sigma"):
            object.__setattr__(self, name, tuple(float(x) for x in getattr(self, name)))
        if not np.isfinite(self.blur_sigma[1]):
            raise ValueError(f"blur_sigma must be finite, got {self.blur_sigma!r}; fix blur_sigma.")
        for name in ("brightness", "contrast", "saturation"):
            _check_strength(name, getattr(self, name))
        _check_strength("hue", self.hue, 0.5)
        for name in ("jitter_probability", "grayscale_probability", "local_blur"):
            _check_probability(name, getattr(self, name))
        _check_probability("local_solarize", self.local_solarize)
        for name in ("global_blur", "global_solarize"):
            value = getattr(self, name)
            if np.ndim(value) != 1 or len(value) != self.global_count:
                raise ValueError(
                    f"{name} must hold one probability per global view (global_count="
                    f"{self.global_count} values), got {value!r}; fix {name} or global_count."
                )
            for probability in value:
                _check_probability(name, probability)
            object.__setattr__(self, name, tuple(float(p) for p in value))

    # ------------------------------------------------------------------ recipes

    @classmethod
    def dino(
        cls, size: int = 224, local_count: int = 10, local_size: int | None = None, **overrides
    ) -> "MultiCropAugment":
        """DINO (Caron et al. 2021; facebookresearch/dino `main_dino.py`,
        `DataAugmentationDINO`): two global crops of area (0.4, 1) (`--global_crops_scale`)
        and `local_count` local crops of area (0.05, 0.4) (`--local_crops_scale`); flip 0.5;
        `RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p=0.8)`; `RandomGrayscale(0.2)`;
        `GaussianBlur` (sigma ~ U[0.1, 2]) with p = 1.0 and 0.1 on the global views, 0.5 on
        the local ones; `Solarization(0.2)` on the second global view only. `local_count`
        10 is the paper's best ViT setting ("2x224 + 10x96"; `main_dino.py` defaults to 8).
        `local_size` defaults to 96 scaled by `size / 224` (96 at 224). `overrides` replace
        any field."""
        if local_size is None:
            local_size = max(1, round(size * 96 / 224))
        fields = {
            "global_count": 2,
            "global_size": size,
            "global_area": (0.4, 1.0),
            "local_count": local_count,
            "local_size": local_size,
            "local_area": (0.05, 0.4),
            "global_blur": (1.0, 0.1),
            "local_blur": 0.5,
            "global_solarize": (0.0, 0.2),
            "local_solarize": 0.0,
        }
        return cls(**{**fields, **overrides})

    @classmethod
    def mocov3(cls, size: int = 224, **overrides) -> "MultiCropAugment":
        """MoCo v3 (Chen, Xie & He 2021; facebookresearch/moco-v3 `main_moco.py`,
        `augmentation1`/`augmentation2`, after BYOL): two crops of area (0.08, 1)
        (`--crop-min 0.08`); `RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p=0.8)`;
        `RandomGrayscale(0.2)`; `GaussianBlur([.1, 2.])` with p = 1.0 and 0.1;
        `Solarize` (PIL, threshold 128) with p = 0 and 0.2; flip 0.5 (applied last there,
        which is the same since the other operations commute with it); no local crops."""
        fields = {
            "global_count": 2,
            "global_size": size,
            "global_area": (0.08, 1.0),
            "local_count": 0,
            "global_blur": (1.0, 0.1),
            "global_solarize": (0.0, 0.2),
        }
        return cls(**{**fields, **overrides})

    @classmethod
    def mae(cls, size: int = 224, **overrides) -> "MultiCropAugment":
        """MAE (He et al. 2022; facebookresearch/mae `main_pretrain.py`): one crop of area
        (0.2, 1) (`RandomResizedCrop(input_size, scale=(0.2, 1.0))`), flip 0.5, ImageNet
        normalisation; no colour jitter, grayscale, blur or solarization."""
        fields = {
            "global_count": 1,
            "global_size": size,
            "global_area": (0.2, 1.0),
            "local_count": 0,
            "jitter_probability": 0.0,
            "grayscale_probability": 0.0,
            "global_blur": (0.0,),
            "global_solarize": (0.0,),
        }
        return cls(**{**fields, **overrides})

    # ------------------------------------------------------------------ host half

    def _groups(self) -> list[tuple[str, int, int, tuple[float, float], tuple, tuple]]:
        """`(group, count, size, area, blur probabilities, solarize probabilities)` of each
        group that has views."""
        groups = [
            (
                "global",
                self.global_count,
                self.global_size,
                self.global_area,
                self.global_blur,
                self.global_solarize,
            )
        ]
        if self.local_count > 0:
            groups.append(
                (
                    "local",
                    self.local_count,
                    self.local_size,
                    self.local_area,
                    (self.local_blur,) * self.local_count,
                    (self.local_solarize,) * self.local_count,
                )
            )
        return groups

    def _draw_view(
        self,
        rng: np.random.Generator,
        height: int,
        width: int,
        area: tuple[float, float],
        blur_probability: float,
        solarize_probability: float,
    ) -> dict[str, Any]:
        """One view's parameters. Every draw is made whatever the settings, so the stream
        of random numbers (and the other draws) does not depend on the probabilities."""
        box = sample_crop(rng, height, width, area, self.aspect_range)
        flipped = rng.random() < 0.5
        jittered = rng.random() < self.jitter_probability
        order = rng.permutation(4)
        factors = (
            rng.uniform(max(0.0, 1.0 - self.brightness), 1.0 + self.brightness),
            rng.uniform(max(0.0, 1.0 - self.contrast), 1.0 + self.contrast),
            rng.uniform(max(0.0, 1.0 - self.saturation), 1.0 + self.saturation),
            rng.uniform(-self.hue, self.hue),
        )
        grey = rng.random() < self.grayscale_probability
        blurred = rng.random() < blur_probability
        sigma = rng.uniform(*self.blur_sigma)
        solarized = rng.random() < solarize_probability
        return {
            "box": box,
            "flipped": bool(self.flip and flipped),
            "jittered": bool(jittered),
            "order": order,
            "jitter": factors,
            "grayscale": bool(grey),
            "sigma": sigma if blurred else 0.0,
            "solarized": bool(solarized),
        }

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Adds every view's parameters to `example` (whose `image` is uint8 `[h, w, 3]`).

        Stacked per group `g` in `("global", "local")` (local only when `local_count > 0`),
        `n` views each, view `i` in row `i`: `g_box` int32 `[n, 4]` `(top, left, crop_h,
        crop_w)` in input pixels, `g_flipped` bool `[n]`, `g_jittered` bool `[n]` (jitter
        applied), `g_order` int32 `[n, 4]` (the jitter order, a permutation of 0
        brightness, 1 contrast, 2 saturation, 3 hue), `g_jitter` float32 `[n, 4]`
        (brightness, contrast, saturation factors, hue shift in turns; drawn even where not
        applied), `g_grayscale` bool `[n]`, `g_sigma` float32 `[n]` (blur sigma in output
        pixels, 0 = no blur) and `g_solarized` bool `[n]`. Views are drawn global first,
        then local, in view order. The image itself is left as it is, for `render`.
        """
        image = np.asarray(example["image"])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"MultiCropAugment expects example['image'] uint8 [h, w, 3], got "
                f"{image.dtype} {image.shape}; decode images to uint8 RGB first."
            )
        out = dict(example)
        for group, count, _, area, blur, solar in self._groups():
            views = [
                self._draw_view(rng, *image.shape[:2], area, blur[i], solar[i])
                for i in range(count)
            ]
            for key, (_, dtype) in PARAMETERS.items():
                out[f"{group}_{key}"] = np.asarray([view[key] for view in views], dtype)
        return out

    # ---------------------------------------------------------------- device half

    def render(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """`batch` with `global_views` float32 `[b, global_count, global_size, global_size,
        3]` and, when `local_count > 0`, `local_views` float32 `[b, local_count, local_size,
        local_size, 3]` (ImageNet-normalised), made from `image` uint8 `[b, h, w, 3]` and
        the parameters `__call__` drew (jit-able).

        Each group is one batch of `b * count` crops (the views of an image are gathered
        from the one image; it is not copied per view). Operations whose probability is 0
        for every view of a group are left out of the computation.
        """
        images = jnp.asarray(batch["image"], jnp.float32) / 255.0
        out = dict(batch)
        for group, count, size, _, blur, solar in self._groups():
            out[f"{group}_views"] = self._render_group(
                images, batch, group, count, size, blur, solar
            )
        return out

    def _render_group(
        self,
        images: jax.Array,
        batch: dict[str, jax.Array],
        group: str,
        count: int,
        size: int,
        blur: tuple[float, ...],
        solar: tuple[float, ...],
    ) -> jax.Array:
        """The views `[b, count, size, size, 3]` of one group."""

        def crop(boxes: jax.Array, flipped: jax.Array) -> jax.Array:
            return crop_and_resize(images, boxes, size, flipped)

        boxes = jnp.asarray(batch[f"{group}_box"], jnp.int32)
        views = jax.vmap(crop, in_axes=1, out_axes=1)(boxes, jnp.asarray(batch[f"{group}_flipped"]))
        batch_size = views.shape[0]
        views = views.reshape((batch_size * count, size, size, 3))

        def flat(key: str) -> jax.Array:
            value = jnp.asarray(batch[f"{group}_{key}"])
            return value.reshape((batch_size * count,) + value.shape[2:])

        active = tuple(getattr(self, name) > 0 for name in JITTER_OPERATIONS)
        if self.jitter_probability > 0 and any(active):
            jittered = color_jitter(views, flat("order"), flat("jitter"), active)
            views = jnp.where(flat("jittered").reshape(-1, 1, 1, 1), jittered, views)
        if self.grayscale_probability > 0:
            views = grayscale(views, flat("grayscale"))
        if max(blur) > 0:
            views = gaussian_blur(views, flat("sigma"), self.blur_radius)
        if max(solar) > 0:
            views = solarize(views, flat("solarized"))
        views = colour.imagenet_normalize(views)
        return views.reshape((batch_size, count, size, size, 3))

    @property
    def blur_radius(self) -> int:
        """Kernel radius of the blur in pixels: `ceil(3 * blur_sigma[1])`."""
        return math.ceil(3 * self.blur_sigma[1])
