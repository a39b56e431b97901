r"""Rotating Features on the Shapes datasets (Löwe et al., NeurIPS 2023, Sec. 4 and App. C).

4Shapes setting of the paper: 32x32 greyscale images of a square, an up- and a down-triangle
and a circle (50k/10k/10k), values in [0, 1]; rotating convolutional autoencoder with hidden
32 / linear 64 and n = 8 rotation dims; batch 64, Adam at 1e-3 with 500 linear warm-up steps
then constant, gradient norm clipped at 0.1, 100k steps. Evaluation: orientations of the
output features weighted by 1[‖z‖ > 0.1], per-image k-means with K = objects + 1 (n_init 10),
ARI-BG and mBO without overlap pixels.

Presets (after a colon): `4shapes_rgb`, `4shapes_rgbd` (hidden 64 / linear 128), `10shapes`
(48x48, ten coloured shapes; paper ARI-BG 0.959 +- 0.022), `cpu` and `quick` (a ~3 minute
smoke run on a 2-core CPU), combinable with `+` (e.g. `4shapes_rgb+quick`).

`cpu` is the reproduction protocol (`python -m ocjax.reproduce rotating_4shapes`): the
paper's model, optimiser, clipping, data and read-out, and only the budget scaled to about an
hour on a 2-core CPU: batch 32 instead of 64, 3,000 steps instead of 100k, the first 10k of
the 50k training images, test on the first 1,000 test images, and held-out ARI-BG / mBO
every 500 steps on 256 validation images for the learning curve.

    python -m ocjax.main --config configs/shapes_rotating.py --workdir runs/rf_4shapes
    python -m ocjax.main --config configs/shapes_rotating.py:quick --workdir runs/rf_quick
"""

import ml_collections

from ocjax.training import sections

PRESETS = ("4shapes_rgb", "4shapes_rgbd", "10shapes", "cpu", "quick")


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    """Returns the experiment, optionally changed by `+`-joined presets."""
    presets = [p for p in preset.split("+") if p]
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        raise ValueError(f"Unknown preset(s) {unknown} for shapes_rotating.py; use {PRESETS}.")
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.objective = ml_collections.ConfigDict(
        dict(name="synchrony", readout_threshold=0.1, n_init=10)
    )
    config.objective.num_clusters = ml_collections.config_dict.placeholder(int)  # objects + 1

    # Data: rendered 4Shapes, 32x32 greyscale in [0, 1] (Rotating Features need inputs >= 0).
    config.data = sections.data("shapes", 32, max_objects=4, channels=1, normalization="unit")
    config.data.shapes.update(
        variant="4shapes", num_train=50_000, num_validation=10_000, num_test=10_000, seed=0
    )

    config.model = ml_collections.ConfigDict(
        dict(name="rotating_autoencoder", hidden_dim=32, linear_dim=64, n=8, dtype="float32")
    )

    # Optimisation: Adam, 500 linear warm-up steps then constant, gradient clipping at 0.1.
    config.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",
            weight_decay=0.0,
            grad_clip_norm=0.1,
            schedule=dict(learning_rate=1e-3, warmup_steps=500, decay="constant"),
        )
    )

    config.training = sections.training(64, num_steps=100_000, checkpoint_every=5_000)
    config.evaluation = sections.evaluation()
    config.mesh = sections.mesh()

    if "4shapes_rgb" in presets:
        config.data.channels = 3
        config.data.shapes.variant = "4shapes_rgb"
    if "4shapes_rgbd" in presets:
        config.data.channels = 4
        config.data.shapes.variant = "4shapes_rgbd"
        config.model.update(hidden_dim=64, linear_dim=128)
    if "10shapes" in presets:
        config.data.update(resolution=48, channels=3, max_objects=10)
        config.data.shapes.variant = "10shapes"
    if "cpu" in presets:
        config.data.shapes.update(num_train=10_000, num_validation=1_000, num_test=1_000)
        config.training.update(
            batch_size=32, num_steps=3_000, log_every=50, checkpoint_every=500, image_every=1_000
        )
        config.evaluation.update(batch_size=50, every_steps=500, heldout_examples=256)
    if "quick" in presets:
        # A smoke run for a 2-core CPU (about 3 minutes): 2k training images, hidden 16 /
        # linear 32, 300 steps of batch 16, evaluation on 100 test images. It shows the loss
        # falling and the first orientation maps, not the paper's separation.
        config.data.shapes.update(num_train=2_000, num_validation=100, num_test=100)
        config.model.update(hidden_dim=16, linear_dim=32)
        config.optimizer.schedule.warmup_steps = 50
        config.training.update(
            batch_size=16, num_steps=300, log_every=20, checkpoint_every=150, image_every=150
        )
        config.evaluation.batch_size = 50
    return config
