"""Multi-dSprites-like scenes: dSprites factor grids, painter's occlusion, both variants."""

import numpy as np
import pytest

from ocjax.data.builders.clevr_like import scene_seed
from ocjax.data.datasets import load_sources
from ocjax.data.generators import sprites


@pytest.mark.parametrize("background", sprites.BACKGROUNDS)
def test_scenes_follow_the_factor_grids_and_painters_order(background):
    counts = set()
    for seed in range(60):
        scene = sprites.render_sprites(seed, background=background)
        n = len(scene["shape"])
        counts.add(n)
        assert 2 <= n <= 5 and scene["image"].shape == (64, 64, 3)
        assert set(scene["shape"]) <= {0, 1, 2}
        grid = np.linspace(0.5, 1, 6)
        assert (np.abs(scene["scale"][:, None] - grid[None]).min(1) < 1e-6).all()
        steps = scene["orientation"] / (2 * np.pi / 40)
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
        np.testing.assert_allclose(
            scene["position"] * 31, np.round(scene["position"] * 31), atol=1e-4
        )
        # Independent occlusion: the top-most sprite covering each pixel, painted in order.
        expected = np.zeros((64, 64), np.uint8)
        for k in range(n):
            mask = sprites.sprite_mask(
                int(scene["shape"][k]),
                scene["scale"][k],
                scene["orientation"][k],
                *scene["position"][k],
                resolution=64,
            )
            assert mask.sum() > 20 and not (mask[0].any() or mask[-1].any())  # Inside the frame.
            expected[mask] = k + 1
        np.testing.assert_array_equal(scene["segmentation"], expected)
        for k in range(n):
            pixels = scene["image"][scene["segmentation"] == k + 1]
            if len(pixels):
                assert (pixels == np.round(scene["color"][k].astype(np.float64) * 255)).all()
        assert scene["visible"].tolist() == [(expected == k + 1).any() for k in range(n)]
        back = scene["image"][scene["segmentation"] == 0]
        assert len(np.unique(back, axis=0)) == 1
        if background == "grayscale":
            assert (back[0] == back[0][0]).all()
            assert (scene["color"].max(-1) == 1).all()  # Full value (HSV).
    assert counts == {2, 3, 4, 5}


def test_shapes_differ_and_scale_grows_area():
    areas = {}
    for shape in range(3):
        for scale in (0.5, 1.0):
            areas[shape, scale] = sprites.sprite_mask(shape, scale, 0.0, 0.5, 0.5, 64).sum()
    for shape in range(3):
        assert 3.5 < areas[shape, 1.0] / areas[shape, 0.5] < 4.5  # Area ~ scale^2.
    assert len({areas[s, 1.0] for s in range(3)}) == 3


def test_builder_round_trip_and_bad_options(tmp_path):
    options = dict(resolution=64, max_objects=5, num_train=3, num_validation=1, num_test=2)
    sources = load_sources("multi_dsprites_like", str(tmp_path), options)
    example = sources["test"][0]
    scene = sprites.render_sprites(scene_seed(0, "test", int(example["index"])))
    np.testing.assert_array_equal(example["image"], scene["image"])
    np.testing.assert_array_equal(example["segmentation"][..., 0], scene["segmentation"])
    with pytest.raises(ValueError, match="at least 5"):
        load_sources("multi_dsprites_like", str(tmp_path), dict(options, max_objects=4))
    with pytest.raises(Exception, match="background"):
        load_sources("multi_dsprites_like", str(tmp_path), dict(options, background="plaid"))
