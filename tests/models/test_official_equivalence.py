"""ocjax's DINOSAUR and SPOT modules against PyTorch re-derivations of the official code.

The references below are written from the equations of the two releases -- DINOSAUR's
(amazon-science/object-centric-learning-framework, `ocl/`) and SPOT's (gkakogeorgiou/spot)
-- out of torch's own layers (`nn.Linear`, `nn.GRUCell`, `nn.LayerNorm`,
`nn.TransformerDecoderLayer`) and `torch.nn.init` calls, with each release's
initialisation reproduced; no official code is imported or copied. Torch draws the
weights, they are transplanted into ocjax's trees (a Flax kernel is the torch weight
transposed), and ocjax's float32 outputs and gradients (to its inputs and every parameter)
are compared with the float64 torch ones.

Tolerance of every comparison: |ours - ref| <= 1e-5 * |ref| + 1e-5 * max|ref|, per array
(relative, with an absolute floor at the array's own scale); for a parameter gradient the
floor is at least 1e-7 of the largest gradient entry of the tree (float32 round-off where
a gradient is zero in exact arithmetic, as a key bias's under the softmax).
"""

import copy
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

torch = pytest.importorskip("torch")
from torch import nn

from ocjax.losses.distillation import attention_distillation
from ocjax.models.dinosaur import (
    MLPFeatureDecoder,
    SlotHead,
    TransformerFeatureDecoder,
    patch_orders,
)

BATCH, SIDE, FEATURES, SLOT_DIM, SLOTS, HEADS, LAYERS = 2, 4, 32, 16, 4, 4, 2
PATCHES = SIDE * SIDE
TOLERANCE = 1e-5


# --- The references: the official modules re-derived in torch. ---------------------------


def _linear(scheme, fan_in, fan_out, bias=True, relu=False, gain=1.0):
    """`nn.Linear` as the release draws it, bias zeroed. `torch` (DINOSAUR's `build_mlp`,
    Slot Attention's projections): PyTorch's default weight. `xavier` (SPOT's `linear`):
    `xavier_uniform_(gain)`, or `kaiming_uniform_(relu)` before a ReLU."""
    layer = nn.Linear(fan_in, fan_out, bias=bias)
    if scheme == "xavier" and relu:
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    elif scheme == "xavier":
        nn.init.xavier_uniform_(layer.weight, gain)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def _mlp(scheme, dims, norm=False):
    """[LayerNorm,] Linear, ReLU, ..., Linear through `dims` (DINOSAUR's `build_mlp`; SPOT's
    feature MLP and slot MLP)."""
    layers = [nn.LayerNorm(dims[0])] if norm else []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        hidden = i < len(dims) - 2
        layers += [_linear(scheme, fan_in, fan_out, relu=hidden)] + ([nn.ReLU()] if hidden else [])
    return nn.Sequential(*layers)


class TorchSlotInit(nn.Module):
    """DINOSAUR's `RandomConditioning` / SPOT's `shared_gaussian` (mu + exp(log_sigma) *
    noise, both `[1, 1, d]` Xavier-uniform), or SPOT's `embedding` (`nn.Embedding`, Xavier)."""

    def __init__(self, kind, num_slots, dim):
        super().__init__()
        self.kind = kind
        if kind == "gaussian":
            self.mu = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(1, 1, dim)))
            self.log_sigma = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(1, 1, dim)))
        else:
            self.embedding = nn.Embedding(num_slots, dim)
            nn.init.xavier_uniform_(self.embedding.weight)

    def forward(self, noise):
        if self.kind == "gaussian":
            return self.mu + self.log_sigma.exp() * noise
        return self.embedding.weight.expand(len(noise), -1, -1)


class TorchSlotAttention(nn.Module):
    """Slot Attention, one head, residual LayerNorm + MLP after the GRU: DINOSAUR's
    (`ff_mlp`, PyTorch's default init) and SPOT's (`xavier`: Xavier projections, the GRU's
    input weight Xavier and recurrent weight orthogonal, zero biases; `truncate`)."""

    def __init__(self, scheme, input_dim, dim, mlp_dim, iterations=3, truncate="none"):
        super().__init__()
        self.iterations, self.truncate = iterations, truncate
        self.norm_inputs, self.norm_slots = nn.LayerNorm(input_dim), nn.LayerNorm(dim)
        self.query = _linear(scheme, dim, dim, bias=False)
        self.key = _linear(scheme, input_dim, dim, bias=False)
        self.value = _linear(scheme, input_dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        if scheme == "xavier":
            nn.init.xavier_uniform_(self.gru.weight_ih)
            nn.init.orthogonal_(self.gru.weight_hh)
            nn.init.zeros_(self.gru.bias_ih)
            nn.init.zeros_(self.gru.bias_hh)
        self.mlp = _mlp(scheme, (dim, mlp_dim, dim), norm=True)

    def forward(self, inputs, slots):
        initial, dim = slots, slots.shape[-1]
        inputs = self.norm_inputs(inputs)
        keys, values = self.key(inputs) * dim**-0.5, self.value(inputs)
        for i in range(self.iterations):
            if i == self.iterations - 1 and self.truncate != "none":
                slots = slots.detach()
                if self.truncate == "bi-level":
                    slots = slots + initial - initial.detach()
            logits = torch.einsum("bkd,bnd->bkn", self.query(self.norm_slots(slots)), keys)
            attention = logits.softmax(dim=1)
            weights = attention + 1e-8
            weights = weights / weights.sum(-1, keepdim=True)
            updates = torch.einsum("bkn,bnd->bkd", weights, values)
            slots = self.gru(updates.flatten(0, 1), slots.flatten(0, 1)).view_as(slots)
            slots = slots + self.mlp(slots)
        return slots, attention, logits


class TorchSlotHead(nn.Module):
    """LayerNorm + two-layer feature MLP, slot initialisation, Slot Attention."""

    def __init__(
        self, scheme, slot_init, mlp_out, truncate="none", features=FEATURES, dim=SLOT_DIM
    ):
        super().__init__()
        self.feature_mlp = _mlp(scheme, (features, features, mlp_out), norm=True)
        self.slot_init = TorchSlotInit(slot_init, SLOTS, dim)
        self.slot_attention = TorchSlotAttention(scheme, mlp_out, dim, 4 * dim, truncate=truncate)

    def forward(self, features, noise):
        return self.slot_attention(self.feature_mlp(features), self.slot_init(noise))


class TorchPatchDecoder(nn.Module):
    """DINOSAUR's MLP decoder: each slot broadcast to the patches plus a position embedding
    N(0, 0.02), an MLP to features and an alpha logit, alphas softmaxed over the slots."""

    def __init__(self, dim, features, hidden):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, PATCHES, dim) * 0.02)
        self.mlp = _mlp("torch", (dim, *hidden, features + 1))

    def forward(self, slots):
        b, k, d = slots.shape
        out = self.mlp(slots.reshape(b * k, 1, d) + self.pos_embed).unflatten(0, (b, k))
        alpha = out[..., -1:].softmax(dim=1)
        return (out[..., :-1] * alpha).sum(1), alpha[..., 0]


class TorchAutoregressiveDecoder(nn.Module):
    """DINOSAUR's `AutoregressivePatchDecoder` (`use_input_transform`, `decoder_cond_dim` =
    the feature width): BOS N(0, 1/f) before the detached targets shifted right, bias-free
    Xavier projections + LayerNorm of tokens and slots, `nn.TransformerDecoderLayer`s
    (pre-norm, cloned from one as `nn.TransformerDecoder` does), no final norm; masks are the
    last layer's cross-attention averaged over heads."""

    def __init__(self, slot_dim, features, layers, heads):
        super().__init__()
        self.bos = nn.Parameter(torch.randn(1, 1, features) * features**-0.5)
        self.cond = nn.Sequential(nn.Linear(slot_dim, features, bias=False), nn.LayerNorm(features))
        self.inp = nn.Sequential(nn.Linear(features, features, bias=False), nn.LayerNorm(features))
        nn.init.xavier_uniform_(self.cond[0].weight)
        nn.init.xavier_uniform_(self.inp[0].weight)
        layer = nn.TransformerDecoderLayer(
            features, heads, 4 * features, dropout=0.0, batch_first=True, norm_first=True
        )
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(layers))
        self.register_buffer("mask", torch.triu(torch.full((PATCHES, PATCHES), -torch.inf), 1))

    def forward(self, slots, targets):
        memory = self.cond(slots)
        bos = self.bos.expand(len(targets), -1, -1)
        x = self.inp(torch.cat([bos, targets[:, :-1].detach()], 1))
        cross, captured = self.layers[-1].multihead_attn, []
        hooks = [
            cross.register_forward_pre_hook(
                lambda _, args, kwargs: (args, {**kwargs, "need_weights": True}), with_kwargs=True
            ),
            cross.register_forward_hook(lambda _, args, out: captured.append(out[1])),
        ]
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=self.mask)
        for hook in hooks:
            hook.remove()
        return x, captured[0].transpose(1, 2)


class SlateAttention(nn.Module):
    """SLATE's / SPOT's multi-head attention: bias-free Xavier projections, the output's with
    gain `gain`; returns the update and the attention `[b, h, q, n]`."""

    def __init__(self, dim, heads, gain):
        super().__init__()
        self.heads = heads
        self.proj_q, self.proj_k, self.proj_v = (
            _linear("xavier", dim, dim, False) for _ in range(3)
        )
        self.proj_o = _linear("xavier", dim, dim, False, gain=gain)

    def forward(self, queries, inputs, mask=None):
        def split(x):
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        q = split(self.proj_q(queries))
        k, v = split(self.proj_k(inputs)), split(self.proj_v(inputs))
        logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
        if mask is not None:
            logits = logits.masked_fill(mask, -torch.inf)
        attention = logits.softmax(-1)
        return self.proj_o((attention @ v).transpose(1, 2).flatten(2)), attention


class SlateDecoderBlock(nn.Module):
    """SPOT's decoder block: pre-norm causal self-attention (the first block continues from
    its normalised input), cross-attention, ReLU MLP (Kaiming, then Xavier with `gain`)."""

    def __init__(self, dim, heads, gain, first):
        super().__init__()
        self.first = first
        self.norm_self, self.norm_cross, self.norm_mlp = (nn.LayerNorm(dim) for _ in range(3))
        self.self_attention = SlateAttention(dim, heads, gain)
        self.cross_attention = SlateAttention(dim, heads, gain)
        self.mlp = nn.Sequential(
            _linear("xavier", dim, 4 * dim, relu=True),
            nn.ReLU(),
            _linear("xavier", 4 * dim, dim, gain=gain),
        )

    def forward(self, x, memory, mask):
        h = self.norm_self(x)
        x = (h if self.first else x) + self.self_attention(h, h, mask)[0]
        update, attention = self.cross_attention(self.norm_cross(x), memory)
        x = x + update
        return x + self.mlp(self.norm_mlp(x)), attention


class TorchSpotDecoder(nn.Module):
    """SPOT's `forward_decoder` for one permutation: that permutation's BOS N(0, 0.02) before
    the permuted targets shifted right, `input_proj` / `slot_proj` (bias-free Xavier +
    LayerNorm), the blocks with gain (3 L)^-1/2, a final LayerNorm; the last block's
    cross-attention summed over heads, L1-normalised over the slots; the inverse permutation."""

    def __init__(self, slot_dim, features, layers, heads, num_orders):
        super().__init__()
        self.bos = nn.Parameter(nn.init.normal_(torch.zeros(num_orders, 1, 1, features), std=0.02))
        self.input_proj = nn.Sequential(
            _linear("xavier", features, features, False), nn.LayerNorm(features)
        )
        self.slot_proj = nn.Sequential(
            _linear("xavier", slot_dim, features, False), nn.LayerNorm(features)
        )
        gain = (3 * layers) ** -0.5
        self.blocks = nn.ModuleList(
            SlateDecoderBlock(features, heads, gain, i == 0) for i in range(layers)
        )
        self.norm = nn.LayerNorm(features)

    def forward(self, slots, targets, order=None, index=0):
        order = torch.arange(targets.shape[1]) if order is None else order
        x = torch.cat([self.bos[index].expand(len(targets), -1, -1), targets[:, order][:, :-1]], 1)
        x, memory = self.input_proj(x), self.slot_proj(slots)
        mask = torch.triu(torch.ones(len(order), len(order), dtype=torch.bool), 1)
        for block in self.blocks:
            x, attention = block(x, memory, mask)
        masks = attention.sum(1)
        masks = masks / masks.sum(2, keepdim=True)
        inverse = torch.argsort(order)
        return self.norm(x)[:, inverse], masks[:, inverse].transpose(1, 2)


# --- Transplanting torch parameters (or their gradients) into ocjax's trees. --------------


def _leaf(tensor, grad):
    """The tensor, or its gradient (zero where the graph never used it), as float64."""
    if grad and tensor.grad is None:
        return np.zeros(tensor.shape)
    return (tensor.grad if grad else tensor).detach().double().numpy()


def _dense(layer, grad=False):
    out = {"kernel": _leaf(layer.weight, grad).T}
    if layer.bias is not None:
        out["bias"] = _leaf(layer.bias, grad)
    return out


def _norm(layer, grad=False):
    return {"scale": _leaf(layer.weight, grad), "bias": _leaf(layer.bias, grad)}


def _linears(sequential):
    return [m for m in sequential if isinstance(m, nn.Linear)]


def _gru(cell, grad=False):
    """Flax's layout: PyTorch's b_ir + b_hr in `ir`, b_iz + b_hz in `iz` (the gradient of
    a sum is that of either term)."""
    w_i, w_h = (np.split(_leaf(w, grad), 3) for w in (cell.weight_ih, cell.weight_hh))
    b_i, b_h = (np.split(_leaf(b, grad), 3) for b in (cell.bias_ih, cell.bias_hh))
    gate = [b_i[j] if grad else b_i[j] + b_h[j] for j in range(2)]
    return {
        "ir": {"kernel": w_i[0].T, "bias": gate[0]},
        "iz": {"kernel": w_i[1].T, "bias": gate[1]},
        "in": {"kernel": w_i[2].T, "bias": b_i[2]},
        "hr": {"kernel": w_h[0].T},
        "hz": {"kernel": w_h[1].T},
        "hn": {"kernel": w_h[2].T, "bias": b_h[2]},
    }


def _slot_head_params(head, grad=False):
    mlp, sa = _linears(head.feature_mlp), head.slot_attention
    init = head.slot_init
    if init.kind == "gaussian":
        slot_init = {n: _leaf(getattr(init, n), grad).ravel() for n in ("mu", "log_sigma")}
    else:
        slot_init = {"queries": _leaf(init.embedding.weight, grad)}
    return {
        "norm_features": _norm(head.feature_mlp[0], grad),
        "feature_mlp": {"dense_1": _dense(mlp[0], grad), "dense_2": _dense(mlp[1], grad)},
        "slot_init": slot_init,
        "slot_attention": {
            "norm_inputs": _norm(sa.norm_inputs, grad),
            "norm_slots": _norm(sa.norm_slots, grad),
            "norm_mlp": _norm(sa.mlp[0], grad),
            **{name: _dense(getattr(sa, name), grad) for name in ("query", "key", "value")},
            "gru": _gru(sa.gru, grad),
            "mlp": {f"dense_{i + 1}": _dense(m, grad) for i, m in enumerate(_linears(sa.mlp))},
        },
    }


def _patch_decoder_params(decoder, grad=False):
    *hidden, output = _linears(decoder.mlp)
    return {
        "position_embedding": _leaf(decoder.pos_embed, grad)[:, None],
        **{f"dense_{i}": _dense(m, grad) for i, m in enumerate(hidden)},
        "output": _dense(output, grad),
    }


def _torch_attention(attention, grad=False):
    """`nn.MultiheadAttention`: the fused `in_proj` `[3d, d]` split into query, key, value."""
    weights = np.split(_leaf(attention.in_proj_weight, grad), 3)
    biases = np.split(_leaf(attention.in_proj_bias, grad), 3)
    names = ("query", "key", "value")
    out = {n: {"kernel": w.T, "bias": b} for n, w, b in zip(names, weights, biases)}
    return {**out, "out": _dense(attention.out_proj, grad)}


def _autoregressive_params(decoder, grad=False):
    layers = [
        {
            "norm_self": _norm(layer.norm1, grad),
            "self_attention": _torch_attention(layer.self_attn, grad),
            "norm_cross": _norm(layer.norm2, grad),
            "cross_attention": _torch_attention(layer.multihead_attn, grad),
            "norm_mlp": _norm(layer.norm3, grad),
            "mlp": {"dense_1": _dense(layer.linear1, grad), "dense_2": _dense(layer.linear2, grad)},
        }
        for layer in decoder.layers
    ]
    return {
        "bos": _leaf(decoder.bos, grad),
        "input": _dense(decoder.inp[0], grad),
        "norm_input": _norm(decoder.inp[1], grad),
        "slots": _dense(decoder.cond[0], grad),
        "norm_slots": _norm(decoder.cond[1], grad),
        # ocjax stacks the layers (they start from one draw, as PyTorch's copies).
        "layers": jax.tree.map(lambda *leaves: np.stack(leaves), *layers),
    }


def _slate_attention(attention, grad=False):
    names = {"query": "proj_q", "key": "proj_k", "value": "proj_v", "out": "proj_o"}
    return {ours: _dense(getattr(attention, theirs), grad) for ours, theirs in names.items()}


def _spot_decoder_params(decoder, grad=False):
    layers = {
        f"layer_{i}": {
            **{n: _norm(getattr(block, n), grad) for n in ("norm_self", "norm_cross", "norm_mlp")},
            "self_attention": _slate_attention(block.self_attention, grad),
            "cross_attention": _slate_attention(block.cross_attention, grad),
            "mlp": {f"dense_{i + 1}": _dense(m, grad) for i, m in enumerate(_linears(block.mlp))},
        }
        for i, block in enumerate(decoder.blocks)
    }
    return {
        "bos": _leaf(decoder.bos, grad)[:, 0],
        "input": _dense(decoder.input_proj[0], grad),
        "norm_input": _norm(decoder.input_proj[1], grad),
        "slots": _dense(decoder.slot_proj[0], grad),
        "norm_slots": _norm(decoder.slot_proj[1], grad),
        **layers,
        "norm_output": _norm(decoder.norm, grad),
    }


# --- Comparison helpers. -------------------------------------------------------------------


def _perturbed(module, seed=1):
    """The module in float64 with every parameter moved off its initial value (zero biases,
    unit LayerNorm scales), so that each one is exercised by the comparison."""
    generator = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return module


def _assert_close(ours, ref, what, floor=0.0):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    atol = max(TOLERANCE * np.max(np.abs(ref), initial=0.0), floor, 1e-12)
    np.testing.assert_allclose(ours, ref, rtol=TOLERANCE, atol=atol, err_msg=what)


def _assert_trees_close(ours, ref, what):
    flat_ours = dict(jax.tree_util.tree_flatten_with_path(ours)[0])
    flat_ref = dict(jax.tree_util.tree_flatten_with_path(ref)[0])
    assert set(flat_ours) == set(flat_ref), f"{what}: parameter trees differ"
    floor = 1e-2 * TOLERANCE * max(np.max(np.abs(v)) for v in flat_ref.values())
    for path, value in flat_ref.items():
        _assert_close(flat_ours[path], value, f"{what} {jax.tree_util.keystr(path)}", floor)


def _f32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _compare(apply, params, grads, outputs, inputs, constants=()):
    """Checks `apply(params, *inputs, *constants)` -> {name: array} and the gradients of
    sum(output * random weights) to the params and `inputs` against torch's: `outputs`
    {name: tensor} computed from `inputs` (leaf tensors with grad) and `constants`;
    `grads()` gives torch's parameter gradients in ocjax's tree once backward ran."""
    rng = np.random.default_rng(2)
    weights = {n: rng.normal(size=o.shape) for n, o in outputs.items()}
    sum(torch.sum(o * torch.from_numpy(weights[n])) for n, o in outputs.items()).backward()

    def loss(p, *xs):
        out = apply(p, *xs, *[jnp.asarray(c.numpy(), jnp.float32) for c in constants])
        return sum(jnp.sum(out[n] * weights[n]) for n in weights), out

    arguments = [_f32(params)] + [_f32(x.detach().numpy()) for x in inputs]
    grad_fn = jax.value_and_grad(loss, argnums=tuple(range(len(arguments))), has_aux=True)
    (_, out), (param_grads, *input_grads) = grad_fn(*arguments)
    for name, ref in outputs.items():
        _assert_close(out[name], ref.detach().numpy(), name)
    _assert_trees_close(param_grads, grads(), "parameter gradient")
    for i, (x, g) in enumerate(zip(inputs, input_grads)):
        _assert_close(g, x.grad.numpy(), f"gradient to input {i}")


def _randn(*shape, grad=False):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=grad)


# --- Equivalence of the forward passes and gradients. --------------------------------------


@pytest.mark.parametrize("side", [4, 5, 14])
def test_patch_orders_are_spots_permutations(side):
    """SPOT's nine permutations, built as its `SPOT.__init__` lists them: raster, the seven
    other row / column scans from a corner (outer loop, inner loop), and the reversed
    clockwise spiral taken from the grid turned a quarter counter-clockwise."""
    grid = np.arange(side * side).reshape(side, side)
    forward, backward = range(side), range(side - 1, -1, -1)

    def columns(cols, rows):
        return [grid[r, c] for c in cols for r in rows]

    def rows(rows_, cols):
        return [grid[r, c] for r in rows_ for c in cols]

    turned, spiral = np.rot90(grid), []
    while turned.size:  # Peel the top row, turn the rest a quarter counter-clockwise.
        spiral.extend(turned[0])
        turned = np.rot90(turned[1:])
    expected = [
        grid.ravel(),
        columns(forward, forward),
        columns(backward, forward),
        rows(forward, backward),
        columns(backward, backward),
        rows(backward, backward),
        columns(forward, backward),
        rows(backward, forward),
        spiral[::-1],
    ]
    np.testing.assert_array_equal(patch_orders(side), np.asarray(expected))


def test_mlp_decoder_matches_dinosaur_patch_decoder():
    torch.manual_seed(0)
    hidden = (24, 24)
    ref = _perturbed(TorchPatchDecoder(SLOT_DIM, FEATURES, hidden))
    slots = _randn(BATCH, SLOTS, SLOT_DIM, grad=True)
    reconstruction, masks = ref(slots)
    model = MLPFeatureDecoder(PATCHES, FEATURES, hidden, kernel_init="torch")

    def apply(params, s):
        r, m = model.apply({"params": params}, s)
        return {"reconstruction": r, "masks": m}

    _compare(
        apply,
        _patch_decoder_params(ref),
        lambda: _patch_decoder_params(ref, grad=True),
        {"reconstruction": reconstruction, "masks": masks},
        [slots],
    )


def test_transformer_decoder_matches_dinosaur_autoregressive_decoder():
    """BOS and teacher-forcing shift, projections, `nn.TransformerDecoderLayer`s, the last
    layer's head-averaged cross-attention as masks. DINOSAUR detaches the targets, so the
    gradient is checked to the slots and the parameters."""
    torch.manual_seed(0)
    ref = _perturbed(TorchAutoregressiveDecoder(SLOT_DIM, FEATURES, LAYERS, HEADS))
    slots, targets = _randn(BATCH, SLOTS, SLOT_DIM, grad=True), _randn(BATCH, PATCHES, FEATURES)
    out, masks = ref(slots, targets)
    model = TransformerFeatureDecoder(
        LAYERS, HEADS, FEATURES, 4 * FEATURES, positions=False, style="dinosaur"
    )

    def apply(params, s, t):
        o, m = model.apply({"params": params}, s, t)
        return {"reconstruction": o, "masks": m}

    _compare(
        apply,
        _autoregressive_params(ref),
        lambda: _autoregressive_params(ref, grad=True),
        {"reconstruction": out, "masks": masks},
        [slots],
        [targets],
    )


@pytest.mark.parametrize("index", [0, 2, 5, 8])
def test_transformer_decoder_matches_spot_forward_decoder(index):
    torch.manual_seed(0)
    orders = patch_orders(SIDE)
    ref = _perturbed(TorchSpotDecoder(SLOT_DIM, FEATURES, LAYERS, HEADS, len(orders)))
    slots, targets = _randn(BATCH, SLOTS, SLOT_DIM, grad=True), _randn(BATCH, PATCHES, FEATURES)
    out, masks = ref(slots, targets, torch.from_numpy(orders[index]).long(), index)
    model = TransformerFeatureDecoder(
        LAYERS, HEADS, FEATURES, 4 * FEATURES, num_orders=len(orders), positions=False, style="spot"
    )

    def apply(params, s, t):
        o, m = model.apply({"params": params}, s, t, jnp.asarray(orders[index]), index)
        return {"reconstruction": o, "masks": m}

    _compare(
        apply,
        _spot_decoder_params(ref),
        lambda: _spot_decoder_params(ref, grad=True),
        {"reconstruction": out, "masks": masks},
        [slots],
        [targets],
    )


SLOT_ATTENTION_CASES = {
    # DINOSAUR: LayerNorm + MLP f -> f -> slot_dim, RandomConditioning, Slot Attention.
    "dinosaur": ("torch", "gaussian", "none"),
    # SPOT: LayerNorm + MLP f -> f -> f; teacher (shared Gaussian) and student (embedding).
    "spot-gaussian-none": ("xavier", "gaussian", "none"),
    "spot-gaussian-bi-level": ("xavier", "gaussian", "bi-level"),
    "spot-embedding-none": ("xavier", "embedding", "none"),
    "spot-embedding-bi-level": ("xavier", "embedding", "bi-level"),
    "spot-embedding-fixed-point": ("xavier", "embedding", "fixed-point"),
}


def _slot_head(scheme, slot_init, truncate):
    spot = scheme == "xavier"
    return SlotHead(
        num_slots=SLOTS,
        slot_dim=SLOT_DIM,
        mlp_hidden_dim=4 * SLOT_DIM,
        feature_mlp_hidden_dim=FEATURES if spot else None,
        feature_mlp_dim=FEATURES if spot else None,
        kernel_init=scheme,
        slot_init=slot_init,
        truncate=truncate,
        attention_iteration="last",
        decoder="mlp",
        decoder_hidden_dims=(8,),
    )


@pytest.mark.parametrize("case", list(SLOT_ATTENTION_CASES))
def test_slot_attention_matches_release(case, monkeypatch):
    """Last-iteration attention and logits, slots, and gradients to the features and every
    parameter (the slot initialisation's are where the truncations differ) of `SlotHead`
    up to its decoder. The Gaussian noise is torch's, handed to ocjax's `GaussianQueries`."""
    scheme, slot_init, truncate = SLOT_ATTENTION_CASES[case]
    torch.manual_seed(0)
    mlp_out = FEATURES if scheme == "xavier" else SLOT_DIM
    ref = _perturbed(TorchSlotHead(scheme, slot_init, mlp_out, truncate))
    features = _randn(BATCH, PATCHES, FEATURES, grad=True)
    noise = _randn(BATCH, SLOTS, SLOT_DIM)
    slots, attention, logits = ref(features, noise)
    if truncate != "none":  # The truncation changes the gradient the comparison checks.
        untruncated = copy.deepcopy(ref)
        untruncated.slot_attention.truncate = "none"

        def init_grads(module):
            params = list(module.slot_init.parameters())
            grads = torch.autograd.grad(module(features, noise)[0].sum(), params, allow_unused=True)
            return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

        pairs = zip(init_grads(ref), init_grads(untruncated))
        assert not all(torch.allclose(a, b, rtol=1e-2) for a, b in pairs)

    normal = jax.random.normal
    monkeypatch.setattr(
        jax.random,
        "normal",
        lambda key, shape, dtype=jnp.float32: (
            jnp.asarray(noise.numpy(), dtype)
            if tuple(shape) == tuple(noise.shape)
            else normal(key, shape, dtype)
        ),
    )
    model = _slot_head(scheme, slot_init, truncate)
    rngs = {"params": jax.random.key(0), "slots": jax.random.key(1)}
    shapes = jax.eval_shape(lambda: model.init(rngs, jnp.zeros(features.shape)))
    decoder = shapes["params"]["decoder"]

    def apply(params, x):
        params = {**params, "decoder": jax.tree.map(lambda s: jnp.zeros(s.shape), decoder)}
        out = model.apply({"params": params}, x, rngs={"slots": jax.random.key(3)})
        return {k: out[k] for k in ("slots", "attention", "attention_logits")}

    _compare(
        apply,
        _slot_head_params(ref),
        lambda: _slot_head_params(ref, grad=True),
        {"slots": slots, "attention": attention, "attention_logits": logits},
        [features],
    )


def _spot_distillation(student_logits, teacher_masks):
    """SPOT's second stage: the teacher masks' argmax over the slots as labels; student and
    teacher argmax masks matched by the Hungarian algorithm on 1 - IoU (a teacher slot with
    no patch costs 1e3); the student's logits reordered to the teacher's slots; mean
    cross-entropy over images and patches."""
    k = student_logits.shape[1]
    labels = teacher_masks.argmax(1)
    teacher = nn.functional.one_hot(labels, k).transpose(1, 2).double()
    student = nn.functional.one_hot(student_logits.argmax(1), k).transpose(1, 2).double()
    intersection = torch.einsum("btn,bsn->bts", teacher, student)
    union = teacher.sum(-1)[:, :, None] + student.sum(-1)[:, None, :] - intersection
    cost = 1 - intersection / union.clamp(min=1e-6)
    cost[teacher.sum(-1) == 0] = 1e3
    match = [linear_sum_assignment(c)[1] for c in cost.numpy()]
    reordered = torch.stack([logits[m] for logits, m in zip(student_logits, match)])
    return nn.functional.cross_entropy(reordered, labels), cost.numpy()


def test_attention_distillation_matches_spot():
    """Loss and gradient to the student's logits; the teacher of the first image leaves one
    slot empty, and each image's optimal matching is unique (else either is SPOT's)."""
    rng = np.random.default_rng(0)
    b = 3
    teacher = torch.from_numpy(rng.dirichlet(np.ones(SLOTS), size=(b, PATCHES))).transpose(1, 2)
    teacher[0, 2] = 0.0
    teacher = teacher / teacher.sum(1, keepdim=True)
    shuffle = np.stack([rng.permutation(SLOTS) for _ in range(b)])
    student = torch.log(teacher[np.arange(b)[:, None], shuffle] + 0.05) + torch.from_numpy(
        rng.normal(0.0, 1.0, (b, SLOTS, PATCHES))
    )
    student.requires_grad_(True)
    loss, cost = _spot_distillation(student, teacher)
    for c in cost:
        matchings = itertools.permutations(range(SLOTS))
        totals = sorted(sum(c[t, s] for t, s in enumerate(m)) for m in matchings)
        assert totals[1] - totals[0] > 1e-6, "ambiguous matching: change the seed"
    loss.backward()
    value, grad = jax.value_and_grad(attention_distillation)(
        jnp.asarray(student.detach().numpy(), jnp.float32),
        jnp.asarray(teacher.numpy(), jnp.float32),
    )
    _assert_close(value, loss.item(), "loss")
    _assert_close(grad, student.grad.numpy(), "gradient to the student's logits")


# --- Initial-weight distributions. ----------------------------------------------------------

INIT_FEATURES, INIT_SLOT_DIM, DRAWS = 64, 32, 10
INIT_CASES = {
    "dinosaur-mlp": ("torch", "gaussian", "mlp", "dinosaur"),
    "dinosaur-transformer": ("torch", "gaussian", "transformer", "dinosaur"),
    "spot-teacher": ("xavier", "gaussian", "transformer", "spot"),
    "spot-student": ("xavier", "embedding", "transformer", "spot"),
}


def _official_init(case, seed):
    """The release's freshly initialised modules, in ocjax's tree."""
    scheme, slot_init, decoder, style = INIT_CASES[case]
    torch.manual_seed(seed)
    f, d = INIT_FEATURES, INIT_SLOT_DIM
    head = TorchSlotHead(scheme, slot_init, f if scheme == "xavier" else d, features=f, dim=d)
    if decoder == "mlp":
        params = _patch_decoder_params(TorchPatchDecoder(d, f, (64, 64)))
    elif style == "dinosaur":
        params = _autoregressive_params(TorchAutoregressiveDecoder(d, f, LAYERS, HEADS))
    else:
        params = _spot_decoder_params(TorchSpotDecoder(d, f, LAYERS, HEADS, 9))
    return {**_slot_head_params(head), "decoder": params}


def _ocjax_init(case):
    """`DRAWS` initialisations of the `SlotHead` configured as the release, one per key."""
    scheme, slot_init, decoder, style = INIT_CASES[case]
    spot = scheme == "xavier"
    model = SlotHead(
        num_slots=SLOTS,
        num_iterations=1,  # The parameters are the same; the init runs the model once.
        slot_dim=INIT_SLOT_DIM,
        mlp_hidden_dim=4 * INIT_SLOT_DIM,
        feature_mlp_hidden_dim=INIT_FEATURES if spot else None,
        feature_mlp_dim=INIT_FEATURES if spot else None,
        kernel_init=scheme,
        slot_init=slot_init,
        truncate="bi-level" if slot_init == "embedding" else "none",
        decoder=decoder,
        decoder_hidden_dims=(64, 64),
        decoder_layers=LAYERS,
        decoder_heads=HEADS,
        decoder_dim=INIT_FEATURES,
        decoder_positions=False,
        decoder_style=style,
        orders="spot" if spot else "standard",
    )
    features = jnp.zeros((1, PATCHES, INIT_FEATURES))

    def init(key):
        return model.init({"params": key, "slots": key}, features)["params"]

    # One compiled init called per key (under `jax.vmap` the `xavier` scheme's init never
    # finished on the 2-core CPU, jaxlib 0.10.2), unoptimised: it compiles in half the time.
    keys = jax.random.split(jax.random.key(0), DRAWS)
    init = jax.jit(init).lower(keys[0]).compile({"xla_backend_optimization_level": 0})
    draws = [jax.device_get(init(key)) for key in keys]
    return jax.tree.map(lambda *x: np.stack(x), *draws)


def _agree(ours, theirs, z=5.0):
    """Whether the per-draw means and standard deviations of the entries `[draws, ...]` of
    two initialisers agree within `z` standard errors (estimated from the draws' spread).

    A sqrt(2) scale error is caught: for the smallest layer here (32 uniform entries) one
    draw's standard deviation varies by ~8% (sqrt(0.8 / (4 * 32))), the mean of ten by
    ~2.5%, so 5 standard errors of the difference are ~0.21 sigma against the 0.41 sigma a
    sqrt(2) error makes; `test_initialisation_matches_release` checks it on every layer."""
    ours, theirs = (np.asarray(x, np.float64).reshape(DRAWS, -1) for x in (ours, theirs))
    for stat in (np.mean, np.std):
        a, b = stat(ours, axis=1), stat(theirs, axis=1)
        error = np.sqrt(a.var(ddof=1) / DRAWS + b.var(ddof=1) / DRAWS)
        if abs(a.mean() - b.mean()) > z * error + 1e-6 * max(abs(b.mean()), 1e-3):
            return False
    return True


@pytest.mark.parametrize("case", list(INIT_CASES))
def test_initialisation_matches_release(case):
    ours = _ocjax_init(case)
    draws = [_official_init(case, seed) for seed in range(DRAWS)]
    theirs = jax.tree.map(lambda *x: np.stack(x), *draws)
    flat_ours = dict(jax.tree_util.tree_flatten_with_path(ours)[0])
    flat_theirs = dict(jax.tree_util.tree_flatten_with_path(theirs)[0])
    assert set(flat_ours) == set(flat_theirs), "parameter trees differ"
    mismatched = []
    for path, official in flat_theirs.items():
        name = jax.tree_util.keystr(path)
        assert flat_ours[path].shape == official.shape, name
        if not _agree(flat_ours[path], official):
            mismatched.append(name)
        if np.any(official != 0):  # The check has the power to see a sqrt(2) scale error.
            assert not _agree(flat_ours[path], np.sqrt(2.0) * official), name
    assert not mismatched, f"initial distributions differ from the release: {mismatched}"
    if case == "dinosaur-transformer":  # PyTorch's decoder copies one layer: equal starts.
        for stacked in (theirs["decoder"]["layers"], ours["decoder"]["layers"]):
            for leaf in jax.tree.leaves(stacked):  # [draws, layers, ...]
                np.testing.assert_array_equal(leaf[:, 0], leaf[:, -1])
