"""Pascal VOC 2012 builder reads a fixture in the official VOCdevkit layout, scores every
instance and resizes as the DINOSAUR / SPOT releases do."""

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms as T

from configs import coco_spot
from ocjax.data import DatasetError, load_sources
from ocjax.data.builders import voc

HEIGHT, WIDTH, RES = 20, 30, 20  # Short side 20 -> no resize; centre crop drops 5 columns.
PERSON, DOG = 15, 12  # VOC class ids.


def _palette_png(path, values: np.ndarray) -> None:
    """Writes `values` `[h, w]` as a palette PNG, as VOC stores its masks."""
    image = Image.new("P", (values.shape[1], values.shape[0]))
    image.putdata(values.ravel().tolist())
    image.putpalette([(i * 37) % 256 for i in range(768)])
    image.save(path)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Object and class index maps: a person (instance 1, 12 px) and a dog (instance 2,
    30 px, a void outline on its left edge), the void also in the class map."""
    objects = np.zeros((HEIGHT, WIDTH), np.uint8)
    classes = np.zeros((HEIGHT, WIDTH), np.uint8)
    objects[2:5, 8:12], classes[2:5, 8:12] = 1, PERSON
    objects[10:15, 14:20], classes[10:15, 14:20] = 2, DOG
    objects[10:15, 13], classes[10:15, 13] = voc.VOID, voc.VOID
    return objects, classes


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    voc2012 = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationObject", "SegmentationClass"):
        (voc2012 / folder).mkdir(parents=True)
    (voc2012 / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for image_id in ("2007_000001", "2007_000002", "2008_000003"):
        pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)
        Image.fromarray(pixels).save(voc2012 / "JPEGImages" / f"{image_id}.jpg")
    objects, classes = _scene()
    for image_id in ("2007_000001", "2007_000002"):  # 2008_000003: an SBD image, no masks.
        _palette_png(voc2012 / "SegmentationObject" / f"{image_id}.png", objects)
        _palette_png(voc2012 / "SegmentationClass" / f"{image_id}.png", classes)
    lists = voc2012 / "ImageSets" / "Segmentation"
    (lists / "val.txt").write_text("2007_000002\n")
    (lists / "train.txt").write_text("2007_000001\n")
    (lists / "trainaug.txt").write_text(  # DeepLab's layout of the list, also accepted.
        "/JPEGImages/2007_000001.jpg /SegmentationClassAug/2007_000001.png\n"
        "/JPEGImages/2008_000003.jpg /SegmentationClassAug/2008_000003.png\n"
    )
    return root


def _load(tmp_path, root, **options):
    options = {"resolution": RES, "max_objects": 4, **options}
    return voc.voc_sources(str(tmp_path / "data"), manual_dir=str(root), **options)


def test_instances_are_ordered_by_area_with_their_classes(manual, tmp_path):
    sources = _load(tmp_path, manual)
    assert {k: len(v) for k, v in sources.items()} == {"train": 2, "validation": 1}
    example = sources["validation"][0]
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[10:15, 14:20] = 1  # The dog is larger: id 1; its void outline is background.
    expected[2:5, 8:12] = 2
    np.testing.assert_array_equal(example["segmentation"][..., 0], expected[:, 5:25])
    objects = example["objects"]
    assert objects["category_id"].tolist() == [DOG, PERSON]
    assert objects["shape"].tolist() == [DOG - 1, PERSON - 1]
    assert objects["num_pixels"].tolist() == [30, 12]
    assert not example["ignore"].any() and (objects["color"] == -1).all()


def test_void_can_be_left_out_of_the_metrics(manual, tmp_path):
    example = _load(tmp_path, manual, void="ignore")["validation"][0]
    void = np.zeros((HEIGHT, WIDTH), bool)
    void[10:15, 13] = True
    np.testing.assert_array_equal(example["ignore"][..., 0].astype(bool), void[:, 5:25])


def test_more_instances_than_max_objects_is_an_error_naming_the_image(manual, tmp_path):
    with pytest.raises(DatasetError, match="2007_000001: 2 instances.*at least 2"):
        _load(tmp_path, manual, max_objects=1)


def test_every_instance_beyond_the_old_limit_is_scored():
    # 70 one-pixel instances: more than the 64 SPOT's VOC config used to score.
    objects = np.zeros((HEIGHT, WIDTH), np.uint8)
    classes = np.zeros((HEIGHT, WIDTH), np.uint8)
    rows, cols = np.divmod(np.arange(70), 10)
    objects[2 * rows, 2 * cols + 6] = np.arange(70) + 1
    classes[2 * rows, 2 * cols + 6] = DOG
    ids, ignore, categories = voc.instances(objects, classes, 254, "background")
    np.testing.assert_array_equal(ids, objects)  # Equal areas: ids by VOC's index.
    assert not ignore.any() and categories == [DOG] * 70
    with pytest.raises(ValueError, match="70 instances but data.max_objects is 64"):
        voc.instances(objects, classes, 64, "background")


def test_the_images_are_resized_as_the_option_says(manual, tmp_path):
    path = manual / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000002.jpg"
    with Image.open(path) as file:
        pixels = file.convert("RGB")
    for method, mode in (("bilinear", T.InterpolationMode.BILINEAR), ("bicubic", None)):
        example = _load(tmp_path, manual, resolution=16, resize=method)["validation"][0]
        if mode is None:  # DINOSAUR's release: the [0, 1] tensor, no antialiasing, clamped.
            tensor = T.functional.to_tensor(pixels).double()
            resized = T.Resize(16, T.InterpolationMode.BICUBIC, antialias=False)(tensor)
            want = T.CenterCrop(16)(resized.clamp(0, 1)).permute(1, 2, 0).numpy() * 255
        else:  # SPOT's `PascalVOC`: the PIL image.
            want = np.asarray(T.CenterCrop(16)(T.Resize(16, mode)(pixels)), np.float64)
        np.testing.assert_array_less(np.abs(example["image"] - want), 0.5 + 1e-9)
    with pytest.raises(ValueError, match="data.pascal_voc.resize is 'area'"):
        voc.VocConfig.make(224, 32, resize="area")


def test_spots_voc_config_scores_every_instance_with_its_resize():
    config = coco_spot.get_config("teacher+voc")
    assert config.data.max_objects == 254 and config.data.pascal_voc.resize == "bilinear"


def test_training_images_without_masks_score_nothing(manual, tmp_path):
    train = _load(tmp_path, manual)["train"]
    annotated, sbd = train[0], train[1]
    assert annotated["objects"]["category_id"].tolist() == [DOG, PERSON]
    assert len(sbd["objects"]["category_id"]) == 0
    assert not sbd["segmentation"].any() and sbd["ignore"].all()


def test_masks_finer_than_images_and_the_pipeline_reads_them(manual, tmp_path):
    sources = load_sources(
        "pascal_voc",
        str(tmp_path / "data"),
        {
            "manual_dir": str(manual),
            "resolution": RES,
            "max_objects": 4,
            "train_list": "train",
            "mask_resolution": 2 * RES,
        },
    )
    assert len(sources["train"]) == 1
    example = sources["validation"][0]
    assert example["image"].shape == (RES, RES, 3)
    ids = np.zeros((HEIGHT, WIDTH), np.uint8)
    ids[10:15, 14:20], ids[2:5, 8:12] = 1, 2
    fine = np.repeat(np.repeat(ids, 2, 0), 2, 1)[:, 10:50]  # Short side 40, crop 10 a side.
    np.testing.assert_array_equal(example["segmentation"][..., 0], fine)


def test_missing_trainaug_list_says_what_it_is(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="train_list='train'") as error:
        voc.voc_sources(str(tmp_path / "data"), manual_dir=str(root))
    assert "trainaug.txt" in str(error.value) and "SBD" in str(error.value)


def test_missing_archive_and_bad_options_are_named(tmp_path):
    with pytest.raises(DatasetError, match="VOCtrainval_11-May-2012.tar") as error:
        voc.voc_sources(str(tmp_path / "data"), manual_dir=str(tmp_path))
    assert str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages") in str(error.value)
    with pytest.raises(ValueError, match="data.pascal_voc.void"):
        voc.VocConfig.make(224, 32, void="skip")
    with pytest.raises(ValueError, match="data.pascal_voc.train_list"):
        voc.VocConfig.make(224, 32, train_list="all")


def test_a_mask_that_is_not_a_palette_png_is_named(tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(DatasetError, match="not a VOC palette PNG") as error:
        voc.read_palette_png(str(path))
    assert str(path) in str(error.value)
