"""Which Tetrominoes test images a trained Slot Attention AE gets wrong (reproductions.md).

Per-image FG-ARI of the decoder's masks on the test split, split by whether two of the
three pieces share a colour (the embedded data draw each piece's colour independently from
six, as DeepMind's Tetris dataset), for the latest checkpoint of a run:

python docs/reproductions/tetrominoes_failures.py runs/reproduce/sa_ae_tetrominoes/seed1
"""

import sys

import jax
import ml_collections
import numpy as np
from sklearn.metrics import adjusted_rand_score

from ocjax import parallel
from ocjax.data import pipeline
from ocjax.models.backbones import load_run_config
from ocjax.training import console
from ocjax.training.trainer import restore_run


def shares_colour(image: np.ndarray, ids: np.ndarray) -> bool:
    """Whether two objects of `ids [h, w]` (0 = background) have the same mean colour."""
    colours = [image[ids == k].mean(axis=0) for k in np.unique(ids) if k != 0]
    return any(np.abs(a - b).max() < 1e-3 for i, a in enumerate(colours) for b in colours[i + 1 :])


def interior(ids: np.ndarray) -> np.ndarray:
    """Pixels of `ids [h, w]` whose four neighbours carry the same id (edge pixels repeat)."""
    h, w = ids.shape
    padded = np.pad(ids, 1, mode="edge")
    same = [
        ids == padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
    ]
    return np.logical_and.reduce(same)


def main(workdir: str) -> None:
    """Prints per-image FG-ARI: its spread, on pixels away from edges, and with and without
    a shared colour."""
    console.quiet_libraries()
    config = ml_collections.ConfigDict(load_run_config(workdir))
    exp, state = restore_run(config, workdir)
    scores, inner, shared = [], [], []
    for batch in pipeline.iterate(exp.eval_data):
        out = exp.eval_step(state.variables, parallel.to_global(batch, exp.mesh))
        host = parallel.to_host({k: out[k] for k in ("per_image", "weights", "masks")})
        fg_ari = host["per_image"]["decoder/fg_ari"]
        valid = host["weights"]["decoder/fg_ari"] > 0
        predicted = np.argmax(host["masks"]["decoder"], axis=1)  # [b, h, w]
        for i in np.flatnonzero(valid):
            ids = batch["segmentation"][i]
            scores.append(float(fg_ari[i]))
            keep = interior(ids) & (ids > 0)
            inner.append(adjusted_rand_score(ids[keep], predicted[i][keep]))
            shared.append(shares_colour(batch["image"][i], ids))
    scores, inner, shared = np.array(scores), np.array(inner), np.array(shared)
    print(f"step {int(jax.device_get(state.step))}, {len(scores)} test images")
    quartiles = ", ".join(f"{q:.3f}" for q in np.quantile(scores, [0.1, 0.25, 0.5, 0.75, 0.9]))
    print(
        f"all: FG-ARI {scores.mean():.3f}; deciles/quartiles 10-25-50-75-90 %: {quartiles}; "
        f"below 0.5: {np.mean(scores < 0.5):.1%}, below 0.9: {np.mean(scores < 0.9):.1%}"
    )
    print(
        f"object pixels away from every edge ({np.mean(inner):.3f} FG-ARI); "
        f"below 0.9: {np.mean(inner < 0.9):.1%}"
    )
    for name, pick in (("two pieces share a colour", shared), ("three colours", ~shared)):
        print(
            f"{name}: {pick.sum()} images, FG-ARI {scores[pick].mean():.3f}, "
            f"below 0.9: {np.mean(scores[pick] < 0.9):.1%}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
