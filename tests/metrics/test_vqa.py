"""Tests for ocjax.metrics.vqa against sklearn and explicit loops."""

import jax
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ocjax.data.generators.clevr_like import COLORS, MATERIALS, SHAPES, SIZES
from ocjax.metrics.vqa import (
    QUESTIONS,
    average_precision,
    probe_ap,
    probe_scores,
    question_labels,
    train_probe,
)

JIT_AP = jax.jit(average_precision)


def random_attributes(
    rng: np.random.Generator, batch: int, max_objects: int
) -> tuple[np.ndarray, ...]:
    """Int size, color, material, shape and bool present, each `[batch, max_objects]`."""
    attributes = [
        rng.integers(0, len(values), size=(batch, max_objects))
        for values in (SIZES, COLORS, MATERIALS, SHAPES)
    ]
    present = rng.random((batch, max_objects)) < 0.6
    present[0] = False
    return (*attributes, present)


def test_questions_enumerate_attributes_in_nested_order() -> None:
    assert len(QUESTIONS) == 96 and len(set(QUESTIONS)) == 96
    assert QUESTIONS[0] == (SIZES[0], COLORS[0], MATERIALS[0], SHAPES[0])
    assert QUESTIONS[1] == (SIZES[0], COLORS[0], MATERIALS[0], SHAPES[1])
    assert QUESTIONS[3] == (SIZES[0], COLORS[0], MATERIALS[1], SHAPES[0])
    assert QUESTIONS[48] == (SIZES[1], COLORS[0], MATERIALS[0], SHAPES[0])


def test_question_labels_match_a_loop() -> None:
    size, color, material, shape, present = random_attributes(np.random.default_rng(0), 6, 10)
    labels = np.asarray(jax.jit(question_labels)(size, color, material, shape, present))
    expected = np.zeros((6, 96), np.float32)
    for b in range(6):
        for o in range(10):
            if present[b, o]:
                names = (
                    SIZES[size[b, o]],
                    COLORS[color[b, o]],
                    MATERIALS[material[b, o]],
                    SHAPES[shape[b, o]],
                )
                expected[b, QUESTIONS.index(names)] = 1.0
    np.testing.assert_array_equal(labels, expected)
    assert labels[0].sum() == 0


@pytest.mark.parametrize("levels", [None, 5, 2])
def test_average_precision_equals_sklearn_with_weights_and_ties(levels: int | None) -> None:
    rng = np.random.default_rng(0 if levels is None else levels)
    scores = rng.normal(size=300).astype(np.float32)
    if levels is not None:
        scores = np.round(scores * levels / 3.0).astype(np.float32)
    labels = (rng.random(300) < 0.3 + 0.1 * scores.clip(-2, 2)).astype(np.float32)
    weights = rng.random(300).astype(np.float32) * 3.0
    weights[:10] = 0.0
    np.testing.assert_allclose(
        JIT_AP(scores, labels, weights),
        average_precision_score(labels, scores, sample_weight=weights),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        JIT_AP(scores, labels, np.ones(300, np.float32)),
        average_precision_score(labels, scores),
        rtol=1e-5,
    )


def test_average_precision_without_positives_is_zero_like_sklearn() -> None:
    scores = np.random.default_rng(1).random(20).astype(np.float32)
    with pytest.warns(UserWarning):
        expected = average_precision_score(np.zeros(20), scores)
    assert float(JIT_AP(scores, np.zeros(20), np.ones(20))) == expected == 0.0


def test_probe_ap_is_weighted_micro_average() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random((40, 96)) < 0.07).astype(np.float32)
    scores = (labels + rng.normal(size=labels.shape)).astype(np.float32)
    expected = average_precision_score(
        labels.ravel(), scores.ravel(), sample_weight=np.where(labels.ravel() > 0, 14.0, 1.0)
    )
    np.testing.assert_allclose(jax.jit(probe_ap)(scores, labels), expected, rtol=1e-5)


def test_probe_learns_linearly_separable_slots() -> None:
    rng = np.random.default_rng(3)
    size, color, material, shape, present = random_attributes(rng, 3000, 4)
    question = ((size * len(COLORS) + color) * len(MATERIALS) + material) * len(SHAPES) + shape
    embedding = 3.0 * np.linalg.qr(rng.normal(size=(96, 96)))[0]
    features = embedding[question] * present[..., None]
    features = (features + 0.05 * rng.normal(size=features.shape)).astype(np.float32)
    labels = np.asarray(question_labels(size, color, material, shape, present))
    params = train_probe(
        features[:2000], labels[:2000], steps=200, learning_rate=0.05, weight_decay=0.0, seed=0
    )
    assert params["kernel"].shape == (96, 96) and params["bias"].shape == (96,)
    scores = probe_scores(params, features[2000:])
    assert scores.shape == (1000, 96)
    assert float(probe_ap(scores, labels[2000:])) > 0.95


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"\[n\]"):
        average_precision(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="same shape"):
        probe_ap(np.zeros((2, 96)), np.zeros((3, 96)))
    with pytest.raises(ValueError, match="max_objects"):
        question_labels(*(np.zeros((2, 3), np.int32),) * 4, np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="labels"):
        train_probe(np.zeros((4, 2, 3)), np.zeros((4, 95)), steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_probe(np.zeros((4, 2, 3)), np.zeros((4, 96)), steps=0)
    with pytest.raises(ValueError, match="num_slots"):
        probe_scores({"kernel": np.zeros((3, 96)), "bias": np.zeros(96)}, np.zeros((4, 2, 5)))
