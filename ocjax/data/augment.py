"""Two-view image augmentation for contrastive object-centric learning (numpy, per example).

Every random function takes an explicit `numpy.random.Generator`, so an augmentation is a
pure function of `(example, rng)`; grain's `random_map` hands each example its own
generator derived from the dataset seed and the example index::

    ds = grain.MapDataset.source(source).seed(seed).random_map(TwoViewAugment())

Conventions:
  * Boxes are `(top, left, crop_h, crop_w)` in pixels of the input image; the aspect ratio
    of a box is `crop_w / crop_h`.
  * `resize` samples at half-pixel centres (pixel `i` of the output sits at input
    coordinate `(i + 0.5) * in / out - 0.5`), clamps at the border and does no
    antialiasing: bilinear equals `skimage.transform.resize(order=1, mode="edge",
    anti_aliasing=False)`; nearest picks input pixel `floor((i + 0.5) * in / out)`.
  * A view is `normalize(jitter(resize(crop(image / 255, box))))`, mirrored left-right
    afterwards when its flip flag is set: the box is in unflipped image coordinates, and a
    segmentation maps into the view as `resize(crop(segmentation, box), method="nearest")`,
    mirrored likewise.
  * Colour operations take float images in [0, 1] and clip their output to [0, 1].
"""

import dataclasses
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

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


def crop_and_resize(
    image: np.ndarray, box: Box, size: int | tuple[int, int], method: str = "bilinear"
) -> np.ndarray:
    """Crops `box` `(top, left, crop_h, crop_w)` from `[h, w(, c)]`, resizes to `size`."""
    top, left, crop_h, crop_w = (int(v) for v in box)
    height, width = np.shape(image)[:2]
    inside = 0 <= top and 0 <= left and top + crop_h <= height and left + crop_w <= width
    if crop_h < 1 or crop_w < 1 or not inside:
        raise ValueError(
            f"box {tuple(box)} (top, left, crop_h, crop_w) must be non-empty and "
            f"lie inside the {height}x{width} image."
        )
    return resize(image[top : top + crop_h, left : left + crop_w], size, method)


def flip(image: np.ndarray) -> np.ndarray:
    """Mirrors `[h, w(, c)]` left-right."""
    return np.asarray(image)[:, ::-1]


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiplies `[h, w, 3]` in [0, 1] by `factor` and clips to [0, 1]."""
    if factor < 0:
        raise ValueError(f"brightness factor must be >= 0, got {factor}.")
    return np.clip(image * np.float32(factor), 0.0, 1.0)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Blends `[h, w, 3]` with its luma: `factor * image + (1 - factor) * grey`, clipped."""
    if factor < 0:
        raise ValueError(f"saturation factor must be >= 0, got {factor}.")
    # The blend is linear in RGB: row k of `mixing` maps input channel k to the outputs.
    luma = np.asarray(LUMA_WEIGHTS, np.float32)[:, None]
    mixing = factor * np.eye(3, dtype=np.float32) + (1 - factor) * np.repeat(luma, 3, axis=1)
    return np.clip(image @ mixing.astype(np.float32), 0.0, 1.0)


def _rgb_to_hsv(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in sixths of a turn [0, 6), saturation and value (each `[h, w]`) of `[h, w, 3]`."""
    red, green, blue = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    value = np.maximum(np.maximum(red, green), blue)
    delta = value - np.minimum(np.minimum(red, green), blue)
    inverse = 1 / np.where(delta > 0, delta, 1.0)
    hue = np.where(
        value == red,
        (green - blue) * inverse,
        np.where(value == green, (blue - red) * inverse + 2, (red - green) * inverse + 4),
    )
    saturation = delta / np.where(value > 0, value, 1.0)
    return _wrap_sixths(hue), saturation, value


def _wrap_sixths(hue: np.ndarray) -> np.ndarray:
    """Wraps a hue in sixths of a turn into [0, 6) (faster than numpy's float `%`)."""
    wrapped = hue - np.float32(6.0) * np.floor(hue * np.float32(1 / 6))
    return np.where(wrapped >= 6.0, wrapped - 6.0, wrapped)


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """RGB `[h, w, 3]` from hue in sixths of a turn [0, 6), saturation and value `[h, w]`."""
    channels = []
    for phase in (5.0, 3.0, 1.0):
        sector = hue + phase
        sector = np.where(sector >= 6.0, sector - 6.0, sector)
        ramp = np.clip(np.minimum(sector, 4.0 - sector), 0.0, 1.0)
        channels.append(value * (1.0 - saturation * ramp))
    return np.stack(channels, axis=-1)


def adjust_hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Rotates the HSV hue of `[h, w, 3]` in [0, 1] by `shift` turns (in [-0.5, 0.5])."""
    if not -0.5 <= shift <= 0.5:
        raise ValueError(f"hue shift must be in [-0.5, 0.5] turns, got {shift}.")
    if shift == 0:
        return np.clip(image, 0.0, 1.0)
    hue, saturation, value = _rgb_to_hsv(np.asarray(image, np.float32))
    rotated = _hsv_to_rgb(_wrap_sixths(hue + np.float32(6.0 * shift)), saturation, value)
    return np.clip(rotated, 0.0, 1.0)


def color_jitter(
    rng: np.random.Generator,
    image: np.ndarray,
    brightness: float = 0.2,
    saturation: tuple[float, float] = (0.9, 1.0),
    hue: float = 0.05,
) -> np.ndarray:
    """Random brightness, saturation and hue changes of `[h, w, 3]` in [0, 1], in random order.

    As torchvision's `ColorJitter`: brightness factor ~ U[max(0, 1 - brightness),
    1 + brightness], saturation factor ~ U[saturation], hue shift ~ U[-hue, hue]; the three
    operations are applied in an order drawn uniformly from the 6 permutations.
    """
    _check_jitter(brightness, saturation, hue)
    order = rng.permutation(3)
    brightness_factor = rng.uniform(max(0.0, 1.0 - brightness), 1.0 + brightness)
    saturation_factor = rng.uniform(*saturation)
    hue_shift = rng.uniform(-hue, hue)
    operations = (
        lambda x: adjust_brightness(x, brightness_factor),
        lambda x: adjust_saturation(x, saturation_factor),
        lambda x: adjust_hue(x, hue_shift),
    )
    for index in order:
        image = operations[index](image)
    return image


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


@dataclasses.dataclass(frozen=True)
class TwoViewAugment:
    """Two independently augmented views of an example's image (seed 004's augmentations).

    Each view: random-resized crop (`area_range`, `aspect_range`), bilinear resize to
    `[size, size]`, colour jitter in random order, random horizontal flip (p = 0.5 when
    `flip`), ImageNet normalisation.
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
        """Adds `view_a`/`view_b` float32 `[size, size, 3]` and their boxes and flip flags.

        `image` uint8 `[h, w, 3]` becomes the normalised, unaugmented float32
        `[size, size, 3]`; `segmentation` `[h, w]`, if present, is nearest-resized to
        `[size, size]`. `view_*_box` is int32 `[4]` `(top, left, crop_h, crop_w)` in input
        pixels and `view_*_flipped` a bool scalar (see the module doc for the mapping).
        """
        image = np.asarray(example["image"])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"TwoViewAugment expects example['image'] uint8 [h, w, 3], got "
                f"{image.dtype} {image.shape}; decode images to uint8 RGB first."
            )
        out = dict(example)
        out["image"] = normalize(resize(image, self.size) / np.float32(255))
        if "segmentation" in example:
            out["segmentation"] = resize(example["segmentation"], self.size, "nearest")
        for name in ("view_a", "view_b"):
            view, box, flipped = self._view(image, rng)
            out[name] = view
            out[f"{name}_box"] = np.asarray(box, np.int32)
            out[f"{name}_flipped"] = np.array(flipped)
        return out

    def _view(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Box, bool]:
        """One augmented view `[size, size, 3]` of uint8 `[h, w, 3]`, its box and flip flag."""
        box = sample_crop(rng, image.shape[0], image.shape[1], self.area_range, self.aspect_range)
        view = crop_and_resize(image, box, self.size) / np.float32(255)
        view = color_jitter(rng, view, self.brightness, self.saturation, self.hue)
        flipped = bool(self.flip and rng.random() < 0.5)
        return normalize(flip(view) if flipped else view), box, flipped
