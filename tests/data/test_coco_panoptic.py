"""COCO panoptic builder reads a fixture in the official panoptic JSON + PNG + image layout."""

import json

import numpy as np
import pytest
from PIL import Image

from ocjax.data import DatasetError
from ocjax.data.builders import coco_panoptic

HEIGHT, WIDTH, RES = 20, 30, 20  # Short side 20 -> no resize; centre crop keeps columns 5:25.
CROP = (slice(None), slice(5, 25))
CATEGORIES = [
    {"id": 18, "name": "dog", "isthing": 1},
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 184, "name": "sky", "isthing": 0},
]
# Segment id -> (category id, iscrowd, region); ids use all three PNG channels.
PERSON, DOG, SKY, CROWD = 3 + 256 * 1, 5 + 256**2 * 2, 200 + 256 * 7, 7
SEGMENTS = {
    PERSON: (1, 0, (slice(2, 10), slice(6, 14))),  # 64 px, largest thing.
    DOG: (18, 0, (slice(12, 16), slice(8, 12))),  # 16 px.
    SKY: (184, 0, (slice(0, 12), slice(16, 30))),  # Stuff: background.
    CROWD: (1, 1, (slice(14, 18), slice(18, 24))),  # 24 px crowd person.
}


def _region(segment_id: int) -> np.ndarray:
    """Bool mask `[HEIGHT, WIDTH]` of one fixture segment."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[SEGMENTS[segment_id][2]] = True
    return mask


def _write(root) -> np.ndarray:
    """Writes the same image, panoptic PNG and JSON for both splits; returns the image."""
    ids = np.zeros((HEIGHT, WIDTH), np.int64)  # Pixels left at 0 are unlabeled.
    for segment_id, (_, _, region) in SEGMENTS.items():
        ids[region] = segment_id
    png = np.stack([ids % 256, ids // 256 % 256, ids // 256**2], -1).astype(np.uint8)
    pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
    (root / "annotations").mkdir()
    for folder in ("train2017", "val2017"):
        (root / folder).mkdir()
        Image.fromarray(pixels).save(root / folder / "000000000007.png")
        (root / "annotations" / f"panoptic_{folder}").mkdir()
        Image.fromarray(png).save(root / "annotations" / f"panoptic_{folder}" / "7.png")
        segments = [
            {"id": i, "category_id": c, "iscrowd": crowd} for i, (c, crowd, _) in SEGMENTS.items()
        ]
        data = {
            "images": [{"id": 7, "file_name": "000000000007.png", "height": 20, "width": 30}],
            "annotations": [{"image_id": 7, "file_name": "7.png", "segments_info": segments}],
            "categories": CATEGORIES,
        }
        (root / "annotations" / f"panoptic_{folder}.json").write_text(json.dumps(data))
    return pixels


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_panoptic")
    return root, _write(root)


def _load(tmp_path, root, crowd, max_objects=4):
    return coco_panoptic.coco_panoptic_sources(
        str(tmp_path / "data"),
        manual_dir=str(root),
        resolution=RES,
        max_objects=max_objects,
        crowd=crowd,
    )


def test_things_are_objects_stuff_and_unlabeled_are_background(manual, tmp_path):
    root, pixels = manual
    sources = _load(tmp_path, root, "drop")
    assert {k: len(v) for k, v in sources.items()} == {"train": 1, "validation": 1}
    example = sources["train"][0]
    np.testing.assert_array_equal(example["image"], pixels[CROP])
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[_region(PERSON)] = 1
    expected[_region(DOG)] = 2
    np.testing.assert_array_equal(example["segmentation"][..., 0], expected[CROP])
    assert not example["ignore"].any()
    objects = example["objects"]
    assert objects["shape"].tolist() == [0, 1]  # Thing ids sorted: person 1 -> 0, dog 18 -> 1.
    assert objects["category_id"].tolist() == [1, 18]
    assert objects["is_crowd"].tolist() == [False, False]
    assert objects["num_pixels"].tolist() == [64, 16]
    assert objects["visible"].all() and (objects["material"] == -1).all()


def test_keep_crowd_orders_by_area(manual, tmp_path):
    root, _ = manual
    example = _load(tmp_path, root, "keep")["validation"][0]
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[_region(PERSON)] = 1
    expected[_region(CROWD)] = 2
    expected[_region(DOG)] = 3
    np.testing.assert_array_equal(example["segmentation"][..., 0], expected[CROP])
    assert example["objects"]["shape"].tolist() == [0, 0, 1]
    assert example["objects"]["is_crowd"].tolist() == [False, True, False]
    assert example["objects"]["num_pixels"].tolist() == [64, 24, 16]


def test_objects_beyond_max_are_ignored(manual, tmp_path):
    root, _ = manual
    example = _load(tmp_path, root, "drop", max_objects=1)["train"][0]
    np.testing.assert_array_equal(example["ignore"][..., 0], _region(DOG)[CROP].astype(np.uint8))
    np.testing.assert_array_equal(example["segmentation"][..., 0], _region(PERSON)[CROP])
    assert example["objects"]["category_id"].tolist() == [1]


def test_missing_png_names_the_path(tmp_path):
    root = tmp_path / "manual"
    root.mkdir()
    _write(root)
    png = root / "annotations" / "panoptic_train2017" / "7.png"
    png.unlink()
    with pytest.raises(DatasetError, match="see README section Datasets") as error:
        _load(tmp_path, root, "drop")
    assert str(png) in str(error.value)


def test_missing_png_folder_names_the_path(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "panoptic_train2017.json").write_text("{}")
    with pytest.raises(DatasetError, match="does not exist") as error:
        _load(tmp_path, tmp_path, "drop")
    assert str(tmp_path / "annotations" / "panoptic_train2017") in str(error.value)
