"""Pictures of images, reconstructions and object masks as uint8 arrays (numpy only)."""

import colorsys
import os

import numpy as np
from PIL import Image


def palette(num_colors: int) -> np.ndarray:
    """Returns `[num_colors, 3]` uint8 colours; colour 0 (background) is black."""
    hues = np.linspace(0.0, 1.0, max(num_colors - 1, 1), endpoint=False)
    colors = [(0.0, 0.0, 0.0)] + [colorsys.hsv_to_rgb(h, 0.75, 1.0) for h in hues]
    return (np.asarray(colors[:num_colors]) * 255).astype(np.uint8)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def to_uint8(images: np.ndarray, normalization: str = "signed") -> np.ndarray:
    """Maps float images `[..., c]` ("signed": in [-1, 1]; "imagenet": mean/std, c = 3;
    "unit": in [0, 1]) to uint8."""
    images = np.asarray(images, np.float64)
    if normalization == "signed":
        unit = (images + 1.0) / 2.0
    elif normalization == "unit":
        unit = images
    else:
        unit = images * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(unit * 255.0, 0, 255).round().astype(np.uint8)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Shows uint8 images `[..., c]` as RGB `[..., 3]`: grey repeated, extra channels dropped."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images[..., :3]


def orientation_rgb(points: np.ndarray) -> np.ndarray:
    """Colours read-out points `[..., f]` as uint8 RGB `[..., 3]`.

    Two dims (CAE phase): hue = angle, brightness = length; more (Rotating Features): the
    first three dims mapped from [-1, 1] to [0, 1].
    """
    points = np.asarray(points, np.float64)
    if points.shape[-1] == 2:
        hue = (np.arctan2(points[..., 1], points[..., 0]) / (2 * np.pi)) % 1.0
        value = np.clip(np.linalg.norm(points, axis=-1), 0.0, 1.0)
        rgb = np.vectorize(colorsys.hsv_to_rgb, otypes=[float] * 3)(hue, 1.0, value)
        unit = np.stack(rgb, axis=-1)
    else:
        unit = (points[..., :3] + 1.0) / 2.0
    return np.clip(unit * 255.0, 0, 255).round().astype(np.uint8)


def readout_panel(
    images: np.ndarray,
    reconstructions: np.ndarray | None,
    points: np.ndarray,
    clusters: np.ndarray,
    true_ids: np.ndarray,
    num_colors: int,
) -> np.ndarray:
    """One row per example: input, reconstruction (if any), GT, read-out, cluster ids.

    `images`, `reconstructions`: uint8 `[b, h, w, c]`; `points`: read-out `[b, h, w, f]`;
    `clusters`, `true_ids`: int `[b, h, w]`.
    """
    colors = orientation_rgb(points)
    rows = [
        [to_rgb(images[b])]
        + ([to_rgb(reconstructions[b])] if reconstructions is not None else [])
        + [colorize(true_ids[b], num_colors), colors[b], colorize(clusters[b], num_colors)]
        for b in range(images.shape[0])
    ]
    return grid(rows)


def colorize(ids: np.ndarray, num_colors: int) -> np.ndarray:
    """Colours an integer segmentation `[..., h, w]` into `[..., h, w, 3]` uint8."""
    return palette(num_colors)[np.clip(ids, 0, num_colors - 1)]


def overlay(image: np.ndarray, ids: np.ndarray, num_colors: int, alpha: float = 0.5) -> np.ndarray:
    """Blends the coloured segmentation `[h, w]` onto a uint8 image `[h, w, 3]`."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colorize(ids, num_colors)
    return mixed.round().astype(np.uint8)


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tiles equally sized uint8 images `[h, w, 3]` into one picture, row by row."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = tile
    return out


def _masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shows `image` `[h, w, 3]` where `mask` `[h, w]` in [0, 1] is high, white elsewhere."""
    mask = np.asarray(mask, np.float64)[..., None]
    return (mask * image + (1.0 - mask) * 255.0).round().astype(np.uint8)


def slot_panel(
    images: np.ndarray,
    masks: np.ndarray,
    true_ids: np.ndarray,
    num_true: int,
    reconstructions: np.ndarray | None = None,
    binary: np.ndarray | None = None,
) -> np.ndarray:
    """One row per example: input, [reconstruction], GT, predicted segmentation, then slots.

    `images`, `reconstructions`: uint8 `[b, h, w, 3]`; `masks`: `[b, k, h, w]` in [0, 1]
    (each slot shown as the image seen through its mask); `binary`: optional bool
    `[b, k, h, w]` (e.g. Otsu masks), then shown as a second row of overlays per example.
    """
    rows = []
    num_slots = masks.shape[1]
    for b in range(images.shape[0]):
        lead = [images[b]]
        if reconstructions is not None:
            lead.append(reconstructions[b])
        lead += [
            colorize(true_ids[b], num_true),
            overlay(images[b], np.argmax(masks[b], axis=0) + 1, num_slots + 1),
        ]
        scale = masks[b] / np.maximum(masks[b].max(axis=(1, 2), keepdims=True), 1e-8)
        rows.append(lead + [_masked(images[b], scale[k]) for k in range(num_slots)])
        if binary is not None:
            blank = np.full_like(images[b], 255)
            rows.append(
                [blank] * len(lead) + [_masked(images[b], binary[b, k]) for k in range(num_slots)]
            )
    return grid(rows)


def save_png(path: str, image: np.ndarray) -> None:
    """Writes a uint8 `[h, w, 3]` image to `path`, creating folders."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(image).save(path)
