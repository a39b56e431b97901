"""Complex AutoEncoder, CAE (Löwe et al., 2022): objects bind through synchronised phases.

Representation: complex activations are `jnp.complex64` arrays `z = m · e^{iφ}` in NHWC
(`[b, h, w, c]`) or `[b, d]` layout. Inside a layer the real-valued weights `f_w` (no bias) run
in the compute `dtype` on `Re z`, `Im z` and `|z|`; magnitudes, phases, biases and BatchNorm run
in float32, and layers return complex64. Every complex layer computes

    ψ = f_w(Re z) + i f_w(Im z),   m_ψ = |ψ| + b_m,   φ_ψ = arg ψ + b_φ,
    χ = f_w(|z|) + b_m,            m_z = 0.5 m_ψ + 0.5 χ,
    z' = ReLU(Norm(m_z)) · e^{iφ_ψ}             (`activation=True`, every autoencoder layer)
    z' = m_z · e^{iφ_ψ}                          (`activation=False`)

with per-output-feature biases `b_m`, `b_φ`; Norm is BatchNorm for conv layers and LayerNorm
for dense layers. `|ψ|` is floored at `EPS`; `arg ψ` is exact for every ψ with Im ψ ≠ 0 and
treats an exactly real ψ as having Im ψ = +EPS, the official code's nudge (see `safe_angle`:
without it training never leaves real activations).

Initialisation follows PyTorch's defaults, as the official code does: weights and `b_m`
U(±1/sqrt(fan_in)), where a transposed convolution's fan-in counts its *output* channels
(PyTorch reads it from the second axis of the `[in, out, k, k]` weight), `b_φ` = 0.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.conv import StridedConv, SubPixelConvTranspose

Dtype = Any

EPS = 1e-8
NUM_STRIDE2 = 3  # stride-2 layers of the CAE / Rotating Features encoders
# PyTorch-style default init: U(±1/sqrt(fan_in)) for the weights of f_w.
WEIGHT_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# PyTorch's ConvTranspose2d computes that fan-in from its output channels: on Flax's
# `[kh, kw, in, out]` kernel the "input" axis is the last one.
TRANSPOSE_WEIGHT_INIT = nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform", in_axis=-1, out_axis=-2
)


def torch_fan_in(f_w: nn.Module, d_in: int, d_out: int) -> int:
    """PyTorch's fan-in of map `f_w` (`d_in` → `d_out` features): output channels for transposed
    convolutions, input channels otherwise, times the kernel area."""
    channels = d_out if isinstance(f_w, SubPixelConvTranspose) else d_in
    return channels * math.prod(getattr(f_w, "kernel_size", ()) or (1,))


def safe_abs(re: jax.Array, im: jax.Array) -> jax.Array:
    """Magnitude `sqrt(re² + im²)` of same-shape arrays, floored at `EPS` (finite gradient)."""
    return jnp.sqrt(jnp.maximum(re * re + im * im, EPS * EPS))


def safe_angle(re: jax.Array, im: jax.Array) -> jax.Array:
    """Phase `atan2(im', re)` of same-shape arrays, exact wherever `im != 0`; where `im` is
    exactly 0, `im' = EPS` (no gradient flows to the replaced values; at ψ = 0 the gradient
    is finite, `-1 / EPS` for `re`).

    The nudge is what lets a CAE learn phases at all: its input has phase 0 and its phase
    biases start at 0, so without it every activation stays exactly real, where the gradient
    of the loss with respect to every phase bias is exactly zero (a saddle; measured: all
    phase biases still exactly 0 after 2,000 steps and held-out ARI-BG falling to 0.08). The
    nudge moves a real ψ's phase by `EPS / |ψ|` at most, enough for Adam to leave the saddle.
    The official code's `stable_angle` also replaces imaginary parts within ±EPS by +EPS,
    which moves the phase of a small ψ ≠ 0 (by up to π); here those keep their exact phase,
    and the phase biases' gradients at the saddle are of the same size (measured on a CAE at
    initialisation: 1e-11 to 8e-10 per layer, as with the official rule).
    """
    return jnp.arctan2(jnp.where(im == 0, EPS, im), re)


def _fan_in_uniform(fan_in: int) -> nn.initializers.Initializer:
    """Initialiser U(±1/sqrt(fan_in)) for the magnitude bias."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound
    )


def conv_padding(kernel_size: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Symmetric 'k // 2' padding per spatial dim (as PyTorch `padding=k//2`)."""
    return tuple((k // 2, k // 2) for k in kernel_size)


def conv_transpose_padding(
    kernel_size: Sequence[int], strides: Sequence[int]
) -> tuple[tuple[int, int], ...]:
    """Padding of the dilated input so a transposed conv maps size `m` to `m * stride`.

    Equals PyTorch `ConvTranspose2d(padding=k//2, output_padding=stride-1)`.
    """
    return tuple((k - 1 - k // 2, k - 1 - k // 2 + s - 1) for k, s in zip(kernel_size, strides))


def check_downsampling(height: int, width: int, num_stride2: int) -> None:
    """Raise if an `height × width` image cannot pass `num_stride2` stride-2 layers and back."""
    factor = 2**num_stride2
    if height % factor or width % factor:
        raise ValueError(
            f"image size {height}x{width} is not divisible by 2^{num_stride2} = {factor} "
            f"(the encoder has {num_stride2} stride-2 layers); resize or pad the images to a "
            f"multiple of {factor}, e.g. {factor * max(1, round(height / factor))}x"
            f"{factor * max(1, round(width / factor))}."
        )


def weight_map(
    kind: str,
    features: int,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    dtype: Dtype,
) -> nn.Module:
    """The bias-free linear map `f_w` (named `fw`) shared by complex and rotating layers.

    `kind` is "dense", "conv" (padding `k // 2`, as `StridedConv`) or "conv_transpose"
    (padding of `conv_transpose_padding`, unflipped kernel, as `SubPixelConvTranspose`).
    Call inside a compact method.
    """
    common = dict(use_bias=False, dtype=dtype, kernel_init=WEIGHT_INIT, name="fw")
    if kind == "dense":
        return nn.Dense(features, **common)
    if kind == "conv":
        return StridedConv(
            features, tuple(kernel_size), tuple(strides), conv_padding(kernel_size), **common
        )
    return SubPixelConvTranspose(
        features,
        tuple(kernel_size),
        tuple(strides),
        conv_transpose_padding(kernel_size, strides),
        **{**common, "kernel_init": TRANSPOSE_WEIGHT_INIT},
    )


def complex_layer(
    module: nn.Module, f_w: nn.Module, z: jax.Array, train: bool, activation: bool
) -> jax.Array:
    """CAE layer maths inside `module`'s compact call: complex `[b, ..., d_in]` → `[b, ..., d_out]`.

    `f_w` is the bias-free real map; `module` owns `magnitude_bias`, `phase_bias` (each
    `[d_out]`) and, with `activation`, the norm `norm` (BatchNorm if `z` has spatial axes,
    else LayerNorm, as the official CAE). Sows `psi` and `m_z`.
    """
    if not jnp.iscomplexobj(z):
        raise ValueError(
            f"complex layers take complex inputs, got dtype {z.dtype}; "
            "wrap real images as `x.astype(jnp.complex64)` (phase 0)."
        )
    dtype = module.dtype
    re, im = jnp.real(z).astype(jnp.float32), jnp.imag(z).astype(jnp.float32)
    psi_re = f_w(re.astype(dtype)).astype(jnp.float32)
    psi_im = f_w(im.astype(dtype)).astype(jnp.float32)
    d_out = psi_re.shape[-1]
    b_m = module.param(
        "magnitude_bias", _fan_in_uniform(torch_fan_in(f_w, z.shape[-1], d_out)), (d_out,)
    )
    b_phi = module.param("phase_bias", nn.initializers.zeros, (d_out,))
    m_psi = safe_abs(psi_re, psi_im) + b_m
    phi = safe_angle(psi_re, psi_im) + b_phi
    chi = f_w(safe_abs(re, im).astype(dtype)).astype(jnp.float32) + b_m
    m_z = 0.5 * m_psi + 0.5 * chi
    module.sow("intermediates", "psi", jax.lax.complex(psi_re, psi_im))
    module.sow("intermediates", "m_z", m_z)
    if activation:
        m_z = nn.relu(magnitude_norm(m_z, train))
    return jax.lax.complex(m_z * jnp.cos(phi), m_z * jnp.sin(phi))


def magnitude_norm(m: jax.Array, train: bool) -> jax.Array:
    """The norm of a layer's magnitudes `[b, ..., d]` (call inside its compact method):
    BatchNorm (momentum 0.1 in PyTorch terms, eps 1e-5) with spatial axes, else LayerNorm."""
    if m.ndim > 2:
        norm = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=jnp.float32,
            name="norm",
        )
    else:
        norm = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="norm")
    return norm(m)


class ComplexDense(nn.Module):
    """Complex dense layer: complex `[b, ..., d_in]` → complex64 `[b, ..., features]`."""

    features: int
    activation: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Maps complex `[b, ..., d_in]` to complex64 `[b, ..., features]`."""
        f_w = weight_map("dense", self.features, (1, 1), (1, 1), self.dtype)
        return complex_layer(self, f_w, z, train, self.activation)


class ComplexConv(nn.Module):
    """Complex 2-D conv: complex `[b, h, w, c]` → `[b, h/stride, w/stride, features]`.

    Padding is `k // 2` on both sides of each spatial dim (PyTorch-style).
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    activation: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Maps complex `[b, h, w, c]` to complex64 `[b, h', w', features]`."""
        f_w = weight_map("conv", self.features, self.kernel_size, self.strides, self.dtype)
        return complex_layer(self, f_w, z, train, self.activation)


class ComplexConvTranspose(nn.Module):
    """Complex transposed conv: complex `[b, h, w, c]` → `[b, h·stride, w·stride, features]`.

    `f_w` is a `SubPixelConvTranspose` (unflipped kernel) with `conv_transpose_padding`.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (2, 2)
    activation: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Maps complex `[b, h, w, c]` to complex64 `[b, h·s, w·s, features]`."""
        f_w = weight_map(
            "conv_transpose", self.features, self.kernel_size, self.strides, self.dtype
        )
        return complex_layer(self, f_w, z, train, self.activation)


class ComplexAutoEncoder(nn.Module):
    """CAE on images `[b, h, w, c]` (h, w divisible by 8).

    Encoder: complex convs 3×3 with channels (H, H, 2H, 2H, 2H) and strides (2, 1, 2, 1, 2),
    flatten, complex dense to `linear_dim`. Decoder: complex dense back to `2H · h/8 · w/8`,
    then transposed 3×3 conv (2H, stride 2), conv (2H), transposed conv (H, stride 2), conv (H),
    transposed conv (c, stride 2) as the output layer. Every layer, the output layer included,
    applies BatchNorm (conv) or LayerNorm (dense) + ReLU on magnitudes, as the official code
    does. Input phase is 0. Reconstruction `sigmoid(1×1 conv(|z_out|))`, the 1×1 conv
    initialised to weights 1 and bias 0 (the official output model).
    """

    hidden_dim: int = 32
    linear_dim: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """Images `[b, h, w, c]` → reconstruction, magnitude, phase, each `[b, h, w, c]`."""
        if images.ndim != 4:
            raise ValueError(
                f"ComplexAutoEncoder takes images [batch, height, width, channels], got shape "
                f"{images.shape}; add the missing batch or channel axis."
            )
        b, h, w, c = images.shape
        check_downsampling(h, w, NUM_STRIDE2)
        hid = self.hidden_dim
        kw = {"dtype": self.dtype}
        z = images.astype(jnp.float32).astype(jnp.complex64)
        encoder = zip((hid, hid, 2 * hid, 2 * hid, 2 * hid), (2, 1, 2, 1, 2))
        for i, (feat, stride) in enumerate(encoder):
            conv = ComplexConv(feat, strides=(stride, stride), name=f"enc_conv_{i}", **kw)
            z = conv(z, train)
        latent_shape = z.shape[1:]
        z = ComplexDense(features=self.linear_dim, name="enc_linear", **kw)(z.reshape(b, -1), train)
        z = ComplexDense(features=math.prod(latent_shape), name="dec_linear", **kw)(z, train)
        z = z.reshape((b,) + latent_shape)
        z = ComplexConvTranspose(features=2 * hid, name="dec_convt_0", **kw)(z, train)
        z = ComplexConv(features=2 * hid, name="dec_conv_0", **kw)(z, train)
        z = ComplexConvTranspose(features=hid, name="dec_convt_1", **kw)(z, train)
        z = ComplexConv(features=hid, name="dec_conv_1", **kw)(z, train)
        z = ComplexConvTranspose(features=c, name="dec_output", **kw)(z, train)
        magnitude = safe_abs(jnp.real(z), jnp.imag(z))
        logits = nn.Conv(
            c,
            (1, 1),
            dtype=jnp.float32,
            kernel_init=nn.initializers.ones,
            bias_init=nn.initializers.zeros,
            name="output_1x1",
        )(magnitude)
        return {
            "reconstruction": jax.nn.sigmoid(logits),
            "magnitude": magnitude,
            "phase": safe_angle(jnp.real(z), jnp.imag(z)),
        }
