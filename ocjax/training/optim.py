"""Learning-rate schedules and optimisers (optax) built from plain values."""

import jax.numpy as jnp
import optax


def learning_rate_schedule(*, learning_rate: float, warmup_steps: int, decay: str,
                           total_steps: int, decay_steps: int = 0, decay_rate: float = 1.0,
                           end_learning_rate: float = 0.0) -> optax.Schedule:
  """Linear warm-up from 0, then `constant`, `cosine` (to `end_learning_rate` at `total_steps`)
  or `exponential` (times `decay_rate` every `decay_steps`, applied from step 0 as in the
  Slot Attention paper)."""
  warmup = optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1))
  if decay == "constant":
    return optax.join_schedules([warmup, optax.constant_schedule(learning_rate)], [warmup_steps])
  if decay == "cosine":
    cosine = optax.cosine_decay_schedule(
        learning_rate, max(total_steps - warmup_steps, 1), end_learning_rate / learning_rate)
    return optax.join_schedules([warmup, cosine], [warmup_steps])
  if decay == "exponential":
    if decay_steps <= 0:
      raise ValueError("optimizer.decay_steps must be positive for exponential decay.")

    def schedule(step):
      factor = jnp.minimum(1.0, step / max(warmup_steps, 1)) if warmup_steps else 1.0
      return learning_rate * factor * decay_rate ** (step / decay_steps)
    return schedule
  raise ValueError(f"Unknown optimizer.decay {decay!r}; use constant, cosine or exponential.")


def make_optimizer(name: str, schedule: optax.Schedule, *, weight_decay: float = 0.0,
                   grad_clip_norm: float | None = None) -> optax.GradientTransformation:
  """Adam or AdamW on `schedule`, after optional global-norm gradient clipping."""
  if name == "adam":
    if weight_decay:
      raise ValueError("optimizer.weight_decay needs optimizer.name = 'adamw'.")
    optimizer = optax.adam(schedule)
  elif name == "adamw":
    optimizer = optax.adamw(schedule, weight_decay=weight_decay)
  else:
    raise ValueError(f"Unknown optimizer.name {name!r}; use adam or adamw.")
  if grad_clip_norm:
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), optimizer)
  return optimizer
