"""tfds builder for DeepFashion's clothing segmentation (part discovery's second dataset).

Reads the In-shop Clothes Retrieval Benchmark's segmentation release, as the user unpacks
it into `manual_dir`::

    manual_dir/DeepFashion/In-shop Clothes Retrieval Benchmark/Anno/segmentation/
        DeepFashion_segmentation_{train,query,gallery}.json   ({"images": [{"file_name"}]})
        <file_name>.jpg and <file_name>_segment.png            (colour-coded labels)

The label images code 15 clothing / body classes and background by the colours of
`COLORS` (index = label, 0 background); any other colour is an error naming the file.
Each image is scaled so its longer side is `resolution` and padded to a square with black
(labels 0; the padding is left out of the metrics through `pixel_valid`), as the paper's
evaluation. `segmentation` holds the labels, `foreground` the non-background pixels, and
the objects are the 15 classes (`shape` = label - 1, `visible` = present in the image).

Splits: `test` = query + gallery (the paper's evaluation images); `validation` every 20th
training image (the first, 21st, ...); `train` the others.
"""

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from ocjax.data import augment
from ocjax.data.builders import manual
from ocjax.data.builders.features import known_config, planar_example

SUBDIR = os.path.join("DeepFashion", "In-shop Clothes Retrieval Benchmark", "Anno", "segmentation")
COLORS = np.array(
    [
        [0, 0, 0],
        [0, 100, 0],
        [16, 78, 139],
        [50, 205, 50],
        [70, 130, 180],
        [127, 255, 212],
        [144, 238, 144],
        [211, 211, 211],
        [220, 220, 220],
        [245, 222, 179],
        [250, 235, 215],
        [255, 0, 0],
        [255, 140, 0],
        [255, 250, 205],
        [255, 250, 250],
        [255, 255, 0],
    ],
    np.int64,
)
NUM_CLASSES = len(COLORS) - 1
README_HINT = manual.README_HINT
VALIDATION_EVERY = 20


dataset_error = manual.dataset_error


def read_index(manual_dir: str) -> dict[str, list[str]]:
    """Image file names per split (see the module docstring)."""
    root = os.path.join(manual_dir, SUBDIR)
    names = {}
    for part in ("train", "query", "gallery"):
        path = os.path.join(root, f"DeepFashion_segmentation_{part}.json")
        if not os.path.isfile(path):
            raise dataset_error(
                f"DeepFashion file {path} does not exist; unpack the In-shop Clothes Retrieval "
                f"Benchmark's segmentation annotations into data.deepfashion.manual_dir "
                f"({README_HINT})."
            )
        try:
            with open(path, encoding="utf-8") as f:
                names[part] = [image["file_name"] for image in json.load(f)["images"]]
        except (ValueError, KeyError, TypeError) as error:
            raise dataset_error(f"{path} is not a segmentation index ({error}).") from error
    train = names["train"]
    return {
        "train": [n for i, n in enumerate(train) if i % VALIDATION_EVERY],
        "validation": train[::VALIDATION_EVERY],
        "test": names["query"] + names["gallery"],
    }


def decode_labels(rgb: np.ndarray, path: str) -> np.ndarray:
    """Labels `[h, w]` (uint8) of a colour-coded `_segment.png`."""
    codes = rgb.astype(np.int64) @ np.array([65536, 256, 1])
    table = COLORS @ np.array([65536, 256, 1])
    order = np.argsort(table)
    position = np.searchsorted(table[order], codes)
    position = np.clip(position, 0, len(table) - 1)
    known = table[order][position] == codes
    if not known.all():
        bad = rgb[~known][0]
        raise dataset_error(
            f"{path} has the colour {tuple(int(v) for v in bad)}, which codes no DeepFashion label."
        )
    return order[position].astype(np.uint8)


def scale_and_pad(
    image: np.ndarray, labels: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Longer side -> `resolution`, padded at the bottom / right: image, labels, inside."""
    height, width = labels.shape
    scale = resolution / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    small = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    small_labels = augment.resize(labels, (new_h, new_w), method="nearest")
    out = np.zeros((resolution, resolution, 3), np.uint8)
    out_labels = np.zeros((resolution, resolution), np.uint8)
    inside = np.zeros((resolution, resolution), bool)
    out[:new_h, :new_w], out_labels[:new_h, :new_w], inside[:new_h, :new_w] = (
        small,
        small_labels,
        True,
    )
    return out, out_labels, inside


def to_example(index: int, image: np.ndarray, labels: np.ndarray, res: int) -> dict[str, Any]:
    """One scaled, padded image with its labels (see the module docstring)."""
    image, labels, inside = scale_and_pad(image, labels, res)
    present = np.bincount(labels.ravel(), minlength=NUM_CLASSES + 1)[1:] > 0
    scene = {
        "image": image,
        "segmentation": labels,
        "shape": np.arange(NUM_CLASSES, dtype=np.int32),
        "position": np.zeros((NUM_CLASSES, 2), np.float32),
    }
    example = planar_example(index, scene, visible=present)
    example["foreground"] = (labels > 0).astype(np.uint8)[..., None]
    example["pixel_valid"] = inside
    return example


class DeepFashion(manual.PartBuilder):
    """DeepFashion In-shop images with clothing / body labels and foreground."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Unpack the In-shop Clothes Retrieval Benchmark with its Anno/segmentation folder "
        f"into manual_dir; {README_HINT}."
    )
    DESCRIPTION = "DeepFashion In-shop clothing segmentation (ocjax)."
    read_index = staticmethod(read_index)

    def _generate_examples(self, manual_dir: str, files: list[str]) -> Iterator[tuple[int, dict]]:
        root = os.path.join(manual_dir, SUBDIR)
        for index, name in enumerate(files):
            image_path = os.path.join(root, name)
            label_path = os.path.join(root, name.replace(".jpg", "_segment.png"))
            for path in (image_path, label_path):
                if not os.path.isfile(path):
                    raise dataset_error(f"DeepFashion file {path} is missing ({README_HINT}).")
            with Image.open(image_path) as image, Image.open(label_path) as label:
                rgb = np.asarray(image.convert("RGB"))
                labels = decode_labels(np.asarray(label.convert("RGB")), label_path)
            yield index, to_example(index, rgb, labels, self.builder_config.resolution)


def deepfashion_sources(
    data_dir: str, *, manual_dir: str, resolution: int, max_objects: int
) -> dict[str, Any]:
    """Converts the DeepFashion segmentation from `manual_dir` on first use, then opens it."""
    if max_objects < NUM_CLASSES:
        raise ValueError(
            f"DeepFashion has {NUM_CLASSES} labelled classes but data.max_objects is "
            f"{max_objects}; set it to at least {NUM_CLASSES}."
        )
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    read_index(manual_dir)
    builder = DeepFashion(
        config=known_config(DeepFashion, manual.ResolutionConfig.make(resolution)),
        data_dir=data_dir,
        file_format="array_record",
    )
    return manual.prepare(builder, manual_dir, "DeepFashion", manual.cache_dir(data_dir, builder))
