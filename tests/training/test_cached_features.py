"""DINOSAUR / SPOT on cached backbone outputs train and evaluate as on the images."""

import numpy as np
import pytest

from ocjax import parallel
from ocjax.training import trainer

PATCHES = {"kind": "pixel_patches", "patch_size": 4, "dim": 64, "seed": 0}
# A randomly initialised DINO ViT-S/16 cut after block 1 (32x32 images: 2x2 patches).
DINO = {"kind": "dino_vit", "architecture": "dino_vits16", "feature_block": 1, "final_norm": False}


def _config(data_dir, backbone, cache, presets="cpu"):
    from configs import coco_dinosaur, coco_spot

    if "teacher" in presets or "student" in presets:
        config = coco_spot.get_config(presets)
    else:
        config = coco_dinosaur.get_config(presets)
    config.data.data_dir = data_dir
    config.data.resolution = 32
    config.data.max_objects = 4
    config.data.clevr_like.update(min_objects=2, num_train=48, num_validation=8, num_test=12)
    assert config.data.random_flip and config.data.cache_features
    config.data.cache_features = cache
    config.model.backbone = backbone
    config.model.update(
        num_slots=4, slot_dim=16, mlp_hidden_dim=16, decoder_hidden_dims=[32], decoder_dim=16
    )
    if config.model.decoder == "transformer":
        config.model.update(
            feature_mlp_dim=16, decoder_heads=2, decoder_layers=1, eval_orders="raster"
        )
    config.optimizer.schedule.update(learning_rate=3e-3, warmup_steps=2)
    config.training.update(num_steps=2, batch_size=8, log_every=1, checkpoint_every=2)
    config.evaluation.update(every_steps=None, batch_size=8, num_images=2)
    return config


def _run(config, steps=4):
    """Per-step losses, the final state and the experiment."""
    exp = trainer.Experiment(config)
    state = exp.init_state(exp.dummy_images())
    losses = []
    for step in range(steps):
        state, metrics = exp.train_step(state, parallel.to_global(exp.train_data[step], exp.mesh))
        losses.append(float(metrics["loss"]))
    return losses, state, exp


def _assert_same_run(config, steps=4):
    """Training with the cache gives the losses and test metrics of training on the images."""
    config.data.cache_features = False
    losses, state, exp = _run(config, steps)
    assert "features" not in exp.train_data[0]
    config.data.cache_features = True
    cached_losses, cached_state, cached_exp = _run(config, steps)
    np.testing.assert_allclose(cached_losses, losses, rtol=1e-5)
    metrics = trainer.compute_metrics(exp, state, exp.eval_data)
    cached_metrics = trainer.compute_metrics(cached_exp, cached_state, cached_exp.eval_data)
    assert cached_metrics.keys() == metrics.keys()
    for key, value in metrics.items():
        assert cached_metrics[key] == pytest.approx(value, abs=1e-4), key
    return cached_exp


@pytest.mark.slow
@pytest.mark.parametrize("backbone", [PATCHES, DINO], ids=["pixel_patches", "dino_vit"])
def test_cached_features_train_as_the_backbone_does_with_flips(data_dir, backbone):
    exp = _assert_same_run(_config(data_dir, backbone, cache=True))
    batch = exp.train_data[0]
    grid = 64 if backbone is PATCHES else 4
    assert batch["features"].shape == (8, grid, 64 if backbone is PATCHES else 384)
    assert "hidden" not in batch and batch["image"].shape == (8, 32, 32, 3)  # For pictures.
    assert "features" in exp.eval_data[0] and "segmentation" in exp.eval_data[0]


@pytest.mark.slow
def test_spot_student_caches_the_sequence_its_finetuned_blocks_read(data_dir, tmp_path):
    # The teacher read the frozen backbone; the student fine-tunes its last block.
    backbone = dict(DINO, finetune_from_block=1)
    teacher = str(tmp_path / "teacher")
    trainer.train_and_evaluate(_config(data_dir, DINO, True, "teacher+cpu"), teacher)
    config = _config(data_dir, backbone, True, "student+cpu")
    config.model.teacher.workdir = teacher
    config.objective.distillation_weight = 1.0
    exp = _assert_same_run(config, steps=3)
    batch = exp.train_data[0]
    assert batch["features"].shape == (8, 4, 384)
    assert batch["hidden"].shape == (8, 1 + 4, 384)  # CLS and the patches after block 0.


def test_a_model_without_backbone_cannot_cache(config):
    config.data.cache_features = True
    with pytest.raises(ValueError, match="data.cache_features=False"):
        trainer.Experiment(config)
