r"""Slot Attention autoencoder on CLEVR6-like scenes (Locatello et al., 2020, Sec. 4.1).

Object discovery setting of the paper: 128x128 images of 3-6 objects, 7 slots,
3 iterations, 64-d slots and convolutions, a spatial broadcast decoder from 8x8, every
kernel initialised as Keras does (glorot-uniform, zero biases) as in the official TF2 code,
batch 64, Adam at 4e-4 with 10k warm-up steps and x0.5 decay every 100k steps,
500k steps. The data are ocjax's rendered CLEVR-like scenes (offline); the paper's
CLEVR6 score is FG-ARI 98.8 +- 0.3.

Presets (after a colon):

* `cpu`, the reproduction protocol (`python -m ocjax.reproduce sa_ae_clevr`): the paper's
  model, slots, iterations and optimiser on 64x64 scenes of 3-6 objects (the decoder
  broadcasts to 8x8 and upsamples three times instead of four), with the budget scaled to a
  2-core CPU: batch 8 instead of 64, 3,000 steps instead of 500k and so a 500-step
  warm-up, held-out FG-ARI every 500 steps on 256 validation scenes. The decoder runs once
  per slot at full resolution, so an image costs 33 GFLOP a step (XLA's count), 4.5 s for
  a step of batch 16 on the 2-core machine (0.57 of its matmul peak, `docs/benchmarks.md`);
  batch 8 keeps the 3,000 updates inside one 3-hour session (about 2 hours). 24k images
  are under 0.1 % of the paper's 32M;
* `quick` finishes on a 2-core CPU in a few minutes.

    python -m ocjax.main --config configs/clevr_sa_ae.py --workdir runs/sa_ae
    python -m ocjax.main --config configs/clevr_sa_ae.py:quick --workdir runs/sa_quick
"""

import ml_collections

from ocjax.training import sections

PRESETS = ("cpu", "quick")


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    """Returns the experiment, optionally shrunk by a preset."""
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.objective = ml_collections.ConfigDict(dict(name="autoencoder"))

    # Data: rendered CLEVR-like scenes, 3-6 objects (CLEVR6), 128x128.
    config.data = sections.data("clevr_like", 128, max_objects=6)
    config.data.clevr_like.update(
        min_objects=3, num_train=10_000, num_validation=1_000, num_test=1_000, seed=0
    )

    # Model: CNN encoder -> Slot Attention -> spatial broadcast decoder.
    config.model = ml_collections.ConfigDict(
        dict(
            name="slot_attention_autoencoder",
            num_slots=7,
            num_iterations=3,
            slot_dim=64,
            mlp_hidden_dim=128,
            encoder_channels=[64, 64, 64, 64],
            decoder_initial_size=8,
            decoder_upsample_channels=[64, 64, 64, 64],
            decoder_hidden_channels=[64],
            kernel_size=5,
            kernel_init="glorot_uniform",  # Keras' default, as the official TF2 code.
            dtype="float32",  # "bfloat16" computes in bf16 with float32 parameters.
        )
    )

    # Optimisation: Adam, linear warm-up, exponential decay.
    config.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",
            weight_decay=0.0,
            grad_clip_norm=ml_collections.config_dict.placeholder(float),
            schedule=dict(
                learning_rate=4e-4,
                warmup_steps=10_000,
                decay="exponential",
                decay_steps=100_000,
                decay_rate=0.5,
            ),
        )
    )

    config.training = sections.training(64, num_steps=500_000, checkpoint_every=5_000)
    config.evaluation = sections.evaluation()
    config.mesh = sections.mesh()

    if preset == "cpu":
        config.data.resolution = 64
        config.model.decoder_upsample_channels = [64, 64, 64]
        config.optimizer.schedule.warmup_steps = 500
        config.training.update(
            batch_size=8, num_steps=3_000, log_every=50, checkpoint_every=500, image_every=1_000
        )
        config.evaluation.update(every_steps=500, heldout_examples=256)
    elif preset == "quick":
        # A smoke run for a 2-core CPU (about 2 minutes on a quiet one): 64x64 scenes of 2-4
        # objects, 5 slots, 3x3 convolutions of 32 channels, 400 steps of batch 8. It shows the
        # loss falling and the first slot masks, not the paper's segmentation quality.
        config.data.resolution = 64
        config.data.max_objects = 4
        config.data.clevr_like.update(
            min_objects=2, num_train=2_000, num_validation=100, num_test=200
        )
        config.model.update(
            num_slots=5,
            slot_dim=32,
            mlp_hidden_dim=64,
            encoder_channels=[32, 32, 32],
            decoder_upsample_channels=[32, 32, 32],
            decoder_hidden_channels=[],
            decoder_initial_size=8,
            kernel_size=3,
        )
        config.optimizer.schedule.update(learning_rate=1e-3, warmup_steps=50, decay_steps=400)
        config.training.update(
            batch_size=8, num_steps=400, log_every=20, checkpoint_every=200, image_every=200
        )
        config.evaluation.batch_size = 40
    elif preset:
        raise ValueError(f"Unknown preset {preset!r} for clevr_sa_ae.py; use '', 'cpu' or 'quick'.")
    return config
