"""Tests for ocjax.matching against brute-force and scipy references."""

import itertools
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ocjax.matching import hungarian, permutation_matrix
from tests.conftest import FAST_COMPILE


def brute_force_min_cost(cost: np.ndarray) -> float:
    """Minimum total cost over all matchings of min(n, m) rows to distinct columns of `[n, m]`."""
    n, m = cost.shape
    if n <= m:
        matchings = itertools.permutations(range(m), n)
        return min(cost[np.arange(n), list(cols)].sum() for cols in matchings)
    matchings = itertools.permutations(range(n), m)
    return min(cost[list(rows), np.arange(m)].sum() for rows in matchings)


def check_optimal(cost: np.ndarray, assignment: np.ndarray) -> None:
    """Assert `assignment` `[n]` is a valid matching of cost `[n, m]` with brute-force min cost."""
    n, m = cost.shape
    matched = np.flatnonzero(assignment >= 0)
    assert len(matched) == min(n, m)
    assert len(set(assignment[matched].tolist())) == len(matched)
    assert np.all(assignment[assignment < 0] == -1)
    total = cost[matched, assignment[matched]].sum()
    np.testing.assert_allclose(total, brute_force_min_cost(cost), rtol=1e-5)


@pytest.mark.parametrize("n, m", [(1, 1), (3, 3), (4, 4), (2, 5), (3, 6), (5, 2), (6, 3)])
def test_hungarian_matches_brute_force(n: int, m: int) -> None:
    costs = np.random.default_rng(n * 10 + m).normal(size=(2, 3, n, m)).astype(np.float32)
    assignment = np.asarray(hungarian(jnp.asarray(costs)))
    assert assignment.shape == (2, 3, n) and assignment.dtype == np.int32
    for cost, item in zip(costs.reshape(-1, n, m), assignment.reshape(-1, n)):
        check_optimal(cost, item)


def test_hungarian_integer_cost_and_empty_columns() -> None:
    cost = np.random.default_rng(0).integers(0, 9, size=(4, 4))
    check_optimal(cost.astype(np.float64), np.asarray(hungarian(jnp.asarray(cost))))
    np.testing.assert_array_equal(hungarian(jnp.zeros((2, 3, 0))), -np.ones((2, 3)))


def test_hungarian_under_jit_and_vmap() -> None:
    costs = jnp.asarray(np.random.default_rng(1).random((5, 4, 3, 6)), dtype=jnp.float32)
    per_item = np.stack([np.asarray(hungarian(c)) for c in costs])
    np.testing.assert_array_equal(jax.jit(hungarian)(costs), per_item)
    np.testing.assert_array_equal(jax.vmap(hungarian)(costs), per_item)
    np.testing.assert_array_equal(jax.jit(jax.vmap(jax.vmap(hungarian)))(costs), per_item)
    swapped = jax.vmap(hungarian, in_axes=1, out_axes=1)(jnp.swapaxes(costs, 0, 1))
    np.testing.assert_array_equal(jnp.swapaxes(swapped, 0, 1), per_item)


def test_gradient_flows_through_cost_only() -> None:
    cost = jnp.asarray(np.random.default_rng(2).random((3, 4)), dtype=jnp.float32)

    def matched_cost(c: jax.Array) -> jax.Array:
        return jnp.sum(permutation_matrix(hungarian(c), 4) * c)

    grad = jax.jit(jax.grad(matched_cost))(cost)
    np.testing.assert_array_equal(grad, permutation_matrix(hungarian(cost), 4))


def test_permutation_matrix_one_hot_and_unmatched_rows() -> None:
    assignment = jnp.array([[2, -1, 0]])
    expected = np.array([[[0, 0, 1], [0, 0, 0], [1, 0, 0]]], dtype=np.float32)
    np.testing.assert_array_equal(permutation_matrix(assignment, 3), expected)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        hungarian(jnp.zeros(3))
    with pytest.raises(ValueError, match="dtype"):
        hungarian(jnp.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="num_cols"):
        permutation_matrix(jnp.zeros(2, dtype=jnp.int32), -1)


MESH_SCRIPT = textwrap.dedent(
    """
    import jax
    import numpy as np
    import scipy.optimize
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from ocjax.matching import hungarian

    assert len(jax.devices()) == 8, jax.devices()
    mesh = Mesh(jax.devices(), ("data",))
    costs = np.random.default_rng(0).random((16, 4, 6)).astype(np.float32)
    sharded = jax.device_put(costs, NamedSharding(mesh, P("data")))
    per_shard = jax.shard_map(hungarian, mesh=mesh, in_specs=P("data"), out_specs=P("data"))
    results = [jax.jit(hungarian)(sharded), jax.jit(per_shard)(sharded)]
    for result in results:
        for cost, assignment in zip(costs, np.asarray(result)):
            rows, cols = scipy.optimize.linear_sum_assignment(cost)
            np.testing.assert_array_equal(assignment[rows], cols)
    print("mesh ok")
    """
)


def test_hungarian_on_sharded_inputs_over_8_cpu_devices() -> None:
    repo_root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")])),
    )
    completed = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "mesh ok" in completed.stdout
