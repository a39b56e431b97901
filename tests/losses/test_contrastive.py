"""Tests for ocjax.losses.contrastive against float64 loops written from the paper's equations."""

import itertools

import jax
import numpy as np
import pytest

from ocjax.losses.contrastive import cossim, ctr_all, ctr_img, match_tokens, nt_xent

TAU = 0.1
JIT_NT_XENT = jax.jit(nt_xent, static_argnames="temperature")
JIT_CTR_ALL = jax.jit(ctr_all, static_argnames="temperature")
JIT_CTR_IMG = jax.jit(ctr_img, static_argnames="temperature")
JIT_COSSIM = jax.jit(cossim)


def cos(x: np.ndarray, y: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def reference_nt_xent(p_a: np.ndarray, p_b: np.ndarray, tau: float) -> float:
    """Eq. 1 averaged over every (a, b): positive (1 - a, b), denominator all (a', b') != (a, b)."""
    p = np.stack([p_a, p_b]).astype(np.float64)
    batch = p.shape[1]
    losses = []
    for a, b in itertools.product(range(2), range(batch)):
        numerator = np.exp(cos(p[a, b], p[1 - a, b]) / tau)
        denominator = sum(
            np.exp(cos(p[a, b], p[a2, b2]) / tau)
            for a2, b2 in itertools.product(range(2), range(batch))
            if (a2, b2) != (a, b)
        )
        losses.append(-np.log(numerator / denominator))
    return float(np.mean(losses))


def matchings(assign_ab: np.ndarray) -> list[list[dict[int, int]]]:
    """sigma[a][b]: token i of view a, image b -> its matched token in view 1 - a."""
    forward = [dict(enumerate(row.tolist())) for row in assign_ab]
    backward = [{j: i for i, j in row.items()} for row in forward]
    return [forward, backward]


def reference_ctr(
    p_a: np.ndarray, p_b: np.ndarray, assign_ab: np.ndarray, tau: float, same_image: bool
) -> float:
    """Eq. 2 averaged over every (a, b, i), with N^IMG if `same_image` else N^ALL."""
    p = np.stack([p_a, p_b]).astype(np.float64)
    _, batch, num_tokens, _ = p.shape
    sigma = matchings(assign_ab)
    everything = list(itertools.product(range(2), range(batch), range(num_tokens)))
    losses = []
    for a, b, i in everything:
        positive = (1 - a, b, sigma[a][b][i])
        if same_image:
            negatives = [(a2, b2, i2) for a2, b2, i2 in everything if b2 == b]
        else:
            negatives = list(everything)
        negatives = [t for t in negatives if t not in ((a, b, i), positive)]
        denominator = sum(np.exp(cos(p[a, b, i], p[t]) / tau) for t in [positive, *negatives])
        losses.append(-np.log(np.exp(cos(p[a, b, i], p[positive]) / tau) / denominator))
    return float(np.mean(losses))


def reference_cossim(
    p_a: np.ndarray, p_b: np.ndarray, s_a: np.ndarray, s_b: np.ndarray, assign_ab: np.ndarray
) -> float:
    """(1 - cos(p_abi, s_(1-a)b sigma(i))) / 2 averaged over every (a, b, i)."""
    p, s = np.stack([p_a, p_b]).astype(np.float64), np.stack([s_a, s_b]).astype(np.float64)
    sigma = matchings(assign_ab)
    losses = [
        (1.0 - cos(p[a, b, i], s[1 - a, b, sigma[a][b][i]])) / 2.0
        for a, b, i in itertools.product(range(2), range(p.shape[1]), range(p.shape[2]))
    ]
    return float(np.mean(losses))


def random_views(
    seed: int, batch: int = 3, num_tokens: int = 4, dim: int = 6
) -> tuple[np.ndarray, ...]:
    """Random p_a, p_b, s_a, s_b `[batch, num_tokens, dim]` and random permutations `[batch, K]`."""
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=(batch, num_tokens, dim)).astype(np.float32) for _ in range(4)]
    assign_ab = np.stack([rng.permutation(num_tokens) for _ in range(batch)]).astype(np.int32)
    return (*arrays, assign_ab)


@pytest.mark.parametrize("batch, dim, tau", [(1, 3, 0.5), (4, 8, TAU), (7, 5, TAU)])
def test_nt_xent_matches_reference(batch: int, dim: int, tau: float) -> None:
    rng = np.random.default_rng(batch)
    p_a, p_b = rng.normal(size=(2, batch, dim)).astype(np.float32) * 3.0
    loss = JIT_NT_XENT(p_a, p_b, temperature=tau)
    np.testing.assert_allclose(loss, reference_nt_xent(p_a, p_b, tau), rtol=1e-5)


@pytest.mark.parametrize("seed, batch, num_tokens", [(0, 1, 3), (1, 3, 4), (2, 2, 6)])
def test_ctr_losses_match_reference(seed: int, batch: int, num_tokens: int) -> None:
    p_a, p_b, _, _, assign_ab = random_views(seed, batch, num_tokens)
    np.testing.assert_allclose(
        JIT_CTR_ALL(p_a, p_b, assign_ab, temperature=TAU),
        reference_ctr(p_a, p_b, assign_ab, TAU, same_image=False),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        JIT_CTR_IMG(p_a, p_b, assign_ab, temperature=TAU),
        reference_ctr(p_a, p_b, assign_ab, TAU, same_image=True),
        rtol=1e-5,
    )


def test_ctr_img_is_a_mean_of_per_image_losses_and_ctr_all_is_not() -> None:
    p_a, p_b, _, _, assign_ab = random_views(3, batch=3)
    per_image = [
        JIT_CTR_IMG(p_a[b : b + 1], p_b[b : b + 1], assign_ab[b : b + 1], TAU) for b in range(3)
    ]
    np.testing.assert_allclose(JIT_CTR_IMG(p_a, p_b, assign_ab, TAU), np.mean(per_image), rtol=1e-5)
    np.testing.assert_allclose(
        JIT_CTR_ALL(p_a[:1], p_b[:1], assign_ab[:1], TAU), per_image[0], rtol=1e-5
    )
    assert JIT_CTR_ALL(p_a, p_b, assign_ab, TAU) > np.mean(per_image)


def test_cossim_matches_reference_and_stops_gradient_into_targets() -> None:
    p_a, p_b, s_a, s_b, assign_ab = random_views(4, batch=3, num_tokens=5)
    loss = JIT_COSSIM(p_a, p_b, s_a, s_b, assign_ab)
    np.testing.assert_allclose(loss, reference_cossim(p_a, p_b, s_a, s_b, assign_ab), rtol=1e-5)
    grads = jax.jit(jax.grad(cossim, argnums=(0, 1, 2, 3)))(p_a, p_b, s_a, s_b, assign_ab)
    assert np.all(np.abs(grads[0]) > 0) and np.all(np.abs(grads[1]) > 0)
    np.testing.assert_array_equal(grads[2], 0.0)
    np.testing.assert_array_equal(grads[3], 0.0)
    permuted_a = np.take_along_axis(s_a, assign_ab.argsort(1)[..., None], axis=1)
    aligned = JIT_COSSIM(s_a, permuted_a, s_a, permuted_a, assign_ab)
    np.testing.assert_allclose(aligned, 0.0, atol=1e-6)


def brute_force_matching(tokens_a: np.ndarray, tokens_b: np.ndarray) -> np.ndarray:
    """Int `[batch, K]`: per image the permutation maximising the total cosine similarity."""
    num_tokens = tokens_a.shape[1]
    best = []
    for a, b in zip(tokens_a, tokens_b):
        scores = {
            perm: sum(cos(a[i], b[j]) for i, j in enumerate(perm))
            for perm in itertools.permutations(range(num_tokens))
        }
        best.append(max(scores, key=scores.get))
    return np.array(best)


def test_match_tokens_maximises_total_cosine() -> None:
    _, _, s_a, s_b, _ = random_views(5, batch=6, num_tokens=5, dim=4)
    expected = brute_force_matching(s_a, s_b)
    np.testing.assert_array_equal(match_tokens(s_a, s_b), expected)
    jitted = jax.jit(match_tokens, static_argnames="method")
    np.testing.assert_array_equal(jitted(s_a, s_b, method="hungarian"), expected)


def test_match_tokens_with_sinkhorn_recovers_a_planted_permutation() -> None:
    rng = np.random.default_rng(6)
    s_a = rng.normal(size=(4, 6, 16)).astype(np.float32)
    perms = np.stack([rng.permutation(6) for _ in range(4)])
    s_b = np.take_along_axis(s_a, perms[..., None], axis=1) + 0.1 * rng.normal(size=s_a.shape)
    expected = brute_force_matching(s_a, s_b)
    np.testing.assert_array_equal(expected, perms.argsort(1))
    np.testing.assert_array_equal(match_tokens(s_a, s_b, method="sinkhorn"), expected)
    np.testing.assert_array_equal(
        match_tokens(s_a, s_b, "sinkhorn", temperature=0.02, num_iterations=100), expected
    )


def test_bad_inputs_raise() -> None:
    p_a, p_b, s_a, s_b, assign_ab = random_views(7)
    with pytest.raises(ValueError, match="temperature"):
        ctr_all(p_a, p_b, assign_ab, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(p_a[:, 0], p_b[:, 0], temperature=-1.0)
    with pytest.raises(ValueError, match="same shapes|matching shapes"):
        ctr_img(p_a, p_b[:, :3], assign_ab)
    with pytest.raises(ValueError, match="assign_ab"):
        ctr_img(p_a, p_b, assign_ab[:, :2])
    with pytest.raises(ValueError, match="assign_ab"):
        ctr_all(p_a, p_b, assign_ab.astype(np.float32))
    with pytest.raises(ValueError, match="same dim"):
        cossim(p_a, p_b, s_a[..., :3], s_b[..., :3], assign_ab)
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        nt_xent(p_a, p_b)
    with pytest.raises(ValueError, match="unknown matching method"):
        match_tokens(s_a, s_b, method="greedy")
