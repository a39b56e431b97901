"""Otsu binarisation of attention maps and the Otsu-IoU protocol of Baldassarre & Azizpour.

`otsu_threshold` reproduces `skimage.filters.threshold_otsu` for float maps:
the values of each map are binned into `num_bins` equal bins between the map's
minimum and maximum (edges computed as `numpy.histogram` computes them), the
threshold is the centre of the bin that maximises the between-class variance
of "this bin and below" vs "above", ties going to the lowest bin, and the
foreground is `value > threshold`. A constant map's threshold is its value, so
its mask is empty. Integer maps are binned like float maps (skimage gives each
integer its own bin instead). Two float32 effects can make a result differ
from skimage's: XLA may fuse the edges' multiply-add or approximate the
division, so an edge (and the threshold) can differ from numpy's in the last
bit, moving a value within that bit of an edge to the neighbouring bin; and
where two bins' between-class variances agree to ~1e-6 relative, skimage's
float32 running sums can pick the other one (here the class sums are exact
integers, so the choice is the exactly computed one up to final rounding).

`otsu_iou` / `otsu_dice` follow the paper's segmentation protocol: every slot
map is binarised with its own Otsu threshold (masks may overlap), GT objects
(id 0, the background, excluded; empty masks skipped) are Hungarian-matched
one-to-one to binarised slots maximising the total IoU, and the matched scores
are averaged over the GT objects of each image; objects left without a slot
score 0. An image without GT objects scores 0: flag such images with
`ocjax.metrics.has_objects(true_ids, ignore_background=True, valid=valid)` and
average with `mean_over_valid`.
"""

import math

import jax
import jax.numpy as jnp

from ocjax.matching import hungarian, permutation_matrix
from ocjax.metrics.segmentation import _check_num_ids, _mean_over_objects, iou_matrix


def _bin_edges(low: jax.Array, high: jax.Array, num_bins: int) -> jax.Array:
    """Edges `[..., num_bins + 1]` from `low` to `high` `[...]`, as `numpy.linspace` makes them."""
    step = (high - low) / num_bins
    edges = jnp.arange(num_bins + 1, dtype=low.dtype) * step[..., None] + low[..., None]
    return edges.at[..., -1].set(high)


def _bin_indices(values: jax.Array, edges: jax.Array, num_bins: int) -> jax.Array:
    """Bin `[..., n]` of values `[..., n]`: bin i holds edges[i] <= v < edges[i + 1] (last: <=)."""
    low, high = edges[..., :1], edges[..., -1:]
    estimate = jnp.floor((values - low) / (high - low) * num_bins).astype(jnp.int32)
    index = jnp.clip(estimate, 0, num_bins - 1)
    index = index - (values < jnp.take_along_axis(edges, index, axis=-1))
    above = values >= jnp.take_along_axis(edges, index + 1, axis=-1)
    return index + (above & (index < num_bins - 1))


def otsu_threshold(values: jax.Array, num_bins: int = 256) -> jax.Array:
    """Otsu threshold `[...]` of each map `[..., n]`, equal to `skimage.filters.threshold_otsu`.

    Values must be finite; `num_bins` is static. Binarise with `values >
    threshold`. Bin counts and class sums are exact int32; the between-class
    variance (in bin units, same argmax) is float32.
    """
    values = jnp.asarray(values)
    if values.ndim < 1 or values.shape[-1] < 1:
        raise ValueError(
            f"otsu_threshold expects maps of shape [..., n] with n >= 1, got {values.shape}; "
            "flatten each map's pixels into the last axis."
        )
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be a static int >= 2, got {num_bins!r}; e.g. 256.")
    if values.shape[-1] * (num_bins - 1) >= 2**31:
        raise ValueError(
            f"maps of {values.shape[-1]} pixels with {num_bins} bins overflow the int32 "
            "histogram sums; downsample the maps or use fewer bins."
        )
    values = values.astype(jnp.promote_types(values.dtype, jnp.float32))
    *batch_shape, n = values.shape
    flat = values.reshape(math.prod(batch_shape), n)
    low, high = flat.min(axis=-1), flat.max(axis=-1)
    constant = low == high
    edges = _bin_edges(low, jnp.where(constant, low + 1, high), num_bins)
    bins = _bin_indices(flat, edges, num_bins)
    segments = bins + num_bins * jnp.arange(flat.shape[0], dtype=jnp.int32)[:, None]
    counts = jax.ops.segment_sum(
        jnp.ones(flat.size, jnp.int32), segments.reshape(-1), num_segments=flat.shape[0] * num_bins
    ).reshape(-1, num_bins)
    index_sums = jnp.cumsum(counts * jnp.arange(num_bins, dtype=jnp.int32), axis=-1)
    count_below = jnp.cumsum(counts, axis=-1)[:, :-1]
    sum_below, sum_above = index_sums[:, :-1], index_sums[:, -1:] - index_sums[:, :-1]
    count_above = n - count_below
    mean_gap = sum_above / jnp.maximum(count_above, 1) - sum_below / jnp.maximum(count_below, 1)
    variance = count_below.astype(mean_gap.dtype) * count_above * jnp.square(mean_gap)
    best = jnp.argmax(variance, axis=-1)
    centres = (edges[:, :-1] + edges[:, 1:]) / 2.0
    threshold = jnp.take_along_axis(centres, best[:, None], axis=-1)[:, 0]
    return jnp.where(constant, low, threshold).reshape(batch_shape)


def otsu_masks(attention: jax.Array, num_bins: int = 256) -> jax.Array:
    """Bool masks `[batch, num_slots, h, w]`: each map of `[batch, num_slots, h, w]` > its Otsu."""
    attention = jnp.asarray(attention)
    if attention.ndim != 4:
        raise ValueError(
            f"attention must be [batch, num_slots, height, width], got shape {attention.shape}; "
            "reshape the per-slot maps to images first."
        )
    threshold = otsu_threshold(attention.reshape(*attention.shape[:2], -1), num_bins)
    return attention.astype(threshold.dtype) > threshold[..., None, None]


def _matched_ious(
    attention: jax.Array,
    true_ids: jax.Array,
    num_true: int,
    valid: jax.Array | None,
    num_bins: int,
) -> tuple[jax.Array, jax.Array]:
    """Matched IoU `[batch, num_true]` per GT object, bool `[batch, num_true]` objects scored."""
    _check_num_ids("num_true", num_true)
    attention, true_ids = jnp.asarray(attention), jnp.asarray(true_ids)
    if attention.ndim != 4 or true_ids.shape != attention.shape[:1] + attention.shape[2:]:
        raise ValueError(
            f"attention {attention.shape} must be [batch, num_slots, height, width] and true_ids "
            f"{true_ids.shape} [batch, height, width]; upsample the maps to the image size first."
        )
    if not jnp.issubdtype(true_ids.dtype, jnp.integer):
        raise ValueError(f"true_ids must hold integer ids, got dtype {true_ids.dtype}.")
    keep = jnp.ones(true_ids.shape, bool) if valid is None else jnp.asarray(valid, bool)
    if keep.shape != true_ids.shape:
        raise ValueError(
            f"valid {keep.shape} must be [batch, height, width] like true_ids {true_ids.shape}."
        )
    pred_masks = otsu_masks(attention, num_bins)
    true_masks = jnp.moveaxis(jax.nn.one_hot(true_ids, num_true, dtype=bool), -1, 1)
    true_masks = true_masks & keep[:, None]
    ious = iou_matrix(true_masks, pred_masks & keep[:, None])
    present = true_masks.any(axis=(2, 3)).at[:, 0].set(False)
    scored = jnp.where(present[:, :, None], ious, 0.0)
    assignment = hungarian(-scored)
    matched = jnp.sum(permutation_matrix(assignment, scored.shape[2]) * scored, axis=2)
    return matched, present


def otsu_iou(
    attention: jax.Array,
    true_ids: jax.Array,
    num_true: int,
    valid: jax.Array | None = None,
    num_bins: int = 256,
) -> jax.Array:
    """Otsu-IoU `[batch]` of slot maps `[batch, num_slots, h, w]` vs GT ids `[batch, h, w]`.

    `attention` must already be upsampled to the size of `true_ids`; ids lie in
    `[0, num_true)` (static), 0 is the background. Pixels where `valid` is False
    are dropped from both masks. See the module docstring for the protocol.
    """
    matched, present = _matched_ious(attention, true_ids, num_true, valid, num_bins)
    return _mean_over_objects(matched, present)


def otsu_dice(
    attention: jax.Array,
    true_ids: jax.Array,
    num_true: int,
    valid: jax.Array | None = None,
    num_bins: int = 256,
) -> jax.Array:
    """Otsu-Dice `[batch]`: as `otsu_iou`, scoring each IoU-matched pair by Dice = 2IoU/(1+IoU)."""
    matched, present = _matched_ious(attention, true_ids, num_true, valid, num_bins)
    return _mean_over_objects(2.0 * matched / (1.0 + matched), present)


def token_grid_ceiling(true_ids: jax.Array, num_true: int, grid: int) -> jax.Array:
    """Otsu-IoU `[batch]` of ideal slot maps that live on a `grid`×`grid` token grid.

    Each GT object's mask (ids `[batch, h, w]` in `[0, num_true)`, 0 the background) is
    averaged over the pixels of every token (the share of the token the object covers), then
    nearest-upsampled and scored with `otsu_iou`, one map per id. This is the best a model
    whose attention is per token can score under the protocol; `h` and `w` must be
    multiples of `grid`.
    """
    true_ids = jnp.asarray(true_ids)
    batch, height, width = true_ids.shape
    if height % grid or width % grid:
        raise ValueError(
            f"The {height}x{width} ids do not split into a {grid}x{grid} token grid; "
            "choose a grid that divides both sides."
        )
    fy, fx = height // grid, width // grid
    one_hot = jnp.moveaxis(jax.nn.one_hot(true_ids, num_true, dtype=jnp.float32), -1, 1)
    shares = one_hot.reshape(batch, num_true, grid, fy, grid, fx).mean(axis=(3, 5))
    # Upsampled as the evaluation upsamples attention (`objectives.attention_masks`).
    maps = jax.image.resize(shares, shares.shape[:2] + (height, width), "nearest")
    return otsu_iou(maps, true_ids, num_true)
