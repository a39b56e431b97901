"""Global + object representation model of Baldassarre & Azizpour (2022), seed 004.

ViT patch tokens -> object function (Slot Attention or Cross Attention on query tokens)
-> object tokens `s_i` and projections `p_i`; avg(S) -> global representation `r` ->
projection `p^G`. The global-only (SimCLR) baseline reads `r` from the ViT's CLS token.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ocjax.models.cross_attention import CrossAttention
from ocjax.models.queries import QUERY_INITS
from ocjax.models.slot_attention import SlotAttention
from ocjax.models.vit import ViT

Dtype = Any
OBJECT_FUNCTIONS = ("slot_attention", "cross_attention", "none")


class ProjectionHead(nn.Module):
    """Two-layer GELU MLP used as a projection head (discarded after training)."""

    hidden_dim: int
    out_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps `[..., d]` to `[..., out_dim]`."""
        x = nn.gelu(nn.Dense(self.hidden_dim, dtype=self.dtype, name="dense_1")(x))
        return nn.Dense(self.out_dim, dtype=self.dtype, name="dense_2")(x)


class ObjectContrastiveModel(nn.Module):
    """Images `[b, h, w, 3]` to object tokens, attention maps and global/object projections."""

    patch_size: int = 4
    dim: int = 256
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int = 512
    object_function: str = "slot_attention"
    num_queries: int = 11
    query_init: str = "learned"
    query_components: int = 4
    kmeans_iterations: int = 20
    slot_iterations: int = 1
    cross_layers: int = 2
    global_dim: int = 256
    projection_dim: int = 128
    dtype: Dtype = jnp.float32

    def _check(self) -> None:
        """Raises ValueError for an unknown object function or query initialiser."""
        if self.object_function not in OBJECT_FUNCTIONS:
            raise ValueError(
                f"Unknown model.object_function {self.object_function!r}; use one "
                f"of {OBJECT_FUNCTIONS}."
            )
        if self.query_init not in QUERY_INITS:
            raise ValueError(
                f"Unknown model.query_init {self.query_init!r}; use one of {sorted(QUERY_INITS)}."
            )

    def _queries(self, batch: int, tokens: jax.Array) -> jax.Array:
        """Query tokens `[b, num_queries, dim]` from the configured initialiser."""
        cls = QUERY_INITS[self.query_init]
        if self.query_init == "kmeans":
            module = cls(self.num_queries, self.kmeans_iterations, dtype=self.dtype, name="queries")
        elif self.query_init == "mixture":
            module = cls(
                self.query_components, self.num_queries, self.dim, dtype=self.dtype, name="queries"
            )
        else:
            module = cls(self.num_queries, self.dim, dtype=self.dtype, name="queries")
        return module(batch, tokens)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        """`train` is unused. Returns `objects [b, k, dim]`, `object_projections [b, k, dim]`, `attention [b, k, n]`
        (first iteration / layer), `global [b, global_dim]` and `global_projection
        [b, projection_dim]`; the global-only model returns only the last two."""
        self._check()
        backbone = ViT(
            patch_size=self.patch_size,
            dim=self.dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            use_cls_token=self.object_function == "none",
            dtype=self.dtype,
            name="backbone",
        )(images)
        global_head = nn.Dense(self.global_dim, dtype=self.dtype, name="global")
        global_projection = ProjectionHead(
            self.mlp_dim, self.projection_dim, dtype=self.dtype, name="global_projection"
        )
        if self.object_function == "none":
            r = global_head(backbone.cls)
            return {
                "global": r.astype(jnp.float32),
                "global_projection": global_projection(r).astype(jnp.float32),
            }
        tokens = backbone.tokens
        queries = self._queries(tokens.shape[0], tokens)
        if self.object_function == "slot_attention":
            objects, attention = SlotAttention(
                num_iterations=self.slot_iterations,
                mlp_hidden_dim=self.mlp_dim,
                dtype=self.dtype,
                name="slot_attention",
            )(queries, tokens)
        else:
            objects, attention = CrossAttention(
                num_layers=self.cross_layers,
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                dtype=self.dtype,
                name="cross_attention",
            )(queries, tokens)
        projections = ProjectionHead(
            self.mlp_dim, self.dim, dtype=self.dtype, name="object_projection"
        )(objects)
        r = global_head(jnp.mean(objects, axis=1))
        return {
            "objects": objects.astype(jnp.float32),
            "object_projections": projections.astype(jnp.float32),
            "attention": attention.astype(jnp.float32),
            "global": r.astype(jnp.float32),
            "global_projection": global_projection(r).astype(jnp.float32),
        }
