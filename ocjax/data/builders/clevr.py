"""tfds builder for CLEVR v1.0 (Johnson et al. 2017) scenes with object attributes, no masks.

Reads the official release from `manual_dir`, either unpacked or as the archive itself::

    manual_dir/CLEVR_v1.0/scenes/CLEVR_{train,val}_scenes.json
    manual_dir/CLEVR_v1.0/images/{train,val}/CLEVR_{train,val}_XXXXXX.png
    or manual_dir/CLEVR_v1.0.zip (the same paths inside; read in place, never unpacked)

and writes ArrayRecord splits `train` (70,000 scenes) and `validation` (15,000) into
`<data_dir>/clevr_v1/<config name>/<version>/`, in the scene files' order. CLEVR's `test` images
have no scene file, so there is no `test` split.

Offline: tfds' own `clevr` builder is not used. Given `CLEVR_v1.0.zip` in a manual directory
it runs offline, but it hashes the 19 GB file and rejects any other checksum (so no small
fixture can test it), unpacks the whole archive into its download directory, needs the
question files and labels `test` scenes with no objects. This builder reads only the scene
JSONs and the images, from the directory or straight from the zip, and uses the feature
names of the common ocjax structure.

Each image (480 x 320) is resized so its short side is `resolution` and centre-cropped to
`resolution` x `resolution` by `ocjax.data.builders.coco.resize_and_crop` (the side columns,
80 of 480 on each side, are cut). `segmentation` and `ignore` are zeros and `has_masks` is
False, so mask metrics must skip this dataset. `objects.shape`, `color`, `material` and
`size` are indices into the name orders of `ocjax.data.generators.clevr_like`;
`position` is the scene's `3d_coords`, `pixel_coords` (x, y, depth) and `rotation` (degrees)
are as in the scene file, in the original 480 x 320 frame. `visible` is whether the object's
centre pixel lies inside the crop. `clevr6=True` keeps scenes with at most 6 objects.
"""

import dataclasses
import io
import json
import os
import zipfile
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ocjax.data.builders import coco, preparing
from ocjax.data.builders.features import known_config, scene_features
from ocjax.data.generators import clevr_like

README_HINT = "README section Datasets"
ROOT, ARCHIVE = "CLEVR_v1.0", "CLEVR_v1.0.zip"
SPLIT_NAMES = {"train": "train", "validation": "val"}
MAX_SCENE_OBJECTS = 10
ATTRIBUTES = {
    "shape": clevr_like.SHAPES,
    "color": clevr_like.COLORS,
    "material": clevr_like.MATERIALS,
    "size": clevr_like.SIZES,
}


def scenes_member(split: str) -> str:
    """Path of the scene JSON of `split` ("train" or "validation") inside `CLEVR_v1.0/`."""
    name = SPLIT_NAMES[split]
    return f"{ROOT}/scenes/CLEVR_{name}_scenes.json"


def locate(manual_dir: str) -> str:
    """The `CLEVR_v1.0/` directory or `CLEVR_v1.0.zip` in `manual_dir`; DatasetError if neither."""
    directory, archive = os.path.join(manual_dir, ROOT), os.path.join(manual_dir, ARCHIVE)
    if os.path.isdir(directory):
        return directory
    if os.path.isfile(archive):
        return archive
    raise coco.dataset_error(
        f"CLEVR v1.0 directory {directory} (or archive {archive}) does not exist. Download "
        f"CLEVR_v1.0.zip and put it, or the CLEVR_v1.0/ folder unpacked from it, into "
        f"{manual_dir} (see {README_HINT})."
    )


class ClevrFiles:
    """Reads files of the release by their path inside `CLEVR_v1.0/`, from the folder or zip."""

    def __init__(self, source: str):
        self.source = source
        self.archive = zipfile.ZipFile(source) if source.endswith(".zip") else None

    def path(self, member: str) -> str:
        """Where `member` (e.g. `CLEVR_v1.0/images/val/x.png`) is, for error messages."""
        if self.archive is not None:
            return f"{self.source}:{member}"
        return os.path.join(os.path.dirname(self.source), *member.split("/"))

    def read(self, member: str) -> bytes:
        """Bytes of `member`; DatasetError naming its path if it is missing or unreadable."""
        try:
            if self.archive is not None:
                return self.archive.read(member)
            with open(self.path(member), "rb") as file:
                return file.read()
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise coco.dataset_error(
                f"CLEVR v1.0 file {self.path(member)} is missing or unreadable ({error}); "
                f"download CLEVR_v1.0.zip again (see {README_HINT})."
            ) from error

    def close(self) -> None:
        """Closes the zip, if any."""
        if self.archive is not None:
            self.archive.close()


def scene_objects(scene: dict, crop_rows: np.ndarray, crop_cols: np.ndarray) -> dict[str, Any]:
    """Per-object arrays `[n]` (positions and pixel_coords `[n, 3]`) of one scene.

    `crop_rows` / `crop_cols` are the source rows / columns the output crop shows.
    Raises KeyError or ValueError for an unknown attribute name or a missing field.
    """
    objects = scene["objects"]
    count = len(objects)
    out: dict[str, Any] = {
        key: np.array([names.index(o[key]) for o in objects], np.int32).reshape(count)
        for key, names in ATTRIBUTES.items()
    }
    pixel = np.array([o["pixel_coords"] for o in objects], np.float32).reshape(count, 3)
    inside_x = (pixel[:, 0] >= crop_cols.min()) & (pixel[:, 0] < crop_cols.max() + 1)
    inside_y = (pixel[:, 1] >= crop_rows.min()) & (pixel[:, 1] < crop_rows.max() + 1)
    return out | {
        "visible": inside_x & inside_y,
        "position": np.array([o["3d_coords"] for o in objects], np.float32).reshape(count, 3),
        "pixel_coords": pixel,
        "rotation": np.array([o["rotation"] for o in objects], np.float32).reshape(count),
    }


@dataclasses.dataclass(eq=False)
class ClevrConfig(tfds.core.BuilderConfig):
    """Output resolution and whether only scenes with at most 6 objects are kept."""

    resolution: int = 128
    clevr6: bool = False

    @classmethod
    def make(cls, resolution: int, clevr6: bool) -> "ClevrConfig":
        """Checks the options and names the config after every value."""
        if resolution < 1:
            raise ValueError(f"CLEVR v1.0 needs resolution >= 1, got {resolution}.")
        name = f"res{resolution}_{'clevr6' if clevr6 else 'all'}"
        return cls(name=name, resolution=resolution, clevr6=clevr6)


class ClevrV1(tfds.core.GeneratorBasedBuilder):
    """CLEVR v1.0 images with per-object attributes and no masks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put CLEVR_v1.0.zip from https://cs.stanford.edu/people/jcjohns/clevr/ (or the "
        f"CLEVR_v1.0/ folder unpacked from it) into manual_dir; see {README_HINT}."
    )
    BUILDER_CONFIGS: ClassVar[list[ClevrConfig]] = [ClevrConfig.make(128, False)]

    def _info(self) -> tfds.core.DatasetInfo:
        res = self.builder_config.resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description="CLEVR v1.0 scenes with object attributes in the ocjax structure.",
            disable_shuffling=True,
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(res, res, 1)),
                objects={
                    "pixel_coords": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
                    "rotation": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                },
                ignore=tfds.features.Image(shape=(res, res, 1)),
                has_masks=np.bool_,
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        source = locate(str(dl_manager.manual_dir))
        return {split: self._generate_examples(source, split) for split in SPLIT_NAMES}

    def _generate_examples(self, source: str, split: str) -> Iterator[tuple[int, dict]]:
        files = ClevrFiles(source)
        try:
            yield from self._examples(files, split)
        finally:
            files.close()

    def _examples(self, files: ClevrFiles, split: str) -> Iterator[tuple[int, dict]]:
        member = scenes_member(split)
        try:
            scenes = json.loads(files.read(member))["scenes"]
        except (KeyError, TypeError, ValueError) as error:
            raise coco.dataset_error(
                f"CLEVR v1.0 scene file {files.path(member)} could not be parsed ({error}); "
                f"download CLEVR_v1.0.zip again (see {README_HINT})."
            ) from error
        limit = 6 if self.builder_config.clevr6 else MAX_SCENE_OBJECTS
        for index, scene in enumerate(scenes):
            if len(scene.get("objects", ())) > limit:
                continue
            image_member = f"{ROOT}/images/{SPLIT_NAMES[split]}/{scene.get('image_filename')}"
            yield index, self._example(files, image_member, member, scene) | {"index": index}

    def _example(self, files: ClevrFiles, image_member: str, member: str, scene: dict) -> dict:
        res = self.builder_config.resolution
        try:
            with Image.open(io.BytesIO(files.read(image_member))) as png:
                image = np.asarray(png.convert("RGB"))
        except OSError as error:
            raise coco.dataset_error(
                f"CLEVR v1.0 image {files.path(image_member)} is unreadable ({error}); "
                f"download CLEVR_v1.0.zip again (see {README_HINT})."
            ) from error
        height, width = image.shape[:2]
        rows = np.broadcast_to(np.arange(height, dtype=np.int32)[:, None], (height, width))
        cols = np.broadcast_to(np.arange(width, dtype=np.int32)[None, :], (height, width))
        image, (rows, cols) = coco.resize_and_crop(image, [rows, cols], res)
        try:
            objects = scene_objects(scene, rows, cols)
        except (KeyError, TypeError, ValueError) as error:
            raise coco.dataset_error(
                f"{files.path(member)}: scene {scene.get('image_filename')} has a malformed "
                f"object ({type(error).__name__}: {error}); download CLEVR_v1.0.zip again "
                f"(see {README_HINT})."
            ) from error
        zeros = np.zeros((res, res, 1), np.uint8)
        return {
            "image": image,
            "segmentation": zeros,
            "ignore": zeros,
            "has_masks": False,
            "objects": objects,
        }


def clevr_sources(
    data_dir: str,
    *,
    manual_dir: str,
    resolution: int = 128,
    max_objects: int = 10,
    clevr6: bool = False,
) -> dict[str, Any]:
    """Converts CLEVR v1.0 from `manual_dir` on first use, then opens train and validation."""
    config = ClevrConfig.make(resolution, clevr6)
    limit = 6 if clevr6 else MAX_SCENE_OBJECTS
    if max_objects < limit:
        raise ValueError(
            f"CLEVR v1.0 scenes hold up to {limit} objects but data.max_objects is "
            f"{max_objects}; raise data.max_objects (or set clevr6=True for <= 6 objects)."
        )
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    locate(manual_dir)
    builder = ClevrV1(
        config=known_config(ClevrV1, config), data_dir=data_dir, file_format="array_record"
    )
    cache = os.path.join(data_dir, "clevr_v1", config.name)
    try:
        preparing.download_and_prepare(
            builder, download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
        return dict(builder.as_data_source())
    except (ImportError, AttributeError, NameError, TypeError, RuntimeError):
        raise  # Bugs, a broken install, or a DatasetError that already says what to fix.
    except Exception as error:  # pylint: disable=broad-except
        raise coco.dataset_error(
            f"The CLEVR v1.0 cache {cache} could not be written or read "
            f"({type(error).__name__}: {error}). Delete that directory and rerun."
        ) from error
