"""Frozen feature extractors for DINOSAUR and SPOT, and where their weights come from.

A backbone is named in the config by `model.backbone`:

* `kind="dino_vit"`: a released DINO / DINOv2 ViT (`architecture`, see
  `ocjax.models.dino_vit.ARCHITECTURES`) with weights from `checkpoint`, a `.pth` or
  `.safetensors` file the user downloads (`ocjax.models.checkpoints`);
* `kind="ocjax_vit"`: the ViT of an ocjax run read from `workdir` (its `config.json`
  gives the architecture, its latest checkpoint the weights), so the whole pipeline
  trains offline: the flagship's, or the encoder a self-supervised pretraining run
  trained (`configs/dino.py`, `mocov3.py`, `mae.py`: DINO's teacher, MoCo v3's base
  encoder, MAE's encoder; the system's `ENCODER`);
* `kind="pixel_patches"`: no network: each `patch_size` x `patch_size` patch of the
  (normalised) image, flattened (rows, columns, channels), times one fixed random matrix
  with orthonormal rows to `dim` (seeded by `seed`). Features that carry colour and
  position but no learned grouping: a control that needs no weights.

`feature_block` (default: last) and `final_norm` choose which features the backbone hands
on. The weights are loaded into `params["backbone"]` at initialisation
(`pretrained_params`) and stay frozen: the model stops gradients at the features and the
optimiser leaves the subtree alone (`ocjax.training.optim`). With `finetune_from_block`
(a `dino_vit`; SPOT's student: 8), a trainable copy of the blocks from there on
(`FinetunedBlocks`, `params["finetuned"]`, initialised from the same weights) reads the
frozen output of the block before; the frozen backbone's own features stay the targets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ocjax import files
from ocjax.models import checkpoints, pretraining
from ocjax.models.dino_vit import ARCHITECTURES, DinoViT
from ocjax.models.vit import ViT, ViTOutput

KINDS = ("dino_vit", "ocjax_vit", "pixel_patches")
Options = tuple[tuple[str, Any], ...]


def latest_params(workdir: str, subtree: str) -> dict[str, Any]:
    """`params[subtree]` of the latest checkpoint of the ocjax run in `workdir` (numpy)."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    manager = ocp.CheckpointManager(files.workdir_path(workdir) / "checkpoints")
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint to load.")
    state = manager.restore(step, args=ocp.args.StandardRestore())
    if subtree not in state["params"]:
        raise ValueError(f"The checkpoint in {workdir} has no {subtree!r} parameters.")
    return jax.tree.map(np.asarray, dict(state["params"][subtree]))


def load_run_config(workdir: str) -> dict[str, Any]:
    """The config a run saved in `workdir/config.json`."""
    path = files.workdir_path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"model.backbone.workdir={workdir!r} has no config.json: it is not the workdir of "
            "an ocjax training run. Train the encoder into it first, e.g. python -m "
            f"ocjax.main --config configs/mae.py:quick --workdir {workdir} (a few minutes; "
            "configs/mae.py:cpu, dino.py:cpu, mocov3.py:cpu or clevr_slots.py:cpu for real runs)."
        )
    return json.loads(path.read_text())


def resolve(options: Mapping[str, Any]) -> Options:
    """Checked, complete backbone options as a hashable tuple of `(key, value)` pairs.

    For `ocjax_vit` the ViT's hyper-parameters are read from the run's `config.json`.
    """
    options = dict(options)
    kind = options.get("kind")
    if kind not in KINDS:
        raise ValueError(f"Unknown model.backbone.kind {kind!r}; use one of {KINDS}.")
    options.setdefault("finetune_from_block", None)
    if options["finetune_from_block"] is not None and kind != "dino_vit":
        raise ValueError(
            "model.backbone.finetune_from_block fine-tunes the last blocks of a released "
            f"ViT (kind 'dino_vit'), not of a {kind!r} backbone; set it to None."
        )
    if kind == "pixel_patches":
        options.setdefault("patch_size", 4)
        options.setdefault("dim", 128)
        options.setdefault("seed", 0)
        return tuple(sorted(options.items()))
    options.setdefault("feature_block", -1)
    options.setdefault("final_norm", True)
    if kind == "dino_vit":
        if options.get("architecture") not in ARCHITECTURES:
            raise ValueError(
                f"Unknown model.backbone.architecture {options.get('architecture')!r}; use one "
                f"of {sorted(ARCHITECTURES)}."
            )
        options.setdefault("checkpoint", None)
        depth = ARCHITECTURES[options["architecture"]].depth
        start = options["finetune_from_block"]
        if start is not None and not 1 <= start <= options["feature_block"] % depth:
            raise ValueError(
                f"model.backbone.finetune_from_block={start} must lie in 1 .. "
                f"{options['feature_block'] % depth} (the feature block) for "
                f"{options['architecture']}."
            )
    else:
        if not options.get("workdir"):
            raise ValueError("model.backbone.kind 'ocjax_vit' needs model.backbone.workdir.")
        model = load_run_config(options["workdir"])["model"]
        if encoder_path(model.get("name")):  # A DINO / MoCo v3 / MAE run: its DinoViT.
            options["pretraining"] = model["name"]
            for key in pretraining.ARCHITECTURE_FIELDS:
                options[key] = model[key]
        elif "patch_size" not in model or "dim" not in model:
            raise ValueError(
                f"The run in {options['workdir']} has model {model.get('name')!r}, which has no "
                "ViT backbone; point model.backbone.workdir at a clevr_slots.py run or a "
                "pretraining run (configs/dino.py, mocov3.py, mae.py)."
            )
        else:
            for key in ("patch_size", "dim", "depth", "num_heads", "mlp_dim"):
                options[key] = model[key]
    return tuple(sorted(options.items()))


def encoder_path(name: str | None) -> tuple[str, ...]:
    """Where the registered model `name` keeps the encoder a downstream model reads (its
    `ENCODER`: a pretraining system), or `()`."""
    from ocjax.models import MODELS  # pylint: disable=import-outside-toplevel (a circle)

    return getattr(MODELS.get(name), "ENCODER", ())


def orthonormal_projection(in_dim: int, dim: int, seed: int) -> np.ndarray:
    """A fixed `[in_dim, dim]` matrix with orthonormal rows (`in_dim <= dim`): the first rows
    of the Q factor (signs fixed by R's diagonal) of a seeded Gaussian `[dim, dim]`."""
    if in_dim > dim:
        raise ValueError(
            f"pixel_patches: a patch has {in_dim} values, more than model.backbone.dim={dim}; "
            f"set dim >= {in_dim}."
        )
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))[None, :])[:in_dim].astype(np.float32)


def pixel_patches(images: jax.Array, patch_size: int, dim: int, seed: int) -> ViTOutput:
    """Images `[b, h, w, c]` to `tokens [b, (h/p) * (w/p), dim]`: every p x p patch flattened
    (rows, columns, channels) times `orthonormal_projection` (row-major patch order)."""
    b, h, w, c = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(
            f"pixel_patches: {h}x{w} images do not split into {p}x{p} patches; use a "
            f"patch_size that divides both sides."
        )
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, (h // p) * (w // p), p * p * c).astype(jnp.float32)
    projection = jnp.asarray(orthonormal_projection(p * p * c, dim, seed))
    tokens = jnp.einsum("bnc,cd->bnd", x, projection, precision=jax.lax.Precision.HIGHEST)
    return ViTOutput(tokens=tokens, cls=None, grid=(h // p, w // p))


class Backbone(nn.Module):
    """Images `[b, h, w, c]` to frozen patch features `ViTOutput` (tokens `[b, n, d]`; with
    `finetune_from_block`, `hidden` is the sequence the fine-tuned blocks start from)."""

    options: Options
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> ViTOutput:
        """Runs the backbone and stops gradients at its outputs."""
        o = dict(self.options)
        size = tuple(images.shape[1:3])
        if o["kind"] == "pixel_patches":
            return pixel_patches(images, o["patch_size"], o["dim"], o["seed"])
        if o["kind"] == "dino_vit":
            start = o["finetune_from_block"]
            out = DinoViT(
                o["architecture"],
                image_size=size,
                feature_block=o["feature_block"],
                final_norm=o["final_norm"],
                hidden_block=None if start is None else start - 1,
                dtype=self.dtype,
                name="vit",
            )(images)
        elif o.get("pretraining"):
            out = DinoViT(
                pretraining.architecture_of(o),
                image_size=size,
                feature_block=o["feature_block"],
                final_norm=o["final_norm"],
                positions="learned" if o["pretraining"] == "dino" else "sincos",
                dtype=self.dtype,
                name="vit",
            )(images)
        else:
            depth = o["feature_block"] % o["depth"] + 1
            out = ViT(
                patch_size=o["patch_size"],
                dim=o["dim"],
                depth=depth,
                num_heads=o["num_heads"],
                mlp_dim=o["mlp_dim"],
                final_norm=o["final_norm"],
                dtype=self.dtype,
                name="vit",
            )(images)
        return jax.lax.stop_gradient(out)


class FinetunedBlocks(nn.Module):
    """The trainable blocks `finetune_from_block` .. `feature_block` of a `dino_vit`
    backbone: the sequence after the block before `[b, extra + n, d]` to tokens `[b, n, d]`."""

    options: Options
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden: jax.Array) -> jax.Array:
        """Runs the blocks (and the final norm where the backbone has it) on `hidden`
        (a square patch grid after the CLS and register tokens)."""
        o = dict(self.options)
        spec = ARCHITECTURES[o["architecture"]]
        side = math.isqrt(hidden.shape[1] - 1 - spec.num_registers) * spec.patch_size
        return DinoViT(
            o["architecture"],
            image_size=(side, side),
            feature_block=o["feature_block"],
            final_norm=o["final_norm"],
            start_block=o["finetune_from_block"],
            dtype=self.dtype,
            name="vit",
        )(None, hidden).tokens


def finetuned_params(backbone: Mapping[str, Any], options: Options) -> dict[str, Any]:
    """`params["finetuned"]` from the backbone's: its blocks from `finetune_from_block` on
    (and its final norm if used), copied."""
    o = dict(options)
    vit = dict(backbone["vit"])
    start = o["finetune_from_block"]
    keep = {k: v for k, v in vit.items() if k.startswith("blocks_") and int(k[7:]) >= start}
    if "norm" in vit:
        keep["norm"] = vit["norm"]
    return {"vit": jax.tree.map(np.array, keep)}


def pretrained_params(options: Options, image_size: tuple[int, int]) -> dict[str, Any] | None:
    """The backbone's weights for `params["backbone"]`, or None to keep the random init
    (a `dino_vit` without `checkpoint`)."""
    o = dict(options)
    if o["kind"] == "pixel_patches":
        return None
    if o["kind"] == "dino_vit":
        if o["checkpoint"] is None:
            return None
        depth = o["feature_block"] % ARCHITECTURES[o["architecture"]].depth + 1
        variables = checkpoints.load_pretrained(
            o["checkpoint"], o["architecture"], image_size, depth=depth
        )
        params = dict(variables["params"])
        if not o["final_norm"]:
            params.pop("norm")
        return {"vit": params}
    return {"vit": _ocjax_vit_params(o, image_size)}


def _ocjax_vit_params(o: dict[str, Any], image_size: tuple[int, int]) -> dict[str, Any]:
    """The `backbone` params of the latest checkpoint of the ocjax run in `o["workdir"]`."""
    workdir = o["workdir"]
    trained = load_run_config(workdir)["data"]["resolution"]
    # A pretraining run's DinoViT resamples its positions to any grid; the flagship's cannot.
    if not o.get("pretraining") and tuple(image_size) != (trained, trained):
        raise ValueError(
            f"The ViT in {workdir} was trained on {trained}x{trained} images (its positional "
            f"embedding), but this run feeds {image_size[0]}x{image_size[1]}; set "
            f"data.resolution={trained}."
        )
    if o.get("pretraining"):
        path = encoder_path(o["pretraining"])
        params = latest_params(workdir, path[0])
        for key in path[1:]:
            params = dict(params[key])
        block = "blocks_{}"
    else:
        params = latest_params(workdir, "backbone")
        block = "block_{}"
    depth = o["feature_block"] % o["depth"] + 1
    for i in range(depth, o["depth"]):
        params.pop(block.format(i))
    if not o["final_norm"]:
        params.pop("norm")
    return params
