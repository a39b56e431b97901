"""The tfds feature schema every scene dataset shares, so `ScenePreprocess` can read any of them."""

import numpy as np
import tensorflow_datasets as tfds


def int_vector() -> tfds.features.Tensor:
    """A variable-length int32 vector `[num_objects]`."""
    return tfds.features.Tensor(shape=(None,), dtype=np.int32)


def scene_features(
    image: tfds.features.FeatureConnector,
    segmentation: tfds.features.FeatureConnector,
    objects: dict[str, tfds.features.FeatureConnector] | None = None,
    **extra: tfds.features.FeatureConnector,
) -> tfds.features.FeaturesDict:
    """`index`, `image`, `segmentation`, the common `objects` fields and dataset extras.

    Every dataset stores per object `shape`, `color`, `material`, `size` (int32, -1 where a
    dataset has no such attribute), `visible` (bool) and `position` (float32 `[n, 3]`);
    `objects` adds dataset-specific per-object fields, `extra` top-level ones.
    """
    common = {
        "shape": int_vector(),
        "color": int_vector(),
        "material": int_vector(),
        "size": int_vector(),
        "visible": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
        "position": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
    }
    return tfds.features.FeaturesDict(
        {
            "index": np.int64,
            "image": image,
            "segmentation": segmentation,
            "objects": tfds.features.FeaturesDict({**common, **(objects or {})}),
            **extra,
        }
    )


def planar_example(
    index: int,
    scene: dict[str, np.ndarray],
    *,
    color: np.ndarray | None = None,
    visible: np.ndarray | None = None,
    **objects: np.ndarray,
) -> dict:
    """A tfds example of a 2-D scene (`image`, `segmentation` `[h, w]`, `shape` `[n]`,
    `position` `[n, 2]` x, y): position (x, y, 0), `material` and `size` -1, `color` and
    `visible` as given (default -1 and all True), plus dataset-specific `objects`."""
    n = len(scene["shape"])
    unset = np.full(n, -1, np.int32)
    return {
        "index": index,
        "image": scene["image"],
        "segmentation": scene["segmentation"][..., None],
        "objects": {
            "shape": scene["shape"],
            "color": unset if color is None else color,
            "material": unset,
            "size": unset,
            "visible": np.ones(n, bool) if visible is None else visible,
            "position": np.concatenate([scene["position"], np.zeros((n, 1), np.float32)], -1),
            **objects,
        },
    }


def known_config(builder: type, config: tfds.core.BuilderConfig) -> tfds.core.BuilderConfig:
    """`config`, or the equal config `builder` registers under the same name.

    tfds refuses a custom config that shares its name with a registered one, so a run with
    a dataset's default options must hand tfds the registered object.
    """
    for registered in builder.BUILDER_CONFIGS:
        if registered.name == config.name:
            return registered
    return config
