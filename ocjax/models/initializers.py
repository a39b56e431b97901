"""Initialisations of the codebases ocjax reproduces, by name.

A module names its convention in a field (`kernel_init: str`); `scheme(name)` gives the
initialisers each layer role draws from under it:

* `lecun_normal` (Flax's defaults): kernels `lecun_normal`, biases zero; Flax's GRU.
* `glorot_uniform` (the official Slot Attention code, TF2/Keras): kernels `glorot_uniform`,
  U(+-sqrt(6 / (fan_in + fan_out))) with the receptive field in both fans, biases zero, and
  a GRU whose three gates share one input kernel `[d_in, 3d]` (glorot over that shape) and
  one recurrent kernel `[d, 3d]` (orthogonal over that shape). Flax's GRU keeps one
  `[d_in, d]` and one `[d, d]` kernel per gate; the per-gate initialisers have the fused
  kernel's scale (for the recurrent one, orthogonal blocks with the fused matrix's mean
  squared entry, 1 / (3d)).
* `torch` (PyTorch's defaults, as DINOSAUR's release leaves them): `nn.Linear` kernels
  U(+-1/sqrt(fan_in)) (`kaiming_uniform_(a=sqrt(5))`), biases zero where the release zeroes
  them (its MLPs) and U(+-1/sqrt(fan_in)) otherwise (`bias="torch_default"`); `nn.GRUCell`
  draws every weight and bias from U(+-1/sqrt(d)). Flax's GRU sums PyTorch's input and
  recurrent biases of the reset and update gates into one, so those start as the sum of
  two such uniforms.
* `xavier` (SLATE's and SPOT's release): kernels `xavier_uniform_`, the layer before a
  ReLU `kaiming_uniform_(nonlinearity="relu")`, U(+-sqrt(6 / fan_in)); biases zero; the
  GRU as `glorot_uniform`'s (PyTorch's `[3d, d_in]` / `[3d, d]` fused weights, Xavier and
  orthogonal, biases zero).

`KERNEL_INITS` holds the single initialisers (`torch_default`, `xavier_uniform`,
`kaiming_uniform`, `truncated_normal`, ...) for modules that name one directly.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

Initializer = Callable[..., jax.Array]
GRU_GATES = 3


def xavier_uniform(gain: float = 1.0) -> Initializer:
    """PyTorch's `xavier_uniform_(w, gain)` on `[out, in]`: U(+-gain * sqrt(6 / (fan_in +
    fan_out))), glorot over the same fans (the receptive field in both)."""
    return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


KERNEL_INITS: dict[str, Initializer] = {
    "lecun_normal": nn.initializers.lecun_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "xavier_uniform": xavier_uniform(),
    # PyTorch: kaiming_uniform_(w, nonlinearity="relu"), U(+-sqrt(6 / fan_in)).
    "kaiming_uniform": nn.initializers.variance_scaling(2.0, "fan_in", "uniform"),
    # PyTorch's nn.Linear / nn.Conv default, kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)).
    "torch_default": nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    # ViT / timm position embeddings and tokens: trunc_normal_(std=0.02).
    "truncated_normal": nn.initializers.truncated_normal(0.02),
}


def kernel_init(name: str) -> Initializer:
    """The Dense / convolution kernel initialiser `name` (one of `KERNEL_INITS` or a scheme)."""
    if name in SCHEMES:
        return KERNEL_INITS[SCHEMES[name].kernel]
    if name not in KERNEL_INITS:
        raise ValueError(
            f"Unknown model.kernel_init {name!r}; use one of {sorted(set(KERNEL_INITS) | set(SCHEMES))}."
        )
    return KERNEL_INITS[name]


def uniform(limit: float) -> Initializer:
    """U(-limit, limit) of any shape."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


def torch_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias of a layer with `fan_in` inputs: U(+-1/sqrt(fan_in))."""
    return uniform(fan_in**-0.5)


def bias_init(name: str, fan_in: int) -> Initializer:
    """A bias initialiser: `zeros`, or `torch_default` (U(+-1/sqrt(fan_in)))."""
    if name == "zeros":
        return nn.initializers.zeros
    if name == "torch_default":
        return torch_bias(fan_in)
    raise ValueError(f"Unknown bias initialiser {name!r}; use 'zeros' or 'torch_default'.")


@dataclasses.dataclass(frozen=True)
class Scheme:
    """Initialisers by layer role under one codebase's convention (names in `KERNEL_INITS`)."""

    kernel: str  # Dense / convolution kernels.
    relu_kernel: str  # The first layer of an MLP (followed by a ReLU).
    gru: str  # The GRU convention: `flax`, `fused` (Keras / SPOT) or `torch`.
    vector: str  # Learned `[1, 1, d]` vectors (slot mean and log-sigma).


SCHEMES: dict[str, Scheme] = {
    "lecun_normal": Scheme("lecun_normal", "lecun_normal", "flax", "row_glorot"),
    "glorot_uniform": Scheme("glorot_uniform", "glorot_uniform", "fused", "row_glorot"),
    "torch": Scheme("torch_default", "torch_default", "torch", "xavier_3d"),
    "xavier": Scheme("xavier_uniform", "kaiming_uniform", "fused", "xavier_3d"),
}


def scheme(name: str) -> Scheme:
    """The convention `name` (one of `SCHEMES`)."""
    if name not in SCHEMES:
        raise ValueError(f"Unknown model.kernel_init {name!r}; use one of {sorted(SCHEMES)}.")
    return SCHEMES[name]


def vector_init(name: str) -> Initializer:
    """Initialiser of a learned `[..., d]` slot vector (mean or log-sigma) of scheme `name`.

    `row_glorot`: glorot over a `[1, d]` matrix, U(+-sqrt(6 / (1 + d))) (Keras' weight of
    shape `[1, 1, d]` in the official Slot Attention code); `xavier_3d`: PyTorch's
    `xavier_uniform_` of a `[1, 1, d]` tensor (fans d and d), U(+-sqrt(3 / d)).
    """
    kind = scheme(name).vector

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        d = shape[-1]
        limit = (6.0 / (1 + d)) ** 0.5 if kind == "row_glorot" else (3.0 / d) ** 0.5
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


def fused_xavier_uniform(parts: int) -> Initializer:
    """Glorot / Xavier-uniform of one part `[d_in, d]` of a fused `[d_in, parts * d]` kernel:
    U(+-sqrt(6 / (d_in + parts * d))) (a GRU's gates; PyTorch's `nn.MultiheadAttention`
    draws its fused query, key and value weight so, `parts = 3`)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        limit = (6.0 / (shape[0] + parts * shape[1])) ** 0.5
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


_fused_glorot_uniform = fused_xavier_uniform(GRU_GATES)


def _torch_gru_weight(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """PyTorch's GRUCell weight of hidden size `d = shape[-1]`: U(+-1/sqrt(d))."""
    return uniform(shape[-1] ** -0.5)(key, shape, dtype)


def _torch_summed_gate_bias(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """`b_i + b_h` of a PyTorch GRUCell gate, both U(+-1/sqrt(d)) with d = shape[-1]."""
    first, second = jax.random.split(key)
    return _torch_gru_weight(first, shape, dtype) + _torch_gru_weight(second, shape, dtype)


def gru_inits(name: str) -> dict[str, Initializer]:
    """Keyword initialisers of `ocjax.models.gru.GRUCell` for the scheme `name`."""
    kind = scheme(name).gru
    if kind == "fused":
        return {
            "kernel_init": _fused_glorot_uniform,
            "recurrent_kernel_init": nn.initializers.orthogonal(scale=GRU_GATES**-0.5),
        }
    if kind == "torch":
        return {
            "kernel_init": _torch_gru_weight,
            "recurrent_kernel_init": _torch_gru_weight,
            "bias_init": _torch_gru_weight,
            "gate_bias_init": _torch_summed_gate_bias,
        }
    return {}  # Flax's GRU defaults: lecun_normal and orthogonal per gate, biases zero.
