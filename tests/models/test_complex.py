"""Complex AutoEncoder layers against float64 numpy re-implementations of Löwe et al. (2022)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models.complex import (
    ComplexAutoEncoder,
    ComplexConv,
    ComplexConvTranspose,
    ComplexDense,
    safe_angle,
)
from ocjax.models.rotating import RotatingAutoEncoder, RotatingConvTranspose

BN_EPS = 1e-5


def np_dense(x, kernel):
    """Bias-free dense map `[..., d_in] @ [d_in, d_out]`."""
    return x @ kernel


def np_conv(x, kernel, stride, pad):
    """Explicit-loop correlation of `[b, h, w, c]` with `[kh, kw, c, o]`, symmetric `pad`."""
    b, h, w, _ = x.shape
    kh, kw, _, o = kernel.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((b, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("bklc,klco->bo", patch, kernel)
    return out


def np_conv_transpose(x, kernel, stride, pad_lo, out_size):
    """Scatter loop: input pixel `i` adds `x[i] W[a]` to output `stride·i + pad_lo - a`."""
    b, h, w, _ = x.shape
    kh, kw, _, o = kernel.shape
    out = np.zeros((b, out_size, out_size, o))
    for i in range(h):
        for j in range(w):
            for a in range(kh):
                for c in range(kw):
                    y, xx = stride * i + pad_lo - a, stride * j + pad_lo - c
                    if 0 <= y < out_size and 0 <= xx < out_size:
                        out[:, y, xx, :] += x[:, i, j, :] @ kernel[a, c]
    return out


def np_batch_norm(m, scale, bias, mean=None, var=None):
    """BatchNorm over all axes but the last; batch statistics unless `mean`/`var` given."""
    axes = tuple(range(m.ndim - 1))
    if mean is None:
        mean, var = m.mean(axes), m.var(axes)
    return (m - mean) / np.sqrt(var + BN_EPS) * scale + bias


def np_stable_angle(psi, eps=1e-8):
    """The official CAE's `stable_angle`: imaginary parts within ±eps become +eps."""
    return np.angle(np.where(np.abs(psi.imag) < eps, psi.real + 1j * eps, psi))


def np_angle(psi, eps=1e-8):
    """ocjax's phase: exact, except that an exactly real ψ gets imaginary part +eps."""
    return np.angle(np.where(psi.imag == 0, psi.real + 1j * eps, psi))


def np_layer_norm(m, scale, bias):
    """LayerNorm over the last axis."""
    mean, var = m.mean(-1, keepdims=True), m.var(-1, keepdims=True)
    return (m - mean) / np.sqrt(var + BN_EPS) * scale + bias


def np_complex_layer(z, f_w, p, activation=True, stats=None):
    """CAE layer: ψ = f_w(Re) + i f_w(Im), biases on |ψ| and arg ψ, gating, BN (conv) or
    LayerNorm (dense) + ReLU."""
    psi = f_w(z.real) + 1j * f_w(z.imag)
    m_psi = np.abs(psi) + p["magnitude_bias"]
    phi = np_angle(psi) + p["phase_bias"]
    chi = f_w(np.abs(z)) + p["magnitude_bias"]
    m = 0.5 * m_psi + 0.5 * chi
    if activation and m.ndim == 2:
        m = np.maximum(np_layer_norm(m, p["norm"]["scale"], p["norm"]["bias"]), 0)
    elif activation:
        mean, var = (None, None) if stats is None else (stats["mean"], stats["var"])
        m = np.maximum(np_batch_norm(m, p["norm"]["scale"], p["norm"]["bias"], mean, var), 0)
    return m * np.exp(1j * phi)


def randomise(variables, seed):
    """Replaces every param by a float64 normal sample (returns jax and numpy copies)."""
    leaves, tree = jax.tree_util.tree_flatten(variables["params"])
    rng = np.random.default_rng(seed)
    new = [rng.normal(size=leaf.shape) * 0.5 for leaf in leaves]
    params_np = jax.tree_util.tree_unflatten(tree, new)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params_np)
    return {**variables, "params": params}, params_np


def random_complex(shape, seed):
    """Complex64-representable random array with random magnitudes and phases."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0, 1, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    return z.astype(np.complex64).astype(np.complex128)


def run_layer(layer, z, seed, train=True):
    """Initialises `layer`, randomises its params and applies it (train mode: batch stats)."""
    variables = layer.init(jax.random.PRNGKey(0), jnp.asarray(z, jnp.complex64), train=False)
    variables, params_np = randomise(variables, seed)
    out, updates = layer.apply(
        variables, jnp.asarray(z, jnp.complex64), train=train, mutable=["batch_stats"]
    )
    return np.asarray(out, np.complex128), params_np, variables, updates


@pytest.mark.parametrize("activation", [True, False])
def test_dense_matches_numpy(activation):
    z = random_complex((16, 5), 1)
    layer = ComplexDense(7, activation=activation)
    out, p, _, _ = run_layer(layer, z, 2)
    expected = np_complex_layer(z, lambda x: np_dense(x, p["fw"]["kernel"]), p, activation)
    assert out.dtype == np.complex128 and out.shape == (16, 7)
    np.testing.assert_allclose(out, expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_matches_numpy(stride):
    z = random_complex((3, 6, 6, 2), 3)
    out, p, _, _ = run_layer(ComplexConv(4, strides=(stride, stride)), z, 4)
    f_w = lambda x: np_conv(x, p["fw"]["kernel"], stride, 1)
    np.testing.assert_allclose(out, np_complex_layer(z, f_w, p), atol=2e-4, rtol=1e-4)
    assert out.shape == (3, 6 // stride, 6 // stride, 4)


@pytest.mark.parametrize("activation", [True, False])
def test_conv_transpose_matches_numpy(activation):
    z = random_complex((3, 3, 3, 2), 5)
    layer = ComplexConvTranspose(4, activation=activation)
    out, p, _, _ = run_layer(layer, z, 6)
    f_w = lambda x: np_conv_transpose(x, p["fw"]["kernel"], 2, 1, 6)
    expected = np_complex_layer(z, f_w, p, activation)
    assert out.shape == (3, 6, 6, 4)
    np.testing.assert_allclose(out, expected, atol=2e-4, rtol=1e-4)


def test_batch_stats_updated_in_train_and_used_in_eval():
    z = random_complex((4, 5, 5, 2), 7)
    out, p, variables, updates = run_layer(ComplexConv(3), z, 8, train=True)
    f_w = lambda x: np_conv(x, p["fw"]["kernel"], 1, 1)
    psi = f_w(z.real) + 1j * f_w(z.imag)
    m = 0.5 * (np.abs(psi) + p["magnitude_bias"]) + 0.5 * (f_w(np.abs(z)) + p["magnitude_bias"])
    stats = updates["batch_stats"]["norm"]
    # flax momentum 0.9 from mean 0, var 1.
    np.testing.assert_allclose(stats["mean"], 0.1 * m.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * m.var((0, 1, 2)), rtol=1e-4, atol=1e-5)

    eval_vars = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    eval_out = ComplexConv(3).apply(eval_vars, jnp.asarray(z, jnp.complex64), train=False)
    np_stats = {k: np.asarray(v, np.float64) for k, v in stats.items()}
    expected = np_complex_layer(z, f_w, p, stats=np_stats)
    np.testing.assert_allclose(np.asarray(eval_out), expected, atol=2e-4, rtol=1e-4)
    assert not np.allclose(np.asarray(eval_out), out, atol=1e-3)


def numpy_init(model, images, seed=0):
    """Variables of `model` without compiling init: U(±0.3) params, BatchNorm mean 0 / var 1."""
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), images)
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.uniform(-0.3, 0.3, s.shape), jnp.float32), shapes["params"]
    )
    stats = jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.full(s.shape, float(path[-1].key == "var"), jnp.float32),
        shapes["batch_stats"],
    )
    return {"params": params, "batch_stats": stats}


def train_step(model, images):
    """Outputs, stat updates and grads of one jitted train-mode pass."""
    variables = numpy_init(model, images)

    def loss_fn(params):
        out, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.mean((out["reconstruction"] - images) ** 2), (out, updates)

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (_, (out, updates)), grads = grad_fn(variables["params"])
    return variables, out, updates, grads


def test_autoencoder_shapes_and_train_step_updates_stats():
    images = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1))
    variables, out, updates, grads = train_step(
        ComplexAutoEncoder(hidden_dim=4, linear_dim=8), images
    )
    for key in ("reconstruction", "magnitude", "phase"):
        assert out[key].shape == images.shape and out[key].dtype == jnp.float32
    recon = np.asarray(out["reconstruction"])
    assert np.all((recon > 0) & (recon < 1))
    assert "norm" in variables["params"]["dec_output"]  # The output layer is activated too.
    changed = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(changed))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize("size", [(30, 32), (36, 36)])
def test_autoencoder_rejects_sizes_not_divisible_by_8(size):
    images = jnp.zeros((1, *size, 1))
    with pytest.raises(ValueError, match="3 stride-2 layers"):
        ComplexAutoEncoder(hidden_dim=4, linear_dim=4).init(jax.random.PRNGKey(0), images)


def test_layer_rejects_real_inputs():
    with pytest.raises(ValueError, match="complex inputs"):
        ComplexDense(3).init(jax.random.PRNGKey(0), jnp.ones((2, 4)))


@pytest.mark.parametrize("layer_cls", [ComplexConvTranspose, RotatingConvTranspose])
def test_transposed_conv_init_takes_fan_in_from_output_channels(layer_cls):
    """PyTorch's ConvTranspose2d (the official code) draws weights and biases from
    U(±1/sqrt(out_channels · k²)); with 1 output and 32 input channels that bound is 1/3,
    far above the 1/sqrt(32 · 9) ≈ 0.059 an input-channel fan-in would give."""
    if layer_cls is ComplexConvTranspose:
        x = jnp.ones((1, 2, 2, 32), jnp.complex64)
        bias_name = "magnitude_bias"
    else:
        x = jnp.ones((1, 4, 2, 2, 32))
        bias_name = "rotation_bias"
    params = layer_cls(1).init(jax.random.PRNGKey(0), x)["params"]
    kernel, bias = np.asarray(params["fw"]["kernel"]), np.asarray(params[bias_name])
    assert kernel.shape == (3, 3, 32, 1)
    bound = 1 / np.sqrt(1 * 9)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.8 * bound
    assert kernel.std() > 0.7 * bound / np.sqrt(3)  # U(±b) has std b / sqrt(3).
    assert np.abs(bias).max() <= bound


@pytest.mark.parametrize("model_cls", [ComplexAutoEncoder, RotatingAutoEncoder])
def test_output_layer_has_the_activation(model_cls):
    """The official CAE and Rotating Features normalise and rectify the output layer too."""
    images = jnp.ones((2, 16, 16, 1))
    params = jax.eval_shape(
        lambda x: model_cls(hidden_dim=4, linear_dim=4).init(jax.random.PRNGKey(0), x), images
    )["params"]
    assert "norm" in params["dec_output"]
    assert params["enc_linear"]["norm"].keys() == {"scale", "bias"}  # LayerNorm on dense.


def test_safe_angle_nudges_only_exactly_real_values():
    re = np.array([1.0, -1.0, 0.0, 1e-9, -2.0, 3.0, 0.0], np.float32)
    im = np.array([0.0, 0.0, 0.0, 0.0, 5e-9, -1.0, -1e-9], np.float32)
    psi = re.astype(np.float64) + 1j * im.astype(np.float64)
    expected = np_angle(psi)
    np.testing.assert_allclose(safe_angle(jnp.asarray(re), jnp.asarray(im)), expected, atol=1e-6)
    # Where |Im ψ| < 1e-8 but ψ is not real, the official stable_angle moves the phase.
    assert np.any(np.abs(np_stable_angle(psi) - expected) > 1.0)
    grads = jax.grad(lambda r, i: jnp.sum(safe_angle(r, i)), argnums=1)(
        jnp.asarray(re), jnp.asarray(im)
    )
    assert np.all(np.asarray(grads)[im == 0] == 0)  # Replaced values get none.


def test_safe_angle_is_exact_at_tiny_magnitudes():
    rng = np.random.default_rng(0)
    size = 10_000
    magnitude = 10.0 ** rng.uniform(-12, -6, size)
    phase = rng.uniform(-np.pi, np.pi, size)
    re = (magnitude * np.cos(phase)).astype(np.float32)
    im = (magnitude * np.sin(phase)).astype(np.float32)
    im[im == 0] = np.float32(1e-13)
    assert np.mean(np.abs(im) < 1e-8) > 0.3  # Many the official rule would have moved.
    expected = np.angle(re.astype(np.float64) + 1j * im.astype(np.float64))
    got = np.asarray(safe_angle(jnp.asarray(re), jnp.asarray(im)), np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)


def test_safe_angle_gradient_at_zero_is_finite():
    grads = jax.grad(lambda r, i: safe_angle(r, i), argnums=(0, 1))(
        jnp.float32(0.0), jnp.float32(0.0)
    )
    assert all(np.isfinite(float(g)) for g in grads)
    assert float(safe_angle(jnp.float32(0.0), jnp.float32(0.0))) == np.float32(np.pi / 2)


def test_phase_biases_get_gradients_from_real_inputs():
    """With real images and zero phase biases every activation is (nearly) real; the
    official eps-nudge in the phase keeps the gradient of the phase biases non-zero there,
    so training can leave that saddle (without it they stay exactly 0)."""
    images = jax.random.uniform(jax.random.PRNGKey(0), (4, 16, 16, 1))
    model = ComplexAutoEncoder(hidden_dim=4, linear_dim=8)
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), images)

    def loss(params):
        out, _ = model.apply(
            {**variables, "params": params}, images, train=True, mutable=["batch_stats"]
        )
        return jnp.mean((out["reconstruction"] - images) ** 2)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    hidden = [k for k in grads if k not in ("dec_output", "output_1x1")]
    assert all(float(jnp.abs(grads[k]["phase_bias"]).max()) > 0 for k in hidden)
