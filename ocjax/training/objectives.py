"""Objectives: how a model's outputs on a batch become a loss and the masks to evaluate.

An objective is a pair of pure functions, chosen by `config.objective`:
`loss(outputs, batch) -> (loss, terms)` and `masks(outputs) -> {name: [b, k, h, w]}`.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from ocjax import losses

Outputs = dict[str, jax.Array]
Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss of a system and the object masks it predicts."""

  loss: Callable[[Outputs, Batch], tuple[jax.Array, dict[str, jax.Array]]]
  masks: Callable[[Outputs, tuple[int, int]], dict[str, jax.Array]]


def reconstruction_loss(outputs: Outputs, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
  """MSE between `reconstruction` and `image` `[b, h, w, 3]`; terms name it `mse`."""
  loss = losses.mse(outputs["reconstruction"], batch["image"])
  return loss, {"mse": loss}


def autoencoder_masks(outputs: Outputs, image_size: tuple[int, int]) -> dict[str, jax.Array]:
  """Slot masks `[b, k, h, w]` from the decoder alphas and from the first attention map."""
  attention = outputs["attention"]
  batch, num_slots, num_inputs = attention.shape
  side = int(round(num_inputs ** 0.5))
  grid = attention.reshape(batch, num_slots, side, side)
  attention_masks = jax.image.resize(grid, (batch, num_slots, *image_size), "nearest")
  return {"decoder": outputs["masks"], "attention": attention_masks}


OBJECTIVES: dict[str, Objective] = {
    "autoencoder": Objective(loss=reconstruction_loss, masks=autoencoder_masks),
}


def get_objective(name: str) -> Objective:
  """Looks up a registered objective by name."""
  if name not in OBJECTIVES:
    raise ValueError(f"Unknown objective {name!r}; set objective to one of {sorted(OBJECTIVES)}.")
  return OBJECTIVES[name]


def finite(terms: dict[str, jax.Array]) -> jax.Array:
  """True when every loss term is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in terms.values()]))
