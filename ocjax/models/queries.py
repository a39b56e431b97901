"""Query-token initialisers for the object function (Baldassarre & Azizpour, 2022, App. A.2.2).

Every initialiser is called as `init(batch_size, tokens=None)` and returns query tokens
`[batch, num_queries, dim]`; the sampled ones draw from the `slots` rng, k-means clusters the
patch tokens `[batch, num_tokens, dim]` it is given.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.initializers import KERNEL_INITS, vector_init

Dtype = Any

_HIGHEST = jax.lax.Precision.HIGHEST


class LearnedQueries(nn.Module):
    """A learned `[num_queries, dim]` set of queries, the same for every image, drawn from
    `param_init` (a name in `ocjax.models.initializers.KERNEL_INITS`; SPOT's learned slots:
    `xavier_uniform`)."""

    num_queries: int
    dim: int
    dtype: Dtype = jnp.float32
    param_init: str = "truncated_normal"

    @nn.compact
    def __call__(self, batch_size: int, tokens: jax.Array | None = None) -> jax.Array:
        """Returns queries `[batch_size, num_queries, dim]`; `tokens` is ignored."""
        if self.param_init not in KERNEL_INITS:
            raise ValueError(
                f"Unknown query init {self.param_init!r}; use one of {sorted(KERNEL_INITS)}."
            )
        queries = self.param("queries", KERNEL_INITS[self.param_init], (self.num_queries, self.dim))
        return jnp.broadcast_to(
            queries.astype(self.dtype), (batch_size, self.num_queries, self.dim)
        )


class GaussianQueries(nn.Module):
    """Queries drawn independently from one learned diagonal Gaussian (`mu`, `log_sigma` `[dim]`).

    This is the slot initialisation of the original Slot Attention; needs the `slots` rng.
    `kernel_init` names the scheme whose vector initialiser draws `mu` and `log_sigma`
    (`ocjax.models.initializers.vector_init`).
    """

    num_queries: int
    dim: int
    dtype: Dtype = jnp.float32
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, batch_size: int, tokens: jax.Array | None = None) -> jax.Array:
        """Returns queries `[batch_size, num_queries, dim]`; `tokens` is ignored."""
        init = vector_init(self.kernel_init)
        mu = self.param("mu", init, (self.dim,))
        log_sigma = self.param("log_sigma", init, (self.dim,))
        noise = jax.random.normal(self.make_rng("slots"), (batch_size, self.num_queries, self.dim))
        return (mu + jnp.exp(log_sigma) * noise).astype(self.dtype)


class MixtureQueries(nn.Module):
    """Queries drawn from a uniform mixture of `num_components` learned diagonal Gaussians.

    Each query of each image picks its component uniformly at random (with replacement),
    then samples from it; needs the `slots` rng.
    """

    num_components: int
    num_queries: int
    dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, batch_size: int, tokens: jax.Array | None = None) -> jax.Array:
        """Returns queries `[batch_size, num_queries, dim]`; `tokens` is ignored."""
        shape = (self.num_components, self.dim)
        init = vector_init("lecun_normal")  # U(+-sqrt(6 / (1 + dim))).
        mu = self.param("mu", init, shape)
        log_sigma = self.param("log_sigma", init, shape)
        component_key, noise_key = jax.random.split(self.make_rng("slots"))
        component = jax.random.randint(
            component_key, (batch_size, self.num_queries), 0, self.num_components
        )
        noise = jax.random.normal(noise_key, (batch_size, self.num_queries, self.dim))
        return (mu[component] + jnp.exp(log_sigma[component]) * noise).astype(self.dtype)


def _squared_distances(tokens: jax.Array, centroids: jax.Array) -> jax.Array:
    """Squared Euclidean distances `[b, n, k]` of tokens `[b, n, d]` to centroids `[b, k, d]`."""
    cross = jnp.einsum("bnd,bkd->bnk", tokens, centroids, precision=_HIGHEST)
    squared = (
        jnp.sum(tokens**2, axis=-1)[:, :, None]
        - 2.0 * cross
        + jnp.sum(centroids**2, axis=-1)[:, None, :]
    )
    return jnp.maximum(squared, 0.0)


def random_subset_init(rng: jax.Array, tokens: jax.Array, num_clusters: int) -> jax.Array:
    """Picks `num_clusters` distinct random tokens of each image `[b, n, d]` -> `[b, k, d]`."""
    tokens = jnp.asarray(tokens)
    scores = jax.random.uniform(rng, tokens.shape[:2])
    index = jnp.argsort(scores, axis=1)[:, :num_clusters]
    return jnp.take_along_axis(tokens, index[:, :, None], axis=1)


def kmeans_plus_plus_init(rng: jax.Array, tokens: jax.Array, num_clusters: int) -> jax.Array:
    """k-means++ seeding per image: tokens `[b, n, d]` -> initial centroids `[b, k, d]`.

    The first centroid is a uniformly random token; each next one is a token drawn with
    probability proportional to its squared distance to the nearest centroid chosen so far.
    """
    tokens = jnp.asarray(tokens)
    batch, num_tokens, dim = tokens.shape
    keys = jax.random.split(rng, num_clusters)
    first = jax.random.randint(keys[0], (batch,), 0, num_tokens)
    centroids = jnp.zeros((batch, num_clusters, dim), tokens.dtype)
    centroids = centroids.at[:, 0].set(tokens[jnp.arange(batch), first])
    nearest = _squared_distances(tokens, centroids[:, :1])[..., 0]

    def add_centroid(i: int, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """Draws centroid `i` by D^2 sampling and updates the nearest squared distances."""
        centroids, nearest = state
        chosen = jax.random.categorical(keys[i], jnp.log(nearest), axis=-1)
        new = tokens[jnp.arange(batch), chosen]
        centroids = centroids.at[:, i].set(new)
        nearest = jnp.minimum(nearest, _squared_distances(tokens, new[:, None])[..., 0])
        return centroids, nearest

    centroids, _ = jax.lax.fori_loop(1, num_clusters, add_centroid, (centroids, nearest))
    return centroids


def kmeans(tokens: jax.Array, init_centroids: jax.Array, num_iterations: int) -> jax.Array:
    """Runs `num_iterations` Lloyd steps on tokens `[b, n, d]` from centroids `[b, k, d]`.

    Each step assigns every token to its nearest centroid (Euclidean; ties go to the lowest
    index) and moves each centroid to the mean of its tokens; a centroid with no tokens
    keeps its position. Returns the centroids `[b, k, d]`.
    """
    tokens = jnp.asarray(tokens)
    num_clusters = init_centroids.shape[1]

    def lloyd_step(_: int, centroids: jax.Array) -> jax.Array:
        """One assignment + update step."""
        assignment = jnp.argmin(_squared_distances(tokens, centroids), axis=-1)
        one_hot = jax.nn.one_hot(assignment, num_clusters, dtype=tokens.dtype)
        sums = jnp.einsum("bnk,bnd->bkd", one_hot, tokens, precision=_HIGHEST)
        counts = jnp.sum(one_hot, axis=1)[:, :, None]
        return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), centroids)

    return jax.lax.fori_loop(0, num_iterations, lloyd_step, init_centroids)


_SEEDINGS = {"kmeans++": kmeans_plus_plus_init, "random": random_subset_init}


class KMeansQueries(nn.Module):
    """Queries = k-means centroids of each image's patch tokens (no parameters).

    Centroids are seeded with k-means++ (`seeding="kmeans++"`, default) or, as in the authors'
    code, with a random subset of distinct tokens (`seeding="random"`), both from the `slots`
    rng, then refined by `num_iterations` Lloyd steps in float32. `num_queries` may differ
    between training and evaluation. No gradient flows through the clustering (as in the
    authors' code): the centroids are constants to the backbone.
    """

    num_queries: int
    num_iterations: int = 20
    seeding: str = "kmeans++"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, batch_size: int, tokens: jax.Array | None = None) -> jax.Array:
        """Clusters tokens `[batch_size, num_tokens, dim]` into queries `[batch_size, K, dim]`."""
        if tokens is None:
            raise ValueError("KMeansQueries clusters patch tokens: pass tokens=[b, n, d].")
        if tokens.ndim != 3 or tokens.shape[0] != batch_size:
            raise ValueError(
                f"KMeansQueries expects tokens [batch_size={batch_size}, num_tokens, dim], "
                f"got shape {tokens.shape}; pass the backbone's patch tokens."
            )
        if self.num_queries > tokens.shape[1]:
            raise ValueError(
                f"KMeansQueries has num_queries={self.num_queries} but the images have only "
                f"{tokens.shape[1]} tokens; set num_queries <= {tokens.shape[1]} or use a "
                "smaller patch_size."
            )
        if self.seeding not in _SEEDINGS:
            raise ValueError(
                f"Unknown k-means seeding {self.seeding!r}; set seeding to one of "
                f"{sorted(_SEEDINGS)}."
            )
        points = jax.lax.stop_gradient(jnp.asarray(tokens, jnp.float32))
        centroids = _SEEDINGS[self.seeding](self.make_rng("slots"), points, self.num_queries)
        return kmeans(points, centroids, self.num_iterations).astype(self.dtype)


QUERY_INITS: dict[str, type[nn.Module]] = {
    "learned": LearnedQueries,
    "gaussian": GaussianQueries,
    "mixture": MixtureQueries,
    "kmeans": KMeansQueries,
}
