r"""MAE: masked autoencoders are scalable vision learners (He et al., 2022).

The paper's ViT-B/16 recipe (`main_pretrain.py`, PRETRAIN.md): one 224x224 crop of area
0.2-1 with flips (`ocjax.data.multicrop`); 75 % of the 196 patches removed at random,
the ViT-B/16 encoder (fixed sine-cosine positions) on the rest, a decoder of 8 blocks,
512 wide with 16 heads, predicting each removed patch's pixels normalised per patch.
AdamW (betas 0.9, 0.95), batch 4,096, base learning rate 1.5e-4 x batch / 256 after 40
warm-up epochs, cosine to 0 over 800 epochs; weight decay 0.05, not on biases and norms.

The default preset reads ImageNet's training images as the paper does (stored as 224x224
centre squares from which the crops are drawn; `data.imagenet.manual_dir`); its
evaluation reports the token statistics. `coco` reads COCO train2017 instead, and then
the evaluation also clusters the encoder's patch tokens (all patches visible) of val2017
per image.

Presets (combine with `+`):

    coco   COCO train2017 instead of ImageNet (`data.coco.manual_dir`)
    cpu    the embedded CLEVR-like scenes of DINOSAUR's cpu protocol (64x64, 10,000
           training scenes): a ViT of 4x4 patches (16x16 tokens, 128-d, 4 blocks, 4
           heads), decoder 2 blocks of 64, batch 64, learning rate 1.5e-4 (calibrated:
           see the preset), 32 epochs (5,000 steps: about 75
           minutes on the 2-core CPU, 0.9 s per step measured with two other trainings
           running)
    quick  the cpu protocol shrunk to a few minutes: 1,000 scenes, 2 blocks, 200 steps
"""

import dataclasses

import ml_collections

from ocjax.data.multicrop import MultiCropAugment
from ocjax.training import sections

PRESETS = ("coco", "cpu", "quick")


def get_config(presets: str = "") -> ml_collections.ConfigDict:
    """Returns the experiment, modified by `+`-separated presets."""
    presets = tuple(p for p in presets.split("+") if p)
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        raise ValueError(f"Unknown preset(s) {unknown} for mae.py; use {PRESETS}.")
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = sections.pretraining_images("coco" if "coco" in presets else "imagenet")
    config.data.crops = dataclasses.asdict(MultiCropAugment.mae(224))

    config.model = ml_collections.ConfigDict(
        {
            "name": "mae",
            "image_size": 224,
            "patch_size": 16,
            "dim": 768,
            "depth": 12,
            "num_heads": 12,
            "mlp_ratio": 4.0,
            "num_registers": 0,
            "decoder_dim": 512,
            "decoder_depth": 8,
            "decoder_heads": 16,
            "mask_ratio": 0.75,
            "dtype": "float32",
        }
    )
    config.objective = ml_collections.ConfigDict(
        {"name": "mae", "norm_pix_loss": True, "readout_n_init": 3}
    )
    batch_size = 4096
    config.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "b2": 0.95,
            "weight_decay": 0.05,
            "decay_matrices_only": True,
            "grad_clip_norm": None,
            "schedule": {
                "learning_rate": 1.5e-4 * batch_size / 256,
                "warmup_epochs": 40.0,
                "decay": "cosine",
                "end_learning_rate": 0.0,
            },
        }
    )
    config.training = sections.training(batch_size, num_epochs=800.0, checkpoint_every=5_000)
    config.evaluation = sections.evaluation(split="validation")
    config.mesh = sections.mesh()

    if "cpu" in presets or "quick" in presets:
        quick = "quick" in presets
        batch_size = 64
        sections.pretraining_on_clevr_like(
            config,
            MultiCropAugment.mae(64),
            batch_size=batch_size,
            num_epochs=32,
            # 4x the linear scaling rule's 3.75e-5: of 3.75e-5, 1.5e-4 and 6e-4 over 400
            # steps, 1.5e-4 gave the best token k-means (FG-ARI 0.355, 0.359, 0.301 on 256
            # test scenes; VQA AP 0.53, 0.56, 0.57) for a schedule 1/100 of the paper's
            # (docs/reproductions/mae_cpu_lr_calibration.jsonl, calibrate_lr.py there).
            learning_rate=4 * 1.5e-4 * batch_size / 256,
            warmup_epochs=1.6,  # The paper's 40 of 800 epochs (1:20).
            quick=quick,
        )
        config.model.update(
            decoder_dim=64,
            decoder_depth=2,
            decoder_heads=4,
        )
    return config
