"""Released MoCo v3 and MAE encoders load into `DinoViT` and give timm's features.

As in test_pretrained.py, the references are PyTorch and timm themselves: timm ViTs built as
the official code builds them (moco-v3's `vits.py` arguments; timm's `vit_*_patch16_224.mae`,
MAE's encoder), random weights, the official fixed 2-D sin-cos positions (transcribed below),
saved in the released layouts (MoCo v3's training checkpoint with both encoders, heads,
predictor, optimiser and scaler; its DeiT conversion; MAE's `{"model": ...}`, with and
without the decoder) and in timm's (`.safetensors`), read by ocjax without torch and run
next to timm's forward pass, at the pretraining resolution and at one that resamples the
positions (as timm's loader does). Depth is cut to `DEPTH` blocks to stay fast: every block
is converted alike, and the layout is otherwise the release's.
"""

import functools
import shutil
import warnings

import jax
import numpy as np
import pytest
import safetensors.numpy
import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from ocjax.models import checkpoints
from ocjax.models.dino_vit import ARCHITECTURES, DinoViT

DEPTH = 2
PRETRAINING = (224, 224)
RESAMPLED = (160, 192)  # Grid 10 x 12 from the released 14 x 14: shrinks, non-square.
# moco-v3 vits.py: vit_small / vit_base (MoCo v3 is not in timm). Its ViT-S has 12 heads.
MOCOV3 = {"mocov3_vits16": (384, 12), "mocov3_vitb16": (768, 12)}  # (embed_dim, num_heads)
# timm's models of MAE's releases (their `.mae` tags); timm's cfg gives the heads.
MAE = {"mae_vitb16": "vit_base_patch16_224.mae", "mae_vitl16": "vit_large_patch16_224.mae"}
MLP_DIM = 64  # MoCo v3's projector / predictor width (4096 in the release; ignored anyway).


@pytest.fixture(autouse=True)
def _delete_weight_files(tmp_path):
    """Each test's weight files go once it ends."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def _mocov3_sincos(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """`pos_embed [1, 1 + h * w, dim]` as moco-v3's `build_2d_sincos_position_embedding`."""
    h, w = grid
    grid_w = torch.arange(w, dtype=torch.float32)
    grid_h = torch.arange(h, dtype=torch.float32)
    grid_w, grid_h = torch.meshgrid(grid_w, grid_h, indexing="ij")
    pos_dim = dim // 4
    omega = torch.arange(pos_dim, dtype=torch.float32) / pos_dim
    omega = 1.0 / (10000.0**omega)
    out_w = torch.einsum("m,d->md", [grid_w.flatten(), omega])
    out_h = torch.einsum("m,d->md", [grid_h.flatten(), omega])
    pos_emb = torch.cat(
        [torch.sin(out_w), torch.cos(out_w), torch.sin(out_h), torch.cos(out_h)], dim=1
    )[None, :, :]
    pe_token = torch.zeros([1, 1, dim], dtype=torch.float32)
    return torch.cat([pe_token, pos_emb], dim=1)


def _mae_sincos(grid_size: int, dim: int) -> torch.Tensor:
    """`pos_embed [1, 1 + g * g, dim]` as MAE's `get_2d_sincos_pos_embed(cls_token=True)`."""

    def one_d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(embed_dim // 2, dtype=np.float32)
        omega /= embed_dim / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
    emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


def _build(architecture: str, img_size: tuple[int, int], depth: int = DEPTH) -> torch.nn.Module:
    """The timm ViT the official code builds for `architecture` (head removed)."""
    if architecture in MAE:
        return timm.create_model(
            MAE[architecture], pretrained=False, depth=depth, img_size=img_size
        )
    dim, heads = MOCOV3[architecture]
    return VisionTransformer(
        img_size=img_size,
        patch_size=16,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4,
        qkv_bias=True,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
        num_classes=0,
    )


def _timm_model(architecture: str, seed: int, depth: int = DEPTH) -> torch.nn.Module:
    """A random `_build` at the pretraining resolution with the release's fixed positions;
    biases and norms drawn too (timm starts them at 0 and 1)."""
    torch.manual_seed(seed)
    model = _build(architecture, PRETRAINING, depth)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name == "cls_token":
                p.normal_(0, 0.5)
        grid, dim = (14, 14), model.embed_dim
        table = _mae_sincos(14, dim) if architecture in MAE else _mocov3_sincos(grid, dim)
        model.pos_embed.copy_(table)
    return model.eval()


def _mlp(num_layers: int, input_dim: int, mlp_dim: int, output_dim: int) -> torch.nn.Module:
    """moco-v3 builder.py `_build_mlp`: the projector (`head`) and predictor."""
    layers = []
    for i in range(num_layers):
        dim1 = input_dim if i == 0 else mlp_dim
        dim2 = output_dim if i == num_layers - 1 else mlp_dim
        layers.append(torch.nn.Linear(dim1, dim2, bias=False))
        if i < num_layers - 1:
            layers += [torch.nn.BatchNorm1d(dim2), torch.nn.ReLU(inplace=True)]
        else:
            layers.append(torch.nn.BatchNorm1d(dim2, affine=False))
    return torch.nn.Sequential(*layers)


def _save_mocov3_checkpoint(base: torch.nn.Module, momentum: torch.nn.Module, path) -> None:
    """moco-v3 main_moco.py's `save_checkpoint`: the DistributedDataParallel-wrapped MoCo's
    state dict (`module.base_encoder.`, `module.momentum_encoder.`, their `head` projector
    MLPs, `module.predictor.`) with the epoch, arch, AdamW state and GradScaler state."""
    state = {}
    for prefix, encoder in (("base_encoder.", base), ("momentum_encoder.", momentum)):
        state.update({prefix + k: v for k, v in encoder.state_dict().items()})
        head = _mlp(3, encoder.embed_dim, MLP_DIM, 256)
        state.update({f"{prefix}head.{k}": v for k, v in head.state_dict().items()})
    predictor = _mlp(2, 256, MLP_DIM, 256)
    state.update({f"predictor.{k}": v for k, v in predictor.state_dict().items()})
    optimizer = torch.optim.AdamW(predictor.parameters(), lr=1.5e-4, weight_decay=0.1)
    predictor(torch.randn(4, 256)).sum().backward()
    optimizer.step()
    scaler = {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 0,
    }
    torch.save(
        {
            "epoch": 300,
            "arch": "vit_small" if base.embed_dim == 384 else "vit_base",
            "state_dict": {"module." + k: v for k, v in state.items()},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler,
        },
        path,
    )


def _save_layouts(architecture: str, model: torch.nn.Module, tmp_path) -> list[str]:
    """The files of `model`'s weights, as released and as timm publishes them."""
    encoder = model.state_dict()
    paths = []
    if architecture in MOCOV3:
        # The pretraining checkpoint, with a momentum encoder of other random values.
        momentum = _timm_model(architecture, seed=99)
        _save_mocov3_checkpoint(model, momentum, tmp_path / "vit-300ep.pth.tar")
        # convert_to_deit.py's output: the base encoder without its head, under `model`.
        torch.save({"model": encoder}, tmp_path / "deit.pth")
        paths += [tmp_path / "vit-300ep.pth.tar", tmp_path / "deit.pth"]
    else:
        torch.save({"model": encoder}, tmp_path / "mae_pretrain.pth")
        # mae_visualize_*.pth: the decoder and mask token too (one decoder block, small).
        dim, decoder = model.embed_dim, 512
        visualize = dict(encoder)
        visualize.update(
            mask_token=torch.randn(1, 1, decoder),
            decoder_pos_embed=torch.randn(1, 197, decoder),
            **{
                "decoder_embed.weight": torch.randn(decoder, dim),
                "decoder_blocks.0.norm1.weight": torch.randn(decoder),
                "decoder_blocks.0.attn.qkv.weight": torch.randn(3 * decoder, decoder),
                "decoder_norm.weight": torch.randn(decoder),
                "decoder_pred.weight": torch.randn(16 * 16 * 3, decoder),
            },
        )
        torch.save({"model": visualize}, tmp_path / "mae_visualize.pth")
        paths += [tmp_path / "mae_pretrain.pth", tmp_path / "mae_visualize.pth"]
    safetensors.numpy.save_file(
        {k: v.numpy() for k, v in encoder.items()}, str(tmp_path / "model.safetensors")
    )
    return [str(p) for p in paths + [tmp_path / "model.safetensors"]]


def _timm_at(architecture: str, model: torch.nn.Module, size: tuple[int, int]) -> torch.nn.Module:
    """`model`'s weights in the same ViT built for `size`, loaded as timm loads them
    (`checkpoint_filter_fn` resamples the positions)."""
    if size == PRETRAINING:
        return model
    other = _build(architecture, size)
    other.load_state_dict(checkpoint_filter_fn(model.state_dict(), other))
    return other.eval()


def _timm_features(model, images: np.ndarray, norm: bool) -> tuple[np.ndarray, np.ndarray]:
    """timm's CLS `[b, d]` and patch tokens `[b, n, d]`, with or without the final norm."""
    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    with torch.no_grad():
        if norm:
            x = model.forward_features(x)
        else:
            x = model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(x))))
    return x[:, 0].numpy(), x[:, model.num_prefix_tokens :].numpy()


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference of two arrays of one shape (`[...]`)."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(MOCOV3) + sorted(MAE))
def test_released_and_timm_layouts_give_timms_features(architecture, tmp_path):
    model = _timm_model(architecture, seed=0)
    paths = _save_layouts(architecture, model, tmp_path)
    rng = np.random.default_rng(1)
    for size in (PRETRAINING, RESAMPLED):
        reference = _timm_at(architecture, model, size)
        images = rng.normal(size=(2, *size, 3)).astype(np.float32)
        for norm in (True, False):
            module = DinoViT(
                architecture, image_size=size, feature_block=DEPTH - 1, final_norm=norm
            )
            apply = jax.jit(module.apply)
            cls, tokens = _timm_features(reference, images, norm)
            for path in paths:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # The positions are the release's.
                    variables = checkpoints.load_pretrained(
                        path, architecture, size, depth=DEPTH, cache_dir=str(tmp_path / "c")
                    )
                params = dict(variables["params"])
                if not norm:
                    params.pop("norm")
                out = apply({"params": params}, images)
                where = f"{path.rsplit('/', 1)[-1]} at {size}, final_norm={norm}"
                assert out.tokens.shape == tokens.shape, where
                assert _max_abs(out.tokens, tokens) <= 1e-5, where
                assert _max_abs(out.cls, cls) <= 1e-5, where


def test_mocov3_momentum_encoder_and_heads_are_ignored(tmp_path):
    base = _timm_model("mocov3_vits16", seed=0)
    momentum = _timm_model("mocov3_vits16", seed=1)
    path = str(tmp_path / "vit-s-300ep.pth.tar")
    _save_mocov3_checkpoint(base, momentum, path)
    state = checkpoints.read_state_dict(path)
    encoder = {k: v.numpy() for k, v in base.state_dict().items()}
    # The base encoder's parameters and its projector head; no momentum encoder, predictor.
    assert sorted(k for k in state if not k.startswith("head.")) == sorted(encoder)
    assert {k.split(".")[1] for k in state if k.startswith("head.")} == {
        "0",
        "1",
        "3",
        "4",
        "6",
        "7",
    }
    for key, value in encoder.items():
        np.testing.assert_array_equal(state[key], value)
    assert (
        _max_abs(state["blocks.0.attn.qkv.weight"], momentum.blocks[0].attn.qkv.weight.detach())
        > 0.1
    )
    # The converted tree holds the encoder only; it equals that of the bare encoder.
    converted = checkpoints.convert(state, "mocov3_vits16", PRETRAINING, depth=DEPTH)
    bare = checkpoints.convert(encoder, "mocov3_vits16", PRETRAINING, depth=DEPTH)
    assert sorted(converted["params"]) == [
        "blocks_0",
        "blocks_1",
        "cls_token",
        "norm",
        "patch_embed",
        "pos_embed",
    ]
    for a, b in zip(jax.tree.leaves(converted), jax.tree.leaves(bare)):
        np.testing.assert_array_equal(a, b)


def test_mocov3_vits16_is_not_dinos_vits16(tmp_path):
    # Same shapes, 12 heads instead of 6: loading MoCo v3's ViT-S as DINO's warns and gives
    # other features, so the comparison above would catch a wrong number of heads.
    model = _timm_model("mocov3_vits16", seed=0)
    path = str(tmp_path / "model.safetensors")
    safetensors.numpy.save_file({k: v.numpy() for k, v in model.state_dict().items()}, path)
    with pytest.warns(
        UserWarning,
        match=r"dino_vits16 was released with learned positions, but the file's are fixed "
        r"2-D sin-cos.*12 heads",
    ):
        variables = checkpoints.load_pretrained(
            path, "dino_vits16", PRETRAINING, depth=DEPTH, cache_dir=str(tmp_path)
        )
    images = np.random.default_rng(1).normal(size=(1, *PRETRAINING, 3)).astype(np.float32)
    six_heads = DinoViT("dino_vits16", image_size=PRETRAINING, feature_block=DEPTH - 1)
    _, tokens = _timm_features(model, images, True)
    assert _max_abs(six_heads.apply(variables, images).tokens, tokens) > 1e-2
    # And DINO's learned positions loaded as MoCo v3 warn the other way.
    dino = {k: v.numpy() for k, v in model.state_dict().items()}
    dino["pos_embed"] = (
        np.random.default_rng(2).normal(0, 0.02, dino["pos_embed"].shape).astype(np.float32)
    )
    with pytest.warns(
        UserWarning,
        match=r"mocov3_vits16 was released with fixed 2-D sin-cos positions, but the "
        r"file's are learned",
    ):
        checkpoints.convert(dino, "mocov3_vits16", PRETRAINING, depth=DEPTH)


def test_wrong_architecture_names_the_problem_and_the_fix(tmp_path):
    # A full-depth MoCo v3 ViT-S checkpoint given as the ViT-B.
    torch.manual_seed(0)
    model = _build("mocov3_vits16", PRETRAINING, depth=12)
    with torch.no_grad():
        model.pos_embed.copy_(_mocov3_sincos((14, 14), 384))
    path = str(tmp_path / "vit-s-300ep.pth.tar")
    _save_mocov3_checkpoint(model, model, path)
    with pytest.raises(ValueError) as error:
        checkpoints.load_pretrained(path, "mocov3_vitb16", PRETRAINING, cache_dir=str(tmp_path))
    message = str(error.value)
    problem = (
        "'patch_embed.proj.weight' has shape (384, 3, 16, 16), but mocov3_vitb16 needs "
        "(768, 3, 16, 16)"
    )
    looks = (
        "dim 384, 12 blocks, patch 16, 0 registers, LayerScale no, fixed 2-D sin-cos "
        "positions; matches ['mocov3_vits16']"
    )
    assert problem in message and looks in message, message
    assert "Load it as the architecture it matches (model.backbone.architecture)" in message
    assert ARCHITECTURES["mocov3_vitb16"].url in message
    # MAE's ViT-B as the ViT-L: the first mismatch is named the same way.
    state = {k: v.numpy() for k, v in _timm_model("mae_vitb16", seed=0).state_dict().items()}
    with pytest.raises(
        ValueError,
        match=r"'patch_embed.proj.weight' has shape \(768, 3, 16, 16\), but mae_vitl16 needs",
    ):
        checkpoints.convert(state, "mae_vitl16", PRETRAINING, depth=DEPTH)


def test_new_architectures_are_the_official_ones():
    # moco-v3 vits.py and MAE's models_mae.py / timm's `.mae` models.
    expected = {
        "mocov3_vits16": (384, 12, 12, 16),
        "mocov3_vitb16": (768, 12, 12, 16),
        "mae_vitb16": (768, 12, 12, 16),
        "mae_vitl16": (1024, 24, 16, 16),
    }
    for name, shape in expected.items():
        spec = ARCHITECTURES[name]
        assert (spec.dim, spec.depth, spec.num_heads, spec.patch_size) == shape, name
        assert spec.positions == "sincos" and spec.mlp_ratio == 4.0 and not spec.layer_scale
    for name, timm_name in MAE.items():
        model = timm.create_model(timm_name, pretrained=False, depth=1)
        assert model.blocks[0].attn.num_heads == ARCHITECTURES[name].num_heads
        assert model.pretrained_cfg["url"] == ARCHITECTURES[name].url
    base = "https://dl.fbaipublicfiles.com/moco-v3/"
    assert ARCHITECTURES["mocov3_vits16"].url == base + "vit-s-300ep/vit-s-300ep.pth.tar"
    assert ARCHITECTURES["mocov3_vitb16"].url == base + "vit-b-300ep/vit-b-300ep.pth.tar"
