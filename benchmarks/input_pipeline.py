"""Input-pipeline throughput on the CLEVR-with-masks path, in images/s per CPU core.

Writes `--records` synthetic scenes in the official GZIP TFRecord format (random pixels,
rectangular objects), prepares them through the tfds builder like real data (the decode
and the 240x320 -> crop -> 128 conversion happen here, once), then times what every
training step pays: random-access read, PNG decode, two-view augmentation (crop, resize,
colour jitter, flip, normalisation) and batching, with one reader thread.

    python benchmarks/input_pipeline.py --records 512 --batch 64
"""

import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from ocjax.data import augment, load_sources, pipeline
from ocjax.data.builders import multi_object


def write_fixture(path: str, num_records: int, seed: int = 0) -> None:
    """Writes `num_records` official-format CLEVR-with-masks records with 3-10 boxes each."""
    spec = multi_object.SPECS["clevr_with_masks"]
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for _ in range(num_records):
            values = {f.name: np.zeros(f.shape) for f in spec.fields}
            values["image"] = rng.integers(0, 256, (240, 320, 3))
            masks = np.zeros((11, 240, 320), np.uint8)
            masks[0] = 255
            count = int(rng.integers(3, 11))
            for k in range(1, count + 1):
                top, left = rng.integers(0, 200), rng.integers(0, 280)
                masks[:, top : top + 40, left : left + 40] = 0
                masks[k, top : top + 40, left : left + 40] = 255
                values["visibility"][k] = 1.0
                for key, names in multi_object.CLEVR_CODE_NAMES.items():
                    values[key][k] = rng.integers(1, len(names) + 1)
            values["visibility"][0] = 1.0
            values["mask"] = masks[..., None]
            writer.write(multi_object.encode_example(spec, values))


def main() -> None:
    """Prepares the fixture and prints the steady-state images/s of one reader thread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manual = os.path.join(tmp, "manual")
        os.makedirs(manual)
        write_fixture(os.path.join(manual, "clevr_with_masks_train.tfrecords"), args.records)
        start = time.perf_counter()
        sources = load_sources(
            "clevr_with_masks",
            os.path.join(tmp, "tfds"),
            dict(
                manual_dir=manual,
                resolution=128,
                max_objects=10,
                num_train=args.records - 2,
                num_validation=1,
                num_test=1,
            ),
        )
        prepare = time.perf_counter() - start
        preprocess = pipeline.ScenePreprocess(10, "imagenet", augment.TwoViewAugment(size=128))
        batches = pipeline.training_batches(
            sources["train"], preprocess, batch_size=args.batch, seed=0
        )
        iterator = pipeline.iterate(batches, num_threads=1, prefetch=1)
        next(iterator)  # Warm-up.
        num_batches = max(2, (args.records - 2) // args.batch)
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
        seconds = time.perf_counter() - start
    images = num_batches * args.batch
    print(f"prepare (decode + crop + resize + write): {(args.records - 2) / prepare:.0f} images/s")
    print(
        f"training input (read + decode + two views + batch), 1 thread: "
        f"{images / seconds:.0f} images/s"
    )


if __name__ == "__main__":
    main()
