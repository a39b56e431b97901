"""Pooled baselines for a part-discovery run, beside the method (reproductions.md).

On the run's evaluation split, every variant clusters the objects' pixels of all images with
one k-means (K = the run's parts, fitted on 64 random object pixels per image) and is scored
like the method, over the pixels of the whole split (FG-ARI, FG-NMI):

* phi: the frozen features themselves (the paper's baseline, `readout/pooled_...`);
* phi minus its mean over the image's object: without the part of phi that names the scene;
* the same, each pixel's vector scaled to unit length;
* the pixel's position relative to the object (offset from its centroid over the square
  root of its area): a geometric prior, no features.

python docs/reproductions/parts_baselines.py runs/reproduce/parts_figures/seed0
"""

import json
import sys
from collections.abc import Callable

import ml_collections
import numpy as np

from ocjax import metrics
from ocjax.data import pipeline
from ocjax.metrics import parts
from ocjax.models import readout
from ocjax.models.backbones import load_run_config
from ocjax.training import console
from ocjax.training.trainer import restore_run

PER_IMAGE = 64


def centred(features: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Features `[b, h, w, c]` minus their mean over each image's object pixels `fg`."""
    w = fg[..., None].astype(np.float64)
    mean = (features * w).sum(axis=(1, 2)) / np.maximum(w.sum(axis=(1, 2)), 1.0)
    return features - mean[:, None, None]


def unit(features: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Object-centred features scaled to unit length per pixel."""
    x = centred(features, fg)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def position(features: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Each pixel's offset `[b, h, w, 2]` from its object's centroid over sqrt(area)."""
    _, h, w = fg.shape
    yx = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).astype(np.float64)
    weight = fg[..., None].astype(np.float64)
    area = np.maximum(weight.sum(axis=(1, 2)), 1.0)
    centre = (yx[None] * weight).sum(axis=(1, 2)) / area
    return (yx[None] - centre[:, None, None]) / np.sqrt(area)[:, None, None]


VARIANTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "phi (the paper's baseline)": lambda f, fg: f,
    "phi minus its mean over the object": centred,
    "the same, unit length": unit,
    "position relative to the object": position,
}


def main(workdir: str) -> None:
    """Prints pooled FG-ARI and FG-NMI of the method and of each baseline."""
    console.quiet_libraries()
    config = ml_collections.ConfigDict(load_run_config(workdir))
    exp, state = restore_run(config, workdir)
    k, num_true = config.model.num_parts, config.data.max_objects + 1

    def batches():
        for batch in pipeline.iterate(exp.eval_data):
            out = exp.eval_step(state.variables, batch)
            fg = np.asarray(batch["foreground"]) & np.asarray(batch["pixel_valid"])
            fg &= np.asarray(batch["valid"])[:, None, None]
            yield batch, np.asarray(out["readout"], np.float64), fg, out["masks"]["parts"]

    samples = {name: [] for name in VARIANTS}
    for i, (_, features, fg, _) in enumerate(batches()):
        for name, points in VARIANTS.items():
            samples[name].append(readout.sample_points(points(features, fg), fg, PER_IMAGE, i))
    centroids = {
        name: readout.fit_centroids(np.concatenate(s), k, seed=0) for name, s in samples.items()
    }
    tables = {name: 0.0 for name in ["method", *VARIANTS]}
    for batch, features, fg, masks in batches():
        images = np.asarray(batch["valid"], np.float64)
        truth, pixels = np.asarray(batch["segmentation"]), np.asarray(batch["pixel_valid"])
        ids = {"method": np.asarray(metrics.ids_from_masks(masks))}
        for name, points in VARIANTS.items():
            ids[name] = readout.assign_clusters(points(features, fg), centroids[name], fg)
        for name, pred in ids.items():
            table = parts.contingency(truth, pred, num_true, k + 1, valid=pixels)
            tables[name] = tables[name] + np.einsum("b,btp->tp", images, np.asarray(table))
    with open(f"{workdir}/eval.json", encoding="utf-8") as f:
        saved = json.load(f)
    print(f"{workdir}: {saved['num_images']} test images, K = {k}")
    for name, table in tables.items():
        s = parts.pooled_scores(table)
        print(f"{name:40s} FG-ARI {s['pooled_fg_ari']:.3f}  FG-NMI {s['pooled_fg_nmi']:.3f}")
    print(
        f"{'per-image k-means of phi (eval.json)':40s} FG-ARI {saved['readout/ari_bg']:.3f}  "
        f"FG-NMI {saved['readout/fg_nmi']:.3f} (scored per image)"
    )


if __name__ == "__main__":
    main(sys.argv[1])
