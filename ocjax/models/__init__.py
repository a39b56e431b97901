"""Model registry: config names to Flax modules."""

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax.numpy as jnp

from ocjax.models.autoencoder import SlotAttentionAutoEncoder
from ocjax.models.complex import ComplexAutoEncoder
from ocjax.models.dino import DINO
from ocjax.models.dinosaur import Dinosaur, as_options, resolve_teacher
from ocjax.models.mae import MAE
from ocjax.models.mocov3 import MoCoV3
from ocjax.models.parts import PartDiscovery
from ocjax.models.object_contrastive import ObjectContrastiveModel
from ocjax.models.rotating import RotatingAutoEncoder, check_inputs

MODELS: dict[str, Callable[..., nn.Module]] = {
    "slot_attention_autoencoder": SlotAttentionAutoEncoder,
    "object_contrastive": ObjectContrastiveModel,
    "complex_autoencoder": ComplexAutoEncoder,
    "rotating_autoencoder": RotatingAutoEncoder,
    "dinosaur": Dinosaur,
    "part_discovery": PartDiscovery,
    "dino": DINO,
    "mocov3": MoCoV3,
    "mae": MAE,
}

# Host-side checks of input images `[b, h, w, c]` that traced model calls cannot make.
INPUT_CHECKS: dict[type, Callable[[Any], None]] = {RotatingAutoEncoder: check_inputs}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_model(name: str, dtype: str = "float32", **kwargs: Any) -> nn.Module:
    """Builds the registered model `name` with compute dtype `dtype` and its hyper-parameters."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; set model.name to one of {sorted(MODELS)}.")
    if dtype not in DTYPES:
        raise ValueError(f"Unknown model.dtype {dtype!r}; use one of {sorted(DTYPES)}.")
    return MODELS[name](dtype=DTYPES[dtype], **_tuples(kwargs))


def _tuples(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Turns list values (as configs hold them) into tuples and `backbone` options into
    resolved hashable options (`ocjax.models.backbones.resolve`), so modules stay hashable."""
    out = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if "backbone" in out:
        out["backbone"] = as_options(out["backbone"])
    if out.get("teacher") is not None and not isinstance(out["teacher"], tuple):
        teacher = out["teacher"]
        teacher = teacher.to_dict() if hasattr(teacher, "to_dict") else dict(teacher)
        out["teacher"] = resolve_teacher(teacher, out["backbone"])
    return out


def input_check(model: nn.Module) -> Callable[[Any], None] | None:
    """The host-side check `model` needs on its input images `[b, h, w, c]`, if any."""
    return INPUT_CHECKS.get(type(model))
