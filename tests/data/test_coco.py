"""COCO builder reads a fixture in the official instances-JSON + image-folder layout."""

import json

import numpy as np
import pytest
from PIL import Image

from ocjax.data import DatasetError
from ocjax.data.builders import coco

HEIGHT, WIDTH, RES = 20, 30, 20  # Short side 20 -> no resize; centre crop drops 5 columns.
CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}]


def _square(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """A COCO polygon for the rectangle with corners (x0, y0) and (x1, y1)."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a bool mask (column-major runs, starting with zeros)."""
    flat = mask.T.ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    runs = np.diff(np.concatenate([[0], edges])).tolist()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": runs}


CROWD = np.zeros((HEIGHT, WIDTH), bool)
CROWD[12:16, 20:26] = True


def _write_split(manual, folder: str, name: str, annotations: list[dict], seed: int):
    """Writes one lossless image and its instances JSON; returns the image array."""
    pixels = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
    (manual / folder).mkdir(parents=True)
    Image.fromarray(pixels).save(manual / folder / name)
    data = {
        "images": [{"id": 7, "file_name": name, "height": HEIGHT, "width": WIDTH}],
        "annotations": [dict(a, image_id=7, id=i) for i, a in enumerate(annotations)],
        "categories": CATEGORIES,
    }
    (manual / "annotations").mkdir(exist_ok=True)
    (manual / "annotations" / f"instances_{folder}.json").write_text(json.dumps(data))
    return pixels


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    train = _write_split(
        root,
        "train2017",
        "a.png",
        [
            {"segmentation": _square(6, 3, 12, 9), "category_id": 1, "iscrowd": 0},
            {"segmentation": _rle(CROWD), "category_id": 18, "iscrowd": 1},
        ],
        seed=0,
    )
    val = _write_split(
        root,
        "val2017",
        "b.png",
        [
            {"segmentation": _square(6, 2, 14, 10), "category_id": 18, "iscrowd": 0},
            {"segmentation": _square(12, 8, 16, 12), "category_id": 1, "iscrowd": 0},
        ],
        seed=1,
    )
    return root, train, val


def _load(tmp_path, root, crowd):
    return coco.coco_sources(
        str(tmp_path / "data"), manual_dir=str(root), resolution=RES, max_objects=4, crowd=crowd
    )


def test_keep_crowd_values_match_fixture(manual, tmp_path):
    root, train, _ = manual
    sources = _load(tmp_path, root, "keep")
    assert {k: len(v) for k, v in sources.items()} == {"train": 1, "validation": 1}
    example = sources["train"][0]
    np.testing.assert_array_equal(example["image"], train[:, 5:25])
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[3:10, 6:13] = 1  # Polygon (49 px, largest) first; PIL fills edges inclusively.
    expected[CROWD] = 2
    np.testing.assert_array_equal(example["segmentation"][..., 0], expected[:, 5:25])
    objects = example["objects"]
    assert objects["shape"].tolist() == [0, 1]  # person id 1 -> 0, dog id 18 -> 1.
    assert objects["category_id"].tolist() == [1, 18]
    assert objects["is_crowd"].tolist() == [False, True]
    assert objects["num_pixels"].tolist() == [49, 20]  # The crop cuts crowd column 25.
    assert (objects["color"] == -1).all() and not example["ignore"].any()


def test_drop_crowd_removes_it(manual, tmp_path):
    root, _, _ = manual
    example = _load(tmp_path, root, "drop")["train"][0]
    assert example["objects"]["shape"].tolist() == [0]
    assert example["segmentation"].max() == 1
    assert not example["segmentation"][..., 0][CROWD[:, 5:25]].any()


def test_overlaps_are_ignored(manual, tmp_path):
    root, _, val = manual
    example = _load(tmp_path, root, "drop")["validation"][0]
    np.testing.assert_array_equal(example["image"], val[:, 5:25])
    overlap = np.zeros((HEIGHT, WIDTH), bool)
    overlap[8:11, 12:15] = True
    np.testing.assert_array_equal(example["ignore"][..., 0], overlap[:, 5:25])
    assert not example["segmentation"][..., 0][overlap[:, 5:25]].any()
    assert example["objects"]["shape"].tolist() == [1, 0]


def test_rle_decoding_string_and_list():
    assert coco.decode_rle_string("32") == [3, 2]
    mask = coco.rle_to_mask({"size": [2, 3], "counts": [1, 2, 3]})
    np.testing.assert_array_equal(mask, [[False, True, False], [True, False, False]])


def test_json_without_annotations_is_a_clear_error(tmp_path):
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(DatasetError, match=r"lack the key\(s\) \['annotations'\]") as error:
        coco.load_annotations(str(path))
    assert str(path) in str(error.value)


def test_missing_annotations_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="see README section Datasets") as error:
        coco.coco_sources(str(tmp_path / "data"), manual_dir=str(tmp_path))
    assert str(tmp_path / "annotations" / "instances_train2017.json") in str(error.value)


def test_masks_can_be_finer_than_the_images(manual, tmp_path):
    root, _, val = manual
    sources = coco.coco_sources(
        str(tmp_path / "data"),
        manual_dir=str(root),
        resolution=RES,
        max_objects=4,
        mask_resolution=2 * RES,
    )
    example = sources["validation"][0]
    np.testing.assert_array_equal(example["image"], val[:, 5:25])  # Images as before.
    ids = np.zeros((HEIGHT, WIDTH), np.uint8)
    ids[2:11, 6:15] = 1  # The dog polygon (larger, id 1).
    ids[8:13, 12:17] = 2  # The person polygon.
    overlap = np.zeros((HEIGHT, WIDTH), bool)
    overlap[8:11, 12:15] = True
    ids[overlap] = 0
    # Short side 20 -> 40 doubles every pixel; the centre crop drops 10 of 60 columns a side.
    fine = np.repeat(np.repeat(ids, 2, 0), 2, 1)[:, 10:50]
    np.testing.assert_array_equal(example["segmentation"][..., 0], fine)
    fine_overlap = np.repeat(np.repeat(overlap, 2, 0), 2, 1)[:, 10:50]
    np.testing.assert_array_equal(example["ignore"][..., 0].astype(bool), fine_overlap)
