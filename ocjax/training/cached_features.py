"""What a DINOSAUR / SPOT run caches with `data.cache_features`: its frozen backbone's
outputs for every split it reads (stored by `ocjax.data.feature_cache`)."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ocjax.data import feature_cache, pipeline, resolve_data_dir
from ocjax.models.backbones import Backbone

# Backbone options that say where the weights were read, not what they are (they are hashed).
_LOCATIONS = ("checkpoint", "workdir")


def backbone_outputs(model: nn.Module, params: Any, images: jax.Array) -> dict[str, jax.Array]:
    """What `model` reads from a feature cache (`Dinosaur.__call__`): its frozen backbone's
    `features [b, n, f]` of images `[b, h, w, c]` and, when it fine-tunes the last blocks
    (`finetune_from_block`), `hidden [b, extra + n, d]`, the sequence they start from."""
    out = Backbone(model.backbone, dtype=model.dtype).apply({"params": params}, images)
    arrays = {"features": out.tokens.astype(jnp.float32)}
    if dict(model.backbone).get("finetune_from_block") is not None:
        arrays["hidden"] = out.hidden.astype(jnp.float32)
    return arrays


def cached_sources(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    weights: Any,
    sources: dict[str, Any],
    normalization: str,
    batch_size: int,
) -> dict[str, Any]:
    """`sources` whose splits the run reads (training, evaluation and held-out) carry the
    backbone's outputs (`feature_cache.CachedSource`), computed `batch_size` images at a
    time with the backbone's `weights` where not cached yet; with `data.random_flip` the
    training split also those of its mirrored images."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, tuple) or not backbone:
        raise ValueError(
            "data.cache_features stores a frozen backbone's outputs (DINOSAUR / SPOT), but "
            f"model {type(model).__name__} has no model.backbone; set data.cache_features=False."
        )
    data = config.data
    parts = {
        "backbone": {k: v for k, v in backbone if k not in _LOCATIONS},
        "dtype": jnp.dtype(model.dtype).name,
        "dataset": data.name,
        "options": data[data.name].to_dict(),
        "resolution": data.resolution,
        "normalization": normalization,
    }
    reads = {config.evaluation.split: False}
    if config.evaluation.get("every_steps"):
        reads[config.evaluation.heldout_split] = False
    reads["train"] = bool(data.get("random_flip"))
    compute = jax.jit(functools.partial(backbone_outputs, model))
    load = functools.partial(
        feature_cache.load,
        resolve_data_dir(data.data_dir),
        weights=weights,
        preprocess=pipeline.ScenePreprocess(data.max_objects, normalization),
        compute=lambda images: jax.tree.map(np.asarray, compute(weights, images)),
        batch_size=batch_size,
        may_build=jax.process_count() == 1,
    )
    out = dict(sources)
    for split, flips in reads.items():
        if split not in sources:
            continue  # The trainer names the missing split.
        split_parts = {**parts, "split": split}
        arrays = load(split_parts, source=sources[split])
        flipped = load(split_parts, source=sources[split], flip=True) if flips else None
        out[split] = feature_cache.CachedSource(sources[split], arrays, flipped)
    return out
