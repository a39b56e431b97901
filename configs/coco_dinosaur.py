r"""DINOSAUR on COCO (Seitzer et al., ICLR 2023): slots reconstruct frozen DINO features.

The paper's COCO setting: 224x224 images (short side resized bicubically, centre crop), ImageNet
normalisation, ground-truth masks at 320x320 with every instance scored and crowd annotations
dropped (the release evaluates on val2017 without them); a frozen DINO ViT-B/16 whose last
block's output (before the final norm) gives 196 patch features of 768-d; LayerNorm and a
two-layer MLP (768 -> 768 -> 256);
Slot Attention with 7 slots of 256-d (one learned Gaussian), 3 iterations; the MLP decoder
(3 hidden layers of 2048, learned position per patch, alpha masks) reconstructing the
features, MSE. Every layer starts from PyTorch's default initialisation with the release's
zero biases (`model.kernel_init = "torch"`). Adam at 4e-4, 10k linear warm-up
steps then exponential decay (x0.5 every 100k steps after the warm-up, as the release's
scheduler), gradient clipping at 1.0, batch 64,
500k steps. Evaluation on val2017: decoder masks upsampled to the image, FG-ARI and mBO;
the slot-attention masks are the last iteration's (`model.attention_iteration`), as the
release reports them.

The weights are not downloaded by ocjax: fetch
https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth
(or timm's `vit_base_patch16_224.dino` model.safetensors) into `weights/` or point
`--config.model.backbone.checkpoint` at it; COCO 2017 goes in `data.coco.manual_dir`
(README, "Real-world object discovery").

Presets (after a colon, `+`-joined):

* `transformer`: the autoregressive transformer decoder of the paper instead of the MLP
  (the release's: PyTorch pre-norm decoder layers with biases, 4 layers, 768-d, 8 heads,
  no final LayerNorm and no position embedding; masks from the last cross-attention);
* `dinov2`: the DINOv2 ViT-B/14 backbone (224 -> 16x16 patches) instead of DINO ViT-B/16;
* `cpu`: the reproduction protocol on this machine (`python -m ocjax.reproduce
  dinosaur_clevr`): embedded CLEVR-like 64x64 scenes of 3-6 objects, 7 slots, and as the
  frozen backbone the flagship's own ViT trained by `python -m ocjax.reproduce
  flagship_slot_cossim` (its workdir `runs/reproduce/flagship_slot_cossim/seed0`; 16x16
  patches of 128-d from its last block); slots and decoder scaled to the 128-d features
  (slot 128-d, MLP decoder 3 x 512), batch 32, 3,000 steps with a 500-step warm-up,
  held-out FG-ARI every 500 steps;
* `patches`: with `cpu`, the frozen features are raw 4x4 pixel patches under one fixed
  random orthogonal projection to 128-d (`model.backbone.kind = "pixel_patches"`), a
  feature set that needs no earlier run (and carries no learned grouping), at batch 8
  with an MLP decoder of 3 x 256: the protocol run side by side with the official code (`python -m ocjax.reproduce
  dinosaur_patches`; docs/reproductions.md);
* `dino`, `mocov3`, `mae`: with `cpu`, the frozen encoder is the ViT that DINO, MoCo v3
  or MAE pretrained here on the same scenes (`python -m ocjax.reproduce mae_clevr`, ...;
  `configs/mae.py:cpu`), read from `runs/reproduce/<encoder>_clevr/seed0`: the SPOT
  paper's encoder table on this CPU (`python -m ocjax.reproduce dinosaur_mae`);
* `quick`: a smoke run of a few minutes on the encoder of `configs/mae.py:quick` (its
  workdir `runs/quick/mae`, trained in a few minutes), or with `patches` on raw patches:

    python -m ocjax.main --config configs/mae.py:quick --workdir runs/quick/mae
    python -m ocjax.main --config configs/coco_dinosaur.py:quick --workdir runs/quick/dinosaur

    python -m ocjax.main --config configs/coco_dinosaur.py --workdir runs/dinosaur
"""

import ml_collections

from ocjax.training import sections

PRESETS = ("transformer", "dinov2", "cpu", "patches", "quick", "dino", "mocov3", "mae")
FLAGSHIP_WORKDIR = "runs/reproduce/flagship_slot_cossim/seed0"


def get_config(preset: str = "") -> ml_collections.ConfigDict:
    """Returns the experiment, changed by `+`-joined presets."""
    presets = [p for p in preset.split("+") if p]
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        raise ValueError(f"Unknown preset(s) {unknown} for coco_dinosaur.py; use {PRESETS}.")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.objective = ml_collections.ConfigDict({"name": "feature_reconstruction"})

    # Data: COCO 2017 instances at 224x224, ImageNet normalisation (the backbone's), resized
    # bicubically (OCLF's preprocessing); crowd annotations dropped (OCLF scores COCO on
    # `val_nocrowd`); every instance scored (254: as many as uint8 ids hold).
    # Both releases flip training images at random; the frozen backbone's outputs are
    # computed once per (mirrored) image and stored (`ocjax.data.feature_cache`).
    flips_and_cache = dict(random_flip=True, cache_features=True)
    config.data = sections.data(
        "coco", 224, max_objects=254, normalization="imagenet", **flips_and_cache
    )
    config.data.coco.update(resize="bicubic", crowd="drop")
    config.data.coco.mask_resolution = 320  # Masks evaluated at 320x320 (resize + crop).

    # Model: frozen ViT-B/16 -> MLP -> Slot Attention (7 x 256) -> MLP feature decoder.
    config.model = ml_collections.ConfigDict(
        {
            "name": "dinosaur",
            "backbone": {
                "kind": "dino_vit",
                "architecture": "dino_vitb16",
                "checkpoint": "weights/dino_vitbase16_pretrain.pth",
                "feature_block": -1,
                "final_norm": False,
            },
            "num_slots": 7,
            "num_iterations": 3,
            "slot_dim": 256,
            "mlp_hidden_dim": 1024,
            # LayerNorm -> feature width (None) -> slot_dim (None), as the release.
            "feature_mlp_hidden_dim": None,
            "feature_mlp_dim": None,
            "kernel_init": "torch",  # PyTorch's default initialisation, as the release.
            "slot_init": "gaussian",
            "truncate": "none",
            "attention_iteration": "last",  # The release scores the last iteration's masks.
            "decoder": "mlp",
            "decoder_hidden_dims": [2048, 2048, 2048],
            "decoder_layers": 4,
            "decoder_heads": 8,
            "decoder_dim": 768,
            "decoder_positions": False,
            "decoder_style": "dinosaur",
            "orders": "standard",
            "eval_orders": "raster",
            "dtype": "float32",
        }
    )

    # Optimisation: Adam, linear warm-up, then exponential decay counted from the warm-up's
    # end (OCLF's `exponential_decay_after_optional_warmup`), gradient clipping.
    config.optimizer = ml_collections.ConfigDict(
        {
            "name": "adam",
            "weight_decay": 0.0,
            "grad_clip_norm": 1.0,
            "schedule": {
                "learning_rate": 4e-4,
                "warmup_steps": 10_000,
                "decay": "exponential",
                "decay_steps": 100_000,
                "decay_rate": 0.5,
                "decay_from": "warmup_end",
            },
        }
    )

    config.training = sections.training(64, num_steps=500_000, checkpoint_every=5_000)
    # mBO_c over COCO's 80 categories (semantic masks from the instances' classes).
    config.evaluation = sections.evaluation(
        split="validation", num_classes=ml_collections.config_dict.placeholder(int)
    )
    config.evaluation.num_classes = 80
    config.mesh = sections.mesh()

    if "transformer" in presets:
        config.model.decoder = "transformer"
    if "dinov2" in presets:
        config.model.backbone.update(
            architecture="dinov2_vitb14", checkpoint="weights/dinov2_vitb14_pretrain.pth"
        )
    if "cpu" in presets or "quick" in presets:
        config.data = sections.data(
            "clevr_like", 64, max_objects=6, normalization="imagenet", **flips_and_cache
        )
        config.data.clevr_like.update(
            min_objects=3, num_train=10_000, num_validation=1_000, num_test=1_000, seed=0
        )
        config.model.backbone = {
            "kind": "ocjax_vit",
            "workdir": FLAGSHIP_WORKDIR,
            "feature_block": -1,
            "final_norm": False,
        }
        config.model.update(
            slot_dim=128, mlp_hidden_dim=512, decoder_hidden_dims=[512, 512, 512], decoder_dim=128
        )
        config.evaluation.update(split="test", num_classes=None)
        config.optimizer.schedule.warmup_steps = 500
        config.training.update(
            batch_size=32, num_steps=3_000, log_every=50, checkpoint_every=500, image_every=1_000
        )
        config.evaluation.update(every_steps=500, heldout_examples=256)
    if "patches" in presets:
        config.model.backbone = {"kind": "pixel_patches", "patch_size": 4, "dim": 128, "seed": 0}
        # The protocol of the official runs beside it, sized so that one seed of DINOSAUR
        # and SPOT's two stages fits a session on two cores: batch 8, MLP decoder 3 x 256.
        config.training.batch_size = 8
        config.model.decoder_hidden_dims = [256, 256, 256]
    encoder = sections.encoder_preset(presets, "coco_dinosaur.py")
    if encoder:
        config.model.backbone.workdir = sections.ENCODER_RUNS[encoder]
    if "quick" in presets:
        if "patches" not in presets and not encoder:
            config.model.backbone.workdir = sections.QUICK_ENCODER_WORKDIR
        config.data.clevr_like.update(num_train=1_000, num_validation=64, num_test=128)
        config.optimizer.schedule.update(warmup_steps=20, decay_steps=1_000)
        config.training.update(
            batch_size=16, num_steps=100, log_every=10, checkpoint_every=50, image_every=50
        )
        config.evaluation.update(every_steps=50, heldout_examples=64, batch_size=32)
    return config
