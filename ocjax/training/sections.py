"""Config sections every experiment shares: the training loop, evaluation and the mesh."""

from typing import Any

import ml_collections
from ml_collections import config_dict

from ocjax.data.datasets import default_options


def training(
    batch_size: int,
    *,
    num_steps: int | None = None,
    num_epochs: float | None = None,
    log_every: int = 100,
    checkpoint_every: int = 5_000,
    image_every: int | None = None,
    keep_checkpoints: int = 3,
) -> ml_collections.ConfigDict:
    """The `training` section; set exactly one of `num_steps` and `num_epochs`."""
    return ml_collections.ConfigDict(
        dict(
            batch_size=batch_size,
            num_steps=config_dict.placeholder(int) if num_steps is None else num_steps,
            num_epochs=config_dict.placeholder(float) if num_epochs is None else num_epochs,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
            image_every=checkpoint_every if image_every is None else image_every,
            keep_checkpoints=keep_checkpoints,
        )
    )


def evaluation(
    batch_size: int = 64,
    *,
    split: str = "test",
    num_images: int = 8,
    every_steps: int | None = None,
    heldout_split: str = "validation",
    heldout_examples: int = 256,
    **extra: Any,
) -> ml_collections.ConfigDict:
    """The `evaluation` section: split, batch, pictures, and any extras (e.g. `probe`).

    With `every_steps`, training also scores the first `heldout_examples` images of
    `heldout_split` every `every_steps` steps, logged as `eval/<metric>` (no VQA probe).
    """
    return ml_collections.ConfigDict(
        dict(
            split=split,
            batch_size=batch_size,
            max_examples=config_dict.placeholder(int),
            num_images=num_images,
            every_steps=config_dict.placeholder(int) if every_steps is None else every_steps,
            heldout_split=heldout_split,
            heldout_examples=heldout_examples,
            **extra,
        )
    )


def mesh(num_devices: int = -1) -> ml_collections.ConfigDict:
    """The `mesh` section: a 1-D data-parallel mesh over `num_devices` (-1: all)."""
    return ml_collections.ConfigDict(dict(num_devices=num_devices))


def data(
    name: str,
    resolution: int,
    max_objects: int,
    *,
    random_flip: bool = False,
    cache_features: bool = False,
    **fields: Any,
) -> ml_collections.ConfigDict:
    """The `data` section: dataset `name` at `resolution`, objects padded to `max_objects`.

    It carries `data.<dataset>.<option>` for every registered dataset (their readers'
    defaults) so that switching `data.name` on the command line needs no new keys; `fields`
    adds values such as `channels` or `normalization`. `random_flip` mirrors each training
    example left-right with probability 1/2 (image and per-pixel labels; evaluation never
    flips); `cache_features` (DINOSAUR / SPOT) computes the frozen backbone's outputs once
    per image and trains on them (`ocjax.data.feature_cache`).
    """
    section = ml_collections.ConfigDict(
        dict(
            name=name,
            data_dir=config_dict.placeholder(str),
            resolution=resolution,
            max_objects=max_objects,
            random_flip=random_flip,
            cache_features=cache_features,
            **fields,
        )
    )
    section.update(default_options())
    return section
