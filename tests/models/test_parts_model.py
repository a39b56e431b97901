"""The part segmenter's outputs and its bad-input messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models import build_model
from ocjax.training.objectives import build_objective

BACKBONE = {"kind": "dino_vit", "architecture": "dino_vits8", "feature_block": 0}


def _init(**fields):
    model = build_model("part_discovery", backbone=BACKBONE, channels=[8], kernel_size=3, **fields)
    x = jnp.zeros((2, 32, 32, 4))
    return model, model.init({"params": jax.random.key(0), "slots": jax.random.key(1)}, x)


def test_masks_are_the_background_and_parts_that_sum_to_one_on_the_foreground():
    model, variables = _init(num_parts=3)
    rng = np.random.default_rng(0)
    fg = (rng.random((2, 32, 32)) < 0.6).astype(np.float32)
    x = jnp.asarray(np.concatenate([rng.random((2, 32, 32, 3)), fg[..., None]], -1), jnp.float32)
    out = model.apply(variables, x, train=True, rngs={"slots": jax.random.key(3)})
    np.testing.assert_allclose(np.asarray(out["masks"]).sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["masks"])[:, 0], 1.0 - fg, atol=1e-6)
    assert np.abs(np.asarray(out["parts"]) * (1 - fg[:, None])).max() == 0
    assert out["view_parts"].shape == out["warped_parts"].shape == (2, 3, 32, 32)
    assert out["features"].shape[:3] == (2, 32, 32)


def test_bad_inputs_are_named_at_start():
    with pytest.raises(ValueError, match="at least 2 parts"):
        _init(num_parts=1)
    with pytest.raises(ValueError, match=r"max_rotation is 75"):
        _init(max_rotation=75.0)
    with pytest.raises(ValueError, match=r"jitter is 0.5"):
        _init(jitter=0.5)
    objective = build_objective("part_discovery")
    with pytest.raises(ValueError, match="needs a dataset with a foreground mask"):
        objective.train_inputs({"image": jnp.zeros((1, 8, 8, 3))})
    views = {"image": jnp.zeros((1, 8, 8, 3)), "foreground": jnp.ones((1, 8, 8), bool)}
    with pytest.raises(ValueError, match="not two augmented views; remove data.views"):
        objective.train_inputs({**views, "view_a_box": jnp.zeros((1, 4), jnp.int32)})


@pytest.mark.parametrize("dilations", [(1, 1), (2, 3)])
def test_dilations_set_the_receptive_field(dilations):
    """A change at one pixel reaches exactly sum_l d_l (k - 1) / 2 pixels away (Chebyshev)."""
    from ocjax.models.parts import PartNet

    net = PartNet(num_parts=3, channels=(6, 6), kernel_size=3, dilations=dilations)
    rng = np.random.default_rng(0)
    images = rng.random((1, 31, 31, 3)).astype(np.float32)
    fg = np.ones((1, 31, 31), np.float32)
    variables = net.init(jax.random.key(0), images, fg)
    poked = images.copy()
    poked[0, 15, 15] += 1.0
    change = np.abs(net.apply(variables, poked, fg) - net.apply(variables, images, fg))
    rows, cols = np.nonzero(change[0].max(0) > 1e-7)
    reach = max(np.abs(rows - 15).max(), np.abs(cols - 15).max())
    assert reach == sum(dilations)


def test_dilations_must_match_the_convolutions():
    from ocjax.models.parts import PartNet

    net = PartNet(num_parts=3, channels=(6, 6), kernel_size=3, dilations=(1, 2, 4))
    with pytest.raises(ValueError, match=r"one rate >= 1 per entry of model.channels"):
        net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.ones((1, 8, 8)))


def test_object_coordinates_equal_numpy():
    from ocjax.models.parts import object_coordinates

    rng = np.random.default_rng(1)
    fg = rng.random((3, 9, 11)) < 0.3
    fg[2] = False  # No object: zeros.
    got = np.asarray(object_coordinates(jnp.asarray(fg)))
    for i in range(2):
        ys, xs = np.nonzero(fg[i])
        centre, scale = np.array([ys.mean(), xs.mean()]), np.sqrt(len(ys))
        grid = np.stack(np.meshgrid(np.arange(9), np.arange(11), indexing="ij"), -1)
        np.testing.assert_allclose(got[i], (grid - centre) / scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[2], 0.0)


def test_object_frame_makes_parts_move_with_the_object():
    """With `position="object"` a translated figure gets exactly the translated parts; with
    the image's frame it does not."""
    from ocjax.models.parts import PartNet

    rng = np.random.default_rng(2)
    images = np.zeros((1, 32, 32, 3), np.float32)
    fg = np.zeros((1, 32, 32), np.float32)
    images[0, 10:18, 9:19] = rng.random((8, 10, 3))
    fg[0, 10:18, 9:19] = rng.random((8, 10)) < 0.8
    moved_images, moved_fg = np.roll(images, (4, 3), (1, 2)), np.roll(fg, (4, 3), (1, 2))
    for position, equal in (("object", True), ("image", False)):
        net = PartNet(num_parts=3, channels=(6, 6), kernel_size=3, position=position)
        variables = net.init(jax.random.key(0), images, fg)
        parts = np.roll(np.asarray(net.apply(variables, images, fg)), (4, 3), (2, 3))
        moved = np.asarray(net.apply(variables, moved_images, moved_fg))
        assert np.allclose(parts, moved, atol=1e-5) == equal, position


def test_unknown_position_is_named():
    from ocjax.models.parts import PartNet

    net = PartNet(num_parts=3, channels=(6,), kernel_size=3, position="scene")
    with pytest.raises(ValueError, match="model.position is 'scene'; use one of"):
        net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.ones((1, 8, 8)))
