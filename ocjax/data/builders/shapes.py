"""tensorflow-datasets builder for the procedurally rendered Shapes datasets (2/3/4Shapes, ...).

Scenes come from `ocjax.data.generators.shapes.render_shapes` and are written on first use
into `<data_dir>/shapes/<config name>/<version>/` as ArrayRecord files. Storage:

* `image`: float32 `[h, w, c]` in [0, 1], exactly as rendered (zlib-compressed, so the mostly
  empty images stay small and colours and depths keep their exact values);
* `labels`: int32 `[h, w]` as rendered: 0 background, k object k, -1 overlap of unordered
  objects (the official Shapes label maps);
* `segmentation`: uint8 `[h, w, 1]` = `labels` with overlap pixels set to 0, so it holds
  only ids 0..N as the pipeline expects; `pixel_valid` bool `[h, w]` is False on overlap
  pixels, which the metrics leave out as the official evaluation does;
* `objects`: `shape` ids, `color` palette ids (-1 for greyscale variants), `material` and
  `size` -1, `visible` (the object owns at least one labelled pixel), `position` zeros.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from ocjax.data.builders.clevr_like import SPLITS, scene_seed
from ocjax.data.builders.features import scene_features
from ocjax.data.generators import shapes


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
    """Variant (a key of `shapes.VARIANTS`), image size, split sizes and seed of one dataset."""

    variant: str = "4shapes"
    resolution: int = 32
    num_train: int = 50_000
    num_validation: int = 10_000
    num_test: int = 10_000
    seed: int = 0

    @classmethod
    def make(
        cls,
        variant: str,
        resolution: int,
        num_train: int,
        num_validation: int,
        num_test: int,
        seed: int = 0,
    ) -> "ShapesConfig":
        """Builds a config whose name encodes every value, so each variant has its own cache."""
        if variant not in shapes.VARIANTS:
            raise ValueError(
                f"Unknown data.shapes.variant {variant!r}; use one of {sorted(shapes.VARIANTS)}."
            )
        sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(
                    f"data.shapes.{key} is {value}; every split needs at least one image."
                )
        name = f"{variant}_res{resolution}_n{num_train}-{num_validation}-{num_test}_seed{seed}"
        return cls(
            name=name,
            variant=variant,
            resolution=resolution,
            num_train=num_train,
            num_validation=num_validation,
            num_test=num_test,
            seed=seed,
        )

    @property
    def render_options(self) -> dict:
        """Keyword arguments of `render_shapes` for this variant at this resolution."""
        return {**shapes.VARIANTS[self.variant], "resolution": self.resolution}

    @property
    def num_channels(self) -> int:
        """Image channels: 1 grey, 3 RGB, 4 RGB-D."""
        options = self.render_options
        return 1 + 2 * bool(options.get("rgb")) + bool(options.get("depth"))

    def split_size(self, split: str) -> int:
        """Number of images in `split`."""
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[
            split
        ]


class Shapes(tfds.core.GeneratorBasedBuilder):
    """Shapes images with label maps (overlap marked) and per-object shape ids."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [ShapesConfig.make("4shapes", 32, 50_000, 10_000, 10_000)]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        res, channels = config.resolution, config.num_channels
        zlib = tfds.features.Encoding.ZLIB
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedurally rendered Shapes images (ocjax).",
            features=scene_features(
                tfds.features.Tensor(shape=(res, res, channels), dtype=np.float32, encoding=zlib),
                tfds.features.Tensor(shape=(res, res, 1), dtype=np.uint8, encoding=zlib),
                labels=tfds.features.Tensor(shape=(res, res), dtype=np.int32, encoding=zlib),
                pixel_valid=tfds.features.Tensor(shape=(res, res), dtype=np.bool_, encoding=zlib),
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: images are rendered.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        for i in range(config.split_size(split)):
            scene = shapes.render_shapes(scene_seed(config.seed, split, i), **config.render_options)
            yield i, to_example(i, scene)


def to_example(index: int, scene: dict[str, np.ndarray]) -> dict:
    """Arranges a `render_shapes` result as a tfds example (see the module docstring)."""
    labels = scene["labels"]
    num_objects = len(scene["shape"])
    unset = np.full(num_objects, -1, np.int32)
    return {
        "index": index,
        "image": scene["image"],
        "labels": labels,
        "segmentation": np.maximum(labels, 0).astype(np.uint8)[..., None],
        "pixel_valid": labels >= 0,
        "objects": {
            "shape": scene["shape"],
            "color": scene.get("color", unset),
            "material": unset,
            "size": unset,
            "visible": np.array([(labels == k + 1).any() for k in range(num_objects)], bool),
            "position": np.zeros((num_objects, 3), np.float32),
        },
    }
