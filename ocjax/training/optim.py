"""Learning-rate schedules and optimisers (optax) built from plain values."""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax


DECAYS = ("constant", "cosine", "exponential")
DECAY_STARTS = ("start", "warmup_end")


def learning_rate_schedule(
    *,
    learning_rate: float,
    warmup_steps: int,
    decay: str,
    total_steps: int,
    decay_steps: int = 0,
    decay_rate: float = 1.0,
    end_learning_rate: float = 0.0,
    decay_from: str = "start",
    warmup_endpoint: bool = False,
) -> optax.Schedule:
    """Step -> learning rate: a linear warm-up from 0 times a decay.

    The warm-up reaches `learning_rate` at step `warmup_steps`, or one step earlier with
    `warmup_endpoint` (`np.linspace(0, lr, warmup_steps)`, SPOT's release). Then `constant`;
    `cosine` to `end_learning_rate` over `decay_steps` (default: the rest of training) from
    the end of the warm-up; or `exponential`, times `decay_rate` every `decay_steps`, counted
    from step 0 (`decay_from="start"`, the Slot Attention paper) or from the end of the
    warm-up (`"warmup_end"`, DINOSAUR's release).
    """
    if decay not in DECAYS:
        raise ValueError(
            f"Unknown optimizer.schedule.decay {decay!r}; use constant, cosine or exponential."
        )
    if decay_from not in DECAY_STARTS:
        raise ValueError(
            f"Unknown optimizer.schedule.decay_from {decay_from!r}; use 'start' (decay counted "
            "from step 0) or 'warmup_end' (counted from the end of the warm-up)."
        )
    if decay == "exponential" and decay_steps <= 0:
        raise ValueError("optimizer.schedule.decay_steps must be positive for exponential decay.")
    ramp = max(warmup_steps - 1 if warmup_endpoint else warmup_steps, 1)
    cosine_steps = max(decay_steps or total_steps - warmup_steps, 1)

    def schedule(step: jax.Array | int) -> jax.Array:
        """The learning rate (a float32 scalar) at `step`."""
        step = jnp.asarray(step, jnp.float32)
        after_warmup = jnp.maximum(step - warmup_steps, 0.0)
        rate = learning_rate * (jnp.minimum(1.0, step / ramp) if warmup_steps else 1.0)
        if decay == "cosine":
            cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(after_warmup / cosine_steps, 1.0)))
            return end_learning_rate + (rate - end_learning_rate) * cosine
        if decay == "exponential":
            decayed = step if decay_from == "start" else after_warmup
            return rate * decay_rate ** (decayed / decay_steps)
        return rate

    return schedule


def make_optimizer(
    name: str,
    schedule: optax.Schedule,
    *,
    weight_decay: float = 0.0,
    grad_clip_norm: float | None = None,
    grad_clip_norm_type: str = "l2",
    frozen: tuple[str, ...] = (),
    b2: float = 0.999,
    decay_matrices_only: bool = False,
    weight_decay_end: float | None = None,
    total_steps: int = 1,
) -> optax.GradientTransformation:
    """Adam, AdamW or SGD on `schedule`, after optional gradient clipping to a total norm.

    `grad_clip_norm_type` is the norm of all gradients together, as PyTorch's
    `clip_grad_norm_`: `l2` (the global norm) or `inf` (the largest absolute entry; SPOT's
    release clips so), or `per_tensor`: each parameter's gradient clipped to its own L2
    norm (DINO's `clip_gradients`). Top-level parameter subtrees named in `frozen` (e.g. a
    pretrained backbone) get no update, no weight decay and no optimiser state, and do not
    count in the norm. For AdamW, `b2` is Adam's second-moment decay (MAE: 0.95);
    `decay_matrices_only` exempts biases, norms and other 1-D parameters from weight decay
    (DINO's, MoCo v3's and MAE's parameter groups); `weight_decay_end` makes the weight
    decay a cosine from `weight_decay` to it over `total_steps` (DINO: 0.04 to 0.4).
    """
    mask = (
        (lambda params: jax.tree.map(lambda p: p.ndim > 1, params)) if decay_matrices_only else None
    )
    decay = (
        cosine_value(weight_decay, weight_decay_end, total_steps)
        if weight_decay_end is not None
        else weight_decay
    )
    optimizer = _optimizer(name, schedule, decay, b2=b2, mask=mask)
    if grad_clip_norm:
        optimizer = optax.chain(clip_by_total_norm(grad_clip_norm, grad_clip_norm_type), optimizer)
    if not frozen:
        return optimizer

    def labels(params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: jax.tree.map(lambda _, k=k: "frozen" if k in frozen else "train", v)
            for k, v in params.items()
        }

    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def from_config(
    optimizer: Mapping[str, Any],
    schedule: optax.Schedule,
    frozen: tuple[str, ...] = (),
    total_steps: int = 1,
) -> optax.GradientTransformation:
    """`make_optimizer` from a config's `optimizer` section (`name`, `weight_decay`,
    `grad_clip_norm` and the optional `grad_clip_norm_type` (default `l2`), `b2`,
    `decay_matrices_only`, `weight_decay_end`)."""
    return make_optimizer(
        optimizer["name"],
        schedule,
        weight_decay=optimizer["weight_decay"],
        grad_clip_norm=optimizer["grad_clip_norm"],
        grad_clip_norm_type=optimizer.get("grad_clip_norm_type", "l2"),
        frozen=frozen,
        b2=optimizer.get("b2", 0.999),
        decay_matrices_only=optimizer.get("decay_matrices_only", False),
        weight_decay_end=optimizer.get("weight_decay_end"),
        total_steps=total_steps,
    )


def cosine_value(start: float, end: float, total_steps: int) -> optax.Schedule:
    """Step -> `end + (start - end) (1 + cos(pi step / total_steps)) / 2` (DINO's
    `cosine_scheduler` without warm-up), held at `end` after `total_steps`."""

    def value(step: jax.Array | int) -> jax.Array:
        progress = jnp.minimum(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 1.0)
        return end + (start - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

    return value


def clip_by_total_norm(max_norm: float, norm_type: str = "l2") -> optax.GradientTransformation:
    """Scales all gradients by `min(1, max_norm / norm)`, `norm` their total `l2` norm or
    their largest absolute entry (`inf`); `l2` is optax's `clip_by_global_norm`."""
    if norm_type == "l2":
        return optax.clip_by_global_norm(max_norm)
    if norm_type == "per_tensor":
        return optax.stateless(
            lambda updates, params=None: jax.tree.map(
                lambda g: g * jnp.minimum(1.0, max_norm / (jnp.linalg.norm(g) + 1e-6)), updates
            )
        )
    if norm_type != "inf":
        raise ValueError(
            f"Unknown optimizer.grad_clip_norm_type {norm_type!r}; use 'l2' (global norm), "
            "'inf' (largest absolute gradient entry) or 'per_tensor' (each parameter's norm)."
        )

    def update(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, Any]:
        """Scales `updates` so that no entry exceeds `max_norm` in absolute value."""
        del params
        leaves = jax.tree.leaves(updates)
        if not leaves:
            return updates, state
        norm = jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in leaves]))
        scale = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _optimizer(
    name: str,
    schedule: optax.Schedule,
    weight_decay: float | optax.Schedule,
    b2: float = 0.999,
    mask: Any = None,
) -> optax.GradientTransformation:
    """Adam, AdamW or SGD (momentum 0.9, L2 weight decay added to the gradient, as
    DeepLab-style training) on `schedule`; AdamW's decay may be a schedule and `mask`ed."""
    if name == "sgd":
        optimizer = optax.chain(
            optax.add_decayed_weights(weight_decay), optax.sgd(schedule, momentum=0.9)
        )
    elif name == "adam":
        if weight_decay:
            raise ValueError("optimizer.weight_decay needs optimizer.name = 'adamw'.")
        optimizer = optax.adam(schedule)
    elif name == "adamw":
        optimizer = optax.chain(
            optax.scale_by_adam(b2=b2),
            _decayed_weights(weight_decay, mask),
            optax.scale_by_learning_rate(schedule),
        )
    else:
        raise ValueError(f"Unknown optimizer.name {name!r}; use adam, adamw or sgd.")
    return optimizer


def _decayed_weights(
    weight_decay: float | optax.Schedule, mask: Any = None
) -> optax.GradientTransformation:
    """`updates + wd(step) * params` where `mask` allows (optax's `add_decayed_weights`
    with a weight decay that may follow a schedule)."""
    if not callable(weight_decay):
        return optax.add_decayed_weights(weight_decay, mask)

    def init(params: Any) -> optax.ScaleByScheduleState:
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        rate = weight_decay(state.count)
        keep = mask(params) if mask is not None else jax.tree.map(lambda _: True, params)
        updates = jax.tree.map(lambda g, p, k: g + rate * p if k else g, updates, params, keep)
        return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def total_steps(num_steps: int | None, num_epochs: float | None, steps_per_epoch: int) -> int:
    """Training length in steps from exactly one of `num_steps` and `num_epochs`."""
    if (num_steps is None) == (num_epochs is None):
        raise ValueError("Set exactly one of training.num_steps and training.num_epochs.")
    if steps_per_epoch < 1:
        raise ValueError(
            "The training split is smaller than one batch; lower "
            "training.batch_size or use more training data."
        )
    steps = num_steps if num_steps is not None else int(round(num_epochs * steps_per_epoch))
    if steps < 1:
        raise ValueError(f"Training would run {steps} steps; raise training.num_steps/num_epochs.")
    return steps


def in_steps(schedule: Mapping[str, Any], steps_per_epoch: int) -> dict[str, Any]:
    """Converts `*_epochs` entries of a schedule config (e.g. `warmup_epochs`) to `*_steps`."""
    out = {}
    for key, value in schedule.items():
        if key.endswith("_epochs"):
            out[key[: -len("_epochs")] + "_steps"] = int(round(value * steps_per_epoch))
        else:
            out[key] = value
    return out
