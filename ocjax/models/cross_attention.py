"""Multi-head attention, the transformer MLP and pre-norm cross-attention layers.

Shapes: queries `[batch, num_queries, dim]`, inputs `[batch, num_inputs, input_dim]`,
attention `[batch, num_queries, num_inputs]` (softmax over the inputs, i.e. the keys).
Unlike Slot Attention, the queries do not compete for the inputs (Baldassarre & Azizpour, 2022).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Callable[..., jax.Array]
LECUN_NORMAL = nn.initializers.lecun_normal()


def exact_gelu(x: jax.Array) -> jax.Array:
    """GELU with the erf, not its tanh approximation (PyTorch's and timm's default)."""
    return nn.gelu(x, approximate=False)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention of queries `[b, q, dim]` over inputs `[b, n, c]`, per head.

    Query, key and value projections have no bias (as in the paper's released code) unless
    `qkv_bias` (PyTorch's `nn.MultiheadAttention`); the output projection has one unless
    `out_bias` is False (SLATE's and SPOT's decoder); biases start at zero.
    `kernel_init` draws the query, key and value kernels, `out_kernel_init` (default
    `kernel_init`) the output projection's. Logits and softmax are computed in float32.
    """

    num_heads: int = 4
    kernel_init: Initializer = LECUN_NORMAL
    out_kernel_init: Initializer | None = None
    out_bias: bool = True
    qkv_bias: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, queries: jax.Array, inputs: jax.Array, mask: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Returns the update `[b, q, dim]` and the attention `[b, num_heads, q, n]`.

        `mask` (`[q, n]` or broadcastable to `[b, heads, q, n]`, True = may attend) hides
        inputs, e.g. the future in a causal decoder.
        """
        batch, num_queries, dim = queries.shape
        if dim % self.num_heads:
            raise ValueError(
                f"Token dimension {dim} is not divisible by num_heads={self.num_heads}; "
                f"choose num_heads among the divisors of {dim} or change the dimension."
            )
        head_dim = dim // self.num_heads

        def project(x: jax.Array, name: str) -> jax.Array:
            """Maps `[b, l, c]` to per-head features `[b, l, num_heads, head_dim]`."""
            y = nn.Dense(
                dim,
                use_bias=self.qkv_bias,
                kernel_init=self.kernel_init,
                dtype=self.dtype,
                name=name,
            )(x)
            return y.reshape(*y.shape[:-1], self.num_heads, head_dim)

        q = project(queries, "query") * head_dim**-0.5
        k = project(inputs, "key")
        v = project(inputs, "value")
        logits = jnp.einsum("bqhd,bnhd->bhqn", q, k).astype(jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, -jnp.inf)
        attention = jax.nn.softmax(logits, axis=-1)
        heads = jnp.einsum("bhqn,bnhd->bqhd", attention.astype(v.dtype), v)
        update = nn.Dense(
            dim,
            use_bias=self.out_bias,
            kernel_init=self.out_kernel_init or self.kernel_init,
            dtype=self.dtype,
            name="out",
        )(heads.reshape(batch, num_queries, dim))
        return update, attention


class TransformerMLP(nn.Module):
    """Two-layer MLP `[..., dim]` -> `[..., mlp_dim]` -> `[..., dim]`, exact (erf) GELU by
    default; `kernel_inits` draws the two kernels (first, second), `bias_inits` (default
    zeros) the two biases."""

    mlp_dim: int = 512
    activation: Callable[[jax.Array], jax.Array] = exact_gelu
    kernel_inits: tuple[Initializer, Initializer] = (LECUN_NORMAL, LECUN_NORMAL)
    bias_inits: tuple[Initializer, Initializer] = (nn.initializers.zeros, nn.initializers.zeros)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[..., dim]` to `[..., dim]`."""
        (first, second), (first_bias, second_bias) = self.kernel_inits, self.bias_inits
        h = nn.Dense(
            self.mlp_dim, kernel_init=first, bias_init=first_bias, dtype=self.dtype, name="dense_1"
        )(x)
        h = self.activation(h)
        return nn.Dense(
            x.shape[-1], kernel_init=second, bias_init=second_bias, dtype=self.dtype, name="dense_2"
        )(h)


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention layer: queries attend to the inputs, then a residual MLP.

    `x = q + MHA(LN(q), LN(inputs))`, `out = x + MLP(LN(x))`.
    """

    num_heads: int = 4
    mlp_dim: int = 512
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, queries: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Updates queries `[b, q, dim]` from inputs `[b, n, c]`; attention `[b, heads, q, n]`."""
        queries = queries.astype(self.dtype)
        update, attention = MultiHeadAttention(
            num_heads=self.num_heads, dtype=self.dtype, name="attention"
        )(
            nn.LayerNorm(dtype=self.dtype, name="norm_queries")(queries),
            nn.LayerNorm(dtype=self.dtype, name="norm_inputs")(inputs),
        )
        x = queries + update
        x = x + TransformerMLP(self.mlp_dim, dtype=self.dtype, name="mlp")(
            nn.LayerNorm(dtype=self.dtype, name="norm_mlp")(x)
        )
        return x, attention


class CrossAttention(nn.Module):
    """A stack of `num_layers` cross-attention layers, each with its own weights."""

    num_layers: int = 2
    num_heads: int = 4
    mlp_dim: int = 512
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, queries: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Updates queries `[b, q, dim]` from inputs `[b, n, c]`; also gives attention `[b, q, n]`.

        The attention returned is the first layer's averaged over heads (rows sum to 1 over
        the inputs), the map used by the object-discovery evaluation.
        """
        if self.num_layers < 1:
            raise ValueError(
                f"CrossAttention needs num_layers >= 1, got {self.num_layers}; "
                "set num_layers to 1 or 2 as in the paper."
            )
        first_attention = None
        for i in range(self.num_layers):
            queries, attention = CrossAttentionBlock(
                num_heads=self.num_heads, mlp_dim=self.mlp_dim, dtype=self.dtype, name=f"layer_{i}"
            )(queries, inputs)
            if first_attention is None:
                first_attention = jnp.mean(attention, axis=1)
        return queries, first_attention
