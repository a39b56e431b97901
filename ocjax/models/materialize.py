"""Keep XLA:CPU from recomputing a convolution's operands inside its layout transposes.

The kernel gradient of a convolution reads its input with the batch minor and the output
gradient with the batch third (`[h, w, b, c]`), so XLA:CPU transposes both. When the array
being transposed comes from elementwise ops (bias, ReLU, norms, depth-to-space), XLA fuses
them into the transpose, and the fused loop runs about 5x slower than the transpose of a
stored array (`[576, 16, 16, 32]` to `[32, 16, 16, 576]`: 16.5 ms fused with `relu(x + b)`,
3.4 ms plain; `docs/benchmarks.md`). XLA:CPU removes `optimization_barrier` before fusion,
and a conditional whose branches are equal is simplified away; a conditional whose two
branches compute `x` in different ways is neither, so its operand is computed into memory
first. On other platforms both functions are the identity.

The predicate reads a replicated scalar (`witness`, e.g. one weight), not the data, so a
batch-sharded operand needs no communication to decide it.
"""

import jax
import jax.numpy as jnp


def _computed(x: jax.Array, witness: jax.Array) -> jax.Array:
    """`x`, bit for bit, through a conditional XLA:CPU cannot fuse into `x`'s consumers."""

    def cpu(x: jax.Array, witness: jax.Array) -> jax.Array:
        # Both branches return x bit for bit (negation flips the sign bit only, subnormals
        # included, where a product would flush them); the second runs if the witness is NaN.
        return jax.lax.cond(
            ~jnp.isnan(witness), lambda v: v, lambda v: jnp.negative(jnp.negative(v)), x
        )

    return jax.lax.platform_dependent(x, witness, cpu=cpu, default=lambda x, _: x)


@jax.custom_vjp
def stored(x: jax.Array, witness: jax.Array) -> jax.Array:
    """`x` `[...]` unchanged, computed into memory before its consumers read it (XLA:CPU).

    `witness` is a replicated scalar; the gradient is the identity and is not stored.
    """
    return _computed(x, witness)


def _stored_fwd(x: jax.Array, witness: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Forward pass of `stored`: the stored value, the witness as residual."""
    return _computed(x, witness), witness


def _stored_bwd(witness: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Backward pass of `stored`: the cotangent passes through."""
    return g, jnp.zeros_like(witness)


stored.defvjp(_stored_fwd, _stored_bwd)


@jax.custom_vjp
def stored_gradient(y: jax.Array, witness: jax.Array) -> jax.Array:
    """`y` `[...]` unchanged; its cotangent is computed into memory before the backward pass
    of `y`'s producer reads it (XLA:CPU). `witness` is a replicated scalar."""
    return y


def _stored_gradient_fwd(y: jax.Array, witness: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Forward pass of `stored_gradient`: `y` itself, the witness as residual."""
    return y, witness


def _stored_gradient_bwd(witness: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Backward pass of `stored_gradient`: the cotangent, stored."""
    return _computed(g, witness), jnp.zeros_like(witness)


stored_gradient.defvjp(_stored_gradient_fwd, _stored_gradient_bwd)
