"""Rotating Features layers against float64 numpy re-implementations of Löwe et al. (2023)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import special_ortho_group

from ocjax.models.complex import ComplexConv, ComplexConvTranspose, ComplexDense
from ocjax.models.rotating import (
    RotatingAutoEncoder,
    RotatingConv,
    RotatingConvTranspose,
    RotatingDense,
    check_inputs,
)

NORM_EPS = 1e-5


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


def np_norm(m, p, axes):
    """Batch (axes = all but last) or layer (axes = last) normalisation with scale and bias."""
    mean, var = m.mean(axes, keepdims=True), m.var(axes, keepdims=True)
    return (m - mean) / np.sqrt(var + NORM_EPS) * p["scale"] + p["bias"]


def np_rotating_layer(z, f_w, p, activation=True, layer_norm=False):
    """Rotating layer on `[b, n, ..., d]`: ψ = f_w(z) + b, m = ½‖f_w(z)‖ + ½f_w(‖z‖), norm,
    rescale ψ (the official layer: the magnitude is taken before the rotation bias)."""
    b, n = z.shape[:2]
    wz = f_w(z.reshape((b * n,) + z.shape[2:]))
    wz = wz.reshape((b, n) + wz.shape[1:])
    psi = wz + p["rotation_bias"].reshape((1, n) + (1,) * (wz.ndim - 3) + (-1,))
    if not activation:
        return psi
    chi = f_w(np.linalg.norm(z, axis=1))
    psi_norm = np.linalg.norm(psi, axis=1)
    m_bind = 0.5 * np.linalg.norm(wz, axis=1) + 0.5 * chi
    axes = (-1,) if layer_norm else tuple(range(m_bind.ndim - 1))
    m_out = np.maximum(np_norm(m_bind, p["norm"], axes), 0)
    return psi / psi_norm[:, None] * m_out[:, None]


def random_variables(layer, x, seed):
    """Variables of `layer` for input `x` with N(0, 0.5²) params (jax float32, numpy float64)."""
    shapes = jax.eval_shape(lambda v: layer.init(jax.random.PRNGKey(0), v), x)
    rng = np.random.default_rng(seed)
    params_np = jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape) * 0.5, shapes["params"])
    stats = jax.tree_util.tree_map_with_path(
        lambda path, s: jnp.full(s.shape, float(path[-1].key == "var"), jnp.float32),
        dict(shapes).get("batch_stats", {}),
    )
    return params_np, stats


def apply(layer, params_np, stats, x):
    """Train-mode apply; returns the output and the sown intermediates as float64 numpy."""
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params_np)
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    out, state = layer.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"])
    inter = jax.tree_util.tree_map(to_float64, state["intermediates"])
    return to_float64(out), inter


def to_float64(a):
    """Numpy float64 (or complex128) copy of an array."""
    return np.asarray(a).astype(np.result_type(np.asarray(a).dtype, np.float64))


def rotating_input(shape, seed):
    """Random float32-representable rotating features `[b, n, ...]`."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32).astype(np.float64)


CASES = {
    "dense": (
        lambda act: RotatingDense(5, activation=act),
        (6, 3, 4),
        lambda k: lambda x: x @ k,
    ),
    "conv": (
        lambda act: RotatingConv(4, strides=(2, 2), activation=act),
        (2, 3, 6, 6, 2),
        lambda k: lambda x: np_conv(x, k, 2, 1),
    ),
    "conv_transpose": (
        lambda act: RotatingConvTranspose(4, activation=act),
        (2, 3, 3, 3, 2),
        lambda k: lambda x: np_conv_transpose(x, k, 2, 1, 6),
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("activation", [True, False])
def test_layer_matches_numpy(kind, activation):
    make, shape, make_fw = CASES[kind]
    z = rotating_input(shape, 1)
    layer = make(activation)
    params, stats = random_variables(layer, jnp.asarray(z, jnp.float32), 2)
    out, _ = apply(layer, params, stats, jnp.asarray(z, jnp.float32))
    f_w = make_fw(params["fw"]["kernel"])
    expected = np_rotating_layer(z, f_w, params, activation, layer_norm=kind == "dense")
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "rotating_cls, complex_cls, shape",
    [
        (RotatingDense, ComplexDense, (8, 4)),
        (RotatingConv, ComplexConv, (2, 5, 5, 3)),
        (RotatingConvTranspose, ComplexConvTranspose, (2, 3, 3, 3)),
    ],
)
def test_n2_matches_complex_layer(rotating_cls, complex_cls, shape):
    """With n = 2, (Re, Im) ↔ the 2 dims, shared f_w, rotation bias 0 and any b_m, b_φ:
    ψ agrees; m_bind = m_z - b_m; with BatchNorm in train mode (conv layers), b_m cancels and
    z_complex = e^{i b_φ} · z_rotating. Dense layers differ after that (BatchNorm vs LayerNorm).
    """
    rng = np.random.default_rng(3)
    z_c = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    z_r = np.stack([z_c.real, z_c.imag], axis=1)
    c_layer, r_layer = complex_cls(4), rotating_cls(4)
    c_params, c_stats = random_variables(c_layer, jnp.asarray(z_c), 4)
    r_params = {
        "fw": c_params["fw"],
        "rotation_bias": np.zeros((2, 4)),
        "norm": c_params["norm"],
    }
    _, r_stats = random_variables(r_layer, jnp.asarray(z_r), 4)
    c_out, c_inter = apply(c_layer, c_params, c_stats, jnp.asarray(z_c))
    r_out, r_inter = apply(r_layer, r_params, r_stats, jnp.asarray(z_r))
    psi_c, psi_r = c_inter["psi"][0], r_inter["psi"][0]
    np.testing.assert_allclose(psi_r[:, 0], psi_c.real, atol=1e-5)
    np.testing.assert_allclose(psi_r[:, 1], psi_c.imag, atol=1e-5)
    np.testing.assert_allclose(
        r_inter["m_bind"][0], c_inter["m_z"][0] - c_params["magnitude_bias"], atol=1e-5
    )
    if rotating_cls is not RotatingDense:
        rotated = np.exp(1j * c_params["phase_bias"]) * (r_out[:, 0] + 1j * r_out[:, 1])
        np.testing.assert_allclose(c_out, rotated, atol=1e-4)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_equivariant_to_rotations_of_the_n_dims(kind):
    make, shape, _ = CASES[kind]
    shape = (shape[0], 4) + shape[2:]
    z = rotating_input(shape, 5)
    rotation = special_ortho_group.rvs(4, random_state=6)
    rotate = lambda x: np.einsum("ij,bj...->bi...", rotation, x)
    layer = make(True)
    params, stats = random_variables(layer, jnp.asarray(z, jnp.float32), 7)
    params["rotation_bias"] = np.zeros_like(params["rotation_bias"])
    out, inter = apply(layer, params, stats, jnp.asarray(z, jnp.float32))
    out_rot, inter_rot = apply(layer, params, stats, jnp.asarray(rotate(z), jnp.float32))
    np.testing.assert_allclose(inter_rot["psi"][0], rotate(inter["psi"][0]), atol=1e-4)
    np.testing.assert_allclose(out_rot, rotate(out), atol=1e-4)
    np.testing.assert_allclose(
        np.linalg.norm(out_rot, axis=1), np.linalg.norm(out, axis=1), atol=1e-4
    )
    # A non-zero rotation bias breaks the equivariance.
    params["rotation_bias"] = np.ones_like(params["rotation_bias"])
    out, _ = apply(layer, params, stats, jnp.asarray(z, jnp.float32))
    out_rot, _ = apply(layer, params, stats, jnp.asarray(rotate(z), jnp.float32))
    assert not np.allclose(out_rot, rotate(out), atol=1e-2)


def test_autoencoder_shapes_and_finite_grads():
    images = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1))
    model = RotatingAutoEncoder(hidden_dim=4, linear_dim=8, n=3)
    params_np, stats = random_variables(model, images, 0)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a * 0.6, jnp.float32), params_np)

    def loss_fn(p):
        out, updates = model.apply(
            {"params": p, "batch_stats": stats}, images, train=True, mutable=["batch_stats"]
        )
        return jnp.mean((out["reconstruction"] - images) ** 2), (out, updates)

    (_, (out, updates)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    assert out["reconstruction"].shape == images.shape
    assert out["magnitude"].shape == images.shape
    assert out["rotating"].shape == (2, 3, 16, 16, 1)
    np.testing.assert_allclose(
        out["magnitude"], np.linalg.norm(np.asarray(out["rotating"]), axis=1), rtol=1e-5, atol=1e-7
    )
    assert "norm" in params["dec_output"]  # The output layer is activated too.
    assert "norm" in updates["batch_stats"]["enc_conv_0"]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


def test_negative_inputs_rejected():
    images = -jnp.ones((1, 8, 8, 1))
    with pytest.raises(ValueError, match="non-negative inputs; rescale to"):
        RotatingAutoEncoder(hidden_dim=2, linear_dim=2).init(jax.random.PRNGKey(0), images)
    with pytest.raises(ValueError, match="non-negative inputs"):
        check_inputs(np.array([[0.5, -0.1]]))
    check_inputs(np.zeros((1, 8, 8, 1)))


def test_n_below_2_rejected():
    with pytest.raises(ValueError, match="n >= 2"):
        RotatingAutoEncoder(n=1).init(jax.random.PRNGKey(0), jnp.ones((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="n >= 2"):
        RotatingDense(3).init(jax.random.PRNGKey(0), jnp.ones((2, 1, 4)))


def test_size_not_divisible_rejected():
    with pytest.raises(ValueError, match=r"2\^3 = 8"):
        RotatingAutoEncoder().init(jax.random.PRNGKey(0), jnp.ones((1, 20, 24, 1)))
