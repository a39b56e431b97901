"""Otsu-IoU of a flagship run under other read-outs of its attention (reproductions.md).

On the run's evaluation split, the first-iteration slot attention `[b, k, n]` is upsampled
to the masks' size nearest (ocjax's protocol) or bilinearly (as the authors' released
segmentation code does), directly or after composing it with the ViT's attention rollout
(each block's head-mean attention, with and without the identity for the residual path,
as in the authors' later code), then scored by the protocol's Otsu-IoU:

python docs/reproductions/flagship_readouts.py runs/reproduce/flagship_slot_cossim/seed0
"""

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ocjax.metrics import otsu
from ocjax.models.backbones import load_run_config
from ocjax.models.cross_attention import MultiHeadAttention
from ocjax.models.vit import TransformerBlock
from ocjax.training import console
from ocjax.training.trainer import restore_run


def rollout(blocks: list[jax.Array], residual: bool) -> jax.Array:
    """Attention rollout `[b, n, n]` of per-block attention `[b, heads, n, n]`, first block
    first; with `residual` each block's map is averaged with the identity and renormalised."""
    n = blocks[0].shape[-1]
    total = jnp.eye(n)[None]
    for attention in blocks:
        a = attention.mean(axis=1)
        if residual:
            a = 0.5 * a + 0.5 * jnp.eye(n)
            a = a / a.sum(axis=-1, keepdims=True)
        total = a @ total
    return total


def main(workdir: str) -> None:
    """Prints the mean Otsu-IoU of every read-out over the images with objects."""
    console.quiet_libraries()
    config = ml_collections.ConfigDict(load_run_config(workdir))
    exp, state = restore_run(config, workdir)
    num_true = config.data.max_objects + 1

    @jax.jit
    def scores(variables: dict, batch: dict) -> tuple[dict, jax.Array]:
        blocks = []

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            module = context.module
            if isinstance(module, MultiHeadAttention) and isinstance(
                module.parent, TransformerBlock
            ):
                blocks.append(out[1])
            return out

        with nn.intercept_methods(record):
            out = exp.model.apply(
                variables, batch["image"], train=False, rngs={"slots": jax.random.key(0)}
            )
        attention = out["attention"]
        b, k, n = attention.shape
        side = round(n**0.5)
        readouts = {
            "slot attention": attention,
            "slot attention x rollout (with residual)": attention @ rollout(blocks, True),
            "slot attention x rollout (attention only)": attention @ rollout(blocks, False),
        }
        result = {}
        for name, maps in readouts.items():
            for method in ("nearest", "linear"):
                grid = jax.image.resize(
                    maps.reshape(b, k, side, side), (b, k, *batch["segmentation"].shape[1:]), method
                )
                result[f"{name}, {method}"] = otsu.otsu_iou(
                    grid, batch["segmentation"], num_true, valid=batch["pixel_valid"]
                )
        has_objects = (batch["segmentation"] > 0).any(axis=(1, 2)) & batch["valid"]
        return result, has_objects

    totals: dict[str, float] = {}
    count = 0
    keys = ("image", "segmentation", "pixel_valid", "valid")
    for batch in exp.eval_data:
        result, has_objects = scores(state.variables, {k: jnp.asarray(batch[k]) for k in keys})
        has_objects = np.asarray(has_objects)
        for name, values in result.items():
            totals[name] = totals.get(name, 0.0) + float(np.asarray(values)[has_objects].sum())
        count += int(has_objects.sum())
    for name, total in totals.items():
        print(f"{name}: Otsu-IoU {total / count:.3f} ({count} images)")


if __name__ == "__main__":
    main(sys.argv[1])
