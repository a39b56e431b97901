"""Global and object contrastive losses of Baldassarre & Azizpour (2022).

A batch holds two augmented views, ``a`` and ``b``, of each of ``B`` images.
Arrays of the two views come as separate arguments with the same shape:
global projections ``[B, d]``, object projections ``p_a, p_b: [B, K, d]`` and
pre-projection object tokens ``s_a, s_b: [B, K, d']``. Object tokens of the two
views are paired by ``assign_ab: int32 [B, K]``, a permutation per image from
``match_tokens``: token ``i`` of view a matches token ``assign_ab[b, i]`` of
view b. Every loss is symmetric over the views (each token of either view is
an anchor once), averages over its anchors, uses cosine similarities and is
computed in at least float32.
"""

import jax
import jax.numpy as jnp

from ocjax.matching import solve

_NORM_EPS = 1e-8


def _check_temperature(temperature: float) -> None:
    """Raise unless `temperature` is a static float > 0."""
    if isinstance(temperature, jax.core.Tracer) or not float(temperature) > 0:
        raise ValueError(
            f"temperature must be a static Python float > 0, got {temperature!r}; the paper "
            "uses 0.1. Under jax.jit pass it through static_argnames=('temperature',)."
        )


def _check_views(name: str, view_a: jax.Array, view_b: jax.Array, ndim: int) -> None:
    """Raise unless the two views' arrays have the same shape of rank `ndim`."""
    if view_a.ndim != ndim or view_a.shape != view_b.shape:
        layout = "[batch, dim]" if ndim == 2 else "[batch, num_tokens, dim]"
        raise ValueError(
            f"{name} of the two views must both be {layout}, got shapes {view_a.shape} and "
            f"{view_b.shape}; pass one array per view with matching shapes."
        )


def _check_assignment(assign_ab: jax.Array, p_a: jax.Array) -> None:
    """Raise unless `assign_ab` is an integer `[batch, num_tokens]` matching `p_a`."""
    if assign_ab.shape != p_a.shape[:2] or not jnp.issubdtype(assign_ab.dtype, jnp.integer):
        raise ValueError(
            f"assign_ab must be int [batch, num_tokens] = {p_a.shape[:2]}, got "
            f"{assign_ab.dtype} {assign_ab.shape}; compute it with match_tokens(s_a, s_b)."
        )


def _unit(x: jax.Array) -> jax.Array:
    """Rows of `[..., dim]` scaled to unit L2 norm, in at least float32."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, _NORM_EPS)


def _inverse_permutation(assign_ab: jax.Array) -> jax.Array:
    """Int `[batch, num_tokens]` inverse of per-image permutations `[batch, num_tokens]`."""
    return jnp.argsort(assign_ab, axis=-1)


def _info_nce(tokens: jax.Array, positives: jax.Array, temperature: float) -> jax.Array:
    """Mean InfoNCE over groups `[groups, n, dim]`: each token against all others of its group.

    `positives` `[groups, n]` holds each token's positive within its group; every
    other token of the group except itself is a negative.
    """
    unit = _unit(tokens)
    logits = jnp.einsum("gnd,gmd->gnm", unit, unit) / temperature
    logits = jnp.where(jnp.eye(tokens.shape[1], dtype=bool), -jnp.inf, logits)
    positive_logits = jnp.take_along_axis(logits, positives[..., None], axis=-1)[..., 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive_logits)


def _image_positives(assign_ab: jax.Array) -> jax.Array:
    """Int32 `[batch, 2 * num_tokens]`: positive of each token of `concat([view a, view b])`."""
    num_tokens = assign_ab.shape[1]
    inverse = _inverse_permutation(assign_ab)
    return jnp.concatenate([num_tokens + assign_ab, inverse], axis=1).astype(jnp.int32)


def nt_xent(p_a: jax.Array, p_b: jax.Array, temperature: float = 0.1) -> jax.Array:
    """SimCLR NT-Xent (eq. 1) of global projections `[batch, dim]` of views a and b -> scalar.

    Each of the 2B projections is classified as the other view of its image
    against the remaining 2B - 2 projections; mean over the 2B anchors.
    """
    p_a, p_b = jnp.asarray(p_a), jnp.asarray(p_b)
    _check_views("global projections", p_a, p_b, ndim=2)
    _check_temperature(temperature)
    batch = p_a.shape[0]
    tokens = jnp.concatenate([p_a, p_b])[None]
    positives = jnp.concatenate([jnp.arange(batch) + batch, jnp.arange(batch)])[None]
    return _info_nce(tokens, positives, float(temperature))


def match_tokens(
    tokens_a: jax.Array,
    tokens_b: jax.Array,
    method: str = "hungarian",
    **solver_options: float,
) -> jax.Array:
    """Int32 `[batch, num_tokens]` matching maximising cosine between `[batch, num_tokens, dim]`.

    Per image, token i of view a is paired with token `result[b, i]` of view b
    so that the total cosine similarity is maximal (cost = -cos), with the
    solver `method` of `ocjax.matching.SOLVERS` ("hungarian" exact, "sinkhorn"
    approximate; `solver_options` go to the solver). No gradient flows through it.
    """
    tokens_a, tokens_b = jnp.asarray(tokens_a), jnp.asarray(tokens_b)
    _check_views("object tokens", tokens_a, tokens_b, ndim=3)
    cosine = jnp.einsum("bid,bjd->bij", _unit(tokens_a), _unit(tokens_b))
    return solve(-jax.lax.stop_gradient(cosine), method, **solver_options)


def ctr_all(
    p_a: jax.Array, p_b: jax.Array, assign_ab: jax.Array, temperature: float = 0.1
) -> jax.Array:
    """CTR-ALL object loss of projections `[batch, num_tokens, dim]` -> scalar.

    Eq. 2 with N^ALL: each object token's positive is its matched token in the
    other view; all other object tokens of both views of every image in the
    batch are negatives. Mean over the 2 * batch * num_tokens anchors.
    """
    p_a, p_b, assign_ab = jnp.asarray(p_a), jnp.asarray(p_b), jnp.asarray(assign_ab)
    _check_views("object projections", p_a, p_b, ndim=3)
    _check_assignment(assign_ab, p_a)
    _check_temperature(temperature)
    batch, num_tokens, dim = p_a.shape
    tokens = jnp.concatenate([p_a, p_b], axis=1).reshape(1, 2 * batch * num_tokens, dim)
    offsets = 2 * num_tokens * jnp.arange(batch, dtype=jnp.int32)[:, None]
    positives = (_image_positives(assign_ab) + offsets).reshape(1, -1)
    return _info_nce(tokens, positives, float(temperature))


def ctr_img(
    p_a: jax.Array, p_b: jax.Array, assign_ab: jax.Array, temperature: float = 0.1
) -> jax.Array:
    """CTR-IMG object loss of projections `[batch, num_tokens, dim]` -> scalar.

    Eq. 2 with N^IMG: each object token's positive is its matched token in the
    other view; the negatives are only the other object tokens of the same
    image's two views. Mean over the 2 * batch * num_tokens anchors.
    """
    p_a, p_b, assign_ab = jnp.asarray(p_a), jnp.asarray(p_b), jnp.asarray(assign_ab)
    _check_views("object projections", p_a, p_b, ndim=3)
    _check_assignment(assign_ab, p_a)
    _check_temperature(temperature)
    tokens = jnp.concatenate([p_a, p_b], axis=1)
    return _info_nce(tokens, _image_positives(assign_ab), float(temperature))


def cossim(
    p_a: jax.Array, p_b: jax.Array, s_a: jax.Array, s_b: jax.Array, assign_ab: jax.Array
) -> jax.Array:
    """COSSIM object loss of projections and tokens, all `[batch, num_tokens, dim]` -> scalar.

    Eq. 3 as released by the authors: (1 - cos(p, stopgrad(s'))) / 2 between
    each projected token p and the matched pre-projection token s' of the other
    view, in [0, 1]; mean over the 2 * batch * num_tokens anchors. No gradient
    reaches `s_a` or `s_b` through this loss.
    """
    p_a, p_b, assign_ab = jnp.asarray(p_a), jnp.asarray(p_b), jnp.asarray(assign_ab)
    s_a, s_b = jnp.asarray(s_a), jnp.asarray(s_b)
    _check_views("object projections", p_a, p_b, ndim=3)
    _check_views("object tokens", s_a, s_b, ndim=3)
    if s_a.shape != p_a.shape:
        raise ValueError(
            f"cossim compares projections {p_a.shape} with pre-projection tokens {s_a.shape}, "
            "so both must be [batch, num_tokens, dim] with the same dim; make the projection "
            "head output the token dimension."
        )
    _check_assignment(assign_ab, p_a)
    targets_b = jnp.take_along_axis(s_b, assign_ab[..., None], axis=1)
    targets_a = jnp.take_along_axis(s_a, _inverse_permutation(assign_ab)[..., None], axis=1)
    projections = jnp.concatenate([p_a, p_b], axis=1)
    targets = jax.lax.stop_gradient(jnp.concatenate([targets_b, targets_a], axis=1))
    cosine = jnp.sum(_unit(projections) * _unit(targets), axis=-1)
    return jnp.mean((1.0 - cosine) / 2.0)
