"""Tests for the Sinkhorn solver of ocjax.matching against numpy and scipy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from ocjax.matching import SOLVERS, hungarian, sinkhorn, sinkhorn_assignment, solve


def numpy_sinkhorn(cost: np.ndarray, temperature: float, tolerance: float = 1e-12) -> np.ndarray:
    """Float64 Sinkhorn plan for costs `[b, n, m]` with unit row and column capacities,
    converged: scaling iterations, then Newton steps on the log-scalings until every
    marginal is within `tolerance` of its target.

    The n < m (n > m) case adds a single slack row (column) of zero cost that
    carries the |m - n| units of spare capacity, then drops it.
    """
    cost = np.asarray(cost, np.float64)
    batch, n, m = cost.shape
    row_mass, col_mass = np.ones(n), np.ones(m)
    if n < m:
        cost = np.concatenate([cost, np.zeros((batch, 1, m))], axis=1)
        row_mass = np.append(row_mass, m - n)
    if n > m:
        cost = np.concatenate([cost, np.zeros((batch, n, 1))], axis=2)
        col_mass = np.append(col_mass, n - m)
    kernel = np.exp(-cost / temperature)
    row_scale = np.ones((batch, len(row_mass)))
    for _ in range(2_000):
        col_scale = col_mass / np.einsum("bij,bi->bj", kernel, row_scale)
        row_scale = row_mass / np.einsum("bij,bj->bi", kernel, col_scale)
    log_row, log_col = np.log(row_scale), np.log(col_scale)
    rows = len(row_mass)
    for _ in range(50):
        plan = np.exp(log_row)[:, :, None] * kernel * np.exp(log_col)[:, None, :]
        residual = np.concatenate([plan.sum(2) - row_mass, plan.sum(1) - col_mass], axis=1)
        if np.abs(residual).max() < tolerance:
            return plan[:, :n, :m]
        for item in range(batch):  # Newton: J [dx; dy] = -r, J singular along (1, -1).
            jacobian = np.block(
                [
                    [np.diag(plan[item].sum(1)), plan[item]],
                    [plan[item].T, np.diag(plan[item].sum(0))],
                ]
            )
            step = np.linalg.lstsq(jacobian, -residual[item], rcond=None)[0]
            log_row[item] += step[:rows]
            log_col[item] += step[rows:]
    raise AssertionError("the float64 reference did not converge")


def planted_costs(
    rng: np.random.Generator, batch: int, n: int, m: int, margin: float = 1.0
) -> np.ndarray:
    """Costs `[batch, n, m]`: small noise, minus `margin` on a random one-to-one set of cells."""
    costs = 0.1 * rng.random((batch, n, m))
    for item in range(batch):
        rows = rng.permutation(n)[: min(n, m)]
        cols = rng.permutation(m)[: min(n, m)]
        costs[item, rows, cols] -= margin
    return costs.astype(np.float32)


def scipy_assignment(cost: np.ndarray) -> np.ndarray:
    """Int `[n]` min-cost assignment of `[n, m]` by scipy, -1 for unmatched rows."""
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    assignment = np.full(cost.shape[0], -1)
    assignment[rows] = cols
    return assignment


@pytest.mark.parametrize("n, m", [(1, 1), (4, 4), (3, 6), (6, 3), (7, 7)])
def test_readout_equals_hungarian_on_well_separated_costs(n: int, m: int) -> None:
    costs = planted_costs(np.random.default_rng(10 * n + m), 5, n, m)
    assignment = np.asarray(sinkhorn_assignment(jnp.asarray(costs)))
    assert assignment.shape == (5, n) and assignment.dtype == np.int32
    np.testing.assert_array_equal(assignment, np.asarray(hungarian(jnp.asarray(costs))))
    for cost, item in zip(costs, assignment):
        np.testing.assert_array_equal(item, scipy_assignment(cost))


@pytest.mark.parametrize("n, m", [(5, 5), (3, 7), (7, 3)])
def test_readout_is_one_to_one_on_random_and_tied_costs(n: int, m: int) -> None:
    rng = np.random.default_rng(n + m)
    costs = np.concatenate([rng.random((4, n, m)), np.zeros((1, n, m))]).astype(np.float32)
    for item in np.asarray(sinkhorn_assignment(jnp.asarray(costs), 0.1, 20)):
        matched = item[item >= 0]
        assert len(matched) == min(n, m) and len(set(matched.tolist())) == min(n, m)
        assert np.all(matched < m) and np.all(item[item < 0] == -1)


@pytest.mark.parametrize("n, m", [(4, 4), (3, 5), (5, 3)])
def test_plan_matches_numpy_reference_and_marginals(n: int, m: int) -> None:
    costs = np.random.default_rng(n * m).random((3, n, m)).astype(np.float32)
    plan = np.asarray(sinkhorn(jnp.asarray(costs), temperature=0.3))
    np.testing.assert_allclose(plan, numpy_sinkhorn(costs, 0.3), atol=2e-5)
    rows, cols = plan.sum(axis=2), plan.sum(axis=1)
    if n <= m:
        np.testing.assert_allclose(rows, 1.0, atol=1e-5)
        assert np.all(cols <= 1.0 + 1e-5)
    if n >= m:
        np.testing.assert_allclose(cols, 1.0, atol=1e-4)
        assert np.all(rows <= 1.0 + 1e-5)
    np.testing.assert_allclose(plan.sum(axis=(1, 2)), min(n, m), rtol=1e-5)


@pytest.mark.parametrize("n,m", [(4, 4), (7, 7), (11, 11), (7, 11), (11, 7)])
def test_default_plan_is_within_1e4_of_the_converged_plan(n: int, m: int) -> None:
    cost = np.random.default_rng(n * 100 + m).uniform(size=(200, n, m)).astype(np.float32)
    plan = np.asarray(jax.jit(sinkhorn)(cost))
    np.testing.assert_allclose(plan, numpy_sinkhorn(cost, 0.05), rtol=0, atol=1e-4)


def test_plan_is_invariant_to_a_constant_cost_shift() -> None:
    cost = jnp.asarray(np.random.default_rng(3).random((2, 3, 5)), jnp.float32)
    np.testing.assert_allclose(sinkhorn(cost, 0.2), sinkhorn(cost + 7.0, 0.2), atol=1e-5)


@pytest.mark.parametrize("n, m, temperature", [(3, 4, 0.5), (4, 3, 0.5), (4, 4, 0.1)])
def test_gradient_equals_finite_differences_of_the_converged_numpy_plan(
    n: int, m: int, temperature: float
) -> None:
    rng = np.random.default_rng(4 + n)
    cost = rng.random((1, n, m))
    weights = rng.normal(size=(1, n, m))

    def objective(c: jax.Array) -> jax.Array:
        return jnp.sum(sinkhorn(c, temperature=temperature, tolerance=1e-7) * weights)

    grad = np.asarray(jax.jit(jax.grad(objective))(jnp.asarray(cost, jnp.float32)))
    assert np.all(np.isfinite(grad))
    numeric = np.zeros_like(cost)
    step = 1e-5
    for index in np.ndindex(cost.shape):
        delta = np.zeros_like(cost)
        delta[index] = step
        upper = np.sum(numpy_sinkhorn(cost + delta, temperature) * weights)
        lower = np.sum(numpy_sinkhorn(cost - delta, temperature) * weights)
        numeric[index] = (upper - lower) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=2e-4 * np.abs(numeric).max())


def test_jit_vmap_and_registry() -> None:
    costs = jnp.asarray(planted_costs(np.random.default_rng(5), 6, 4, 5))
    eager = sinkhorn_assignment(costs)
    jitted = jax.jit(sinkhorn_assignment, static_argnames=("temperature", "num_iterations"))
    np.testing.assert_array_equal(jitted(costs, temperature=0.05, num_iterations=50), eager)
    np.testing.assert_array_equal(jax.vmap(sinkhorn_assignment)(costs), eager)
    solve_sinkhorn = functools.partial(solve, method="sinkhorn", temperature=0.05)
    np.testing.assert_array_equal(jax.jit(solve_sinkhorn)(costs), eager)
    np.testing.assert_array_equal(solve(costs, "hungarian"), eager)
    assert set(SOLVERS) == {"hungarian", "sinkhorn"}


def test_empty_problems() -> None:
    np.testing.assert_array_equal(sinkhorn_assignment(jnp.zeros((2, 3, 0))), -np.ones((2, 3)))
    assert sinkhorn(jnp.zeros((2, 0, 3))).shape == (2, 0, 3)


def test_bad_inputs_raise() -> None:
    cost = jnp.zeros((3, 3))
    for temperature in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            sinkhorn(cost, temperature=temperature)
        with pytest.raises(ValueError, match="temperature"):
            sinkhorn_assignment(cost, temperature=temperature)
    with pytest.raises(ValueError, match="static"):
        jax.jit(sinkhorn)(cost, 0.1)
    for num_iterations in (0, 2.5, True):
        with pytest.raises(ValueError, match="iterations"):
            sinkhorn(cost, max_iterations=num_iterations)
        with pytest.raises(ValueError, match="iterations"):
            sinkhorn_assignment(cost, num_iterations=num_iterations)
    for tolerance in (-1e-5, float("nan")):
        with pytest.raises(ValueError, match="tolerance"):
            sinkhorn(cost, tolerance=tolerance)
    with pytest.raises(ValueError, match="shape"):
        sinkhorn(jnp.zeros(3))
    with pytest.raises(ValueError, match="unknown matching method"):
        solve(cost, "auction")


@pytest.mark.parametrize("n,m", [(4, 4), (7, 7), (11, 11), (7, 11), (11, 7)])
def test_default_readout_is_optimal_on_99_percent_of_random_costs(n: int, m: int) -> None:
    cost = np.random.default_rng(n * 100 + m).uniform(size=(200, n, m)).astype(np.float32)
    assignment = np.asarray(jax.jit(sinkhorn_assignment)(cost))
    optimal = 0
    for c, a in zip(cost, assignment):
        rows, cols = scipy.optimize.linear_sum_assignment(c)
        got = sum(c[r, a[r]] for r in range(n) if a[r] >= 0)
        optimal += bool(np.isclose(got, c[rows, cols].sum(), rtol=0, atol=1e-5))
    assert optimal >= 0.99 * len(cost), optimal
