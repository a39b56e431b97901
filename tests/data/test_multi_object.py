"""Multi-object builders read fixtures written in the official GZIP TFRecord format."""

import os

import numpy as np
import pytest
import tensorflow as tf

from ocjax.data import DatasetError, augment
from ocjax.data.builders import multi_object as mo
from ocjax.data.generators import clevr_like

CLEVR_OBJECTS = [3, 7, 6, 10, 2, 5, 4, 8, 1, 6]  # per record, in file order
SPLITS = dict(num_train=6, num_validation=2, num_test=2)


def _rectangles(
    rng: np.random.Generator, count: int, height: int, width: int
) -> list[tuple[int, int, int, int]]:
    """`count` disjoint boxes `(top, bottom, left, right)` on a grid over the image."""
    cells = rng.permutation(16)[:count]
    cell_h, cell_w = height // 4, width // 4
    return [
        (
            c // 4 * cell_h + 1,
            (c // 4 + 1) * cell_h - 1,
            c % 4 * cell_w + 1,
            (c % 4 + 1) * cell_w - 1,
        )
        for c in cells
    ]


def _scene(
    spec: mo.DatasetSpec, rng: np.random.Generator, count: int, first: int = 1
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Official-format values for `count` objects in entities `first..` and their id map."""
    schema = spec.schema
    height, width, channels = schema["image"].shape[-3:]
    n = spec.num_entities
    values = {f.name: np.zeros(f.shape) for f in spec.fields}
    values["image"] = rng.integers(0, 256, (height, width, channels))
    masks = np.zeros((n, height, width), np.uint8)
    masks[0] = 255
    ids = np.zeros((height, width), np.uint8)
    for k, (top, bottom, left, right) in enumerate(_rectangles(rng, count, height, width)):
        masks[first + k, top:bottom, left:right] = 255
        masks[0, top:bottom, left:right] = 0
        ids[top:bottom, left:right] = k + 1
    stored = np.moveaxis(masks, 0, -1) if schema["mask"].shape[0] != n else masks
    values["mask"] = stored[..., None]
    if "visibility" in values:
        values["visibility"][: first + count] = 1.0
    for name in ("x", "y", "z", "rotation"):
        if name in values:
            values[name][first : first + count] = rng.normal(size=count)
    return values, ids


def _clevr_scene(rng: np.random.Generator, count: int) -> tuple[dict, np.ndarray]:
    """A CLEVR-with-masks record with random attribute codes for `count` objects."""
    values, ids = _scene(mo.SPECS["clevr_with_masks"], rng, count)
    for key, names in mo.CLEVR_CODE_NAMES.items():
        values[key][1 : 1 + count] = rng.integers(1, len(names) + 1, count)
    return values, ids


def _write(path: str, spec: mo.DatasetSpec, scenes: list[dict]) -> None:
    """Writes `scenes` as a GZIP TFRecord file, as the official files are."""
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for values in scenes:
            writer.write(mo.encode_example(spec, values))


@pytest.fixture(scope="module")
def clevr(tmp_path_factory):
    manual = tmp_path_factory.mktemp("manual")
    rng = np.random.default_rng(0)
    scenes = [_clevr_scene(rng, count) for count in CLEVR_OBJECTS]
    _write(
        str(manual / "clevr_with_masks_train.tfrecords"),
        mo.SPECS["clevr_with_masks"],
        [values for values, _ in scenes],
    )
    return str(manual), scenes


def _load(tmp_path, manual, **options):
    return mo.clevr_with_masks_sources(
        str(tmp_path / "data"), manual_dir=manual, **{**SPLITS, **options}
    )


def _expected_codes(values: dict, key: str, count: int) -> np.ndarray:
    """Ocjax indices of the codes the fixture wrote, via the documented name table."""
    names = [mo.CLEVR_CODE_NAMES[key][int(c) - 1] for c in values[key][1 : 1 + count]]
    ocjax_names = {
        "shape": clevr_like.SHAPES,
        "color": clevr_like.COLORS,
        "material": clevr_like.MATERIALS,
        "size": clevr_like.SIZES,
    }[key]
    return np.array([ocjax_names.index(name) for name in names])


def test_clevr_native_values_match_fixture(clevr, tmp_path):
    manual, scenes = clevr
    sources = _load(tmp_path, manual, crop=None, resolution=0)
    assert {k: len(v) for k, v in sources.items()} == {"train": 6, "validation": 2, "test": 2}
    firsts = {"train": 0, "validation": 6, "test": 8}
    for split, source in sources.items():
        for position in range(len(source)):
            example = source[position]
            index = int(example["index"])
            assert index == firsts[split] + position
            values, ids = scenes[index]
            count = CLEVR_OBJECTS[index]
            np.testing.assert_array_equal(example["image"], values["image"])
            np.testing.assert_array_equal(example["segmentation"][..., 0], ids)
            objects = example["objects"]
            for key in ("shape", "color", "material", "size"):
                np.testing.assert_array_equal(objects[key], _expected_codes(values, key, count))
            position_xyz = np.stack([values[k][1 : 1 + count] for k in "xyz"], -1)
            np.testing.assert_allclose(objects["position"], position_xyz, rtol=1e-6)
            assert objects["visible"].all() and len(objects["visible"]) == count


def test_clevr_code_table_maps_to_ocjax_names():
    assert mo._lookup_table("shape").tolist() == [-1, 1, 0, 2]
    assert mo._lookup_table("color").tolist() == [-1, 0, 1, 2, 3, 4, 5, 6, 7]
    assert mo._lookup_table("material").tolist() == [-1, 0, 1]
    assert mo._lookup_table("size").tolist() == [-1, 1, 0]


def test_clevr6_keeps_scenes_with_at_most_six_objects(clevr, tmp_path):
    manual, _ = clevr
    sources = _load(tmp_path, manual, crop=None, resolution=0, clevr6=True, max_objects=6)
    kept = {s: [int(src[i]["index"]) for i in range(len(src))] for s, src in sources.items()}
    assert kept == {"train": [0, 2, 4, 5], "validation": [6], "test": [8, 9]}


def test_crop_and_resize_follow_slot_attention(clevr, tmp_path):
    manual, scenes = clevr
    example = _load(tmp_path, manual, resolution=32)["train"][0]
    values, ids = scenes[0]
    crop = values["image"][29:221, 64:256].astype(np.uint8)
    image = np.clip(np.rint(augment.resize(crop, 32)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(example["image"], image)
    segmentation = augment.resize(ids[29:221, 64:256], 32, method="nearest")
    np.testing.assert_array_equal(example["segmentation"][..., 0], segmentation)
    assert example["image"].shape == (32, 32, 3)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DatasetError) as error:
        _load(tmp_path, str(tmp_path / "nowhere"))
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "clevr_with_masks_train.tfrecords") in message
    assert "see README section Datasets" in message


def test_truncated_file_names_the_file_and_record(clevr, tmp_path):
    manual, _ = clevr
    broken = tmp_path / "broken"
    broken.mkdir()
    path = broken / "clevr_with_masks_train.tfrecords"
    data = open(os.path.join(manual, "clevr_with_masks_train.tfrecords"), "rb").read()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"record \d+") as error:
        _load(tmp_path, str(broken), crop=None, resolution=0)
    assert str(path) in str(error.value)


def test_too_few_records_is_an_error(clevr, tmp_path):
    manual, _ = clevr
    with pytest.raises(DatasetError, match="holds only 10 records"):
        _load(tmp_path, manual, crop=None, resolution=0, num_test=5)


def test_max_objects_too_small_is_an_error(clevr, tmp_path):
    with pytest.raises(ValueError, match="data.max_objects"):
        _load(tmp_path, clevr[0], max_objects=6)


def _sprite_source(tmp_path, dataset: str, counts: list[int], first: int = 1, **extra):
    """Writes `counts`-object scenes of `dataset` and opens its train split (all records)."""
    spec = mo.SPECS[dataset]
    rng = np.random.default_rng(1)
    scenes = []
    for count in counts:
        values, ids = _scene(spec, rng, count, first)
        if "shape" in values:
            values["shape"][first : first + count] = rng.integers(1, 4, count)
            values["color"][first : first + count] = rng.uniform(
                size=(count,) + values["color"].shape[1:]
            )
        scenes.append((values, ids))
    manual = tmp_path / "manual"
    manual.mkdir()
    _write(str(manual / spec.filename), spec, [values for values, _ in scenes])
    sources = mo.multi_object_sources(
        str(tmp_path / "data"),
        dataset=dataset,
        manual_dir=str(manual),
        resolution=0,
        max_objects=10,
        num_train=len(counts) - 2,
        num_validation=1,
        num_test=1,
        **extra,
    )
    return sources, scenes


@pytest.mark.parametrize("variant", ["binarized", "colored_on_colored"])
def test_multi_dsprites_entity_last_masks(tmp_path, variant):
    counts = [3, 1, 2, 2]
    sources, scenes = _sprite_source(tmp_path, f"multi_dsprites_{variant}", counts)
    test = sources["test"][0]  # Sprite layout: train, test, validation.
    assert int(test["index"]) == 2
    assert int(sources["validation"][0]["index"]) == 3
    for position in range(2):
        example = sources["train"][position]
        values, ids = scenes[position]
        count = counts[position]
        image = np.broadcast_to(values["image"], (64, 64, 3))
        np.testing.assert_array_equal(example["image"], image)
        np.testing.assert_array_equal(example["segmentation"][..., 0], ids)
        objects = example["objects"]
        np.testing.assert_array_equal(objects["shape"], values["shape"][1 : 1 + count] - 1)
        assert (objects["color"] == -1).all() and (objects["size"] == -1).all()
        xy0 = np.stack(
            [values["x"][1 : 1 + count], values["y"][1 : 1 + count], np.zeros(count)], -1
        )
        np.testing.assert_allclose(objects["position"], xy0, rtol=1e-6)


def test_tetrominoes_values_match_fixture(tmp_path):
    sources, scenes = _sprite_source(tmp_path, "tetrominoes", [3, 3, 3, 3])
    example = sources["train"][1]
    values, ids = scenes[1]
    np.testing.assert_array_equal(example["image"], values["image"])
    np.testing.assert_array_equal(example["segmentation"][..., 0], ids)
    np.testing.assert_array_equal(example["objects"]["shape"], values["shape"][1:4] - 1)


def test_objects_room_walls_are_background(tmp_path):
    sources, scenes = _sprite_source(tmp_path, "objects_room", [3, 2, 1, 0], first=4)
    for position in range(2):
        example = sources["train"][position]
        values, ids = scenes[position]
        np.testing.assert_array_equal(example["image"], values["image"])
        np.testing.assert_array_equal(example["segmentation"][..., 0], ids)
        assert len(example["objects"]["shape"]) == int(ids.max())
        assert (example["objects"]["shape"] == -1).all()
    assert len(sources["validation"][0]["objects"]["shape"]) == 0
