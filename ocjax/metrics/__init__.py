"""Evaluation metrics for object-centric models (segmentation: ARI, FG-ARI, mBO, mIoU)."""

from ocjax.metrics.segmentation import (
    ari,
    class_ids,
    fg_ari,
    has_foreground,
    has_objects,
    ids_from_masks,
    iou_matrix,
    mbo,
    mean_over_valid,
    miou,
)

__all__ = [
    "ari",
    "class_ids",
    "fg_ari",
    "has_foreground",
    "has_objects",
    "ids_from_masks",
    "iou_matrix",
    "mbo",
    "mean_over_valid",
    "miou",
]
