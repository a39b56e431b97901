"""The feature cache: built once, keyed by what it depends on, interrupted builds redone."""

import logging

import numpy as np
import pytest

from ocjax.data import feature_cache, load_sources, pipeline

OPTIONS = dict(
    resolution=32, max_objects=4, min_objects=2, num_train=48, num_validation=8, num_test=12, seed=0
)
PARTS = {"dataset": "clevr_like", "split": "test", "backbone": {"kind": "pixel_patches"}}


@pytest.fixture(scope="module")
def sources(data_dir):
    return load_sources("clevr_like", data_dir, dict(OPTIONS))


class Patches:
    """A stand-in backbone: mean colour of each 8x8 patch `[b, 16, 3]`; counts its calls."""

    calls = 0

    def __call__(self, images):
        self.calls += 1
        b = images.shape[0]
        features = images.reshape(b, 4, 8, 4, 8, 3).mean(axis=(2, 4)).reshape(b, 16, 3)
        return {"features": features, "hidden": features[:, :1] * 2}


def _load(root, source, compute, parts=PARTS, weights=None, **kwargs):
    return feature_cache.load(
        root, parts, weights, source, pipeline.ScenePreprocess(4), compute, batch_size=5, **kwargs
    )


def test_outputs_are_computed_once_and_read_back_as_memory_maps(sources, tmp_path):
    compute, source = Patches(), sources["test"]
    images = np.stack([pipeline.ScenePreprocess(4)(source[i])["image"] for i in range(12)])
    for flip in (False, True):
        arrays = _load(tmp_path, source, compute, flip=flip)
        assert compute.calls == 3  # 12 images in batches of 5, the last one padded.
        expected = Patches()(images[:, :, ::-1] if flip else images)
        assert arrays.keys() == expected.keys()
        for name, array in arrays.items():
            assert isinstance(array, np.memmap) and not array.flags.writeable
            np.testing.assert_allclose(array, expected[name], rtol=1e-6)
        again = _load(tmp_path, source, compute, flip=flip)
        assert compute.calls == 3
        np.testing.assert_array_equal(again["features"], arrays["features"])
        compute.calls = 0
    assert len(list((tmp_path / "feature_cache").iterdir())) == 2  # Mirrored: another key.


def test_any_change_of_options_or_weights_is_another_cache(sources, tmp_path):
    weights = {"vit": {"kernel": np.ones((2, 3), np.float32)}}
    key = feature_cache.cache_key(PARTS, weights)
    assert key == feature_cache.cache_key(dict(reversed(PARTS.items())), weights)
    changed = [
        feature_cache.cache_key({**PARTS, "split": "train"}, weights),
        feature_cache.cache_key({**PARTS, "backbone": {"kind": "dino_vit"}}, weights),
        feature_cache.cache_key(PARTS, {"vit": {"kernel": np.full((2, 3), 2, np.float32)}}),
        feature_cache.cache_key(PARTS, {"vit": {"kernel": np.ones((3, 2), np.float32)}}),
        feature_cache.cache_key(PARTS, {"vit": {"bias": np.ones((2, 3), np.float32)}}),
    ]
    assert len({key, *changed}) == 6
    compute = Patches()
    _load(tmp_path, sources["test"], compute, weights=weights)
    _load(tmp_path, sources["test"], compute, weights={"vit": {"kernel": np.zeros((2, 3))}})
    assert compute.calls == 6  # The stale cache was not read.


@pytest.mark.parametrize("damage", ["manifest", "truncate", "count"])
def test_an_interrupted_build_is_detected_and_built_again(sources, tmp_path, caplog, damage):
    compute, source = Patches(), sources["test"]
    expected = _load(tmp_path, source, compute)["features"].copy()
    (directory,) = (tmp_path / "feature_cache").iterdir()
    if damage == "manifest":  # Killed before the manifest was written.
        (directory / feature_cache.MANIFEST).unlink()
    elif damage == "truncate":
        path = directory / "features.npy"
        path.write_bytes(path.read_bytes()[:-100])
    else:  # The split changed size under the same key.
        source = [source[i] for i in range(10)]
        expected = expected[:10]
    with caplog.at_level(logging.WARNING, logger="ocjax"):
        arrays = _load(tmp_path, source, compute)
    assert compute.calls == 6 if damage != "count" else compute.calls == 5
    (record,) = caplog.records
    assert str(directory) in record.message and "building it again" in record.message
    np.testing.assert_allclose(arrays["features"], expected, rtol=1e-6)


def test_a_missing_cache_is_an_error_where_building_is_not_allowed(sources, tmp_path):
    with pytest.raises(RuntimeError, match="single-process"):
        _load(tmp_path, sources["test"], Patches(), may_build=False)


def test_training_batches_carry_the_rows_of_the_drawn_flip(sources, tmp_path):
    source = sources["train"]
    arrays = _load(tmp_path, source, Patches(), parts={**PARTS, "split": "train"})
    flipped = _load(tmp_path, source, Patches(), parts={**PARTS, "split": "train"}, flip=True)
    cached = feature_cache.CachedSource(source, arrays, flipped)
    assert len(cached) == 48 and cached.__getitems__([3])[0]["image"].shape == (32, 32, 3)
    batches = pipeline.training_batches(
        cached, pipeline.ScenePreprocess(4, random_flip=True), batch_size=8, seed=1
    )
    flips = 0
    for step in range(6):
        batch = batches[step]
        for image, features in zip(batch["image"], batch["features"]):
            expected = Patches()(image[None])["features"][0]
            np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
            flips += not any(np.allclose(features, row, atol=1e-6) for row in arrays["features"])
    assert 0 < flips < 48
