"""Slot Attention (Locatello et al., 2020); slot initialisers live in `queries.py`.

Shapes: inputs `[batch, num_inputs, input_dim]`, slots `[batch, num_slots, slot_dim]`,
attention `[batch, num_slots, num_inputs]`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.initializers import gru_inits, kernel_init

Dtype = Any


class SlotMLP(nn.Module):
    """Two-layer ReLU MLP used as the residual update of the slots."""

    hidden_dim: int
    out_dim: int
    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"  # See `ocjax.models.initializers`.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[..., d]` to `[..., out_dim]`."""
        dense = functools.partial(
            nn.Dense, dtype=self.dtype, kernel_init=kernel_init(self.kernel_init)
        )
        x = nn.relu(dense(self.hidden_dim, name="dense_1")(x))
        return dense(self.out_dim, name="dense_2")(x)


class SlotAttention(nn.Module):
    """Iterative attention that makes slots compete for the inputs.

    Softmax is taken over the slot axis, then each slot's weights are renormalised
    over the inputs (a weighted mean). One set of weights serves every iteration.
    """

    num_iterations: int = 3
    mlp_hidden_dim: int = 128
    epsilon: float = 1e-8
    return_logits: bool = False
    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"  # See `ocjax.models.initializers`.

    @nn.compact
    def __call__(self, slots: jax.Array, inputs: jax.Array) -> tuple[jax.Array, ...]:
        """Updates slots `[b, k, d]` from inputs `[b, n, c]`; returns slots and attention `[b, k, n]`.

        The attention returned is that of the first iteration, the one used by the
        object-discovery evaluations; the last iteration's is sown as `intermediates/attention`.
        With `return_logits`, the last iteration's logits `[b, k, n]` (before the softmax over
        slots; SPOT distils the teacher's masks into them) come third.
        """
        slot_dim = slots.shape[-1]
        projection = functools.partial(
            nn.Dense,
            slot_dim,
            use_bias=False,
            dtype=self.dtype,
            kernel_init=kernel_init(self.kernel_init),
        )
        inputs = nn.LayerNorm(name="norm_inputs", dtype=self.dtype)(inputs)
        keys = projection(name="key")(inputs)
        values = projection(name="value")(inputs)

        norm_slots = nn.LayerNorm(name="norm_slots", dtype=self.dtype)
        to_query = projection(name="query")
        gru = nn.GRUCell(
            features=slot_dim, dtype=self.dtype, name="gru", **gru_inits(self.kernel_init)
        )
        norm_mlp = nn.LayerNorm(name="norm_mlp", dtype=self.dtype)
        mlp = SlotMLP(self.mlp_hidden_dim, slot_dim, self.dtype, self.kernel_init, name="mlp")

        first_attention = None
        for _ in range(self.num_iterations):
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
        if self.return_logits:
            return slots, first_attention, logits
        return slots, first_attention
