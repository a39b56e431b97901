"""The training state: step, parameters and optimiser state as one pytree."""

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
    """Everything a training run needs to continue; the data position is `step` itself.

    `model_state` holds the model's non-trainable collections (e.g. BatchNorm `batch_stats`),
    empty for models without any.
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    model_state: dict[str, Any]

    @property
    def variables(self) -> dict[str, Any]:
        """The Flax variables to `apply` the model with."""
        return {"params": self.params, **self.model_state}


def create_state(variables: dict[str, Any], tx: optax.GradientTransformation) -> TrainState:
    """Wraps freshly initialised Flax `variables` with the optimiser state of `tx` at step 0."""
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    return TrainState(
        step=jax.numpy.zeros((), jax.numpy.int32),
        params=params,
        opt_state=tx.init(params),
        model_state=model_state,
    )
