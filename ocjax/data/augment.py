"""Two augmented views per image for contrastive object-centric learning (seed 004).

The work is split where each half is cheap. The host draws every view's parameters with
numpy, per example: grain's `random_map` hands each example its own generator derived
from the dataset seed and the example's position, so the views are a pure function of
`(seed, step)` and a resumed run sees the ones an uninterrupted run would have. The train
step renders the pixels of the whole batch on device, inside `jax.jit`::

    ds = grain.MapDataset.source(source).seed(seed).random_map(views)  # host: parameters
    batch = views.render(batch)                                        # device: pixels

Conventions:
  * Boxes are `(top, left, crop_h, crop_w)` in pixels of the input image; the aspect ratio
    of a box is `crop_w / crop_h`.
  * Resizing samples at half-pixel centres (pixel `i` of the output sits at input
    coordinate `(i + 0.5) * in / out - 0.5`), clamps at the border (of the box, for a
    crop) and does no antialiasing: bilinear equals `skimage.transform.resize(order=1,
    mode="edge", anti_aliasing=False)`; nearest picks input pixel
    `floor((i + 0.5) * in / out)`.
  * A view is `normalize(flip(jitter(resize(crop(image / 255, box)))))`, where the flip
    (left-right) applies when the view's flip flag is set: the box is in unflipped image
    coordinates.
  * Colour operations (`ocjax.data.colour`) take images in [0, 1] and clip to [0, 1].
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ocjax.data import colour

IMAGENET_MEAN = colour.IMAGENET_MEAN
IMAGENET_STD = colour.IMAGENET_STD
VIEWS = ("view_a", "view_b")

Box = tuple[int, int, int, int]


def _check_range(
    name: str, bounds: tuple[float, float], low: float, high: float, low_inclusive: bool = True
) -> None:
    """Raises ValueError unless `bounds` is a pair `(min, max)` in the interval with min <= max."""
    interval = f"{'[' if low_inclusive else '('}{low}, {high}]"
    if len(bounds) != 2:
        raise ValueError(f"{name} must be a pair (min, max) in {interval}, got {bounds!r}.")
    lo, hi = bounds
    above_low = lo >= low if low_inclusive else lo > low
    if not (above_low and hi <= high and lo <= hi):
        raise ValueError(
            f"{name} must be a pair (min, max) with values in {interval} and "
            f"min <= max, got {bounds!r}; fix {name}."
        )


def sample_crop(
    rng: np.random.Generator,
    height: int,
    width: int,
    area_range: tuple[float, float] = (0.3, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
    max_tries: int = 10,
) -> Box:
    """Random-resized-crop box `(top, left, crop_h, crop_w)` inside a `[height, width]` image.

    Each try draws an area fraction uniformly from `area_range` and an aspect ratio
    (`crop_w / crop_h`) log-uniformly from `aspect_range`, rounds the side lengths and keeps
    the first box that fits in the image at a uniformly random position. The side rounding
    moves the area by at most about half a row and half a column. If none of the
    `max_tries` boxes fits, returns the largest centred box whose aspect ratio is the
    image's clamped into `aspect_range` (the whole image when the image's ratio is inside).
    """
    if height < 1 or width < 1:
        raise ValueError(f"sample_crop needs a non-empty image, got {height}x{width}.")
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}.")
    _check_range("area_range", area_range, 0.0, 1.0, low_inclusive=False)
    _check_range("aspect_range", aspect_range, 0.0, np.inf, low_inclusive=False)
    areas = rng.uniform(*area_range, size=max_tries) * (height * width)
    aspects = np.exp(rng.uniform(*np.log(aspect_range), size=max_tries))
    crop_hs = np.round(np.sqrt(areas / aspects)).astype(int)
    crop_ws = np.round(np.sqrt(areas * aspects)).astype(int)
    fits = (crop_hs >= 1) & (crop_hs <= height) & (crop_ws >= 1) & (crop_ws <= width)
    if not fits.any():
        return _center_crop(height, width, aspect_range)
    crop_h, crop_w = int(crop_hs[fits.argmax()]), int(crop_ws[fits.argmax()])
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return top, left, crop_h, crop_w


def _center_crop(height: int, width: int, aspect_range: tuple[float, float]) -> Box:
    """Largest centred box of a `[height, width]` image with its aspect clamped to the range."""
    aspect = width / height
    if aspect < aspect_range[0]:
        crop_w, crop_h = width, max(1, min(height, round(width / aspect_range[0])))
    elif aspect > aspect_range[1]:
        crop_w, crop_h = max(1, min(width, round(height * aspect_range[1]))), height
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def _output_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """Normalises `size` (an int or a pair) to `(out_h, out_w)`, both >= 1."""
    out_h, out_w = (size, size) if np.isscalar(size) else tuple(size)
    if int(out_h) != out_h or int(out_w) != out_w or out_h < 1 or out_w < 1:
        raise ValueError(f"size must be a positive int or a pair of positive ints, got {size!r}.")
    return int(out_h), int(out_w)


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear source indices `[out_size]` x2 and float32 weights of the second index."""
    coords = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    coords = np.clip(coords, 0, in_size - 1)
    low = np.floor(coords).astype(np.intp)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (coords - low).astype(np.float32)


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Nearest-neighbour source indices `[out_size]`: `floor((i + 0.5) * in / out)`, exactly."""
    return (2 * np.arange(out_size, dtype=np.intp) + 1) * in_size // (2 * out_size)


def _lerp(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """float32 `start + weight * (end - start)` for `[m, n]` arrays; `weight` broadcasts."""
    result = end.astype(np.float32)
    result -= start
    result *= weight
    result += start
    return result


def _resize_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Separable bilinear resize of `[h, w, c]` to float32 `[out_h, out_w, c]`."""
    height, width, channels = image.shape
    flat = image.reshape(height, width * channels)
    left, right, weight_x = _linear_taps(width, out_w)
    offsets = np.arange(channels)
    columns = _lerp(
        np.take(flat, (left[:, None] * channels + offsets).ravel(), axis=1),
        np.take(flat, (right[:, None] * channels + offsets).ravel(), axis=1),
        np.repeat(weight_x, channels),
    )
    top, bottom, weight_y = _linear_taps(height, out_h)
    rows = _lerp(columns[top], columns[bottom], weight_y[:, None])
    return rows.reshape(out_h, out_w, channels)


def resize(image: np.ndarray, size: int | tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resizes `[h, w]` or `[h, w, c]` to `[out_h, out_w(, c)]` (`size` an int or a pair).

    `bilinear` returns float32 in the input's value scale; `nearest` keeps the dtype (use it
    for label maps). Sampling is at half-pixel centres without antialiasing (module doc).
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ValueError(
            f"resize expects a non-empty [h, w] or [h, w, c] array, got shape {image.shape}."
        )
    out_h, out_w = _output_size(size)
    if method == "nearest":
        rows = _nearest_indices(image.shape[0], out_h)
        cols = _nearest_indices(image.shape[1], out_w)
        return image[rows[:, None], cols[None, :]]
    if method != "bilinear":
        raise ValueError(f"method must be 'bilinear' or 'nearest', got {method!r}.")
    channels = image.reshape(image.shape[0], image.shape[1], -1)
    return _resize_bilinear(channels, out_h, out_w).reshape((out_h, out_w) + image.shape[2:])


def _check_jitter(brightness: float, saturation: tuple[float, float], hue: float) -> None:
    """Raises ValueError for colour-jitter strengths outside their valid ranges."""
    if brightness < 0:
        raise ValueError(
            f"brightness must be >= 0 (a factor range [1 - b, 1 + b]), got {brightness}."
        )
    _check_range("saturation", saturation, 0.0, np.inf)
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5] (turns of the colour wheel), got {hue}.")


def normalize(
    image: np.ndarray,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> np.ndarray:
    """Per-channel `(image - mean) / std` of `[h, w, c]`, as float32 `[h, w, c]`."""
    image = np.asarray(image, np.float32)
    mean_arr, std_arr = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if image.ndim != 3 or mean_arr.shape != (image.shape[-1],) or std_arr.shape != mean_arr.shape:
        raise ValueError(
            f"normalize needs an [h, w, c] image and one mean and std value per "
            f"channel; got image {image.shape}, mean {mean}, std {std}."
        )
    if np.any(std_arr <= 0):
        raise ValueError(f"std must be positive, got {std}.")
    # Tiling the constants over whole rows keeps numpy's inner loops long.
    height, width, _ = image.shape
    rows = image.reshape(height, -1) - np.tile(mean_arr, width)
    rows *= np.tile(1 / std_arr, width)
    return rows.reshape(image.shape)


def crop_and_resize(
    images: jax.Array, boxes: jax.Array, size: int, flipped: jax.Array | None = None
) -> jax.Array:
    """Crops box `b` of `boxes [b, 4]` from image `b` of `[b, h, w, c]`, bilinearly resized to
    float32 `[b, size, size, c]` (half-pixel centres, clamped at the box border; jit-able).
    Where `flipped [b]` is set, the view is mirrored left-right (its columns are sampled
    from right to left, which costs nothing)."""
    images = jnp.asarray(images, jnp.float32)
    boxes = jnp.asarray(boxes, jnp.int32)
    centres = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size

    def resample(images: jax.Array, start: jax.Array, length: jax.Array, axis: int) -> jax.Array:
        """Bilinear samples of `images` along `axis` (1: rows, 2: columns) inside
        `[start, start + length)`, `start` and `length` `[b]`."""
        last = (length - 1).astype(jnp.float32)[:, None]
        coords = jnp.clip(centres * length[:, None] - 0.5, 0.0, last)
        if axis == 2 and flipped is not None:
            coords = jnp.where(jnp.asarray(flipped)[:, None], coords[:, ::-1], coords)
        low = jnp.floor(coords)
        shape = [-1, 1, 1, 1]
        shape[axis] = size
        taps = [
            (start[:, None] + i.astype(jnp.int32)).reshape(shape)
            for i in (low, jnp.minimum(low + 1, last))
        ]
        first, second = (jnp.take_along_axis(images, index, axis=axis) for index in taps)
        return first + (coords - low).reshape(shape) * (second - first)

    top, left, crop_h, crop_w = (boxes[:, k] for k in range(4))
    return resample(resample(images, top, crop_h, axis=1), left, crop_w, axis=2)


def color_jitter(images: jax.Array, order: jax.Array, factors: jax.Array) -> jax.Array:
    """Brightness, saturation and hue changes of `[b, h, w, 3]` in [0, 1], applied in each
    image's `order [b, 3]` (a permutation of 0 brightness, 1 saturation, 2 hue) with
    `factors [b, 3]` (brightness factor, saturation factor, hue shift in turns)."""
    operations = (
        lambda x: colour.adjust_brightness(x, factors[:, 0]),
        lambda x: colour.adjust_saturation(x, factors[:, 1]),
        lambda x: colour.adjust_hue(x, factors[:, 2]),
    )
    for position in range(3):
        which = order[:, position].reshape(-1, 1, 1, 1)
        images = jnp.select([which == k for k in range(3)], [op(images) for op in operations])
    return images


@dataclasses.dataclass(frozen=True)
class TwoViewAugment:
    """Two independently augmented views of an example's image (seed 004's augmentations).

    Each view: random-resized crop (`area_range`, `aspect_range`), bilinear resize to
    `[size, size]`, colour jitter in random order (as torchvision's `ColorJitter`:
    brightness factor ~ U[max(0, 1 - brightness), 1 + brightness], saturation factor ~
    U[saturation], hue shift ~ U[-hue, hue] turns), random horizontal flip (p = 0.5 when
    `flip`), ImageNet normalisation. Calling it draws the parameters (host); `render` makes
    the pixels (device).
    """

    size: int = 128
    area_range: tuple[float, float] = (0.3, 1.0)
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    brightness: float = 0.2
    saturation: tuple[float, float] = (0.9, 1.0)
    hue: float = 0.05

    def __post_init__(self):
        """Validates every field; raises ValueError naming the field and its valid range."""
        if int(self.size) != self.size or self.size < 1:
            raise ValueError(f"size must be an int >= 1, got {self.size!r}.")
        _check_range("area_range", self.area_range, 0.0, 1.0, low_inclusive=False)
        _check_range("aspect_range", self.aspect_range, 0.0, np.inf, low_inclusive=False)
        _check_jitter(self.brightness, self.saturation, self.hue)

    def __call__(self, example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Adds each view's parameters to `example` (whose `image` is uint8 `[h, w, 3]`).

        Per view `v` in `VIEWS`: `v_box` int32 `[4]` `(top, left, crop_h, crop_w)` in input
        pixels, `v_order` int32 `[3]` (the jitter order, see `color_jitter`), `v_jitter`
        float32 `[3]` (brightness factor, saturation factor, hue shift) and `v_flipped`, a
        bool scalar. The image itself is left as it is, for `render`.
        """
        image = np.asarray(example["image"])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"TwoViewAugment expects example['image'] uint8 [h, w, 3], got "
                f"{image.dtype} {image.shape}; decode images to uint8 RGB first."
            )
        out = dict(example)
        for name in VIEWS:
            box = sample_crop(rng, *image.shape[:2], self.area_range, self.aspect_range)
            order = rng.permutation(3)
            jitter = (
                rng.uniform(max(0.0, 1.0 - self.brightness), 1.0 + self.brightness),
                rng.uniform(*self.saturation),
                rng.uniform(-self.hue, self.hue),
            )
            out[f"{name}_box"] = np.asarray(box, np.int32)
            out[f"{name}_order"] = order.astype(np.int32)
            out[f"{name}_jitter"] = np.asarray(jitter, np.float32)
            out[f"{name}_flipped"] = np.array(bool(self.flip and rng.random() < 0.5))
        return out

    def render(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """`batch` with `view_a`, `view_b` float32 `[b, size, size, 3]` (ImageNet-normalised)
        made from `image` uint8 `[b, h, w, 3]` and the parameters `__call__` drew (jit-able).

        Both views are one batch of `2b` crops; the flip is folded into the crop's sampling
        (the colour operations act per pixel, so they commute with it).
        """
        images = jnp.asarray(batch["image"], jnp.float32) / 255.0

        def both(key: str) -> jax.Array:
            return jnp.concatenate([jnp.asarray(batch[f"{view}_{key}"]) for view in VIEWS])

        views = crop_and_resize(
            jnp.concatenate([images] * len(VIEWS)), both("box"), self.size, both("flipped")
        )
        views = color_jitter(views, both("order"), both("jitter"))
        views = colour.imagenet_normalize(views)
        return {**batch, **dict(zip(VIEWS, jnp.split(views, len(VIEWS))))}
