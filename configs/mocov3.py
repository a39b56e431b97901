r"""MoCo v3: an empirical study of training self-supervised ViTs (Chen, Xie and He, 2021).

The paper's ViT-S/16 recipe (`main_moco.py`, CONFIG.md's 300-epoch ViT-Small command):
two 224x224 crops of area 0.08-1 with BYOL's augmentations (colour jitter, grayscale,
blur 1.0 / 0.1, solarization 0 / 0.2, flips; `ocjax.data.multicrop`); a ViT-S/16 (12
heads) with fixed sine-cosine positions and a frozen random patch projection
(`--stop-grad-conv1`); projector 3 x 4096 -> 256 and predictor 2 x 4096 -> 256 with
BatchNorm; momentum encoder 0.99 -> 1 on a cosine (`--moco-m-cos`); symmetrised InfoNCE
at temperature 0.2. AdamW, batch 1,024, learning rate 1.5e-4 x batch / 256 after 40
warm-up epochs, cosine to 0; weight decay 0.1.

The default preset reads ImageNet's training images as the paper does (stored as 224x224
centre squares from which the crops are drawn; `data.imagenet.manual_dir`); its
evaluation reports the token statistics. `coco` reads COCO train2017 instead, and then
the evaluation also clusters the base encoder's patch tokens of val2017 per image.

Presets (combine with `+`):

    coco   COCO train2017 instead of ImageNet (`data.coco.manual_dir`)
    cpu    the embedded CLEVR-like scenes of DINOSAUR's cpu protocol (64x64, 10,000
           training scenes): a ViT of 4x4 patches (16x16 tokens, 128-d, 4 blocks, 4
           heads), two crops of 64, projector and predictor 1,024 wide, batch 32, 8
           epochs (2,500 steps: about 90 minutes on the 2-core CPU, 2.2 s per step
           measured with two other trainings running)
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
        raise ValueError(f"Unknown preset(s) {unknown} for mocov3.py; use {PRESETS}.")
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = sections.pretraining_images("coco" if "coco" in presets else "imagenet")
    config.data.crops = dataclasses.asdict(MultiCropAugment.mocov3(224))

    config.model = ml_collections.ConfigDict(
        {
            "name": "mocov3",
            "image_size": 224,
            "patch_size": 16,
            "dim": 384,
            "depth": 12,
            "num_heads": 12,
            "mlp_ratio": 4.0,
            "num_registers": 0,
            "projector_layers": 3,
            "predictor_layers": 2,
            "hidden_dim": 4096,
            "out_dim": 256,
            "frozen_patch_embed": True,
            "momentum": 0.99,
            "final_momentum": 1.0,
            "dtype": "float32",
        }
    )
    config.objective = ml_collections.ConfigDict(
        {"name": "mocov3", "temperature": 0.2, "readout_n_init": 3}
    )
    batch_size = 1024
    config.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "weight_decay": 0.1,
            "decay_matrices_only": False,  # MoCo v3 decays every parameter.
            "grad_clip_norm": None,
            "schedule": {
                "learning_rate": 1.5e-4 * batch_size / 256,
                "warmup_epochs": 40.0,
                "decay": "cosine",
                "end_learning_rate": 0.0,
            },
        }
    )
    config.training = sections.training(batch_size, num_epochs=300.0, checkpoint_every=5_000)
    config.evaluation = sections.evaluation(split="validation")
    config.mesh = sections.mesh()

    if "cpu" in presets or "quick" in presets:
        quick = "quick" in presets
        batch_size = 32
        sections.pretraining_on_clevr_like(
            config,
            # Blur widths scaled with the image (the paper's sigmas are pixels of 224x224).
            MultiCropAugment.mocov3(64, blur_sigma=(0.03, 0.57)),
            batch_size=batch_size,
            num_epochs=8,
            learning_rate=1.5e-4 * batch_size / 256,
            warmup_epochs=1.0,  # The paper's 40 of 300 epochs (about 1:8).
            eval_every=500,
            quick=quick,
        )
        config.model.hidden_dim = 256 if quick else 1024
    return config
