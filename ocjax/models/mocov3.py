"""MoCo v3 (Chen, Xie and He, 2021): a ViT trained by contrasting two views against a
momentum encoder.

The base encoder is a ViT whose CLS token feeds a projector (3 layers of 4096, BatchNorm
and ReLU, a last BatchNorm without affine parameters, out 256); a predictor (2 layers,
no last BatchNorm) follows it. The momentum encoder is an EMA of the base encoder and its
projector (`EMA`, `ocjax.models.pretraining`). Every linear layer has no bias, as in the
release. The positions are the fixed 2-D sine-cosine table and, with
`frozen_patch_embed`, the patch projection stays at its random initialisation (the
paper's fix for the instability of ViT training). Each view goes through the encoders
separately, so BatchNorm normalises over one view's batch, as the release does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models import pretraining
from ocjax.models.dino_vit import Architecture
from ocjax.models.initializers import KERNEL_INITS

Dtype = Any


class MocoMLP(nn.Module):
    """MoCo v3's `_build_mlp`: `num_layers` bias-free linear layers, BatchNorm and ReLU
    between them, and a last BatchNorm without affine parameters when `last_bn`."""

    num_layers: int
    hidden_dim: int
    out_dim: int
    last_bn: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Maps features `[b, d]` to `[b, out_dim]`."""
        xavier = KERNEL_INITS["xavier_uniform"]
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            width = self.out_dim if last else self.hidden_dim
            x = nn.Dense(
                width, use_bias=False, kernel_init=xavier, dtype=self.dtype, name=f"linear_{i}"
            )(x)
            if not last or self.last_bn:
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    use_scale=not last,
                    use_bias=not last,
                    dtype=jnp.float32,
                    name=f"bn_{i}",
                )(x)
            if not last:
                x = nn.relu(x)
        return x


class MocoEncoder(nn.Module):
    """A ViT and its projector (the base encoder, or the momentum encoder)."""

    architecture: Architecture
    image_size: int
    frozen_patch_embed: bool
    projector_layers: int
    hidden_dim: int
    out_dim: int
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        """The ViT (`vit`) and the projector (`projector`)."""
        self.vit = pretraining.vit(
            self.architecture,
            self.image_size,
            "mocov3",
            self.dtype,
            positions="sincos",
            frozen_patch_embed=self.frozen_patch_embed,
        )
        self.projector = MocoMLP(
            self.projector_layers, self.hidden_dim, self.out_dim, dtype=self.dtype
        )

    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        """Projections `[b, out_dim]` of images `[b, s, s, 3]` (their CLS tokens)."""
        return self.projector(self.vit(images).cls, train)

    def encode(self, images: jax.Array) -> Any:
        """The ViT's output for images `[b, s, s, 3]`."""
        return self.vit(images)


class MoCoV3(nn.Module):
    """MoCo v3 pretraining. Training inputs: `{"global": [b, 2, S, S, 3]}`; outputs the
    predictions `q1, q2 [b, out_dim]` of the base encoder and the momentum encoder's
    projections `k1, k2` (no gradient) of views 1 and 2. Evaluation input: images
    `[b, S, S, 3]`; outputs the base encoder's patch `tokens [b, n, dim]` and `cls`."""

    EMA: ClassVar[tuple[tuple[str, str], ...]] = (("base", "momentum"),)
    ENCODER: ClassVar[tuple[str, ...]] = ("base", "vit")

    image_size: int = 224
    patch_size: int = 16
    dim: int = 384
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_registers: int = 0
    projector_layers: int = 3
    predictor_layers: int = 2
    hidden_dim: int = 4096
    out_dim: int = 256
    frozen_patch_embed: bool = True
    momentum: float = 0.99
    final_momentum: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: Any, train: bool = False) -> dict[str, jax.Array]:
        """Predictions and momentum projections of both views (training), else features."""
        spec = pretraining.architecture_of(self)
        encoder = lambda name: MocoEncoder(
            spec,
            self.image_size,
            self.frozen_patch_embed,
            self.projector_layers,
            self.hidden_dim,
            self.out_dim,
            dtype=self.dtype,
            name=name,
        )
        base, momentum = encoder("base"), encoder("momentum")
        predictor = MocoMLP(
            self.predictor_layers,
            self.hidden_dim,
            self.out_dim,
            last_bn=False,
            dtype=self.dtype,
            name="predictor",
        )
        if not train:
            if self.is_initializing():  # Every parameter and BatchNorm statistic.
                predictor(base(inputs, False), False)
                momentum(inputs, False)
            features = base.encode(inputs)
            return {"tokens": features.tokens, "cls": features.cls}
        views = inputs["global"]
        if views.shape[1] != 2:
            raise ValueError(
                f"MoCo v3 contrasts two views per image, got {views.shape[1]}; set "
                "data.crops.global_count = 2 and local_count = 0."
            )
        q1, q2 = (predictor(base(views[:, i], True), True) for i in range(2))
        k1, k2 = (jax.lax.stop_gradient(momentum(views[:, i], True)) for i in range(2))
        return {"q1": q1, "q2": q2, "k1": k1, "k2": k2}
