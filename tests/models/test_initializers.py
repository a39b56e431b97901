"""The Keras (official Slot Attention) initialisation of the Slot Attention autoencoder."""

import flax
import jax
import numpy as np
import pytest

from ocjax.models import build_model, initializers


def init_params(kernel_init: str) -> dict:
    """Flat parameters of a Tetrominoes-sized autoencoder (32-channel convs, 64-d slots)."""
    model = build_model(
        "slot_attention_autoencoder",
        num_slots=4,
        encoder_channels=[32, 32],
        decoder_initial_size=12,
        decoder_upsample_channels=[],
        decoder_hidden_channels=[32],
        kernel_init=kernel_init,
    )
    rngs = {"params": jax.random.key(0), "slots": jax.random.key(1)}
    variables = model.init(rngs, np.zeros((1, 12, 12, 3), np.float32))
    return flax.traverse_util.flatten_dict(jax.device_get(variables["params"]), sep="/")


def glorot_limit(shape: tuple[int, ...]) -> float:
    """Keras' glorot-uniform bound for a kernel `[..., in, out]` (receptive field in both fans)."""
    receptive = int(np.prod(shape[:-2]))
    return float(np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1]))))


def test_glorot_scheme_draws_every_kernel_as_keras_does():
    params = init_params("glorot_uniform")
    kernels = {k: v for k, v in params.items() if k.endswith("kernel") and "/gru/" not in k}
    assert len(kernels) == 13  # 2 convs, 2 positions, 2 MLP, q/k/v, 2 slot MLP, 2 decoder.
    for name, kernel in kernels.items():
        limit = glorot_limit(kernel.shape)
        assert np.abs(kernel).max() <= limit, name
        if kernel.size >= 2048:  # Uniform on [-l, l]: variance l^2 / 3.
            assert np.var(kernel) == pytest.approx(limit**2 / 3, rel=0.1), name
    for name, bias in params.items():
        if name.endswith("bias"):
            np.testing.assert_array_equal(bias, 0.0, err_msg=name)


def test_glorot_scheme_gru_matches_the_fused_keras_kernels():
    params = init_params("glorot_uniform")
    inputs = np.concatenate([params[f"slot_attention/gru/i{g}/kernel"] for g in "rzn"], axis=1)
    limit = glorot_limit(inputs.shape)  # One [64, 192] kernel, as Keras' GRUCell.
    assert np.abs(inputs).max() <= limit
    assert np.var(inputs) == pytest.approx(limit**2 / 3, rel=0.1)
    recurrent = np.concatenate([params[f"slot_attention/gru/h{g}/kernel"] for g in "rzn"], axis=1)
    # Keras: orthonormal rows of the fused [64, 192] matrix, so its entries' mean square is
    # 1 / 192; here each gate is orthogonal with that scale.
    assert np.mean(recurrent**2) == pytest.approx(1 / 192, rel=1e-5)
    for gate in np.split(recurrent, 3, axis=1):
        np.testing.assert_allclose(gate @ gate.T, np.eye(64) / 3, atol=1e-5)


def test_default_scheme_is_flax_lecun_normal_and_unknown_names_are_refused():
    params = init_params("lecun_normal")
    kernel = params["encoder/conv_1/kernel"]  # [5, 5, 32, 32]: fan_in 800.
    assert np.std(kernel) == pytest.approx(np.sqrt(1 / 800), rel=0.1)
    with pytest.raises(ValueError, match="model.kernel_init"):
        initializers.kernel_init("he_normal")
