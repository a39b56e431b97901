r"""Complex AutoEncoder on 2Shapes / 3Shapes (Löwe et al., 2022, Sec. 4 and App. B).

Setting of the paper: 32x32x1 images (values in [0, 1]) of a square and an up-triangle
(2Shapes) or also a down-triangle (3Shapes); complex convolutional autoencoder with hidden 32
/ linear 64; batch 64, Adam at 1e-3 with 500 linear warm-up steps then constant; 10k steps on
2Shapes, 100k on 3Shapes. Evaluation: output phases as points (cos φ, sin φ) scaled by
clip(|z|, 0, 0.1) / 0.1, per-image k-means with K = objects + 1, ARI-BG and mBO without
overlap pixels.

Presets (after a colon): `3shapes`, `cpu` and `quick` (a ~1 minute smoke run on a 2-core
CPU), combinable with `+`.

`cpu` is the reproduction protocol (`python -m ocjax.reproduce cae_2shapes`): the paper's
model, batch, optimiser, data and read-out, and only the budget scaled to about an hour on a
2-core CPU: 5,000 steps instead of 10k, test on the first 1,000 of the 10k test images, and
held-out ARI-BG / mBO every 500 steps on 256 validation images for the learning curve.

    python -m ocjax.main --config configs/shapes_cae.py --workdir runs/cae_2shapes
    python -m ocjax.main --config configs/shapes_cae.py:3shapes --workdir runs/cae_3shapes
    python -m ocjax.main --config configs/shapes_cae.py:quick --workdir runs/cae_quick
"""

import ml_collections

from ocjax.training import sections

PRESETS = ("3shapes", "cpu", "quick")


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    """Returns the experiment, optionally changed by `+`-joined presets."""
    presets = [p for p in preset.split("+") if p]
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        raise ValueError(f"Unknown preset(s) {unknown} for shapes_cae.py; use {PRESETS}.")
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.objective = ml_collections.ConfigDict(
        dict(name="synchrony", readout_threshold=0.1, n_init=10)
    )
    config.objective.num_clusters = ml_collections.config_dict.placeholder(int)  # objects + 1

    # Data: rendered 2Shapes, 32x32 greyscale in [0, 1].
    config.data = sections.data("shapes", 32, max_objects=2, channels=1, normalization="unit")
    config.data.shapes.update(
        variant="2shapes", num_train=50_000, num_validation=10_000, num_test=10_000, seed=0
    )

    config.model = ml_collections.ConfigDict(
        dict(name="complex_autoencoder", hidden_dim=32, linear_dim=64, dtype="float32")
    )

    # Optimisation: Adam, 500 linear warm-up steps then constant.
    config.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",
            weight_decay=0.0,
            grad_clip_norm=ml_collections.config_dict.placeholder(float),
            schedule=dict(learning_rate=1e-3, warmup_steps=500, decay="constant"),
        )
    )

    config.training = sections.training(64, num_steps=10_000, checkpoint_every=2_000)
    config.evaluation = sections.evaluation()
    config.mesh = sections.mesh()

    if "3shapes" in presets:
        config.data.max_objects = 3
        config.data.shapes.variant = "3shapes"
        config.training.update(num_steps=100_000, checkpoint_every=5_000, image_every=5_000)
    if "cpu" in presets:
        config.data.shapes.update(num_validation=1_000, num_test=1_000)
        config.training.update(
            num_steps=5_000, log_every=50, checkpoint_every=500, image_every=1_000
        )
        config.evaluation.update(batch_size=50, every_steps=500, heldout_examples=256)
    if "quick" in presets:
        # A smoke run for a 2-core CPU (about 1 minute): 2k training images, hidden 16 /
        # linear 32, 300 steps of batch 16, evaluation on 100 test images. It shows the loss
        # falling and the first phase maps, not the paper's separation.
        config.data.shapes.update(num_train=2_000, num_validation=100, num_test=100)
        config.model.update(hidden_dim=16, linear_dim=32)
        config.optimizer.schedule.warmup_steps = 50
        config.training.update(
            batch_size=16, num_steps=300, log_every=20, checkpoint_every=150, image_every=150
        )
        config.evaluation.batch_size = 50
    return config
