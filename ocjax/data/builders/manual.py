"""What every reader of user-downloaded files shares: its config, errors and preparation."""

import dataclasses
import os
from typing import Any

import tensorflow_datasets as tfds

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
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
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
