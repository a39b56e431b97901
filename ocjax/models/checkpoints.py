"""Released ViT weights (DINO, DINOv2, MoCo v3, MAE) to `DinoViT` Flax params, without PyTorch.

Reads the two file layouts the weights are published in — a PyTorch object as saved by
`torch.save` (`.pth`, `.pt`, `.pth.tar`: the zip format of PyTorch >= 1.6; DINO's full
training checkpoints with `teacher`/`student` entries, MoCo v3's with the
`module.base_encoder.` / `module.momentum_encoder.` encoders, MAE's `model` entry) and
timm's `.safetensors` — with a restricted unpickler and numpy, so a JAX user needs no
`torch`. `convert` maps timm's and the official repositories' parameter names onto
`ocjax.models.dino_vit.DinoViT`, folds the CLS token's position into the CLS token, and
resamples the patch positions to the input's grid (`resample_positions`, PyTorch's bicubic
interpolation; MoCo v3's and MAE's fixed sin-cos tables too, as timm's loader does).
`load_pretrained` does all of it once per file and image size and caches the result as `.npz`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from ocjax.models.dino_vit import ARCHITECTURES, Architecture

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class _StorageType:
    """Stands for `torch.<Name>Storage` inside a pickle."""

    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *unused) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2` in numpy: a strided view copied to its own array."""
    del unused
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data, *unused) -> np.ndarray:
    """`torch._utils._rebuild_parameter`: a parameter is its data."""
    del unused
    return data


class _Unpickler(pickle.Unpickler):
    """Unpickles a `torch.save` state dict from its zip archive, allowing only tensors,
    storages and containers (no arbitrary code)."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive, self._prefix = archive, prefix
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if (module, name) in (("torch", "Size"), ("builtins", "set")):
            return tuple if name == "Size" else set
        raise pickle.UnpicklingError(
            f"The checkpoint pickles {module}.{name}, which a weights file does not need; "
            "refusing to load it (save the state dict alone: torch.save(model.state_dict()))."
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage_type, key, _, _ = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"Unknown persistent id {kind!r} in the checkpoint.")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


def read_torch(path: str) -> dict[str, Any]:
    """The object `torch.save` wrote to `path` (zip format), tensors as numpy arrays."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a zip-format PyTorch file (PyTorch >= 1.6 writes those). Re-save "
            "it with a recent torch: torch.save(torch.load(path), path)."
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not pickles:
            raise ValueError(f"{path} is a zip file but has no data.pkl: not a torch.save file.")
        prefix = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as f:
            return _Unpickler(f, archive, prefix).load()


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Tensors of a `.safetensors` file (8-byte header size, JSON header, raw data)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"]).copy()
    return tensors


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Parameter arrays by name from a `.pth`/`.pt`/`.pth.tar` or `.safetensors` file.

    Training checkpoints are unwrapped: DINO's `teacher` (or MAE's `model`, MoCo v3's
    `state_dict`) entry is taken and the `module.` and `backbone.` prefixes are dropped; of
    MoCo's two encoders the `base_encoder.` one is kept (what MoCo v3's linear probe reads;
    the `momentum_encoder.` and `predictor.` are dropped, its `head.` MLP is ignored later).
    """
    if path.endswith(".safetensors"):
        state = read_safetensors(path)
    else:
        state = read_torch(path)
        for key in ("teacher", "model", "state_dict"):
            if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping):
        raise TypeError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    state = {
        re.sub(r"^(module\.)?(backbone\.)?", "", k): np.asarray(v)
        for k, v in state.items()
        if isinstance(v, np.ndarray)
    }
    base = "base_encoder."
    if any(k.startswith(base) for k in state):  # MoCo: the online encoder, not the EMA one.
        state = {k[len(base) :]: v for k, v in state.items() if k.startswith(base)}
    return state


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter `a`."""
    x = np.abs(x)
    return np.where(
        x <= 1,
        ((a + 2) * x - (a + 3)) * x * x + 1,
        np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0),
    )


def bicubic_matrix(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """`[out, in]` weights of PyTorch's 1-D bicubic resize (`align_corners=False`).

    Without `antialias`: the kernel with a = -0.75 at 4 taps, indices clamped to the
    border (`F.interpolate(mode="bicubic")`). With it: PIL's filter (a = -0.5), widened by
    the scale when shrinking, weights normalised (`antialias=True`).
    """
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        if antialias:
            support_scale = max(scale, 1.0)
            center = (i + 0.5) * scale
            lo = max(int(center - 2 * support_scale + 0.5), 0)
            hi = min(int(center + 2 * support_scale + 0.5), in_size)
            taps = np.arange(lo, hi)
            w = _cubic((taps - center + 0.5) / support_scale, -0.5)
            weights[i, taps] = w / w.sum()
        else:
            x = (i + 0.5) * scale - 0.5
            base = int(np.floor(x))
            for k in range(-1, 3):
                weights[i, min(max(base + k, 0), in_size - 1)] += _cubic(x - (base + k), -0.75)
    return weights


def resample_positions(
    pos: np.ndarray, old_grid: tuple[int, int], new_grid: tuple[int, int], antialias: bool
) -> np.ndarray:
    """Patch position embeddings `[1, gh*gw, d]` bicubically resized to `new_grid` (float64)."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    grid = pos.reshape(old_grid[0], old_grid[1], -1).astype(np.float64)
    rows = bicubic_matrix(old_grid[0], new_grid[0], antialias)
    cols = bicubic_matrix(old_grid[1], new_grid[1], antialias)
    out = np.einsum("ih,hwd,jw->ijd", rows, grid, cols)
    return out.reshape(1, new_grid[0] * new_grid[1], -1).astype(pos.dtype)


_POSITION_WORDS = {"learned": "learned", "sincos": "fixed 2-D sin-cos", None: "no"}


def _square_grid(n: int) -> tuple[int, int] | None:
    side = math.isqrt(n)
    return (side, side) if side * side == n else None


def _split_positions(
    pos: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray, tuple[int, int]] | None:
    """A `pos_embed [1, n, d]` as (CLS position `[1, 1, d]` or None, patch positions
    `[1, gh * gw, d]`, `(gh, gw)`), or None if `n` is neither a square nor one plus one."""
    n = pos.shape[1]
    if _square_grid(n - 1) is not None:  # CLS position first (timm, DINO, MoCo v3, MAE).
        return pos[:, :1], pos[:, 1:], _square_grid(n - 1)
    if _square_grid(n) is not None:  # Patches only (timm's register models).
        return None, pos, _square_grid(n)
    return None


def _positions_kind(patches: np.ndarray, tolerance: float = 0.02) -> str:
    """`"sincos"` if the patch positions `[1, n, d]` are a fixed 2-D sine-cosine table (MoCo
    v3, MAE: each half of the channels is `[sin(a_k), cos(a_k)]`, so its first and second
    quarters satisfy sin^2 + cos^2 = 1 within `tolerance`, loose enough for bf16), else
    `"learned"`."""
    d = patches.shape[-1]
    if d % 4 or patches.size == 0:
        return "learned"
    x = np.asarray(patches, np.float64).reshape(-1, 2, 2, d // 4)
    radius = (x**2).sum(axis=2)  # [n, 2 halves, d / 4]
    return "sincos" if np.abs(radius - 1).max() < tolerance else "learned"


def describe(state: Mapping[str, np.ndarray]) -> str:
    """What a state dict looks like: width, depth, patch, registers, LayerScale, the kind of
    positional embedding, and the registered architectures it matches."""
    if "patch_embed.proj.weight" not in state:
        return "not a ViT (no patch_embed.proj.weight)"
    dim, _, patch, _ = state["patch_embed.proj.weight"].shape
    depth = 1 + max(
        (int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1
    )
    registers = next((state[k].shape[1] for k in ("reg_token", "register_tokens") if k in state), 0)
    layer_scale = any(k.endswith("ls1.gamma") for k in state)
    split = _split_positions(np.asarray(state["pos_embed"])) if "pos_embed" in state else None
    positions = None if split is None else _positions_kind(split[1])
    shaped = [
        name
        for name, a in ARCHITECTURES.items()
        if (a.dim, a.depth, a.patch_size, a.num_registers, a.layer_scale)
        == (dim, depth, patch, registers, layer_scale)
    ]
    # The heads are not in the file: the positions tell DINO's ViT-S (6 heads, learned
    # positions) from MoCo v3's (12, sin-cos). Shape matches alone if that leaves none.
    matches = [name for name in shaped if ARCHITECTURES[name].positions == positions] or shaped
    return (
        f"dim {dim}, {depth} blocks, patch {patch}, {registers} registers, "
        f"LayerScale {'yes' if layer_scale else 'no'}, {_POSITION_WORDS[positions]} positions; "
        f"matches {matches or 'no known ViT'}"
    )


def _mismatch(problem: str, state: Mapping[str, np.ndarray], architecture: str) -> ValueError:
    """The error for a file that is not `architecture`: the problem, what the file looks
    like, and the two ways out."""
    return ValueError(
        f"{problem} The file looks like: {describe(state)}. Load it as the architecture it "
        f"matches (model.backbone.architecture), or use the {architecture} weights "
        f"({ARCHITECTURES[architecture].url})."
    )


def convert(
    state: Mapping[str, np.ndarray],
    architecture: str,
    image_size: tuple[int, int],
    depth: int | None = None,
    antialias: bool = True,
) -> dict[str, Any]:
    """`DinoViT` params (`{"params": ...}` tree) from a timm or official state dict.

    `depth` keeps blocks `0..depth-1` only (for a module that stops at an earlier
    block; default all). Positions are resampled to `image_size`'s grid with
    `resample_positions` (`antialias` as timm's loader; MoCo v3's and MAE's fixed sin-cos
    tables too, not recomputed for the new grid). Raises ValueError naming the first
    missing or mis-shaped parameter, what the file looks like and the fix; warns if the
    file's positions (learned or sin-cos) are not those `architecture` was released with.
    """
    spec: Architecture = ARCHITECTURES[architecture]
    depth = spec.depth if depth is None else depth
    p = spec.patch_size
    grid = (image_size[0] // p, image_size[1] // p)

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in state:
            raise _mismatch(
                f"The checkpoint has no {name!r} for {architecture} (expected shape {shape}).",
                state,
                architecture,
            )
        value = np.asarray(state[name])
        if value.shape != shape:
            raise _mismatch(
                f"Parameter {name!r} has shape {value.shape}, but {architecture} needs {shape}.",
                state,
                architecture,
            )
        return value.astype(np.float32)

    d, m = spec.dim, spec.mlp_dim
    params: dict[str, Any] = {
        "patch_embed": {
            "kernel": get("patch_embed.proj.weight", (d, 3, p, p)).transpose(2, 3, 1, 0),
            "bias": get("patch_embed.proj.bias", (d,)),
        }
    }
    cls = get("cls_token", (1, 1, d))
    if "pos_embed" not in state:
        get("pos_embed", (1, -1, d))
    pos = np.asarray(state["pos_embed"], np.float32)
    n = pos.shape[1]
    split = _split_positions(pos)
    if split is None:
        raise _mismatch(
            f"pos_embed has {n} positions, neither a square grid nor one plus a square grid.",
            state,
            architecture,
        )
    cls_position, pos, old = split
    if cls_position is not None:  # Fold the CLS token's position into the CLS token.
        cls = cls + cls_position
    if pos.shape[-1] != d:
        get("pos_embed", (1, n, d))
    kind = _positions_kind(pos)
    if kind != spec.positions:
        # Not an error: a ViT trained elsewhere may pair these positions with these heads.
        warnings.warn(
            f"{architecture} was released with {_POSITION_WORDS[spec.positions]} positions, "
            f"but the file's are {_POSITION_WORDS[kind]}. The number of attention heads is not "
            f"in the file, so the features are right only if it was trained with "
            f"{architecture}'s {spec.num_heads}; if it is a release of another architecture, "
            f"load it as that (MoCo v3's ViT-S has 12 heads, DINO's 6). The file looks like: "
            f"{describe(state)}.",
            stacklevel=2,
        )
    params["cls_token"] = cls
    params["pos_embed"] = resample_positions(pos, old, grid, antialias)
    if spec.num_registers:
        name = "reg_token" if "reg_token" in state else "register_tokens"
        params["reg_token"] = get(name, (1, spec.num_registers, d))
    for i in range(depth):
        b = f"blocks.{i}."

        def dense(name: str, fan_in: int, fan_out: int, b: str = b) -> dict[str, np.ndarray]:
            return {
                "kernel": get(b + name + ".weight", (fan_out, fan_in)).T,
                "bias": get(b + name + ".bias", (fan_out,)),
            }

        def norm(name: str, b: str = b) -> dict[str, np.ndarray]:
            return {"scale": get(b + name + ".weight", (d,)), "bias": get(b + name + ".bias", (d,))}

        block = {
            "norm1": norm("norm1"),
            "attn": {"qkv": dense("attn.qkv", d, 3 * d), "proj": dense("attn.proj", d, d)},
            "norm2": norm("norm2"),
            "fc1": dense("mlp.fc1", d, m),
            "fc2": dense("mlp.fc2", m, d),
        }
        if spec.layer_scale:
            block["ls1"] = {"gamma": get(b + "ls1.gamma", (d,))}
            block["ls2"] = {"gamma": get(b + "ls2.gamma", (d,))}
        params[f"blocks_{i}"] = block
    params["norm"] = {"scale": get("norm.weight", (d,)), "bias": get("norm.bias", (d,))}
    return {"params": params}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = np.asarray(v)
    return out


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def load_pretrained(
    path: str,
    architecture: str,
    image_size: tuple[int, int],
    *,
    depth: int | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """`DinoViT` variables from the weights file `path`, converted once and cached.

    The cache (`cache_dir`, default `$OCJAX_CACHE` or `~/.cache/ocjax`) holds one `.npz` per
    file content, architecture, image size and depth. A missing file raises
    FileNotFoundError saying where ocjax looked and where the weights are published.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Unknown ViT architecture {architecture!r}; use one of {sorted(ARCHITECTURES)}."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No weights file at {os.path.abspath(path)} (model.backbone.checkpoint). Download "
            f"the {architecture} weights from {ARCHITECTURES[architecture].url} (or timm's "
            "model.safetensors of the same model) and point the config at the file."
        )
    cache_dir = cache_dir or os.environ.get(
        "OCJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ocjax")
    )
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    tag = f"{architecture}_{image_size[0]}x{image_size[1]}_d{depth}_{digest.hexdigest()[:16]}"
    cached = os.path.join(cache_dir, f"{tag}.npz")
    if os.path.exists(cached):
        with np.load(cached) as data:
            return _unflatten(dict(data))
    variables = convert(read_state_dict(path), architecture, tuple(image_size), depth=depth)
    os.makedirs(cache_dir, exist_ok=True)
    partial = cached + ".partial.npz"
    np.savez(partial, **_flatten(variables))
    os.replace(partial, cached)
    return variables
