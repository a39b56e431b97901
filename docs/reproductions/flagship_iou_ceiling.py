"""Otsu-IoU ceiling of per-token slot maps on the CLEVR-like test scenes (reproductions.md).

python docs/reproductions/flagship_iou_ceiling.py
"""

import numpy as np

from ocjax.data import datasets
from ocjax.metrics.otsu import token_grid_ceiling
from ocjax.training import console

# (scene size, token grid, training scenes): the `cpu` protocol's data, then the paper's size
# (its training split is not needed, so 16 scenes are rendered for it).
SETTINGS = ((64, 16, 12_800), (64, 32, 12_800), (128, 32, 16), (128, 64, 16))


def main() -> None:
    """Prints the ceiling of each setting on the 1,000 test scenes (3-10 objects)."""
    console.quiet_libraries()
    for size, grid, num_train in SETTINGS:
        test = datasets.clevr_like_sources(
            datasets.resolve_data_dir(None),
            resolution=size,
            max_objects=10,
            min_objects=3,
            num_train=num_train,
            num_validation=1_000 if num_train > 16 else 8,
            num_test=1_000,
            seed=0,
        )["test"]
        ids = np.stack([test[i]["segmentation"][..., 0] for i in range(len(test))])
        scores = [token_grid_ceiling(ids[s : s + 50], 11, grid) for s in range(0, len(ids), 50)]
        print(f"{size}x{size} scenes, {grid}x{grid} tokens: {np.concatenate(scores).mean():.3f}")


if __name__ == "__main__":  # The renderer starts worker processes that import this file.
    main()
