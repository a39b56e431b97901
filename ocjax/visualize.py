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


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Maps float images in [-1, 1] (any shape `[..., 3]`) to uint8."""
  return np.clip((np.asarray(images) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


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
      out[y:y + h, x:x + w] = tile
  return out


def slot_panel(image: np.ndarray, reconstruction: np.ndarray, masks: np.ndarray,
               true_ids: np.ndarray, num_true: int) -> np.ndarray:
  """One row per example: input, reconstruction, GT and predicted segmentation, masked slots.

  `image`, `reconstruction`: `[b, h, w, 3]` in [-1, 1]; `masks`: `[b, k, h, w]` in [0, 1];
  `true_ids`: `[b, h, w]`. Returns a uint8 picture.
  """
  rows = []
  num_slots = masks.shape[1]
  for b in range(image.shape[0]):
    rgb = to_uint8(image[b])
    pred = np.argmax(masks[b], axis=0) + 1
    row = [rgb, to_uint8(reconstruction[b]), colorize(true_ids[b], num_true),
           overlay(rgb, pred, num_slots + 1)]
    for k in range(num_slots):
      row.append((masks[b, k][..., None] * rgb + (1 - masks[b, k][..., None]) * 255)
                 .round().astype(np.uint8))
    rows.append(row)
  return grid(rows)


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 `[h, w, 3]` image to `path`, creating folders."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(image).save(path)
