"""COCO builder reads a fixture in the official instances-JSON + image-folder layout, and
resizes, numbers instances and treats crowds as the DINOSAUR / SPOT releases do."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
import torch
from PIL import Image
from torchvision import transforms as T

from configs import coco_dinosaur, coco_spot
from ocjax.data import DatasetError, pipeline
from ocjax.data.builders import coco
from ocjax.data.builders.features import known_config

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


def _torchvision(image: np.ndarray, labels: np.ndarray, res: int, method: str):
    """The releases' resize and centre crop: image `[res, res, 3]` float64 in 0..255, labels.

    SPOT: `Resize(res, BILINEAR)` and `CenterCrop` on the PIL image. DINOSAUR (OCLF,
    torchvision 0.15, whose tensor resize did not antialias): `ToTensor`, `Resize(res,
    BICUBIC)` on the tensor, clamp to [0, 1], `CenterCrop`. Labels: OCLF's nearest-exact.
    """
    crop = T.CenterCrop(res)
    if method == "bilinear":
        resized = crop(T.Resize(res, T.InterpolationMode.BILINEAR)(Image.fromarray(image)))
        out = np.asarray(resized, np.float64)
    else:
        tensor = torch.from_numpy(image).permute(2, 0, 1).double() / 255
        tensor = T.Resize(res, T.InterpolationMode.BICUBIC, antialias=False)(tensor)
        out = crop(tensor.clamp(0, 1)).permute(1, 2, 0).numpy() * 255
    nearest = T.Resize(res, T.InterpolationMode.NEAREST_EXACT)(torch.from_numpy(labels)[None])
    return out, crop(nearest)[0].numpy()


@pytest.mark.parametrize("method", coco.RESIZE_METHODS)
@pytest.mark.parametrize("shape", [(30, 47), (46, 30), (37, 53)])
def test_resize_and_crop_equal_the_releases_torchvision(shape, method):
    # (30, 47) -> 20 x 31.33: torchvision truncates to 31 and rounds the crop offset 5.5 to 6.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (*shape, 3), np.uint8)
    labels = rng.integers(0, 40, shape, np.uint8)
    res = 20 if shape[0] != 37 else 36
    got, (got_labels,) = coco.resize_and_crop(image, [labels], res, method)
    want, want_labels = _torchvision(image, labels, res, method)
    assert got.dtype == np.uint8 and got.shape == (res, res, 3)
    # Stored as uint8: at most half a level from the release's float values.
    np.testing.assert_array_less(np.abs(got - want), 0.5 + 1e-9)
    np.testing.assert_array_equal(got_labels, want_labels)


def test_the_builder_resizes_as_its_option_says(manual, tmp_path):
    root, train, _ = manual
    names = set()
    for method in coco.RESIZE_METHODS:
        sources = coco.coco_sources(
            str(tmp_path / "data"),
            manual_dir=str(root),
            resolution=16,
            max_objects=4,
            crowd="keep",
            resize=method,
        )
        want, _ = _torchvision(train, np.zeros(train.shape[:2], np.uint8), 16, method)
        np.testing.assert_array_less(np.abs(sources["train"][0]["image"] - want), 0.5 + 1e-9)
        names.add(coco.CocoConfig.make(16, "keep", 4, resize=method).name)
    assert len(names) == 2  # Two caches, not one overwritten.
    with pytest.raises(ValueError, match="data.coco.resize is 'area'"):
        coco.CocoConfig.make(16, "keep", 4, resize="area")


def _grid_squares(count: int) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of `count` disjoint 2x2 squares in the crop's columns 5..24."""
    return [(6 + 4 * (i % 5), 1 + 4 * (i // 5)) for i in range(count)]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """25 equal instances an image: more than the 20 DINOSAUR's config used to score."""
    root = tmp_path_factory.mktemp("coco_crowded")
    annotations = [
        {"segmentation": _square(x, y, x + 1, y + 1), "category_id": 1, "iscrowd": 0}
        for x, y in _grid_squares(25)
    ]
    _write_split(root, "train2017", "many.png", annotations[:3], seed=2)
    _write_split(root, "val2017", "crowded.png", annotations, seed=3)
    return root


def test_every_instance_beyond_the_old_limit_is_scored(crowded, tmp_path):
    sources = coco.coco_sources(
        str(tmp_path / "data"), manual_dir=str(crowded), resolution=RES, max_objects=25
    )
    example = sources["validation"][0]
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    for i, (x, y) in enumerate(_grid_squares(25)):  # Equal areas: ids in file order.
        expected[y : y + 2, x : x + 2] = i + 1
    np.testing.assert_array_equal(example["segmentation"][..., 0], expected[:, 5:25])
    assert not example["ignore"].any()
    batch = pipeline.ScenePreprocess(max_objects=25, normalization="imagenet")(example)
    assert batch["present"].sum() == 25 and batch["pixel_valid"].all()


def test_more_instances_than_max_objects_stop_the_conversion_naming_the_image(crowded, tmp_path):
    with pytest.raises(DatasetError, match="data.max_objects to at least 25") as error:
        coco.coco_sources(
            str(tmp_path / "data"), manual_dir=str(crowded), resolution=RES, max_objects=20
        )
    assert "crowded.png" in str(error.value) and "instances_val2017.json" in str(error.value)
    assert not list((tmp_path / "data").rglob("*.array_record*"))  # Stopped before any split.
    # The builder on its own stops at that image too.
    config = coco.CocoConfig.make(RES, "drop", 20)
    builder = coco.CocoInstances(
        config=known_config(coco.CocoInstances, config),
        data_dir=str(tmp_path / "direct"),
        file_format="array_record",
    )
    with pytest.raises(DatasetError, match="crowded.png.*at least 25"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(crowded))
        )


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two id maps `[h, w]` split the pixels alike, whatever numbers they use."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("crowd", coco.CROWD_RULES)
def test_crowd_rules_equal_the_releases(crowd, tmp_path):
    root = tmp_path / "manual"
    person = np.zeros((HEIGHT, WIDTH), bool)
    person[3:10, 6:13] = True  # _square(6, 3, 12, 9), edges included.
    crowd_mask = np.zeros((HEIGHT, WIDTH), bool)
    crowd_mask[8:14, 10:20] = True  # Overlaps the person on rows 8-9, columns 10-12.
    annotations = [
        {"segmentation": _square(6, 3, 12, 9), "category_id": 1, "iscrowd": 0},
        {"segmentation": _rle(crowd_mask), "category_id": 1, "iscrowd": 1},
    ]
    _write_split(root, "train2017", "a.png", annotations, seed=0)
    _write_split(root, "val2017", "b.png", annotations, seed=1)
    example = coco.coco_sources(
        str(tmp_path / "data"), manual_dir=str(root), resolution=RES, max_objects=4, crowd=crowd
    )["validation"][0]
    if crowd == "keep":  # SPOT's COCO2017: every annotation numbered, overlaps ignored.
        masks = [person, crowd_mask]
    else:  # OCLF's val_nocrowd: the crowd annotation is not there.
        masks = [person]
    want = np.zeros((HEIGHT, WIDTH), np.uint8)
    for i, mask in enumerate(masks, 1):
        want[mask & (want == 0)] = i
    overlap = np.sum(masks, axis=0) > 1
    want[overlap] = 0
    got = example["segmentation"][..., 0]
    assert _same_partition(got, want[:, 5:25])
    np.testing.assert_array_equal(example["ignore"][..., 0].astype(bool), overlap[:, 5:25])
    is_crowd = example["objects"]["is_crowd"].tolist()
    assert is_crowd == ([True, False] if crowd == "keep" else [False])  # Crowd: 60 px > 49.


def test_configs_choose_their_releases_coco_protocol():
    dinosaur, spot = coco_dinosaur.get_config(), coco_spot.get_config("teacher")
    assert dinosaur.data.max_objects == spot.data.max_objects == coco.MAX_OBJECTS
    assert (dinosaur.data.coco.resize, dinosaur.data.coco.crowd) == ("bicubic", "drop")
    assert (spot.data.coco.resize, spot.data.coco.crowd) == ("bilinear", "keep")
    for config in (dinosaur, spot):  # The reader accepts both.
        options = config.data.coco
        coco.CocoConfig.make(224, options.crowd, config.data.max_objects, 320, options.resize)
