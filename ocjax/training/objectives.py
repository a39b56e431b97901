"""Objectives: what a system feeds its model, how outputs become a loss, what it evaluates.

An objective is built from `config.objective` (`name` plus that objective's options) and
is a bundle of pure functions: `train_inputs(batch)`, `loss(outputs, batch) -> (loss,
terms)`, `masks(outputs, image_size) -> {name: [b, k, h, w]}`, for the VQA probe
`features(outputs) -> [b, k, d]` and, for the synchrony models, a `Readout` whose per-pixel
points `[b, h, w, f]` are computed on device and clustered on the host.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ocjax import losses
from ocjax.losses import contrastive, distillation
from ocjax.losses import parts as part_losses
from ocjax.losses import self_supervised as ssl
from ocjax.models import readout as readout_lib

Outputs = dict[str, jax.Array]
Batch = dict[str, jax.Array]
OBJECT_LOSSES = ("ctr_all", "ctr_img", "cossim")


@dataclasses.dataclass(frozen=True)
class Readout:
    """Object read-out by clustering: `points(outputs) -> [b, h, w, f]` (jitted), k-means on host.

    `num_clusters` None clusters each image into its number of objects + 1 (the official
    CAE / Rotating Features protocol); an int fixes K for every image. With `pooled`, one
    k-means with that K is also fitted on up to `pooled_points_per_image` points of every
    image of the split and scored over the whole split (`readout/pooled_...`).
    """

    points: Callable[[Outputs], jax.Array]
    num_clusters: int | None = None
    n_init: int = 10
    pooled: bool = False
    pooled_points_per_image: int = 64

    def __post_init__(self) -> None:
        if self.pooled and not self.num_clusters:
            raise ValueError("a pooled read-out needs a fixed num_clusters (one K for the split).")


@dataclasses.dataclass(frozen=True)
class Objective:
    """The loss of a system and the object masks and features it is evaluated on."""

    train_inputs: Callable[[Batch], jax.Array]
    loss: Callable[[Outputs, Batch], tuple[jax.Array, dict[str, jax.Array]]]
    masks: Callable[[Outputs, tuple[int, int]], dict[str, jax.Array]]
    features: Callable[[Outputs], jax.Array] | None = None
    otsu_masks: tuple[str, ...] = ()
    readout: Readout | None = None
    eval_inputs: Callable[[Batch], jax.Array] | None = None  # Default: `batch["image"]`.
    # Mask kinds also scored over the whole split (contingency tables summed over images),
    # for labels that mean the same in every image (part labels): `<kind>/pooled_...`.
    pooled_masks: tuple[str, ...] = ()
    # Per-image diagnostics of the outputs `{name: [b]}` (e.g. an encoder's token statistics),
    # averaged over the split like the mask metrics.
    statistics: Callable[[Outputs], dict[str, jax.Array]] | None = None


def attention_masks(attention: jax.Array, image_size: tuple[int, int]) -> jax.Array:
    """Nearest-upsamples attention `[b, k, n]` over a square token grid to `[b, k, h, w]`."""
    batch, num_slots, num_inputs = attention.shape
    side = int(round(num_inputs**0.5))
    if side * side != num_inputs:
        raise ValueError(f"Attention over {num_inputs} inputs is not a square grid.")
    grid = attention.reshape(batch, num_slots, side, side)
    return jax.image.resize(grid, (batch, num_slots, *image_size), "nearest")


def _reconstruction_loss(outputs: Outputs, batch: Batch) -> tuple[jax.Array, dict]:
    """MSE between `reconstruction` and `image` `[b, h, w, c]`."""
    loss = losses.mse(outputs["reconstruction"], batch["image"])
    return loss, {"mse": loss}


def resize_masks(masks: jax.Array, image_size: tuple[int, int]) -> jax.Array:
    """Masks `[b, k, h, w]` bilinearly resized to `image_size` (unchanged if already there),
    e.g. to ground truth stored finer than the images."""
    if tuple(masks.shape[2:]) == tuple(image_size):
        return masks
    return jax.image.resize(masks, masks.shape[:2] + tuple(image_size), "bilinear")


def autoencoder() -> Objective:
    """Pixel reconstruction; masks from decoder alphas and from the first attention map."""
    return Objective(
        train_inputs=lambda batch: batch["image"],
        loss=_reconstruction_loss,
        masks=lambda out, size: {
            "decoder": resize_masks(out["masks"], size),
            "attention": attention_masks(out["attention"], size),
        },
    )


def patch_masks(masks: jax.Array, image_size: tuple[int, int]) -> jax.Array:
    """Bilinearly upsamples masks `[b, k, n]` over a square patch grid to `[b, k, h, w]`
    (DINOSAUR's evaluation: masks resized to the evaluation size, then argmax)."""
    batch, num_slots, num_patches = masks.shape
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(f"Masks over {num_patches} patches are not a square grid.")
    grid = masks.reshape(batch, num_slots, side, side)
    return jax.image.resize(grid, (batch, num_slots, *image_size), "bilinear")


def _feature_loss(
    outputs: Outputs, batch: Batch, *, distillation_weight: float
) -> tuple[jax.Array, dict]:
    """MSE between the decoded and the frozen backbone features `[b, n, f]`, plus SPOT's
    attention distillation towards a teacher's masks when `distillation_weight` > 0."""
    del batch
    mse = losses.mse(outputs["reconstruction"], outputs["features"])
    if not distillation_weight:
        return mse, {"feature_mse": mse}
    if "teacher_masks" not in outputs:
        raise ValueError(
            "objective.distillation_weight > 0 needs a teacher: set model.teacher.workdir to "
            "the teacher run (SPOT's first stage)."
        )
    distill = distillation.attention_distillation(
        outputs["attention_logits"], outputs["teacher_masks"]
    )
    return mse + distillation_weight * distill, {"feature_mse": mse, "distillation": distill}


def _feature_inputs(batch: Batch) -> jax.Array | dict[str, jax.Array]:
    """The backbone's cached outputs (`features`, and `hidden` when fine-tuning) where the
    batch carries them (`data.cache_features`), else the images."""
    cached = {k: batch[k] for k in ("features", "hidden") if k in batch}
    return cached or batch["image"]


def feature_reconstruction(distillation_weight: float = 0.0) -> Objective:
    """DINOSAUR / SPOT: reconstruct frozen ViT features (SPOT's student also distils its
    teacher's masks into its Slot Attention); masks from the decoder and from Slot
    Attention (the iteration the model's `attention_iteration` names; the releases' last),
    both upsampled bilinearly from the patch grid. The model reads the backbone's cached
    outputs where the batches carry them (`data.cache_features`)."""
    if distillation_weight < 0:
        raise ValueError(f"objective.distillation_weight must be >= 0, got {distillation_weight}.")
    return Objective(
        train_inputs=_feature_inputs,
        eval_inputs=_feature_inputs,
        loss=functools.partial(_feature_loss, distillation_weight=distillation_weight),
        masks=lambda out, size: {
            "decoder": patch_masks(out["masks"], size),
            "attention": patch_masks(out["attention"], size),
        },
        features=lambda out: out["slots"],
    )


def _part_inputs(batch: Batch) -> jax.Array:
    """Image and foreground mask as one `[b, h, w, 4]` input (part discovery)."""
    if "foreground" not in batch:
        raise ValueError(
            "objective 'part_discovery' needs a dataset with a foreground mask (e.g. "
            "data.name = 'parts_like'); this one has none."
        )
    if "view_a" in batch or "view_a_box" in batch:
        raise ValueError(
            "objective 'part_discovery' segments the image itself, not two augmented views; "
            "remove data.views."
        )
    fg = batch["foreground"].astype(batch["image"].dtype)[..., None]
    return jnp.concatenate([batch["image"], fg], axis=-1)


def _part_loss(
    outputs: Outputs,
    batch: Batch,
    *,
    feature_weight: float,
    contrastive_weight: float,
    visual_weight: float,
    equivariance_weight: float,
    temperature: float,
) -> tuple[jax.Array, dict]:
    """`λf L_f + λc L_c + λv L_v + λe L_e` on the foreground (`ocjax.losses.parts`)."""
    parts, fg = outputs["parts"], outputs["foreground"]
    images = batch["image"]
    z = part_losses.part_descriptors(parts, outputs["features"], fg)
    terms = {
        "feature": part_losses.feature_loss(parts, outputs["features"], fg),
        "contrastive": part_losses.contrastive_loss(z, temperature),
        "visual": part_losses.visual_consistency_loss(parts, images, fg),
        "equivariance": part_losses.equivariance_loss(
            outputs["view_parts"], outputs["warped_parts"], outputs["view_valid"]
        ),
    }
    weights = {
        "feature": feature_weight,
        "contrastive": contrastive_weight,
        "visual": visual_weight,
        "equivariance": equivariance_weight,
    }
    total = sum(weights[k] * v for k, v in terms.items())
    return total, terms


def part_discovery(
    feature_weight: float = 5.0,
    contrastive_weight: float = 2.3e3,
    visual_weight: float = 30.0,
    equivariance_weight: float = 5.7e3,
    temperature: float = 0.07,
    baseline_clusters: int | None = None,
) -> Objective:
    """Choudhury et al. (2021): the four weighted losses; masks `parts` (background + K).

    The paper scores part maps over the whole split (`parts/pooled_fg_ari`, ...: part k
    must be the same part in every image); per-image scores are kept beside them. With
    `baseline_clusters` = K, evaluation also scores the paper's baseline, k-means of the
    frozen features on the object's pixels: one k-means over the split
    (`readout/pooled_fg_ari`, ...) and one per image (`readout/ari_bg` (FG-ARI),
    `readout/fg_nmi`, `readout/mbo`).
    """
    weights = (feature_weight, contrastive_weight, visual_weight, equivariance_weight)
    if min(weights) < 0 or not any(weights):
        raise ValueError("objective loss weights must be >= 0 and not all 0.")
    if temperature <= 0:
        raise ValueError(f"objective.temperature must be > 0, got {temperature}.")
    return Objective(
        train_inputs=_part_inputs,
        eval_inputs=_part_inputs,
        loss=functools.partial(
            _part_loss,
            feature_weight=feature_weight,
            contrastive_weight=contrastive_weight,
            visual_weight=visual_weight,
            equivariance_weight=equivariance_weight,
            temperature=temperature,
        ),
        masks=lambda out, size: {"parts": resize_masks(out["masks"], size)},
        readout=(
            Readout(points=lambda out: out["features"], num_clusters=baseline_clusters, pooled=True)
            if baseline_clusters
            else None
        ),
        pooled_masks=("parts",),
    )


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Splits the leading axis `[2b, ...]` into the two views `[b, ...]`."""
    half = x.shape[0] // 2
    return x[:half], x[half:]


def _contrastive_loss(
    outputs: Outputs,
    batch: Batch,
    *,
    global_weight: float,
    object_weight: float,
    object_loss: str,
    temperature: float,
    match: Callable[[jax.Array, jax.Array], jax.Array],
) -> tuple[jax.Array, dict]:
    """Weighted global NT-Xent plus an object loss on tokens matched across the two views."""
    del batch
    terms, total = {}, jnp.zeros((), jnp.float32)
    if global_weight:
        terms["global"] = contrastive.nt_xent(*_split(outputs["global_projection"]), temperature)
        total = total + global_weight * terms["global"]
    if object_weight:
        s_a, s_b = _split(outputs["objects"])
        p_a, p_b = _split(outputs["object_projections"])
        assignment = match(s_a, s_b)
        if object_loss == "cossim":
            terms[object_loss] = contrastive.cossim(p_a, p_b, s_a, s_b, assignment)
        else:
            loss_fn = contrastive.ctr_all if object_loss == "ctr_all" else contrastive.ctr_img
            terms[object_loss] = loss_fn(p_a, p_b, assignment, temperature)
        total = total + object_weight * terms[object_loss]
    return total, terms


def contrastive_objective(
    global_weight: float = 1.0,
    object_weight: float = 0.05,
    object_loss: str = "cossim",
    temperature: float = 0.1,
    matching: str = "hungarian",
    sinkhorn_temperature: float = 5e-4,
    sinkhorn_iterations: int = 100,
) -> Objective:
    """Seed 004: two views per image, global NT-Xent and a matched object loss."""
    if object_loss not in OBJECT_LOSSES:
        raise ValueError(
            f"Unknown objective.object_loss {object_loss!r}; use one of {OBJECT_LOSSES}."
        )
    if temperature <= 0:
        raise ValueError(f"objective.temperature must be > 0, got {temperature}.")
    if global_weight < 0 or object_weight < 0 or not (global_weight or object_weight):
        raise ValueError(
            "objective.global_weight and objective.object_weight must be >= 0 and not both 0."
        )
    solver = (
        {"temperature": sinkhorn_temperature, "num_iterations": sinkhorn_iterations}
        if matching == "sinkhorn"
        else {}
    )
    match = functools.partial(contrastive.match_tokens, method=matching, **solver)
    loss = functools.partial(
        _contrastive_loss,
        global_weight=global_weight,
        object_weight=object_weight,
        object_loss=object_loss,
        temperature=temperature,
        match=match,
    )

    def masks(out: Outputs, size: tuple[int, int]) -> dict[str, jax.Array]:
        return {"attention": attention_masks(out["attention"], size)} if "attention" in out else {}

    def features(out: Outputs) -> jax.Array:
        return out["objects"] if "objects" in out else out["global"][:, None]

    return Objective(
        train_inputs=lambda batch: jnp.concatenate([batch["view_a"], batch["view_b"]]),
        loss=loss,
        masks=masks,
        features=features,
        otsu_masks=("attention",),
    )


def _synchrony_points(outputs: Outputs, threshold: float) -> jax.Array:
    """Orientations `[b, h, w, n]` of `rotating` outputs, else CAE phases `[b, h, w, 2]`."""
    if "rotating" in outputs:
        return readout_lib.rotating_readout(outputs["rotating"], threshold)
    if "phase" in outputs:
        return readout_lib.complex_readout(outputs["magnitude"], outputs["phase"], threshold)
    raise ValueError(
        f"objective 'synchrony' needs a model with 'rotating' or 'phase' outputs, got "
        f"{sorted(outputs)}; use model.name 'rotating_autoencoder' or 'complex_autoencoder'."
    )


def synchrony(
    readout_threshold: float = 0.1, num_clusters: int | None = None, n_init: int = 10
) -> Objective:
    """CAE / Rotating Features: pixel MSE; objects by k-means on output orientations."""
    if readout_threshold <= 0:
        raise ValueError(f"objective.readout_threshold must be > 0, got {readout_threshold}.")
    if num_clusters is not None and num_clusters < 2:
        raise ValueError(
            f"objective.num_clusters must be >= 2 (background + an object) or None for "
            f"objects + 1 per image, got {num_clusters}."
        )
    return Objective(
        train_inputs=lambda batch: batch["image"],
        loss=_reconstruction_loss,
        masks=lambda out, size: {},
        readout=Readout(
            points=functools.partial(_synchrony_points, threshold=readout_threshold),
            num_clusters=num_clusters,
            n_init=n_init,
        ),
    )


def _token_points(outputs: Outputs) -> jax.Array:
    """An encoder's patch tokens `[b, n, d]` on their square grid `[b, g, g, d]`."""
    b, n, d = outputs["tokens"].shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"The encoder's {n} tokens are not a square grid.")
    return outputs["tokens"].reshape(b, side, side, d)


def token_statistics(outputs: Outputs) -> dict[str, jax.Array]:
    """How alike an encoder's patch tokens `[b, n, d]` are, per image `[b]`: `cosine`, the
    mean cosine between two distinct tokens; `residual_cosine`, the same after removing
    the image's mean token; `mean_energy`, the share of the tokens' energy (sum of squared
    norms) in that mean. Features that separate objects have low values of all three."""
    x = outputs["tokens"].astype(jnp.float32)
    n = x.shape[1]

    def mean_cosine(t: jax.Array) -> jax.Array:
        unit = t / jnp.maximum(jnp.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
        total = jnp.sum(jnp.sum(unit, axis=1) ** 2, axis=-1)  # sum over all ordered pairs
        return (total - jnp.sum(unit**2, axis=(1, 2))) / (n * (n - 1))

    mean = jnp.mean(x, axis=1, keepdims=True)
    energy = n * jnp.sum(mean[:, 0] ** 2, axis=-1) / jnp.maximum(jnp.sum(x**2, axis=(1, 2)), 1e-12)
    return {
        "cosine": mean_cosine(x),
        "residual_cosine": mean_cosine(x - mean),
        "mean_energy": energy,
    }


def _encoder_objective(
    train_inputs: Callable[[Batch], Any],
    loss: Callable[[Outputs, Batch], tuple[jax.Array, dict]],
    readout_n_init: int,
) -> Objective:
    """A self-supervised encoder's objective: its training `loss`, no masks of its own, and
    the diagnostics of its frozen patch tokens before any slot model trains on them: k-means
    per image into objects + 1 clusters, their collapse statistics, and the patch tokens
    `[b, n, dim]` as the features of the VQA probe (`evaluation.probe`: one linear map per
    token, max-pooled over the tokens, as over slots)."""
    return Objective(
        train_inputs=train_inputs,
        loss=loss,
        masks=lambda out, size: {},
        features=lambda out: out["tokens"],
        readout=Readout(points=_token_points, num_clusters=None, n_init=readout_n_init),
        statistics=token_statistics,
    )


def _views(batch: Batch) -> jax.Array:
    """The rendered global crops `[b, G, S, S, 3]` of `data.crops`."""
    if "global_views" not in batch:
        raise ValueError(
            "Self-supervised pretraining trains on augmented crops; set data.crops (e.g. "
            "ocjax.data.multicrop.MultiCropAugment.dino(...) as a dict)."
        )
    return batch["global_views"]


def _dino_loss(
    outputs: Outputs,
    batch: Batch,
    *,
    student_temperature: float,
    teacher_temperature: float,
    warmup_teacher_temperature: float,
    warmup_teacher_temperature_steps: int,
) -> tuple[jax.Array, dict]:
    """DINO's cross-entropy of the sharpened, centred teacher and the student."""
    tau = ssl.teacher_temperature(
        batch["step"],
        warmup_teacher_temperature,
        teacher_temperature,
        warmup_teacher_temperature_steps,
    )
    loss = ssl.dino_loss(
        outputs["student"], outputs["teacher"], outputs["center"], student_temperature, tau
    )
    # The paper's collapse diagnostics (its figure 7): the loss is the teacher's entropy
    # plus the KL divergence of the student from it.
    teacher = jax.nn.log_softmax((outputs["teacher"] - outputs["center"]) / tau, axis=-1)
    entropy = jnp.mean(-jnp.sum(jnp.exp(teacher) * teacher, axis=-1))
    terms = {"dino": loss, "teacher_entropy": entropy, "kl": loss - entropy}
    return loss, {**terms, "teacher_temperature": tau}


def dino(
    student_temperature: float = 0.1,
    teacher_temperature: float = 0.04,
    warmup_teacher_temperature: float = 0.04,
    warmup_teacher_temperature_steps: int = 0,
    readout_n_init: int = 3,
) -> Objective:
    """DINO: the student matches the teacher across crops; evaluated by k-means of the
    teacher's patch tokens (`readout/...`)."""
    if min(student_temperature, teacher_temperature, warmup_teacher_temperature) <= 0:
        raise ValueError("objective temperatures must be > 0.")
    return _encoder_objective(
        lambda batch: {
            "global": _views(batch),
            "local": batch.get("local_views"),
            "step": batch["step"],
        },
        functools.partial(
            _dino_loss,
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
            warmup_teacher_temperature=warmup_teacher_temperature,
            warmup_teacher_temperature_steps=warmup_teacher_temperature_steps,
        ),
        readout_n_init,
    )


def mocov3(temperature: float = 0.2, readout_n_init: int = 3) -> Objective:
    """MoCo v3: symmetrised InfoNCE of the base predictions against the momentum
    projections of the other view; evaluated by k-means of the base encoder's tokens."""
    if temperature <= 0:
        raise ValueError(f"objective.temperature must be > 0, got {temperature}.")

    def loss(outputs: Outputs, batch: Batch) -> tuple[jax.Array, dict]:
        del batch
        value = ssl.moco_v3_loss(
            outputs["q1"], outputs["q2"], outputs["k1"], outputs["k2"], temperature
        )
        return value, {"infonce": value}

    return _encoder_objective(lambda batch: {"global": _views(batch)}, loss, readout_n_init)


def mae(norm_pix_loss: bool = True, readout_n_init: int = 3) -> Objective:
    """MAE: MSE of the removed patches' (per-patch normalised) pixels; evaluated by k-means
    of the encoder's tokens."""

    def loss(outputs: Outputs, batch: Batch) -> tuple[jax.Array, dict]:
        images = _views(batch)[:, 0]
        patch = math.isqrt(outputs["predictions"].shape[-1] // images.shape[-1])
        value = ssl.mae_loss(outputs["predictions"], images, outputs["mask"], patch, norm_pix_loss)
        return value, {"masked_mse": value}

    return _encoder_objective(lambda batch: _views(batch)[:, 0], loss, readout_n_init)


OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "autoencoder": autoencoder,
    "contrastive": contrastive_objective,
    "synchrony": synchrony,
    "feature_reconstruction": feature_reconstruction,
    "part_discovery": part_discovery,
    "dino": dino,
    "mocov3": mocov3,
    "mae": mae,
}


def build_objective(name: str, **options: Any) -> Objective:
    """Builds the registered objective `name` with its options."""
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown objective.name {name!r}; use one of {sorted(OBJECTIVES)}.")
    return OBJECTIVES[name](**options)


def finite(terms: dict[str, jax.Array]) -> jax.Array:
    """True when every value is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in terms.values()]))
