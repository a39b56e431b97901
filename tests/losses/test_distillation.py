"""SPOT's attention distillation loss against a numpy + scipy reference."""

import jax
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from ocjax.losses.distillation import attention_distillation


def _reference(student, teacher):
    b, k, n = student.shape
    total = 0.0
    for i in range(b):
        s_lab, t_lab = student[i].argmax(0), teacher[i].argmax(0)
        iou = np.zeros((k, k))
        for a in range(k):
            for c in range(k):
                inter = np.sum((s_lab == a) & (t_lab == c))
                union = np.sum((s_lab == a) | (t_lab == c))
                iou[a, c] = inter / union if union else 0.0
        rows, cols = linear_sum_assignment(-iou)  # Student slot rows[j] <-> teacher cols[j].
        order = np.empty(k, int)
        order[cols] = rows  # Teacher slot -> its student slot.
        logits = student[i][order].astype(np.float64)
        logits = logits - logits.max(0)
        log_probs = logits - np.log(np.exp(logits).sum(0))
        total += -log_probs[t_lab, np.arange(n)].sum()
    return total / (b * n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distillation_equals_reference(seed):
    rng = np.random.default_rng(seed)
    student = rng.normal(size=(3, 5, 40)).astype(np.float32) * 3
    teacher = rng.random((3, 5, 40)).astype(np.float32)
    got = jax.jit(attention_distillation)(student, teacher)
    assert float(got) == pytest.approx(_reference(student, teacher), rel=1e-5)


def test_relabelled_teacher_gives_the_same_loss_and_gradient_reaches_only_the_student():
    rng = np.random.default_rng(3)
    student = rng.normal(size=(2, 4, 30)).astype(np.float32)
    teacher = rng.random((2, 4, 30)).astype(np.float32)
    permuted = teacher[:, rng.permutation(4)]  # The teacher's slot order is arbitrary.
    a = attention_distillation(student, teacher)
    b = attention_distillation(student, permuted)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    grad_student, grad_teacher = jax.grad(attention_distillation, argnums=(0, 1))(student, teacher)
    assert np.abs(grad_student).max() > 0 and np.abs(grad_teacher).max() == 0
