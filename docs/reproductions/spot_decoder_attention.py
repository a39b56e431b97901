"""How much a DINOSAUR / SPOT run's decoder uses its slots, on 64 held-out images
(reproductions.md).

For each kind of mask (decoder cross-attention, slot attention): the mean over patches of
the largest slot weight (1 / K when the masks ignore the slots) and the share of an image's
pixels that its largest argmax segment takes. Then the decoder's feature MSE with each
scene's own slots, with the slots of another scene (the batch rolled by one), and of the
per-dimension mean of the features: a decoder that ignores its slots loses nothing to the
swap. For the latest checkpoint of a run:

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
from ocjax.models.dinosaur import MLPFeatureDecoder, TransformerFeatureDecoder
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

    def run(swap: bool) -> dict[str, np.ndarray]:
        """The model's outputs, the decoder reading another scene's slots if `swap`."""

        def interceptor(next_fun, args, kwargs, context):
            decoders = (MLPFeatureDecoder, TransformerFeatureDecoder)
            if swap and isinstance(context.module, decoders) and context.method_name == "__call__":
                args = (jnp.roll(args[0], 1, axis=0), *args[1:])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(interceptor):
            out = exp.model.apply(
                state.variables, images, train=False, rngs={"slots": jax.random.key(0)}
            )
        return {k: np.asarray(out[k]) for k in ("features", "reconstruction")}

    own, swapped = run(False), run(True)
    features = own["features"]
    mean = ((features - features.mean(axis=(0, 1))) ** 2).mean()
    print(
        f"decoder feature MSE: own slots {((own['reconstruction'] - features) ** 2).mean():.4f}, "
        f"another scene's slots {((swapped['reconstruction'] - features) ** 2).mean():.4f}, "
        f"per-dimension mean {mean:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
