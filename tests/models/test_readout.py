"""Object read-out: orientation maps, k-means clustering and ARI-BG on synthetic scenes."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from ocjax.models.readout import ari_bg, complex_readout, kmeans_cluster, rotating_readout


def scene_labels(batch, size, seed):
    """Label maps `[b, size, size]`: background 0, three rectangles 1..3, a few -1 overlaps."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((batch, size, size), np.int32)
    for i in range(batch):
        for obj in (1, 2, 3):
            y, x = rng.integers(0, size - size // 3, 2)
            labels[i, y : y + size // 3, x : x + size // 3] = obj
        labels[i, rng.integers(0, size, 4), rng.integers(0, size, 4)] = -1
    return labels


def rotating_scene(labels, n, channels, seed):
    """Features `[b, n, h, w, c]`: per object a random orientation (+ noise), background 0."""
    rng = np.random.default_rng(seed)
    b, h, w = labels.shape
    z = np.zeros((b, n, h, w, channels))
    for i in range(b):
        for obj in (1, 2, 3):
            mask = labels[i] == obj
            direction = rng.normal(size=n)
            direction /= np.linalg.norm(direction)
            magnitudes = rng.uniform(0.5, 1.5, (mask.sum(), channels))
            noise = 0.05 * rng.normal(size=(mask.sum(), n, channels))
            z[i][:, mask] = np.moveaxis(
                direction[None, :, None] * magnitudes[:, None] + noise, 0, 1
            )
    return z


def np_rotating_readout(z, threshold):
    """Float64 reference of the Rotating Features evaluation read-out: `[b, h, w, n]`."""
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    unit = np.where(norm > 0, z / np.where(norm > 0, norm, 1), 0)
    weights = (norm > threshold).astype(np.float64)
    out = (weights * unit).sum(-1) / (weights.sum(-1) + 1e-8)
    return np.moveaxis(out, 1, -1)


def test_rotating_readout_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3, 4, 5, 6)) * rng.uniform(0, 0.2, size=(2, 1, 4, 5, 6))
    z[0, :, 0, 0, :] = 0.0
    out = np.asarray(rotating_readout(z.astype(np.float32), threshold=0.1))
    assert out.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(out, np_rotating_readout(z, 0.1), atol=1e-5)
    np.testing.assert_array_equal(out[0, 0, 0], 0.0)


def test_complex_readout_matches_numpy():
    rng = np.random.default_rng(1)
    magnitude, phase = rng.uniform(0, 0.2, (2, 4, 5, 3)), rng.uniform(-np.pi, np.pi, (2, 4, 5, 3))
    out = np.asarray(complex_readout(magnitude, phase, threshold=0.1))
    scale = np.clip(magnitude, 0, 0.1) / 0.1
    expected = np.stack([np.cos(phase) * scale, np.sin(phase) * scale], -1).mean(-2)
    assert out.shape == (2, 4, 5, 2)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_rotating_readout_and_kmeans_recover_objects():
    labels = scene_labels(2, 24, 2)
    z = rotating_scene(labels, n=4, channels=3, seed=3)
    points = rotating_readout(z.astype(np.float32))
    pred = kmeans_cluster(points, num_clusters=4, seed=0)
    assert pred.shape == labels.shape and pred.dtype == np.int32
    np.testing.assert_allclose(np.asarray(ari_bg(labels, pred)), 1.0, atol=1e-6)


def test_complex_readout_and_kmeans_recover_objects():
    labels = scene_labels(2, 24, 4)
    rng = np.random.default_rng(5)
    phases = np.zeros(labels.shape + (1,))
    magnitude = np.zeros(labels.shape + (1,))
    for i in range(2):
        for obj, centre in zip((1, 2, 3), rng.permutation([-2.0, 0.0, 2.0])):
            mask = labels[i] == obj
            phases[i][mask] = centre + 0.05 * rng.normal(size=(mask.sum(), 1))
            magnitude[i][mask] = 1.0
    pred = kmeans_cluster(complex_readout(magnitude, phases), num_clusters=4, seed=0)
    np.testing.assert_allclose(np.asarray(ari_bg(labels, pred)), 1.0, atol=1e-6)


def test_ari_bg_perfect_and_random():
    labels = scene_labels(3, 64, 6)
    permutation = np.array([2, 0, 3, 1])
    perfect = permutation[np.maximum(labels, 0)]
    np.testing.assert_allclose(np.asarray(ari_bg(labels, perfect)), 1.0, atol=1e-6)
    random = np.random.default_rng(7).integers(0, 4, labels.shape)
    scores = np.asarray(ari_bg(labels, random))
    assert np.all(np.abs(scores) < 0.05)
    keep = labels[0] > 0
    expected = adjusted_rand_score(labels[0][keep], random[0][keep])
    np.testing.assert_allclose(scores[0], expected, atol=1e-5)


def test_kmeans_only_clusters_valid_pixels():
    labels = scene_labels(1, 16, 8)
    z = rotating_scene(labels, n=3, channels=2, seed=9)
    valid = labels > 0
    pred = kmeans_cluster(rotating_readout(z.astype(np.float32)), 3, valid=valid, seed=1)
    assert np.all(pred[~valid] == 0)
    np.testing.assert_allclose(adjusted_rand_score(labels[valid], pred[valid]), 1.0)


def test_kmeans_rejects_more_clusters_than_valid_pixels():
    points = np.zeros((1, 4, 4, 2))
    valid = np.zeros((1, 4, 4), bool)
    valid[0, 0, :3] = True
    with pytest.raises(ValueError, match="3 valid pixels, fewer than num_clusters = 4"):
        kmeans_cluster(points, 4, valid=valid)


def test_pooled_kmeans_assigns_each_pixel_its_nearest_centroid():
    from scipy.spatial.distance import cdist

    from ocjax.models.readout import assign_clusters, fit_centroids, sample_points

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 5)) * 10.0
    truth = rng.integers(0, 3, (4, 6, 7))
    points = centres[truth] + rng.normal(size=(4, 6, 7, 5)) * 0.1
    valid = rng.random((4, 6, 7)) < 0.7
    samples = sample_points(points, valid, per_image=20, seed=0)
    assert samples.shape == (4 * 20, 5)  # Every image has more than 20 valid pixels here.
    # Every sample is a valid pixel of some image.
    pool = points[valid]
    assert np.all(cdist(samples, pool).min(axis=1) == 0)
    centroids = fit_centroids(samples, 3, seed=0)
    ids = assign_clusters(points, centroids, valid)
    expected = np.where(
        valid, cdist(points.reshape(-1, 5), centroids).argmin(1).reshape(valid.shape) + 1, 0
    )
    np.testing.assert_array_equal(ids, expected)
    # Well-separated blobs: one cluster per centre, the same id in every image.
    np.testing.assert_allclose(adjusted_rand_score(truth[valid], ids[valid]), 1.0)


def test_pooled_kmeans_rejects_too_few_points():
    from ocjax.models.readout import fit_centroids

    with pytest.raises(ValueError, match="2 points, fewer than num_clusters = 4"):
        fit_centroids(np.zeros((2, 3)), 4)
