"""tfds builder for ImageNet (ILSVRC-2012) in the folder layout the DINO, MoCo v3 and MAE
releases read (torchvision's `ImageFolder`)::

    manual_dir/train/n01440764/*.JPEG   ... one folder per class (1,000 WordNet ids)
    manual_dir/val/n01440764/*.JPEG     ... the 50,000 validation images sorted into the
                                            same folders (the usual `valprep.sh` step)

It writes ArrayRecord splits `train` and `validation` (val) into
`<data_dir>/imagenet/<config name>/<version>/`. A class's label is its folder's position
among the sorted training folders, as `ImageFolder` numbers them; images are read in
sorted order. Each image is resized so its short side is `resolution` and centre-cropped
to `resolution` x `resolution` (`resize` as for COCO: `bilinear` is PIL's, `bicubic`
PyTorch's tensor resampling) and stored as JPEG (TensorFlow's encoder at its default quality, 95), which keeps the 1.28 million
training images at 256x256 near 25 GB. The crops of self-supervised pretraining
(`data.crops`) are drawn from that stored square, where the releases crop the original
image. `images_per_class` keeps the first N images (sorted) of every class of both
splits: a subset for a small machine.

ImageNet has no object masks: `segmentation` is all background and an image holds no
objects, so the mask metrics (FG-ARI, mBO) have no image to score and are absent; the
class is kept as `label`.
"""

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ocjax.data.builders import coco, manual
from ocjax.data.builders.features import known_config, planar_example, scene_features

README_HINT = manual.README_HINT
SPLIT_DIRS = {"train": "train", "validation": "val"}
EXTENSIONS = (".jpeg", ".jpg", ".png")

dataset_error = manual.dataset_error


def _images(folder: str) -> list[str]:
    """The image files of one class folder, sorted."""
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(EXTENSIONS))


def read_index(manual_dir: str, images_per_class: int | None = None) -> dict[str, Any]:
    """`{"classes": [wnid, ...], split: [(relative path, label), ...]}` of the folder layout,
    checked: both split folders exist, every validation class is a training class, and no
    image lies outside a class folder."""
    index: dict[str, Any] = {}
    for split, name in SPLIT_DIRS.items():
        root = os.path.join(manual_dir, name)
        if not os.path.isdir(root):
            raise dataset_error(
                f"ImageNet folder {root} does not exist; unpack ILSVRC2012_img_train.tar and "
                f"ILSVRC2012_img_val.tar into {manual_dir}/train and /val, one folder per "
                f"class ({README_HINT})."
            )
        loose = [f for f in os.listdir(root) if f.lower().endswith(EXTENSIONS)]
        if loose:
            raise dataset_error(
                f"{root} holds {len(loose)} images outside class folders (e.g. {loose[0]}); "
                "sort them into one folder per WordNet id first (the validation images: "
                f"valprep.sh or LOC_val_solution.csv) ({README_HINT})."
            )
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if split == "train":
            if not classes:
                raise dataset_error(f"{root} has no class folders ({README_HINT}).")
            index["classes"] = classes
            labels = {wnid: i for i, wnid in enumerate(classes)}
        unknown = sorted(set(classes) - set(labels))
        if unknown:
            raise dataset_error(
                f"{root} has class folders that train/ lacks: {unknown[:3]}; both splits "
                f"must use the same WordNet ids ({README_HINT})."
            )
        index[split] = [
            (os.path.join(name, wnid, f), labels[wnid])
            for wnid in classes
            for f in _images(os.path.join(root, wnid))[:images_per_class]
        ]
    return index


def to_example(index: int, image: np.ndarray, label: int, resolution: int, resize: str) -> dict:
    """One image resized and centre-cropped (see the module docstring), with no objects."""
    square, _ = coco.resize_and_crop(image, [], resolution, resize)
    scene = {
        "image": square,
        "segmentation": np.zeros((resolution, resolution), np.uint8),
        "shape": np.zeros((0,), np.int32),
        "position": np.zeros((0, 2), np.float32),
    }
    return planar_example(index, scene) | {"label": label}


@dataclasses.dataclass(eq=False)
class ImageNetConfig(tfds.core.BuilderConfig):
    """A conversion: output resolution, resampling and the images kept per class."""

    resolution: int = 256
    resize: str = "bilinear"
    images_per_class: int | None = None

    @classmethod
    def make(
        cls, resolution: int, resize: str = "bilinear", images_per_class: int | None = None
    ) -> "ImageNetConfig":
        """The config of these options, named after them."""
        if resolution < 1:
            raise ValueError(f"data.resolution must be >= 1, got {resolution}.")
        if resize not in coco.RESIZE_METHODS:
            raise ValueError(
                f"data.imagenet.resize is {resize!r}; use one of {coco.RESIZE_METHODS}."
            )
        if images_per_class is not None and images_per_class < 1:
            raise ValueError(
                f"data.imagenet.images_per_class must be >= 1 or None, got {images_per_class}."
            )
        subset = "" if images_per_class is None else f"_per-class-{images_per_class}"
        return cls(
            name=f"res{resolution}_resize-{resize}{subset}",
            resolution=resolution,
            resize=resize,
            images_per_class=images_per_class,
        )


class ImageNet(tfds.core.GeneratorBasedBuilder):
    """ILSVRC-2012 images with their class, in the ocjax scene structure (no objects)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}  # noqa: RUF012
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Unpack ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (image-net.org) into "
        f"manual_dir/train and manual_dir/val, one folder per class; {README_HINT}."
    )
    BUILDER_CONFIGS = [ImageNetConfig.make(256)]  # noqa: RUF012

    def _info(self) -> tfds.core.DatasetInfo:
        res = self.builder_config.resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description="ImageNet (ILSVRC-2012) in the ocjax scene structure.",
            disable_shuffling=True,
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3), encoding_format="jpeg"),
                tfds.features.Image(shape=(res, res, 1)),
                label=np.int64,
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = str(dl_manager.manual_dir)
        index = read_index(manual_dir, self.builder_config.images_per_class)
        return {split: self._generate_examples(manual_dir, index[split]) for split in SPLIT_DIRS}

    def _generate_examples(
        self, manual_dir: str, records: list[tuple[str, int]]
    ) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        for i, (path, label) in enumerate(records):
            with Image.open(os.path.join(manual_dir, path)) as image:
                rgb = np.asarray(image.convert("RGB"))
            yield i, to_example(i, rgb, label, config.resolution, config.resize)


def imagenet_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 256,
    max_objects: int = 1,
    resize: str = "bilinear",
    images_per_class: int | None = None,
) -> dict[str, Any]:
    """Converts ImageNet from the class folders in `manual_dir` on first use, then opens
    train and validation (`max_objects` pads the empty object lists)."""
    del max_objects  # ImageNet images hold no annotated objects.
    config = ImageNetConfig.make(resolution, resize, images_per_class)
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    builder = ImageNet(
        config=known_config(ImageNet, config), data_dir=data_dir, file_format="array_record"
    )
    if not builder.is_prepared():  # A wrong layout is named before any work; once only.
        read_index(manual_dir, images_per_class)
    return manual.prepare(builder, manual_dir, "ImageNet", manual.cache_dir(data_dir, builder))
