"""The training state: step, parameters and optimiser state as one pytree."""

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a training run needs to continue; the data position is `step` itself."""

  step: jax.Array
  params: Any
  opt_state: optax.OptState


def create_state(params: Any, tx: optax.GradientTransformation) -> TrainState:
  """Wraps freshly initialised `params` with the optimiser state of `tx` at step 0."""
  return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                    opt_state=tx.init(params))
