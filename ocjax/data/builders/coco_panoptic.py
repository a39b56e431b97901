"""tfds builder for COCO 2017 panoptic segmentation in the common ocjax scene structure.

Reads the official files from `manual_dir`::

    manual_dir/annotations/panoptic_train2017.json    manual_dir/train2017/*.jpg
    manual_dir/annotations/panoptic_train2017/*.png
    manual_dir/annotations/panoptic_val2017.json      manual_dir/val2017/*.jpg
    manual_dir/annotations/panoptic_val2017/*.png

and writes ArrayRecord splits `train` (train2017) and `validation` (val2017) into
`<data_dir>/coco_panoptic/<config name>/<version>/`, one example per annotated image, sorted
by image id. A panoptic PNG stores segment id `R + 256 G + 256^2 B` per pixel; id 0 is
unlabeled. Each id is one entry of the image's `segments_info`; its category's `isthing`
(from the file's `categories`) decides whether it is an object.

Thing segments are numbered 1.. by decreasing pixel count; the `max_objects` largest are
kept and the pixels of the others are id 0 in `segmentation` and 1 in `ignore`. Stuff
segments and unlabeled pixels are background (id 0, not ignored). Crowd thing segments
(`iscrowd` = 1) are background with `crowd="drop"` and objects with `crowd="keep"`.
`objects.shape` is the index of the category among the thing categories sorted by id (the
same index as the `coco` instances dataset); the other attributes are -1. Resize and crop
are those of `ocjax.data.builders.coco`.
"""

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from ocjax.data.builders import coco, manual
from ocjax.data.builders.coco import README_HINT, SPLIT_DIRS
from ocjax.data.builders.features import known_config


def annotation_path(manual_dir: str, split: str) -> str:
    """Path of the panoptic JSON of `split` ("train" or "validation") in `manual_dir`."""
    return os.path.join(manual_dir, "annotations", f"panoptic_{SPLIT_DIRS[split]}.json")


def mask_dir(manual_dir: str, split: str) -> str:
    """Folder of the panoptic PNGs of `split` in `manual_dir`."""
    return os.path.join(manual_dir, "annotations", f"panoptic_{SPLIT_DIRS[split]}")


def load_annotations(path: str) -> dict[str, Any]:
    """Reads a COCO panoptic JSON; DatasetError naming the file if it is missing or broken."""
    if not os.path.isfile(path):
        raise coco.dataset_error(
            f"COCO panoptic annotations {path} do not exist. Unpack "
            f"panoptic_annotations_trainval2017.zip into the manual directory ({README_HINT})."
        )
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError) as error:
        raise coco.dataset_error(
            f"COCO panoptic annotations {path} could not be parsed ({error}); download and "
            f"unpack them again ({README_HINT})."
        ) from error
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing or any("segments_info" not in a for a in data["annotations"][:1]):
        raise coco.dataset_error(
            f"COCO panoptic annotations {path} lack the key(s) {missing or ['segments_info']};"
            f" this is not a panoptic_*.json file. Use annotations/panoptic_*2017.json "
            f"({README_HINT})."
        )
    return data


def read_segment_ids(path: str) -> np.ndarray:
    """Segment ids int64 `[h, w]` (R + 256 G + 256^2 B) of a panoptic PNG; DatasetError if bad."""
    try:
        with Image.open(path) as png:
            rgb = np.asarray(png.convert("RGB")).astype(np.int64)
    except (OSError, ValueError) as error:
        raise coco.dataset_error(
            f"COCO panoptic PNG {path} is missing or unreadable ({error}); unpack the "
            f"{os.path.basename(os.path.dirname(path))}.zip of panoptic_annotations_trainval2017"
            f".zip into {os.path.dirname(os.path.dirname(path))} again ({README_HINT})."
        ) from error
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def thing_masks(
    segment_ids: np.ndarray, segments: list[dict], things: set[int], crowd: str
) -> tuple[list[np.ndarray], list[dict]]:
    """Bool masks `[h, w]` and `segments_info` entries of the thing segments that become objects.

    Raises ValueError if the PNG holds an id that `segments` does not list.
    """
    listed = {segment["id"] for segment in segments}
    unknown = set(np.unique(segment_ids).tolist()) - listed - {0}
    if unknown:
        raise ValueError(f"segment ids {sorted(unknown)} are not in segments_info")
    kept = [
        segment
        for segment in segments
        if segment["category_id"] in things and (crowd == "keep" or not segment.get("iscrowd", 0))
    ]
    return [segment_ids == segment["id"] for segment in kept], kept


class CocoPanoptic(coco.CocoInstances):
    """COCO 2017 images with per-pixel thing-instance ids from the panoptic annotations."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Unpack train2017.zip, val2017.zip and panoptic_annotations_trainval2017.zip (and the "
        "panoptic_{train,val}2017.zip inside it, into annotations/) from "
        f"https://cocodataset.org into manual_dir; {README_HINT}."
    )

    def _generate_examples(self, manual_dir: str, split: str) -> Iterator[tuple[int, dict]]:
        path = annotation_path(manual_dir, split)
        data = load_annotations(path)
        thing_ids = sorted(c["id"] for c in data["categories"] if c.get("isthing", 0))
        file_names = {record["id"]: record["file_name"] for record in data["images"]}
        annotations = sorted(data["annotations"], key=lambda a: a["image_id"])
        for index, annotation in enumerate(annotations):
            if annotation["image_id"] not in file_names:
                raise coco.dataset_error(
                    f"{path}: image id {annotation['image_id']} has a panoptic annotation but "
                    f"no entry in `images`; download the panoptic annotations again "
                    f"({README_HINT})."
                )
            image_name = file_names[annotation["image_id"]]
            example = self._panoptic_example(
                manual_dir, split, path, annotation, image_name, thing_ids
            )
            yield index, example | {"index": index}

    def _panoptic_example(
        self,
        manual_dir: str,
        split: str,
        path: str,
        annotation: dict,
        image_name: str,
        thing_ids: list[int],
    ) -> dict[str, Any]:
        config = self.builder_config
        image = coco.read_image(os.path.join(manual_dir, SPLIT_DIRS[split], image_name))
        png = os.path.join(mask_dir(manual_dir, split), annotation["file_name"])
        segment_ids = read_segment_ids(png)
        height, width = image.shape[:2]
        try:
            if segment_ids.shape != (height, width):
                raise ValueError(f"PNG size {segment_ids.shape} differs from the image's")
            masks, segments = thing_masks(
                segment_ids, annotation["segments_info"], set(thing_ids), config.crowd
            )
            category_index = [thing_ids.index(s["category_id"]) for s in segments]
        except (KeyError, TypeError, ValueError) as error:
            raise coco.dataset_error(
                f"{path} / {png}: the panoptic annotation of image id "
                f"{annotation.get('image_id')} is malformed ({type(error).__name__}: {error}); "
                f"download the panoptic annotations again ({README_HINT})."
            ) from error
        ids, ignore, kept = coco.instance_ids(masks, height, width, config.max_objects)
        image, (ids, ignore) = coco.resize_and_crop(image, [ids, ignore], config.resolution)
        return {
            "image": image,
            "segmentation": ids[..., None],
            "ignore": ignore[..., None],
            "objects": coco.objects_from_ids(ids, kept, segments, category_index),
        }


def coco_panoptic_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 128,
    max_objects: int = 32,
    crowd: str = "drop",
) -> dict[str, Any]:
    """Converts COCO 2017 panoptic from `manual_dir` on first use, then opens its 2 splits."""
    config = coco.CocoConfig.make(resolution, crowd, max_objects)
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    for split in SPLIT_DIRS:
        for path, isdir in (
            (annotation_path(manual_dir, split), False),
            (mask_dir(manual_dir, split), True),
        ):
            if not (os.path.isdir(path) if isdir else os.path.isfile(path)):
                raise coco.dataset_error(
                    f"COCO panoptic {'PNG folder' if isdir else 'annotations'} {path} does not "
                    f"exist. Unpack panoptic_annotations_trainval2017.zip into {manual_dir} and "
                    f"the panoptic_{SPLIT_DIRS[split]}.zip inside it into "
                    f"{os.path.dirname(path)} ({README_HINT})."
                )
    builder = CocoPanoptic(
        config=known_config(CocoPanoptic, config), data_dir=data_dir, file_format="array_record"
    )
    return manual.prepare(builder, manual_dir, "COCO panoptic", manual.cache_dir(data_dir, builder))
