"""Released DINO / DINOv2 weights load into `DinoViT` and give timm's features.

The references are PyTorch and timm themselves: random timm models saved with `torch.save`
(the official repositories' parameter names) and as `.safetensors` (timm's names), read by
ocjax without torch, converted, and run in JAX next to timm's forward pass.
"""

import os
import shutil

import jax
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F

from ocjax.models import checkpoints
from ocjax.models.dino_vit import ARCHITECTURES, DinoViT

# ocjax architecture -> timm model name.
TIMM = {
    "dino_vits16": "vit_small_patch16_224",
    "dino_vits8": "vit_small_patch8_224",
    "dino_vitb16": "vit_base_patch16_224",
    "dino_vitb8": "vit_base_patch8_224",
    "dinov2_vits14": "vit_small_patch14_dinov2",
    "dinov2_vitb14": "vit_base_patch14_dinov2",
    "dinov2_vits14_reg4": "vit_small_patch14_reg4_dinov2",
    "dinov2_vitb14_reg4": "vit_base_patch14_reg4_dinov2",
}


@pytest.fixture(autouse=True)
def _delete_weight_files(tmp_path):
    """Each test's weight files (up to 1.3 GB for a ViT-B) go once it ends."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def _timm_model(architecture: str, grid: int, seed: int = 0) -> torch.nn.Module:
    """A random timm ViT for `grid x grid` patches, LayerScale gammas drawn around 1 (timm
    starts them at 1e-5, which would make every block nearly the identity)."""
    torch.manual_seed(seed)
    size = grid * ARCHITECTURES[architecture].patch_size
    model = timm.create_model(TIMM[architecture], pretrained=False, img_size=size, num_classes=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5)
            elif name in ("cls_token", "reg_token", "pos_embed"):
                p.normal_(0, 0.5)
    return model.eval()


def _official_layout(model: torch.nn.Module, architecture: str) -> dict[str, torch.Tensor]:
    """The state dict as the official DINO / DINOv2 code names and lays it out: registers as
    `register_tokens`, the CLS position in `pos_embed`, a `mask_token` (DINOv2)."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if ARCHITECTURES[architecture].num_registers:
        cls_position = torch.randn_like(state["cls_token"])
        state["cls_token"] = state["cls_token"] - cls_position
        state["pos_embed"] = torch.cat([cls_position, state["pos_embed"]], dim=1)
        state["register_tokens"] = state.pop("reg_token")
    if architecture.startswith("dinov2"):
        state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return state


def _timm_tokens(model, images: np.ndarray, blocks: int | None, norm: bool) -> np.ndarray:
    """Patch tokens of timm's forward pass after `blocks` blocks (all if None)."""
    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    with torch.no_grad():
        x = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        for block in model.blocks[:blocks]:
            x = block(x)
        if norm:
            x = model.norm(x)
    return x[:, model.num_prefix_tokens :].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(TIMM))
def test_converted_weights_give_timms_patch_features(architecture, tmp_path):
    grid = 4
    model = _timm_model(architecture, grid)
    size = (grid * ARCHITECTURES[architecture].patch_size,) * 2
    images = np.random.default_rng(1).normal(size=(2, *size, 3)).astype(np.float32)
    reference = _timm_tokens(model, images, None, True)
    apply = jax.jit(DinoViT(architecture, image_size=size).apply)  # One compilation.
    # The official repositories' layout (torch.save) and timm's (.safetensors).
    torch.save(_official_layout(model, architecture), tmp_path / "weights.pth")
    safetensors.torch.save_file(model.state_dict(), tmp_path / "weights.safetensors")
    for layout in ("pth", "safetensors"):
        variables = checkpoints.load_pretrained(
            str(tmp_path / f"weights.{layout}"), architecture, size, cache_dir=str(tmp_path)
        )
        ours = apply(variables, images).tokens
        np.testing.assert_allclose(np.asarray(ours), reference, rtol=1e-5, atol=1e-5)


def test_intermediate_block_features_skip_the_final_norm(tmp_path):
    architecture, grid = "dinov2_vits14_reg4", 3
    model = _timm_model(architecture, grid, seed=3)
    path = str(tmp_path / "w.safetensors")
    safetensors.torch.save_file(model.state_dict(), path)
    size = (42, 42)
    images = np.random.default_rng(2).normal(size=(2, *size, 3)).astype(np.float32)
    for block, norm in ((-1, False), (5, False), (5, True)):
        depth = block % 12 + 1
        variables = checkpoints.load_pretrained(
            path, architecture, size, depth=depth, cache_dir=str(tmp_path)
        )
        module = DinoViT(architecture, image_size=size, feature_block=block, final_norm=norm)
        ours = module.apply(variables, images).tokens
        reference = _timm_tokens(model, images, depth, norm)
        np.testing.assert_allclose(np.asarray(ours), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize(("old", "new"), [((7, 7), (4, 4)), ((4, 4), (9, 6)), ((37, 37), (16, 16))])
def test_position_resampling_equals_torch_bicubic(old, new, antialias):
    pos = np.random.default_rng(0).normal(size=(1, old[0] * old[1], 8)).astype(np.float32)
    ours = checkpoints.resample_positions(pos, old, new, antialias)
    grid = torch.from_numpy(pos.reshape(1, *old, 8).transpose(0, 3, 1, 2)).double()
    reference = F.interpolate(
        grid, size=new, mode="bicubic", align_corners=False, antialias=antialias
    )
    reference = reference.numpy().transpose(0, 2, 3, 1).reshape(1, -1, 8)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)


def test_position_resampling_matches_timms_loader(tmp_path):
    # A checkpoint saved at a 4x4 grid loaded for a 6x6 grid, as timm resamples it.
    model = _timm_model("dino_vits16", 4)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    variables = checkpoints.load_pretrained(
        str(tmp_path / "w.pth"), "dino_vits16", (96, 96), cache_dir=str(tmp_path)
    )
    reference = timm.layers.resample_abs_pos_embed(
        model.pos_embed.detach(), new_size=(6, 6), num_prefix_tokens=1
    )
    np.testing.assert_allclose(
        variables["params"]["pos_embed"], reference[:, 1:].numpy(), rtol=1e-5, atol=1e-6
    )


def test_torch_files_are_read_without_torch(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "a": torch.randn(3, 5),
        "transposed": base.t(),  # Non-contiguous view.
        "slice": base[1:, 2:5],  # View with an offset into a shared storage.
        "half": torch.randn(4).half(),
        "bf16": torch.randn(4).bfloat16(),
        "long": torch.arange(5),
        "param": torch.nn.Parameter(torch.randn(2, 2)),
    }
    torch.save(state, tmp_path / "s.pth")
    ours = checkpoints.read_torch(str(tmp_path / "s.pth"))
    assert sorted(ours) == sorted(state)
    for key, value in state.items():
        reference = value.detach().float().numpy() if key == "bf16" else value.detach().numpy()
        np.testing.assert_array_equal(np.asarray(ours[key], reference.dtype), reference)


def test_training_checkpoint_is_unwrapped_to_its_teacher(tmp_path):
    teacher = {"module.backbone.cls_token": torch.ones(1, 1, 4), "module.head.w": torch.ones(2)}
    torch.save({"student": {}, "teacher": teacher, "epoch": 3}, tmp_path / "full.pth")
    state = checkpoints.read_state_dict(str(tmp_path / "full.pth"))
    assert sorted(state) == ["cls_token", "head.w"]


def test_pickled_code_is_refused(tmp_path):
    torch.save({"w": torch.ones(2), "f": os.getcwd}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="refusing to load"):
        checkpoints.read_torch(str(tmp_path / "evil.pth"))


def test_wrong_architecture_names_the_parameter_and_the_files_look(tmp_path):
    model = _timm_model("dino_vits16", 2)
    torch.save(model.state_dict(), tmp_path / "s16.pth")
    with pytest.raises(ValueError, match=r"'patch_embed.proj.weight'.*matches \['dino_vits16'\]"):
        checkpoints.load_pretrained(
            str(tmp_path / "s16.pth"), "dino_vitb16", (32, 32), cache_dir=str(tmp_path)
        )
    state = checkpoints.read_state_dict(str(tmp_path / "s16.pth"))
    with pytest.raises(ValueError, match=r"'patch_embed.proj.weight' has shape.*needs"):
        checkpoints.convert(state, "dinov2_vits14", (28, 28))
    dinov2 = {k: v.numpy() for k, v in _timm_model("dinov2_vits14", 2).state_dict().items()}
    del dinov2["blocks.3.ls1.gamma"]
    with pytest.raises(ValueError, match=r"no 'blocks.3.ls1.gamma'.*\['dinov2_vits14'\]"):
        checkpoints.convert(dinov2, "dinov2_vits14", (28, 28))


def test_missing_file_says_where_it_looked_and_where_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"w\.pth.*dl\.fbaipublicfiles\.com/dino/"):
        checkpoints.load_pretrained(str(tmp_path / "w.pth"), "dino_vitb16", (224, 224))


def test_image_size_not_divisible_by_the_patch_is_named():
    with pytest.raises(ValueError, match="not divisible by the patch size 14"):
        jax.eval_shape(
            lambda: DinoViT("dinov2_vits14", image_size=(64, 64)).init(
                jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32)
            )
        )


def test_conversion_is_cached(tmp_path, monkeypatch):
    model = _timm_model("dino_vits16", 2)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    first = checkpoints.load_pretrained(
        str(tmp_path / "w.pth"), "dino_vits16", (32, 32), cache_dir=str(tmp_path / "c")
    )
    assert len(os.listdir(tmp_path / "c")) == 1
    monkeypatch.setattr(checkpoints, "convert", lambda *a, **k: pytest.fail("converted again"))
    second = checkpoints.load_pretrained(
        str(tmp_path / "w.pth"), "dino_vits16", (32, 32), cache_dir=str(tmp_path / "c")
    )
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(a, b)
