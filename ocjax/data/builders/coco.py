"""tfds builder for COCO 2017 instance masks in the common ocjax scene structure.

Reads the official files from `manual_dir`::

    manual_dir/annotations/instances_train2017.json   manual_dir/train2017/*.jpg
    manual_dir/annotations/instances_val2017.json     manual_dir/val2017/*.jpg

and writes ArrayRecord splits `train` (train2017) and `validation` (val2017) into
`<data_dir>/coco_instances/<config name>/<version>/`, one example per image, images sorted
by id. Masks are decoded without pycocotools: polygons are filled with PIL's ImageDraw
(pixel centres, so edges may differ from pycocotools by one pixel), RLE (uncompressed
`counts` lists, as crowd annotations use, and compressed strings) in numpy.

Each image is resized so its short side is `resolution` and centre-cropped to `resolution` x
`resolution` with torchvision's `Resize(resolution)` / `CenterCrop(resolution)` sizes and
offsets (the long side truncated, the offsets rounded half to even), resampled as
`resize` says: `bilinear` is PIL's (antialiased), as SPOT's release resizes its PIL images;
`bicubic` is PyTorch's on the [0, 1] image (no antialiasing), clamped to [0, 1], as
DINOSAUR's release (OCLF, torchvision 0.15) resizes its tensors; stored rounded to uint8.
The instance-id map is resized with nearest neighbour and cropped alike, to
`mask_resolution` if given (DINOSAUR and SPOT evaluate 224x224 inputs against masks at
320x320; predicted masks are upsampled to the masks).

Every instance is kept and scored, as in both releases: instances are numbered 1.. by
decreasing area (largest first), and an image with more annotations than `max_objects`
(at most 254: ids are uint8) is an error naming the image and the value to set
(`coco_sources` checks every image before converting any). `objects.shape` is the index of
the category in the file's categories sorted by id and the other attributes are -1. Pixels
covered by more than one instance are id 0 in `segmentation` and 1 in `ignore` (uint8
`[h, w, 1]`): evaluation must skip them (SPEC §4: "pixels covered by more than one GT mask
ignored").

Crowd annotations: `crowd="drop"` removes them before anything else (their pixels become
background, unless another instance covers them), as DINOSAUR's evaluation does (OCLF
scores COCO on `val_nocrowd`, val2017 without its crowd annotations);
`crowd="keep"` treats each as one more instance (its overlaps with others ignored), as
SPOT's `COCO2017` reader does (it numbers every annotation of the image).
"""

import dataclasses
import json
import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from ocjax.data import augment
from ocjax.data.builders import manual
from ocjax.data.builders.features import int_vector, known_config, scene_features

README_HINT = manual.README_HINT
SPLIT_DIRS = {"train": "train2017", "validation": "val2017"}
CROWD_RULES = ("drop", "keep")
RESIZE_METHODS = ("bilinear", "bicubic")
MAX_OBJECTS = 254  # Instance ids are uint8.
CUBIC_A = -0.75  # PyTorch's bicubic kernel coefficient (PIL's is -0.5).


dataset_error = manual.dataset_error


def annotation_path(manual_dir: str, split: str) -> str:
    """Path of the instances JSON of `split` ("train" or "validation") in `manual_dir`."""
    return os.path.join(manual_dir, "annotations", f"instances_{SPLIT_DIRS[split]}.json")


def load_annotations(path: str) -> dict[str, Any]:
    """Reads a COCO instances JSON; DatasetError naming the file if it is missing or broken."""
    if not os.path.isfile(path):
        raise dataset_error(
            f"COCO annotations {path} do not exist. Download annotations_trainval2017"
            f".zip and unpack it into the manual directory ({README_HINT})."
        )
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError) as error:
        raise dataset_error(
            f"COCO annotations {path} could not be parsed ({error}); download and "
            f"unpack them again ({README_HINT})."
        ) from error
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise dataset_error(
            f"COCO annotations {path} lack the key(s) {missing}; this is not an "
            f"instances_*.json file. Use annotations/instances_*2017.json "
            f"({README_HINT})."
        )
    return data


def decode_rle_string(counts: str) -> list[int]:
    """Run lengths from COCO's compressed RLE string (6-bit chars, deltas from run i-2)."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = ord(counts[position]) - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Bool mask `[h, w]` from an RLE dict `{"size": [h, w], "counts": list or str}`."""
    height, width = rle["size"]
    counts = rle["counts"]
    runs = decode_rle_string(counts) if isinstance(counts, str) else list(counts)
    if sum(runs) != height * width or min(runs, default=0) < 0:
        raise ValueError(f"RLE runs sum to {sum(runs)}, expected {height * width}")
    values = np.arange(len(runs)) % 2 == 1  # Runs alternate 0s and 1s, starting with 0s.
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T  # Column-major, as COCO stores it.


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Bool mask `[height, width]` filling every polygon `[x1, y1, x2, y2, ...]`."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 6:
            draw.polygon([float(v) for v in polygon], fill=1, outline=1)
    return np.asarray(canvas, bool)


def annotation_mask(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Bool mask `[height, width]` of one annotation (polygons or RLE)."""
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    mask = rle_to_mask(segmentation)
    if mask.shape != (height, width):
        raise ValueError(f"RLE size {mask.shape} differs from the image's {(height, width)}")
    return mask


def instance_ids(
    masks: list[np.ndarray], height: int, width: int, max_objects: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Id map `[h, w]` uint8, ignore map `[h, w]` uint8 and kept mask indices, largest first.

    Ids 1.. go to the `max_objects` largest masks; overlaps and dropped masks are ignored.
    """
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    kept = order[:max_objects]
    ids = np.zeros((height, width), np.uint8)
    coverage = np.zeros((height, width), np.int32)
    for rank, index in enumerate(kept):
        ids[masks[index]] = rank + 1
        coverage += masks[index]
    ignore = coverage > 1
    for index in order[max_objects:]:
        ignore |= masks[index]
    ids[ignore] = 0
    return ids, ignore.astype(np.uint8), kept


def annotations_by_image(data: dict[str, Any], crowd: str) -> dict[int, list[dict]]:
    """Each image id's annotations in file order, crowd ones left out if `crowd` is "drop"."""
    by_image: dict[int, list[dict]] = {}
    for annotation in data["annotations"]:
        if crowd == "keep" or not annotation.get("iscrowd", 0):
            by_image.setdefault(annotation["image_id"], []).append(annotation)
    return by_image


def check_instance_counts(
    by_image: dict[int, list[dict]], images: list[dict], path: str, max_objects: int
) -> None:
    """DatasetError naming the image with the most annotations if it has over `max_objects`."""
    if not by_image:
        return
    image_id, annotations = max(by_image.items(), key=lambda item: len(item[1]))
    count = len(annotations)
    if count <= max_objects:
        return
    name = next((r["file_name"] for r in images if r["id"] == image_id), "not listed")
    fix = (
        f"set data.max_objects to at least {count}"
        if count <= MAX_OBJECTS
        else f"ids are uint8, so at most {MAX_OBJECTS} fit: remove annotations of that image"
    )
    raise dataset_error(
        f"{path}: image id {image_id} (file {name}) has {count} instances but data.max_objects "
        f"is {max_objects}; every instance is scored, none dropped, so {fix} ({README_HINT})."
    )


def resized_shape(height: int, width: int, resolution: int) -> tuple[int, int]:
    """`(new_h, new_w)` with the short side `resolution` and the long side truncated, as
    torchvision's `Resize(resolution)` computes it."""
    short, long = sorted((height, width))
    new_long = int(resolution * long / short)
    return (resolution, new_long) if height <= width else (new_long, resolution)


def resize_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 `[height, width, c]` from uint8 `[h, w, c]`: PyTorch's bicubic interpolation
    (`align_corners=False`, no antialiasing), clamped to the value range and rounded."""
    rows, row_weights = _cubic_taps(image.shape[0], height)
    cols, col_weights = _cubic_taps(image.shape[1], width)
    values = np.einsum("ok,okwc->owc", row_weights, image.astype(np.float64)[rows])
    values = np.einsum("ok,hokc->hoc", col_weights, values[:, cols])
    return np.rint(np.clip(values, 0, 255)).astype(np.uint8)


def _cubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices `[out_size, 4]` (edges repeated) and their weights `[out_size, 4]` of
    PyTorch's bicubic resampling: half-pixel centres, Keys' kernel with a = -0.75."""
    source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    first = np.floor(source).astype(np.intp)
    taps = first[:, None] + np.arange(-1, 3)
    distance = np.abs(source[:, None] - taps)
    a = CUBIC_A
    near = ((a + 2) * distance - (a + 3)) * distance**2 + 1
    far = ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
    weights = np.where(distance <= 1, near, np.where(distance < 2, far, 0.0))
    return np.clip(taps, 0, in_size - 1), weights


def resize_and_crop(
    image: np.ndarray, label_maps: list[np.ndarray], resolution: int, method: str = "bilinear"
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Short side -> `resolution`, centre crop, as torchvision's `Resize` and `CenterCrop`:
    image `[r, r, 3]` uint8 (`method` "bilinear": PIL's; "bicubic": `resize_bicubic`),
    label maps `[r, r]` (nearest neighbour)."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {method!r}; use one of {RESIZE_METHODS}.")
    new_h, new_w = resized_shape(*image.shape[:2], resolution)
    top, left = round((new_h - resolution) / 2), round((new_w - resolution) / 2)
    if method == "bicubic":
        resized = resize_bicubic(image, new_h, new_w)
    else:
        resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    window = (slice(top, top + resolution), slice(left, left + resolution))
    maps = [augment.resize(m, (new_h, new_w), method="nearest")[window] for m in label_maps]
    return resized[window], maps


@dataclasses.dataclass(eq=False)
class CocoConfig(tfds.core.BuilderConfig):
    """Output resolution, crowd rule, image resampling and the most instances an image holds."""

    resolution: int = 128
    crowd: str = "drop"
    max_objects: int = 32
    mask_resolution: int = 128
    resize: str = "bilinear"

    @classmethod
    def make(
        cls,
        resolution: int,
        crowd: str,
        max_objects: int,
        mask_resolution: int | None = None,
        resize: str = "bilinear",
    ) -> "CocoConfig":
        """Checks the options and names the config after every value."""
        if crowd not in CROWD_RULES:
            raise ValueError(f"data.coco.crowd is {crowd!r}; use one of {CROWD_RULES}.")
        if resize not in RESIZE_METHODS:
            raise ValueError(f"data.coco.resize is {resize!r}; use one of {RESIZE_METHODS}.")
        mask_resolution = mask_resolution or resolution
        if resolution < 1 or mask_resolution < 1 or not 1 <= max_objects <= MAX_OBJECTS:
            raise ValueError(
                "COCO needs resolution and mask_resolution >= 1 and 1 <= max_objects <= "
                f"{MAX_OBJECTS}, got {resolution}, {mask_resolution} and {max_objects}."
            )
        name = f"res{resolution}_crowd-{crowd}_max{max_objects}"
        if mask_resolution != resolution:
            name += f"_mask{mask_resolution}"
        return cls(
            name=f"{name}_resize-{resize}",
            resolution=resolution,
            crowd=crowd,
            max_objects=max_objects,
            mask_resolution=mask_resolution,
            resize=resize,
        )


class CocoInstances(tfds.core.GeneratorBasedBuilder):
    """COCO 2017 images with per-pixel instance ids and category indices."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Every instance kept; torchvision's resize sizes and crop offsets; `resize`.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Unpack train2017.zip, val2017.zip and annotations_trainval2017.zip from "
        f"https://cocodataset.org into manual_dir; {README_HINT}."
    )
    BUILDER_CONFIGS = [CocoConfig.make(128, "drop", 32)]

    def _info(self) -> tfds.core.DatasetInfo:
        res, mask = self.builder_config.resolution, self.builder_config.mask_resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description="COCO 2017 instance masks in the ocjax scene structure.",
            disable_shuffling=True,
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(mask, mask, 1)),
                objects={
                    "num_pixels": int_vector(),
                    "category_id": int_vector(),
                    "is_crowd": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
                },
                ignore=tfds.features.Image(shape=(mask, mask, 1)),
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = str(dl_manager.manual_dir)
        return {split: self._generate_examples(manual_dir, split) for split in SPLIT_DIRS}

    def _generate_examples(self, manual_dir: str, split: str) -> Iterator[tuple[int, dict]]:
        path = annotation_path(manual_dir, split)
        data = load_annotations(path)
        categories = sorted(category["id"] for category in data["categories"])
        by_image = annotations_by_image(data, self.builder_config.crowd)
        images = sorted(data["images"], key=lambda record: record["id"])
        for index, record in enumerate(images):
            annotations = by_image.get(record["id"], [])
            yield (
                index,
                self._example(manual_dir, split, path, record, annotations, categories)
                | {"index": index},
            )

    def _example(
        self,
        manual_dir: str,
        split: str,
        path: str,
        record: dict,
        annotations: list[dict],
        categories: list[int],
    ) -> dict[str, Any]:
        config = self.builder_config
        check_instance_counts({record["id"]: annotations}, [record], path, config.max_objects)
        image = read_image(os.path.join(manual_dir, SPLIT_DIRS[split], record["file_name"]))
        height, width = image.shape[:2]
        try:
            masks = [annotation_mask(a, height, width) for a in annotations]
            category_index = [categories.index(a["category_id"]) for a in annotations]
        except (KeyError, TypeError, ValueError) as error:
            raise dataset_error(
                f"{path}: an annotation of image id {record['id']} is malformed "
                f"({type(error).__name__}: {error}); download the annotations "
                f"again ({README_HINT})."
            ) from error
        ids, ignore, kept = instance_ids(masks, height, width, config.max_objects)
        _, (ids, ignore) = resize_and_crop(image, [ids, ignore], config.mask_resolution)
        image, _ = resize_and_crop(image, [], config.resolution, config.resize)
        return {
            "image": image,
            "segmentation": ids[..., None],
            "ignore": ignore[..., None],
            "objects": objects_from_ids(ids, kept, annotations, category_index),
        }


def objects_from_ids(
    ids: np.ndarray, kept: list[int], annotations: list[dict], category_index: list[int]
) -> dict[str, np.ndarray]:
    """Per-object arrays `[n]` (and zero positions `[n, 3]`) for the kept annotations."""
    count = len(kept)
    num_pixels = np.bincount(ids.ravel(), minlength=count + 1)[1 : count + 1].astype(np.int32)
    none = np.full(count, -1, np.int32)
    return {
        "shape": np.array([category_index[i] for i in kept], np.int32).reshape(count),
        "color": none,
        "material": none,
        "size": none,
        "num_pixels": num_pixels,
        "category_id": np.array([annotations[i]["category_id"] for i in kept], np.int32).reshape(
            count
        ),
        "is_crowd": np.array([bool(annotations[i].get("iscrowd", 0)) for i in kept], bool).reshape(
            count
        ),
        "visible": num_pixels > 0,
        "position": np.zeros((count, 3), np.float32),
    }


def read_image(path: str) -> np.ndarray:
    """RGB uint8 `[h, w, 3]` of an image file; DatasetError naming it if missing or broken."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise dataset_error(
            f"COCO image {path} is missing or unreadable ({error}); unpack the "
            f"image archive again ({README_HINT})."
        ) from error


def coco_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 128,
    max_objects: int = 32,
    crowd: str = "drop",
    mask_resolution: int | None = None,
    resize: str = "bilinear",
) -> dict[str, Any]:
    """Converts COCO 2017 from `manual_dir` on first use, then opens train and validation
    (masks at `mask_resolution`, default `resolution`; images resampled by `resize`)."""
    config = CocoConfig.make(resolution, crowd, max_objects, mask_resolution, resize)
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    for split in SPLIT_DIRS:
        path = annotation_path(manual_dir, split)
        if not os.path.isfile(path):
            raise dataset_error(
                f"COCO annotations {path} do not exist. Unpack "
                f"annotations_trainval2017.zip into {manual_dir} ({README_HINT})."
            )
    builder = CocoInstances(
        config=known_config(CocoInstances, config), data_dir=data_dir, file_format="array_record"
    )
    if not builder.is_prepared():  # Every image's instance count, before any is converted.
        for split in SPLIT_DIRS:
            path = annotation_path(manual_dir, split)
            data = load_annotations(path)
            by_image = annotations_by_image(data, crowd)
            check_instance_counts(by_image, data["images"], path, max_objects)
    return manual.prepare(builder, manual_dir, "COCO", manual.cache_dir(data_dir, builder))
