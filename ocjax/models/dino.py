"""DINO (Caron et al., 2021): a student ViT trained to match an EMA teacher across crops.

Every crop goes through the student (ViT -> DINO head); the global crops also through the
teacher, a momentum copy of the student (`EMA`, `ocjax.models.pretraining`). The DINO head
is a 3-layer MLP (GELU) to a bottleneck, L2-normalised, then a weight-normalised linear
layer without bias to `out_dim` prototypes; with `norm_last_layer` their norms stay 1. The
loss (`ocjax.losses.self_supervised.dino_loss`) sharpens the teacher with a low
temperature and centres it with `center`, an EMA of the teacher's outputs kept in the
`dino` collection and updated on every training call. During the first
`freeze_last_layer_steps` the prototypes get no gradient (DINO's first epoch; DINO drops
their gradient, here it is zero, so AdamW's weight decay still shrinks them, which their
weight normalisation makes harmless).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.losses import self_supervised as ssl
from ocjax.models import pretraining
from ocjax.models.dino_vit import Architecture
from ocjax.models.initializers import KERNEL_INITS
from ocjax.models.vit import ViTOutput

Dtype = Any
_TRUNC_NORMAL = KERNEL_INITS["truncated_normal"]


class DinoHead(nn.Module):
    """DINO's projection head: features `[b, d]` to prototype scores `[b, out_dim]`."""

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_layers: int = 3
    norm_last_layer: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, freeze_last_layer: jax.Array | bool = False) -> jax.Array:
        """MLP, L2 normalisation, weight-normalised prototypes (no gradient while frozen)."""
        for i in range(self.num_layers):
            width = self.bottleneck_dim if i == self.num_layers - 1 else self.hidden_dim
            x = nn.Dense(width, kernel_init=_TRUNC_NORMAL, dtype=self.dtype, name=f"mlp_{i}")(x)
            if i < self.num_layers - 1:
                x = nn.gelu(x, approximate=False)
        x = x.astype(jnp.float32)
        x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        # Weight normalisation per prototype: w = g v / |v| (PyTorch's weight_norm, dim 0).
        v = self.param("prototypes", _TRUNC_NORMAL, (self.bottleneck_dim, self.out_dim))
        v = jnp.where(freeze_last_layer, jax.lax.stop_gradient(v), v)
        w = v / jnp.linalg.norm(v, axis=0, keepdims=True)
        if not self.norm_last_layer:
            g = self.param("scale", nn.initializers.ones, (self.out_dim,))
            w = w * jnp.where(freeze_last_layer, jax.lax.stop_gradient(g), g)
        return x @ w


class DinoBranch(nn.Module):
    """A ViT and its DINO head (the student, or the teacher with the same structure)."""

    architecture: Architecture
    image_size: int
    out_dim: int
    head_hidden_dim: int
    bottleneck_dim: int
    head_layers: int
    norm_last_layer: bool
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        """The ViT (`vit`) and the head (`head`)."""
        self.vit = pretraining.vit(self.architecture, self.image_size, "dino", self.dtype)
        self.head = DinoHead(
            self.out_dim,
            self.head_hidden_dim,
            self.bottleneck_dim,
            self.head_layers,
            self.norm_last_layer,
            dtype=self.dtype,
        )

    def __call__(self, crops: jax.Array, freeze_last_layer: jax.Array | bool = False) -> jax.Array:
        """Scores `[n, out_dim]` of crops `[n, s, s, 3]` (their CLS tokens)."""
        return self.head(self.vit(crops).cls, freeze_last_layer)

    def encode(self, images: jax.Array) -> ViTOutput:
        """The ViT's output for images `[b, s, s, 3]`."""
        return self.vit(images)


class DINO(nn.Module):
    """DINO pretraining. Training inputs: `{"global": [b, G, S, S, 3], "local": [b, L, s, s,
    3] (optional), "step": []}`; outputs `student [G + L, b, out_dim]` (global crops first),
    `teacher [G, b, out_dim]` (no gradient) and `center [out_dim]` (before this call's
    update). Evaluation input: images `[b, S, S, 3]`; outputs the teacher's patch `tokens
    [b, n, dim]` and `cls [b, dim]`, the features a downstream model reads."""

    EMA: ClassVar[tuple[tuple[str, str], ...]] = (("student", "teacher"),)
    ENCODER: ClassVar[tuple[str, ...]] = ("teacher", "vit")  # The paper evaluates the teacher.

    image_size: int = 224
    patch_size: int = 16
    dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    num_registers: int = 0
    out_dim: int = 65536
    head_hidden_dim: int = 2048
    bottleneck_dim: int = 256
    head_layers: int = 3
    norm_last_layer: bool = True
    center_momentum: float = 0.9
    freeze_last_layer_steps: int = 0
    momentum: float = 0.996
    final_momentum: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Any, train: bool = False) -> dict[str, jax.Array]:
        """Student and teacher scores of every crop (training), or teacher features (else)."""
        spec = pretraining.architecture_of(self)
        branch = lambda name: DinoBranch(
            spec,
            self.image_size,
            self.out_dim,
            self.head_hidden_dim,
            self.bottleneck_dim,
            self.head_layers,
            self.norm_last_layer,
            dtype=self.dtype,
            name=name,
        )
        student, teacher = branch("student"), branch("teacher")
        center = self.variable("dino", "center", jnp.zeros, (self.out_dim,), jnp.float32)
        if train:
            return self._train(student, teacher, center, inputs)
        if self.is_initializing():  # Every parameter, from the images as one global crop.
            self._train(student, teacher, center, {"global": inputs[:, None]})
        features = teacher.encode(inputs)
        return {"tokens": features.tokens, "cls": features.cls}

    def _train(
        self, student: DinoBranch, teacher: DinoBranch, center: Any, inputs: dict[str, Any]
    ) -> dict[str, jax.Array]:
        """Scores of every crop through the student, of the global crops through the teacher."""
        b = inputs["global"].shape[0]
        frozen = jnp.asarray(inputs.get("step", 0)) < self.freeze_last_layer_steps

        def scores(branch: DinoBranch, crops: jax.Array) -> jax.Array:
            """`[n, b, out_dim]` of crops `[b, n, s, s, 3]`, one batch per crop index."""
            n = crops.shape[1]
            flat = jnp.swapaxes(crops, 0, 1).reshape((n * b,) + crops.shape[2:])
            return branch(flat, frozen).reshape(n, b, -1)

        out_student = [scores(student, inputs["global"])]
        if inputs.get("local") is not None and inputs["local"].shape[1]:
            out_student.append(scores(student, inputs["local"]))
        out_teacher = jax.lax.stop_gradient(scores(teacher, inputs["global"]))
        previous = center.value
        if not self.is_initializing():
            center.value = ssl.dino_center(previous, out_teacher, self.center_momentum)
        return {
            "student": jnp.concatenate(out_student, axis=0),
            "teacher": out_teacher,
            "center": previous,
        }
