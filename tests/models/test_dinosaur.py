"""DINOSAUR's decoders against float64 numpy re-implementations, and its frozen backbone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from ocjax.models import build_model
from ocjax.models.dinosaur import (
    ORDER_NAMES,
    MLPFeatureDecoder,
    TransformerFeatureDecoder,
    patch_orders,
)

RNG = np.random.default_rng(0)


def _np(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _dense(p, x):
    return x @ p["kernel"] + p.get("bias", 0.0)


def _layer_norm(p, x, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _attention(p, queries, inputs, heads, mask=None):
    b, q, dim = queries.shape
    hd = dim // heads

    def split(x):
        return x.reshape(*x.shape[:2], heads, hd)

    qh = split(queries @ p["query"]["kernel"]) * hd**-0.5
    kh, vh = split(inputs @ p["key"]["kernel"]), split(inputs @ p["value"]["kernel"])
    logits = np.einsum("bqhd,bnhd->bhqn", qh, kh)
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    weights = _softmax(logits, -1)
    out = np.einsum("bhqn,bnhd->bqhd", weights, vh).reshape(b, q, dim)
    return _dense(p["out"], out), weights


def _gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def test_mlp_decoder_equals_numpy():
    slots = RNG.normal(size=(2, 3, 8)).astype(np.float32)
    decoder = MLPFeatureDecoder(num_patches=5, feature_dim=6, hidden_dims=(16, 12))
    params = decoder.init(jax.random.key(0), slots)
    recon, masks = decoder.apply(params, slots)
    p = _np(params["params"])
    x = slots.astype(np.float64)[:, :, None, :] + p["position_embedding"]
    x = np.maximum(_dense(p["dense_0"], x), 0)
    x = np.maximum(_dense(p["dense_1"], x), 0)
    out = _dense(p["output"], x)
    ref_masks = _softmax(out[..., -1], axis=1)
    ref_recon = np.einsum("bkn,bknf->bnf", ref_masks, out[..., :-1])
    np.testing.assert_allclose(masks, ref_masks, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(recon, ref_recon, rtol=1e-5, atol=1e-5)


def _transformer_numpy(p, slots, targets, order, layers, heads, order_index=0):
    """SPOT's released decoder (SLATE's `TransformerDecoder` behind `input_proj` and
    `slot_proj`) in float64."""
    targets = targets[:, order]
    b, n, f = targets.shape
    bos = np.broadcast_to(p["bos"][order_index], (b, 1, f))
    x = np.concatenate([bos, targets[:, :-1]], axis=1)
    if "position_embedding" in p:
        x = x + p["position_embedding"][:, order]
    x = _layer_norm(p["norm_input"], _dense(p["input"], x), eps=1e-5)
    memory = _layer_norm(p["norm_slots"], _dense(p["slots"], slots), eps=1e-5)
    causal = np.tril(np.ones((n, n), bool))
    for i in range(layers):
        lp = p[f"layer_{i}"]
        h = _layer_norm(lp["norm_self"], x, eps=1e-5)
        if i == 0:  # The first block continues from its normalised input.
            x = h
        x = x + _attention(lp["self_attention"], h, h, heads, causal)[0]
        update, cross = _attention(
            lp["cross_attention"], _layer_norm(lp["norm_cross"], x, eps=1e-5), memory, heads
        )
        x = x + update
        h = _layer_norm(lp["norm_mlp"], x, eps=1e-5)
        hidden = np.maximum(_dense(lp["mlp"]["dense_1"], h), 0.0)
        x = x + _dense(lp["mlp"]["dense_2"], hidden)
    out = _layer_norm(p["norm_output"], x, eps=1e-5)
    if "output" in p:
        out = _dense(p["output"], out)
    masks = cross.mean(1).transpose(0, 2, 1)
    inverse = np.argsort(order)
    return out[:, inverse], masks[:, :, inverse]


@pytest.mark.parametrize(
    ("permuted", "positions", "dim"), [(False, True, 8), (True, True, 8), (True, False, 5)]
)
def test_transformer_decoder_equals_numpy(permuted, positions, dim):
    slots = RNG.normal(size=(2, 3, 8)).astype(np.float32)
    targets = RNG.normal(size=(2, 9, 5)).astype(np.float32)
    order = RNG.permutation(9) if permuted else np.arange(9)
    decoder = TransformerFeatureDecoder(
        num_layers=2,
        num_heads=dim // 4 or 1,
        dim=dim,
        mlp_dim=16,
        num_orders=3,
        positions=positions,
    )
    params = decoder.init(jax.random.key(0), slots, targets, jnp.asarray(order), 2)
    # Random LayerNorm affines, so that the test sees where each one sits.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            x + 0.3 * jax.random.normal(jax.random.key(len(str(path))), x.shape)
            if "norm" in str(path)
            else x
        ),
        params,
    )
    assert ("output" in params["params"]) == (dim != 5)  # Output layer only across widths.
    out, masks = decoder.apply(params, slots, targets, jnp.asarray(order), 2)
    ref_out, ref_masks = _transformer_numpy(
        _np(params["params"]),
        slots.astype(np.float64),
        targets.astype(np.float64),
        order,
        2,
        dim // 4 or 1,
        order_index=2,
    )
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(masks, ref_masks, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(masks).sum(1), 1.0, atol=1e-5)


def test_transformer_decoder_initialisation_is_the_releases():
    """Kernels as SLATE's `linear`: Xavier-uniform, gain (3 L)^-1/2 on the residual branches'
    last projections, Kaiming-uniform (ReLU) on the MLP's first layer; no attention-output
    bias. Each kernel must fill its uniform range (max |w| near the bound) and stay in it."""
    layers, dim, mlp_dim = 4, 64, 256
    decoder = TransformerFeatureDecoder(num_layers=layers, num_heads=4, dim=dim, mlp_dim=mlp_dim)
    slots, targets = jnp.zeros((1, 3, 32)), jnp.zeros((1, 16, 48))
    p = decoder.init(jax.random.key(1), slots, targets)["params"]
    gain = (3 * layers) ** -0.5

    def check(kernel, bound):
        top = float(np.abs(np.asarray(kernel)).max())
        assert 0.97 * bound < top <= bound, (top, bound)

    check(p["input"]["kernel"], np.sqrt(6 / (48 + dim)))
    check(p["slots"]["kernel"], np.sqrt(6 / (32 + dim)))
    check(p["output"]["kernel"], np.sqrt(6 / (dim + 48)))
    for i in range(layers):
        lp = p[f"layer_{i}"]
        for attention in ("self_attention", "cross_attention"):
            for name in ("query", "key", "value"):
                check(lp[attention][name]["kernel"], np.sqrt(6 / (2 * dim)))
            check(lp[attention]["out"]["kernel"], gain * np.sqrt(6 / (2 * dim)))
            assert "bias" not in lp[attention]["out"]
        check(lp["mlp"]["dense_1"]["kernel"], np.sqrt(6 / dim))
        check(lp["mlp"]["dense_2"]["kernel"], gain * np.sqrt(6 / (mlp_dim + dim)))
        assert not np.any(np.asarray(lp["mlp"]["dense_1"]["bias"]))


def test_transformer_decoder_is_causal_in_its_order():
    slots = RNG.normal(size=(1, 3, 8)).astype(np.float32)
    targets = RNG.normal(size=(1, 9, 5)).astype(np.float32)
    order = jnp.asarray(RNG.permutation(9))
    decoder = TransformerFeatureDecoder(num_layers=2, num_heads=2, dim=8, mlp_dim=16)
    params = decoder.init(jax.random.key(0), slots, targets, order)
    before, _ = decoder.apply(params, slots, targets, order)
    changed = targets.copy()
    changed[0, int(order[5])] += 10.0  # The 6th patch of the order.
    after, _ = decoder.apply(params, slots, changed, order)
    earlier = np.asarray(order[:6])  # Predicted from patches order[:i], i <= 5.
    later = np.asarray(order[6:])
    np.testing.assert_array_equal(np.asarray(before)[0, earlier], np.asarray(after)[0, earlier])
    assert np.abs(np.asarray(before)[0, later] - np.asarray(after)[0, later]).max() > 1e-3


def test_spot_orders_are_the_nine_scans_and_the_spiral():
    side = 5
    orders = patch_orders(side)
    assert orders.shape == (9, side * side) and len(ORDER_NAMES) == 9
    assert all(sorted(o) == list(range(side * side)) for o in orders)  # Permutations.
    assert len({tuple(o) for o in orders}) == 9  # All different.
    rows, cols = np.divmod(orders, side)
    for k, name in enumerate(ORDER_NAMES[:8]):
        # A scan moves one step along its minor axis, or jumps to the next line of its
        # major axis at the end of one.
        along_rows = name.startswith("raster") or name.startswith("rows")
        minor, major = (cols[k], rows[k]) if along_rows else (rows[k], cols[k])
        assert np.all(np.abs(np.diff(minor.reshape(side, side), axis=1)) == 1), name
        assert len(set(np.diff(major.reshape(side, side)[:, 0]))) == 1, name
    # The spiral: 4-neighbour steps, from the centre to the top-right corner.
    steps = np.abs(np.diff(rows[8])) + np.abs(np.diff(cols[8]))
    assert np.all(steps == 1)
    assert (rows[8][0], cols[8][0]) == (side // 2, side // 2)
    assert (rows[8][-1], cols[8][-1]) == (0, side - 1)
    # SPOT's 3x3 spiral, written out by hand from its description.
    np.testing.assert_array_equal(patch_orders(3)[8], [4, 1, 0, 3, 6, 7, 8, 5, 2])


def test_spot_orders_vary_in_training_and_are_raster_in_evaluation():
    model = build_model(
        "dinosaur",
        backbone={"kind": "dino_vit", "architecture": "dino_vits16", "feature_block": 0},
        num_slots=3,
        slot_dim=16,
        mlp_hidden_dim=32,
        decoder="transformer",
        decoder_layers=1,
        decoder_heads=2,
        decoder_dim=16,
        orders="spot",
    )
    images = jnp.asarray(RNG.normal(size=(1, 48, 48, 3)), jnp.float32)
    variables = model.init({"params": jax.random.key(0), "slots": jax.random.key(1)}, images)
    # One BOS token per order, in the feature space (ViT-S: 384-d), as the release.
    assert variables["params"]["head"]["decoder"]["bos"].shape == (9, 1, 384)

    def order_index(train, key):
        _, state = model.apply(
            variables,
            images,
            train=train,
            rngs={"slots": jax.random.key(key)},
            mutable=["intermediates"],
        )
        return int(state["intermediates"]["head"]["order_index"][0])

    assert {order_index(False, k) for k in range(5)} == {0}  # Raster in evaluation.
    assert len({order_index(True, k) for k in range(20)}) >= 5  # Random in training.


def test_backbone_gets_no_gradient():
    model = build_model(
        "dinosaur",
        backbone={"kind": "dino_vit", "architecture": "dino_vits16", "feature_block": 1},
        num_slots=3,
        slot_dim=16,
        mlp_hidden_dim=32,
        decoder_hidden_dims=[32],
    )
    images = jnp.asarray(RNG.normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = model.init({"params": jax.random.key(0), "slots": jax.random.key(1)}, images)

    def loss(params):
        out = model.apply({"params": params}, images, rngs={"slots": jax.random.key(2)})
        return jnp.mean((out["reconstruction"] - out["features"]) ** 2)

    grads = jax.grad(loss)(variables["params"])
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["backbone"]))
    assert float(jnp.abs(grads["head"]["decoder"]["output"]["kernel"]).max()) > 0


def test_unknown_decoder_and_backbone_are_named():
    with pytest.raises(ValueError, match="model.decoder 'conv'"):
        model = build_model(
            "dinosaur",
            backbone={"kind": "dino_vit", "architecture": "dino_vits16", "feature_block": 1},
            decoder="conv",
        )
        model.init(
            {"params": jax.random.key(0), "slots": jax.random.key(1)}, jnp.zeros((1, 32, 32, 3))
        )
    with pytest.raises(ValueError, match="backbone.kind 'resnet'"):
        build_model("dinosaur", backbone={"kind": "resnet"})
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_model("dinosaur", backbone={"kind": "ocjax_vit", "workdir": "/nonexistent"})


def test_student_without_its_teacher_run_is_named(tmp_path):
    backbone = {"kind": "dino_vit", "architecture": "dino_vits16"}
    with pytest.raises(FileNotFoundError, match="train the teacher first"):
        build_model("dinosaur", backbone=backbone, teacher={"workdir": str(tmp_path)})
    with pytest.raises(ValueError, match="needs a workdir"):
        build_model("dinosaur", backbone=backbone, teacher={"workdir": ""})
    with pytest.raises(ValueError, match="orders 'spot' needs model.decoder 'transformer'"):
        model = build_model("dinosaur", backbone=backbone, orders="spot")
        model.init(
            {"params": jax.random.key(0), "slots": jax.random.key(1)}, jnp.zeros((1, 32, 32, 3))
        )
