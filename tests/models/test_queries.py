"""Query initialisers: shapes, sample statistics, and k-means against float64 numpy Lloyd."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.models.queries import (
    QUERY_INITS,
    GaussianQueries,
    KMeansQueries,
    LearnedQueries,
    MixtureQueries,
    kmeans,
    kmeans_plus_plus_init,
    random_subset_init,
)


def reference_lloyd(tokens, centroids, num_iterations):
    """Float64 numpy Lloyd's algorithm; empty clusters keep their centroid."""
    tokens, centroids = np.asarray(tokens, np.float64), np.array(centroids, np.float64)
    for _ in range(num_iterations):
        for b in range(tokens.shape[0]):
            dist = ((tokens[b, :, None, :] - centroids[b, None, :, :]) ** 2).sum(-1)
            assignment = dist.argmin(-1)
            for k in range(centroids.shape[1]):
                members = tokens[b, assignment == k]
                if len(members):
                    centroids[b, k] = members.mean(0)
    return centroids


def clustered_tokens(seed, batch=3, num_clusters=5, per_cluster=30, dim=8, noise=0.1):
    """Well-separated Gaussian blobs per image; returns shuffled tokens and the blob means."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-20, 20, size=(batch, num_clusters, dim))
    labels = np.repeat(np.arange(num_clusters), per_cluster)
    tokens = np.stack([c[labels] for c in centres])
    tokens = tokens + noise * rng.normal(size=tokens.shape)
    order = rng.permutation(len(labels))
    means = np.stack([[t[labels == k].mean(0) for k in range(num_clusters)] for t in tokens])
    return tokens[:, order].astype(np.float32), means


def _sorted_rows(x):
    """Sorts the rows of each `[k, d]` matrix lexicographically, to compare sets of centroids."""
    return np.stack([m[np.lexsort(m.T[::-1])] for m in np.asarray(x)])


RNGS = {"params": jax.random.key(0), "slots": jax.random.key(1)}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shapes_and_dtypes(dtype):
    tokens = jnp.zeros((2, 16, 8))
    modules = [
        LearnedQueries(5, 8, dtype=dtype),
        GaussianQueries(5, 8, dtype=dtype),
        MixtureQueries(3, 5, 8, dtype=dtype),
        KMeansQueries(5, dtype=dtype),
    ]
    for module in modules:
        out, variables = jax.eval_shape(lambda m=module: m.init_with_output(RNGS, 2, tokens))
        assert out.shape == (2, 5, 8) and out.dtype == dtype, type(module).__name__
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    assert set(QUERY_INITS) == {"learned", "gaussian", "mixture", "kmeans"}
    assert QUERY_INITS["kmeans"] is KMeansQueries


def test_learned_queries_are_the_parameter_for_every_image():
    module = LearnedQueries(num_queries=4, dim=6)
    variables = module.init(jax.random.key(0), 3)
    out = jax.jit(module.apply, static_argnums=1)(variables, 3)
    queries = np.asarray(variables["params"]["queries"])
    assert queries.shape == (4, 6) and np.std(queries) > 0
    for b in range(3):
        np.testing.assert_array_equal(out[b], queries)


def test_gaussian_sample_statistics():
    module = GaussianQueries(num_queries=5, dim=3)
    variables = jax.eval_shape(lambda: module.init(RNGS, 1))
    assert variables["params"]["mu"].shape == (3,)
    params = {"mu": jnp.array([1.0, -2.0, 0.5]), "log_sigma": jnp.log(jnp.array([0.5, 2.0, 1.0]))}
    out = jax.jit(module.apply, static_argnums=1)(
        {"params": params}, 4000, rngs={"slots": jax.random.key(2)}
    )
    flat = np.asarray(out).reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(0), [1.0, -2.0, 0.5], atol=0.05)
    np.testing.assert_allclose(flat.std(0), [0.5, 2.0, 1.0], rtol=0.03)
    assert not np.allclose(out[0], out[1]) and not np.allclose(out[0, 0], out[0, 1])


def test_mixture_samples_one_component_per_query_uniformly():
    module = MixtureQueries(num_components=2, num_queries=8, dim=3)
    variables = jax.eval_shape(lambda: module.init(RNGS, 1))
    assert variables["params"]["mu"].shape == (2, 3)
    sigma = 1e-3
    params = {
        "mu": jnp.array([[10.0, 10.0, 10.0], [-10.0, -10.0, -10.0]]),
        "log_sigma": jnp.full((2, 3), np.log(sigma)),
    }
    out = np.asarray(
        jax.jit(module.apply, static_argnums=1)(
            {"params": params}, 500, rngs={"slots": jax.random.key(3)}
        )
    )
    first = out[..., 0] > 0
    nearest = np.where(first[..., None], 10.0, -10.0)
    assert np.abs(out - nearest).max() < 10 * sigma
    np.testing.assert_allclose(np.std(out - nearest) / sigma, 1.0, rtol=0.05)
    assert abs(first.mean() - 0.5) < 0.03
    # Components are drawn per query, not per image: most images mix both.
    assert np.mean(first.any(axis=1) & ~first.all(axis=1)) > 0.9


@pytest.mark.parametrize("num_iterations", [1, 6])
def test_kmeans_matches_float64_lloyd(num_iterations):
    rng = np.random.default_rng(num_iterations)
    tokens = rng.normal(size=(3, 40, 5)).astype(np.float32)
    init = tokens[:, rng.choice(40, size=4, replace=False)]
    init[2, 3] = 100.0  # far from every token: an empty cluster that must stay put
    out = jax.jit(kmeans, static_argnums=2)(tokens, init, num_iterations)
    ref = reference_lloyd(tokens, init, num_iterations)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[2, 3], 100.0)
    assert not np.allclose(out[:2], init[:2], atol=1e-3)


def test_initialisations_pick_tokens():
    tokens, _ = clustered_tokens(0)
    for init in (random_subset_init, kmeans_plus_plus_init):
        centroids = np.asarray(jax.jit(init, static_argnums=2)(jax.random.key(4), tokens, 5))
        for b in range(tokens.shape[0]):
            dist = ((centroids[b, :, None] - tokens[b, None]) ** 2).sum(-1)
            assert np.all(dist.min(-1) == 0), init.__name__
            assert len(set(dist.argmin(-1))) == 5, init.__name__


@pytest.mark.parametrize("seeding", ["kmeans++", "random"])
def test_kmeans_queries_find_cluster_centres(seeding):
    tokens, means = clustered_tokens(1)
    module = KMeansQueries(num_queries=5, num_iterations=10, seeding=seeding)
    assert jax.eval_shape(lambda: module.init(RNGS, 3, tokens)) == {}
    out = jax.jit(module.apply, static_argnums=1)({}, 3, tokens, rngs={"slots": jax.random.key(5)})
    # A fixed point of Lloyd's algorithm whatever the seeding ...
    np.testing.assert_allclose(kmeans(jnp.asarray(tokens), out, 1), out, atol=1e-5)
    if seeding == "kmeans++":
        # ... and, seeded with k-means++, the true centres of well-separated blobs.
        np.testing.assert_allclose(_sorted_rows(out), _sorted_rows(means), atol=1e-4)


def test_kmeans_queries_count_is_free_and_gradient_stops():
    tokens, _ = clustered_tokens(2, batch=1)
    for k in (3, 7):
        out = jax.eval_shape(
            lambda m=KMeansQueries(num_queries=k): m.apply(
                {}, 1, tokens, rngs={"slots": jax.random.key(0)}
            )
        )
        assert out.shape == (1, k, 8)
    grad = jax.jit(
        jax.grad(
            lambda t: (
                KMeansQueries(num_queries=3, num_iterations=2)
                .apply({}, 1, t, rngs={"slots": jax.random.key(0)})
                .sum()
            )
        )
    )(tokens)
    assert grad.shape == tokens.shape
    np.testing.assert_array_equal(grad, 0.0)


def test_kmeans_queries_errors():
    tokens = jnp.zeros((2, 6, 4))
    rngs = {"slots": jax.random.key(0)}
    with pytest.raises(ValueError, match="num_queries=7 but the images have only 6 tokens"):
        KMeansQueries(num_queries=7).apply({}, 2, tokens, rngs=rngs)
    with pytest.raises(ValueError, match="pass tokens"):
        KMeansQueries(num_queries=3).apply({}, 2, rngs=rngs)
    with pytest.raises(ValueError, match=r"batch_size=3"):
        KMeansQueries(num_queries=3).apply({}, 3, tokens, rngs=rngs)
    with pytest.raises(ValueError, match="Unknown k-means seeding"):
        KMeansQueries(num_queries=3, seeding="spectral").apply({}, 2, tokens, rngs=rngs)
