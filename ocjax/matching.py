"""Assignment solvers for matching rows (e.g. slots) to columns (e.g. objects).

Every solver shares one API::

    solver(cost: float [..., n, m]) -> assignment: int32 [..., n]

``assignment[..., i]`` is the column matched to row ``i``, or ``-1`` when row
``i`` is left unmatched (only possible when ``n > m``). Leading dimensions are
batch dimensions. ``permutation_matrix`` turns an assignment into a one-hot
matrix, e.g. to gather matched targets or to compute a matched loss.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize


def _hungarian_host(cost: np.ndarray) -> np.ndarray:
    """Solve each `[n, m]` problem of a numpy cost `[..., n, m]`; returns int32 `[..., n]`."""
    cost = np.asarray(cost)
    *batch_shape, n, m = cost.shape
    flat_cost = cost.reshape(math.prod(batch_shape), n, m)
    assignment = np.full(flat_cost.shape[:2], -1, dtype=np.int32)
    for item, item_cost in enumerate(flat_cost):
        rows, cols = scipy.optimize.linear_sum_assignment(item_cost)
        assignment[item, rows] = cols
    return assignment.reshape(*batch_shape, n)


def hungarian(cost: jax.Array) -> jax.Array:
    """Min-cost assignment: cost `[..., n, m]` -> int32 `[..., n]` column per row (-1: none).

    Runs `scipy.optimize.linear_sum_assignment` on the host through a single
    `jax.pure_callback` for the whole batch, so it works under `jax.jit`,
    `jax.vmap` (``vmap_method="expand_dims"`` hands the callback the vmapped
    axis as one more batch axis) and with sharded inputs (under `jax.jit` the
    callback sees the full array; inside `jax.shard_map`, each shard).
    The result is integer-valued and carries no gradient; the cost may still
    be used differentiably elsewhere. NaN costs make scipy raise when the
    callback runs.
    """
    cost = jnp.asarray(cost)
    if cost.ndim < 2:
        raise ValueError(
            f"hungarian expects a cost of shape [..., n, m], got shape {cost.shape}; "
            "add the missing row/column axes."
        )
    if not jnp.issubdtype(cost.dtype, jnp.integer) and not jnp.issubdtype(cost.dtype, jnp.floating):
        raise ValueError(
            f"hungarian expects a real numeric cost, got dtype {cost.dtype}; cast it to float."
        )
    result_shape = jax.ShapeDtypeStruct(cost.shape[:-1], jnp.int32)
    return jax.pure_callback(
        _hungarian_host, result_shape, jax.lax.stop_gradient(cost), vmap_method="expand_dims"
    )


def permutation_matrix(assignment: jax.Array, num_cols: int) -> jax.Array:
    """One-hot float `[..., n, num_cols]` from an assignment `[..., n]`; rows with -1 are zero."""
    if num_cols < 0:
        raise ValueError(
            f"num_cols must be >= 0, got {num_cols}; pass the number of cost columns m."
        )
    return jax.nn.one_hot(assignment, num_cols)
