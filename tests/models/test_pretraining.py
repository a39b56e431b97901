"""DINO, MoCo v3 and MAE pretraining: their ViT options, heads and momentum encoders against
independent references (numpy re-derivations of the releases' formulas, torch modules with
transplanted weights)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ocjax.losses import self_supervised as ssl
from ocjax.models import pretraining
from ocjax.models.dino import DINO, DinoHead
from ocjax.models.dino_vit import DinoViT, resize_positions, sincos_positions
from ocjax.models.mae import MAE
from ocjax.models.mocov3 import MocoMLP, MoCoV3

SPEC = pretraining.architecture(4, 32, 2, 4, 2.0, 0)


def _mae_sincos(grid: int, dim: int) -> np.ndarray:
    """MAE's `get_2d_sincos_pos_embed` (util/pos_embed.py), re-derived: meshgrid(w, h), the
    first half of the channels from grid[0] (the column), the second from the row."""
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))

    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)


def test_sincos_positions_equal_maes_table():
    np.testing.assert_allclose(sincos_positions((7, 7), 64), _mae_sincos(7, 64), atol=1e-6)


def test_resized_positions_equal_torch_bicubic():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((1, 6 * 6, 8)).astype(np.float32)
    ours = resize_positions(jnp.asarray(table), (6, 6), (4, 5))
    grid = torch.from_numpy(table.reshape(6, 6, 8)).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(grid, size=(4, 5), mode="bicubic", align_corners=False)
    ref = ref[0].permute(1, 2, 0).reshape(1, 20, 8).numpy()
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-5)


def _vit(**options) -> tuple[DinoViT, dict]:
    model = DinoViT(SPEC, image_size=(16, 16), **options)
    images = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    return model, model.init(jax.random.key(0), images), images


def test_keep_encodes_the_chosen_patches_only():
    model, variables, images = _vit()
    full = model.apply(variables, images).tokens
    perm = jnp.stack([jnp.arange(16)[::-1], jnp.roll(jnp.arange(16), 3)])
    permuted = model.apply(variables, images, keep=perm).tokens
    np.testing.assert_allclose(
        np.asarray(permuted), np.asarray(jnp.take_along_axis(full, perm[:, :, None], 1)), atol=1e-5
    )
    # With some patches left out, the others no longer attend to them.
    part = model.apply(variables, images, keep=perm[:, :4]).tokens
    assert part.shape == (2, 4, 32)
    assert not np.allclose(np.asarray(part), np.asarray(permuted[:, :4]), atol=1e-3)


def test_frozen_patch_projection_and_sincos_positions_get_no_gradient():
    model, variables, images = _vit(positions="sincos", frozen_patch_embed=True)
    np.testing.assert_allclose(
        np.asarray(variables["params"]["pos_embed"][0]), sincos_positions((4, 4), 32), atol=1e-6
    )
    grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, images).tokens ** 2))(
        variables["params"]
    )
    assert not np.any(np.asarray(grads["patch_embed"]["kernel"]))
    assert not np.any(np.asarray(grads["pos_embed"]))
    assert np.any(np.asarray(grads["blocks_0"]["attn"]["qkv"]["kernel"]))


@pytest.mark.parametrize(
    "init, qkv_limit",
    [("mocov3", (6 / (64 + 64)) ** 0.5), ("mae", (6 / (64 + 192)) ** 0.5)],
)
def test_qkv_initialisation_of_the_releases(init, qkv_limit):
    spec = pretraining.architecture(4, 64, 1, 4, 4.0, 0)
    model = DinoViT(spec, image_size=(8, 8), weight_init=init)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    kernel = np.asarray(params["blocks_0"]["attn"]["qkv"]["kernel"])
    assert kernel.shape == (64, 192)
    assert np.abs(kernel).max() <= qkv_limit
    assert abs(kernel.std() - qkv_limit / 3**0.5) < 0.05 * qkv_limit
    patch = np.asarray(params["patch_embed"]["kernel"])  # Xavier of [p * p * 3, dim].
    assert np.abs(patch).max() <= (6 / (48 + 64)) ** 0.5


def test_dino_head_equals_torch_weight_norm_head():
    head = DinoHead(out_dim=40, hidden_dim=24, bottleneck_dim=8, norm_last_layer=False)
    x = jax.random.normal(jax.random.key(0), (5, 16))
    params = head.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)
    ours = head.apply({"params": params}, x)

    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)
    layers = []
    for i in range(3):
        linear = torch.nn.Linear(*np.asarray(params[f"mlp_{i}"]["kernel"]).shape).double()
        linear.weight.data = t(params[f"mlp_{i}"]["kernel"]).T
        linear.bias.data = t(params[f"mlp_{i}"]["bias"])
        layers += [linear] + ([torch.nn.GELU()] if i < 2 else [])
    mlp = torch.nn.Sequential(*layers)
    last = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(8, 40, bias=False).double())
    last.parametrizations.weight.original0.data = t(params["scale"])[:, None]
    last.parametrizations.weight.original1.data = t(params["prototypes"]).T
    y = torch.nn.functional.normalize(mlp(t(x)), dim=-1, p=2)
    np.testing.assert_allclose(np.asarray(ours), last(y).detach().numpy(), atol=1e-5)


def test_moco_mlp_equals_the_releases_build_mlp_in_training():
    mlp = MocoMLP(3, 32, 8)
    x = jax.random.normal(jax.random.key(0), (6, 16))
    variables = mlp.init(jax.random.key(1), x, train=True)
    out, _ = mlp.apply(variables, x, train=True, mutable=["batch_stats"])
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64)
    layers = []
    for i, (d_in, d_out) in enumerate([(16, 32), (32, 32), (32, 8)]):
        linear = torch.nn.Linear(d_in, d_out, bias=False).double()
        linear.weight.data = t(variables["params"][f"linear_{i}"]["kernel"]).T
        layers.append(linear)
        if i < 2:
            layers += [torch.nn.BatchNorm1d(d_out).double(), torch.nn.ReLU()]
        else:
            layers.append(torch.nn.BatchNorm1d(d_out, affine=False).double())
    ref = torch.nn.Sequential(*layers).train()(t(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def _tiny(cls, **fields):
    base = {
        "image_size": 16,
        "patch_size": 4,
        "dim": 32,
        "depth": 1,
        "num_heads": 4,
        "mlp_ratio": 2.0,
    }
    return cls(**base, **fields)


def test_momentum_encoders_start_equal_and_follow_by_ema():
    model = _tiny(DINO, out_dim=32, head_hidden_dim=16, bottleneck_dim=8)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    params = model.init(jax.random.key(1), images)["params"]
    params = pretraining.init_momentum(params, model.EMA)
    for a, b in zip(jax.tree.leaves(params["student"]), jax.tree.leaves(params["teacher"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved = dict(params, student=jax.tree.map(lambda p: p + 1.0, params["student"]))
    after = pretraining.momentum_update(
        moved, jnp.asarray(5), pairs=model.EMA, base=0.9, final=1.0, total_steps=20
    )
    m = 1 - 0.1 * (np.cos(np.pi * 5 / 20) + 1) / 2
    for new, old in zip(jax.tree.leaves(after["teacher"]), jax.tree.leaves(params["teacher"])):
        np.testing.assert_allclose(np.asarray(new), np.asarray(old) + (1 - m), rtol=1e-6, atol=1e-6)


def test_dino_scores_every_crop_and_centres_on_the_teacher():
    model = _tiny(DINO, out_dim=32, head_hidden_dim=16, bottleneck_dim=8, center_momentum=0.5)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    variables = model.init({"params": jax.random.key(1)}, images)
    inputs = {
        "global": jax.random.normal(jax.random.key(2), (2, 2, 16, 16, 3)),
        "local": jax.random.normal(jax.random.key(3), (2, 3, 8, 8, 3)),
        "step": jnp.asarray(0),
    }
    out, state = model.apply(variables, inputs, train=True, mutable=["dino"])
    assert out["student"].shape == (5, 2, 32) and out["teacher"].shape == (2, 2, 32)
    expected = ssl.dino_center(jnp.zeros(32), out["teacher"], 0.5)
    np.testing.assert_allclose(np.asarray(state["dino"]["center"]), np.asarray(expected), atol=1e-6)
    evaluated = model.apply(variables, images)
    assert evaluated["tokens"].shape == (2, 16, 32)


def test_dino_prototypes_are_frozen_for_the_first_steps():
    model = _tiny(DINO, out_dim=32, head_hidden_dim=16, bottleneck_dim=8, freeze_last_layer_steps=3)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    variables = model.init({"params": jax.random.key(1)}, images)
    crops = jax.random.normal(jax.random.key(2), (2, 2, 16, 16, 3))

    def grad_at(step: int):
        def loss(params):
            out, _ = model.apply(
                {**variables, "params": params},
                {"global": crops, "step": jnp.asarray(step)},
                train=True,
                mutable=["dino"],
            )
            return ssl.dino_loss(out["student"], out["teacher"] * 3, out["center"], 0.1, 0.04)

        return jax.grad(loss)(variables["params"])["student"]["head"]["prototypes"]

    assert not np.any(np.asarray(grad_at(2)))
    assert np.any(np.asarray(grad_at(3)))


def test_mocov3_keys_carry_no_gradient():
    model = _tiny(MoCoV3, hidden_dim=16, out_dim=8)
    images = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
    variables = model.init(jax.random.key(1), images)
    views = jax.random.normal(jax.random.key(2), (4, 2, 16, 16, 3))

    def loss(params):
        out, _ = model.apply(
            {**variables, "params": params}, {"global": views}, train=True, mutable=["batch_stats"]
        )
        return ssl.moco_v3_loss(out["q1"], out["q2"], out["k1"], out["k2"], 0.2)

    grads = jax.grad(loss)(variables["params"])
    assert not any(np.any(np.asarray(g)) for g in jax.tree.leaves(grads["momentum"]))
    assert np.any(np.asarray(grads["predictor"]["linear_0"]["kernel"]))
    assert not np.any(np.asarray(grads["base"]["vit"]["patch_embed"]["kernel"]))


def test_mae_predictions_do_not_see_the_removed_patches():
    model = _tiny(MAE, decoder_dim=16, decoder_depth=1, decoder_heads=2, mask_ratio=0.5)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    variables = model.init({"params": jax.random.key(1), "slots": jax.random.key(2)}, images)
    rngs = {"slots": jax.random.key(3)}
    out = model.apply(variables, images, train=True, rngs=rngs)
    mask = np.asarray(out["mask"])
    assert out["predictions"].shape == (2, 16, 48) and mask.sum(axis=1).tolist() == [8, 8]
    # Change the pixels of every removed patch: no prediction may change.
    removed = np.repeat(np.repeat(mask.reshape(2, 4, 4), 4, axis=1), 4, axis=2)[..., None]
    noise = jax.random.normal(jax.random.key(4), images.shape)
    changed = model.apply(variables, images + removed * noise, train=True, rngs=rngs)
    np.testing.assert_allclose(
        np.asarray(changed["predictions"]), np.asarray(out["predictions"]), atol=1e-5
    )
    # A visible patch's pixels do change them.
    shown = model.apply(variables, images + (1 - removed) * noise, train=True, rngs=rngs)
    assert not np.allclose(np.asarray(shown["predictions"]), np.asarray(out["predictions"]))


def test_architecture_fields_round_trip():
    spec = pretraining.architecture(4, 32, 2, 4, 2.0, 1)
    assert dataclasses.astuple(spec)[:4] == (32, 2, 4, 4) and spec.mlp_dim == 64
    model = MAE(patch_size=4, dim=32, depth=2, num_heads=4, mlp_ratio=2.0, num_registers=1)
    assert pretraining.architecture_of(model) == spec
    config = {k: getattr(model, k) for k in pretraining.ARCHITECTURE_FIELDS}
    assert pretraining.architecture_of(config) == spec
    with pytest.raises(ValueError, match="not divisible by model.num_heads"):
        pretraining.architecture(4, 30, 2, 4, 2.0, 0)


@pytest.mark.parametrize(
    "system, options",
    [
        (DINO, {"out_dim": 32, "head_hidden_dim": 16, "bottleneck_dim": 8}),
        (MoCoV3, {"hidden_dim": 16, "out_dim": 8}),
        (MAE, {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}),
    ],
)
def test_encoder_path_holds_the_vit_a_downstream_model_reads(system, options):
    model = _tiny(system, **options)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    variables = model.init({"params": jax.random.key(1), "slots": jax.random.key(2)}, images)
    params = variables["params"]
    for key in model.ENCODER:
        params = params[key]
    positions = "sincos" if system is MAE else "learned"
    vit = pretraining.vit(
        pretraining.architecture_of(model), 16, "dino", jnp.float32, positions=positions
    )
    read = vit.apply({"params": params}, images)
    features = model.apply(variables, images)
    np.testing.assert_allclose(np.asarray(read.tokens), np.asarray(features["tokens"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(read.cls), np.asarray(features["cls"]), atol=1e-6)
