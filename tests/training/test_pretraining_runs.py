"""Self-supervised pretraining end to end: each config's few-step run lowers its loss and
evaluates its encoder, and DINOSAUR trains on the encoder a pretraining run made."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from ocjax.data.multicrop import MultiCropAugment
from ocjax.training import trainer


def _losses(workdir, key="loss"):
    with open(workdir / "metrics.jsonl", encoding="utf-8") as f:
        return {r["step"]: r[key] for r in map(json.loads, f) if key in r}


# What a few steps must lower: DINO's loss is the teacher's entropy (which centring raises
# while the features are still alike) plus the student's KL divergence from the teacher.
LEARNED = {"dino": "loss/kl", "mocov3": "loss", "mae": "loss"}


def _tiny(name: str, data_dir: str):
    """A pretraining config's quick preset shrunk to seconds: 32x32 scenes, a 32-d ViT."""
    import importlib

    config = importlib.import_module(f"configs.{name}").get_config("quick")
    config.data.data_dir = data_dir
    config.data.resolution = 32
    config.data.max_objects = 4
    config.data.clevr_like.update(min_objects=2, num_train=48, num_validation=8, num_test=12)
    recipe = {
        "dino": lambda: MultiCropAugment.dino(32, local_count=2, local_size=16),
        # Mild views: with the paper's (crops of 8 % of a 32x32 scene, blur, solarization)
        # 30 steps of batch 8 stay at chance, though the loss falls on near-equal views.
        "mocov3": lambda: MultiCropAugment.mocov3(
            32,
            global_area=(0.6, 1.0),
            jitter_probability=0.0,
            grayscale_probability=0.0,
            global_blur=(0.0, 0.0),
            global_solarize=(0.0, 0.0),
        ),
        "mae": lambda: MultiCropAugment.mae(32),
    }[name]()
    config.data.crops = dataclasses.asdict(recipe)
    config.model.update(image_size=32, patch_size=4, dim=32, depth=1, num_heads=4)
    if name == "dino":
        config.model.update(out_dim=64, head_hidden_dim=32, bottleneck_dim=16)
        config.model.freeze_last_layer_steps = 2
    if name == "mocov3":
        config.model.hidden_dim = 32
    if name == "mae":
        config.model.update(decoder_dim=16, decoder_depth=1, decoder_heads=2)
    config.optimizer.schedule.update(learning_rate=2e-3, warmup_epochs=0.34)  # 2 steps.
    config.training.update(
        num_epochs=None,
        num_steps=30,
        log_every=5,
        batch_size=8,
        checkpoint_every=30,
        image_every=30,
    )
    config.evaluation.update(every_steps=30, heldout_examples=8, batch_size=8, num_images=2)
    return config


def _pretrain(name: str, data_dir: str, workdir):
    """Trains `name`'s tiny config in `workdir`; checks its loss fell, its evaluation and
    its momentum encoders; returns the final state."""
    config = _tiny(name, data_dir)
    state = trainer.train_and_evaluate(config, str(workdir))
    losses = _losses(workdir, LEARNED[name])
    first, last = np.mean([losses[5], losses[10]]), np.mean([losses[25], losses[30]])
    assert all(np.isfinite(v) for v in losses.values()) and last < first, losses
    results = json.loads((workdir / "eval.json").read_text())
    assert -1 <= results["readout/ari_bg"] <= 1 and 0 <= results["readout/mbo"] <= 1
    assert 0 <= results["tokens/mean_energy"] <= 1 and -1 <= results["tokens/cosine"] <= 1
    # The VQA probe on the patch tokens: 9 of the 12 test scenes train it, 3 score it.
    assert 0 <= results["vqa/ap"] <= 1 and results["vqa/test_images"] == 3
    for online, momentum in getattr(trainer.build_model(**config.model), "EMA", ()):
        # The momentum copy moved (EMA), but is not the online weights.
        a, b = state.params[online]["vit"], state.params[momentum]["vit"]
        gap = max(
            float(np.abs(np.asarray(x) - np.asarray(y)).max())
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
        )
        assert gap > 0
    return state


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dino", "mocov3"])
def test_pretraining_lowers_its_loss_and_scores_its_tokens(data_dir, tmp_path, name):
    _pretrain(name, data_dir, tmp_path)


@pytest.mark.slow
def test_mae_pretrains_and_dinosaur_trains_on_its_encoder(data_dir, tmp_path):
    from configs import coco_dinosaur

    encoder = tmp_path / "mae"
    _pretrain("mae", data_dir, encoder)
    config = coco_dinosaur.get_config("quick")
    config.data.data_dir = data_dir
    config.data.resolution = 32
    config.data.max_objects = 4
    config.data.clevr_like.update(min_objects=2, num_train=48, num_validation=8, num_test=12)
    config.model.backbone.workdir = str(encoder)
    config.model.update(
        num_slots=4, slot_dim=16, mlp_hidden_dim=16, decoder_hidden_dims=[32], decoder_dim=16
    )
    config.training.update(num_steps=10, log_every=5, batch_size=8, checkpoint_every=10)
    config.evaluation.update(every_steps=10, heldout_examples=8, batch_size=8)
    state = trainer.train_and_evaluate(config, str(tmp_path / "dinosaur"))
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(str(encoder / "checkpoints"))
    saved = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
    expected = dict(saved["params"]["encoder"])
    expected.pop("norm")  # DINOSAUR reads the last block before the final norm.
    got = state.params["backbone"]["vit"]
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        for x, y in zip(jax.tree.leaves(value), jax.tree.leaves(got[key])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.isfinite(json.loads((tmp_path / "dinosaur" / "eval.json").read_text())["decoder/mbo"])


@pytest.mark.slow
def test_mae_pretrains_on_imagenet_folders_without_masks(tmp_path):
    from configs import mae
    from ocjax.training import sections
    from tests.data.test_imagenet import _write

    _write(tmp_path / "imagenet")
    config = _tiny("mae", str(tmp_path / "data"))
    default = mae.get_config("")
    assert default.data.name == "imagenet"  # The paper's images are the default.
    config.data = sections.pretraining_images("imagenet")
    config.data.update(data_dir=str(tmp_path / "data"), resolution=32)
    config.data.imagenet.manual_dir = str(tmp_path / "imagenet")
    config.data.crops = dataclasses.asdict(MultiCropAugment.mae(32))
    config.evaluation.update(split="validation", heldout_split="validation", heldout_examples=3)
    config.evaluation.batch_size = 3
    del config.evaluation.probe  # ImageNet's images carry no object attributes.
    config.training.update(num_steps=4, batch_size=2, log_every=2, checkpoint_every=4)
    config.evaluation.every_steps = 4
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    # No masks: the token statistics are scored, the mask metrics have no image to score.
    assert results["num_images"] == 3 and 0 <= results["tokens/mean_energy"] <= 1
    assert "readout/ari_bg" not in results
