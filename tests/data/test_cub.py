"""CUB-200-2011 reader on a fixture in the official file layout."""

import numpy as np
import pytest
from PIL import Image

from ocjax.data import DatasetError
from ocjax.data.builders import cub

# Three birds: ids 1, 2 train, 3 test; images 40x60 (h x w).
BOXES = {1: (10, 5, 30, 20), 2: (0, 0, 60, 40), 3: (20, 10, 20, 20)}


def _write(root, boxes=BOXES):
    base = root / "CUB_200_2011"
    (base / "images" / "001.Bird").mkdir(parents=True)
    (base / "parts").mkdir()
    (root / "segmentations" / "001.Bird").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = {"images": [], "split": [], "boxes": [], "parts": []}
    for i, box in boxes.items():
        name = f"001.Bird/bird_{i}.png"  # Lossless, so the fixture's pixels are exact.
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), np.uint8)).save(base / "images" / name)
        mask = np.zeros((40, 60), np.uint8)
        mask[10:30, 15:45] = 255
        Image.fromarray(mask).save(root / "segmentations" / name)
        lines["images"].append(f"{i} {name}")
        lines["split"].append(f"{i} {1 if i < 3 else 0}")
        lines["boxes"].append(f"{i} " + " ".join(str(v) for v in box))
        for k in range(1, 16):  # Keypoint k at (x, y) = (box x + k, box y + 1); odd k visible.
            lines["parts"].append(f"{i} {k} {box[0] + k} {box[1] + 1} {k % 2}")
    (base / "images.txt").write_text("\n".join(lines["images"]))
    (base / "train_test_split.txt").write_text("\n".join(lines["split"]))
    (base / "bounding_boxes.txt").write_text("\n".join(lines["boxes"]))
    (base / "parts" / "part_locs.txt").write_text("\n".join(lines["parts"]))


def test_birds_are_cropped_with_keypoint_labels_and_foreground(tmp_path):
    _write(tmp_path / "manual")
    sources = cub.cub_sources(
        str(tmp_path / "data"), manual_dir=str(tmp_path / "manual"), resolution=20, max_objects=15
    )
    assert {k: len(v) for k, v in sources.items()} == {"train": 1, "validation": 1, "test": 1}
    example = sources["test"][0]  # Bird 3: box x 20, y 10, 20 x 20 -> crop [10:30, 20:40].
    original = np.asarray(Image.open(tmp_path / "manual/CUB_200_2011/images/001.Bird/bird_3.png"))
    expected = np.asarray(Image.fromarray(original[10:30, 20:40]).resize((20, 20), Image.BILINEAR))
    np.testing.assert_array_equal(example["image"], expected)
    fg = np.zeros((40, 60), bool)
    fg[10:30, 15:45] = True
    np.testing.assert_array_equal(example["foreground"][..., 0] > 0, fg[10:30, 20:40])
    # Visible keypoints (odd k) at (x, y) = (20 + k, 11): crop pixel (row 1, col k).
    labels = example["segmentation"][..., 0]
    valid = example["pixel_valid"]
    for k in range(1, 16):
        assert (labels[1, k] == k) == bool(k % 2) and valid[1, k] == bool(k % 2)
    assert valid.sum() == 8 and (labels[~valid] == 0).all()
    assert example["objects"]["visible"].tolist() == [bool(k % 2) for k in range(1, 16)]


def test_missing_files_and_too_few_slots_are_named(tmp_path):
    with pytest.raises(DatasetError, match="images.txt does not exist"):
        cub.cub_sources(str(tmp_path), manual_dir=str(tmp_path), resolution=20, max_objects=15)
    with pytest.raises(ValueError, match="15 keypoints"):
        cub.cub_sources(str(tmp_path), manual_dir=str(tmp_path), resolution=20, max_objects=6)
