"""What every reader of user-downloaded files shares: its config, errors and preparation."""

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from ocjax.data.builders import preparing
from ocjax.data.builders.features import scene_features

README_HINT = "see README section Datasets"


def dataset_error(message: str) -> Exception:
    """A `DatasetError` (imported late, since the registry imports the builders)."""
    from ocjax.data.datasets import DatasetError  # pylint: disable=import-outside-toplevel

    return DatasetError(message)


@dataclasses.dataclass(eq=False)
class ResolutionConfig(tfds.core.BuilderConfig):
    """A conversion that depends on its output resolution only."""

    resolution: int = 256

    @classmethod
    def make(cls, resolution: int) -> "ResolutionConfig":
        """The config for `resolution`, named after it."""
        if resolution < 1:
            raise ValueError(f"data.resolution must be >= 1, got {resolution}.")
        return cls(name=f"res{resolution}", resolution=resolution)


def prepare(
    builder: tfds.core.GeneratorBasedBuilder, manual_dir: str, label: str, cache: str
) -> dict[str, Any]:
    """Converts the files in `manual_dir` with `builder` on first use and opens its splits.

    A failure while writing or reading the cache becomes a `DatasetError` naming `cache`;
    bugs, a broken install and errors that already say what to fix pass through.
    """
    try:
        preparing.download_and_prepare(
            builder, download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
        return dict(builder.as_data_source())
    except (ImportError, AttributeError, NameError, TypeError, RuntimeError):
        raise
    except Exception as error:  # pylint: disable=broad-except
        raise dataset_error(
            f"The {label} cache {cache} could not be written or read "
            f"({type(error).__name__}: {error}). Delete that directory and rerun."
        ) from error


def cache_dir(data_dir: str, builder: tfds.core.GeneratorBasedBuilder) -> str:
    """Where `builder` keeps its converted files under `data_dir`."""
    return os.path.join(data_dir, builder.name, builder.builder_config.name)


class PartBuilder(tfds.core.GeneratorBasedBuilder):
    """A part dataset read from `manual_dir`: images with part labels, the object's
    `foreground` and `pixel_valid` (the pixels the metrics score), one config per output
    resolution. Subclasses set `DESCRIPTION`, `read_index(manual_dir) -> {split: items}`
    and `_generate_examples(manual_dir, items)`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}  # noqa: RUF012
    BUILDER_CONFIGS = [ResolutionConfig.make(256)]  # noqa: RUF012
    DESCRIPTION = ""

    @staticmethod
    def read_index(manual_dir: str) -> dict[str, list[Any]]:
        """The items of each split."""
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        res = self.builder_config.resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            disable_shuffling=True,
            features=scene_features(
                tfds.features.Image(shape=(res, res, 3)),
                tfds.features.Image(shape=(res, res, 1)),
                foreground=tfds.features.Image(shape=(res, res, 1)),
                pixel_valid=tfds.features.Tensor(shape=(res, res), dtype=np.bool_),
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual_dir = str(dl_manager.manual_dir)
        return {
            name: self._generate_examples(manual_dir, items)
            for name, items in self.read_index(manual_dir).items()
        }
