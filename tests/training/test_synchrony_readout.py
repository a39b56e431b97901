"""The host clustering step of the synchrony read-out scores a perfect read-out as 1.0."""

import numpy as np

from ocjax.models import readout


def test_perfect_readout_scores_one_and_ignores_overlap_and_padding():
    rng = np.random.default_rng(0)
    true_ids = np.zeros((3, 16, 16), np.int32)
    true_ids[:, 2:8, 2:8] = 1
    true_ids[:, 9:14, 3:12] = 2
    true_ids[:, 4:12, 12:15] = 3
    pixel_valid = np.ones(true_ids.shape, bool)
    pixel_valid[:, 0, :] = False  # "overlap" pixels: garbage points, left out of scores.
    directions = rng.normal(size=(4, 8))
    points = directions[true_ids] + 0.01 * rng.normal(size=(3, 16, 16, 8))
    points[:, 0, :] = 50 * rng.normal(size=(3, 16, 8))
    num_objects = np.array([3, 3, 0])  # the last row is padding
    ids, scores, weights = readout.cluster_scores(
        points, true_ids, pixel_valid, num_objects, num_true=4, n_init=2
    )
    np.testing.assert_array_equal(weights, [True, True, False])
    np.testing.assert_allclose(scores["ari_bg"], [1.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(scores["mbo"], [1.0, 1.0, 0.0], atol=1e-6)
    assert ids.shape == true_ids.shape and (ids[2] == 0).all()
