"""SPOT's attention distillation: the student's slot attention learns the teacher's masks.

Kakogeorgiou et al. (CVPR 2024), stage 2: a frozen teacher's decoder masks become hard
per-patch labels (argmax over its slots); the student's slots are matched one-to-one to the
teacher's by the Hungarian algorithm on the IoU of both argmax masks, and the student's
Slot Attention logits, reordered by that matching, are trained with cross-entropy towards
the labels.
"""

import jax
import jax.numpy as jnp

from ocjax import matching


def mask_iou(student: jax.Array, teacher: jax.Array) -> jax.Array:
    """IoU `[b, k, k]` between the argmax masks of student `[b, k, n]` (rows) and teacher
    `[b, k, n]` (columns) scores over k slots."""
    k = student.shape[1]
    s = jax.nn.one_hot(jnp.argmax(student, axis=1), k, axis=1)  # [b, k, n]
    t = jax.nn.one_hot(jnp.argmax(teacher, axis=1), k, axis=1)
    intersection = jnp.einsum("bin,bjn->bij", s, t)
    union = s.sum(-1)[:, :, None] + t.sum(-1)[:, None, :] - intersection
    return intersection / jnp.maximum(union, 1.0)


def attention_distillation(student_logits: jax.Array, teacher_masks: jax.Array) -> jax.Array:
    """Cross-entropy of the student's Slot Attention logits `[b, k, n]` (softmax over the k
    slots), reordered to the teacher's slots by Hungarian matching on mask IoU, towards the
    argmax of the teacher's masks `[b, k, n]`; mean over images and patches."""
    teacher_masks = jax.lax.stop_gradient(teacher_masks)
    iou = mask_iou(jax.lax.stop_gradient(student_logits), teacher_masks)
    # For each teacher slot j, the student slot matched to it.
    student_for_teacher = matching.hungarian(-jnp.swapaxes(iou, 1, 2))  # [b, k]
    logits = jnp.take_along_axis(student_logits, student_for_teacher[:, :, None], axis=1)
    labels = jnp.argmax(teacher_masks, axis=1)  # [b, n]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=1)
    picked = jnp.take_along_axis(log_probs, labels[:, None, :], axis=1)[:, 0]
    return -jnp.mean(picked)
