"""The embedded part figures as a tfds dataset and through the input pipeline."""

import numpy as np
import pytest

from ocjax.data import load_sources
from ocjax.data.builders.clevr_like import scene_seed
from ocjax.data.generators.figures import PARTS, render_figure
from ocjax.data.pipeline import ScenePreprocess

OPTIONS = dict(resolution=48, max_objects=6, num_train=6, num_validation=2, num_test=3, seed=4)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return load_sources("parts_like", str(tmp_path_factory.mktemp("tfds")), OPTIONS)


def test_examples_are_the_rendered_figures(sources):
    assert {k: len(v) for k, v in sources.items()} == {"train": 6, "validation": 2, "test": 3}
    for i in range(3):
        example = sources["test"][i]
        figure = render_figure(scene_seed(4, "test", int(example["index"])), 48)
        np.testing.assert_array_equal(example["image"], figure["image"])
        np.testing.assert_array_equal(example["segmentation"][..., 0], figure["parts"])
        np.testing.assert_array_equal(example["foreground"][..., 0] > 0, figure["foreground"])
        objects = example["objects"]
        assert objects["shape"].tolist() == list(range(len(PARTS)))
        counts = np.bincount(figure["parts"].ravel(), minlength=len(PARTS) + 1)[1:]
        np.testing.assert_array_equal(objects["visible"], counts > 0)


def test_pipeline_hands_on_the_foreground(sources):
    batch = ScenePreprocess(max_objects=6, normalization="unit")(sources["train"][0])
    assert batch["foreground"].dtype == bool
    np.testing.assert_array_equal(batch["foreground"], batch["segmentation"] > 0)


def test_too_few_object_slots_are_named(tmp_path):
    with pytest.raises(ValueError, match="6 parts but data.max_objects is 4"):
        load_sources("parts_like", str(tmp_path), dict(OPTIONS, max_objects=4))
