"""tfds builders for the DeepMind multi-object datasets (Kabra et al. 2019).

Reads the official GZIP TFRecord files from `manual_dir` and writes ArrayRecord splits into
`<data_dir>/multi_object/<config name>/<version>/`, each example in the common ocjax
structure (`image` uint8 `[h, w, 3]`, `segmentation` uint8 `[h, w, 1]` with 0 = background
and k = object k, and per-object `objects`), so every model and metric reads every dataset.

Stored format (the official readers' feature descriptions, kept in `SPECS`): every `bytes`
field is a `BytesList` holding one single-byte string per uint8 element (the readers parse
it as a string tensor of the field's shape and `decode_raw` each element); every `float`
field is a `FloatList` of float32. Masks are 0/255 per entity; entity 0 is the background.
Multi-dSprites stores its masks entity-last (`[64, 64, entities, 1]`), the others
entity-first (`[entities, h, w, 1]`).

Conversion: the instance id of a pixel is the argmax over the entity masks. Objects are the
non-null entities after the background ones (`visibility` > 0, or a non-empty mask where
there is no `visibility`), numbered 1.. in entity order; null and background entities map to
id 0. `visible` means the object keeps at least one pixel after crop and resize (as in the
CLEVR-like scenes). Crop then resize: bilinear for the image, nearest for the id map.

Splits are consecutive runs of records in file order (`SPLIT_ORDER`): CLEVR with masks
train 70,000, validation 15,000, test 15,000 (the whole file); Multi-dSprites, Tetrominoes
and Objects Room train = the first 60,000, test = the next 320 (the Slot Attention / IODINE
evaluation images), validation = the next 1,000. Records after the last split are unused.
Each split stores its scenes in file order; `index` is the record's position in the file.
`object_limit` (CLEVR6: 6) drops scenes with more non-null objects after splitting, so a
scene's split never depends on the filter.

Assumed attribute codes (the official readers do not name them):
  * CLEVR with masks: code k >= 1 is the k-th name in `CLEVR_CODE_NAMES` (the order of the
    CLEVR generator's properties.json), 0 = no object; mapped to ocjax's name orders.
  * Multi-dSprites `shape` 1, 2, 3 (square, ellipse, heart as in dSprites) and Tetrominoes
    `shape` 1..19 are 1-based; stored as `shape - 1`. Colours are RGB values, not indices,
    so `color` is -1; `material` and `size` are -1 wherever a dataset has no such factor.
  * `position` is (x, y, z) for CLEVR, (x, y, 0) for Multi-dSprites and Tetrominoes, zeros
    for Objects Room.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

# TensorFlow reads the official TFRecords; imported on first use (`pip install ocjax[tf]`).
from tensorflow_datasets.core.utils.lazy_imports_utils import tensorflow as tf

from ocjax.data import augment
from ocjax.data.builders import preparing
from ocjax.data.builders.features import int_vector, known_config, scene_features
from ocjax.data.generators import clevr_like

SPLITS = ("train", "validation", "test")
README_HINT = "see README section Datasets"
CLEVR_CROP = (29, 221, 64, 256)

CLEVR_CODE_NAMES = {
    "shape": ("cube", "sphere", "cylinder"),
    "color": ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"),
    "material": ("rubber", "metal"),
    "size": ("large", "small"),
}
_OCJAX_NAMES = {
    "shape": clevr_like.SHAPES,
    "color": clevr_like.COLORS,
    "material": clevr_like.MATERIALS,
    "size": clevr_like.SIZES,
}


@dataclasses.dataclass(frozen=True)
class Field:
    """One stored feature: `kind` "bytes" (one uint8 per string) or "float" (float32)."""

    name: str
    kind: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """File name, schema, layout and split convention of one official dataset file."""

    name: str
    filename: str
    fields: tuple[Field, ...]
    num_entities: int
    background_entities: int
    split_order: tuple[str, ...]
    split_sizes: dict[str, int]
    attributes: Callable[[dict[str, np.ndarray], np.ndarray], dict[str, np.ndarray]]

    @property
    def schema(self) -> dict[str, Field]:
        """Fields by name."""
        return {field.name: field for field in self.fields}

    @property
    def max_objects(self) -> int:
        """Most foreground objects one scene can hold."""
        return self.num_entities - self.background_entities


def _lookup_table(key: str) -> np.ndarray:
    """Maps CLEVR-with-masks code `[0..n]` of attribute `key` to ocjax indices (0 -> -1)."""
    names = CLEVR_CODE_NAMES[key]
    return np.array([-1] + [_OCJAX_NAMES[key].index(name) for name in names], np.int32)


def _clevr_attributes(record: dict[str, np.ndarray], entities: np.ndarray) -> dict[str, np.ndarray]:
    """CLEVR attributes of `entities` `[n]`: ocjax indices `[n]` and x, y, z `[n, 3]`."""
    out = {}
    for key in CLEVR_CODE_NAMES:
        table = _lookup_table(key)
        codes = record[key][entities].astype(np.int64)
        bad = (codes < 1) | (codes >= len(table))
        if bad.any():
            raise ValueError(
                f"{key} code {int(codes[bad][0])} of a non-null object is not in "
                f"1..{len(table) - 1}"
            )
        out[key] = table[codes]
    out["position"] = np.stack([record[k][entities] for k in "xyz"], -1).astype(np.float32)
    return out


def _sprite_attributes(
    record: dict[str, np.ndarray], entities: np.ndarray
) -> dict[str, np.ndarray]:
    """Multi-dSprites / Tetrominoes attributes: 0-based shape `[n]`, (x, y, 0) `[n, 3]`."""
    none = np.full(len(entities), -1, np.int32)
    xy = np.stack([record["x"][entities], record["y"][entities]], -1)
    position = np.concatenate([xy, np.zeros((len(entities), 1))], -1).astype(np.float32)
    shape = np.rint(record["shape"][entities]).astype(np.int32) - 1
    return {
        "shape": shape,
        "color": none,
        "material": none,
        "size": none.copy(),
        "position": position,
    }


def _no_attributes(record: dict[str, np.ndarray], entities: np.ndarray) -> dict[str, np.ndarray]:
    """Objects Room has no factors: -1 attributes `[n]` and zero positions `[n, 3]`."""
    del record
    none = np.full(len(entities), -1, np.int32)
    return {
        "shape": none,
        "color": none,
        "material": none,
        "size": none,
        "position": np.zeros((len(entities), 3), np.float32),
    }


def _clevr_spec() -> DatasetSpec:
    """CLEVR with masks: 100k 240x320 scenes, 11 entities."""
    n, size = 11, (240, 320)
    fields = (
        Field("image", "bytes", size + (3,)),
        Field("mask", "bytes", (n,) + size + (1,)),
        *(Field(k, "float", (n,)) for k in ("x", "y", "z", "rotation")),
        Field("pixel_coords", "float", (n, 3)),
        *(Field(k, "bytes", (n,)) for k in ("size", "material", "shape", "color")),
        Field("visibility", "float", (n,)),
    )
    return DatasetSpec(
        "clevr_with_masks",
        "clevr_with_masks_train.tfrecords",
        fields,
        n,
        1,
        SPLITS,
        {"train": 70_000, "validation": 15_000, "test": 15_000},
        _clevr_attributes,
    )


_SPRITE_SPLITS = {"train": 60_000, "test": 320, "validation": 1_000}
_SPRITE_ORDER = ("train", "test", "validation")


def _dsprites_spec(variant: str, n: int) -> DatasetSpec:
    """Multi-dSprites `variant` with `n` entities: 64x64, masks stored entity-last."""
    channels = 1 if variant == "binarized" else 3
    fields = (
        Field("image", "bytes", (64, 64, channels)),
        Field("mask", "bytes", (64, 64, n, 1)),
        *(Field(k, "float", (n,)) for k in ("x", "y", "shape")),
        Field("color", "float", (n, channels)),
        *(Field(k, "float", (n,)) for k in ("visibility", "orientation", "scale")),
    )
    return DatasetSpec(
        f"multi_dsprites_{variant}",
        f"multi_dsprites_{variant}.tfrecords",
        fields,
        n,
        1,
        _SPRITE_ORDER,
        _SPRITE_SPLITS,
        _sprite_attributes,
    )


def _tetrominoes_spec() -> DatasetSpec:
    """Tetrominoes: 35x35, 4 entities (background + 3 pieces)."""
    n = 4
    fields = (
        Field("image", "bytes", (35, 35, 3)),
        Field("mask", "bytes", (n, 35, 35, 1)),
        *(Field(k, "float", (n,)) for k in ("x", "y", "shape")),
        Field("color", "float", (n, 3)),
        Field("visibility", "float", (n,)),
    )
    return DatasetSpec(
        "tetrominoes",
        "tetrominoes_train.tfrecords",
        fields,
        n,
        1,
        _SPRITE_ORDER,
        _SPRITE_SPLITS,
        _sprite_attributes,
    )


def _objects_room_spec() -> DatasetSpec:
    """Objects Room: 64x64, 7 masks; sky, floor and two wall halves are background."""
    n = 7
    fields = (Field("image", "bytes", (64, 64, 3)), Field("mask", "bytes", (n, 64, 64, 1)))
    return DatasetSpec(
        "objects_room",
        "objects_room_train.tfrecords",
        fields,
        n,
        4,
        _SPRITE_ORDER,
        _SPRITE_SPLITS,
        _no_attributes,
    )


SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _clevr_spec(),
        _dsprites_spec("binarized", 4),
        _dsprites_spec("colored_on_grayscale", 6),
        _dsprites_spec("colored_on_colored", 5),
        _tetrominoes_spec(),
        _objects_room_spec(),
    )
}


def encode_example(spec: DatasetSpec, values: dict[str, np.ndarray]) -> bytes:
    """Serialises `values` (one array per schema field, of its shape) in the official format."""
    feature = {}
    for field in spec.fields:
        array = np.asarray(values[field.name])
        if array.shape != field.shape:
            raise ValueError(f"{field.name} has shape {array.shape}, expected {field.shape}.")
        if field.kind == "bytes":
            items = [bytes((v,)) for v in array.astype(np.uint8).ravel().tolist()]
            feature[field.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=items))
        else:
            floats = tf.train.FloatList(value=array.astype(np.float32).ravel())
            feature[field.name] = tf.train.Feature(float_list=floats)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _parser(spec: DatasetSpec) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """TF function decoding one serialised record into arrays of the schema's shapes."""
    description = {
        f.name: tf.io.FixedLenFeature(f.shape, tf.string if f.kind == "bytes" else tf.float32)
        for f in spec.fields
    }

    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        record = tf.io.parse_single_example(serialized, description)
        for field in spec.fields:
            if field.kind == "bytes":
                raw = tf.io.decode_raw(record[field.name], tf.uint8)
                record[field.name] = tf.reshape(raw, field.shape)
        return record

    return parse


def read_records(
    spec: DatasetSpec, path: str, start: int, count: int
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yields `(record index, arrays)` for records `start .. start + count - 1` of `path`."""
    ds = tf.data.TFRecordDataset(path, compression_type="GZIP").skip(start).take(count)
    ds = ds.map(_parser(spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    index = start
    iterator = ds.as_numpy_iterator()
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            break
        except tf.errors.OpError as error:
            raise _error_class()(
                f"{path}: record {index} (0-based) could not be read or parsed as "
                f"{spec.name} ({type(error).__name__}: {error.message.splitlines()[0]}). "
                f"The file is truncated, corrupt or not {spec.filename}; download it again "
                f"({README_HINT})."
            ) from error
        yield index, record
        index += 1
    if index < start + count:
        raise _error_class()(
            f"{path} holds only {index} records, but the splits need records up to "
            f"{start + count}. The download is incomplete; fetch the whole file again, or "
            f"lower the split sizes ({README_HINT})."
        )


def _error_class() -> type[Exception]:
    """`ocjax.data.datasets.DatasetError`, imported late to avoid an import cycle."""
    from ocjax.data.datasets import DatasetError as error  # pylint: disable=import-outside-toplevel

    return error


def instance_ids(spec: DatasetSpec, record: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Id map `[h, w]` uint8 (0 = background, k = object k) and object entities `[n]`."""
    masks = record["mask"][..., 0]
    if spec.schema["mask"].shape[0] != spec.num_entities:
        masks = np.moveaxis(masks, -1, 0)
    entity_of_pixel = masks.argmax(axis=0)
    if "visibility" in record:
        non_null = record["visibility"] > 0
    else:
        non_null = masks.reshape(spec.num_entities, -1).any(axis=1)
    non_null[: spec.background_entities] = False
    entities = np.flatnonzero(non_null)
    ids = np.zeros(spec.num_entities, np.uint8)
    ids[entities] = np.arange(1, len(entities) + 1)
    return ids[entity_of_pixel], entities


def crop_and_resize(
    image: np.ndarray, ids: np.ndarray, crop: tuple[int, int, int, int] | None, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crops rows/cols `crop` = (top, bottom, left, right), resizes to `resolution` (0 = keep).

    Returns the image uint8 `[r, r, c]` (bilinear) and the id map `[r, r]` (nearest).
    """
    if crop is not None:
        top, bottom, left, right = crop
        image, ids = image[top:bottom, left:right], ids[top:bottom, left:right]
    if resolution:
        resized = augment.resize(image, resolution)
        image = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
        ids = augment.resize(ids, resolution, method="nearest")
    return image, ids


def convert(
    spec: DatasetSpec,
    record: dict[str, np.ndarray],
    crop: tuple[int, int, int, int] | None,
    resolution: int,
) -> dict[str, Any]:
    """Turns one decoded official record into the common ocjax example structure."""
    ids, entities = instance_ids(spec, record)
    image, ids = crop_and_resize(record["image"], ids, crop, resolution)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    num_pixels = np.bincount(ids.ravel(), minlength=len(entities) + 1)[1:].astype(np.int32)
    attributes = spec.attributes(record, entities)
    objects = {
        key: attributes[key].astype(np.int32) for key in ("shape", "color", "material", "size")
    }
    objects.update(position=attributes["position"], num_pixels=num_pixels, visible=num_pixels > 0)
    return {"image": image, "segmentation": ids[..., None], "objects": objects}


@dataclasses.dataclass(eq=False)
class MultiObjectConfig(tfds.core.BuilderConfig):
    """Dataset, crop, output resolution, object filter and split sizes of one variant."""

    dataset: str = "clevr_with_masks"
    crop: tuple[int, int, int, int] | None = None
    resolution: int = 0
    object_limit: int = 0
    num_train: int = 0
    num_validation: int = 0
    num_test: int = 0

    @classmethod
    def make(
        cls,
        dataset: str,
        *,
        crop: tuple[int, int, int, int] | None,
        resolution: int,
        object_limit: int,
        num_train: int,
        num_validation: int,
        num_test: int,
    ) -> "MultiObjectConfig":
        """Checks the options and names the config after every value (one cache each)."""
        _check_options(
            dataset, crop, resolution, object_limit, (num_train, num_validation, num_test)
        )
        crop_name = "-".join(map(str, crop)) if crop else "none"
        name = (
            f"{dataset}_crop{crop_name}_res{resolution or 'native'}_lim{object_limit}_"
            f"n{num_train}-{num_validation}-{num_test}"
        )
        return cls(
            name=name,
            dataset=dataset,
            crop=tuple(crop) if crop else None,
            resolution=resolution,
            object_limit=object_limit,
            num_train=num_train,
            num_validation=num_validation,
            num_test=num_test,
        )

    @property
    def spec(self) -> DatasetSpec:
        """The official file's spec."""
        return SPECS[self.dataset]

    def split_range(self, split: str) -> tuple[int, int]:
        """`(first record, record count)` of `split` in file order."""
        sizes = {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}
        start = 0
        for name in self.spec.split_order:
            if name == split:
                return start, sizes[name]
            start += sizes[name]
        raise KeyError(split)

    def output_size(self) -> tuple[int, int]:
        """`(height, width)` of the stored images."""
        if self.resolution:
            return self.resolution, self.resolution
        height, width = self.spec.schema["image"].shape[:2]
        if self.crop:
            height, width = self.crop[1] - self.crop[0], self.crop[3] - self.crop[2]
        return height, width


def _check_options(
    dataset: str,
    crop: tuple[int, int, int, int] | None,
    resolution: int,
    object_limit: int,
    sizes: tuple[int, int, int],
) -> None:
    """Raises ValueError naming the option that is out of range."""
    if dataset not in SPECS:
        raise ValueError(f"Unknown multi-object dataset {dataset!r}; use one of {sorted(SPECS)}.")
    height, width = SPECS[dataset].schema["image"].shape[:2]
    if crop is not None:
        top, bottom, left, right = crop
        if not (0 <= top < bottom <= height and 0 <= left < right <= width):
            raise ValueError(
                f"data.options.crop {tuple(crop)} (top, bottom, left, right) must "
                f"be a non-empty window inside the {height}x{width} image."
            )
    if resolution < 0:
        raise ValueError(
            f"data.resolution is {resolution}; use a positive size or 0 to keep the native size."
        )
    if object_limit < 0:
        raise ValueError(f"The object limit is {object_limit}; use 0 for no filter.")
    if min(sizes) < 1:
        raise ValueError(
            f"Split sizes (train, validation, test) {sizes}: every split needs at least one record."
        )


class MultiObject(tfds.core.GeneratorBasedBuilder):
    """DeepMind multi-object datasets converted to the common ocjax scene structure."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the official GZIP TFRecord file of the dataset (e.g. "
        "clevr_with_masks_train.tfrecords) from gs://multi-object-datasets/ into manual_dir; "
        f"{README_HINT}."
    )
    BUILDER_CONFIGS = [
        MultiObjectConfig.make(
            "clevr_with_masks",
            crop=CLEVR_CROP,
            resolution=128,
            object_limit=6,
            num_train=70_000,
            num_validation=15_000,
            num_test=15_000,
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        height, width = self.builder_config.output_size()
        return tfds.core.DatasetInfo(
            builder=self,
            description="DeepMind multi-object datasets in the ocjax scene structure.",
            disable_shuffling=True,
            features=scene_features(
                tfds.features.Image(shape=(height, width, 3)),
                tfds.features.Image(shape=(height, width, 1)),
                objects={"num_pixels": int_vector()},
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        path = official_file(str(dl_manager.manual_dir), self.builder_config.dataset)
        return {split: self._generate_examples(path, split) for split in SPLITS}

    def _generate_examples(self, path: str, split: str) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        spec = config.spec
        start, count = config.split_range(split)
        for index, record in read_records(spec, path, start, count):
            try:
                example = convert(spec, record, config.crop, config.resolution)
            except ValueError as error:
                raise _error_class()(
                    f"{path}: record {index} is malformed: {error}. Download "
                    f"the file again ({README_HINT})."
                ) from error
            if config.object_limit and len(example["objects"]["shape"]) > config.object_limit:
                continue
            example["index"] = index
            yield index, example


def official_file(manual_dir: str, dataset: str) -> str:
    """Path of `dataset`'s official file in `manual_dir`; DatasetError if it is missing."""
    path = os.path.join(os.path.abspath(os.path.expanduser(manual_dir)), SPECS[dataset].filename)
    if not os.path.isfile(path):
        raise _error_class()(
            f"{dataset}: the official file {path} does not exist. Download "
            f"{SPECS[dataset].filename} from gs://multi-object-datasets/ into {manual_dir} "
            f"({README_HINT})."
        )
    return path


def multi_object_sources(
    data_dir: str,
    *,
    dataset: str,
    manual_dir: str,
    resolution: int,
    max_objects: int,
    crop: tuple[int, int, int, int] | None = None,
    object_limit: int = 0,
    num_train: int | None = None,
    num_validation: int | None = None,
    num_test: int | None = None,
) -> dict[str, Any]:
    """Converts `dataset` from `manual_dir` on first use, then opens its ArrayRecord splits."""
    if dataset not in SPECS:
        raise ValueError(f"Unknown multi-object dataset {dataset!r}; use one of {sorted(SPECS)}.")
    official_file(manual_dir, dataset)  # The missing file first: it is the error that matters.
    spec = SPECS[dataset]
    limit = object_limit or spec.max_objects
    if max_objects < limit:
        raise ValueError(
            f"{dataset} scenes hold up to {limit} objects but data.max_objects "
            f"is {max_objects}; raise data.max_objects."
        )
    sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
    for key, value in sizes.items():
        sizes[key] = spec.split_sizes[key[4:]] if value is None else value
    config = MultiObjectConfig.make(
        dataset, crop=crop, resolution=resolution, object_limit=object_limit, **sizes
    )
    return _prepare(config, data_dir, manual_dir)


def _prepare(config: MultiObjectConfig, data_dir: str, manual_dir: str) -> dict[str, Any]:
    """Builds the ArrayRecord cache of `config` if needed and opens its splits."""
    error_class = _error_class()
    cache = os.path.join(data_dir, "multi_object", config.name)
    builder = MultiObject(
        config=known_config(MultiObject, config), data_dir=data_dir, file_format="array_record"
    )
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    try:
        preparing.download_and_prepare(builder, download_config=download_config)
        sources = builder.as_data_source()
    except error_class:
        raise
    except (ImportError, AttributeError, NameError, TypeError):
        raise
    except Exception as error:  # pylint: disable=broad-except
        raise error_class(
            f"The {config.dataset} cache {cache} could not be written or read "
            f"({type(error).__name__}: {error}). Delete that directory and rerun."
        ) from error
    return dict(sources)


def clevr_with_masks_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 128,
    max_objects: int = 10,
    clevr6: bool = False,
    crop: tuple[int, int, int, int] | None = CLEVR_CROP,
    num_train: int = 70_000,
    num_validation: int = 15_000,
    num_test: int = 15_000,
) -> dict[str, Any]:
    """CLEVR with masks splits; `clevr6` keeps scenes with <= 6 objects (visibility.sum() < 7)."""
    return multi_object_sources(
        data_dir,
        dataset="clevr_with_masks",
        manual_dir=manual_dir,
        resolution=resolution,
        max_objects=max_objects,
        crop=crop,
        object_limit=6 if clevr6 else 0,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
    )


def multi_dsprites_sources(
    data_dir: str,
    *,
    manual_dir: str,
    variant: str = "colored_on_grayscale",
    resolution: int = 0,
    max_objects: int = 5,
    num_train: int = 60_000,
    num_validation: int = 1_000,
    num_test: int = 320,
) -> dict[str, Any]:
    """Multi-dSprites `variant` (binarized, colored_on_grayscale, colored_on_colored) splits."""
    return multi_object_sources(
        data_dir,
        dataset=f"multi_dsprites_{variant}",
        manual_dir=manual_dir,
        resolution=resolution,
        max_objects=max_objects,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
    )


def tetrominoes_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 0,
    max_objects: int = 3,
    num_train: int = 60_000,
    num_validation: int = 1_000,
    num_test: int = 320,
) -> dict[str, Any]:
    """Tetrominoes splits (35x35 native, or resized to `resolution`)."""
    return multi_object_sources(
        data_dir,
        dataset="tetrominoes",
        manual_dir=manual_dir,
        resolution=resolution,
        max_objects=max_objects,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
    )


def objects_room_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 0,
    max_objects: int = 3,
    num_train: int = 60_000,
    num_validation: int = 1_000,
    num_test: int = 320,
) -> dict[str, Any]:
    """Objects Room splits; sky, floor and walls are background (id 0)."""
    return multi_object_sources(
        data_dir,
        dataset="objects_room",
        manual_dir=manual_dir,
        resolution=resolution,
        max_objects=max_objects,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
    )
