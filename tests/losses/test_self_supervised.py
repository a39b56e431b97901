"""Tests for ocjax.losses.self_supervised against float64 references written from the papers."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ocjax.losses.self_supervised import (
    dino_center,
    dino_loss,
    ema_momentum,
    ema_update,
    mae_loss,
    moco_v3_loss,
    patchify,
    random_masking,
    teacher_temperature,
)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Float64 log-softmax of a vector."""
    x = np.asarray(x, np.float64)
    shifted = x - x.max()
    return shifted - np.log(np.sum(np.exp(shifted)))


def reference_dino(
    student: np.ndarray, teacher: np.ndarray, center: np.ndarray, t_s: float, t_t: float
) -> float:
    """DINOLoss: mean over pairs (i, j != i) of batch means of -sum p_t[i] log p_s[j]."""
    student, teacher = student.astype(np.float64), teacher.astype(np.float64)
    pair_losses = []
    for i, j in itertools.product(range(teacher.shape[0]), range(student.shape[0])):
        if i == j:
            continue
        per_image = []
        for b in range(student.shape[1]):
            p_t = np.exp(log_softmax((teacher[i, b] - center) / t_t))
            per_image.append(-np.sum(p_t * log_softmax(student[j, b] / t_s)))
        pair_losses.append(np.mean(per_image))
    return float(np.mean(pair_losses))


@pytest.mark.parametrize(
    "views_t, views_s, batch, k, t_s, t_t",
    [(2, 2, 3, 5, 0.1, 0.04), (2, 6, 4, 16, 0.1, 0.07), (1, 3, 2, 7, 0.2, 0.05)],
)
def test_dino_loss_matches_reference(
    views_t: int, views_s: int, batch: int, k: int, t_s: float, t_t: float
) -> None:
    rng = np.random.default_rng(views_s * 10 + k)
    student = rng.normal(size=(views_s, batch, k)).astype(np.float32) * 3.0
    teacher = rng.normal(size=(views_t, batch, k)).astype(np.float32) * 3.0
    center = rng.normal(size=k).astype(np.float32)
    expected = reference_dino(student, teacher, center, t_s, t_t)
    loss = dino_loss(student, teacher, center, t_s, t_t)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    traced_temperature = jax.jit(dino_loss)(student, teacher, center, t_s, jnp.float32(t_t))
    np.testing.assert_allclose(traced_temperature, expected, rtol=1e-5)


def test_dino_loss_gradient_reaches_only_the_student() -> None:
    rng = np.random.default_rng(1)
    student = rng.normal(size=(4, 3, 8)).astype(np.float32)
    teacher = rng.normal(size=(2, 3, 8)).astype(np.float32)
    center = rng.normal(size=8).astype(np.float32)
    grads = jax.grad(dino_loss, argnums=(0, 1, 2))(student, teacher, center, 0.1, 0.04)
    assert np.all(np.abs(grads[0]) > 0)
    np.testing.assert_array_equal(grads[1], 0.0)
    np.testing.assert_array_equal(grads[2], 0.0)


def test_dino_center_matches_formula_on_one_and_several_devices() -> None:
    rng = np.random.default_rng(2)
    center = rng.normal(size=6).astype(np.float32)
    teacher = rng.normal(size=(3, 2, 4, 6)).astype(np.float32)  # [devices, v_t, b, k]
    m = 0.9
    expected = center * m + teacher[0].astype(np.float64).mean(axis=(0, 1)) * (1 - m)
    np.testing.assert_allclose(dino_center(center, teacher[0], m), expected, rtol=1e-5)
    per_device = jax.vmap(lambda t: dino_center(center, t, m, axis_name="d"), axis_name="d")(
        teacher
    )
    everywhere = center * m + teacher.astype(np.float64).mean(axis=(0, 1, 2)) * (1 - m)
    np.testing.assert_allclose(per_device, np.broadcast_to(everywhere, (3, 6)), rtol=1e-5)
    assert not np.allclose(everywhere, expected)


def test_teacher_temperature_is_dinos_schedule() -> None:
    start, final, warmup, total = 0.04, 0.07, 30, 50
    # DINO's teacher_temp_schedule, indexed by step instead of epoch.
    schedule = np.concatenate((np.linspace(start, final, warmup), np.ones(total - warmup) * final))
    got = jax.vmap(lambda s: teacher_temperature(s, start, final, warmup))(jnp.arange(total))
    np.testing.assert_allclose(got, schedule, rtol=1e-6)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(teacher_temperature(0, start, final, warmup), start, rtol=1e-6)
    middle = start + (final - start) * 15 / 29
    np.testing.assert_allclose(teacher_temperature(15, start, final, warmup), middle, rtol=1e-6)
    np.testing.assert_allclose(teacher_temperature(10**6, start, final, warmup), final, rtol=1e-6)
    np.testing.assert_allclose(teacher_temperature(0, start, final, 0), final, rtol=1e-6)


@pytest.mark.parametrize("base, final", [(0.996, 1.0), (0.99, 1.0), (0.9, 0.95)])
def test_ema_momentum_is_the_cosine_schedule(base: float, final: float) -> None:
    total = 40
    # DINO's cosine_scheduler(base, final, epochs, niter_per_ep) without warm-up.
    iters = np.arange(total)
    dino = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    got = jax.vmap(lambda s: ema_momentum(s, base, total, final))(jnp.arange(total))
    np.testing.assert_allclose(got, dino, rtol=1e-6)
    np.testing.assert_allclose(ema_momentum(0, base, total, final), base, rtol=1e-6)
    np.testing.assert_allclose(ema_momentum(20, base, total, final), (base + final) / 2, rtol=1e-6)
    np.testing.assert_allclose(ema_momentum(total, base, total, final), final, rtol=1e-6)
    if final == 1.0:  # MoCo v3's adjust_moco_momentum
        moco = 1.0 - 0.5 * (1.0 + np.cos(np.pi * 13 / total)) * (1.0 - base)
        np.testing.assert_allclose(ema_momentum(13, base, total), moco, rtol=1e-6)


def test_ema_update_is_leafwise_and_keeps_dtypes() -> None:
    rng = np.random.default_rng(3)
    teacher = {"a": rng.normal(size=(3, 2)).astype(np.float32), "b": [rng.normal(size=4)]}
    teacher["b"][0] = teacher["b"][0].astype(np.float32)
    student = jax.tree.map(lambda x: x + rng.normal(size=x.shape).astype(np.float32), teacher)
    for m in (0.0, 0.7, 1.0):
        new = ema_update(teacher, student, m)
        expected = jax.tree.map(lambda t, s, m=m: m * t + (1 - m) * s, teacher, student)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), new, expected)
    half = ema_update({"w": jnp.ones(3, jnp.bfloat16)}, {"w": jnp.zeros(3, jnp.bfloat16)}, 0.5)
    assert half["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(half["w"], 0.5)


def torch_contrastive_loss(
    q: np.ndarray, all_k: np.ndarray, temperature: float, rank: int = 0
) -> torch.Tensor:
    """MoCo v3's contrastive_loss in float64 torch; `all_k` is the concat_all_gather of keys."""
    q = torch.nn.functional.normalize(torch.from_numpy(q).double(), dim=1)
    k = torch.nn.functional.normalize(torch.from_numpy(all_k).double(), dim=1)
    logits = torch.einsum("nc,mc->nm", [q, k]) / temperature
    n = logits.shape[0]
    labels = torch.arange(n, dtype=torch.long) + n * rank
    return torch.nn.CrossEntropyLoss()(logits, labels) * (2 * temperature)


@pytest.mark.parametrize("batch, dim, temperature", [(1, 3, 0.2), (5, 8, 1.0), (8, 16, 0.2)])
def test_moco_v3_loss_matches_official_code(batch: int, dim: int, temperature: float) -> None:
    rng = np.random.default_rng(batch)
    q1, q2, k1, k2 = rng.normal(size=(4, batch, dim)).astype(np.float32) * 2.0
    expected = torch_contrastive_loss(q1, k2, temperature) + torch_contrastive_loss(
        q2, k1, temperature
    )
    np.testing.assert_allclose(moco_v3_loss(q1, q2, k1, k2, temperature), expected, rtol=1e-5)
    grads = jax.grad(moco_v3_loss, argnums=(0, 1, 2, 3))(q1, q2, k1, k2, temperature)
    if batch > 1:
        assert np.any(grads[0] != 0) and np.any(grads[1] != 0)
    np.testing.assert_array_equal(grads[2], 0.0)
    np.testing.assert_array_equal(grads[3], 0.0)


def test_moco_v3_loss_gathers_keys_across_devices() -> None:
    devices, batch, dim, temperature = 3, 4, 6, 0.2
    rng = np.random.default_rng(4)
    q1, q2, k1, k2 = rng.normal(size=(4, devices, batch, dim)).astype(np.float32)
    per_device = jax.vmap(
        lambda a, b, c, d: moco_v3_loss(a, b, c, d, temperature, axis_name="d"), axis_name="d"
    )(q1, q2, k1, k2)
    all_k1, all_k2 = k1.reshape(-1, dim), k2.reshape(-1, dim)
    for rank in range(devices):
        expected = torch_contrastive_loss(q1[rank], all_k2, temperature, rank)
        expected = expected + torch_contrastive_loss(q2[rank], all_k1, temperature, rank)
        np.testing.assert_allclose(per_device[rank], expected, rtol=1e-5)
        local = moco_v3_loss(q1[rank], q2[rank], k1[rank], k2[rank], temperature)
        assert not np.isclose(per_device[rank], local)


@pytest.mark.parametrize("batch, num_patches, ratio", [(4, 16, 0.75), (3, 10, 0.5), (5, 7, 0.3)])
def test_random_masking_is_maes_shuffle(batch: int, num_patches: int, ratio: float) -> None:
    keep, mask, restore = random_masking(jax.random.key(batch), batch, num_patches, ratio)
    keep, mask, restore = np.asarray(keep), np.asarray(mask), np.asarray(restore)
    num_keep = int(num_patches * (1 - ratio))
    assert keep.shape == (batch, num_keep) and keep.dtype == np.int32
    assert mask.shape == restore.shape == (batch, num_patches)
    assert mask.dtype == np.float32 and restore.dtype == np.int32
    x = np.random.default_rng(0).normal(size=(batch, num_patches, 3)).astype(np.float32)
    kept = np.take_along_axis(x, keep[..., None], axis=1)
    for b in range(batch):
        removed = np.flatnonzero(mask[b] == 1)
        np.testing.assert_array_equal(
            np.sort(np.concatenate([keep[b], removed])), np.arange(num_patches)
        )
        assert len(removed) == num_patches - num_keep and set(np.unique(mask[b])) <= {0.0, 1.0}
        np.testing.assert_array_equal(np.sort(keep[b]), np.flatnonzero(mask[b] == 0))
        np.testing.assert_array_equal(kept[b][np.argsort(keep[b])], x[b][mask[b] == 0])
        shuffle = np.argsort(restore[b])  # ids_shuffle, since restore = argsort(ids_shuffle)
        np.testing.assert_array_equal(shuffle[:num_keep], keep[b])
        np.testing.assert_array_equal(shuffle[restore[b]], np.arange(num_patches))
    # MAE's decoder: append mask tokens (zeros) and unshuffle with ids_restore.
    padded = np.concatenate([kept, np.zeros((batch, num_patches - num_keep, 3), np.float32)], 1)
    unshuffled = np.take_along_axis(padded, restore[..., None], axis=1)
    np.testing.assert_array_equal(unshuffled, x * (1 - mask[..., None]))
    assert all(not np.array_equal(restore[0], restore[b]) for b in range(1, batch))
    _, other_mask, _ = random_masking(jax.random.key(99), batch, num_patches, ratio)
    assert not np.array_equal(mask, other_mask)


def reference_patchify(images: np.ndarray, p: int) -> np.ndarray:
    """Loop: patch (i, j) at index i * (w // p) + j holds pixels in row, column, channel order."""
    batch, height, width, channels = images.shape
    out = np.zeros((batch, (height // p) * (width // p), p * p * channels), images.dtype)
    for b, i, j in itertools.product(range(batch), range(height // p), range(width // p)):
        values = [
            images[b, i * p + r, j * p + c, ch]
            for r, c, ch in itertools.product(range(p), range(p), range(channels))
        ]
        out[b, i * (width // p) + j] = values
    return out


@pytest.mark.parametrize("shape, p", [((2, 8, 8, 3), 4), ((1, 6, 9, 2), 3), ((2, 4, 4, 1), 2)])
def test_patchify_matches_loop_and_mae(shape: tuple[int, ...], p: int) -> None:
    images = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    patches = np.asarray(patchify(images, p))
    np.testing.assert_array_equal(patches, reference_patchify(images, p))
    # MAE's patchify on channels-first images gives the same (for square images).
    if shape[1] == shape[2]:
        imgs = torch.from_numpy(images).permute(0, 3, 1, 2)
        n, c, h = imgs.shape[0], imgs.shape[1], imgs.shape[2] // p
        x = imgs.reshape(n, c, h, p, h, p)
        x = torch.einsum("nchpwq->nhwpqc", x).reshape(n, h * h, p**2 * c)
        np.testing.assert_array_equal(patches, x.numpy())


def reference_mae(
    predictions: np.ndarray, images: np.ndarray, mask: np.ndarray, p: int, norm_pix: bool
) -> float:
    """MAE forward_loss in float64: unbiased per-patch variance, MSE over removed patches."""
    target = reference_patchify(images.astype(np.float64), p)
    total, count = 0.0, 0.0
    for b, n in itertools.product(range(target.shape[0]), range(target.shape[1])):
        t = target[b, n]
        if norm_pix:
            mean = t.sum() / len(t)
            var = np.sum((t - mean) ** 2) / (len(t) - 1)
            t = (t - mean) / np.sqrt(var + 1e-6)
        total += mask[b, n] * np.mean((predictions[b, n].astype(np.float64) - t) ** 2)
        count += mask[b, n]
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("shape, p", [((2, 8, 8, 3), 4), ((3, 4, 6, 1), 2)])
def test_mae_loss_matches_reference(shape: tuple[int, ...], p: int, norm_pix: bool) -> None:
    rng = np.random.default_rng(6)
    images = rng.normal(size=shape).astype(np.float32) * 2.0 + 1.0
    num_patches = (shape[1] // p) * (shape[2] // p)
    predictions = rng.normal(size=(shape[0], num_patches, p * p * shape[3])).astype(np.float32)
    _, mask, _ = random_masking(jax.random.key(0), shape[0], num_patches, 0.5)
    loss = mae_loss(predictions, images, mask, p, norm_pix_loss=norm_pix)
    expected = reference_mae(predictions, images, np.asarray(mask), p, norm_pix)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_every_function_jits() -> None:
    rng = np.random.default_rng(7)
    student = rng.normal(size=(4, 2, 5)).astype(np.float32)
    teacher, center = student[:2] + 1.0, np.zeros(5, np.float32)
    assert np.isfinite(jax.jit(dino_loss)(student, teacher, center, 0.1, 0.04))
    np.testing.assert_allclose(
        jax.jit(dino_center)(center, teacher, 0.9), dino_center(center, teacher, 0.9), rtol=1e-6
    )
    jit_temperature = jax.jit(teacher_temperature, static_argnames="warmup_steps")
    np.testing.assert_allclose(jit_temperature(jnp.int32(5), 0.04, 0.07, warmup_steps=11), 0.055)
    jit_momentum = jax.jit(ema_momentum, static_argnames="total_steps")
    np.testing.assert_allclose(jit_momentum(jnp.int32(5), 0.9, total_steps=10), 0.95, rtol=1e-6)
    averaged = jax.jit(ema_update)(teacher, student[:2], 0.5)
    np.testing.assert_allclose(averaged[0], student[0] + 0.5, rtol=1e-6)
    q = rng.normal(size=(4, 3, 6)).astype(np.float32)
    jit_moco = jax.jit(moco_v3_loss, static_argnames=("temperature", "axis_name"))
    np.testing.assert_allclose(jit_moco(*q, temperature=0.2), moco_v3_loss(*q, 0.2), rtol=1e-6)
    jit_masking = jax.jit(random_masking, static_argnames=("batch", "num_patches", "mask_ratio"))
    keep, mask, _ = jit_masking(jax.random.key(1), batch=2, num_patches=16, mask_ratio=0.75)
    assert keep.shape == (2, 4) and float(mask.sum()) == 24.0
    images = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    jit_patchify = jax.jit(patchify, static_argnames="patch_size")
    np.testing.assert_array_equal(jit_patchify(images, patch_size=4), patchify(images, 4))
    jit_mae = jax.jit(mae_loss, static_argnames=("patch_size", "norm_pix_loss"))
    predictions = rng.normal(size=(2, 4, 48)).astype(np.float32)
    mask = np.array([[1, 0, 1, 0], [0, 0, 1, 1]], np.float32)
    np.testing.assert_allclose(
        jit_mae(predictions, images, mask, patch_size=4),
        mae_loss(predictions, images, mask, 4),
        rtol=1e-6,
    )


def test_bad_inputs_raise() -> None:
    logits = np.zeros((2, 3, 5), np.float32)
    with pytest.raises(ValueError, match="student views"):
        dino_loss(logits[:1], logits, np.zeros(5), 0.1, 0.04)
    with pytest.raises(ValueError, match=r"\[views, batch, k\]"):
        dino_loss(logits, logits[:, :2], np.zeros(5), 0.1, 0.04)
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        moco_v3_loss(logits[0], logits[0], logits[0], logits[0, :2], 0.2)
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(jax.random.key(0), 2, 16, 1.0)
    with pytest.raises(ValueError, match="divisible"):
        patchify(np.zeros((1, 6, 8, 3)), 4)
