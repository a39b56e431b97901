"""The GRU cell of Slot Attention's slot update, with per-role initialisers.

Flax's `nn.GRUCell` layout (`ir`, `iz`, `in` input kernels with biases, `hr`, `hz`, `hn`
recurrent kernels, only `hn` with a bias): PyTorch's `GRUCell` in the same function, its
separate input and recurrent biases of the reset and update gates summed into `ir` / `iz`.
`gate_bias_init` draws those two summed biases (default: `bias_init`), so a PyTorch
initialisation, where each summed bias is a sum of two uniforms, is reproduced exactly.
"""

from functools import partial
from typing import Any

import flax.linen as nn
import jax

from ocjax.models.initializers import Initializer


class GRUCell(nn.GRUCell):
    """`nn.GRUCell` whose reset / update gate biases draw from `gate_bias_init`."""

    gate_bias_init: Initializer | None = None

    @nn.compact
    def __call__(self, carry: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Updates the state `[..., d]` from `inputs [..., d_in]`; returns `(state, state)`."""
        h = carry
        dense: Any = partial(nn.Dense, h.shape[-1], dtype=self.dtype, param_dtype=self.param_dtype)
        recurrent = partial(dense, use_bias=False, kernel_init=self.recurrent_kernel_init)
        gate = partial(
            dense, kernel_init=self.kernel_init, bias_init=self.gate_bias_init or self.bias_init
        )
        candidate = partial(dense, kernel_init=self.kernel_init, bias_init=self.bias_init)
        r = self.gate_fn(gate(name="ir")(inputs) + recurrent(name="hr")(h))
        z = self.gate_fn(gate(name="iz")(inputs) + recurrent(name="hz")(h))
        hidden = recurrent(name="hn", use_bias=True, bias_init=self.bias_init)(h)
        n = self.activation_fn(candidate(name="in")(inputs) + r * hidden)
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h
