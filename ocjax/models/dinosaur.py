"""DINOSAUR (Seitzer et al., ICLR 2023): slots that reconstruct a frozen ViT's features.

Frozen backbone (`ocjax.models.backbones`) -> patch features `[b, n, f]` -> LayerNorm and
a two-layer MLP -> Slot Attention -> a decoder that reconstructs the features:

* `MLPFeatureDecoder`: every slot is broadcast to the n patches, a learned positional
  embedding is added, and a shared MLP maps each (slot, patch) to a feature and an alpha
  logit; masks are the softmax of the alphas over the slots and the reconstruction their
  mask-weighted sum (the paper's COCO decoder: 3 hidden layers of 2048).
* `TransformerFeatureDecoder`: autoregressive over the patches (raster order by default),
  the decoder of SPOT's release (SLATE's): the target features shifted right behind a
  learned BOS token (and a learned positional embedding) are projected and pass causal
  self-attention, cross-attention to the slots and a ReLU MLP per pre-norm layer; masks
  are the last layer's cross-attention (mean over heads, softmax over the slots). SPOT
  uses it with other patch orders.

The loss (`ocjax.training.objectives.feature_reconstruction`) is the MSE to the frozen
features.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ocjax.models.backbones import Backbone, FinetunedBlocks, Options
from ocjax.models.cross_attention import MultiHeadAttention, TransformerMLP
from ocjax.models.initializers import (
    KERNEL_INITS,
    fused_xavier_uniform,
    scheme,
    torch_bias,
    xavier_uniform,
)
from ocjax.models.queries import GaussianQueries, LearnedQueries
from ocjax.models.slot_attention import ATTENTION_ITERATIONS, TRUNCATIONS, SlotAttention, SlotMLP

Dtype = Any
DECODERS = ("mlp", "transformer")
DECODER_STYLES = ("spot", "dinosaur")
ORDERS = ("standard", "spot")
EVAL_ORDERS = ("raster", "all")
SLOT_INITS = ("gaussian", "embedding")
ORDER_NAMES = (
    "raster",  # Rows top to bottom, each left to right (the standard order).
    "columns",  # Columns left to right, each top to bottom.
    "columns_from_right",  # Columns right to left, each top to bottom.
    "rows_right_to_left",  # Rows top to bottom, each right to left.
    "columns_from_right_up",  # Columns right to left, each bottom to top.
    "rows_up_right_to_left",  # Rows bottom to top, each right to left.
    "columns_up",  # Columns left to right, each bottom to top.
    "rows_up",  # Rows bottom to top, each left to right.
    "spiral",  # From the centre outwards, ending at the top-right corner.
)


def _spiral_from_top_right(side: int) -> list[int]:
    """Raster indices of a clockwise spiral that starts at the top-right corner going down."""
    top, bottom, left, right = 0, side - 1, 0, side - 1
    out: list[int] = []
    while top <= bottom and left <= right:
        out += [r * side + right for r in range(top, bottom + 1)]  # Down the right column.
        right -= 1
        if left <= right:
            out += [bottom * side + c for c in range(right, left - 1, -1)]  # Bottom, leftwards.
            bottom -= 1
        if top <= bottom and left <= right:
            out += [r * side + left for r in range(bottom, top - 1, -1)]  # Up the left column.
            left += 1
        if left <= right and top <= bottom:
            out += [top * side + c for c in range(left, right + 1)]  # Top row, rightwards.
            top += 1
    return out


def patch_orders(side: int) -> np.ndarray:
    """SPOT's nine patch orders `[9, side * side]` (raster indices), named in `ORDER_NAMES`:
    the eight row / column scans from each corner, and a spiral from the centre outwards."""
    grid = np.arange(side * side).reshape(side, side)
    scans = [
        grid,  # raster
        grid.T,  # columns
        grid[:, ::-1].T,  # columns_from_right
        grid[:, ::-1],  # rows_right_to_left
        grid[::-1, ::-1].T,  # columns_from_right_up
        grid[::-1, ::-1],  # rows_up_right_to_left
        grid[::-1].T,  # columns_up
        grid[::-1],  # rows_up
    ]
    orders = [s.reshape(-1) for s in scans] + [np.asarray(_spiral_from_top_right(side)[::-1])]
    return np.stack(orders).astype(np.int32)


class MLPFeatureDecoder(nn.Module):
    """Slots `[b, k, d]` to features `[b, n, f]` and masks `[b, k, n]` (softmax over slots).

    Kernels from the scheme `kernel_init` (DINOSAUR's release: PyTorch's default), biases
    zero; the position embedding N(0, 0.02).
    """

    num_patches: int
    feature_dim: int
    hidden_dims: tuple[int, ...] = (2048, 2048, 2048)
    kernel_init: str = "torch"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, slots: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Decodes each slot at every patch; returns `(reconstruction, masks)`."""
        d = slots.shape[-1]
        position = self.param(
            "position_embedding", nn.initializers.normal(0.02), (1, 1, self.num_patches, d)
        )
        x = slots[:, :, None, :].astype(self.dtype) + position.astype(self.dtype)
        inits = scheme(self.kernel_init)
        for i, width in enumerate(self.hidden_dims):
            init = KERNEL_INITS[inits.relu_kernel]
            x = nn.relu(nn.Dense(width, kernel_init=init, dtype=self.dtype, name=f"dense_{i}")(x))
        out = nn.Dense(
            self.feature_dim + 1,
            kernel_init=KERNEL_INITS[inits.kernel],
            dtype=self.dtype,
            name="output",
        )(x)
        features, alpha = out[..., :-1], out[..., -1].astype(jnp.float32)
        masks = jax.nn.softmax(alpha, axis=1)  # [b, k, n]
        reconstruction = jnp.einsum("bkn,bknf->bnf", masks, features.astype(jnp.float32))
        return reconstruction, masks


KAIMING_UNIFORM_RELU = KERNEL_INITS["kaiming_uniform"]
TORCH_LAYER_NORM_EPS = 1e-5


def _torch_norm(dtype: Dtype, name: str) -> nn.LayerNorm:
    """LayerNorm with PyTorch's epsilon."""
    return nn.LayerNorm(epsilon=TORCH_LAYER_NORM_EPS, dtype=dtype, name=name)


class DecoderLayer(nn.Module):
    """One pre-norm decoder block: causal self-attention, cross-attention to the slots and
    a ReLU MLP, each a residual branch behind a LayerNorm (PyTorch's epsilon). `style`
    names the release whose block it is:

    - `"spot"`: SLATE's block as SPOT releases it. Xavier-uniform projections, no bias on
      the attention outputs, each branch's last projection at Xavier gain `gain`, the MLP's
      first layer Kaiming-uniform. The `first` layer continues its residual stream from
      the normalised tokens.
    - `"dinosaur"`: PyTorch's `nn.TransformerDecoderLayer(norm_first=True)`, biases in
      every projection. The fused query / key / value weight Xavier-uniform, its biases and
      the output projection's zero; the output projection and the MLP PyTorch's default
      (biases U(+-1/sqrt(fan_in))). `gain` and `first` do not apply.
    """

    num_heads: int
    mlp_dim: int
    style: str = "spot"
    gain: float = 1.0
    first: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, slots: jax.Array, causal: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Updates tokens `[b, n, dim]`; returns them and the cross-attention `[b, h, n, k]`."""
        dim = x.shape[-1]
        if self.style == "spot":
            attention = {
                "kernel_init": xavier_uniform(),
                "out_kernel_init": xavier_uniform(self.gain),
                "out_bias": False,
            }
            mlp_inits = {"kernel_inits": (KAIMING_UNIFORM_RELU, xavier_uniform(self.gain))}
        elif self.style == "dinosaur":
            attention = {
                "kernel_init": fused_xavier_uniform(3),
                "out_kernel_init": KERNEL_INITS["torch_default"],
                "qkv_bias": True,
            }
            mlp_inits = {
                "kernel_inits": (KERNEL_INITS["torch_default"],) * 2,
                "bias_inits": (torch_bias(dim), torch_bias(self.mlp_dim)),
            }
        else:
            raise ValueError(
                f"Unknown model.decoder_style {self.style!r}; use one of {DECODER_STYLES}."
            )
        attention = {**attention, "num_heads": self.num_heads, "dtype": self.dtype}

        def norm(name: str) -> nn.LayerNorm:
            return _torch_norm(self.dtype, name)

        h = norm("norm_self")(x)
        if self.first and self.style == "spot":
            x = h
        x = x + MultiHeadAttention(**attention, name="self_attention")(h, h, mask=causal)[0]
        update, cross = MultiHeadAttention(**attention, name="cross_attention")(
            norm("norm_cross")(x), slots
        )
        x = x + update
        mlp = TransformerMLP(
            self.mlp_dim, activation=nn.relu, dtype=self.dtype, name="mlp", **mlp_inits
        )
        return x + mlp(norm("norm_mlp")(x)), cross


class TransformerFeatureDecoder(nn.Module):
    """Autoregressive decoder: slots `[b, k, d]` and target features `[b, n, f]` (teacher
    forcing) to predicted features `[b, n, f]` and masks `[b, k, n]`.

    SPOT's release (SLATE's decoder): the targets in `order` `[n]` (a permutation of the
    patches, default raster) are shifted right behind a learned BOS token (one per order,
    picked by `order_index`), projected to `dim` without bias and layer-normalised; the
    slots likewise. `num_layers` `DecoderLayer`s with residual gain
    `(3 * num_layers) ** -0.5` and a final LayerNorm follow; a linear output layer maps
    back to f only when `dim != f` (the release has none: its width is the feature width).
    Masks are the last layer's cross-attention (mean over heads, softmax over the slots).
    Outputs and masks are returned in raster order. With `positions`, a learned embedding
    of each patch's position is added to the inputs before the projection (SPOT leaves it
    out: the ViT features carry their positions). Kernels as the release: Xavier-uniform,
    Kaiming-uniform on each MLP's first layer; LayerNorm epsilon 1e-5 (PyTorch's).

    `style="dinosaur"` is DINOSAUR's release instead (its `AutoregressivePatchDecoder`):
    one BOS token N(0, 1/f), the same projections, DINOSAUR-style `DecoderLayer`s that all start from
    the same draw (PyTorch's `nn.TransformerDecoder` copies one layer; params `layers`,
    stacked over the layers) and no final LayerNorm.
    """

    num_layers: int = 4
    num_heads: int = 4
    dim: int = 256
    mlp_dim: int = 1024
    num_orders: int = 1
    positions: bool = True
    style: str = "spot"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        slots: jax.Array,
        targets: jax.Array,
        order: jax.Array | None = None,
        order_index: jax.Array | int = 0,
    ) -> tuple[jax.Array, jax.Array]:
        """Predicts patch `order[i]` from the slots and patches `order[:i]`."""
        b, n, f = targets.shape
        if order is not None:
            targets = jnp.take(targets, order, axis=1)
        if self.style not in DECODER_STYLES:
            raise ValueError(
                f"Unknown model.decoder_style {self.style!r}; use one of {DECODER_STYLES}."
            )
        spot = self.style == "spot"
        bos_init = nn.initializers.normal(0.02 if spot else f**-0.5)
        bos = self.param("bos", bos_init, (self.num_orders, 1, f))
        bos = jnp.broadcast_to(bos[order_index], (b, 1, f))
        x = jnp.concatenate([bos, targets[:, :-1].astype(jnp.float32)], axis=1)
        if self.positions:
            position = self.param("position_embedding", nn.initializers.normal(0.02), (1, n, f))
            if order is not None:  # Positions follow the patches, not the sequence index.
                position = jnp.take(position, order, axis=1)
            x = x + position

        def project(y: jax.Array, name: str) -> jax.Array:
            """Bias-free Xavier projection to `dim`, then LayerNorm (`input_proj`, `slot_proj`)."""
            y = nn.Dense(
                self.dim,
                use_bias=False,
                kernel_init=xavier_uniform(),
                dtype=self.dtype,
                name=name,
            )(y.astype(self.dtype))
            return _torch_norm(self.dtype, f"norm_{name}")(y)

        x = project(x, "input")
        memory = project(slots, "slots")
        causal = jnp.tril(jnp.ones((n, n), bool))
        gain = (3 * self.num_layers) ** -0.5
        cross = None
        if spot:
            for i in range(self.num_layers):
                x, cross = DecoderLayer(
                    self.num_heads,
                    self.mlp_dim,
                    gain=gain,
                    first=i == 0,
                    dtype=self.dtype,
                    name=f"layer_{i}",
                )(x, memory, causal)
            x = _torch_norm(self.dtype, "norm_output")(x)
        else:
            # PyTorch's nn.TransformerDecoder deep-copies one layer: every layer starts from
            # the same weights. The layers' params are stacked `[num_layers, ...]`, drawn once.
            layers = nn.scan(
                DecoderLayer,
                variable_axes={"params": 0},
                split_rngs={"params": False},
                in_axes=(nn.broadcast, nn.broadcast),
                length=self.num_layers,
            )
            x, crosses = layers(
                self.num_heads, self.mlp_dim, style="dinosaur", dtype=self.dtype, name="layers"
            )(x, memory, causal)
            cross = crosses[-1]
        if self.dim != f:
            x = nn.Dense(f, kernel_init=xavier_uniform(), dtype=self.dtype, name="output")(x)
        out = x.astype(jnp.float32)
        masks = jnp.mean(cross, axis=1).transpose(0, 2, 1)  # [b, k, n] in sequence order.
        if order is not None:
            inverse = jnp.argsort(order)
            out, masks = jnp.take(out, inverse, axis=1), jnp.take(masks, inverse, axis=2)
        return out, masks


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    """Raises ValueError naming `model.<field>` when `value` is not one of `choices`."""
    if value not in choices:
        raise ValueError(f"Unknown model.{field} {value!r}; use one of {choices}.")


def check_head(head: Mapping[str, Any]) -> None:
    """Raises ValueError naming an unknown option of a `SlotHead` (fields `head`) or a bad
    combination, before anything runs."""
    choices = {
        "decoder": DECODERS,
        "decoder_style": DECODER_STYLES,
        "orders": ORDERS,
        "eval_orders": EVAL_ORDERS,
        "slot_init": SLOT_INITS,
        "truncate": TRUNCATIONS,
        "attention_iteration": ATTENTION_ITERATIONS,
    }
    for field, allowed in choices.items():
        _check_choice(field, head[field], allowed)
    scheme(head["kernel_init"])
    if head["orders"] == "spot" and head["decoder"] != "transformer":
        raise ValueError("model.orders 'spot' needs model.decoder 'transformer'.")
    if head["eval_orders"] == "all" and head["orders"] != "spot":
        raise ValueError(
            "model.eval_orders 'all' averages SPOT's nine orders: set model.orders 'spot'."
        )
    if head["num_slots"] < 1:
        raise ValueError(f"model.num_slots must be >= 1, got {head['num_slots']}.")


class SlotHead(nn.Module):
    """Features `[b, n, f]` -> LayerNorm, two-layer MLP -> Slot Attention -> feature decoder.

    Everything of DINOSAUR and SPOT after the frozen backbone. The defaults are DINOSAUR's
    release; SPOT's differences are options:

    * `feature_mlp_hidden_dim` / `feature_mlp_dim`: the MLP's widths (None: the features'
      width / `slot_dim`); DINOSAUR f -> f -> slot_dim, SPOT f -> f -> f (Slot Attention
      then projects to `slot_dim`);
    * `kernel_init`: the initialisation scheme of every layer (`ocjax.models.initializers`):
      `torch` (DINOSAUR), `xavier` (SPOT);
    * `slot_init`: `gaussian` (one learned Gaussian shared by the slots) or `embedding`
      (a learned vector per slot, SPOT's student); `truncate`: `none` or SPOT's student's
      `bi-level` (`SlotAttention`);
    * `attention_iteration`: the Slot Attention iteration whose attention is returned as
      `attention` (both releases evaluate the `last`);
    * `decoder`: `mlp` or `transformer` (`decoder_style` `dinosaur` or `spot`);
      `orders`: `standard` (raster) or `spot` (a random one of nine per training step);
      `eval_orders`: `raster`, or `all` (SPOT's COCO figures: the decoder's outputs and
      masks averaged over the nine orders).
    """

    num_slots: int = 7
    num_iterations: int = 3
    slot_dim: int = 256
    mlp_hidden_dim: int = 1024
    feature_mlp_hidden_dim: int | None = None
    feature_mlp_dim: int | None = None
    kernel_init: str = "torch"
    slot_init: str = "gaussian"
    truncate: str = "none"
    attention_iteration: str = "last"
    decoder: str = "mlp"
    decoder_hidden_dims: tuple[int, ...] = (2048, 2048, 2048)
    decoder_layers: int = 4
    decoder_heads: int = 4
    decoder_dim: int = 256
    decoder_positions: bool = True
    decoder_style: str = "dinosaur"
    orders: str = "standard"
    eval_orders: str = "raster"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, features: jax.Array, train: bool = False, targets: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Slots from `features [b, n, c]` and the reconstruction of `targets [b, n, f]`
        (default: the features); see `Dinosaur.__call__`."""
        check_head({f: getattr(self, f) for f in HEAD_FIELDS})
        targets = features if targets is None else targets
        b, n, f = targets.shape
        x = nn.LayerNorm(epsilon=TORCH_LAYER_NORM_EPS, dtype=self.dtype, name="norm_features")(
            features.astype(self.dtype)
        )
        x = SlotMLP(
            self.feature_mlp_hidden_dim or features.shape[-1],
            self.feature_mlp_dim or self.slot_dim,
            self.dtype,
            self.kernel_init,
            name="feature_mlp",
        )(x)
        if self.slot_init == "gaussian":
            init = GaussianQueries(
                self.num_slots, self.slot_dim, kernel_init=self.kernel_init, name="slot_init"
            )
        else:
            init = LearnedQueries(
                self.num_slots, self.slot_dim, param_init="xavier_uniform", name="slot_init"
            )
        slots, attention, logits = SlotAttention(
            num_iterations=self.num_iterations,
            mlp_hidden_dim=self.mlp_hidden_dim,
            return_logits=True,
            attention_iteration=self.attention_iteration,
            truncate=self.truncate,
            norm_epsilon=TORCH_LAYER_NORM_EPS,  # Both releases' LayerNorms are PyTorch's.
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            name="slot_attention",
        )(init(b).astype(self.dtype), x)
        if self.decoder == "mlp":
            reconstruction, masks = MLPFeatureDecoder(
                n,
                f,
                tuple(self.decoder_hidden_dims),
                kernel_init=self.kernel_init,
                dtype=self.dtype,
                name="decoder",
            )(slots)
        else:
            decoder = TransformerFeatureDecoder(
                self.decoder_layers,
                self.decoder_heads,
                self.decoder_dim,
                4 * self.decoder_dim,
                num_orders=len(ORDER_NAMES) if self.orders == "spot" else 1,
                positions=self.decoder_positions,
                style=self.decoder_style,
                dtype=self.dtype,
                name="decoder",
            )
            reconstruction, masks = self._decode_in_orders(decoder, slots, targets, train)
        return {
            "reconstruction": reconstruction,
            "masks": masks,
            "attention": attention,
            "attention_logits": logits,
            "slots": slots.astype(jnp.float32),
        }

    def _decode_in_orders(
        self,
        decoder: TransformerFeatureDecoder,
        slots: jax.Array,
        features: jax.Array,
        train: bool,
    ) -> tuple[jax.Array, jax.Array]:
        """`decoder` in raster order, or in SPOT's orders (a random one in training; raster,
        or the mean over all nine with `eval_orders="all"`, in evaluation)."""
        table = patch_orders(math.isqrt(features.shape[1])) if self.orders == "spot" else None
        if table is None:
            return decoder(slots, features)
        if train or self.eval_orders == "raster":
            index = jax.random.randint(self.make_rng("slots"), (), 0, len(table)) if train else 0
            self.sow("intermediates", "order_index", index)
            return decoder(slots, features, jnp.asarray(table)[index], index)
        decoded = [decoder(slots, features, jnp.asarray(order), i) for i, order in enumerate(table)]
        reconstruction = jnp.mean(jnp.stack([r for r, _ in decoded]), axis=0)
        masks = jnp.mean(jnp.stack([m for _, m in decoded]), axis=0)
        return reconstruction, masks


HEAD_FIELDS = tuple(f for f in SlotHead.__dataclass_fields__ if f not in ("parent", "name"))


class Dinosaur(SlotHead):
    """Frozen ViT features -> `SlotHead` (Slot Attention, feature decoder); see the module doc.

    The head's fields are `SlotHead`'s. `backbone` is the resolved `model.backbone`
    (`ocjax.models.backbones.resolve`); with its `finetune_from_block` (SPOT's student)
    Slot Attention reads a trainable copy of the backbone's last blocks (`finetuned`)
    while the frozen backbone's features stay the targets. With `teacher` (SPOT's second
    stage, resolved by `resolve_teacher` from the teacher run's workdir) a frozen copy of
    the teacher's head runs on the frozen features (in training its decoder reads a random
    patch order, as the official second stage) and hands its decoder masks on as
    `teacher_masks`.
    """

    backbone: Options = ()
    teacher: Options | None = None

    @nn.compact
    def __call__(
        self, inputs: jax.Array | Mapping[str, jax.Array], train: bool = False
    ) -> dict[str, jax.Array]:
        """Maps images `[b, h, w, 3]` (ImageNet-normalised), or the backbone's cached outputs
        (`{"features": [b, n, f]}`, plus `"hidden": [b, extra + n, d]` when fine-tuning;
        `ocjax.data.feature_cache`), to outputs; in training with `orders="spot"` the
        transformer decoder reads the patches in a random one of SPOT's nine orders
        (`patch_orders`).

        Returns `features [b, n, f]` (the frozen targets), `reconstruction [b, n, f]`,
        `masks [b, k, n]` (decoder), `attention [b, k, n]` (the `attention_iteration` of
        Slot Attention), `attention_logits [b, k, n]` (last iteration, before the softmax)
        and `slots [b, k, d]`, plus `teacher_masks [b, k, n]` with a teacher; n is the
        backbone's patch count (a square grid).
        """
        if not self.backbone:
            raise ValueError("model.backbone is missing: DINOSAUR needs a frozen backbone.")
        head = {f: getattr(self, f) for f in HEAD_FIELDS}
        check_head(head)  # Before the backbone runs.
        head.pop("dtype")
        start = dict(self.backbone).get("finetune_from_block")
        if isinstance(inputs, Mapping):
            features, hidden = inputs["features"], inputs.get("hidden")
            if start is not None and hidden is None:
                raise ValueError(
                    "The cached features lack the sequence the fine-tuned blocks start from "
                    "('hidden'); rebuild the feature cache for this backbone."
                )
        else:
            vit = Backbone(self.backbone, dtype=self.dtype, name="backbone")(inputs)
            features, hidden = vit.tokens, vit.hidden
        features = jax.lax.stop_gradient(features.astype(jnp.float32))
        slot_inputs = features
        if start is not None:
            slot_inputs = FinetunedBlocks(self.backbone, dtype=self.dtype, name="finetuned")(
                jax.lax.stop_gradient(hidden)
            ).astype(jnp.float32)
        outputs = SlotHead(**head, dtype=self.dtype, name="head")(slot_inputs, train, features)
        outputs["features"] = features
        if self.teacher is not None:
            teacher = {k: v for k, v in self.teacher if k in HEAD_FIELDS}
            taught = SlotHead(**teacher, dtype=self.dtype, name="teacher")(features, train)
            outputs["teacher_masks"] = jax.lax.stop_gradient(taught["masks"])
        return outputs


def frozen_subtrees(model: nn.Module) -> tuple[str, ...]:
    """Top-level parameter names the optimiser must leave alone: a frozen backbone's, a
    SPOT teacher's and the momentum encoders of self-supervised pretraining (moved by EMA,
    `ocjax.models.pretraining`)."""
    backbone = getattr(model, "backbone", None)
    frozen = ("backbone",) if isinstance(backbone, tuple) and backbone else ()
    frozen += ("teacher",) if isinstance(getattr(model, "teacher", None), tuple) else ()
    return frozen + tuple(momentum for _, momentum in getattr(model, "EMA", ()))


def resolve_teacher(options: Mapping[str, Any], backbone: Options) -> Options:
    """SPOT's teacher from `{"workdir": DIR}`: the head hyper-parameters of the DINOSAUR /
    SPOT run in DIR (its `config.json`), checked to share the student's frozen backbone
    (the blocks the student fine-tunes may differ: the teacher reads the frozen features)."""
    from ocjax.models import backbones  # pylint: disable=import-outside-toplevel

    workdir = dict(options).get("workdir")
    if not workdir:
        raise ValueError("model.teacher needs a workdir: the teacher run's --workdir.")
    if not os.path.exists(os.path.join(workdir, "config.json")):
        raise FileNotFoundError(
            f"model.teacher.workdir={workdir!r} has no config.json: train the teacher first "
            "(SPOT's first stage, e.g. configs/coco_spot.py:teacher) into that workdir."
        )
    model = backbones.load_run_config(workdir)["model"]
    if model.get("name") != "dinosaur":
        raise ValueError(f"The run in {workdir} is a {model.get('name')!r}, not a teacher.")

    def frozen(options: Options) -> dict[str, Any]:
        """The options that decide the frozen features (not which blocks a student tunes)."""
        return {k: v for k, v in dict(options).items() if k != "finetune_from_block"}

    if frozen(backbones.resolve(model["backbone"])) != frozen(backbone):
        raise ValueError(
            f"The teacher in {workdir} was trained on other features (model.backbone "
            f"{model['backbone']}); the student must use the same backbone."
        )
    head = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
    fields = {k: head[k] for k in HEAD_FIELDS if k in head and k != "dtype"}
    return tuple(sorted({**fields, "workdir": workdir}.items()))


def teacher_params(teacher: Options) -> dict[str, Any]:
    """The teacher run's `head` params (latest checkpoint), for `params["teacher"]`."""
    from ocjax.models import backbones  # pylint: disable=import-outside-toplevel

    return backbones.latest_params(dict(teacher)["workdir"], "head")


def as_options(value: Any) -> Options:
    """`model.backbone` from a config (dict / ConfigDict) as hashable options."""
    from ocjax.models.backbones import resolve  # pylint: disable=import-outside-toplevel

    if isinstance(value, tuple):
        return value
    if isinstance(value, Mapping) or hasattr(value, "to_dict"):
        return resolve(value.to_dict() if hasattr(value, "to_dict") else value)
    raise TypeError(f"model.backbone must be a dict of options, got {type(value).__name__}.")
