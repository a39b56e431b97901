"""The fast strided and transposed convolutions equal Flax's layers in values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models.complex import conv_transpose_padding
from ocjax.models.conv import StridedConv, SubPixelConvTranspose, transpose_same_padding


def _assert_same_function(ours, reference, x, use_bias):
    """Equal outputs and equal gradients (parameters and input) on a random input."""
    params = reference.init(jax.random.PRNGKey(1), x)
    if use_bias:  # Flax initialises biases to 0; make them count.
        params = jax.tree_util.tree_map_with_path(
            lambda path, v: v + 0.3 if path[-1].key == "bias" else v, params
        )
    expected = reference.apply(params, x)
    actual = ours.apply(params, x)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)

    def loss(module):
        return lambda p, v: jnp.sum(jnp.sin(module.apply(p, v)))

    grads = jax.grad(loss(ours), argnums=(0, 1))(params, x)
    expected_grads = jax.grad(loss(reference), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


CASES = [
    ((3, 3), (2, 2), (4, 5)),
    ((3, 3), (1, 1), (5, 5)),
    ((5, 3), (2, 3), (7, 8)),
    ((4, 4), (2, 2), (6, 6)),
    ((5, 5), (2, 2), (8, 8)),
]


@pytest.mark.parametrize("kernel, stride, size", CASES)
@pytest.mark.parametrize("use_bias", [False, True])
def test_strided_conv_equals_flax_conv(kernel, stride, size, use_bias):
    padding = tuple((k // 2, (k - 1) // 2 + s - 1) for k, s in zip(kernel, stride))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *size, 3))
    reference = nn.Conv(4, kernel, strides=stride, padding=padding, use_bias=use_bias)
    ours = StridedConv(4, kernel, stride, padding, use_bias=use_bias)
    _assert_same_function(ours, reference, x, use_bias)


@pytest.mark.parametrize("kernel, stride, size", CASES)
@pytest.mark.parametrize("same", [False, True])
def test_subpixel_transposed_conv_equals_flax_conv_transpose(kernel, stride, size, same):
    """Explicit (CAE / Rotating Features) and "SAME" (Slot Attention decoder) padding, odd
    and even kernels, unequal strides."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, *size, 3))
    if same:
        reference = nn.ConvTranspose(4, kernel, strides=stride, padding="SAME")
        padding = transpose_same_padding(kernel, stride)
        ours = SubPixelConvTranspose(4, kernel, stride, padding, use_bias=True)
    else:
        padding = conv_transpose_padding(kernel, stride)
        reference = nn.ConvTranspose(4, kernel, strides=stride, padding=padding, use_bias=False)
        ours = SubPixelConvTranspose(4, kernel, stride, padding)
    _assert_same_function(ours, reference, x, same)
