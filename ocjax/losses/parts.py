"""The four losses of unsupervised part discovery (Choudhury et al., NeurIPS 2021).

Masks `M [b, k, h, w]` are the segmenter's soft part masks (softmax over the k parts) on
the foreground; `fg [b, h, w]` (1 on the object, 0 elsewhere) restricts every loss to the
object's pixels, as the paper trains on foreground pixels only. Each loss is averaged over
images and counted pixels so that its weight in the config does not depend on the image
size.

* `feature_loss` (L_f): a part's pixels have the features of its descriptor
  `z_k = sum_u M_ku phi_u / sum_u M_ku` (phi: a frozen extractor's features).
* `contrastive_loss` (L_c): descriptors of the same part in different images attract;
  descriptors of different parts, in the same or other images, repel (InfoNCE, temperature).
* `visual_consistency_loss` (L_v): a part's pixels have its mean colour.
* `equivariance_loss` (L_e): KL both ways, per pixel, between the masks of a transformed
  image and the transformed masks of the image, the latter a fixed target (no gradient).
"""

import jax
import jax.numpy as jnp

EPS = 1e-8


def _weights(masks: jax.Array, fg: jax.Array | None) -> jax.Array:
    """`masks [b, k, h, w]` restricted to the foreground."""
    return masks if fg is None else masks * fg[:, None].astype(masks.dtype)


def _count(masks: jax.Array, fg: jax.Array | None) -> jax.Array:
    """Counted pixels (foreground, or all) summed over the batch, at least 1."""
    n = masks.shape[2] * masks.shape[3] * masks.shape[0] if fg is None else jnp.sum(fg)
    return jnp.maximum(n, 1.0)


def part_descriptors(
    masks: jax.Array, features: jax.Array, fg: jax.Array | None = None
) -> jax.Array:
    """Mask-weighted mean features `z [b, k, c]` of features `[b, h, w, c]`."""
    w = _weights(masks, fg)
    total = jnp.einsum("bkhw,bhwc->bkc", w, features)
    return total / (jnp.sum(w, axis=(2, 3))[..., None] + EPS)


def _within_part_spread(masks: jax.Array, values: jax.Array, fg: jax.Array | None) -> jax.Array:
    """Mean over counted pixels of `sum_k M_ku ||mean_k - v_u||^2` for values `[b, h, w, c]`."""
    w = _weights(masks, fg)
    means = part_descriptors(masks, values, fg)  # [b, k, c]
    diff = values[:, None] - means[:, :, None, None, :]  # [b, k, h, w, c]
    return jnp.sum(w * jnp.sum(diff**2, axis=-1)) / _count(masks, fg)


def feature_loss(masks: jax.Array, features: jax.Array, fg: jax.Array | None = None) -> jax.Array:
    """L_f: spread of the frozen features `[b, h, w, c]` around their part descriptors."""
    return _within_part_spread(masks, features, fg)


def visual_consistency_loss(
    masks: jax.Array, images: jax.Array, fg: jax.Array | None = None
) -> jax.Array:
    """L_v: spread of the pixel colours `[b, h, w, 3]` around their part's mean colour."""
    return _within_part_spread(masks, images, fg)


def contrastive_loss(z: jax.Array, temperature: float) -> jax.Array:
    """L_c on unit-normalised part descriptors `z [b, k, c]` of a batch of images.

    Part k of image n is pulled towards part k of every other image i (the positive
    `z_k^n . z_k^i / tau`) and pushed from every other part j != k of every image, its own
    included (the negatives `z_k^n . z_j^m / tau`). Mean over n, k and i != n of
    `-log(exp(pos) / (exp(pos) + sum exp(neg)))`: the expectation of the authors' loss, which
    draws one positive image i at random.
    """
    b, k, _ = z.shape
    if b < 2:
        raise ValueError(f"the contrastive part loss needs a batch of >= 2 images, got {b}.")
    # sqrt(|z|^2 + eps^2), not |z| + eps: an empty part (z = 0) must not make the gradient NaN.
    z = z / jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True) + EPS**2)
    logits = jnp.einsum("nkc,mjc->nkmj", z, z) / temperature  # [b, k, b, k]
    other_part = (1 - jnp.eye(k, dtype=bool))[None, :, None, :]
    negatives = jax.nn.logsumexp(
        jnp.where(other_part, logits, -jnp.inf).reshape(b, k, b * k), axis=-1
    )  # [b, k]
    positive = jnp.einsum("nkmk->nkm", logits)  # [b, k, b]: part k of n against part k of m.
    per_pair = jnp.logaddexp(positive, negatives[..., None]) - positive
    other_image = (1 - jnp.eye(b))[:, None, :]
    return jnp.sum(per_pair * other_image) / (b * k * (b - 1))


def equivariance_loss(
    masks_of_transformed: jax.Array,
    transformed_masks: jax.Array,
    valid: jax.Array | None = None,
) -> jax.Array:
    """L_e: `KL(T(f(I)) || f(T(I))) + KL(f(T(I)) || T(f(I)))` per pixel over the parts,
    averaged over the pixels where `valid [b, h, w]` (e.g. inside the rotated frame).

    `T(f(I))` is the target and passes no gradient, as in the authors' code (`pred.detach()`):
    otherwise the cheapest way to agree is for f(I) to flatten towards a single part.
    """
    p = jnp.clip(jax.lax.stop_gradient(transformed_masks), EPS, 1.0)
    q = jnp.clip(masks_of_transformed, EPS, 1.0)
    both = jnp.sum((p - q) * (jnp.log(p) - jnp.log(q)), axis=1)  # KL(p||q) + KL(q||p).
    if valid is None:
        return jnp.mean(both)
    valid = valid.astype(both.dtype)
    return jnp.sum(both * valid) / jnp.maximum(jnp.sum(valid), 1.0)
