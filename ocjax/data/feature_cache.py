"""A frozen backbone's outputs, computed once per image and stored beside the dataset.

DINOSAUR and SPOT learn on the features of a backbone that never changes; with
`data.cache_features` a run computes them once per image of each split it reads (and once
per mirrored image of the training split with `data.random_flip`) and then trains and
evaluates on the stored arrays instead of running the backbone in every step:

    <data_dir>/feature_cache/<key>/features.npy   float32 [num_examples, n, f]
                                   hidden.npy     float32 [num_examples, extra + n, d]
                                   manifest.json  what the key holds, counts and shapes

(`hidden`, the sequence SPOT's fine-tuned blocks start from, only when the backbone
fine-tunes.) `key` is a hash of everything the arrays depend on (`cache_key`): the
backbone's weights as loaded, its options (feature block, final norm, fine-tuning start,
...), the compute dtype, the dataset (name, options, resolution, normalisation), the split
and whether the images are mirrored. Any change gives another directory, so a stale cache
is never read. The manifest is written last: a directory without one, or whose arrays
disagree with it, is an interrupted build and is built again. The arrays are opened as
read-only memory maps. Delete `<data_dir>/feature_cache` to clear every cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ocjax.data import pipeline

LOGGER = logging.getLogger("ocjax")
MANIFEST = "manifest.json"
Arrays = dict[str, np.ndarray]


def _leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """`(path, array)` for every leaf of nested mappings, in sorted key order."""
    if isinstance(tree, Mapping):
        for key in sorted(tree):
            yield from _leaves(tree[key], f"{prefix}/{key}")
    elif tree is not None:
        yield prefix, np.asarray(tree)


def cache_key(parts: Mapping[str, Any], weights: Any = None) -> str:
    """The cache's name: sha256 (first 20 hex digits) of `parts` (JSON-able options) and of
    the arrays of `weights` (nested mappings: names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for path, array in _leaves(weights):
        digest.update(f"{path}:{array.shape}:{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:20]


def _open(directory: Path, key: str, num_examples: int) -> tuple[Arrays | None, str]:
    """The arrays of a complete cache, else None and what is wrong ('' if there is none)."""
    if not directory.exists():
        return None, ""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        return None, f"no readable {MANIFEST} ({type(error).__name__})"
    if manifest.get("key") != key or manifest.get("num_examples") != num_examples:
        return None, f"its {MANIFEST} names another key or example count"
    arrays = {}
    for name, spec in manifest["arrays"].items():
        try:
            array = np.load(directory / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError) as error:
            return None, f"{name}.npy unreadable ({error})"
        if list(array.shape) != spec["shape"] or array.dtype.name != spec["dtype"]:
            return None, f"{name}.npy holds {array.shape} {array.dtype}, not {spec}"
        arrays[name] = array
    return arrays, ""


def _build(
    directory: Path,
    parts: Mapping[str, Any],
    key: str,
    source: Any,
    preprocess: pipeline.ScenePreprocess,
    compute: Callable[[np.ndarray], Arrays],
    flip: bool,
    batch_size: int,
) -> None:
    """Writes `compute` of every image of `source` (mirrored with `flip`), batch by batch,
    into `.npy` files in `directory`, then the manifest."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    num_examples = len(source)
    batches = pipeline.evaluation_batches(source, preprocess, batch_size=batch_size)
    arrays: Arrays = {}
    for i, batch in enumerate(pipeline.iterate(batches)):
        images = batch["image"][:, :, ::-1] if flip else batch["image"]
        outputs = compute(np.ascontiguousarray(images))
        begin = i * batch_size
        end = min(begin + batch_size, num_examples)
        for name, values in outputs.items():
            if name not in arrays:
                arrays[name] = np.lib.format.open_memmap(
                    directory / f"{name}.npy", "w+", values.dtype, (num_examples, *values.shape[1:])
                )
            arrays[name][begin:end] = values[: end - begin]
    for array in arrays.values():
        array.flush()
    manifest = {
        "key": key,
        "parts": parts,
        "num_examples": num_examples,
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in arrays.items()},
    }
    temporary = directory / (MANIFEST + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=2, default=str))
    os.replace(temporary, directory / MANIFEST)


def load(
    root: str | os.PathLike,
    parts: Mapping[str, Any],
    weights: Any,
    source: Any,
    preprocess: pipeline.ScenePreprocess,
    compute: Callable[[np.ndarray], Arrays],
    *,
    flip: bool = False,
    batch_size: int = 64,
    may_build: bool = True,
) -> Arrays:
    """The cached `compute(images)` (a dict of `[b, ...]` arrays) of every example of
    `source` (mirrored left-right with `flip`), as read-only memory maps `[len(source), ...]`.

    The cache lives in `root/feature_cache/<cache_key(parts + flip, weights)>`; it is built
    first (images from `preprocess`, `batch_size` at a time) when missing or incomplete,
    unless `may_build` is False (then that is an error).
    """
    parts = {**parts, "flip": flip}
    key = cache_key(parts, weights)
    directory = Path(root) / "feature_cache" / key
    arrays, problem = _open(directory, key, len(source))
    if arrays is not None:
        return arrays
    if problem:
        LOGGER.warning(
            "Feature cache %s is incomplete (%s: an interrupted build); building it again.",
            directory,
            problem,
        )
    if not may_build:
        raise RuntimeError(
            f"The feature cache {directory} is missing and only a single-process run builds "
            "one: run this config once in one process (or set data.cache_features=False)."
        )
    what = f"split {parts.get('split')!r}{' mirrored' if flip else ''}"
    print(
        f"ocjax: caching the frozen backbone's outputs for {len(source)} images ({what}) in "
        f"{directory} (first use only) ...",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    _build(directory, parts, key, source, preprocess, compute, flip, batch_size)
    print(f"ocjax: cached in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    arrays, problem = _open(directory, key, len(source))
    if arrays is None:
        raise RuntimeError(f"The feature cache {directory} just written cannot be read: {problem}.")
    return arrays


class CachedSource:
    """`source` whose example i also carries row i of the cached arrays (`cached`) and, for
    training with flips, of those of the mirrored image (`cached_flipped`);
    `pipeline.ScenePreprocess` hands on the ones that match its flip."""

    def __init__(self, source: Any, arrays: Arrays, flipped: Arrays | None = None):
        self.source, self.arrays, self.flipped = source, arrays, flipped

    def __len__(self) -> int:
        return len(self.source)

    def _attach(self, example: Mapping[str, Any], index: int) -> dict[str, Any]:
        out = dict(example, cached={k: v[index] for k, v in self.arrays.items()})
        if self.flipped is not None:
            out["cached_flipped"] = {k: v[index] for k, v in self.flipped.items()}
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._attach(self.source[index], index)

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        read = getattr(self.source, "__getitems__", None)  # tfds: one batched read.
        examples = read(indices) if read else [self.source[i] for i in indices]
        return [self._attach(e, i) for e, i in zip(examples, indices)]
