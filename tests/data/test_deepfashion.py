"""DeepFashion segmentation reader on a fixture in the released layout."""

import json

import numpy as np
import pytest
from PIL import Image

from ocjax.data import DatasetError
from ocjax.data.builders import deepfashion as df


def _write(root, names_by_split, colours=None):
    folder = root / df.SUBDIR
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for split, names in names_by_split.items():
        (folder / f"DeepFashion_segmentation_{split}.json").write_text(
            json.dumps({"images": [{"file_name": n} for n in names]})
        )
        for name in names:
            label = rng.integers(0, 16, (30, 20)).astype(np.uint8)  # Portrait 30 x 20.
            labels[name] = label
            Image.fromarray(rng.integers(0, 256, (30, 20, 3), np.uint8)).save(folder / name)
            rgb = (colours if colours is not None else df.COLORS)[label].astype(np.uint8)
            Image.fromarray(rgb).save(folder / name.replace(".jpg", "_segment.png"))
    return labels


def test_labels_are_decoded_scaled_and_padded(tmp_path):
    names = {"train": ["a.jpg", "b.jpg"], "query": ["q.jpg"], "gallery": ["g.jpg"]}
    labels = _write(tmp_path / "manual", names)
    sources = df.deepfashion_sources(
        str(tmp_path / "data"), manual_dir=str(tmp_path / "manual"), resolution=15, max_objects=15
    )
    assert {k: len(v) for k, v in sources.items()} == {"train": 1, "validation": 1, "test": 2}
    example = sources["test"][1]  # gallery g.jpg: 30 x 20 -> 15 x 10, padded on the right.
    expected = labels["g.jpg"][1::2, 1::2]  # Nearest at pixel centres: source 2i + 1.
    got = example["segmentation"][..., 0]
    np.testing.assert_array_equal(got[:, :10], expected)
    assert (got[:, 10:] == 0).all() and not example["pixel_valid"][:, 10:].any()
    assert example["pixel_valid"][:, :10].all()
    np.testing.assert_array_equal(example["foreground"][..., 0] > 0, got > 0)
    present = np.bincount(expected.ravel(), minlength=16)[1:] > 0
    np.testing.assert_array_equal(example["objects"]["visible"], present)


def test_an_unknown_colour_names_the_file(tmp_path):
    colours = df.COLORS.copy()
    colours[3] = (1, 2, 3)
    _write(
        tmp_path / "manual",
        {"train": ["a.jpg", "b.jpg"], "query": ["q.jpg"], "gallery": []},
        colours,
    )
    with pytest.raises(DatasetError, match=r"_segment.png has the colour \(1, 2, 3\)"):
        df.deepfashion_sources(
            str(tmp_path / "data"),
            manual_dir=str(tmp_path / "manual"),
            resolution=15,
            max_objects=15,
        )


def test_missing_index_is_named(tmp_path):
    with pytest.raises(DatasetError, match="DeepFashion_segmentation_train.json does not exist"):
        df.deepfashion_sources(
            str(tmp_path), manual_dir=str(tmp_path), resolution=15, max_objects=15
        )
