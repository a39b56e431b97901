"""Slot Attention (Locatello et al., 2020); slot initialisers live in `queries.py`.

Shapes: inputs `[batch, num_inputs, input_dim]`, slots `[batch, num_slots, slot_dim]`,
attention `[batch, num_slots, num_inputs]`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.gru import GRUCell
from ocjax.models.initializers import KERNEL_INITS, gru_inits, kernel_init, scheme

Dtype = Any
ATTENTION_ITERATIONS = ("first", "last")
TRUNCATIONS = ("none", "bi-level", "fixed-point")


class SlotMLP(nn.Module):
    """Two-layer ReLU MLP `[..., d]` -> `[..., hidden_dim]` -> `[..., out_dim]`, biases zero;
    kernels from the scheme `kernel_init` (the first layer's is its `relu_kernel`)."""

    hidden_dim: int
    out_dim: int
    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"  # A scheme of `ocjax.models.initializers`.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[..., d]` to `[..., out_dim]`."""
        inits = scheme(self.kernel_init)
        x = nn.Dense(
            self.hidden_dim,
            dtype=self.dtype,
            kernel_init=KERNEL_INITS[inits.relu_kernel],
            name="dense_1",
        )(x)
        return nn.Dense(
            self.out_dim, dtype=self.dtype, kernel_init=KERNEL_INITS[inits.kernel], name="dense_2"
        )(nn.relu(x))


class SlotAttention(nn.Module):
    """Iterative attention that makes slots compete for the inputs.

    Softmax is taken over the slot axis, then each slot's weights are renormalised
    over the inputs (a weighted mean). One set of weights serves every iteration.

    `attention_iteration` picks the iteration whose attention is returned: `first` (the
    flagship's and the Slot Attention autoencoder's evaluations) or `last` (DINOSAUR's and
    SPOT's releases). `truncate` cuts the gradient through the iterations before the last
    one: `none`; `fixed-point`, the last iteration starts from the stopped slots (implicit
    differentiation, Chang et al. 2022); `bi-level` (BO-QSA, SPOT's student), as
    `fixed-point` but the initial slots' gradient passes straight through to them.
    """

    num_iterations: int = 3
    mlp_hidden_dim: int = 128
    epsilon: float = 1e-8
    return_logits: bool = False
    attention_iteration: str = "first"
    truncate: str = "none"
    norm_epsilon: float = 1e-6  # Flax's LayerNorm default; PyTorch's (the releases') is 1e-5.
    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"  # A scheme of `ocjax.models.initializers`.

    @nn.compact
    def __call__(self, slots: jax.Array, inputs: jax.Array) -> tuple[jax.Array, ...]:
        """Updates slots `[b, k, d]` from inputs `[b, n, c]`; returns slots and attention `[b, k, n]`.

        The attention returned is that of the `attention_iteration`; the last iteration's is
        also sown as `intermediates/attention`. With `return_logits`, the last iteration's
        logits `[b, k, n]` (before the softmax over slots; SPOT distils the teacher's masks
        into them) come third.
        """
        if self.attention_iteration not in ATTENTION_ITERATIONS:
            raise ValueError(
                f"Unknown attention_iteration {self.attention_iteration!r}; use one of "
                f"{ATTENTION_ITERATIONS}."
            )
        if self.truncate not in TRUNCATIONS:
            raise ValueError(f"Unknown truncate {self.truncate!r}; use one of {TRUNCATIONS}.")
        slot_dim = slots.shape[-1]
        projection = functools.partial(
            nn.Dense,
            slot_dim,
            use_bias=False,
            dtype=self.dtype,
            kernel_init=kernel_init(self.kernel_init),
        )
        inputs = nn.LayerNorm(self.norm_epsilon, name="norm_inputs", dtype=self.dtype)(inputs)
        keys = projection(name="key")(inputs)
        values = projection(name="value")(inputs)

        norm_slots = nn.LayerNorm(self.norm_epsilon, name="norm_slots", dtype=self.dtype)
        to_query = projection(name="query")
        gru = GRUCell(
            features=slot_dim, dtype=self.dtype, name="gru", **gru_inits(self.kernel_init)
        )
        norm_mlp = nn.LayerNorm(self.norm_epsilon, name="norm_mlp", dtype=self.dtype)
        mlp = SlotMLP(self.mlp_hidden_dim, slot_dim, self.dtype, self.kernel_init, name="mlp")

        initial, first_attention = slots, None
        for i in range(self.num_iterations):
            if i == self.num_iterations - 1 and self.truncate != "none":
                slots = jax.lax.stop_gradient(slots)
                if self.truncate == "bi-level":
                    slots = slots + initial - jax.lax.stop_gradient(initial)
            queries = to_query(norm_slots(slots)) * slot_dim**-0.5
            logits = jnp.einsum("bkd,bnd->bkn", queries, keys).astype(jnp.float32)
            attention = jax.nn.softmax(logits, axis=1)
            if first_attention is None:
                first_attention = attention
            weights = attention + self.epsilon
            weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
            updates = jnp.einsum("bkn,bnd->bkd", weights.astype(values.dtype), values)
            slots, _ = gru(slots, updates)
            slots = slots + mlp(norm_mlp(slots))
        self.sow("intermediates", "attention", attention)
        returned = first_attention if self.attention_iteration == "first" else attention
        if self.return_logits:
            return slots, returned, logits
        return slots, returned
