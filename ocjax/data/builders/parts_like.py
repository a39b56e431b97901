"""tensorflow-datasets builder for the embedded part figures (`data.name = "parts_like"`).

Figures come from `ocjax.data.generators.figures.render_figure` and are written on first use
into `<data_dir>/parts_like/<config name>/<version>/` as ArrayRecord files, in the structure
every ocjax dataset shares, with the figure's parts as its objects: `image` uint8
`[r, r, 3]`, `segmentation` uint8 `[r, r, 1]` (0 background, k the k-th of
`figures.PARTS`), per part `shape` (its index in `PARTS`), `visible` (whether any pixel
shows it), `position` (centroid x, y in [0, 1], and 0), `color`, `material`, `size` = -1;
plus `foreground` uint8 `[r, r, 1]`, the object mask the part segmenter takes as input.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from ocjax.data.builders.clevr_like import SPLITS, scene_seed
from ocjax.data.builders.features import planar_example, scene_features
from ocjax.data.generators import figures


@dataclasses.dataclass(eq=False)
class PartsLikeConfig(tfds.core.BuilderConfig):
    """Resolution, split sizes and seed of one rendered set of part figures."""

    resolution: int = 64
    num_train: int = 20_000
    num_validation: int = 1_000
    num_test: int = 1_000
    seed: int = 0

    @classmethod
    def make(
        cls, resolution: int, num_train: int, num_validation: int, num_test: int, seed: int = 0
    ) -> "PartsLikeConfig":
        """Builds a config whose name encodes every value, so each variant has its own cache."""
        if resolution < 32:
            raise ValueError(
                f"data.resolution is {resolution}; part figures need at least 32 pixels a side "
                "for their limbs to stay visible."
            )
        sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(
                    f"data.parts_like.{key} is {value}; every split needs at least one image."
                )
        name = f"res{resolution}_n{num_train}-{num_validation}-{num_test}_seed{seed}"
        return cls(name=name, resolution=resolution, seed=seed, **sizes)

    def split_size(self, split: str) -> int:
        """Number of images in `split`."""
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[
            split
        ]


class PartsLike(tfds.core.GeneratorBasedBuilder):
    """One articulated figure per image with per-pixel part labels and its foreground."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [PartsLikeConfig.make(64, 20_000, 1_000, 1_000)]

    def _info(self) -> tfds.core.DatasetInfo:
        res = self.builder_config.resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedurally rendered articulated figures with part labels (ocjax).",
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(res, res, 1)),
                foreground=tfds.features.Image(shape=(res, res, 1)),
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: figures are rendered.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        for i in range(config.split_size(split)):
            figure = figures.render_figure(scene_seed(config.seed, split, i), config.resolution)
            yield i, to_example(i, figure)


def to_example(index: int, figure: dict[str, np.ndarray]) -> dict:
    """Arranges a `render_figure` result as a tfds example (see the module docstring)."""
    parts, r = figure["parts"], figure["parts"].shape[0]
    n = len(figures.PARTS)
    position = np.zeros((n, 2), np.float32)
    visible = np.zeros(n, bool)
    for k in range(n):
        rows, cols = np.nonzero(parts == k + 1)
        visible[k] = rows.size > 0
        if rows.size:
            position[k] = (cols.mean() + 0.5) / r, (rows.mean() + 0.5) / r
    scene = {
        "image": figure["image"],
        "segmentation": parts,
        "shape": np.arange(n, dtype=np.int32),
        "position": position,
    }
    example = planar_example(index, scene, visible=visible)
    example["foreground"] = figure["foreground"].astype(np.uint8)[..., None]
    return example
