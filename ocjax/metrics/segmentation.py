"""Object-discovery metrics over batched integer segmentations, all `jax.jit`-able.

Conventions shared by every metric:

* ``true_ids``: int ``[batch, *pixels]`` with ids in ``[0, num_true)``; id 0 is
  the background. ``pred_ids``: int ``[batch, *pixels]`` with ids in
  ``[0, num_pred)``. Ids outside these ranges belong to no segment (this cannot
  be checked under `jax.jit`).
* ``num_true`` / ``num_pred`` fix the one-hot sizes, so they must be static
  (``jax.jit(..., static_argnames=("num_true", "num_pred"))``).
* ``valid``: optional bool ``[batch, *pixels]``; pixels where it is False (e.g.
  unlabelled or overlapping pixels) are dropped from every computation.
* ``ignore_background``: for ARI, pixels with true id 0 are dropped (FG-ARI).
  For mBO / mIoU, GT object 0 is not scored, but background pixels stay in the
  predicted masks (a segment spilling onto the background loses IoU).
* Every metric returns one value per image, ``[batch]``, and never NaN.

Images without anything to score are flagged, not silently averaged in:

* ARI follows `sklearn.metrics.adjusted_rand_score` exactly, including its
  degenerate cases: when the two partitions of the counted pixels are identical
  (which covers "fewer than 2 pixels", "both partitions a single cluster" and
  "every pixel its own cluster in both") the score is 1.0. So an image with no
  foreground scores FG-ARI 1.0, as in SAVi.
* mBO and mIoU score 0.0 for an image without GT objects.
* ``has_objects`` / ``has_foreground`` flag the images with at least one
  counted pixel (for FG-ARI and default mBO / mIoU: a valid foreground pixel),
  and ``mean_over_valid(values, flags)`` averages over flagged images only (NaN
  if none is flagged). Build the flags with the metric's ``ignore_background``
  and ``valid``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from ocjax.matching import hungarian, permutation_matrix


def _check_num_ids(name: str, value: int) -> None:
    """Raise if a static id count is not a positive Python int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"{name} must be a positive int (the static number of ids), got {value!r}; "
            f"under jax.jit pass it through static_argnames=({name!r}, ...)."
        )


def _flat_ids(name: str, ids: jax.Array) -> jax.Array:
    """Check an integer id map `[batch, *pixels]` and flatten it to `[batch, pixels]`."""
    ids = jnp.asarray(ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {ids.dtype}; cast it to int32.")
    if ids.ndim < 2:
        raise ValueError(
            f"{name} must have shape [batch, *pixels], got shape {ids.shape}; "
            "add a leading batch axis."
        )
    return ids.reshape(ids.shape[0], math.prod(ids.shape[1:]))


def _flat_valid(valid: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
    """Check a pixel mask `[batch, *pixels]` (None: all valid); flatten to `[batch, pixels]`."""
    if valid is None:
        return jnp.ones((shape[0], math.prod(shape[1:])), dtype=bool)
    valid = jnp.asarray(valid)
    if valid.dtype != jnp.bool_:
        raise ValueError(
            f"valid must be a boolean mask, got dtype {valid.dtype}; pass e.g. `ids >= 0`."
        )
    if valid.shape != shape:
        raise ValueError(
            f"valid has shape {valid.shape} but the id maps have shape {shape}; "
            "give one flag per pixel."
        )
    return valid.reshape(shape[0], math.prod(shape[1:]))


def _flat_inputs(
    true_ids: jax.Array, pred_ids: jax.Array, valid: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Check and flatten true ids, predicted ids and valid mask to `[batch, pixels]` each."""
    true_shape, pred_shape = jnp.shape(true_ids), jnp.shape(pred_ids)
    true_flat, pred_flat = _flat_ids("true_ids", true_ids), _flat_ids("pred_ids", pred_ids)
    if true_shape != pred_shape:
        raise ValueError(
            f"true_ids has shape {true_shape} but pred_ids has shape {pred_shape}; "
            "both must be [batch, *pixels] over the same pixels."
        )
    return true_flat, pred_flat, _flat_valid(valid, true_shape)


def _counted_pixels(
    true_flat: jax.Array, valid_flat: jax.Array, ignore_background: bool
) -> jax.Array:
    """Bool `[batch, pixels]`: valid pixels, minus background pixels when `ignore_background`."""
    if ignore_background:
        return valid_flat & (true_flat != 0)
    return valid_flat


def ari_from_contingency(contingency: jax.Array) -> jax.Array:
    """ARI `[...]` from contingency tables `[..., num_true, num_pred]`, as sklearn does.

    Ordered pixel pairs are counted as in `sklearn.metrics.cluster.pair_confusion_matrix`,
    each as a sum of non-negative terms, so "no pair splits differently" (sklearn's
    1.0 special case) is detected exactly even in float32.
    """
    contingency = contingency.astype(jnp.float32)
    true_sizes = contingency.sum(axis=-1, keepdims=True)
    pred_sizes = contingency.sum(axis=-2, keepdims=True)
    num_pixels = contingency.sum(axis=(-2, -1), keepdims=True)
    same_both = jnp.sum(contingency * (contingency - 1), axis=(-2, -1))
    same_true_only = jnp.sum(contingency * (true_sizes - contingency), axis=(-2, -1))
    same_pred_only = jnp.sum(contingency * (pred_sizes - contingency), axis=(-2, -1))
    same_neither = jnp.sum(
        contingency * (num_pixels - true_sizes - pred_sizes + contingency), axis=(-2, -1)
    )
    identical = (same_true_only == 0) & (same_pred_only == 0)
    numerator = 2.0 * (same_both * same_neither - same_true_only * same_pred_only)
    denominator = (same_both + same_true_only) * (same_true_only + same_neither) + (
        same_both + same_pred_only
    ) * (same_pred_only + same_neither)
    return jnp.where(identical, 1.0, numerator / jnp.where(identical, 1.0, denominator))


def ari(
    true_ids: jax.Array,
    pred_ids: jax.Array,
    num_true: int,
    num_pred: int,
    ignore_background: bool = False,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Adjusted Rand Index `[batch]` between id maps `[batch, *pixels]`.

    Equals `sklearn.metrics.adjusted_rand_score` on each image's counted pixels
    (valid, and not background if `ignore_background`), including its 1.0 for
    identical partitions (e.g. fewer than 2 counted pixels). Flag images with
    `has_objects(true_ids, ignore_background, valid)`.
    """
    table = contingency(true_ids, pred_ids, num_true, num_pred, ignore_background, valid)
    return ari_from_contingency(table)


def contingency(
    true_ids: jax.Array,
    pred_ids: jax.Array,
    num_true: int,
    num_pred: int,
    ignore_background: bool = False,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Counts `[batch, num_true, num_pred]` of counted pixels per (true, predicted) id pair
    from id maps `[batch, *pixels]` (valid, and not background if `ignore_background`)."""
    _check_num_ids("num_true", num_true)
    _check_num_ids("num_pred", num_pred)
    true_flat, pred_flat, valid_flat = _flat_inputs(true_ids, pred_ids, valid)
    counted = _counted_pixels(true_flat, valid_flat, ignore_background)
    return _pair_counts(true_flat, pred_flat, counted, num_true, num_pred)


def _pair_counts(
    true_flat: jax.Array, pred_flat: jax.Array, keep: jax.Array, num_true: int, num_pred: int
) -> jax.Array:
    """Counts `[batch, num_true, num_pred]` of the kept pixels per (true, predicted) id pair of
    id maps `[batch, pixels]`, by a scatter-add: no `[batch, ids, pixels]` one-hot, so COCO's
    255 instance ids at 320x320 cost a table, not gigabytes."""
    true_flat, pred_flat = true_flat.astype(jnp.int32), pred_flat.astype(jnp.int32)
    in_range = (true_flat >= 0) & (true_flat < num_true) & (pred_flat >= 0) & (pred_flat < num_pred)
    pairs = true_flat * num_pred + pred_flat  # Ids out of range count nowhere (as one-hots).
    weights = (keep & in_range).astype(jnp.result_type(float))

    def count(pair: jax.Array, weight: jax.Array) -> jax.Array:
        return jnp.zeros(num_true * num_pred, weight.dtype).at[pair].add(weight, mode="drop")

    return jax.vmap(count)(pairs, weights).reshape(-1, num_true, num_pred)


def fg_ari(
    true_ids: jax.Array,
    pred_ids: jax.Array,
    num_true: int,
    num_pred: int,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Foreground ARI `[batch]`: `ari` over pixels with true id != 0; flag with `has_foreground`."""
    return ari(true_ids, pred_ids, num_true, num_pred, ignore_background=True, valid=valid)


def has_objects(
    true_ids: jax.Array, ignore_background: bool = True, valid: jax.Array | None = None
) -> jax.Array:
    """Bool `[batch]`: image has a counted pixel (valid; foreground if `ignore_background`)."""
    true_flat = _flat_ids("true_ids", true_ids)
    valid_flat = _flat_valid(valid, jnp.shape(true_ids))
    return jnp.any(_counted_pixels(true_flat, valid_flat, ignore_background), axis=1)


def has_foreground(true_ids: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Bool `[batch]`: the image has at least one valid pixel whose true id is not 0."""
    return has_objects(true_ids, ignore_background=True, valid=valid)


def mean_over_valid(values: jax.Array, valid_images: jax.Array) -> jax.Array:
    """Mean of `values` `[batch]` over images flagged in `valid_images` `[batch]` (NaN if none)."""
    values, valid_images = jnp.asarray(values), jnp.asarray(valid_images)
    if values.shape != valid_images.shape or values.ndim != 1:
        raise ValueError(
            f"values {values.shape} and valid_images {valid_images.shape} must both be [batch]; "
            "pass one flag per image, e.g. from has_foreground."
        )
    count = jnp.sum(valid_images)
    total = jnp.sum(jnp.where(valid_images, values, 0.0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def iou_matrix(true_masks: jax.Array, pred_masks: jax.Array) -> jax.Array:
    """IoU `[batch, num_true, num_pred]` of `[batch, num_true, *px]` vs `[batch, num_pred, *px]`.

    Masks are boolean or {0, 1}. Two empty masks have IoU 0.
    """
    true_masks, pred_masks = jnp.asarray(true_masks), jnp.asarray(pred_masks)
    true_outer = true_masks.shape[:1] + true_masks.shape[2:]
    if true_masks.ndim < 3 or true_outer != pred_masks.shape[:1] + pred_masks.shape[2:]:
        raise ValueError(
            f"true_masks {true_masks.shape} and pred_masks {pred_masks.shape} must be "
            "[batch, num_true, *pixels] and [batch, num_pred, *pixels] with the same batch "
            "and pixels."
        )
    num_pixels, float_dtype = math.prod(true_masks.shape[2:]), jnp.result_type(float)
    true_flat = true_masks.reshape(*true_masks.shape[:2], num_pixels).astype(float_dtype)
    pred_flat = pred_masks.reshape(*pred_masks.shape[:2], num_pixels).astype(float_dtype)
    intersection = jnp.einsum("btn,bpn->btp", true_flat, pred_flat)
    union = true_flat.sum(axis=2)[:, :, None] + pred_flat.sum(axis=2)[:, None, :] - intersection
    return jnp.where(union > 0, intersection / jnp.where(union > 0, union, 1.0), 0.0)


def _object_ious(
    true_ids: jax.Array,
    pred_ids: jax.Array,
    num_true: int,
    num_pred: int,
    ignore_background: bool,
    valid: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """IoU `[batch, num_true, num_pred]` on valid pixels, bool `[batch, num_true]` objects to score.

    A GT object is scored if its mask is non-empty and, with `ignore_background`,
    its id is not 0. Background pixels stay in the predicted masks.
    """
    _check_num_ids("num_true", num_true)
    _check_num_ids("num_pred", num_pred)
    true_flat, pred_flat, valid_flat = _flat_inputs(true_ids, pred_ids, valid)
    intersection = _pair_counts(true_flat, pred_flat, valid_flat, num_true, num_pred)
    true_sizes, pred_sizes = intersection.sum(axis=2), intersection.sum(axis=1)
    present = true_sizes > 0
    if ignore_background:
        present = present.at[:, 0].set(False)
    union = true_sizes[:, :, None] + pred_sizes[:, None, :] - intersection
    return jnp.where(union > 0, intersection / jnp.where(union > 0, union, 1.0), 0.0), present


def _mean_over_objects(values: jax.Array, present: jax.Array) -> jax.Array:
    """Mean `[batch]` of per-object `values` `[batch, num_true]` over `present` ones; 0 if none."""
    count = present.sum(axis=1)
    return jnp.where(present, values, 0.0).sum(axis=1) / jnp.maximum(count, 1)


def mbo(
    true_ids: jax.Array,
    pred_ids: jax.Array,
    num_true: int,
    num_pred: int,
    ignore_background: bool = True,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Mean best overlap `[batch]`: per GT object its best IoU over predicted segments, averaged.

    Ids are `[batch, *pixels]`; predicted segments may be reused. Images with no
    GT object score 0; flag them with `has_objects(true_ids, ignore_background,
    valid)`.
    """
    ious, present = _object_ious(true_ids, pred_ids, num_true, num_pred, ignore_background, valid)
    return _mean_over_objects(ious.max(axis=2), present)


def class_ids(true_ids: jax.Array, classes: jax.Array, present: jax.Array) -> jax.Array:
    """Semantic id map `[batch, *pixels]` from an instance id map: 0 for background, c + 1
    where an object of class c lies. `classes` / `present` `[batch, max_objects]` describe
    the instances with ids 1..max_objects (class < 0 or absent: background)."""
    batch = true_ids.shape[0]
    table = jnp.where(present & (classes >= 0), classes + 1, 0).astype(jnp.int32)
    table = jnp.concatenate([jnp.zeros((batch, 1), jnp.int32), table], axis=1)
    flat = jnp.take_along_axis(table, true_ids.reshape(batch, -1).astype(jnp.int32), axis=1)
    return flat.reshape(true_ids.shape)


def miou(
    true_ids: jax.Array,
    pred_ids: jax.Array,
    num_true: int,
    num_pred: int,
    ignore_background: bool = True,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Hungarian-matched mean IoU `[batch]` between id maps `[batch, *pixels]`.

    GT objects and predicted segments are matched one-to-one to maximise total
    IoU; the IoUs are averaged over GT objects, those left unmatched (more
    objects than predictions) counting as 0. Images with no GT object score 0;
    flag them with `has_objects(true_ids, ignore_background, valid)`.
    """
    ious, present = _object_ious(true_ids, pred_ids, num_true, num_pred, ignore_background, valid)
    scored_ious = jnp.where(present[:, :, None], ious, 0.0)
    assignment = hungarian(-scored_ious)
    matched = jnp.sum(permutation_matrix(assignment, num_pred) * scored_ious, axis=2)
    return _mean_over_objects(matched, present)


def ids_from_masks(masks: jax.Array) -> jax.Array:
    """Int32 ids `[batch, *pixels]`: argmax over the slot axis of `[batch, num_slots, *pixels]`."""
    masks = jnp.asarray(masks)
    if masks.ndim < 3:
        raise ValueError(
            f"masks must have shape [batch, num_slots, *pixels], got shape {masks.shape}; "
            "add the missing batch/slot axes."
        )
    return jnp.argmax(masks, axis=1).astype(jnp.int32)
