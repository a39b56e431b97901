r"""SPOT on COCO (Kakogeorgiou et al., CVPR 2024): patch-order permutation and self-training.

Both stages share DINOSAUR's pipeline (`configs/coco_dinosaur.py`): a frozen DINO ViT-B/16
at 224x224 (its last block, no final norm), 7 slots of 256-d, 3 iterations, MLP 1024, and
the autoregressive transformer decoder of SLATE (4 layers, 768-d, 6 heads, no positional
embedding: the features carry positions). SPOT's release differs from DINOSAUR's in the
feature MLP (LayerNorm -> 768 -> 768; Slot Attention then projects to 256) and in the
initialisation (Xavier-uniform, Kaiming-uniform before each ReLU, zero biases:
`model.kernel_init = "xavier"`). Both report the last slot-attention iteration's masks.
SPOT's `COCO2017` reader also differs from DINOSAUR's: it resizes the images bilinearly (PIL)
and keeps crowd annotations as instances (`data.coco.resize = "bilinear"`,
`data.coco.crowd = "keep"`); every instance is scored, as in both. Adam, learning rate
0 -> 4e-4 over the release's warm-up (10k steps rounded down to whole epochs: 9,240 steps
on COCO, 9,900 on VOC; `np.linspace`, so its last step is at 4e-4:
`optimizer.schedule.warmup_endpoint`), then cosine to 4e-7, batch 64, 50 epochs per stage;
in both stages the gradients are scaled so that no entry exceeds 0.3 (the release's
`clip_grad_norm_(..., 0.3, 'inf')`).

* `teacher` (stage 1): the decoder reads the patches in a random one of SPOT's nine orders
  per step; the slots start from one learned Gaussian, the backbone stays frozen.
* `student` (stage 2): the frozen teacher read from `model.teacher.workdir` (the stage-1
  run) runs on the frozen features; the student's Slot Attention logits learn the
  teacher's decoder masks (Hungarian-matched cross-entropy, weight 5e-3) beside the feature
  MSE. As the release's student it fine-tunes the backbone's blocks 8-11
  (`model.backbone.finetune_from_block = 8`; the targets stay the frozen features), learns
  one initial vector per slot (`model.slot_init = "embedding"`) and passes the gradient
  through the last iteration only (`model.truncate = "bi-level"`).

Evaluation averages the decoder's outputs and masks over all nine orders
(`model.eval_orders = "all"`, the release's `--eval_permutations all`, with which the
paper's COCO figures were measured; `raster` is the cheaper standard order).

The paper reports on COCO mBO_i 35.0, mBO_c 44.7, FG-ARI 37.0 for the student, above its
teacher. `voc` is the release's Pascal VOC 2012 setting instead of COCO: 6 slots, 560
epochs per stage of the 10,582 `trainaug` images (92,400 steps of batch 64), evaluated on
val (1,449) with mBO_c over VOC's 20 classes; the release's checkpoint scores mBO_i 48.6,
mBO_c 55.7. Its training images are the stored centre crops with the pipeline's flips
(the release crops at random; say so next to a figure). `cpu` runs both stages on the
embedded CLEVR-like data with the flagship's own ViT as the backbone (as
`coco_dinosaur.py:cpu`), 3,000 steps of batch 32 per stage; its backbone has no DINO
blocks to fine-tune, so there the student's backbone stays frozen. `+patches` is the
protocol run side by side with the official code: the raw-patch features of
`coco_dinosaur.py:patches`, batch 8, evaluated in raster order as the official runs
(`python -m ocjax.reproduce spot_teacher_patches`, then `spot_student_patches`).
`+dino`, `+mocov3`, `+mae` (with `cpu`) read the encoder that system pretrained here, as
`coco_dinosaur.py` (the student its teacher from `runs/reproduce/spot_teacher_<encoder>`:
`python -m ocjax.reproduce spot_teacher_mae`, then `spot_student_mae`).
`+quick` is a smoke run of a few minutes per stage on the encoder of
`configs/mae.py:quick` (as `coco_dinosaur.py:quick`), the student reading the teacher
from `runs/quick/spot_teacher`:

    python -m ocjax.main --config configs/coco_spot.py:teacher+quick --workdir runs/quick/spot_teacher
    python -m ocjax.main --config configs/coco_spot.py:student+quick --workdir runs/quick/spot_student

    python -m ocjax.main --config configs/coco_spot.py:teacher --workdir runs/spot_teacher
    python -m ocjax.main --config configs/coco_spot.py:student --workdir runs/spot_student \
        --config.model.teacher.workdir=runs/spot_teacher
"""

import ml_collections

from configs import coco_dinosaur
from ocjax.training import sections

PRESETS = ("teacher", "student", "voc", "cpu", "patches", "quick", "dino", "mocov3", "mae")
VOC_TRAIN_IMAGES = 10_582  # trainaug: VOC 2012 train + SBD.
CPU_TEACHER_WORKDIR = "runs/reproduce/spot_teacher_clevr/seed0"
PATCHES_TEACHER_WORKDIR = "runs/reproduce/spot_teacher_patches/seed0"
QUICK_TEACHER_WORKDIR = "runs/quick/spot_teacher"


def release_warmup_steps(num_images: int, batch_size: int = 64) -> int:
    """SPOT's warm-up in steps: 10,000 steps rounded down to whole epochs of
    `num_images // batch_size` steps (`warmup_epochs` in the release's `train_spot.py`)."""
    return int(10_000 / (num_images / batch_size)) * (num_images // batch_size)


def get_config(preset: str = "teacher") -> ml_collections.ConfigDict:
    """Returns stage `teacher` or `student`, optionally `+cpu`."""
    presets = [p for p in preset.split("+") if p]
    unknown = sorted(set(presets) - set(PRESETS))
    if (
        unknown
        or ("teacher" in presets) == ("student" in presets)
        or ("voc" in presets and {"cpu", "quick"} & set(presets))
    ):
        raise ValueError(
            f"coco_spot.py needs exactly one of 'teacher' and 'student' (and optionally "
            f"'+voc', or '+cpu', '+patches', '+quick'), got {preset!r}."
        )
    shared = [p for p in ("cpu", "patches", "quick", "dino", "mocov3", "mae") if p in presets]
    encoder = sections.encoder_preset(presets, "coco_spot.py")
    small = "cpu" in presets or "quick" in presets
    config = coco_dinosaur.get_config("+".join(["transformer"] + shared))
    config.model.update(
        orders="spot",
        eval_orders="all",
        decoder_positions=False,
        decoder_style="spot",
        kernel_init="xavier",
        feature_mlp_hidden_dim=None,  # The features' width.
        feature_mlp_dim=config.model.decoder_dim,  # The features' width, 768 (128 on cpu).
    )
    if not small:
        config.model.update(decoder_heads=6, decoder_dim=768, feature_mlp_dim=768)
    if "patches" in presets:  # Evaluated as the official runs beside it (raster order).
        config.model.eval_orders = "raster"
    config.objective.distillation_weight = 0.0
    # SPOT's `COCO2017` reader: PIL bilinear resize; every annotation, crowds too, an instance.
    config.data.coco.update(resize="bilinear", crowd="keep")

    # Adam: linear warm-up to 4e-4 (SPOT's `np.linspace` over whole epochs), cosine to 4e-7
    # (50 epochs; the CPU preset keeps its 3,000 steps).
    config.optimizer.schedule = ml_collections.ConfigDict(
        {
            "learning_rate": 4e-4,
            "warmup_steps": 10_000,
            "warmup_endpoint": True,
            "decay": "cosine",
            "decay_steps": 1_000_000,
            "end_learning_rate": 4e-7,
        }
    )
    # Both stages of the release clip the largest gradient entry, not the global norm.
    config.optimizer.update(grad_clip_norm=0.3, grad_clip_norm_type="inf")
    if "quick" in presets:
        config.optimizer.schedule.update(warmup_steps=20, decay_steps=80)
    elif "cpu" in presets:
        config.optimizer.schedule.update(warmup_steps=500, decay_steps=2_500)
    elif "voc" in presets:
        # Every instance scored (254: as many as uint8 ids hold); PIL bilinear resize, as the
        # release's `PascalVOC` reader.
        config.data = sections.data(
            "pascal_voc",
            224,
            max_objects=254,
            normalization="imagenet",
            random_flip=True,
            cache_features=True,
        )
        config.data.pascal_voc.update(mask_resolution=320, resize="bilinear")
        config.model.num_slots = 6
        config.evaluation.num_classes = 20
        config.training.num_steps = 560 * (VOC_TRAIN_IMAGES // 64)
        warmup = release_warmup_steps(VOC_TRAIN_IMAGES)
        config.optimizer.schedule.update(
            warmup_steps=warmup, decay_steps=config.training.num_steps - warmup
        )
    else:
        config.training.num_steps = 50 * 118_287 // 64  # 50 epochs of COCO train2017.
        warmup = release_warmup_steps(118_287)
        # The release's cosine spans its 50 epochs of 1,848 whole batches (92,400 steps).
        config.optimizer.schedule.update(
            warmup_steps=warmup, decay_steps=50 * (118_287 // 64) - warmup
        )
    if "student" in presets:
        workdir = "runs/spot_teacher"
        if "quick" in presets:
            workdir = QUICK_TEACHER_WORKDIR
        elif encoder:
            workdir = f"runs/reproduce/spot_teacher_{encoder}/seed0"
        elif "cpu" in presets:
            workdir = PATCHES_TEACHER_WORKDIR if "patches" in presets else CPU_TEACHER_WORKDIR
        config.model.teacher = {"workdir": workdir}
        config.model.update(slot_init="embedding", truncate="bi-level")
        if config.model.backbone.kind == "dino_vit":
            config.model.backbone.finetune_from_block = 8
        config.objective.distillation_weight = 5e-3
    return config
