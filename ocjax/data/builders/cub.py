"""tfds builder for CUB-200-2011 with keypoints and foreground masks (part discovery).

Reads the official files the user downloads into `manual_dir`::

    manual_dir/CUB_200_2011/images.txt                 "<id> <class dir>/<name>.jpg"
    manual_dir/CUB_200_2011/train_test_split.txt       "<id> <1 train | 0 test>"
    manual_dir/CUB_200_2011/bounding_boxes.txt         "<id> <x> <y> <width> <height>"
    manual_dir/CUB_200_2011/parts/part_locs.txt        "<id> <part 1..15> <x> <y> <visible>"
    manual_dir/CUB_200_2011/images/<class dir>/<name>.jpg
    manual_dir/segmentations/<class dir>/<name>.png    (the separate segmentation release)

Each image is cropped to its bounding box grown to a square around the box's centre
(clipped to the image), then resized to `resolution` x `resolution`; the foreground is the
segmentation mask above half intensity, resized alike (nearest). CUB has no part masks:
its 15 keypoints are the part labels of the paper's evaluation (NMI / ARI between each
visible keypoint's label and the predicted part at its location), so `segmentation` holds
label k (1..15) at the pixel of keypoint k and 0 elsewhere, and `pixel_valid` is True only
at visible keypoints; the metrics then score exactly those pixels. Objects are the 15
keypoints (`shape` = part index 0..14, `visible`, `position` x, y in [0, 1]).

Splits: `test` is the official test split; `validation` every 20th official training
image (the first, 21st, ...); `train` the other training images.
"""

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from ocjax.data import augment
from ocjax.data.builders import manual
from ocjax.data.builders.features import known_config, planar_example

NUM_KEYPOINTS = 15
README_HINT = manual.README_HINT
VALIDATION_EVERY = 20


dataset_error = manual.dataset_error


def _table(path: str, columns: int) -> list[list[str]]:
    """Whitespace-separated rows of a CUB text file, checked for `columns` fields each."""
    if not os.path.isfile(path):
        raise dataset_error(
            f"CUB file {path} does not exist; unpack CUB_200_2011.tgz (and "
            f"segmentations.tgz) into data.cub.manual_dir ({README_HINT})."
        )
    with open(path, encoding="utf-8") as f:
        rows = [line.split() for line in f if line.strip()]
    bad = next((i for i, row in enumerate(rows) if len(row) != columns), None)
    if bad is not None:
        raise dataset_error(f"{path} line {bad + 1} has {len(rows[bad])} fields, not {columns}.")
    return rows


def read_index(manual_dir: str) -> dict[str, list[dict[str, Any]]]:
    """Per split, the records `{id, path, box, keypoints [15, 3] (x, y, visible)}`."""
    root = os.path.join(manual_dir, "CUB_200_2011")
    paths = {int(i): p for i, p in _table(os.path.join(root, "images.txt"), 2)}
    is_train = {int(i): t == "1" for i, t in _table(os.path.join(root, "train_test_split.txt"), 2)}
    boxes = {
        int(r[0]): tuple(float(v) for v in r[1:])
        for r in _table(os.path.join(root, "bounding_boxes.txt"), 5)
    }
    keypoints = {i: np.zeros((NUM_KEYPOINTS, 3), np.float32) for i in paths}
    for image_id, part, x, y, visible in _table(os.path.join(root, "parts", "part_locs.txt"), 5):
        keypoints[int(image_id)][int(part) - 1] = (float(x), float(y), float(visible))
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    train_count = 0
    for image_id in sorted(paths):
        record = {
            "id": image_id,
            "path": paths[image_id],
            "box": boxes[image_id],
            "keypoints": keypoints[image_id],
        }
        if not is_train[image_id]:
            splits["test"].append(record)
            continue
        split = "validation" if train_count % VALIDATION_EVERY == 0 else "train"
        splits[split].append(record)
        train_count += 1
    return splits


def square_box(box: tuple[float, ...], height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the box grown to a square about its centre, clipped."""
    x, y, w, h = box
    side = max(w, h)
    cx, cy = x + w / 2, y + h / 2
    left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    right, bottom = min(width, round(cx + side / 2)), min(height, round(cy + side / 2))
    return top, left, bottom, right


def to_example(index: int, record: dict, image: np.ndarray, mask: np.ndarray, res: int) -> dict:
    """Crops, resizes and arranges one bird (see the module docstring)."""
    height, width = image.shape[:2]
    top, left, bottom, right = square_box(record["box"], height, width)
    crop = image[top:bottom, left:right]
    resized = np.asarray(Image.fromarray(crop).resize((res, res), Image.BILINEAR))
    fg = augment.resize(
        (mask[top:bottom, left:right] > 127).astype(np.uint8), (res, res), method="nearest"
    )
    segmentation = np.zeros((res, res), np.uint8)
    valid = np.zeros((res, res), bool)
    points = record["keypoints"]
    position = np.zeros((NUM_KEYPOINTS, 2), np.float32)
    visible = points[:, 2] > 0
    for k in np.flatnonzero(visible):
        col = (points[k, 0] - left) / max(right - left, 1)
        row = (points[k, 1] - top) / max(bottom - top, 1)
        position[k] = col, row
        r, c = int(np.clip(row * res, 0, res - 1)), int(np.clip(col * res, 0, res - 1))
        if not valid[r, c]:  # Two keypoints on one pixel: the first keeps it.
            segmentation[r, c], valid[r, c] = k + 1, True
    scene = {
        "image": resized,
        "segmentation": segmentation,
        "shape": np.arange(NUM_KEYPOINTS, dtype=np.int32),
        "position": position,
    }
    example = planar_example(index, scene, visible=visible)
    example["foreground"] = fg[..., None]
    example["pixel_valid"] = valid
    return example


class Cub(manual.PartBuilder):
    """CUB-200-2011 birds cropped to their boxes, with keypoints and foreground masks."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Unpack CUB_200_2011.tgz and segmentations.tgz (Caltech-UCSD Birds-200-2011) into "
        f"manual_dir; {README_HINT}."
    )
    DESCRIPTION = "CUB-200-2011 with keypoint labels and foreground masks (ocjax)."
    read_index = staticmethod(read_index)

    def _generate_examples(
        self, manual_dir: str, records: list[dict]
    ) -> Iterator[tuple[int, dict]]:
        res = self.builder_config.resolution
        for index, record in enumerate(records):
            image_path = os.path.join(manual_dir, "CUB_200_2011", "images", record["path"])
            mask_path = os.path.join(manual_dir, "segmentations", record["path"][:-4] + ".png")
            for path in (image_path, mask_path):
                if not os.path.isfile(path):
                    raise dataset_error(f"CUB file {path} is missing ({README_HINT}).")
            with Image.open(image_path) as image, Image.open(mask_path) as mask:
                rgb = np.asarray(image.convert("RGB"))
                grey = np.asarray(mask.convert("L"))
            yield index, to_example(index, record, rgb, grey, res)


def cub_sources(
    data_dir: str, *, manual_dir: str, resolution: int, max_objects: int
) -> dict[str, Any]:
    """Converts CUB-200-2011 (images, keypoints, segmentations) from `manual_dir` on first
    use, then opens train / validation / test."""
    if max_objects < NUM_KEYPOINTS:
        raise ValueError(
            f"CUB has {NUM_KEYPOINTS} keypoints per bird but data.max_objects is "
            f"{max_objects}; set it to at least {NUM_KEYPOINTS}."
        )
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    read_index(manual_dir)  # Missing or malformed index files are named before any work.
    builder = Cub(
        config=known_config(Cub, manual.ResolutionConfig.make(resolution)),
        data_dir=data_dir,
        file_format="array_record",
    )
    return manual.prepare(builder, manual_dir, "CUB-200-2011", manual.cache_dir(data_dir, builder))
