"""Datasets: a registry from `data.name` to random-access sources, and the input pipeline."""

from ocjax.data.datasets import DATASETS, DatasetError, load_sources, resolve_data_dir

__all__ = ["DATASETS", "DatasetError", "load_sources", "resolve_data_dir"]
