"""Self-supervised pretraining losses and schedules: DINO, MoCo v3 and MAE.

Pure, jittable functions following the official releases: facebookresearch/dino
(`DINOLoss`, `update_center`, the teacher-temperature and momentum schedules),
facebookresearch/moco-v3 (`contrastive_loss`) and facebookresearch/mae
(`random_masking`, `patchify`, `forward_loss`, with channels last). All arithmetic
is in at least float32; dots use the highest matmul precision so that GPU/TPU runs do
not drop to TF32/bfloat16 inside a loss.
"""

from typing import Any

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST
_NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize's default
_PIX_VAR_EPS = 1e-6  # MAE's norm_pix_loss


def _f32(x: jax.Array) -> jax.Array:
    """`x` as an array of at least float32."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def dino_loss(
    student: jax.Array,
    teacher: jax.Array,
    center: jax.Array,
    student_temperature: float,
    teacher_temperature: float | jax.Array,
) -> jax.Array:
    """DINO cross-entropy of student `[v_s, b, k]` vs teacher `[v_t, b, k]` logits -> scalar.

    Teacher probabilities softmax((teacher - center `[k]`) / teacher_temperature) carry
    no gradient; the student uses log-softmax(student / student_temperature). The
    per-image cross-entropy -sum_k p_t log p_s is averaged over the batch and then over
    every (teacher view i, student view j) pair with j != i: the first v_t student views
    must be the teacher's global crops, in the same order.
    """
    student, teacher, center = _f32(student), _f32(teacher), _f32(center)
    if student.ndim != 3 or teacher.ndim != 3 or student.shape[1:] != teacher.shape[1:]:
        raise ValueError(
            f"student and teacher logits must be [views, batch, k] with equal batch and k, "
            f"got {student.shape} and {teacher.shape}."
        )
    num_student, num_teacher = student.shape[0], teacher.shape[0]
    if num_student < num_teacher or num_student < 2:
        raise ValueError(
            f"need at least 2 student views and no fewer than the {num_teacher} teacher views "
            f"(the first ones being the teacher's crops), got {num_student}."
        )
    teacher_probs = jax.nn.softmax((teacher - center) / teacher_temperature, axis=-1)
    teacher_probs = jax.lax.stop_gradient(teacher_probs)
    student_log_probs = jax.nn.log_softmax(student / student_temperature, axis=-1)
    # cross_entropy[i, j]: batch mean of -sum_k p_t[i] log p_s[j].
    cross_entropy = (
        -jnp.einsum("ibk,jbk->ij", teacher_probs, student_log_probs, precision=_HIGHEST)
        / student.shape[1]
    )
    different_view = ~jnp.eye(num_teacher, num_student, dtype=bool)
    num_pairs = num_teacher * num_student - num_teacher
    return jnp.sum(jnp.where(different_view, cross_entropy, 0.0)) / num_pairs


def dino_center(
    center: jax.Array, teacher: jax.Array, momentum: float, axis_name: str | None = None
) -> jax.Array:
    """Updated center `[k]`: center * m + (1 - m) * mean of teacher logits `[v_t, b, k]`.

    The mean is over views and batch, and over devices too (`pmean`) when `axis_name`
    names a mapped axis, as DINO's all-reduced `update_center`. No gradient flows.
    """
    batch_center = jnp.mean(_f32(jax.lax.stop_gradient(teacher)), axis=(0, 1))
    if axis_name is not None:
        batch_center = jax.lax.pmean(batch_center, axis_name)
    return _f32(center) * momentum + batch_center * (1.0 - momentum)


def teacher_temperature(
    step: int | jax.Array, warmup_start: float, final: float, warmup_steps: int
) -> jax.Array:
    """Float32 scalar teacher temperature at `step`: DINO's linear warm-up, then constant.

    Exactly DINO's `np.linspace(warmup_start, final, warmup_steps)` for the first
    `warmup_steps` steps (so `final` is reached at step warmup_steps - 1), `final` after.
    """
    step = jnp.asarray(step, jnp.float32)
    fraction = jnp.clip(step / max(warmup_steps - 1, 1), 0.0, 1.0)
    warming = warmup_start + (final - warmup_start) * fraction
    return jnp.where(step >= warmup_steps, final, warming).astype(jnp.float32)


def ema_momentum(
    step: int | jax.Array, base: float, total_steps: int, final: float = 1.0
) -> jax.Array:
    """Float32 scalar EMA momentum: final - (final - base) * (cos(pi * step / total) + 1) / 2.

    DINO's `cosine_scheduler` and MoCo v3's `adjust_moco_momentum`; steps outside
    [0, total_steps] are clipped, so the momentum stays at `final` after the schedule.
    """
    progress = jnp.clip(jnp.asarray(step, jnp.float32) / total_steps, 0.0, 1.0)
    return (final - (final - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0).astype(jnp.float32)


def ema_update(teacher: Any, student: Any, momentum: float | jax.Array) -> Any:
    """Pytree m * teacher + (1 - m) * student, leafwise, in the teacher's leaf dtypes."""

    def update(t: jax.Array, s: jax.Array) -> jax.Array:
        t = jnp.asarray(t)
        return (_f32(t) * momentum + _f32(s) * (1.0 - momentum)).astype(t.dtype)

    return jax.tree.map(update, teacher, student)


def _unit(x: jax.Array) -> jax.Array:
    """Rows of `[n, d]` over max(L2 norm, 1e-12), as `torch.nn.functional.normalize`."""
    x = _f32(x)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _NORMALIZE_EPS)


def _moco_contrastive(
    q: jax.Array, k: jax.Array, temperature: float, axis_name: str | None
) -> jax.Array:
    """MoCo v3 `contrastive_loss` of queries and keys `[b, d]` -> scalar, times 2T."""
    q, k = _unit(q), _unit(jax.lax.stop_gradient(k))
    labels = jnp.arange(q.shape[0])
    if axis_name is not None:
        k = jax.lax.all_gather(k, axis_name, tiled=True)
        labels = labels + q.shape[0] * jax.lax.axis_index(axis_name)
    logits = jnp.einsum("nc,mc->nm", q, k, precision=_HIGHEST) / temperature
    positive = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - positive) * (2.0 * temperature)


def moco_v3_loss(
    q1: jax.Array,
    q2: jax.Array,
    k1: jax.Array,
    k2: jax.Array,
    temperature: float,
    axis_name: str | None = None,
) -> jax.Array:
    """MoCo v3 symmetric InfoNCE ctr(q1, k2) + ctr(q2, k1) of `[b, d]` queries/keys -> scalar.

    Each ctr L2-normalises, takes logits q @ k.T / T against the keys of every device
    along `axis_name` (all-gathered, the positive at this device's offset), and scales
    the cross-entropy by 2T as the official code. Keys carry no gradient. The result is
    this device's loss (not averaged across devices, as in the official DDP code).
    """
    shapes = {jnp.shape(x) for x in (q1, q2, k1, k2)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"q1, q2, k1, k2 must all be [batch, dim], got shapes {shapes}.")
    return _moco_contrastive(q1, k2, temperature, axis_name) + _moco_contrastive(
        q2, k1, temperature, axis_name
    )


def random_masking(
    rng: jax.Array, batch: int, num_patches: int, mask_ratio: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """MAE per-sample random masking -> keep `[b, n_keep]`, mask `[b, n]`, restore `[b, n]`.

    ids_shuffle = argsort(uniform noise), restore = argsort(ids_shuffle); `keep` (int32)
    is the first n_keep = int(n * (1 - mask_ratio)) of ids_shuffle, `mask` (float32) is
    1 on removed patches, and gathering [kept tokens, mask tokens] by `restore` (int32)
    puts every token back at its patch. Shapes and ratio must be static under jit.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio!r}; MAE uses 0.75.")
    num_keep = int(num_patches * (1 - mask_ratio))
    noise = jax.random.uniform(rng, (batch, num_patches))
    ids_shuffle = jnp.argsort(noise, axis=1).astype(jnp.int32)
    restore = jnp.argsort(ids_shuffle, axis=1).astype(jnp.int32)
    mask = (restore >= num_keep).astype(jnp.float32)
    return ids_shuffle[:, :num_keep], mask, restore


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """Patches `[b, n, p*p*c]` of images `[b, h, w, c]`: row-major, each rows/columns/channels."""
    batch, height, width, channels = images.shape
    p = patch_size
    if height % p or width % p:
        raise ValueError(f"image size {height}x{width} must be divisible by patch_size={p}.")
    x = images.reshape(batch, height // p, p, width // p, p, channels)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, (height // p) * (width // p), p * p * channels)


def mae_loss(
    predictions: jax.Array,
    images: jax.Array,
    mask: jax.Array,
    patch_size: int,
    norm_pix_loss: bool = True,
) -> jax.Array:
    """MAE loss of predicted patches `[b, n, p*p*c]` for images `[b, h, w, c]` -> scalar.

    With `norm_pix_loss` each target patch is (x - mean) / sqrt(var + 1e-6) with the
    UNBIASED variance (ddof=1), as torch's `Tensor.var` in the official code. Per-patch
    MSE, averaged over the patches where `mask` `[b, n]` is 1 (removed); like the
    official code this is NaN when no patch is masked.
    """
    target = _f32(patchify(images, patch_size))
    if predictions.shape != target.shape or mask.shape != target.shape[:2]:
        raise ValueError(
            f"predictions {predictions.shape} must equal patchify(images) {target.shape} "
            f"and mask {mask.shape} must be {target.shape[:2]}."
        )
    if norm_pix_loss:
        mean = jnp.mean(target, axis=-1, keepdims=True)
        var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
        target = (target - mean) / jnp.sqrt(var + _PIX_VAR_EPS)
    per_patch = jnp.mean((_f32(predictions) - target) ** 2, axis=-1)
    mask = _f32(mask)
    return jnp.sum(per_patch * mask) / jnp.sum(mask)
