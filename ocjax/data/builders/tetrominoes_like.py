"""tensorflow-datasets builder for the embedded Tetrominoes (`data.name = "tetrominoes_like"`).

Scenes come from `ocjax.data.generators.tetrominoes.render_tetrominoes` and are written on
first use into `<data_dir>/tetrominoes_like/<config name>/<version>/` as ArrayRecord files,
in the structure every ocjax dataset shares: `image` uint8 `[35, 35, 3]`, `segmentation`
uint8 `[35, 35, 1]` (0 background, k piece k), per piece `shape` (0..18, fixed tetromino),
`color` (0..5, `COLOR_NAMES`), `visible` (always True: pieces never overlap), `position`
(x, y, 0) and `material`, `size` = -1.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from ocjax.data.builders.clevr_like import SPLITS, scene_seed
from ocjax.data.builders.features import planar_example, scene_features
from ocjax.data.generators import tetrominoes


@dataclasses.dataclass(eq=False)
class TetrominoesLikeConfig(tfds.core.BuilderConfig):
    """Split sizes and seed of one rendered Tetrominoes dataset."""

    num_train: int = 60_000
    num_validation: int = 1_000
    num_test: int = 320
    seed: int = 0

    @classmethod
    def make(
        cls, num_train: int, num_validation: int, num_test: int, seed: int = 0
    ) -> "TetrominoesLikeConfig":
        """Builds a config whose name encodes every value, so each variant has its own cache."""
        sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(
                    f"data.tetrominoes_like.{key} is {value}; every split needs at least one image."
                )
        name = f"n{num_train}-{num_validation}-{num_test}_seed{seed}"
        return cls(name=name, seed=seed, **sizes)

    def split_size(self, split: str) -> int:
        """Number of images in `split`."""
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[
            split
        ]


class TetrominoesLike(tfds.core.GeneratorBasedBuilder):
    """Three non-overlapping tetrominoes on black, with instance masks and piece factors."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [TetrominoesLikeConfig.make(60_000, 1_000, 320)]

    def _info(self) -> tfds.core.DatasetInfo:
        res = tetrominoes.RESOLUTION
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedurally rendered Tetrominoes (ocjax), DeepMind Tetris distribution.",
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(res, res, 1)),
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: scenes are rendered.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        for i in range(config.split_size(split)):
            scene = tetrominoes.render_tetrominoes(scene_seed(config.seed, split, i))
            yield i, to_example(i, scene)


def to_example(index: int, scene: dict[str, np.ndarray]) -> dict:
    """Arranges a `render_tetrominoes` result as a tfds example (see the module docstring)."""
    return planar_example(index, scene, color=scene["color"])
