"""Part-discovery metrics (Choudhury et al., 2021): NMI and ARI between part maps and labels.

Part segmentations are scored per image (`nmi`, and `ocjax.metrics.ari`) or over a whole
dataset by summing contingency tables across batches (`contingency`, then `pooled_scores`
on the sum), as the paper does over all images. FG-NMI / FG-ARI count only foreground pixels (`ignore_background=True`; label 0 is
background). Everything is jit-able; values equal scikit-learn's on the counted pixels.
"""

import jax
import jax.numpy as jnp

from ocjax.metrics.segmentation import ari_from_contingency, contingency

__all__ = [
    "ari_from_contingency",
    "contingency",
    "nmi",
    "nmi_from_contingency",
    "pooled_scores",
]


def _entropy(sizes: jax.Array, total: jax.Array) -> jax.Array:
    """Entropy (nats) `[...]` of cluster sizes `[..., k]` summing to `total`."""
    p = sizes / jnp.maximum(total[..., None], 1.0)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)


def nmi_from_contingency(table: jax.Array) -> jax.Array:
    """Normalised mutual information `[...]` from contingency tables `[..., T, P]`, with the
    arithmetic-mean normaliser and the special cases of `sklearn`'s
    `normalized_mutual_info_score` (1 when both sides have a single or no cluster, 0 when
    the mutual information is 0)."""
    table = table.astype(jnp.float32)
    total = table.sum(axis=(-2, -1))
    true_sizes, pred_sizes = table.sum(axis=-1), table.sum(axis=-2)
    outer = true_sizes[..., :, None] * pred_sizes[..., None, :]
    ratio = table * total[..., None, None] / jnp.where(outer > 0, outer, 1.0)
    mi = jnp.sum(
        jnp.where(table > 0, table * jnp.log(jnp.where(table > 0, ratio, 1.0)), 0.0),
        axis=(-2, -1),
    ) / jnp.maximum(total, 1.0)
    h_true, h_pred = _entropy(true_sizes, total), _entropy(pred_sizes, total)
    n_true, n_pred = (true_sizes > 0).sum(-1), (pred_sizes > 0).sum(-1)
    trivial = (n_true == n_pred) & (n_true <= 1)
    mi = jnp.maximum(mi, 0.0)
    nmi = mi / jnp.maximum((h_true + h_pred) / 2, 1e-12)
    return jnp.where(trivial, 1.0, jnp.where(mi <= 1e-12, 0.0, nmi))


def nmi(
    true_ids: jax.Array,
    pred_ids: jax.Array,
    num_true: int,
    num_pred: int,
    ignore_background: bool = False,
    valid: jax.Array | None = None,
) -> jax.Array:
    """NMI `[batch]` between id maps `[batch, *pixels]` per image (FG-NMI with
    `ignore_background`); equals `sklearn.metrics.normalized_mutual_info_score`."""
    return nmi_from_contingency(
        contingency(true_ids, pred_ids, num_true, num_pred, ignore_background, valid)
    )


def pooled_scores(table: jax.Array) -> dict[str, float]:
    """ARI, NMI, FG-ARI and FG-NMI of one contingency table `[T, P]` summed over a whole split.

    Row 0 is the true background, so the FG scores drop it. Pooling the images is the
    paper's protocol: it scores whether part k means the same part in every image.
    """
    table = jnp.asarray(table)
    return {
        "pooled_ari": float(ari_from_contingency(table)),
        "pooled_nmi": float(nmi_from_contingency(table)),
        "pooled_fg_ari": float(ari_from_contingency(table[1:])),
        "pooled_fg_nmi": float(nmi_from_contingency(table[1:])),
    }
