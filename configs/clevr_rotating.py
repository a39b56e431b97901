r"""Rotating Features on the CLEVR-like scenes (Löwe et al., NeurIPS 2023, Sec. 4.3).

The paper trains on CLEVR (3-6 objects) at 128x128 RGB in [0, 1] with the larger
autoencoder of its RGB-D experiments: hidden 64 / linear 128, n = 8 rotation dims (the n of
its Shapes experiments; SPEC does not state another), batch 64, Adam at 1e-3 with 500 linear
warm-up steps then constant, gradient norm clipped at 0.1. Here the data are ocjax's
rendered CLEVR-like scenes (offline). Evaluation: thresholded orientations (t = 0.1),
per-image k-means with K = objects + 1, ARI-BG and mBO.

Presets (after a colon): `quick`, a ~3 minute smoke run on a 2-core CPU at 32x32.

    python -m ocjax.main --config configs/clevr_rotating.py --workdir runs/rf_clevr
    python -m ocjax.main --config configs/clevr_rotating.py:quick --workdir runs/rf_clevr_quick
"""

import ml_collections

from ocjax.training import sections

PRESETS = ("quick",)


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    """Returns the experiment, optionally shrunk by a preset."""
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.objective = ml_collections.ConfigDict(
        dict(name="synchrony", readout_threshold=0.1, n_init=10)
    )
    config.objective.num_clusters = ml_collections.config_dict.placeholder(int)  # objects + 1

    # Data: rendered CLEVR-like scenes, 3-6 objects (CLEVR6), 128x128 RGB in [0, 1].
    config.data = sections.data("clevr_like", 128, max_objects=6, channels=3, normalization="unit")
    config.data.clevr_like.update(
        min_objects=3, num_train=10_000, num_validation=1_000, num_test=1_000, seed=0
    )

    config.model = ml_collections.ConfigDict(
        dict(name="rotating_autoencoder", hidden_dim=64, linear_dim=128, n=8, dtype="float32")
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

    if preset == "quick":
        # A smoke run for a 2-core CPU (about 3 minutes): 32x32 scenes of 2-4 objects, hidden
        # 16 / linear 32, 200 steps of batch 16, evaluation on 100 test scenes. It shows the
        # loss falling and the first orientation maps, not the paper's segmentation.
        config.data.resolution = 32
        config.data.max_objects = 4
        config.data.clevr_like.update(
            min_objects=2, num_train=1_000, num_validation=100, num_test=100
        )
        config.model.update(hidden_dim=16, linear_dim=32)
        config.optimizer.schedule.warmup_steps = 50
        config.training.update(
            batch_size=16, num_steps=200, log_every=20, checkpoint_every=100, image_every=100
        )
        config.evaluation.batch_size = 50
    elif preset:
        raise ValueError(f"Unknown preset {preset!r} for clevr_rotating.py; use '' or 'quick'.")
    return config
