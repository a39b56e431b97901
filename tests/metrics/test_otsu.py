"""Tests for ocjax.metrics.otsu against skimage and a brute-force numpy protocol."""

import itertools

import jax
import numpy as np
import pytest
from skimage.filters import threshold_otsu

from ocjax.metrics import has_objects
from ocjax.metrics.otsu import (
    otsu_dice,
    otsu_iou,
    otsu_masks,
    otsu_threshold,
    token_grid_ceiling,
)

JIT_THRESHOLD = jax.jit(otsu_threshold, static_argnames="num_bins")


def random_maps(rng: np.random.Generator, count: int, n: int) -> np.ndarray:
    """Float32 maps `[count, n]`: uniform, bimodal, heavy-tailed, few-level, softmax, constant."""
    maps = []
    for index in range(count):
        kind = index % 6
        if kind == 0:
            values = rng.random(n)
        elif kind == 1:
            values = np.where(rng.random(n) < 0.3, rng.normal(5, 0.5, n), rng.normal(0, 1, n))
        elif kind == 2:
            values = np.exp(3.0 * rng.normal(size=n))
        elif kind == 3:
            values = rng.integers(0, 6, n) / 5.0
        elif kind == 4:
            values = np.exp(rng.normal(size=n)) / np.exp(rng.normal(size=n)).sum()
        else:
            values = np.full(n, rng.normal())
        maps.append(values)
    return np.stack(maps).astype(np.float32)


@pytest.mark.parametrize("n, num_bins", [(1000, 256), (64, 16), (2, 256)])
def test_threshold_equals_skimage(n: int, num_bins: int) -> None:
    maps = random_maps(np.random.default_rng(n + num_bins), 36, n).reshape(3, 12, n)
    thresholds = np.asarray(JIT_THRESHOLD(maps, num_bins=num_bins))
    assert thresholds.shape == (3, 12)
    expected = np.array([threshold_otsu(m, nbins=num_bins) for m in maps.reshape(36, n)])
    np.testing.assert_allclose(thresholds.reshape(36), expected, rtol=1e-6)
    np.testing.assert_array_equal(maps > thresholds[..., None], maps > expected.reshape(3, 12, 1))
    constant = maps.min(axis=-1) == maps.max(axis=-1)
    assert constant.any()
    np.testing.assert_array_equal(thresholds[constant], maps[constant][:, 0])


def skimage_masks(attention: np.ndarray) -> np.ndarray:
    """Bool `[batch, slots, h, w]`: each map above its `skimage.filters.threshold_otsu`."""
    return np.stack([[a > threshold_otsu(a.reshape(-1)) for a in image] for image in attention])


def test_masks_use_each_maps_own_threshold_and_constant_maps_are_empty() -> None:
    attention = random_maps(np.random.default_rng(0), 12, 48).reshape(2, 6, 6, 8)
    masks = jax.jit(otsu_masks)(attention)
    assert masks.dtype == np.bool_
    np.testing.assert_array_equal(masks, skimage_masks(attention))
    assert not np.asarray(masks)[:, 5].any()


def brute_force_scores(
    pred_masks: np.ndarray, true_ids: np.ndarray, num_true: int, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean IoU and Dice `[batch]` of IoU-optimal matchings found by enumeration."""
    ious, dices = [], []
    for masks, ids, keep in zip(pred_masks, true_ids, valid):
        preds = [m & keep for m in masks]
        objects = [(ids == t) & keep for t in range(1, num_true) if ((ids == t) & keep).any()]
        if not objects:
            ious.append(0.0)
            dices.append(0.0)
            continue
        iou = np.array([[(o & p).sum() / max((o | p).sum(), 1) for p in preds] for o in objects])
        dice = np.array(
            [[2 * (o & p).sum() / max(o.sum() + p.sum(), 1) for p in preds] for o in objects]
        )
        if len(objects) <= len(preds):
            candidates = [
                (np.arange(len(objects)), list(cols))
                for cols in itertools.permutations(range(len(preds)), len(objects))
            ]
        else:
            candidates = [
                (list(rows), np.arange(len(preds)))
                for rows in itertools.permutations(range(len(objects)), len(preds))
            ]
        rows, cols = max(candidates, key=lambda pair: iou[pair[0], pair[1]].sum())
        ious.append(iou[rows, cols].sum() / len(objects))
        dices.append(dice[rows, cols].sum() / len(objects))
    return np.array(ious), np.array(dices)


def both_scores(
    attention: jax.Array, true_ids: jax.Array, num_true: int, valid: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """`otsu_iou` and `otsu_dice` `[batch]` in one call, for a single compilation."""
    return otsu_iou(attention, true_ids, num_true, valid), otsu_dice(
        attention, true_ids, num_true, valid
    )


@pytest.mark.parametrize("num_slots, num_true, masked", [(5, 4, False), (3, 6, True)])
def test_otsu_iou_and_dice_match_brute_force(num_slots: int, num_true: int, masked: bool) -> None:
    rng = np.random.default_rng(num_slots * 10 + num_true)
    batch, height, width = 5, 12, 10
    true_ids = rng.integers(0, num_true, size=(batch, height, width)).astype(np.int32)
    true_ids[0] = 0
    true_ids[1] = np.where(true_ids[1] == num_true - 1, 0, true_ids[1])
    one_hot = np.moveaxis(np.eye(num_true)[true_ids], -1, 1)[:, :num_slots]
    slot_maps = np.zeros((batch, num_slots, height, width))
    slot_maps[:, : one_hot.shape[1]] = one_hot
    attention = (slot_maps + 0.8 * rng.random(slot_maps.shape)).astype(np.float32)
    valid = rng.random(true_ids.shape) < 0.7 if masked else None
    scores = jax.jit(both_scores, static_argnames="num_true")
    iou, dice = scores(attention, true_ids, num_true, valid)
    keep = np.ones(true_ids.shape, bool) if valid is None else valid
    expected_iou, expected_dice = brute_force_scores(
        skimage_masks(attention), true_ids, num_true, keep
    )
    np.testing.assert_allclose(iou, expected_iou, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dice, expected_dice, rtol=1e-5, atol=1e-7)
    assert iou[0] == 0 and not has_objects(true_ids, ignore_background=True)[0]
    assert np.all(np.isfinite(iou)) and np.all(iou[1:] > 0)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="num_bins"):
        otsu_threshold(np.zeros((2, 5)), num_bins=1)
    with pytest.raises(ValueError, match=r"\[\.\.\., n\]"):
        otsu_threshold(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="attention"):
        otsu_masks(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="upsample"):
        otsu_iou(np.zeros((2, 3, 4, 4)), np.zeros((2, 8, 8), np.int32), num_true=3)
    with pytest.raises(ValueError, match="num_true"):
        otsu_iou(np.zeros((2, 3, 4, 4)), np.zeros((2, 4, 4), np.int32), num_true=0)


def test_token_grid_ceiling_scores_numpy_pooled_maps() -> None:
    rng = np.random.default_rng(3)
    true_ids = rng.integers(0, 4, size=(3, 12, 12)).astype(np.int32)
    pooled = np.moveaxis(np.eye(4)[true_ids], -1, 1).reshape(3, 4, 3, 4, 3, 4).mean(axis=(3, 5))
    maps = np.kron(pooled, np.ones((4, 4)))  # Each token's share, over its 4x4 pixels.
    expected, _ = brute_force_scores(
        skimage_masks(maps), true_ids, 4, np.ones(true_ids.shape, bool)
    )
    ceiling = token_grid_ceiling(true_ids, 4, grid=3)
    np.testing.assert_allclose(ceiling, expected, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(ceiling) < 1)  # Random ids do not follow the 4x4 tokens.
    blocks = np.kron(rng.integers(0, 4, size=(3, 3, 3)), np.ones((4, 4), np.int32))
    aligned = token_grid_ceiling(blocks, 4, grid=3)
    present = [(np.unique(b) > 0).any() for b in blocks]
    np.testing.assert_allclose(aligned, np.where(present, 1.0, 0.0))
    with pytest.raises(ValueError, match="do not split into a 5x5 token grid"):
        token_grid_ceiling(true_ids, 4, grid=5)
