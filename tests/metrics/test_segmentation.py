"""Tests for ocjax.metrics.segmentation against sklearn and brute-force numpy references."""

import itertools

import jax
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from ocjax.metrics import (
    ari,
    class_ids,
    fg_ari,
    has_foreground,
    has_objects,
    ids_from_masks,
    iou_matrix,
    mbo,
    mean_over_valid,
    miou,
)

STATIC = ("num_true", "num_pred", "ignore_background")
jit_ari = jax.jit(ari, static_argnames=STATIC)
jit_mbo = jax.jit(mbo, static_argnames=STATIC)
jit_miou = jax.jit(miou, static_argnames=STATIC)

CASES = [  # (shape [batch, *pixels], num_true, num_pred)
    ((3, 6, 7), 4, 5),
    ((2, 16, 16), 6, 3),
    ((4, 9), 2, 2),
    ((2, 3, 4, 5), 5, 4),
    ((3, 8, 8), 1, 3),
]


def random_segmentations(
    rng: np.random.Generator, shape: tuple[int, ...], num_true: int, num_pred: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True ids (some images use only a few ids), correlated predictions, random valid mask."""
    used_ids = rng.integers(1, num_true + 1, size=(shape[0],) + (1,) * (len(shape) - 1))
    true_ids = rng.integers(0, num_true, size=shape) % used_ids
    relabel = rng.integers(0, num_pred, size=num_true)
    noise = rng.integers(0, num_pred, size=shape)
    pred_ids = np.where(rng.random(shape) < 0.7, relabel[true_ids], noise)
    valid = rng.random(shape) < 0.8
    return true_ids, pred_ids, valid


def counted(true_ids: np.ndarray, valid: np.ndarray, ignore_background: bool) -> np.ndarray:
    """Numpy reference of the pixels a metric counts."""
    return valid & (true_ids != 0) if ignore_background else valid


def reference_ari(true_ids, pred_ids, ignore_background, valid) -> np.ndarray:
    """Per-image sklearn ARI over the counted pixels."""
    keep = counted(true_ids, valid, ignore_background)
    return np.array([adjusted_rand_score(t[k], p[k]) for t, p, k in zip(true_ids, pred_ids, keep)])


def reference_ious(
    t: np.ndarray, p: np.ndarray, k: np.ndarray, num_true: int, num_pred: int
) -> np.ndarray:
    """Brute-force IoU `[num_true, num_pred]` of one image on valid pixels `k` (empty union: 0)."""
    ious = np.zeros((num_true, num_pred))
    for i in range(num_true):
        for j in range(num_pred):
            union = np.sum(((t == i) | (p == j)) & k)
            ious[i, j] = np.sum((t == i) & (p == j) & k) / union if union else 0.0
    return ious


def reference_objects(
    t: np.ndarray, k: np.ndarray, num_true: int, ignore_background: bool
) -> list[int]:
    """GT ids present on valid pixels, background excluded if asked."""
    first = 1 if ignore_background else 0
    return [i for i in range(first, num_true) if np.any((t == i) & k)]


def reference_mbo(true_ids, pred_ids, num_true, num_pred, ignore_background, valid) -> np.ndarray:
    """Per-image mean over present GT objects of the best IoU (0 without objects)."""
    values = []
    for t, p, k in zip(true_ids, pred_ids, valid):
        ious = reference_ious(t, p, k, num_true, num_pred)
        objects = reference_objects(t, k, num_true, ignore_background)
        values.append(np.mean([ious[i].max() for i in objects]) if objects else 0.0)
    return np.array(values)


def reference_miou(true_ids, pred_ids, num_true, num_pred, ignore_background, valid) -> np.ndarray:
    """Per-image best one-to-one matched IoU sum over all permutations / number of GT objects."""
    values = []
    for t, p, k in zip(true_ids, pred_ids, valid):
        ious = reference_ious(t, p, k, num_true, num_pred)
        objects = reference_objects(t, k, num_true, ignore_background)
        if not objects:
            values.append(0.0)
            continue
        if len(objects) <= num_pred:
            column_orders = itertools.permutations(range(num_pred), len(objects))
            pairs = (zip(objects, cols) for cols in column_orders)
        else:
            row_orders = itertools.permutations(objects, num_pred)
            pairs = (zip(rows, range(num_pred)) for rows in row_orders)
        best = max(sum(ious[i, j] for i, j in matching) for matching in pairs)
        values.append(best / len(objects))
    return np.array(values)


@pytest.mark.parametrize("shape, num_true, num_pred", CASES)
@pytest.mark.parametrize("ignore_background", [False, True])
def test_ari_matches_sklearn(shape, num_true, num_pred, ignore_background) -> None:
    rng = np.random.default_rng(sum(shape) + num_true)
    true_ids, pred_ids, valid = random_segmentations(rng, shape, num_true, num_pred)
    got = jit_ari(true_ids, pred_ids, num_true, num_pred, ignore_background, valid=valid)
    expected = reference_ari(true_ids, pred_ids, ignore_background, valid)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ari_on_large_uncorrelated_images_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    true_ids, pred_ids = rng.integers(0, 10, (2, 128, 128)), rng.integers(0, 7, (2, 128, 128))
    expected = reference_ari(true_ids, pred_ids, False, np.ones(true_ids.shape, bool))
    np.testing.assert_allclose(jit_ari(true_ids, pred_ids, 10, 7), expected, atol=1e-6)


def degenerate_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Named (true_ids, pred_ids) pairs of shape [1, 12] hitting sklearn's special cases."""
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 4, (1, 12))
    return [
        ("single object, one segment", np.ones((1, 12), int), np.full((1, 12), 2)),
        ("single object, split", np.ones((1, 12), int), ids),
        ("all background", np.zeros((1, 12), int), ids),
        ("identical", ids, ids),
        ("label permutation", ids, np.array([2, 3, 0, 1])[ids]),
        ("every pixel its own id", np.arange(12)[None], rng.permutation(12)[None]),
        ("one pixel", ids[:, :1], ids[:, 1:2]),
    ]


@pytest.mark.parametrize("ignore_background", [False, True])
@pytest.mark.parametrize("name, true_ids, pred_ids", degenerate_cases())
def test_ari_degenerate_cases_match_sklearn(name, true_ids, pred_ids, ignore_background) -> None:
    valid = np.ones(true_ids.shape, bool)
    got = jit_ari(true_ids, pred_ids, 12, 12, ignore_background)
    expected = reference_ari(true_ids, pred_ids, ignore_background, valid)
    assert np.all(np.isfinite(got)), name
    np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=name)


def test_permuted_labels_give_ari_one() -> None:
    true_ids = np.random.default_rng(5).integers(0, 6, (3, 8, 8))
    pred_ids = np.random.default_rng(6).permutation(6)[true_ids]
    np.testing.assert_allclose(jit_ari(true_ids, pred_ids, 6, 6, ignore_background=False), 1.0)
    np.testing.assert_allclose(jit_ari(true_ids, pred_ids, 6, 6, ignore_background=True), 1.0)


def test_images_without_foreground_are_flagged_and_skipped() -> None:
    rng = np.random.default_rng(7)
    true_ids = rng.integers(0, 3, (3, 6, 6))
    true_ids[1] = 0
    valid = np.ones(true_ids.shape, bool)
    valid[2] = true_ids[2] == 0
    pred_ids = rng.integers(0, 3, (3, 6, 6))
    scores = jit_ari(true_ids, pred_ids, 3, 3, ignore_background=True, valid=valid)
    flags = has_foreground(true_ids, valid=valid)
    np.testing.assert_array_equal(flags, [True, False, False])
    np.testing.assert_allclose(scores[1:], 1.0)
    np.testing.assert_allclose(mean_over_valid(scores, flags), scores[0])
    np.testing.assert_array_equal(has_objects(true_ids, ignore_background=False), [True] * 3)
    for metric in (jit_mbo, jit_miou):
        values = metric(true_ids, pred_ids, 3, 3, ignore_background=True, valid=valid)
        np.testing.assert_allclose(values[1:], 0.0)
        np.testing.assert_allclose(mean_over_valid(values, flags), values[0])
    assert np.isnan(mean_over_valid(scores, np.zeros(3, bool)))


def test_iou_matrix_matches_brute_force_and_empty_masks_give_zero() -> None:
    rng = np.random.default_rng(8)
    true_masks, pred_masks = rng.random((2, 3, 5, 6)) < 0.4, rng.random((2, 4, 5, 6)) < 0.3
    true_masks[0, 1] = False
    pred_masks[0, 2] = False
    got = np.asarray(iou_matrix(true_masks, pred_masks))
    for b, i, j in itertools.product(range(2), range(3), range(4)):
        union = np.sum(true_masks[b, i] | pred_masks[b, j])
        expected = np.sum(true_masks[b, i] & pred_masks[b, j]) / union if union else 0.0
        np.testing.assert_allclose(got[b, i, j], expected, atol=1e-6)
    assert got[0, 1, 2] == 0.0


@pytest.mark.parametrize("shape, num_true, num_pred", CASES[:3] + [((3, 5, 5), 5, 2)])
@pytest.mark.parametrize("ignore_background", [False, True])
def test_mbo_and_miou_match_brute_force(shape, num_true, num_pred, ignore_background) -> None:
    rng = np.random.default_rng(sum(shape) * num_pred)
    true_ids, pred_ids, valid = random_segmentations(rng, shape, num_true, num_pred)
    true_ids[0] = 0  # an image without foreground objects
    args = (true_ids, pred_ids, num_true, num_pred, ignore_background)
    np.testing.assert_allclose(jit_mbo(*args, valid=valid), reference_mbo(*args, valid), atol=1e-6)
    expected_miou = reference_miou(*args, valid)
    np.testing.assert_allclose(jit_miou(*args, valid=valid), expected_miou, atol=1e-6)


def test_ids_from_masks_is_argmax_over_slots() -> None:
    masks = np.random.default_rng(9).random((2, 4, 3, 5))
    np.testing.assert_array_equal(ids_from_masks(masks), np.argmax(masks, axis=1))


def test_metrics_are_jittable_without_valid_mask() -> None:
    true_ids, pred_ids, _ = random_segmentations(np.random.default_rng(10), (2, 6, 6), 4, 3)
    all_valid = np.ones(true_ids.shape, bool)
    args = (true_ids, pred_ids, 4, 3, True)
    expected_fg_ari = reference_ari(true_ids, pred_ids, True, all_valid)
    np.testing.assert_allclose(jit_ari(*args), expected_fg_ari, atol=1e-6)
    np.testing.assert_allclose(jit_mbo(*args), reference_mbo(*args, all_valid), atol=1e-6)
    np.testing.assert_allclose(jit_miou(*args), reference_miou(*args, all_valid), atol=1e-6)
    jit_fg_ari = jax.jit(fg_ari, static_argnames=("num_true", "num_pred"))
    np.testing.assert_allclose(jit_fg_ari(true_ids, pred_ids, 4, 3), expected_fg_ari, atol=1e-6)


def test_helpers_are_jittable() -> None:
    true_ids, _, valid = random_segmentations(np.random.default_rng(11), (2, 6, 6), 4, 3)
    flags = jax.jit(has_objects, static_argnames="ignore_background")(true_ids, True, valid)
    np.testing.assert_array_equal(flags, np.any(valid & (true_ids != 0), axis=(1, 2)))
    np.testing.assert_array_equal(jax.jit(has_foreground)(true_ids, valid), flags)
    mean = jax.jit(mean_over_valid)(np.array([0.5, 2.0]), np.array([True, False]))
    np.testing.assert_allclose(mean, 0.5)
    masks = np.random.default_rng(12).random((2, 3, 6, 6))
    np.testing.assert_array_equal(jax.jit(ids_from_masks)(masks), np.argmax(masks, axis=1))
    true_masks, pred_masks = masks[:, :, None] > 0.5, masks[:, None] > 0.2
    intersection = np.sum(true_masks & pred_masks, axis=(3, 4))
    expected_ious = intersection / np.sum(true_masks | pred_masks, axis=(3, 4))
    got = jax.jit(iou_matrix)(masks > 0.5, masks > 0.2)
    np.testing.assert_allclose(got, expected_ious, atol=1e-6)


def test_bad_inputs_raise() -> None:
    ids = np.zeros((2, 4), int)
    with pytest.raises(ValueError, match="integer"):
        ari(ids.astype(float), ids, 2, 2)
    with pytest.raises(ValueError, match="same pixels"):
        ari(ids, ids[:, :3], 2, 2)
    with pytest.raises(ValueError, match="batch"):
        mbo(ids[0], ids[0], 2, 2)
    with pytest.raises(ValueError, match="boolean"):
        miou(ids, ids, 2, 2, valid=ids)
    with pytest.raises(ValueError, match="one flag per pixel"):
        ari(ids, ids, 2, 2, valid=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="num_pred"):
        ari(ids, ids, 2, 0)
    with pytest.raises(ValueError, match="static_argnames"):
        jax.jit(ari)(ids, ids, 2, 2)
    with pytest.raises(ValueError, match="same batch and pixels"):
        iou_matrix(np.zeros((2, 3, 4), bool), np.zeros((2, 3, 5), bool))
    with pytest.raises(ValueError, match="one flag per image"):
        mean_over_valid(np.zeros(3), np.zeros(2, bool))
    with pytest.raises(ValueError, match="num_slots"):
        ids_from_masks(np.zeros((2, 3)))


def test_class_mbo_equals_brute_force_over_semantic_masks():
    rng = np.random.default_rng(7)
    batch, max_objects, num_classes, num_pred = 4, 6, 5, 4
    true_ids = rng.integers(0, max_objects + 1, size=(batch, 9, 10))
    classes = rng.integers(-1, num_classes, size=(batch, max_objects))  # -1: no class.
    present = rng.random((batch, max_objects)) < 0.8
    pred_ids = rng.integers(0, num_pred, size=(batch, 9, 10))
    valid = rng.random((batch, 9, 10)) < 0.9
    semantic = np.asarray(class_ids(true_ids, classes, present))
    got = np.asarray(mbo(semantic, pred_ids, num_classes + 1, num_pred, valid=valid))
    for b in range(batch):
        # Brute force: the union of each class's present instances, then best IoU per class.
        best = []
        for c in range(num_classes):
            ids = [i + 1 for i in range(max_objects) if present[b, i] and classes[b, i] == c]
            gt = np.isin(true_ids[b], ids) & valid[b]
            if not gt.any():
                continue
            ious = []
            for p in range(num_pred):
                pred = (pred_ids[b] == p) & valid[b]
                ious.append((gt & pred).sum() / (gt | pred).sum())
            best.append(max(ious))
        assert got[b] == pytest.approx(np.mean(best) if best else 0.0, abs=1e-6)
