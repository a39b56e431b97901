"""How peaked a DINOSAUR / SPOT run's masks are on 64 held-out images (reproductions.md).

For each kind of mask (decoder cross-attention, slot attention): the mean over patches of
the largest slot weight (1 / K when the masks ignore the slots) and the share of an image's
pixels that its largest argmax segment takes, for the latest checkpoint of a run:

python docs/reproductions/spot_decoder_attention.py runs/reproduce/spot_teacher_clevr/seed0
"""

import sys

import ml_collections
import numpy as np

from ocjax import parallel
from ocjax.models.backbones import load_run_config
from ocjax.training import console
from ocjax.training.trainer import restore_run


def main(workdir: str) -> None:
    """Prints the peakedness of every mask kind of the run in `workdir`."""
    console.quiet_libraries()
    config = ml_collections.ConfigDict(load_run_config(workdir))
    config.evaluation.heldout_examples = 64
    exp, state = restore_run(config, workdir)
    out = exp.eval_step(state.variables, parallel.to_global(exp.eval_data[0], exp.mesh))
    for name, masks in parallel.to_host(out["masks"]).items():
        masks = np.asarray(masks)  # [b, k, h, w]
        k = masks.shape[1]
        largest = np.mean(
            [np.bincount(a.ravel(), minlength=k).max() / a.size for a in masks.argmax(axis=1)]
        )
        print(
            f"{name}: largest slot weight {masks.max(axis=1).mean():.3f} (1/K = {1 / k:.3f}); "
            f"largest segment {largest:.0%} of an image"
        )


if __name__ == "__main__":
    main(sys.argv[1])
