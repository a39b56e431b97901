"""CLEVR v1.0 builder reads a tiny fixture in the official layout, unpacked or zipped."""

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from ocjax.data import DatasetError
from ocjax.data.builders import clevr

HEIGHT, WIDTH, RES = 32, 48, 32  # CLEVR's 3:2 frame; short side 32 -> crop columns 8:40.


def _object(shape, color, material, size, x, y):
    """A scene-file object at 3D (x, y, 0.35) and pixel (x, y) coordinates."""
    return {
        "shape": shape,
        "color": color,
        "material": material,
        "size": size,
        "3d_coords": [x / 10, y / 10, 0.35],
        "pixel_coords": [x, y, 12.5],
        "rotation": 45.0,
    }


TRAIN = [
    [
        _object("cylinder", "purple", "metal", "large", 20, 10),
        _object("sphere", "gray", "rubber", "small", 5, 16),  # Left of the crop.
        _object("cube", "yellow", "metal", "small", 39, 31),
    ],
    [_object("cube", "cyan", "rubber", "large", 24, 16)] * 7,
]
VAL = [[_object("sphere", "brown", "rubber", "large", 30, 20)]]


def _write(root) -> dict[str, list[np.ndarray]]:
    """Writes `CLEVR_v1.0/` under `root`; returns each split's images."""
    rng = np.random.default_rng(0)
    images = {}
    for name, scenes in (("train", TRAIN), ("val", VAL)):
        (root / "CLEVR_v1.0" / "images" / name).mkdir(parents=True)
        records, images[name] = [], []
        for i, objects in enumerate(scenes):
            file_name = f"CLEVR_{name}_{i:06d}.png"
            pixels = rng.integers(0, 256, (HEIGHT, WIDTH, 4), np.uint8)  # CLEVR PNGs are RGBA.
            pixels[..., 3] = 255
            Image.fromarray(pixels).save(root / "CLEVR_v1.0" / "images" / name / file_name)
            images[name].append(pixels[..., :3])
            records.append({"image_index": i, "image_filename": file_name, "objects": objects})
        (root / "CLEVR_v1.0" / "scenes").mkdir(exist_ok=True)
        path = root / "CLEVR_v1.0" / "scenes" / f"CLEVR_{name}_scenes.json"
        path.write_text(json.dumps({"info": {}, "scenes": records}))
    return images


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    root = tmp_path_factory.mktemp("clevr")
    return root, _write(root)


def _load(tmp_path, root, **options):
    return clevr.clevr_sources(
        str(tmp_path / "data"), manual_dir=str(root), resolution=RES, **options
    )


def test_attributes_and_images_match_fixture(manual, tmp_path):
    root, images = manual
    sources = _load(tmp_path, root)
    assert {k: len(v) for k, v in sources.items()} == {"train": 2, "validation": 1}
    example = sources["train"][0]
    np.testing.assert_array_equal(example["image"], images["train"][0][:, 8:40])
    assert example["segmentation"].shape == (RES, RES, 1) and not example["segmentation"].any()
    assert not example["ignore"].any() and not example["has_masks"]
    objects = example["objects"]
    assert objects["shape"].tolist() == [2, 0, 1]  # cylinder, sphere, cube
    assert objects["color"].tolist() == [5, 0, 7]  # purple, gray, yellow
    assert objects["material"].tolist() == [1, 0, 1]
    assert objects["size"].tolist() == [1, 0, 0]
    assert objects["visible"].tolist() == [True, False, True]
    np.testing.assert_allclose(objects["position"][0], [2.0, 1.0, 0.35])
    np.testing.assert_allclose(objects["pixel_coords"][2], [39, 31, 12.5])
    assert objects["rotation"].tolist() == [45.0] * 3
    validation = sources["validation"][0]
    np.testing.assert_array_equal(validation["image"], images["val"][0][:, 8:40])
    assert validation["objects"]["color"].tolist() == [4]  # brown


def test_zip_gives_the_same_examples(manual, tmp_path):
    root, _ = manual
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "CLEVR_v1.0.zip", "w") as archive:
        for path in sorted((root / "CLEVR_v1.0").rglob("*")):
            archive.write(path, path.relative_to(root).as_posix())
    from_zip = _load(tmp_path / "z", zipped)["train"][0]
    from_dir = _load(tmp_path / "d", root)["train"][0]
    np.testing.assert_array_equal(from_zip["image"], from_dir["image"])
    for key, value in from_dir["objects"].items():
        np.testing.assert_array_equal(from_zip["objects"][key], value)


def test_clevr6_drops_scenes_with_more_objects(manual, tmp_path):
    root, _ = manual
    train = _load(tmp_path, root, clevr6=True, max_objects=6)["train"]
    assert len(train) == 1 and train[0]["index"] == 0


def test_too_few_max_objects_is_an_error(manual, tmp_path):
    with pytest.raises(ValueError, match="raise data.max_objects"):
        _load(tmp_path, manual[0], max_objects=6)


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match="README section Datasets") as error:
        _load(tmp_path, tmp_path)
    assert str(tmp_path / "CLEVR_v1.0") in str(error.value)


def test_missing_image_names_the_path(tmp_path):
    root = tmp_path / "manual"
    root.mkdir()
    _write(root)
    image = root / "CLEVR_v1.0" / "images" / "val" / "CLEVR_val_000000.png"
    image.unlink()
    with pytest.raises(DatasetError, match="README section Datasets") as error:
        _load(tmp_path, root)
    assert str(image) in str(error.value)
