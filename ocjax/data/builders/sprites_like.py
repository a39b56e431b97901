"""tensorflow-datasets builder for the embedded Multi-dSprites-like scenes
(`data.name = "multi_dsprites_like"`).

Scenes come from `ocjax.data.generators.sprites.render_sprites` and are written on first use
into `<data_dir>/multi_dsprites_like/<config name>/<version>/` as ArrayRecord files in the
structure every ocjax dataset shares: `image` uint8 `[res, res, 3]`, `segmentation` uint8
`[res, res, 1]`, per sprite `shape` (0 square, 1 ellipse, 2 heart), `visible`, `position`
(x, y, 0), `color` / `material` / `size` = -1 (colours are RGB values, stored as `rgb`),
plus `scale` and `orientation`.
"""

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from ocjax.data.builders.clevr_like import SPLITS, scene_seed
from ocjax.data.builders.features import planar_example, scene_features
from ocjax.data.generators import sprites


@dataclasses.dataclass(eq=False)
class SpritesLikeConfig(tfds.core.BuilderConfig):
    """Resolution, sprite count range, background, split sizes and seed of one dataset."""

    resolution: int = 64
    min_sprites: int = 2
    max_sprites: int = 5
    background: str = "colored"
    num_train: int = 60_000
    num_validation: int = 1_000
    num_test: int = 320
    seed: int = 0

    @classmethod
    def make(cls, **values) -> "SpritesLikeConfig":
        """Builds a config whose name encodes every value, so each variant has its own cache."""
        for key in ("num_train", "num_validation", "num_test"):
            if values[key] < 1:
                raise ValueError(
                    f"data.multi_dsprites_like.{key} is {values[key]}; every split needs at "
                    "least one image."
                )
        if values["background"] not in sprites.BACKGROUNDS:
            raise ValueError(
                f"Unknown data.multi_dsprites_like.background {values['background']!r}; use "
                f"one of {sprites.BACKGROUNDS}."
            )
        name = (
            f"res{values['resolution']}_sprites{values['min_sprites']}-{values['max_sprites']}_"
            f"{values['background']}_n{values['num_train']}-{values['num_validation']}-"
            f"{values['num_test']}_seed{values['seed']}"
        )
        return cls(name=name, **values)

    def split_size(self, split: str) -> int:
        """Number of images in `split`."""
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[
            split
        ]


class SpritesLike(tfds.core.GeneratorBasedBuilder):
    """Multi-dSprites-like scenes with occlusion-correct instance masks and sprite factors."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        SpritesLikeConfig.make(
            resolution=64,
            min_sprites=2,
            max_sprites=5,
            background="colored",
            num_train=60_000,
            num_validation=1_000,
            num_test=320,
            seed=0,
        )
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        res = self.builder_config.resolution
        floats = tfds.features.Tensor(shape=(None,), dtype=np.float32)
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedurally rendered Multi-dSprites-like scenes (ocjax).",
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(res, res, 1)),
                objects={
                    "scale": floats,
                    "orientation": floats,
                    "rgb": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
                },
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: scenes are rendered.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        for i in range(config.split_size(split)):
            scene = sprites.render_sprites(
                scene_seed(config.seed, split, i),
                resolution=config.resolution,
                min_sprites=config.min_sprites,
                max_sprites=config.max_sprites,
                background=config.background,
            )
            yield i, to_example(i, scene)


def to_example(index: int, scene: dict[str, np.ndarray]) -> dict:
    """Arranges a `render_sprites` result as a tfds example (see the module docstring)."""
    return planar_example(
        index,
        scene,
        visible=scene["visible"],
        scale=scene["scale"],
        orientation=scene["orientation"],
        rgb=scene["color"],
    )
