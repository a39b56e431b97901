r"""Unsupervised part discovery from contrastive reconstruction (Choudhury et al., 2021).

The paper's CUB-200-2011 / DeepFashion setting: K = 4 parts on 256x256 images with the
foreground mask as input; a part segmenter f (DeepLab-v2 ResNet-50 in the paper; here
ocjax's convolutional `PartNet`) and a frozen feature extractor phi (ImageNet VGG19 in the
paper; here any frozen ocjax backbone, e.g. a DINO ViT from a weights file) for the
feature and contrastive losses. Loss weights lambda_f 5, lambda_c 2.3e3, lambda_v 30,
lambda_e 5.7e3 (PASCAL-Part: 5.7e4); the equivariance transform jitters brightness,
contrast, saturation and hue by up to 30 %, rotates by up to 60 degrees and translates by
up to 10 %. SGD, learning rate 1e-5, weight decay 5e-4, batch 6; from the authors' released
configuration: contrastive temperature 0.19, gradients clipped to norm 5. Metrics: NMI and ARI
between predicted parts and the ground-truth part labels, and their foreground-only
versions, over the pixels of the whole split as in the paper (`parts/pooled_fg_ari`, ...;
per-image scores beside them), next to the paper's baseline: one k-means of phi's features
on the objects' pixels of the split into K clusters (`readout/pooled_...` in eval.json;
per-image k-means as `readout/ari_bg`, `readout/fg_nmi`).

The data default to the embedded part figures (`parts_like`, offline); phi defaults to a
DINO ViT-S/8 read from `weights/dino_deitsmall8_pretrain.pth` (README, "Real-world object
discovery").

Presets (after a colon):

* `cpu`: the reproduction protocol on this machine: 64x64 figures, phi the flagship's own
  ViT (`python -m ocjax.reproduce flagship_slot_cossim` first, as for DINOSAUR), a
  32-channel `PartNet` whose position embedding is measured in the object's frame (from the
  given foreground mask) instead of the image's, Adam at 1e-3 instead of SGD at 1e-5 (the budget is 2,000 steps of
  batch 16 instead of the paper's schedule), lambda_f = 1e3 instead of 5 (phi's features are on
  a smaller scale than VGG19's; see the preset), held-out scores every 500 steps;
* `dino`, `mocov3`, `mae`: with `cpu`, phi is the ViT that DINO, MoCo v3 or MAE
  pretrained here on the CLEVR-like scenes (`python -m ocjax.reproduce mae_clevr`, ...),
  read from `runs/reproduce/<encoder>_clevr/seed0` (`python -m ocjax.reproduce parts_mae`);
* `quick`: a smoke run of a few minutes with phi the encoder of `configs/mae.py:quick`
  (its workdir `runs/quick/mae`, trained in a few minutes).

    python -m ocjax.main --config configs/parts.py:cpu --workdir runs/parts
"""

import ml_collections

from configs.coco_dinosaur import FLAGSHIP_WORKDIR
from ocjax.training import sections

PRESETS = ("cpu", "quick", "dino", "mocov3", "mae")


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    """Returns the experiment, optionally changed by `+`-joined presets."""
    presets = [p for p in preset.split("+") if p]
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        raise ValueError(f"Unknown preset(s) {unknown} for parts.py; use {PRESETS}.")
    config = ml_collections.ConfigDict()
    config.seed = 0

    # Data: one figure per image with part labels and its foreground, images in [0, 1].
    config.data = sections.data("parts_like", 256, max_objects=6, normalization="unit")

    # Model: part segmenter f with the foreground as input; frozen phi for L_f and L_c.
    config.model = ml_collections.ConfigDict(
        {
            "name": "part_discovery",
            "num_parts": 4,
            "channels": [64, 64, 64, 64],
            "kernel_size": 5,
            "dilations": (1, 1, 1, 1),
            # Where f's position embedding is measured: "image" or "object" (the object's
            # own frame from the given foreground mask).
            "position": "image",
            "backbone": {
                "kind": "dino_vit",
                "architecture": "dino_vits8",
                "checkpoint": "weights/dino_deitsmall8_pretrain.pth",
            },
            "max_rotation": 60.0,
            "max_translation": 0.1,
            "jitter": 0.3,
            "dtype": "float32",
        }
    )

    # Losses: the paper's CUB / DeepFashion weights.
    config.objective = ml_collections.ConfigDict(
        {
            "name": "part_discovery",
            "feature_weight": 5.0,
            "contrastive_weight": 2.3e3,
            "visual_weight": 30.0,
            "equivariance_weight": 5.7e3,
            "temperature": 0.19,
            # Evaluation also scores k-means of phi's features on the object (K clusters).
            "baseline_clusters": 4,
        }
    )

    config.optimizer = ml_collections.ConfigDict(
        {
            "name": "sgd",
            "weight_decay": 5e-4,
            "grad_clip_norm": 5.0,
            "schedule": {"learning_rate": 1e-5, "warmup_steps": 0, "decay": "constant"},
        }
    )
    config.training = sections.training(6, num_steps=100_000, checkpoint_every=5_000)
    config.evaluation = sections.evaluation(batch_size=32)
    config.mesh = sections.mesh()

    if "cpu" in presets or "quick" in presets:
        config.data.resolution = 64
        config.data.parts_like.update(num_train=10_000, num_validation=500, num_test=1_000)
        config.model.backbone = {"kind": "ocjax_vit", "workdir": FLAGSHIP_WORKDIR}
        config.model.channels = [32, 32, 32, 32]
        # f's receptive field is 17 pixels, where the paper's DeepLab sees the whole bird; f
        # learns where a pixel lies on the figure from its position in the object's frame
        # (from the given foreground mask) instead of the image's (docs/reproductions.md).
        config.model.position = "object"
        # phi's features set the scale of L_f: the flagship ViT's spread within an object is
        # about 13 per pixel, far below VGG19's, so at lambda_f = 5 the feature term is 0.5 % of
        # the contrastive one and f collapses to one part (docs/reproductions.md); lambda_f = 1e3
        # gives the two terms the same order, as in the paper's setting.
        config.objective.feature_weight = 1_000.0
        config.optimizer.update(name="adam", weight_decay=0.0)
        config.optimizer.schedule.update(learning_rate=1e-3, warmup_steps=100)
        config.training.update(
            batch_size=16, num_steps=2_000, log_every=50, checkpoint_every=500, image_every=500
        )
        config.evaluation.update(every_steps=500, heldout_examples=256)
    encoder = sections.encoder_preset(presets, "parts.py")
    if encoder:
        config.model.backbone.workdir = sections.ENCODER_RUNS[encoder]
    if "quick" in presets:
        if not encoder:
            config.model.backbone.workdir = sections.QUICK_ENCODER_WORKDIR
        config.data.parts_like.update(num_train=500, num_validation=32, num_test=64)
        config.training.update(num_steps=100, log_every=10, checkpoint_every=50, image_every=50)
        config.evaluation.update(every_steps=50, heldout_examples=32)
    return config
