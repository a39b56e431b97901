"""DINOSAUR's and SPOT's release options: the raw-patch backbone, the fine-tuned blocks of
SPOT's student, averaging the decoder over SPOT's orders, the mask iteration, and each
config's choices."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import coco_dinosaur, coco_spot
from ocjax.models import backbones, build_model
from ocjax.models.dinosaur import SlotHead, TransformerFeatureDecoder, patch_orders

RNG = np.random.default_rng(0)
KEYS = {"params": jax.random.key(0), "slots": jax.random.key(1)}


def test_pixel_patches_equal_a_numpy_reference():
    images = RNG.normal(size=(2, 8, 12, 3)).astype(np.float32)
    out = backbones.pixel_patches(jnp.asarray(images), patch_size=4, dim=64, seed=3)
    # Reference: patch (r, c) is images[:, 4r:4r+4, 4c:4c+4, :] flattened row by row.
    patches = np.stack(
        [
            images[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].reshape(2, -1)
            for r in range(2)
            for c in range(3)
        ],
        axis=1,
    ).astype(np.float64)
    q, r = np.linalg.qr(np.random.default_rng(3).standard_normal((64, 64)))
    projection = (q * np.sign(np.diag(r)))[:48]
    np.testing.assert_allclose(out.tokens, patches @ projection, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(projection @ projection.T, np.eye(48), atol=1e-10)
    assert out.grid == (2, 3)
    with pytest.raises(ValueError, match="set dim >= 48"):
        backbones.pixel_patches(jnp.asarray(images), patch_size=4, dim=32, seed=0)


def _student(**head):
    backbone = {
        "kind": "dino_vit",
        "architecture": "dino_vits16",
        "feature_block": 3,
        "final_norm": False,
        "finetune_from_block": 2,
    }
    return build_model(
        "dinosaur",
        backbone=backbone,
        num_slots=3,
        slot_dim=16,
        mlp_hidden_dim=32,
        decoder_hidden_dims=[32],
        **head,
    )


def test_finetuned_blocks_continue_the_frozen_backbone_and_alone_learn():
    model = _student()
    images = jnp.asarray(RNG.normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = model.init(KEYS, images)
    params = flax.core.unfreeze(variables["params"])
    assert sorted(params["finetuned"]["vit"]) == ["blocks_2", "blocks_3"]
    # With the backbone's own weights the fine-tuned blocks give the frozen features.
    params["finetuned"] = backbones.finetuned_params(params["backbone"], model.backbone)
    captured = {}

    def slot_inputs(next_fun, args, kwargs, context):
        if context.module.name == "head" and context.method_name == "__call__":
            captured["inputs"] = args[0]
        return next_fun(*args, **kwargs)

    with flax.linen.intercept_methods(slot_inputs):
        out = model.apply({"params": params}, images, rngs={"slots": jax.random.key(2)})
    np.testing.assert_allclose(captured["inputs"], out["features"], rtol=1e-5, atol=1e-5)

    def loss(p):
        o = model.apply({"params": p}, images, rngs={"slots": jax.random.key(2)})
        return jnp.mean((o["reconstruction"] - o["features"]) ** 2)

    grads = jax.grad(loss)(params)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["backbone"]))
    finetuned = jax.tree.leaves(grads["finetuned"]["vit"]["blocks_2"])
    assert all(float(jnp.abs(g).max()) > 0 for g in finetuned)

    # The cached sequence after block 1 gives the same outputs as the images.
    vit = backbones.Backbone(model.backbone)
    frozen = vit.apply({"params": params["backbone"]}, images)
    cached = {"features": frozen.tokens, "hidden": frozen.hidden}
    out_cached = model.apply({"params": params}, cached, rngs={"slots": jax.random.key(2)})
    for key in ("reconstruction", "masks", "attention"):
        np.testing.assert_allclose(out_cached[key], out[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'hidden'"):
        model.apply({"params": params}, {"features": frozen.tokens}, rngs={"slots": KEYS["slots"]})


def test_finetuning_needs_a_released_vit():
    with pytest.raises(ValueError, match="finetune_from_block"):
        backbones.resolve({"kind": "pixel_patches", "finetune_from_block": 8} | {"dim": 64})
    with pytest.raises(ValueError, match="must lie in 1 .. 11"):
        backbones.resolve(
            {"kind": "dino_vit", "architecture": "dino_vits16", "finetune_from_block": 12}
        )


def _head(**fields):
    defaults = dict(
        num_slots=3,
        slot_dim=16,
        mlp_hidden_dim=32,
        decoder="transformer",
        decoder_layers=1,
        decoder_heads=2,
        decoder_dim=16,
        decoder_style="spot",
        decoder_positions=False,
        orders="spot",
    )
    return SlotHead(**(defaults | fields))


def test_all_orders_average_the_decoder_over_spots_nine_orders():
    features = jnp.asarray(RNG.normal(size=(2, 16, 16)), jnp.float32)
    head = _head(eval_orders="all")
    variables = head.init(KEYS, features)
    out = head.apply(variables, features, rngs={"slots": KEYS["slots"]})

    # Reference: the head's decoder with its weights, run once per order on its slots.
    decoder = TransformerFeatureDecoder(1, 2, 16, 64, num_orders=9, positions=False, style="spot")
    captured = [
        decoder.apply(
            {"params": variables["params"]["decoder"]}, out["slots"], features, jnp.asarray(o), i
        )
        for i, o in enumerate(patch_orders(4))
    ]
    np.testing.assert_allclose(
        out["reconstruction"], np.mean([r for r, _ in captured], axis=0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        out["masks"], np.mean([m for _, m in captured], axis=0), rtol=1e-5, atol=1e-6
    )
    # The nine orders differ, so the mean is not the raster order's.
    assert float(jnp.abs(out["masks"] - captured[0][1]).max()) > 1e-4


@pytest.mark.parametrize("iteration", ["first", "last"])
def test_attention_is_the_named_iteration(iteration):
    features = jnp.asarray(RNG.normal(size=(2, 16, 16)), jnp.float32)
    head = _head(attention_iteration=iteration, num_iterations=3)
    variables = head.init(KEYS, features)
    out, state = head.apply(
        variables, features, rngs={"slots": KEYS["slots"]}, mutable=["intermediates"]
    )
    last = state["intermediates"]["slot_attention"]["attention"][0]
    # The last iteration's attention is the softmax over slots of the returned logits.
    np.testing.assert_allclose(last, jax.nn.softmax(out["attention_logits"], axis=1), atol=1e-6)
    if iteration == "last":
        np.testing.assert_allclose(out["attention"], last, atol=1e-7)
    else:
        assert float(jnp.abs(out["attention"] - last).max()) > 1e-4


def test_each_config_takes_its_papers_choices():
    dinosaur = coco_dinosaur.get_config("").model
    assert (dinosaur.kernel_init, dinosaur.attention_iteration, dinosaur.decoder_style) == (
        "torch",
        "last",
        "dinosaur",
    )
    assert dinosaur.feature_mlp_hidden_dim is None and dinosaur.feature_mlp_dim is None
    teacher = coco_spot.get_config("teacher").model
    assert (teacher.kernel_init, teacher.eval_orders, teacher.slot_init, teacher.truncate) == (
        "xavier",
        "all",
        "gaussian",
        "none",
    )
    assert teacher.feature_mlp_dim == 768 and teacher.backbone.get("finetune_from_block") is None
    student = coco_spot.get_config("student").model
    assert (student.slot_init, student.truncate, student.backbone.finetune_from_block) == (
        "embedding",
        "bi-level",
        8,
    )
    patches = coco_spot.get_config("student+cpu+patches").model
    assert patches.backbone.kind == "pixel_patches" and patches.eval_orders == "raster"
    assert patches.teacher.workdir.endswith("spot_teacher_patches/seed0")


@pytest.mark.parametrize(
    "field, value",
    [
        ("kernel_init", "he"),
        ("slot_init", "kmeans"),
        ("truncate", "always"),
        ("attention_iteration", "middle"),
        ("decoder_style", "slate"),
        ("eval_orders", "some"),
    ],
)
def test_unknown_options_are_named(field, value):
    features = jnp.zeros((1, 16, 16), jnp.float32)
    with pytest.raises(ValueError, match=f"model.{field} '{value}'"):
        _head(**{field: value}).init(KEYS, features)


def test_a_fine_tuning_student_reads_a_frozen_teacher(tmp_path):
    import json  # pylint: disable=import-outside-toplevel

    from ocjax.models.dinosaur import resolve_teacher  # pylint: disable=import-outside-toplevel

    teacher = coco_spot.get_config("teacher").model.to_dict()
    (tmp_path / "config.json").write_text(json.dumps({"model": teacher}))
    student = backbones.resolve(coco_spot.get_config("student").model.backbone.to_dict())
    assert dict(student)["finetune_from_block"] == 8
    resolved = dict(resolve_teacher({"workdir": str(tmp_path)}, student))
    assert resolved["slot_init"] == "gaussian" and resolved["truncate"] == "none"
    other = backbones.resolve({**dict(student), "feature_block": 10})
    with pytest.raises(ValueError, match="trained on other features"):
        resolve_teacher({"workdir": str(tmp_path)}, other)
