"""Input pipeline: random-access source -> preprocess -> shard by host -> batch (grain).

Why grain on top of tfds ArrayRecord sources rather than tf.data: every batch is a pure
function of `(seed, step)`, so resuming at step k reproduces exactly the batches an
uninterrupted run would have seen, with no iterator state to save; preprocessing is
plain numpy, so no TensorFlow runs next to JAX in the training process.
"""

import dataclasses
from typing import Any, Callable, Iterator, Mapping

import grain
import numpy as np

from ocjax.data import augment

Example = dict[str, Any]
Batch = dict[str, np.ndarray]
NORMALIZATIONS = ("signed", "imagenet", "unit")


@dataclasses.dataclass(frozen=True)
class ScenePreprocess:
    """Turns a decoded scene into fixed-shape arrays, optionally with two augmented views.

    Output: `image` float32 `[h, w, c]` (`normalization` "signed": [-1, 1]; "imagenet":
    ImageNet mean/std; "unit": [0, 1], for models that need non-negative inputs) from a uint8
    image (0..255) or a float one already in [0, 1]; `segmentation` int32 `[h, w]` (0 =
    background, k = object k); `pixel_valid` bool `[h, w]` (False on pixels the metrics
    leave out, e.g. Shapes overlaps; True everywhere for datasets without such pixels);
    per-object `shape`, `color`, `material`, `size` int32 `[max_objects]` (-1 where padded),
    `visible`, `present` bool and `position` float32 `[max_objects, 3]`; `valid` = True.
    With `views`, `image` stays uint8 and each view's parameters (crop box, jitter order
    and strengths, flip flag) are added: the train step renders the views on device
    (`TwoViewAugment.render`). With `random_flip`, an example is mirrored left-right with
    probability 1/2 (one draw from `rng`): `image`, `segmentation`, `pixel_valid` and
    `foreground` together (object attributes, `position` included, stay as they are).
    An example read with a feature cache (`ocjax.data.feature_cache.CachedSource`) hands on
    its cached arrays (`features [n, f]`, ...), those of the mirrored image where flipped.
    """

    max_objects: int
    normalization: str = "signed"
    views: augment.TwoViewAugment | None = None
    random_flip: bool = False

    def __post_init__(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"Unknown image normalization {self.normalization!r}; "
                "use 'signed' ([-1, 1]), 'imagenet' or 'unit' ([0, 1])."
            )
        if self.random_flip and self.views is not None:
            raise ValueError(
                "data.random_flip mirrors the image itself, but with data.views each view "
                "draws its own flip (data.views.flip); set data.random_flip=False."
            )

    @property
    def is_random(self) -> bool:
        """Whether the preprocessing draws random numbers (and so needs grain's `random_map`)."""
        return self.views is not None or self.random_flip

    def __call__(self, example: Mapping[str, Any], rng: np.random.Generator | None = None) -> Batch:
        """Preprocesses one decoded example; `rng` is required when `is_random`."""
        objects = example["objects"]
        num_objects = len(objects["shape"])
        if num_objects > self.max_objects:
            raise ValueError(
                f"A scene has {num_objects} objects but data.max_objects is "
                f"{self.max_objects}; raise data.max_objects."
            )
        image = np.asarray(example["image"])
        out: Batch = {"segmentation": np.asarray(example["segmentation"])[..., 0]}
        if self.views is not None:
            out.update(self.views({"image": image}, rng))
        elif self.normalization == "signed" and image.dtype == np.uint8:
            out["image"] = image.astype(np.float32) / np.float32(127.5) - 1.0
        elif self.normalization == "signed":
            out["image"] = image.astype(np.float32) * np.float32(2) - np.float32(1)
        elif self.normalization == "unit":
            out["image"] = _unit(image)
        else:
            out["image"] = augment.normalize(_unit(image))
        out["segmentation"] = out["segmentation"].astype(np.int32)
        out["pixel_valid"] = np.ones(out["segmentation"].shape, bool)
        if self.views is None and "pixel_valid" in example:
            out["pixel_valid"] = np.asarray(example["pixel_valid"], bool)
        elif self.views is None and "ignore" in example:  # COCO/VOC: overlaps, void, no masks.
            out["pixel_valid"] = np.asarray(example["ignore"])[..., 0] == 0
        if "foreground" in example:  # Part datasets: the object mask of the whole image.
            out["foreground"] = np.asarray(example["foreground"])[..., 0] > 0
        out["valid"] = np.array(True)
        out["present"] = np.arange(self.max_objects) < num_objects
        for key in ("shape", "color", "material", "size"):
            out[key] = _pad(np.asarray(objects[key], np.int32), self.max_objects, -1)
        out["visible"] = _pad(np.asarray(objects["visible"], bool), self.max_objects, False)
        out["position"] = _pad(np.asarray(objects["position"], np.float32), self.max_objects, 0.0)
        flip = bool(self.random_flip and rng.random() < 0.5)
        if flip:
            for key in PER_PIXEL & out.keys():
                out[key] = np.ascontiguousarray(out[key][:, ::-1])
        if "cached" in example:
            cached = example["cached_flipped" if flip else "cached"]
            out.update({key: np.asarray(value) for key, value in cached.items()})
        return out


PER_PIXEL = frozenset({"image", "segmentation", "pixel_valid", "foreground"})
"""The outputs of `ScenePreprocess` laid out on the image, mirrored with it."""


def _unit(image: np.ndarray) -> np.ndarray:
    """Float32 image `[h, w, c]` in [0, 1] from uint8 (divided by 255) or float values."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    return image.astype(np.float32)


def _pad(values: np.ndarray, length: int, fill: Any) -> np.ndarray:
    """Pads `values` `[n, ...]` along axis 0 to `[length, ...]` with `fill`."""
    out = np.full((length, *values.shape[1:]), fill, values.dtype)
    out[: values.shape[0]] = values
    return out


MEMORY_CACHE_BYTES = 2 * 1024**3
"""Training sources whose decoded examples fit in this many bytes are kept in memory."""


class DecodedCache:
    """A random-access source held in memory: every example read and decoded once, up front.

    Reading and decoding a record (ArrayRecord + tfds parsing, about 1.5 ms for a 32x32
    scene) costs more than preprocessing it; done once before training, it no longer
    competes with the training step for the CPU in every epoch. The arrays are read-only,
    so a preprocessing function that wrote into its input would fail loudly instead of
    corrupting later epochs.
    """

    def __init__(self, source: Any, chunk: int = 1024):
        read = getattr(source, "__getitems__", None)  # tfds: one batched read, ~2x faster.
        self._examples: list[Example] = []
        for begin in range(0, len(source), chunk):
            indices = range(begin, min(begin + chunk, len(source)))
            examples = read(list(indices)) if read else [source[i] for i in indices]
            self._examples.extend(map(_read_only, examples))

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> Example:
        return self._examples[index]


def _read_only(tree: Any) -> Any:
    """`tree` with every numpy array in it (nested dicts included) marked read-only."""
    if isinstance(tree, Mapping):
        return {key: _read_only(value) for key, value in tree.items()}
    if isinstance(tree, np.ndarray):
        tree.setflags(write=False)
    return tree


def _nbytes(tree: Any) -> int:
    """Bytes of the numpy arrays in a nested dict (memory maps stay on disk: none)."""
    if isinstance(tree, Mapping):
        return sum(_nbytes(value) for value in tree.values())
    return tree.nbytes if isinstance(tree, np.ndarray) and not isinstance(tree, np.memmap) else 0


def memory_cached(source: Any, budget_bytes: int = MEMORY_CACHE_BYTES) -> Any:
    """`source` wrapped in a `DecodedCache` when all its decoded examples (estimated from
    the first) fit in `budget_bytes`; otherwise `source` itself."""
    if len(source) == 0 or len(source) * _nbytes(source[0]) > budget_bytes:
        return source
    return DecodedCache(source)


def training_batches(
    source: Any,
    preprocess: ScenePreprocess,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    memory_cache_bytes: int = MEMORY_CACHE_BYTES,
) -> grain.MapDataset:
    """Infinite dataset, reshuffled every epoch, whose item `step` is this host's batch `step`.

    `batch_size` is the per-host batch. Global batch `step` is elements `step * G` to
    `(step + 1) * G - 1` of the shuffled stream (G = P hosts x `batch_size`); host h reads
    its h-th contiguous block of `batch_size` (see `_host_blocks`), so the global batch is
    the same for any number of hosts. Random preprocessing draws from a generator seeded by
    `seed` and the element's position in the stream, so every epoch sees new augmentations.
    Decoded examples are held in memory when they fit in `memory_cache_bytes`
    (`memory_cached`).
    """
    source = memory_cached(source, memory_cache_bytes)
    ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
    ds = ds.random_map(preprocess) if preprocess.is_random else ds.map(preprocess)
    return _host_blocks(ds, batch_size, process_index, process_count)


def evaluation_batches(
    source: Any,
    preprocess: Callable[[Example], Batch],
    *,
    batch_size: int,
    max_examples: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.MapDataset:
    """Finite dataset of `[batch_size, ...]` batches covering each example once.

    The example count is padded up to a whole number of global batches with
    zero-filled rows whose `valid` is False, so every host runs the same number of steps;
    host h reads the h-th block of `batch_size` of each global batch (see `_host_blocks`).
    """
    num_examples = len(source) if max_examples is None else min(max_examples, len(source))
    global_batch = batch_size * process_count
    num_padded = -(-num_examples // global_batch) * global_batch
    blank = {k: np.zeros_like(v) for k, v in preprocess(source[0]).items()}

    def load(index: int) -> Batch:
        return preprocess(source[index]) if index < num_examples else blank

    ds = grain.MapDataset.range(num_padded).map(load)
    return _host_blocks(ds, batch_size, process_index, process_count)


def _host_blocks(
    ds: grain.MapDataset, batch_size: int, process_index: int, process_count: int
) -> grain.MapDataset:
    """Host `process_index`'s batches `[batch_size, ...]` of `ds`: its block of every global
    batch of `process_count * batch_size` consecutive elements (only those are loaded)."""
    return ds.batch(batch_size, drop_remainder=True)[process_index::process_count]


def iterate(
    dataset: grain.MapDataset, start: int = 0, num_threads: int = 4, prefetch: int = 8
) -> Iterator[Batch]:
    """Iterates batches `start, start + 1, ...` with background threads prefetching."""
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(dataset[start:].to_iter_dataset(options))
