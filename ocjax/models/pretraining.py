"""What the self-supervised encoders ocjax trains (DINO, MoCo v3, MAE) share: the ViT they
train (`DinoViT` with an `Architecture` built from the config), the momentum (EMA) copy
that DINO's teacher and MoCo v3's momentum encoder are. Each system names in `ENCODER`
the parameter path of the encoder that downstream models (DINOSAUR, SPOT, part discovery)
read: DINO's teacher (the paper evaluates it), MoCo v3's base encoder, MAE's encoder.

A system with a momentum copy names it in `EMA`, pairs `(online, momentum)` of top-level
parameter subtrees with the same structure. The optimiser leaves the momentum subtrees
alone (`frozen_subtrees`); the copy starts equal to the online weights (`init_momentum`)
and follows them after every optimiser step (`momentum_update`), with the momentum
rising from `base` to `final` on a cosine over the run (`ocjax.losses.self_supervised`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ocjax.losses import self_supervised as ssl
from ocjax.models.dino_vit import Architecture, DinoViT

Params = Mapping[str, Any]


ARCHITECTURE_FIELDS = ("patch_size", "dim", "depth", "num_heads", "mlp_ratio", "num_registers")


def architecture(
    patch_size: int, dim: int, depth: int, num_heads: int, mlp_ratio: float, num_registers: int
) -> Architecture:
    """The ViT a pretraining config describes (DINO's ViT-S/16: 16, 384, 12, 6, 4.0, 0)."""
    if dim % num_heads:
        raise ValueError(f"model.dim={dim} is not divisible by model.num_heads={num_heads}.")
    return Architecture(
        dim, depth, num_heads, patch_size, mlp_ratio=mlp_ratio, num_registers=num_registers
    )


def architecture_of(system: Any) -> Architecture:
    """The ViT of a pretraining module with fields `patch_size, dim, depth, num_heads,
    mlp_ratio, num_registers` (or of a config's `model` holding them)."""
    get = system.get if isinstance(system, Mapping) else lambda key: getattr(system, key)
    return architecture(*(get(key) for key in ARCHITECTURE_FIELDS))


def vit(
    architecture: Architecture,
    image_size: int,
    weight_init: str,
    dtype: Any,
    name: str | None = None,
    **options: Any,
) -> DinoViT:
    """The `DinoViT` a pretraining system trains on `image_size`² crops (other sizes read
    resampled positions)."""
    named = {} if name is None else {"name": name}
    return DinoViT(
        architecture,
        image_size=(image_size, image_size),
        weight_init=weight_init,
        dtype=dtype,
        **named,
        **options,
    )


def init_momentum(params: Params, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """`params` with every momentum subtree set to a copy of its online subtree."""
    out = dict(params)
    for online, momentum in pairs:
        out[momentum] = jax.tree.map(jnp.array, params[online])
    return out


def momentum_update(
    params: Params,
    step: jax.Array,
    *,
    pairs: tuple[tuple[str, str], ...],
    base: float,
    final: float,
    total_steps: int,
) -> dict[str, Any]:
    """`params` after one EMA step of each momentum subtree towards its online one, at the
    momentum of `step` (`ssl.ema_momentum`)."""
    m = ssl.ema_momentum(step, base, total_steps, final)
    out = dict(params)
    for online, momentum in pairs:
        out[momentum] = ssl.ema_update(params[momentum], params[online], m)
    return out
