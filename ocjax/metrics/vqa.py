"""Linear-probe VQA evaluation of object tokens (Baldassarre & Azizpour 2022, appendix A.6).

The 96 binary questions ask "is there a (size, colour, material, shape)
object in the image?". A probe maps every slot `[dim]` linearly to 96 logits
and max-pools them over the slots; it is trained full-batch with AdamW on
BCE-with-logits whose positives weigh `pos_weight` (14 in the authors' code,
for the ~1:14 class imbalance). The headline number is `probe_ap`: average
precision micro-averaged over all flattened (image, question) pairs with
sample weight `pos_weight` on the positives, as
`sklearn.metrics.average_precision_score` computes it.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import optax

from ocjax.data.generators.clevr_like import COLORS, MATERIALS, SHAPES, SIZES

QUESTIONS: tuple[tuple[str, str, str, str], ...] = tuple(
    itertools.product(SIZES, COLORS, MATERIALS, SHAPES)
)
"""The 96 (size, colour, material, shape) questions, nested in that order."""

NUM_QUESTIONS = len(QUESTIONS)
_TINY = 1e-30


def question_labels(
    size: jax.Array,
    color: jax.Array,
    material: jax.Array,
    shape: jax.Array,
    present: jax.Array,
) -> jax.Array:
    """Float {0, 1} answers `[batch, 96]` from int attributes and bool `present` `[batch, objects]`.

    Attribute ids index `SIZES`, `COLORS`, `MATERIALS` and `SHAPES`; objects
    where `present` is False (padding) are ignored.
    """
    arrays = [jnp.asarray(a) for a in (size, color, material, shape, present)]
    if any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        raise ValueError(
            "size, color, material, shape and present must all be [batch, max_objects], got "
            f"shapes {[a.shape for a in arrays]}; pad every image to the same object count."
        )
    size, color, material, shape, present = arrays
    question = ((size * len(COLORS) + color) * len(MATERIALS) + material) * len(SHAPES) + shape
    answers = jax.nn.one_hot(question, NUM_QUESTIONS) * present[..., None]
    return answers.max(axis=1)


def average_precision(
    scores: jax.Array, labels: jax.Array, sample_weight: jax.Array | None = None
) -> jax.Array:
    """Average precision of scores `[n]` for {0, 1} labels `[n]`, weighted by `[n]` -> scalar.

    Equals `sklearn.metrics.average_precision_score(labels, scores,
    sample_weight=sample_weight)`: every distinct score is one threshold, so
    tied scores enter together; AP = sum over positives of weight x precision
    at the positive's score, over the total positive weight; 0 without positives.
    """
    scores, labels = jnp.asarray(scores), jnp.asarray(labels)
    weight = jnp.ones(scores.shape) if sample_weight is None else jnp.asarray(sample_weight)
    if scores.ndim != 1 or labels.shape != scores.shape or weight.shape != scores.shape:
        raise ValueError(
            f"scores {scores.shape}, labels {labels.shape} and sample_weight {weight.shape} "
            "must all be [n]; flatten (image, question) pairs first."
        )
    weight = weight.astype(jnp.promote_types(weight.dtype, jnp.float32))
    positive = labels.astype(bool)
    order = jnp.argsort(scores)
    first_tied = jnp.searchsorted(scores[order], scores, side="left")
    positive_from = jnp.cumsum(jnp.where(positive, weight, 0.0)[order][::-1])[::-1]
    negative_from = jnp.cumsum(jnp.where(positive, 0.0, weight)[order][::-1])[::-1]
    true_positives, false_positives = positive_from[first_tied], negative_from[first_tied]
    total_positive = positive_from[0]
    precision = true_positives / jnp.maximum(true_positives + false_positives, _TINY)
    gained = jnp.sum(jnp.where(positive, weight * precision, 0.0))
    return gained / jnp.maximum(total_positive, _TINY)


def probe_ap(scores: jax.Array, labels: jax.Array, pos_weight: float = 14.0) -> jax.Array:
    """Micro AP over all pairs of scores and {0, 1} labels `[n, 96]`, positives weighted -> scalar."""
    scores, labels = jnp.asarray(scores), jnp.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores {scores.shape} and labels {labels.shape} must have the same shape [n, 96]."
        )
    weight = jnp.where(labels.astype(bool), pos_weight, 1.0)
    return average_precision(scores.reshape(-1), labels.reshape(-1), weight.reshape(-1))


def probe_scores(params: dict[str, jax.Array], features: jax.Array) -> jax.Array:
    """Probe logits `[n, 96]`: per-slot linear map of `[n, num_slots, dim]`, max over slots."""
    features = jnp.asarray(features)
    kernel = params["kernel"]
    if features.ndim != 3 or features.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"features must be [n, num_slots, {kernel.shape[0]}] for this probe, got shape "
            f"{features.shape}; pass the slots the probe was trained on."
        )
    logits = jnp.einsum("nkd,dq->nkq", features.astype(kernel.dtype), kernel) + params["bias"]
    return logits.max(axis=1)


def _weighted_bce(logits: jax.Array, labels: jax.Array, pos_weight: jax.Array) -> jax.Array:
    """Mean BCE-with-logits of `[n, 96]`, positive terms scaled by `pos_weight` (as in PyTorch)."""
    positive_term = pos_weight * labels * jax.nn.log_sigmoid(logits)
    negative_term = (1.0 - labels) * jax.nn.log_sigmoid(-logits)
    return -jnp.mean(positive_term + negative_term)


@functools.partial(jax.jit, static_argnames=("steps",))
def _fit_probe(
    features: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    steps: int,
    learning_rate: jax.Array,
    weight_decay: jax.Array,
    pos_weight: jax.Array,
) -> dict[str, jax.Array]:
    """Full-batch AdamW on `_weighted_bce` for `steps` steps; returns the probe parameters."""
    dim = features.shape[-1]
    bound = 1.0 / jnp.sqrt(dim)
    params = {
        "kernel": jax.random.uniform(key, (dim, NUM_QUESTIONS), minval=-bound, maxval=bound),
        "bias": jnp.zeros(NUM_QUESTIONS),
    }
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)

    def loss(probe: dict[str, jax.Array]) -> jax.Array:
        return _weighted_bce(probe_scores(probe, features), labels, pos_weight)

    def step(state: tuple, _: None) -> tuple[tuple, None]:
        probe, opt_state = state
        updates, opt_state = optimizer.update(jax.grad(loss)(probe), opt_state, probe)
        return (optax.apply_updates(probe, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
    return params


def train_probe(
    features: jax.Array,
    labels: jax.Array,
    *,
    steps: int = 10_000,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    pos_weight: float = 14.0,
    seed: int = 0,
) -> dict[str, jax.Array]:
    """Train a linear VQA probe on slots `[n, num_slots, dim]` and labels `[n, 96]`.

    Full-batch AdamW for `steps` steps (the authors' 10,000) on BCE-with-logits
    with positives weighted by `pos_weight`. The defaults lr 1e-3 (Adam's
    usual rate) and weight decay 1e-4 (the authors' pretraining value) are our
    choices. Returns {"kernel": [dim, 96], "bias": [96]} for `probe_scores`.
    """
    features, labels = jnp.asarray(features, jnp.float32), jnp.asarray(labels, jnp.float32)
    if features.ndim != 3 or labels.shape != (features.shape[0], NUM_QUESTIONS):
        raise ValueError(
            f"features must be [n, num_slots, dim] and labels [n, {NUM_QUESTIONS}], got "
            f"{features.shape} and {labels.shape}; build labels with question_labels."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}; the authors use 10_000.")
    return _fit_probe(
        features,
        labels,
        jax.random.key(seed),
        steps,
        jnp.float32(learning_rate),
        jnp.float32(weight_decay),
        jnp.float32(pos_weight),
    )
