"""How much a DINOSAUR / SPOT run's decoder uses its slots, on 64 held-out images
(reproductions.md).

For each kind of mask (decoder cross-attention, slot attention): the mean over patches of
the largest slot weight (1 / K when the masks ignore the slots) and the share of an image's
pixels that its largest argmax segment takes. Then the decoder's feature MSE with each
scene's own slots, with the slots of another scene (the batch rolled by one), and of the
per-dimension mean of the features: a decoder that ignores its slots loses nothing to the
swap. For a transformer decoder, the largest slot weight of every layer's cross-attention.
Last, how alike a scene's slots are (mean cosine between two slots of a scene) and how
alike the backbone's tokens are (mean cosine between two tokens of a scene, and the share
of the tokens' energy in their scene mean): slots that nearly coincide leave a decoder
nothing to tell apart. For the latest checkpoint of a run:

python docs/reproductions/spot_decoder_attention.py runs/reproduce/spot_teacher_clevr/seed0
"""

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ocjax import parallel
from ocjax.models.backbones import load_run_config
from ocjax.models.cross_attention import MultiHeadAttention
from ocjax.models.dinosaur import (
    DecoderLayer,
    MLPFeatureDecoder,
    TransformerFeatureDecoder,
)
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
    images = np.asarray(exp.eval_data[0]["image"])

    def run(swap: bool) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """The model's outputs and each decoder layer's cross-attention `[b, h, n, k]`, the
        decoder reading another scene's slots if `swap`."""
        cross = []

        def interceptor(next_fun, args, kwargs, context):
            module = context.module
            decoders = (MLPFeatureDecoder, TransformerFeatureDecoder)
            if swap and isinstance(module, decoders) and context.method_name == "__call__":
                args = (jnp.roll(args[0], 1, axis=0), *args[1:])
            out = next_fun(*args, **kwargs)
            if (
                isinstance(module, MultiHeadAttention)
                and module.name == "cross_attention"
                and isinstance(module.parent, DecoderLayer)
                and not _inside(module, "teacher")  # A SPOT student's frozen teacher.
            ):
                cross.append(np.asarray(out[1]))
            return out

        with nn.intercept_methods(interceptor):
            out = exp.model.apply(
                state.variables, images, train=False, rngs={"slots": jax.random.key(0)}
            )
        return {k: np.asarray(out[k]) for k in ("features", "reconstruction", "slots")}, cross

    (own, cross), (swapped, _) = run(False), run(True)
    features = own["features"]
    mean = ((features - features.mean(axis=(0, 1))) ** 2).mean()
    print(
        f"decoder feature MSE: own slots {((own['reconstruction'] - features) ** 2).mean():.4f}, "
        f"another scene's slots {((swapped['reconstruction'] - features) ** 2).mean():.4f}, "
        f"per-dimension mean {mean:.4f}"
    )
    for layer, weights in enumerate(cross):
        print(
            f"decoder layer {layer} cross-attention: largest slot weight "
            f"{weights.mean(axis=1).max(axis=-1).mean():.3f} (per head {weights.max(axis=-1).mean():.3f})"
        )
    print(f"slots: mean cosine between two slots of a scene {_mean_cosine(own['slots']):.3f}")
    share = (np.linalg.norm(features.mean(axis=1), axis=-1) ** 2).mean() / (
        np.linalg.norm(features, axis=-1) ** 2
    ).mean()
    print(
        f"backbone tokens: mean cosine between two tokens of a scene "
        f"{_mean_cosine(features):.3f}; share of their energy in the scene mean {share:.3f}"
    )


def _inside(module: nn.Module, name: str) -> bool:
    """Whether `module` sits below a module called `name`."""
    while module is not None:
        if module.name == name:
            return True
        module = module.parent
    return False


def _mean_cosine(vectors: np.ndarray) -> float:
    """Mean cosine similarity between two different rows of each `[b, m, d]` scene."""
    unit = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    cosine = np.einsum("bmd,bnd->bmn", unit, unit)
    m = cosine.shape[1]
    return float(cosine[:, ~np.eye(m, dtype=bool)].mean())


if __name__ == "__main__":
    main(sys.argv[1])
