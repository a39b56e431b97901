r"""DINO: self-distillation with no labels (Caron et al., 2021), the encoder DINOSAUR and
SPOT read.

The paper's ViT-S/16 recipe (`main_dino.py`, the README's 300-epoch command): 224x224
global crops (2, area 0.4-1) and 96x96 local crops (10, area 0.05-0.4), flips, colour
jitter, grayscale, blur and solarization (`ocjax.data.multicrop`); a ViT-S/16 student and
its EMA teacher (momentum 0.996 -> 1 on a cosine), DINO heads of 65,536 prototypes
(hidden 2,048, bottleneck 256, normalised last layer, frozen for the first epoch);
student temperature 0.1, teacher temperature 0.04 -> 0.07 over the first 30 epochs,
centre momentum 0.9. AdamW, batch 1,024, learning rate 5e-4 x batch / 256 after 10
warm-up epochs, cosine to 1e-6; weight decay 0.04 -> 0.4 on a cosine (not on biases and
norms); each parameter's gradient clipped to norm 3.

The default preset reads ImageNet's training images as the paper does (stored as 224x224
centre squares from which the crops are drawn; `data.imagenet.manual_dir`, README
"Datasets"); ImageNet has no masks, so its evaluation reports the teacher's token
statistics. `coco` reads COCO train2017 instead, and then the evaluation also clusters the
teacher's patch tokens of val2017 per image (k-means, objects + 1 clusters: FG-ARI, mBO).

Presets (combine with `+`):

    coco   COCO train2017 instead of ImageNet (`data.coco.manual_dir`)
    cpu    the embedded CLEVR-like scenes DINOSAUR's cpu protocol reads (64x64, 3-6
           objects, 10,000 training scenes): a ViT of 4x4 patches (16x16 tokens, 128-d,
           4 blocks, 4 heads), 2 global crops of 64 and 4 local crops of 32, 4,096
           prototypes, batch 32, 8 epochs (2,500 steps: about 2 hours on the 2-core
           CPU, 2.9 s per step measured with two other trainings running)
    quick  the cpu protocol shrunk to a few minutes: 1,000 scenes, 2 blocks, 200 steps

Run: `python -m ocjax.main --config configs/dino.py:cpu --workdir runs/dino_cpu`; the run
is then a backbone: `model.backbone = {"kind": "ocjax_vit", "workdir": "runs/dino_cpu"}`.
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
        raise ValueError(f"Unknown preset(s) {unknown} for dino.py; use {PRESETS}.")
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = sections.pretraining_images("coco" if "coco" in presets else "imagenet")
    config.data.crops = dataclasses.asdict(MultiCropAugment.dino(224, local_count=10))

    config.model = ml_collections.ConfigDict(
        {
            "name": "dino",
            "image_size": 224,
            "patch_size": 16,
            "dim": 384,
            "depth": 12,
            "num_heads": 6,
            "mlp_ratio": 4.0,
            "num_registers": 0,
            "out_dim": 65536,
            "head_hidden_dim": 2048,
            "bottleneck_dim": 256,
            "head_layers": 3,
            "norm_last_layer": True,
            "center_momentum": 0.9,
            "freeze_last_layer_steps": 0,  # One epoch: set below from the data.
            "momentum": 0.996,
            "final_momentum": 1.0,
            "dtype": "float32",
        }
    )
    config.objective = ml_collections.ConfigDict(
        {
            "name": "dino",
            "student_temperature": 0.1,
            "teacher_temperature": 0.07,
            "warmup_teacher_temperature": 0.04,
            "warmup_teacher_temperature_steps": 0,  # 30 epochs: set below.
            "readout_n_init": 3,
        }
    )
    batch_size, epochs = 1024, 300
    config.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "weight_decay": 0.04,
            "weight_decay_end": 0.4,
            "decay_matrices_only": True,
            "grad_clip_norm": 3.0,
            "grad_clip_norm_type": "per_tensor",
            "schedule": {
                "learning_rate": 5e-4 * batch_size / 256,
                "warmup_epochs": 10.0,
                "decay": "cosine",
                "end_learning_rate": 1e-6,
            },
        }
    )
    config.training = sections.training(
        batch_size, num_epochs=float(epochs), checkpoint_every=5_000
    )
    config.evaluation = sections.evaluation(split="validation")
    config.mesh = sections.mesh()
    images = sections.COCO_TRAIN_IMAGES if "coco" in presets else sections.IMAGENET_TRAIN_IMAGES
    steps_per_epoch = images // batch_size

    if "cpu" in presets or "quick" in presets:
        quick = "quick" in presets
        batch_size = 32
        sections.pretraining_on_clevr_like(
            config,
            # Blur widths scaled with the image (the paper's sigmas are pixels of 224x224).
            MultiCropAugment.dino(64, local_count=4, local_size=32, blur_sigma=(0.03, 0.57)),
            batch_size=batch_size,
            num_epochs=8,
            learning_rate=5e-4 * batch_size / 256,
            warmup_epochs=0.5,  # The paper warms up 10 of 300 epochs; here half an epoch.
            eval_every=500,
            quick=quick,
        )
        config.model.update(
            out_dim=1024 if quick else 4096,
            head_hidden_dim=256 if quick else 1024,
            bottleneck_dim=64 if quick else 128,
        )
        steps_per_epoch = config.data.clevr_like.num_train // batch_size
    # DINO freezes the prototypes for the first epoch and warms the teacher temperature up
    # over the first 30 of 300 epochs (10 %).
    config.model.freeze_last_layer_steps = steps_per_epoch
    total = config.training.num_steps or int(config.training.num_epochs * steps_per_epoch)
    config.objective.warmup_teacher_temperature_steps = total // 10
    return config
