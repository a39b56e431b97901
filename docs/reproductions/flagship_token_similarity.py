"""How alike the tokens of one scene are at each depth of a flagship run's ViT (reproductions.md).

On 64 held-out scenes: at the input and output of every block and after the final norm,
the mean cosine between two tokens of a scene, the share of the tokens' energy in their
scene mean, and the mean cosine once the mean token over all scenes is removed (what is
left of a shared, scene-level component):

python docs/reproductions/flagship_token_similarity.py runs/reproduce/flagship_slot_cossim/seed0
"""

import sys

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from ocjax.models.backbones import load_run_config
from ocjax.models.vit import TransformerBlock, ViT
from ocjax.training import console
from ocjax.training.trainer import restore_run


def similarity(tokens: np.ndarray) -> tuple[float, float, float]:
    """(mean cosine of two tokens of a scene, energy share of the scene mean, mean cosine
    after removing the mean token of all scenes) of tokens `[b, n, d]`."""

    def mean_cosine(x: np.ndarray) -> float:
        unit = x / np.linalg.norm(x, axis=-1, keepdims=True)
        cosine = np.einsum("bnd,bmd->bnm", unit, unit)
        return float(cosine[:, ~np.eye(x.shape[1], dtype=bool)].mean())

    share = (np.linalg.norm(tokens.mean(axis=1), axis=-1) ** 2).mean() / (
        np.linalg.norm(tokens, axis=-1) ** 2
    ).mean()
    return mean_cosine(tokens), float(share), mean_cosine(tokens - tokens.mean(axis=(0, 1)))


def main(workdir: str) -> None:
    """Prints the similarity of the tokens at every depth of the run's ViT."""
    console.quiet_libraries()
    config = ml_collections.ConfigDict(load_run_config(workdir))
    config.evaluation.heldout_examples = 64
    exp, state = restore_run(config, workdir)
    images = np.asarray(exp.eval_data[0]["image"])
    depths: dict[str, np.ndarray] = {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, TransformerBlock):
            depths[f"{context.module.name} input"] = np.asarray(args[0])
            depths[f"{context.module.name} output"] = np.asarray(out)
        elif isinstance(context.module, ViT):
            depths["after the final norm"] = np.asarray(out.tokens)
        return out

    with nn.intercept_methods(record):
        exp.model.apply(state.variables, images, train=False, rngs={"slots": jax.random.key(0)})
    for name, tokens in depths.items():
        cosine, share, centred = similarity(tokens)
        print(
            f"{name}: cosine {cosine:.3f}, scene-mean energy share {share:.3f}, "
            f"cosine without the all-scene mean {centred:.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
