"""tensorflow-datasets builder for the embedded, procedurally rendered CLEVR-like scenes.

The data are rendered on first use (`download_and_prepare`) into
`<data_dir>/clevr_like/<config name>/<version>/` as ArrayRecord files and read back with
random access, so the same tfds code path serves these scenes and the real datasets.
"""

import dataclasses
import multiprocessing
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from ocjax.data.builders.features import int_vector, scene_features
from ocjax.data.generators import clevr_like

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(eq=False)
class ClevrLikeConfig(tfds.core.BuilderConfig):
    """Image size, object-count range, split sizes and seed of one rendered dataset."""

    resolution: int = 128
    min_objects: int = 3
    max_objects: int = 10
    num_train: int = 10_000
    num_validation: int = 1_000
    num_test: int = 1_000
    seed: int = 0

    @classmethod
    def make(
        cls,
        resolution: int,
        min_objects: int,
        max_objects: int,
        num_train: int,
        num_validation: int,
        num_test: int,
        seed: int = 0,
    ) -> "ClevrLikeConfig":
        """Builds a config whose name encodes every value, so each variant has its own cache."""
        sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(
                    f"data.options.{key} is {value}; every split needs at least one scene."
                )
        name = (
            f"res{resolution}_obj{min_objects}-{max_objects}_"
            f"n{num_train}-{num_validation}-{num_test}_seed{seed}"
        )
        return cls(
            name=name,
            resolution=resolution,
            min_objects=min_objects,
            max_objects=max_objects,
            num_train=num_train,
            num_validation=num_validation,
            num_test=num_test,
            seed=seed,
        )

    def split_size(self, split: str) -> int:
        """Number of scenes in `split`."""
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[
            split
        ]


def scene_seed(base_seed: int, split: str, index: int) -> int:
    """Seed of scene `index` of `split`: independent streams per split and base seed."""
    sequence = np.random.SeedSequence([base_seed, SPLITS.index(split), index])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def _render(args: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """Renders one scene in a worker process: args = (seed, resolution, min, max objects)."""
    seed, resolution, min_objects, max_objects = args
    return clevr_like.render_scene(seed, resolution, min_objects, max_objects)


class ClevrLike(tfds.core.GeneratorBasedBuilder):
    """CLEVR-like scenes with instance masks, object attributes and visibility."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        ClevrLikeConfig.make(128, 3, 6, 10_000, 1_000, 1_000),
        ClevrLikeConfig.make(128, 3, 10, 10_000, 1_000, 1_000),
    ]
    NUM_WORKERS = os.cpu_count() or 1

    def _info(self) -> tfds.core.DatasetInfo:
        res = self.builder_config.resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedurally rendered CLEVR-like scenes (ocjax).",
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(res, res, 1)),
                objects={
                    "num_pixels": int_vector(),
                    "rotation": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                    "pixel_coords": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
                },
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: scenes are rendered.
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        n = config.split_size(split)
        jobs = [
            (
                scene_seed(config.seed, split, i),
                config.resolution,
                config.min_objects,
                config.max_objects,
            )
            for i in range(n)
        ]
        with multiprocessing.get_context("spawn").Pool(self.NUM_WORKERS) as pool:
            for i, scene in enumerate(pool.imap(_render, jobs, chunksize=32)):
                yield i, _to_example(i, scene)


def _to_example(index: int, scene: dict[str, np.ndarray]) -> dict:
    """Arranges a rendered scene as a tfds example."""
    objects = {
        k: scene[k]
        for k in (
            "shape",
            "color",
            "material",
            "size",
            "num_pixels",
            "visible",
            "rotation",
            "position",
            "pixel_coords",
        )
    }
    return {
        "index": index,
        "image": scene["image"],
        "segmentation": scene["segmentation"][..., None],
        "objects": objects,
    }
