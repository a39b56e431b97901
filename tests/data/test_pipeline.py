"""The CLEVR-like tfds builder, the grain pipeline and the dataset errors."""

import glob
import os

import numpy as np
import pytest

from ocjax.data import DatasetError, augment, load_sources, pipeline
from ocjax.data.builders.clevr_like import scene_seed
from ocjax.data.generators import clevr_like

OPTIONS = dict(
    resolution=32, max_objects=4, min_objects=2, num_train=48, num_validation=8, num_test=12, seed=0
)


@pytest.fixture(scope="module")
def sources(data_dir):
    return load_sources("clevr_like", data_dir, {k: v for k, v in OPTIONS.items()})


def test_builder_stores_exactly_what_the_generator_renders(sources):
    assert {k: len(v) for k, v in sources.items()} == {"train": 48, "validation": 8, "test": 12}
    for split, source in sources.items():
        for position in (0, len(source) - 1):
            example = source[position]
            scene = clevr_like.render_scene(scene_seed(0, split, int(example["index"])), 32, 2, 4)
            np.testing.assert_array_equal(example["image"], scene["image"])
            np.testing.assert_array_equal(example["segmentation"][..., 0], scene["segmentation"])
            for key in ("shape", "color", "material", "size", "visible", "num_pixels"):
                np.testing.assert_array_equal(example["objects"][key], scene[key])
            np.testing.assert_allclose(example["objects"]["position"], scene["position"])


def test_splits_hold_distinct_scenes(sources):
    images = [sources[s][i]["image"].tobytes() for s in sources for i in range(len(sources[s]))]
    assert len(set(images)) == len(images)


def test_preprocess_pads_objects(sources):
    example = sources["train"][0]
    out = pipeline.ScenePreprocess(max_objects=6)(example)
    n = len(example["objects"]["shape"])
    assert out["image"].dtype == np.float32 and out["image"].shape == (32, 32, 3)
    np.testing.assert_allclose(out["image"], example["image"] / 127.5 - 1.0, atol=1e-6)
    assert out["segmentation"].dtype == np.int32 and out["segmentation"].max() <= n
    assert out["present"].tolist() == [True] * n + [False] * (6 - n)
    assert (out["shape"][n:] == -1).all() and (
        out["shape"][:n] == example["objects"]["shape"]
    ).all()
    with pytest.raises(ValueError, match="max_objects"):
        pipeline.ScenePreprocess(max_objects=n - 1)(example)


def _batches(sources, **kwargs):
    preprocess = pipeline.ScenePreprocess(max_objects=4)
    return pipeline.training_batches(sources["train"], preprocess, **kwargs)


def test_training_batches_are_a_function_of_seed_and_step(sources):
    a, b, c = (_batches(sources, batch_size=8, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a[7]["image"], b[7]["image"])
    assert not np.array_equal(a[0]["image"], c[0]["image"])
    from_iterator = list(zip(range(3), pipeline.iterate(a, start=4)))
    for offset, batch in from_iterator:
        np.testing.assert_array_equal(batch["image"], a[4 + offset]["image"])
    # Each epoch (48 scenes = 6 batches) visits every scene once, in a new order.
    epoch = lambda e: np.concatenate([a[6 * e + i]["image"] for i in range(6)])
    first, second = epoch(0), epoch(1)
    key = lambda x: sorted(im.tobytes() for im in x)
    assert key(first) == key(second) and not np.array_equal(first, second)


def test_memory_cache_gives_the_same_batches_and_is_read_only(sources):
    assert pipeline.memory_cached(sources["train"], budget_bytes=0) is sources["train"]
    cached = pipeline.memory_cached(sources["train"])
    assert isinstance(cached, pipeline.DecodedCache) and len(cached) == 48
    with pytest.raises(ValueError, match="read-only"):
        cached[3]["image"][0, 0, 0] = 0
    views = augment.TwoViewAugment(size=24)
    for preprocess in (pipeline.ScenePreprocess(4), pipeline.ScenePreprocess(4, views=views)):
        direct, held = (
            pipeline.training_batches(
                sources["train"], preprocess, batch_size=8, seed=5, memory_cache_bytes=budget
            )
            for budget in (0, pipeline.MEMORY_CACHE_BYTES)
        )
        for step in (0, 9):
            assert direct[step].keys() == held[step].keys()
            for key in direct[step]:
                np.testing.assert_array_equal(held[step][key], direct[step][key], err_msg=key)


def test_hosts_partition_the_global_batch(sources):
    whole = _batches(sources, batch_size=8, seed=3)
    parts = [
        _batches(sources, batch_size=4, seed=3, process_index=i, process_count=2) for i in range(2)
    ]
    for step in (0, 5):  # Host h holds rows [4h, 4h + 4) of the one-host global batch.
        for key in whole[step]:
            joined = np.concatenate([p[step][key] for p in parts])
            np.testing.assert_array_equal(joined, whole[step][key])


def test_evaluation_batches_cover_each_example_once(sources):
    preprocess = pipeline.ScenePreprocess(max_objects=4)
    ds = pipeline.evaluation_batches(sources["test"], preprocess, batch_size=5)
    batches = [ds[i] for i in range(len(ds))]
    assert len(batches) == 3 and all(b["image"].shape[0] == 5 for b in batches)
    valid = np.concatenate([b["valid"] for b in batches])
    assert valid.tolist() == [True] * 12 + [False] * 3
    images = np.concatenate([b["image"] for b in batches])[:12]
    expected = np.stack([preprocess(sources["test"][i])["image"] for i in range(12)])
    np.testing.assert_array_equal(images, expected)
    hosts = [
        pipeline.evaluation_batches(
            sources["test"], preprocess, batch_size=3, process_index=i, process_count=2
        )
        for i in range(2)
    ]
    assert len(hosts[0]) == len(hosts[1]) == 2
    one_host = pipeline.evaluation_batches(sources["test"], preprocess, batch_size=6)
    for step in range(2):
        joined = np.concatenate([h[step]["image"] for h in hosts])
        np.testing.assert_array_equal(joined, one_host[step]["image"])


def test_corrupt_cache_is_reported_with_its_path(data_dir, tmp_path):
    options = dict(OPTIONS, num_train=10, num_validation=2, num_test=2, seed=7)
    load_sources("clevr_like", str(tmp_path), options)
    for path in glob.glob(str(tmp_path / "clevr_like" / "*" / "*" / "*train.array_record*")):
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 3)
    with pytest.raises(DatasetError, match="Delete that directory") as error:
        load_sources("clevr_like", str(tmp_path), options)
    assert str(tmp_path / "clevr_like") in str(error.value)


def test_bad_data_dir_and_name(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(DatasetError, match="not a readable and writable directory"):
        load_sources("clevr_like", str(not_a_dir), OPTIONS)
    with pytest.raises(DatasetError, match="data.name"):
        load_sources("clevr_v2", str(tmp_path), OPTIONS)
    with pytest.raises(DatasetError, match=r"takes no option\(s\) \['min_objects'"):
        load_sources("clevr", str(tmp_path), dict(OPTIONS, manual_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="min_objects"):
        load_sources("clevr_like", str(tmp_path), dict(OPTIONS, min_objects=5))


def test_two_view_batches_are_deterministic_and_differ_across_epochs(sources):
    views = augment.TwoViewAugment(size=32, area_range=(0.3, 0.9))
    preprocess = pipeline.ScenePreprocess(max_objects=4, normalization="imagenet", views=views)
    a = pipeline.training_batches(sources["train"], preprocess, batch_size=8, seed=5)
    b = pipeline.training_batches(sources["train"], preprocess, batch_size=8, seed=5)
    batch = a[2]
    # The host keeps the uint8 scene and draws the views' parameters; the step renders them.
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (8, 32, 32, 3)
    assert batch["view_a_box"].shape == (8, 4) and batch["view_b_jitter"].shape == (8, 3)
    rendered = views.render(batch)
    assert rendered["view_a"].shape == rendered["view_b"].shape == (8, 32, 32, 3)
    for key in ("view_a_box", "view_a_order", "view_a_jitter", "view_b_flipped"):
        np.testing.assert_array_equal(batch[key], b[2][key])
    assert not np.array_equal(rendered["view_a"], rendered["view_b"])
    # Epoch 2 revisits the scenes (6 batches per epoch) with fresh augmentations.
    first = {a[i]["image"][j].tobytes(): a[i]["view_a_box"][j] for i in range(6) for j in range(8)}
    second = {
        a[6 + i]["image"][j].tobytes(): a[6 + i]["view_a_box"][j]
        for i in range(6)
        for j in range(8)
    }
    assert first.keys() == second.keys()
    assert sum(not np.array_equal(first[k], second[k]) for k in first) > 40


def test_ignore_mask_becomes_pixel_valid(sources):
    example = dict(sources["train"][0])
    ignore = np.zeros(example["segmentation"].shape, np.uint8)
    ignore[:5, :7] = 1
    out = pipeline.ScenePreprocess(max_objects=4)(dict(example, ignore=ignore))
    assert out["pixel_valid"].shape == (32, 32)
    assert not out["pixel_valid"][:5, :7].any() and out["pixel_valid"].sum() == 32 * 32 - 35
    assert pipeline.ScenePreprocess(max_objects=4)(example)["pixel_valid"].all()


def test_default_options_use_the_registered_builder_configs(tmp_path):
    # tfds refuses a new config object named like a registered one; a run with a dataset's
    # default options (e.g. the 60k embedded Tetrominoes) must get the registered object.
    from ocjax.data.builders.features import known_config
    from ocjax.data.builders.shapes import Shapes, ShapesConfig
    from ocjax.data.builders.tetrominoes_like import TetrominoesLike, TetrominoesLikeConfig

    for builder, config in (
        (TetrominoesLike, TetrominoesLikeConfig.make(60_000, 1_000, 320)),
        (Shapes, ShapesConfig.make("4shapes", 32, 50_000, 10_000, 10_000)),
    ):
        with pytest.raises(ValueError, match="Cannot name a custom BuilderConfig"):
            builder(config=config, data_dir=str(tmp_path))
        assert builder(config=known_config(builder, config), data_dir=str(tmp_path))


def test_two_views_of_a_part_dataset_keep_the_whole_foreground():
    """A two-view model may train on part figures; the foreground stays the full image's."""
    rng = np.random.default_rng(0)
    foreground = rng.random((16, 16, 1)) < 0.4
    example = {
        "image": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
        "segmentation": foreground.astype(np.uint8) * 2,
        "foreground": foreground.astype(np.uint8),
        "objects": {key: np.zeros(1, np.int32) for key in ("shape", "color", "material", "size")}
        | {"visible": np.ones(1, bool), "position": np.zeros((1, 3), np.float32)},
    }
    preprocess = pipeline.ScenePreprocess(2, views=augment.TwoViewAugment(size=8))
    out = preprocess(example, np.random.default_rng(1))
    np.testing.assert_array_equal(out["foreground"], foreground[..., 0])
    assert out["view_a_box"].shape == out["view_b_box"].shape == (4,)


def test_random_flip_mirrors_image_and_labels_exactly_when_drawn():
    rng = np.random.default_rng(0)
    example = {
        "image": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        "segmentation": rng.integers(0, 3, (8, 8, 1), dtype=np.uint8),
        "ignore": (rng.random((8, 8, 1)) < 0.3).astype(np.uint8),
        "foreground": (rng.random((8, 8, 1)) < 0.5).astype(np.uint8),
        "objects": {key: np.zeros(2, np.int32) for key in ("shape", "color", "material", "size")}
        | {"visible": np.ones(2, bool), "position": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "cached": {"features": np.full((4, 2), 1.0, np.float32)},
        "cached_flipped": {"features": np.full((4, 2), 2.0, np.float32)},
    }
    plain = pipeline.ScenePreprocess(4)(example)
    flipping = pipeline.ScenePreprocess(4, random_flip=True)
    assert flipping.is_random and not pipeline.ScenePreprocess(4).is_random
    draws = [np.random.default_rng(seed).random() < 0.5 for seed in range(20)]
    assert 0 < sum(draws) < 20
    for seed, drawn in enumerate(draws):
        out = flipping(example, np.random.default_rng(seed))
        for key in ("image", "segmentation", "pixel_valid", "foreground"):
            expected = plain[key][:, ::-1] if drawn else plain[key]
            np.testing.assert_array_equal(out[key], expected, err_msg=key)
        np.testing.assert_array_equal(out["features"], 2.0 if drawn else 1.0)
        for key in ("position", "present", "shape"):  # Object attributes stay.
            np.testing.assert_array_equal(out[key], plain[key])
    with pytest.raises(ValueError, match="data.random_flip"):
        pipeline.ScenePreprocess(4, views=augment.TwoViewAugment(size=8), random_flip=True)


def test_random_flip_in_batches_is_deterministic_and_redrawn_every_epoch(sources):
    preprocess = pipeline.ScenePreprocess(4, random_flip=True)
    a, b = (
        pipeline.training_batches(sources["train"], preprocess, batch_size=8, seed=5)
        for _ in range(2)
    )
    plain = pipeline.training_batches(
        sources["train"], pipeline.ScenePreprocess(4), batch_size=8, seed=5
    )
    flips = [{}, {}]  # Per epoch: scene -> mirrored.
    for step in range(12):  # Two epochs of 6 batches.
        for key in a[step]:
            np.testing.assert_array_equal(a[step][key], b[step][key], err_msg=key)
        for i in range(8):
            scene, labels = plain[step]["image"][i], plain[step]["segmentation"][i]
            mirrored = np.array_equal(a[step]["image"][i], scene[:, ::-1])
            assert mirrored != np.array_equal(a[step]["image"][i], scene)  # Not symmetric.
            expected = labels[:, ::-1] if mirrored else labels
            np.testing.assert_array_equal(a[step]["segmentation"][i], expected)
            flips[step // 6][scene.tobytes()] = mirrored
    assert all(12 < sum(epoch.values()) < 36 for epoch in flips)
    assert flips[0].keys() == flips[1].keys() and flips[0] != flips[1]  # Drawn again.
