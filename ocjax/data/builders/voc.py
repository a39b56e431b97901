"""tfds builder for Pascal VOC 2012 instance and class masks in the common ocjax scene structure.

Reads the official files from `manual_dir`, either the unpacked `VOCtrainval_11-May-2012.tar`
(`manual_dir/VOCdevkit/VOC2012/`) or that `VOC2012/` directory itself::

    JPEGImages/<id>.jpg
    SegmentationObject/<id>.png      palette indices: 0 background, 1.. instances, 255 void
    SegmentationClass/<id>.png       palette indices: 0 background, 1..20 classes, 255 void
    ImageSets/Segmentation/val.txt   1,449 ids, every one with both masks
    ImageSets/Segmentation/train.txt 1,464 ids with masks, or `trainaug.txt`

and writes ArrayRecord splits `train` and `validation` into
`<data_dir>/pascal_voc/<config name>/<version>/`. DINOSAUR and SPOT train on `trainaug`
(10,582 ids: VOC 2012 train plus the SBD images, none in val; the list is not part of the
VOC archive, put it next to `train.txt`) and evaluate on `val`; `train_list="train"` uses
the official 1,464 instead.

Each image is resized so its short side is `resolution` and centre-cropped to `resolution` x
`resolution` as `ocjax.data.builders.coco.resize_and_crop` does it (torchvision's sizes and
offsets; `resize="bilinear"`: PIL's, as SPOT's `PascalVOC` reader; `"bicubic"`: PyTorch's,
as DINOSAUR's release); the masks likewise with nearest neighbour, to `mask_resolution` if
given (320 in the DINOSAUR / SPOT protocol at 224). Every instance is kept and scored:
instances are numbered 1.. by decreasing area, and an image with more than `max_objects`
stops the conversion with an error naming it. `objects.shape` is the class index 0..19
(`category_id` 1..20, VOC's order from aeroplane to tvmonitor), taken from
`SegmentationClass` at the instance's pixels. VOC instances do not overlap. Void pixels
(255, the outlines VOC leaves unlabelled) are background in `segmentation` as in SPOT's
release (`void="background"`), or also marked in `ignore` so that the metrics skip them
(`void="ignore"`). Training images without masks (most of `trainaug`) have no objects and
`ignore` everywhere.
"""

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ocjax.data.builders import coco, manual
from ocjax.data.builders.features import int_vector, known_config, scene_features

README_HINT = manual.README_HINT
NUM_CLASSES = 20
VOID = 255
TRAIN_LISTS = ("trainaug", "train")
VOID_RULES = ("background", "ignore")

dataset_error = manual.dataset_error


def voc_root(manual_dir: str) -> str:
    """The `VOC2012` directory in `manual_dir` (the directory itself or `VOCdevkit/VOC2012`)."""
    for root in (manual_dir, os.path.join(manual_dir, "VOCdevkit", "VOC2012")):
        if os.path.isdir(os.path.join(root, "JPEGImages")):
            return root
    raise dataset_error(
        f"No Pascal VOC 2012 in {manual_dir}: neither {manual_dir}/JPEGImages nor "
        f"{manual_dir}/VOCdevkit/VOC2012/JPEGImages exists. Unpack "
        f"VOCtrainval_11-May-2012.tar into data.pascal_voc.manual_dir ({README_HINT})."
    )


def read_ids(root: str, name: str) -> list[str]:
    """Image ids of `ImageSets/Segmentation/<name>.txt` (one id a line, or DeepLab's
    `/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`); DatasetError naming a missing list."""
    path = os.path.join(root, "ImageSets", "Segmentation", f"{name}.txt")
    if not os.path.isfile(path):
        hint = (
            " trainaug.txt is the 10,582-id list of VOC 2012 train + SBD that DINOSAUR and "
            "SPOT train on; put it there, or set data.pascal_voc.train_list='train'."
            if name == "trainaug"
            else ""
        )
        raise dataset_error(f"Pascal VOC image list {path} does not exist.{hint} ({README_HINT})")
    with open(path, encoding="utf-8") as f:  # "<id>" or DeepLab's "/JPEGImages/<id>.jpg ...".
        return [
            os.path.splitext(os.path.basename(line.split()[0]))[0] for line in f if line.strip()
        ]


def read_palette_png(path: str) -> np.ndarray:
    """Palette indices `[h, w]` uint8 of a VOC mask PNG; DatasetError if it is not one."""
    try:
        with Image.open(path) as image:
            if image.mode != "P":
                raise ValueError(f"mode {image.mode}, not a palette ('P') image")
            return np.asarray(image, np.uint8)
    except (OSError, ValueError) as error:
        raise dataset_error(
            f"Pascal VOC mask {path} is missing or not a VOC palette PNG ({error}); "
            f"unpack the archive again ({README_HINT})."
        ) from error


def instances(
    objects: np.ndarray, classes: np.ndarray, max_objects: int, void: str
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Instance ids `[h, w]` (1.. by decreasing area), ignore `[h, w]` uint8 and each
    instance's class id (1..20), from VOC's object and class index maps `[h, w]`; ValueError
    if there are more than `max_objects` instances."""
    labels = [int(v) for v in np.unique(objects) if v not in (0, VOID)]
    if len(labels) > max_objects:
        raise ValueError(
            f"{len(labels)} instances but data.max_objects is {max_objects}; every instance is "
            f"scored, none dropped, so set data.max_objects to at least {len(labels)}"
        )
    areas = {v: int((objects == v).sum()) for v in labels}
    order = sorted(labels, key=lambda v: (-areas[v], v))
    ids = np.zeros(objects.shape, np.uint8)
    ignore = objects == VOID if void == "ignore" else np.zeros(objects.shape, bool)
    instance_classes = []
    for rank, label in enumerate(order):
        pixels = objects == label
        counts = np.bincount(classes[pixels], minlength=VOID + 1)[1 : NUM_CLASSES + 1]
        if counts.sum() == 0:
            raise ValueError(f"instance {label} has no class pixels")
        ids[pixels] = rank + 1
        instance_classes.append(int(counts.argmax()) + 1)
    return ids, ignore.astype(np.uint8), instance_classes


@dataclasses.dataclass(eq=False)
class VocConfig(tfds.core.BuilderConfig):
    """Output resolutions, training list, void rule, image resampling and the most instances
    an image holds."""

    resolution: int = 224
    mask_resolution: int = 224
    max_objects: int = 32
    train_list: str = "trainaug"
    void: str = "background"
    resize: str = "bilinear"

    @classmethod
    def make(
        cls,
        resolution: int,
        max_objects: int,
        train_list: str = "trainaug",
        void: str = "background",
        mask_resolution: int | None = None,
        resize: str = "bilinear",
    ) -> "VocConfig":
        """Checks the options and names the config after every value."""
        if train_list not in TRAIN_LISTS:
            raise ValueError(
                f"data.pascal_voc.train_list is {train_list!r}; use one of {TRAIN_LISTS}."
            )
        if void not in VOID_RULES:
            raise ValueError(f"data.pascal_voc.void is {void!r}; use one of {VOID_RULES}.")
        if resize not in coco.RESIZE_METHODS:
            raise ValueError(
                f"data.pascal_voc.resize is {resize!r}; use one of {coco.RESIZE_METHODS}."
            )
        mask_resolution = mask_resolution or resolution
        if resolution < 1 or mask_resolution < 1 or not 1 <= max_objects <= coco.MAX_OBJECTS:
            raise ValueError(
                "Pascal VOC needs resolution and mask_resolution >= 1 and 1 <= max_objects "
                f"<= {coco.MAX_OBJECTS}, got {resolution}, {mask_resolution} and {max_objects}."
            )
        name = f"res{resolution}_mask{mask_resolution}_max{max_objects}_{train_list}_void-{void}"
        return cls(
            name=f"{name}_resize-{resize}",
            resolution=resolution,
            mask_resolution=mask_resolution,
            max_objects=max_objects,
            train_list=train_list,
            void=void,
            resize=resize,
        )


class PascalVoc(tfds.core.GeneratorBasedBuilder):
    """Pascal VOC 2012 images with per-pixel instance ids and class indices."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {  # noqa: RUF012
        "1.0.0": "First release.",
        "1.1.0": "Every instance kept; torchvision's resize sizes and crop offsets; `resize`.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Unpack VOCtrainval_11-May-2012.tar (host.robots.ox.ac.uk/pascal/VOC/voc2012) into "
        f"manual_dir; {README_HINT}."
    )
    BUILDER_CONFIGS = [VocConfig.make(224, 32)]  # noqa: RUF012

    def _info(self) -> tfds.core.DatasetInfo:
        res, mask = self.builder_config.resolution, self.builder_config.mask_resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description="Pascal VOC 2012 instance and class masks in the ocjax scene structure.",
            disable_shuffling=True,
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(mask, mask, 1)),
                objects={"num_pixels": int_vector(), "category_id": int_vector()},
                ignore=tfds.features.Image(shape=(mask, mask, 1)),
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = voc_root(str(dl_manager.manual_dir))
        lists = {"train": self.builder_config.train_list, "validation": "val"}
        return {
            split: self._generate_examples(root, read_ids(root, name), split == "validation")
            for split, name in lists.items()
        }

    def _generate_examples(
        self, root: str, ids: list[str], needs_masks: bool
    ) -> Iterator[tuple[int, dict]]:
        for index, image_id in enumerate(ids):
            yield index, self._example(root, image_id, needs_masks) | {"index": index}

    def _example(self, root: str, image_id: str, needs_masks: bool) -> dict[str, Any]:
        config = self.builder_config
        path = os.path.join(root, "JPEGImages", f"{image_id}.jpg")
        try:
            with Image.open(path) as file:
                image = np.asarray(file.convert("RGB"))
        except (OSError, ValueError) as error:
            raise dataset_error(
                f"Pascal VOC image {path} is missing or unreadable ({error}); unpack the "
                f"archive again ({README_HINT})."
            ) from error
        height, width = image.shape[:2]
        object_path = os.path.join(root, "SegmentationObject", f"{image_id}.png")
        if needs_masks or os.path.isfile(object_path):
            objects = read_palette_png(object_path)
            classes = read_palette_png(os.path.join(root, "SegmentationClass", f"{image_id}.png"))
            if objects.shape != (height, width) or classes.shape != (height, width):
                raise dataset_error(
                    f"Pascal VOC masks of {image_id} are {objects.shape} and {classes.shape}, "
                    f"the image {(height, width)}; unpack the archive again ({README_HINT})."
                )
            try:
                ids, ignore, categories = instances(
                    objects, classes, config.max_objects, config.void
                )
            except ValueError as error:
                raise dataset_error(f"Pascal VOC masks of {image_id}: {error}.") from error
        else:  # No ground truth for this training image: nothing to score.
            ids, categories = np.zeros((height, width), np.uint8), []
            ignore = np.ones((height, width), np.uint8)
        _, (ids, ignore) = coco.resize_and_crop(image, [ids, ignore], config.mask_resolution)
        image, _ = coco.resize_and_crop(image, [], config.resolution, config.resize)
        return {
            "image": image,
            "segmentation": ids[..., None],
            "ignore": ignore[..., None],
            "objects": objects_from_ids(ids, categories),
        }


def objects_from_ids(ids: np.ndarray, classes: list[int]) -> dict[str, np.ndarray]:
    """Per-object arrays `[n]` (zero positions `[n, 3]`) of the instances' classes."""
    count = len(classes)
    num_pixels = np.bincount(ids.ravel(), minlength=count + 1)[1 : count + 1].astype(np.int32)
    category = np.array(classes, np.int32).reshape(count)
    none = np.full(count, -1, np.int32)
    return {
        "shape": category - 1,
        "color": none,
        "material": none,
        "size": none,
        "num_pixels": num_pixels,
        "category_id": category,
        "visible": num_pixels > 0,
        "position": np.zeros((count, 3), np.float32),
    }


def voc_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 224,
    max_objects: int = 32,
    train_list: str = "trainaug",
    void: str = "background",
    mask_resolution: int | None = None,
    resize: str = "bilinear",
) -> dict[str, Any]:
    """Converts Pascal VOC 2012 from `manual_dir` on first use, then opens train
    (`train_list`) and validation (val; masks at `mask_resolution`, default `resolution`;
    images resampled by `resize`)."""
    config = VocConfig.make(resolution, max_objects, train_list, void, mask_resolution, resize)
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    root = voc_root(manual_dir)
    for name in (train_list, "val"):  # Missing lists are named before any work.
        read_ids(root, name)
    builder = PascalVoc(
        config=known_config(PascalVoc, config), data_dir=data_dir, file_format="array_record"
    )
    return manual.prepare(builder, manual_dir, "Pascal VOC", manual.cache_dir(data_dir, builder))
