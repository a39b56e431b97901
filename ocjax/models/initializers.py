"""Kernel initialisations of the codebases ocjax reproduces, by name.

Flax draws Dense and convolution kernels from `lecun_normal`; the official Slot Attention
code (TF2/Keras) builds every layer with Keras' defaults: kernels `glorot_uniform`,
U(±sqrt(6 / (fan_in + fan_out))) with the receptive field in both fans, biases zero, and a
GRU whose three gates share one input kernel `[d_in, 3d]` (glorot over that shape) and one
recurrent kernel `[d, 3d]` (orthogonal over that shape). Flax's GRU keeps one `[d_in, d]`
and one `[d, d]` kernel per gate; `gru_inits` gives per-gate initialisers with the fused
kernel's scale (for the recurrent one, orthogonal blocks with the fused matrix's mean
squared entry, 1 / (3d)).
"""

from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

Initializer = Callable[..., jax.Array]
KERNEL_INITS: dict[str, Initializer] = {
    "lecun_normal": nn.initializers.lecun_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
}
GRU_GATES = 3


def kernel_init(name: str) -> Initializer:
    """The Dense / convolution kernel initialiser `name` (one of `KERNEL_INITS`)."""
    if name not in KERNEL_INITS:
        raise ValueError(f"Unknown model.kernel_init {name!r}; use one of {sorted(KERNEL_INITS)}.")
    return KERNEL_INITS[name]


def _fused_glorot_uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Glorot-uniform of one gate `[d_in, d]` of a fused `[d_in, 3d]` kernel."""
    limit = (6.0 / (shape[0] + GRU_GATES * shape[1])) ** 0.5
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def gru_inits(name: str) -> dict[str, Initializer]:
    """`kernel_init` and `recurrent_kernel_init` of `nn.GRUCell` for the scheme `name`."""
    kernel_init(name)  # Validates the name.
    if name == "glorot_uniform":
        return {
            "kernel_init": _fused_glorot_uniform,
            "recurrent_kernel_init": nn.initializers.orthogonal(scale=GRU_GATES**-0.5),
        }
    return {}  # Flax's GRU defaults: lecun_normal and orthogonal per gate.
