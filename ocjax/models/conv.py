"""Strided and transposed convolutions in the forms XLA:CPU runs fast, each exactly equal to
its Flax counterpart (same parameters, same sums).

The gradient of a stride-s convolution with respect to its input, and both passes of a
stride-s transposed convolution, are convolutions of a zero-dilated array, which XLA:CPU
runs an order of magnitude slower than a plain convolution (3x3, stride 2, 64 channels,
8x8 -> 16x16, batch 256, 2 cores: 918 ms vs 53 ms for the input gradient). Both layers
here move the stride into the channels instead:

* `StridedConv` = `nn.Conv(strides=s, padding=p)`: space-to-depth of the input, then one
  stride-1 convolution whose kernel holds each original tap at its (offset, phase) place;
* `SubPixelConvTranspose` = `nn.ConvTranspose(strides=s, padding=p)` (unflipped kernel):
  one stride-1 convolution of the undilated input computing every output phase as channels,
  then depth-to-space.

Both store the convolution's input, and its output gradient, before XLA:CPU transposes them
for the kernel gradient (`ocjax.models.materialize`): Rotating Features' 4Shapes step 1.01 ->
0.84 s.

Parameters are the Flax layers' (`kernel` `[kh, kw, in, out]`, optional `bias` `[out]`), so
checkpoints are interchangeable.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ocjax.models.materialize import stored, stored_gradient

Dtype = Any
Padding = tuple[tuple[int, int], ...]


def _taps(kernel: int, stride: int, shift: int) -> tuple[np.ndarray, int]:
    """Where each tap t of a 1-D kernel lands once the stride moves into channels.

    Tap t touches (undilated or space-to-depth) index `q + d` at phase r, with
    `t + shift = stride * d + r`. Returns the selection `[stride, D, kernel]` (1 where tap t
    sits at phase r and offset `d_min + index`) and `d_min`.
    """
    places = [(t, *divmod(t + shift, stride)) for t in range(kernel)]
    d_min = min(d for _, d, _ in places)
    d_max = max(d for _, d, _ in places)
    select = np.zeros((stride, d_max - d_min + 1, kernel), np.float32)
    for t, d, r in places:
        select[r, d - d_min, t] = 1.0
    return select, d_min


def _stride1_conv(
    x: jax.Array, kernel: jax.Array, pads: list[tuple[int, int]], dtype: Dtype
) -> jax.Array:
    """Stride-1 NHWC correlation with explicit `pads`; negative pads crop the input."""
    for axis, (lo, hi) in enumerate(pads, start=1):
        x = jax.lax.slice_in_dim(x, max(-lo, 0), x.shape[axis] - max(-hi, 0), axis=axis)
    pads = [(max(lo, 0), max(hi, 0)) for lo, hi in pads]
    # The kernel gradient transposes x and the output gradient; store both first (XLA:CPU).
    witness = kernel[(0,) * kernel.ndim]
    y = jax.lax.conv_general_dilated(
        stored(x.astype(dtype), witness),
        kernel.astype(dtype),
        (1, 1),
        pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return stored_gradient(y, witness)


class _ConvLayer(nn.Module):
    """Fields and parameters shared by both layers: Flax's `kernel` `[kh, kw, in, out]` and
    optional `bias` `[out]`, with Flax's default initialisers."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    padding: Padding
    use_bias: bool = False
    dtype: Dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    def _kernel(self, in_features: int) -> jax.Array:
        """The `kernel` parameter `[kh, kw, in_features, features]`."""
        shape = (*self.kernel_size, in_features, self.features)
        return self.param("kernel", self.kernel_init, shape)

    def _add_bias(self, y: jax.Array) -> jax.Array:
        """`y` plus the `bias` parameter when `use_bias`."""
        if not self.use_bias:
            return y
        return y + self.param("bias", self.bias_init, (self.features,)).astype(self.dtype)


class StridedConv(_ConvLayer):
    """Convolution, exactly `nn.Conv(features, kernel_size, strides, padding)`, computed as
    space-to-depth plus a stride-1 convolution (see the module docstring)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[b, h, w, c]` to `[b, h', w', features]` (h' as `nn.Conv`)."""
        b, c = x.shape[0], x.shape[-1]
        kernel = self._kernel(c)
        (sh, sw), ((lo_h, hi_h), (lo_w, hi_w)) = self.strides, self.padding
        out_h = (x.shape[1] + lo_h + hi_h - self.kernel_size[0]) // sh + 1
        out_w = (x.shape[2] + lo_w + hi_w - self.kernel_size[1]) // sw + 1
        select_h, min_h = _taps(self.kernel_size[0], sh, -lo_h)
        select_w, min_w = _taps(self.kernel_size[1], sw, -lo_w)
        # Input x[s*q + t - lo] = space-to-depth x'[q + d, phase r].
        blocks_h, blocks_w = -(-x.shape[1] // sh), -(-x.shape[2] // sw)
        x = jnp.pad(
            x, ((0, 0), (0, blocks_h * sh - x.shape[1]), (0, blocks_w * sw - x.shape[2]), (0, 0))
        )
        x = x.reshape(b, blocks_h, sh, blocks_w, sw, c).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, blocks_h, blocks_w, sh * sw * c)
        phased = jnp.einsum("rdt,peu,tuio->derpio", select_h, select_w, kernel)
        phased = phased.reshape(phased.shape[:2] + (sh * sw * c, self.features))
        pads = [
            (-min_h, out_h - blocks_h + min_h + select_h.shape[1] - 1),
            (-min_w, out_w - blocks_w + min_w + select_w.shape[1] - 1),
        ]
        return self._add_bias(_stride1_conv(x, phased, pads, self.dtype))


class SubPixelConvTranspose(_ConvLayer):
    """Transposed convolution, exactly `nn.ConvTranspose(features, kernel_size, strides,
    padding)` with an unflipped kernel, computed as one stride-1 convolution of the
    undilated input plus depth-to-space (see the module docstring)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[b, h, w, c]` to `[b, h', w', features]` (h' as `nn.ConvTranspose`)."""
        kernel = self._kernel(x.shape[-1])
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        (lo_h, hi_h), (lo_w, hi_w) = self.padding
        size_h = (x.shape[1] - 1) * sh + 1 + lo_h + hi_h - kh + 1
        size_w = (x.shape[2] - 1) * sw + 1 + lo_w + hi_w - kw + 1
        # Output o = s*q + r sums K[t] x[q + d] over the taps with r + t - lo = s*d.
        select_h, min_h = _phase_selection(kh, sh, lo_h)
        select_w, min_w = _phase_selection(kw, sw, lo_w)
        phases = jnp.einsum("rdt,peu,tuio->deirpo", select_h, select_w, kernel)
        phases = phases.reshape(phases.shape[:3] + (sh * sw * self.features,))
        steps_h, steps_w = -(-size_h // sh), -(-size_w // sw)
        pads = [
            (-min_h, steps_h - x.shape[1] + min_h + select_h.shape[1] - 1),
            (-min_w, steps_w - x.shape[2] + min_w + select_w.shape[1] - 1),
        ]
        y = _stride1_conv(x, phases, pads, self.dtype)
        b = y.shape[0]
        y = y.reshape(b, steps_h, steps_w, sh, sw, self.features)
        y = y.transpose(0, 1, 3, 2, 4, 5).reshape(b, steps_h * sh, steps_w * sw, self.features)
        return self._add_bias(y[:, :size_h, :size_w])


def _phase_selection(kernel: int, stride: int, pad_lo: int) -> tuple[np.ndarray, int]:
    """`[stride, D, kernel]` selection of the taps each output phase of a transposed conv
    uses, at input offsets `d_min ..`: tap t serves phase r at offset d when
    `r + t - pad_lo = stride * d`."""
    places = [
        (r, t, (r + t - pad_lo) // stride)
        for r in range(stride)
        for t in range(kernel)
        if (r + t - pad_lo) % stride == 0
    ]
    d_min = min(d for _, _, d in places)
    select = np.zeros((stride, max(d for _, _, d in places) - d_min + 1, kernel), np.float32)
    for r, t, d in places:
        select[r, d - d_min, t] = 1.0
    return select, d_min


def transpose_same_padding(kernel_size: tuple[int, ...], strides: tuple[int, ...]) -> Padding:
    """The explicit padding `nn.ConvTranspose(padding="SAME")` uses (output = input * stride)."""
    pads = []
    for k, s in zip(kernel_size, strides):
        total = k + s - 2
        lo = k - 1 if s > k - 1 else -(-total // 2)
        pads.append((lo, total - lo))
    return tuple(pads)
