"""Jit-compiled train and eval steps (pure functions; the trainer binds and shards them)."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ocjax import metrics as seg
from ocjax.metrics import otsu, parts
from ocjax.training.objectives import Objective, finite
from ocjax.training.state import TrainState


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    objective: Objective,
    schedule: optax.Schedule,
    rng: jax.Array,
    augment: Callable[[dict[str, jax.Array]], dict[str, jax.Array]] | None = None,
    after_update: Callable[[Any, jax.Array], Any] | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step on `batch`, first passed through `augment` if given (on device,
    e.g. `TwoViewAugment.render`); the objective sees the batch with its `step`. After the
    update, `after_update(params, step)` may move parameters the optimiser leaves alone
    (a momentum encoder's EMA). A step whose loss or gradient is not finite leaves the
    state unchanged (so the last good state can be saved) and reports `finite = 0`."""
    step_rng = jax.random.fold_in(rng, state.step)
    if augment is not None:
        batch = augment(batch)
    batch = {**batch, "step": state.step}

    mutable = list(state.model_state)

    def loss_fn(params):
        outputs, model_state = model.apply(
            {"params": params, **state.model_state},
            objective.train_inputs(batch),
            train=True,
            rngs={"slots": step_rng},
            mutable=mutable,
        )
        loss, terms = objective.loss(outputs, batch)
        return loss, (terms, model_state)

    (loss, (terms, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    ok = finite({"loss": loss, "grad_norm": grad_norm})
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if after_update is not None:
        params = after_update(params, state.step)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    new_state = TrainState(
        step=state.step + 1,
        params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
        model_state=keep(dict(model_state), state.model_state),
    )
    metrics = {
        "loss": loss,
        **{f"loss/{k}": v for k, v in terms.items()},
        "grad_norm": grad_norm,
        "learning_rate": schedule(state.step),
        "finite": ok.astype(jnp.float32),
    }
    return new_state, metrics


def eval_step(
    variables: Any,
    batch: dict[str, jax.Array],
    *,
    model: nn.Module,
    objective: Objective,
    rng: jax.Array,
    num_true: int,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Outputs, masks, features, read-out points, object attributes and per-image metrics `[b]`.

    With `num_classes` (the object classes of the dataset in `shape`, e.g. COCO's 80
    categories), `mbo_c` is the mBO over semantic masks built from the instances' classes.

    For each kind of predicted mask: FG-ARI, ARI, mBO, Hungarian mIoU, NMI and FG-NMI of the argmax
    segmentation, plus Otsu-IoU/Dice for the kinds the objective names, over the pixels
    whose `pixel_valid` is True (overlaps and ignored regions excluded). Padded rows and
    images without foreground get weight 0. `readout` holds the objective's read-out points
    `[b, h, w, f]` for host-side clustering (None without a read-out); `tables` the
    contingency tables `[num_true, num_pred]` summed over the batch's images for the mask
    kinds the objective scores over the whole split (`pooled_masks`).
    """
    inputs = objective.eval_inputs(batch) if objective.eval_inputs else batch["image"]
    outputs = model.apply(variables, inputs, train=False, rngs={"slots": rng})
    true_ids, valid, pixels = batch["segmentation"], batch["valid"], batch["pixel_valid"]
    has_fg = seg.has_foreground(true_ids, valid=pixels) & valid
    per_image, weights = {}, {}
    masks = objective.masks(outputs, true_ids.shape[1:])
    for name, m in masks.items():
        pred_ids, num_pred = seg.ids_from_masks(m), m.shape[1]
        scores = {
            "fg_ari": seg.fg_ari(true_ids, pred_ids, num_true, num_pred, valid=pixels),
            "ari": seg.ari(true_ids, pred_ids, num_true, num_pred, valid=pixels),
            "mbo": seg.mbo(true_ids, pred_ids, num_true, num_pred, valid=pixels),
            "miou": seg.miou(true_ids, pred_ids, num_true, num_pred, valid=pixels),
            "nmi": parts.nmi(true_ids, pred_ids, num_true, num_pred, valid=pixels),
            "fg_nmi": parts.nmi(true_ids, pred_ids, num_true, num_pred, True, pixels),
        }
        if num_classes is not None:
            semantic = seg.class_ids(true_ids, batch["shape"], batch["present"])
            scores["mbo_c"] = seg.mbo(semantic, pred_ids, num_classes + 1, num_pred, valid=pixels)
        if name in objective.otsu_masks:
            scores["otsu_iou"] = otsu.otsu_iou(m, true_ids, num_true, valid=pixels)
            scores["otsu_dice"] = otsu.otsu_dice(m, true_ids, num_true, valid=pixels)
        for metric, values in scores.items():
            per_image[f"{name}/{metric}"] = values
            weights[f"{name}/{metric}"] = valid if metric in ("ari", "nmi") else has_fg
    if objective.statistics is not None:
        for name, values in objective.statistics(outputs).items():
            per_image[f"tokens/{name}"] = values
            weights[f"tokens/{name}"] = valid
    tables = {
        name: jnp.einsum(
            "b,btp->tp",
            valid.astype(jnp.float32),
            parts.contingency(
                true_ids,
                seg.ids_from_masks(masks[name]),
                num_true,
                masks[name].shape[1],
                valid=pixels,
            ),
        )
        for name in objective.pooled_masks
    }
    features = objective.features(outputs) if objective.features else None
    readout = objective.readout.points(outputs) if objective.readout else None
    if readout is not None and readout.shape[1:3] != true_ids.shape[1:]:
        # Points on a coarser grid (an encoder's patch tokens) stand for their pixels.
        readout = jax.image.resize(
            readout, (readout.shape[0], *true_ids.shape[1:], readout.shape[-1]), "nearest"
        )
    attributes = {k: batch[k] for k in ("size", "color", "material", "shape", "present", "valid")}
    return {
        "per_image": per_image,
        "weights": weights,
        "outputs": outputs,
        "masks": masks,
        "features": features,
        "readout": readout,
        "attributes": attributes,
        "tables": tables,
    }
