"""The Shapes builder stores exactly what the generator renders and marks overlaps invalid."""

import numpy as np
import pytest

from ocjax.data import pipeline
from ocjax.data.builders import shapes as shapes_builder
from ocjax.data.builders.clevr_like import scene_seed
from ocjax.data.datasets import load_sources
from ocjax.data.generators import shapes


@pytest.mark.parametrize("variant", ["4shapes", "4shapes_rgbd"])
def test_builder_stores_rendered_images_and_labels(tmp_path, variant):
    sources = load_sources(
        "shapes",
        str(tmp_path),
        dict(
            resolution=32, max_objects=4, variant=variant, num_train=3, num_validation=1, num_test=2
        ),
    )
    assert {k: len(v) for k, v in sources.items()} == {"train": 3, "validation": 1, "test": 2}
    assert sorted(int(sources["test"][i]["index"]) for i in range(2)) == [0, 1]
    for position in range(2):
        example = sources["test"][position]  # tfds shuffles records; `index` names the scene.
        scene = shapes.render_shapes(
            scene_seed(0, "test", int(example["index"])), **shapes.VARIANTS[variant], resolution=32
        )
        np.testing.assert_array_equal(example["image"], scene["image"])
        np.testing.assert_array_equal(example["labels"], scene["labels"])
        np.testing.assert_array_equal(example["objects"]["shape"], scene["shape"])
        np.testing.assert_array_equal(
            example["segmentation"][..., 0], np.maximum(scene["labels"], 0)
        )
        np.testing.assert_array_equal(example["pixel_valid"], scene["labels"] >= 0)


def _overlapping_scene() -> dict[str, np.ndarray]:
    """The first grey 4Shapes scene (by seed) with overlapping objects."""
    for seed in range(100):
        scene = shapes.render_shapes(seed, **shapes.VARIANTS["4shapes"])
        if (scene["labels"] < 0).any():
            return scene
    raise AssertionError("no overlapping scene in 100 seeds")


def test_overlap_becomes_background_id_and_invalid_pixel():
    scene = _overlapping_scene()
    example = shapes_builder.to_example(0, scene)
    overlap = scene["labels"] < 0
    assert (example["segmentation"][..., 0][overlap] == 0).all()
    assert not example["pixel_valid"][overlap].any() and example["pixel_valid"][~overlap].all()
    assert (example["objects"]["color"] == -1).all()
    out = pipeline.ScenePreprocess(4, "unit")(example)
    np.testing.assert_array_equal(out["pixel_valid"], ~overlap)
    np.testing.assert_array_equal(out["image"], scene["image"])
    assert out["segmentation"].min() >= 0 and out["segmentation"].max() <= 4


def test_uint8_datasets_get_all_valid_pixels_and_unit_images():
    example = {
        "image": np.full((4, 4, 3), 255, np.uint8),
        "segmentation": np.zeros((4, 4, 1), np.uint8),
        "objects": {
            k: np.zeros(0, np.int32) for k in ("shape", "color", "material", "size", "visible")
        },
    }
    example["objects"]["position"] = np.zeros((0, 3), np.float32)
    out = pipeline.ScenePreprocess(2, "unit")(example)
    assert out["pixel_valid"].all() and out["image"].max() == 1.0


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        shapes_builder.ShapesConfig.make("5shapes", 32, 1, 1, 1)
    with pytest.raises(ValueError, match="max_objects"):
        load_sources("shapes", str(tmp_path), dict(resolution=32, max_objects=2))
