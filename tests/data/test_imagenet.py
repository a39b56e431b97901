"""ImageNet reader on a fixture in the class-folder layout: labels and order as
torchvision's `ImageFolder`, pixels as its `Resize` + `CenterCrop`, layouts it cannot read
named."""

import numpy as np
import pytest
from PIL import Image
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from ocjax.data import DatasetError, load_sources
from ocjax.data.builders import imagenet

# Class folders as ILSVRC names them; sizes (h, w) of their images, portrait and landscape.
TRAIN = {"n02085620": [(30, 40), (40, 30), (24, 24)], "n01440764": [(36, 48), (50, 26)]}
VAL = {"n01440764": [(28, 44)], "n02085620": [(44, 28), (30, 30)]}


def _write(root, folders=None):
    """Random lossless images in `train/<wnid>/` and `val/<wnid>/` under `root`."""
    rng = np.random.default_rng(0)
    for split, classes in (folders or {"train": TRAIN, "val": VAL}).items():
        for wnid, sizes in classes.items():
            (root / split / wnid).mkdir(parents=True)
            for i, (h, w) in enumerate(sizes):
                # Smooth (a 3x3 random image upsampled), as photographs are for JPEG.
                coarse = Image.fromarray(rng.integers(0, 256, (3, 3, 3), np.uint8))
                coarse.resize((w, h), Image.BILINEAR).save(root / split / wnid / f"{wnid}_{i}.png")


def test_labels_order_and_pixels_follow_image_folder(tmp_path):
    _write(tmp_path / "manual")
    sources = imagenet.imagenet_sources(
        str(tmp_path / "data"), manual_dir=str(tmp_path / "manual"), resolution=16
    )
    assert {k: len(v) for k, v in sources.items()} == {"train": 5, "validation": 3}
    reference = T.Compose(
        [T.Resize(16, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(16)]
    )
    for split, folder in (("train", "train"), ("validation", "val")):
        expected = tv_datasets.ImageFolder(str(tmp_path / "manual" / folder), transform=reference)
        # Validation labels are the training folders' positions; here both hold both classes.
        assert expected.classes == sorted(TRAIN)
        for i, (image, label) in enumerate(expected):
            example = sources[split][i]
            assert int(example["label"]) == label
            path, _ = expected.samples[i]
            exact = imagenet.to_example(i, np.asarray(Image.open(path)), label, 16, "bilinear")
            np.testing.assert_array_equal(exact["image"], np.asarray(image))
            # Stored as JPEG (quality 95, chroma halved): a few levels off on 16x16 crops.
            diff = np.abs(example["image"].astype(int) - np.asarray(image, int))
            assert example["image"].shape == (16, 16, 3) and diff.mean() < 6, diff.mean()
            assert not example["segmentation"].any() and len(example["objects"]["shape"]) == 0


def test_images_per_class_keeps_the_first_of_each_class(tmp_path):
    _write(tmp_path / "manual")
    sources = imagenet.imagenet_sources(
        str(tmp_path / "data"),
        manual_dir=str(tmp_path / "manual"),
        resolution=8,
        images_per_class=1,
    )
    assert [int(sources["train"][i]["label"]) for i in range(len(sources["train"]))] == [0, 1]
    assert len(sources["validation"]) == 2


def test_the_registry_reads_it_with_its_options(tmp_path):
    _write(tmp_path / "manual")
    options = {"manual_dir": str(tmp_path / "manual"), "resolution": 8, "max_objects": 1}
    sources = load_sources("imagenet", str(tmp_path / "data"), options)
    assert len(sources["validation"]) == 3


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"train": TRAIN}, "val does not exist"),
        ({"train": TRAIN, "val": {"n09999999": [(8, 8)]}}, "train/ lacks: \\['n09999999'\\]"),
        ({"train": {}, "val": VAL}, "has no class folders"),
    ],
)
def test_layouts_it_cannot_read_are_named(tmp_path, layout, message):
    _write(tmp_path / "manual", layout)
    (tmp_path / "manual" / "train").mkdir(exist_ok=True)
    with pytest.raises(DatasetError, match=message):
        imagenet.read_index(str(tmp_path / "manual"))


def test_loose_validation_images_are_named(tmp_path):
    _write(tmp_path / "manual")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        tmp_path / "manual" / "val" / "ILSVRC2012_val_00000001.JPEG"
    )
    with pytest.raises(DatasetError, match="outside class folders.*valprep.sh"):
        imagenet.read_index(str(tmp_path / "manual"))
