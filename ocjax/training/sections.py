"""Config sections every experiment shares: the training loop, evaluation and the mesh."""

import dataclasses
from typing import Any

import ml_collections
from ml_collections import config_dict

from ocjax.data.datasets import default_options

# The chain of quick presets a fresh clone runs in minutes: `configs/mae.py:quick` trains
# into this workdir the encoder that the quick presets of DINOSAUR, SPOT and part discovery
# read (README, "Self-supervised encoders").
QUICK_ENCODER_WORKDIR = "runs/quick/mae"
# The encoders the reproduction driver pretrains on the CLEVR-like scenes (`python -m
# ocjax.reproduce mae_clevr`, `dino_clevr`, `mocov3_clevr`: each config's `cpu` preset),
# which the `cpu` presets of DINOSAUR, SPOT and part discovery read with `+mae`, `+dino`
# or `+mocov3`.
ENCODER_RUNS = {name: f"runs/reproduce/{name}_clevr/seed0" for name in ("dino", "mocov3", "mae")}


def encoder_preset(presets: list[str], config_name: str) -> str | None:
    """The pretrained-here encoder (`dino`, `mocov3`, `mae`) among `presets`, if any; one at
    most, and only with `cpu` (the data it was trained on)."""
    chosen = [p for p in presets if p in ENCODER_RUNS]
    if len(chosen) > 1 or (chosen and "cpu" not in presets) or (chosen and "patches" in presets):
        raise ValueError(
            f"{config_name}: at most one encoder preset of {sorted(ENCODER_RUNS)}, with 'cpu' "
            f"and without 'patches' (e.g. 'cpu+mae'), got {'+'.join(presets)!r}."
        )
    return chosen[0] if chosen else None


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


IMAGENET_TRAIN_IMAGES = 1_281_167
COCO_TRAIN_IMAGES = 118_287


def pretraining_images(name: str) -> ml_collections.ConfigDict:
    """The `data` section of a pretraining recipe at 224x224 (imagenet normalisation):
    `imagenet`, the papers' ILSVRC-2012 training images (`data.imagenet.manual_dir`; no
    masks, so evaluation reports the token statistics), or `coco`, COCO train2017 (the
    scenes DINOSAUR and SPOT are scored on; val2017's masks score the token k-means)."""
    if name == "coco":
        section = data("coco", 224, max_objects=254, normalization="imagenet")
        section.coco.update(resize="bicubic", crowd="keep")
    elif name == "imagenet":
        section = data("imagenet", 224, max_objects=1, normalization="imagenet")
    else:
        raise ValueError(f"Unknown pretraining images {name!r}; use 'imagenet' or 'coco'.")
    return section


def pretraining_on_clevr_like(
    config: ml_collections.ConfigDict,
    crops: Any,
    *,
    batch_size: int,
    num_epochs: float,
    learning_rate: float,
    warmup_epochs: float,
    eval_every: int = 1_000,
    quick: bool = False,
) -> None:
    """Moves a self-supervised pretraining config (DINO, MoCo v3, MAE) and its ViT in place
    to the embedded CLEVR-like scenes of DINOSAUR's cpu protocol (64x64, imagenet normalisation,
    10,000 training and 1,000 test scenes, 3-6 objects) with `crops` (a `MultiCropAugment`)
    and the given batch and schedule, scored on 128 held-out scenes every `eval_every` steps.
    `quick` shrinks it to a few minutes: 1,000 scenes, 200 steps, warm-up half an epoch.
    """
    config.data = data("clevr_like", 64, max_objects=6, normalization="imagenet")
    config.data.clevr_like.update(
        min_objects=3, num_train=10_000, num_validation=1_000, num_test=1_000, seed=0
    )
    config.data.crops = dataclasses.asdict(crops)
    # The encoder: a ViT of 4x4 patches (16x16 tokens), 128-d, 4 blocks (quick: 2), 4 heads.
    config.model.update(image_size=64, patch_size=4, dim=128, depth=2 if quick else 4, num_heads=4)
    config.optimizer.schedule.update(learning_rate=learning_rate, warmup_epochs=warmup_epochs)
    config.training.update(
        batch_size=batch_size,
        num_epochs=float(num_epochs),
        log_every=50,
        checkpoint_every=eval_every,
        image_every=2 * eval_every,
    )
    config.evaluation.update(split="test", every_steps=eval_every, heldout_examples=128)
    # The VQA probe on the encoder's patch tokens, trained on 750 test scenes, AP on 250
    # (2,000 full-batch steps: 256 tokens per scene cost 36x the flagship's 7 slots).
    config.evaluation.probe = ml_collections.ConfigDict(
        {
            "steps": 200 if quick else 2_000,
            "learning_rate": 1e-2,
            "weight_decay": 1e-4,
            "pos_weight": 14.0,
            "train_fraction": 0.75,
        }
    )
    if quick:
        config.data.clevr_like.update(num_train=1_000, num_validation=64, num_test=128)
        config.optimizer.schedule.warmup_epochs = 0.5
        config.training.update(
            num_epochs=None, num_steps=200, log_every=10, checkpoint_every=100, image_every=100
        )
        config.evaluation.update(every_steps=100, heldout_examples=32, batch_size=32)
