"""Part metrics against scikit-learn on random part maps."""

import jax
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ocjax.metrics import parts


def _maps(seed, shape=(3, 7, 9), num_true=5, num_pred=4):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, num_true, shape)
    pred = (true + rng.integers(0, 2, shape) * rng.integers(0, num_pred, shape)) % num_pred
    valid = rng.random(shape) < 0.85
    return true, pred, valid


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("foreground", [False, True])
def test_per_image_nmi_equals_sklearn(seed, foreground):
    true, pred, valid = _maps(seed)
    got = jax.jit(parts.nmi, static_argnums=(2, 3, 4))(true, pred, 5, 4, foreground, valid)
    for i in range(true.shape[0]):
        keep = valid[i] & ((true[i] != 0) if foreground else True)
        expected = normalized_mutual_info_score(true[i][keep], pred[i][keep])
        assert float(got[i]) == pytest.approx(expected, abs=1e-5)


def test_dataset_scores_from_summed_contingency_equal_sklearn_over_all_pixels():
    tables, all_true, all_pred = [], [], []
    for seed in range(3):
        true, pred, valid = _maps(seed)
        keep = valid & (true != 0)
        tables.append(parts.contingency(true, pred, 5, 4, True, valid).sum(0))
        all_true.append(true[keep])
        all_pred.append(pred[keep])
    total = sum(tables)
    true, pred = np.concatenate(all_true), np.concatenate(all_pred)
    assert float(parts.nmi_from_contingency(total)) == pytest.approx(
        normalized_mutual_info_score(true, pred), abs=1e-5
    )
    assert float(parts.ari_from_contingency(total)) == pytest.approx(
        adjusted_rand_score(true, pred), abs=1e-5
    )


def test_special_cases_follow_sklearn():
    one = np.zeros((1, 4, 4), int)
    assert float(parts.nmi(one, one, 2, 2)[0]) == 1.0  # One cluster each.
    split = np.arange(16).reshape(1, 4, 4) % 2
    assert float(parts.nmi(one, split, 2, 2)[0]) == normalized_mutual_info_score(
        one.ravel(), split.ravel()
    )


def test_empty_foreground_follows_sklearn():
    background = np.zeros((1, 4, 4), int)
    pred = np.arange(16).reshape(1, 4, 4) % 3
    got = parts.nmi(background, pred, 2, 3, True)  # No foreground pixel is counted.
    assert float(got[0]) == normalized_mutual_info_score([], [])


@pytest.mark.parametrize("seed", range(3))
def test_pooled_scores_equal_sklearn_on_every_image_s_pixels(seed):
    rng = np.random.default_rng(seed)
    tables, true_all, pred_all = [], [], []
    for batch in range(3):
        true, pred, valid = _maps(100 * seed + batch)
        images = rng.random(true.shape[0]) < 0.8  # Padded rows weigh 0, as in evaluation.
        tables.append(
            np.einsum("b,btp->tp", images, parts.contingency(true, pred, 5, 4, valid=valid))
        )
        keep = valid & images[:, None, None]
        true_all.append(true[keep])
        pred_all.append(pred[keep])
    true, pred = np.concatenate(true_all), np.concatenate(pred_all)
    got = parts.pooled_scores(sum(tables))
    fg = true != 0
    expected = {
        "pooled_ari": adjusted_rand_score(true, pred),
        "pooled_nmi": normalized_mutual_info_score(true, pred),
        "pooled_fg_ari": adjusted_rand_score(true[fg], pred[fg]),
        "pooled_fg_nmi": normalized_mutual_info_score(true[fg], pred[fg]),
    }
    assert got == pytest.approx(expected, abs=1e-5)
