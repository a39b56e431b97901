"""Rotating Features (Löwe et al., NeurIPS 2023): objects bind through n-dim orientations.

Layout: rotating features are real arrays `[b, n, h, w, c]` (conv) or `[b, n, d]` (dense), the
n rotation dims right after the batch axis, so the shared bias-free map `f_w` runs on all n
at once by folding n into the batch. A layer computes (norms over the n axis)

    ψ = f_w(z_in) + b                  (b: rotation bias `[n, d_out]`)
    χ = f_w(‖z_in‖₂)                   (no bias)
    m_bind = 0.5 ‖f_w(z_in)‖₂ + 0.5 χ   (the magnitude is taken before the bias)
    m_out = ReLU(Norm(m_bind))         (BatchNorm for conv layers, LayerNorm for dense layers)
    z_out = ψ / ‖ψ‖₂ · m_out           (`activation=True`, every autoencoder layer;
                                        otherwise z_out = ψ)

The activation of the output layer matters for binding: χ is a signed sum, so it rewards
orientations that agree in sign, while ‖f_w(z)‖ alone cannot tell u from -u. Initialisation
is PyTorch's default, as in the official code (see `ocjax.models.complex`: transposed
convolutions take their fan-in from the output channels, also for the rotation bias
U(±1/sqrt(fan_in))).

`‖·‖₂` is `sqrt(max(Σ ψ², EPS²))` with `EPS = 1e-8`: exact above EPS, finite gradient at 0.
`f_w` runs in the compute `dtype`; norms, biases and normalisation run in float32; layers
return float32.

Inputs must be non-negative (the image magnitude is the first of the n dims). `__call__`
checks concrete inputs; under `jax.jit` inputs are traced, so pipelines call `check_inputs`
on the host batch.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ocjax.models.complex import (
    EPS,
    NUM_STRIDE2,
    check_downsampling,
    magnitude_norm,
    torch_fan_in,
    weight_map,
)

Dtype = Any


def rotation_norm(z: jax.Array) -> jax.Array:
    """Norm over the n axis (axis 1): `[b, n, ...]` → `[b, ...]`, floored at `EPS`."""
    return jnp.sqrt(jnp.maximum(jnp.sum(z * z, axis=1), EPS * EPS))


def check_inputs(images: Any) -> None:
    """Raise if host images `[b, h, w, c]` hold negative values (Rotating Features need ≥ 0)."""
    minimum = float(np.min(np.asarray(images)))
    if minimum < 0:
        raise ValueError(
            f"rotating features need non-negative inputs; rescale to [0, 1] (got a minimum of "
            f"{minimum:.4g}, e.g. undo mean/std normalisation)."
        )


def _check_n(n: int) -> None:
    """Raise unless the number of rotation dims is at least 2."""
    if n < 2:
        raise ValueError(
            f"rotating features need n >= 2 rotation dims, got n = {n}; set n to 2 or more "
            "(default 8)."
        )


def _fold(f_w: nn.Module, z: jax.Array, dtype: Dtype) -> jax.Array:
    """Applies `f_w` to `[b, n, ...]` by folding n into the batch; returns float32."""
    b, n = z.shape[:2]
    out = f_w(z.reshape((b * n,) + z.shape[2:]).astype(dtype)).astype(jnp.float32)
    return out.reshape((b, n) + out.shape[1:])


def rotating_layer(
    module: nn.Module, f_w: nn.Module, z: jax.Array, train: bool, activation: bool
) -> jax.Array:
    """Rotating layer maths in `module`'s compact call: `[b, n, ..., d_in]` → `[b, n, ..., d_out]`.

    `module` owns the `rotation_bias` `[n, d_out]` and, with `activation`, the norm `norm`
    (BatchNorm if `z` has spatial axes, else LayerNorm). Sows `psi` and `m_bind`.
    """
    _check_n(z.shape[1])
    z = z.astype(jnp.float32)
    wz = _fold(f_w, z, module.dtype)
    n, d_out = wz.shape[1], wz.shape[-1]
    bound = 1.0 / math.sqrt(torch_fan_in(f_w, z.shape[-1], d_out))
    bias = module.param(
        "rotation_bias",
        lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound),
        (n, d_out),
    )
    psi = wz + bias.reshape((1, n) + (1,) * (wz.ndim - 3) + (d_out,))
    module.sow("intermediates", "psi", psi)
    if not activation:
        return psi
    chi = f_w(rotation_norm(z).astype(module.dtype)).astype(jnp.float32)
    m_bind = 0.5 * rotation_norm(wz) + 0.5 * chi
    module.sow("intermediates", "m_bind", m_bind)
    m_out = nn.relu(magnitude_norm(m_bind, train))
    return psi / rotation_norm(psi)[:, None] * m_out[:, None]


class RotatingDense(nn.Module):
    """Rotating dense layer: `[b, n, d_in]` → `[b, n, features]` (LayerNorm activation)."""

    features: int
    activation: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Maps `[b, n, d_in]` to `[b, n, features]`."""
        f_w = weight_map("dense", self.features, (1, 1), (1, 1), self.dtype)
        return rotating_layer(self, f_w, z, train, self.activation)


class RotatingConv(nn.Module):
    """Rotating 2-D conv: `[b, n, h, w, c]` → `[b, n, h/stride, w/stride, features]`.

    Padding is `k // 2` on both sides (PyTorch-style); BatchNorm activation.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    activation: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Maps `[b, n, h, w, c]` to `[b, n, h', w', features]`."""
        f_w = weight_map("conv", self.features, self.kernel_size, self.strides, self.dtype)
        return rotating_layer(self, f_w, z, train, self.activation)


class RotatingConvTranspose(nn.Module):
    """Rotating transposed conv: `[b, n, h, w, c]` → `[b, n, h·stride, w·stride, features]`.

    `f_w` is a `SubPixelConvTranspose` (unflipped kernel) with `conv_transpose_padding`.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (2, 2)
    activation: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Maps `[b, n, h, w, c]` to `[b, n, h·s, w·s, features]`."""
        f_w = weight_map(
            "conv_transpose", self.features, self.kernel_size, self.strides, self.dtype
        )
        return rotating_layer(self, f_w, z, train, self.activation)


class RotatingAutoEncoder(nn.Module):
    """Rotating Features autoencoder on non-negative images `[b, h, w, c]` (h, w divisible by 8).

    The official architecture: rotating convs 3×3 with channels (H, H, 2H, 2H, 2H) and
    strides (2, 1, 2, 1, 2), flatten, dense to `linear_dim`; decoder dense back, transposed
    conv (2H, stride 2), conv (2H), transposed conv (2H, stride 2), conv (H), transposed conv
    (c, stride 2) as the output layer; every layer, the output layer included, has the
    activation. Input: the image in the first of the n dims, zeros elsewhere. Reconstruction
    `sigmoid(scale · ‖z_out‖ + shift)` with per-channel scale (init 1) and shift (init 0).
    """

    hidden_dim: int = 32
    linear_dim: int = 64
    n: int = 8
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """Images `[b, h, w, c]` → reconstruction, magnitude `[b, h, w, c]`, rotating `[b, n, h, w, c]`.

        `images` must be non-negative; concrete inputs are checked here, traced ones are not.
        """
        if images.ndim != 4:
            raise ValueError(
                f"RotatingAutoEncoder takes images [batch, height, width, channels], got shape "
                f"{images.shape}; add the missing batch or channel axis."
            )
        _check_n(self.n)
        b, h, w, c = images.shape
        check_downsampling(h, w, NUM_STRIDE2)
        if not isinstance(images, jax.core.Tracer):
            check_inputs(images)
        hid = self.hidden_dim
        images = images.astype(jnp.float32)
        z = jnp.concatenate(
            [images[:, None], jnp.zeros((b, self.n - 1, h, w, c), jnp.float32)], axis=1
        )
        encoder = zip((hid, hid, 2 * hid, 2 * hid, 2 * hid), (2, 1, 2, 1, 2))
        for i, (feat, stride) in enumerate(encoder):
            conv = RotatingConv(
                feat, strides=(stride, stride), dtype=self.dtype, name=f"enc_conv_{i}"
            )
            z = conv(z, train)
        latent_shape = z.shape[2:]
        z = z.reshape(b, self.n, -1)
        z = RotatingDense(self.linear_dim, dtype=self.dtype, name="enc_linear")(z, train)
        z = RotatingDense(math.prod(latent_shape), dtype=self.dtype, name="dec_linear")(z, train)
        z = z.reshape((b, self.n) + latent_shape)
        z = RotatingConvTranspose(2 * hid, dtype=self.dtype, name="dec_convt_0")(z, train)
        z = RotatingConv(2 * hid, dtype=self.dtype, name="dec_conv_0")(z, train)
        z = RotatingConvTranspose(2 * hid, dtype=self.dtype, name="dec_convt_1")(z, train)
        z = RotatingConv(hid, dtype=self.dtype, name="dec_conv_1")(z, train)
        z = RotatingConvTranspose(c, dtype=self.dtype, name="dec_output")(z, train)
        magnitude = rotation_norm(z)
        scale = self.param("output_scale", nn.initializers.ones, (c,))
        shift = self.param("output_shift", nn.initializers.zeros, (c,))
        return {
            "reconstruction": jax.nn.sigmoid(scale * magnitude + shift),
            "magnitude": magnitude,
            "rotating": z,
        }
