"""`stored` and `stored_gradient` are the identity, in values and gradients, and survive XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models.materialize import stored, stored_gradient

SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 3.0e38, -1.5]


def _inputs(dtype) -> np.ndarray:
    """Random normals plus the values arithmetic could alter: NaN, ±inf, ±0, subnormals."""
    x = np.random.default_rng(0).normal(size=(4, 5, 6, 3)).astype(np.float32)
    x.reshape(-1)[: len(SPECIAL)] = SPECIAL
    return np.asarray(jnp.asarray(x, dtype))


def _assert_bitwise_equal(actual, expected) -> None:
    """Same values, same signs of zero, NaN where NaN."""
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_array_equal(actual[finite], expected[finite])
    np.testing.assert_array_equal(np.signbit(actual[finite]), np.signbit(expected[finite]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("witness", [0.25, np.nan], ids=["taken", "other-branch"])
@pytest.mark.parametrize("fn", [stored, stored_gradient])
def test_values_are_the_input_bit_for_bit(fn, witness, dtype):
    """Also through the conditional's second branch, which a NaN witness selects."""
    x = _inputs(dtype)
    out = jax.jit(fn)(x, jnp.float32(witness))
    assert out.dtype == x.dtype and out.shape == x.shape
    _assert_bitwise_equal(out, x)


@pytest.mark.parametrize("fn", [stored, stored_gradient])
def test_gradient_is_the_identity(fn):
    """d/dx sum(sin(fn(x)^2)) against float64 numpy, and bit-equal to the plain function's."""
    x = np.random.default_rng(1).normal(size=(3, 7, 5)).astype(np.float32)
    witness = jnp.float32(-0.7)

    def loss(v, w):
        return jnp.sum(jnp.sin(fn(v * 1.5, w) ** 2))

    grad_x, grad_w = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, witness)
    x64 = x.astype(np.float64) * 1.5
    np.testing.assert_allclose(grad_x, 1.5 * np.cos(x64**2) * 2 * x64, rtol=1e-5, atol=1e-6)
    plain = jax.jit(jax.grad(lambda v: jnp.sum(jnp.sin((v * 1.5) ** 2))))(x)
    np.testing.assert_array_equal(grad_x, plain)
    assert float(grad_w) == 0.0


def test_xla_keeps_the_barrier_on_cpu():
    """After XLA's optimisations the compiled CPU program still holds the conditional (the
    speed-up in `docs/benchmarks.md` depends on it), and a transpose reads its result."""
    x = jnp.ones((8, 4, 4, 3))

    def f(v):
        return jnp.transpose(stored(jax.nn.relu(v + 1.0), v[0, 0, 0, 0]), (3, 1, 2, 0))

    hlo = jax.jit(f).lower(x).compile().as_text()
    assert "conditional(" in hlo
    np.testing.assert_array_equal(jax.jit(f)(x), np.full((3, 4, 4, 8), 2.0))
