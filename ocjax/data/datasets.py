"""Dataset registry: each entry prepares (if needed) and opens the random-access splits."""

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from ocjax.data.builders import (
    clevr,
    coco,
    coco_panoptic,
    cub,
    deepfashion,
    imagenet,
    multi_object,
    preparing,
    voc,
)
from ocjax.data.builders.clevr_like import ClevrLike, ClevrLikeConfig
from ocjax.data.builders.features import known_config
from ocjax.data.builders.parts_like import PartsLike, PartsLikeConfig
from ocjax.data.builders.shapes import Shapes, ShapesConfig
from ocjax.data.builders.sprites_like import SpritesLike, SpritesLikeConfig
from ocjax.data.builders.tetrominoes_like import TetrominoesLike, TetrominoesLikeConfig
from ocjax.data.generators import clevr_like, figures, tetrominoes

DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


class DatasetError(RuntimeError):
    """A dataset is missing, unreadable or corrupt; the message says how to fix it."""


def resolve_data_dir(data_dir: str | None) -> str:
    """Returns `data_dir`, else `$OCJAX_DATA_DIR`, else `~/tensorflow_datasets`, expanded."""
    path = data_dir or os.environ.get("OCJAX_DATA_DIR") or DEFAULT_DATA_DIR
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not (os.path.isdir(path) and os.access(path, os.R_OK | os.W_OK)):
        raise DatasetError(
            f"Data directory {path} is not a readable and writable directory. Fix its "
            "permissions or point --config.data.data_dir (or $OCJAX_DATA_DIR) elsewhere."
        )
    return path


def clevr_like_sources(
    data_dir: str,
    *,
    resolution: int,
    max_objects: int,
    min_objects: int = 3,
    num_train: int = 10_000,
    num_validation: int = 1_000,
    num_test: int = 1_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Renders the CLEVR-like scenes on first use, then opens their splits."""
    clevr_like.check_options(resolution, min_objects, max_objects)
    config = ClevrLikeConfig.make(
        resolution, min_objects, max_objects, num_train, num_validation, num_test, seed
    )
    return _prepare(
        lambda: ClevrLike(
            config=known_config(ClevrLike, config), data_dir=data_dir, file_format="array_record"
        ),
        "CLEVR-like",
        os.path.join(data_dir, "clevr_like", config.name),
    )


def shapes_sources(
    data_dir: str,
    *,
    resolution: int,
    max_objects: int,
    variant: str = "4shapes",
    num_train: int = 50_000,
    num_validation: int = 10_000,
    num_test: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Renders the Shapes images of `variant` on first use (4Shapes: 50k/10k/10k), then opens them."""
    config = ShapesConfig.make(variant, resolution, num_train, num_validation, num_test, seed)
    num_objects = len(config.render_options["shape_ids"])
    if num_objects > max_objects:
        raise ValueError(
            f"Shapes variant {variant!r} draws {num_objects} objects but data.max_objects is "
            f"{max_objects}; set data.max_objects to at least {num_objects}."
        )
    return _prepare(
        lambda: Shapes(
            config=known_config(Shapes, config), data_dir=data_dir, file_format="array_record"
        ),
        "Shapes",
        os.path.join(data_dir, "shapes", config.name),
    )


def tetrominoes_like_sources(
    data_dir: str,
    *,
    resolution: int,
    max_objects: int,
    num_train: int = 60_000,
    num_validation: int = 1_000,
    num_test: int = 320,
    seed: int = 0,
) -> dict[str, Any]:
    """Renders the embedded Tetrominoes (35x35, 3 pieces) on first use, then opens them."""
    if resolution != tetrominoes.RESOLUTION:
        raise ValueError(
            f"Embedded Tetrominoes are {tetrominoes.RESOLUTION}x{tetrominoes.RESOLUTION}; "
            f"set data.resolution={tetrominoes.RESOLUTION} (got {resolution})."
        )
    if max_objects < tetrominoes.NUM_PIECES:
        raise ValueError(
            f"Embedded Tetrominoes have {tetrominoes.NUM_PIECES} pieces per image but "
            f"data.max_objects is {max_objects}; set it to at least {tetrominoes.NUM_PIECES}."
        )
    config = TetrominoesLikeConfig.make(num_train, num_validation, num_test, seed)
    return _prepare(
        lambda: TetrominoesLike(
            config=known_config(TetrominoesLike, config),
            data_dir=data_dir,
            file_format="array_record",
        ),
        "embedded Tetrominoes",
        os.path.join(data_dir, "tetrominoes_like", config.name),
    )


def parts_like_sources(
    data_dir: str,
    *,
    resolution: int,
    max_objects: int,
    num_train: int = 20_000,
    num_validation: int = 1_000,
    num_test: int = 1_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Renders the embedded part figures (one six-part figure per image) on first use."""
    if max_objects < len(figures.PARTS):
        raise ValueError(
            f"Part figures have {len(figures.PARTS)} parts but data.max_objects is "
            f"{max_objects}; set it to at least {len(figures.PARTS)}."
        )
    config = PartsLikeConfig.make(resolution, num_train, num_validation, num_test, seed)
    return _prepare(
        lambda: PartsLike(
            config=known_config(PartsLike, config), data_dir=data_dir, file_format="array_record"
        ),
        "embedded part figures",
        os.path.join(data_dir, "parts_like", config.name),
    )


def multi_dsprites_like_sources(
    data_dir: str,
    *,
    resolution: int,
    max_objects: int,
    min_sprites: int = 2,
    max_sprites: int = 5,
    background: str = "colored",
    num_train: int = 60_000,
    num_validation: int = 1_000,
    num_test: int = 320,
    seed: int = 0,
) -> dict[str, Any]:
    """Renders the Multi-dSprites-like scenes on first use, then opens their splits."""
    if max_sprites > max_objects:
        raise ValueError(
            f"Scenes hold up to {max_sprites} sprites but data.max_objects is {max_objects}; "
            f"set data.max_objects to at least {max_sprites}."
        )
    config = SpritesLikeConfig.make(
        resolution=resolution,
        min_sprites=min_sprites,
        max_sprites=max_sprites,
        background=background,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        seed=seed,
    )
    return _prepare(
        lambda: SpritesLike(
            config=known_config(SpritesLike, config), data_dir=data_dir, file_format="array_record"
        ),
        "Multi-dSprites-like",
        os.path.join(data_dir, "sprites_like", config.name),
    )


def _prepare(make_builder: Callable[[], Any], label: str, cache: str) -> dict[str, Any]:
    """Builds, renders if missing and opens a builder's splits; cache faults become errors."""
    try:
        builder = make_builder()
        preparing.download_and_prepare(builder)
        sources = builder.as_data_source()
        for source in sources.values():
            _read_ends(source)
    except (ImportError, AttributeError, NameError, TypeError):
        raise  # Bugs or a broken install, not a bad cache.
    except Exception as error:  # pylint: disable=broad-except
        raise DatasetError(
            f"The {label} cache {cache} could not be written or read ({type(error).__name__}: "
            f"{error}). Delete that directory and rerun to render it again."
        ) from error
    return sources


def _read_ends(source: Any) -> None:
    """Decodes the first and last records of a source, so corruption shows at start."""
    for index in {0, len(source) - 1} if len(source) else ():
        source[index]  # pylint: disable=pointless-statement


DATASETS: dict[str, Callable[..., dict[str, Any]]] = {
    "clevr_like": clevr_like_sources,
    "clevr_with_masks": multi_object.clevr_with_masks_sources,
    "multi_dsprites": multi_object.multi_dsprites_sources,
    "tetrominoes": multi_object.tetrominoes_sources,
    "objects_room": multi_object.objects_room_sources,
    "coco": coco.coco_sources,
    "coco_panoptic": coco_panoptic.coco_panoptic_sources,
    "imagenet": imagenet.imagenet_sources,
    "pascal_voc": voc.voc_sources,
    "clevr": clevr.clevr_sources,
    "shapes": shapes_sources,
    "tetrominoes_like": tetrominoes_like_sources,
    "parts_like": parts_like_sources,
    "cub": cub.cub_sources,
    "deepfashion": deepfashion.deepfashion_sources,
    "multi_dsprites_like": multi_dsprites_like_sources,
}
# Set by the config's `data` section itself rather than per dataset.
_SHARED_OPTIONS = ("data_dir", "resolution", "max_objects")


def default_options() -> ml_collections.ConfigDict:
    """Per-dataset option sections (`data.<name>.<option>`) with each reader's defaults.

    Options without a default (e.g. `manual_dir`) are typed placeholders that must be set
    before that dataset is used.
    """
    sections = ml_collections.ConfigDict()
    for name, fn in DATASETS.items():
        section = ml_collections.ConfigDict()
        for param in inspect.signature(fn).parameters.values():
            if param.name in _SHARED_OPTIONS:
                continue
            if param.default is inspect.Parameter.empty:
                section[param.name] = ml_collections.config_dict.placeholder(str)
            else:
                section[param.name] = param.default
        sections[name] = section
    return sections


def load_sources(name: str, data_dir: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """Opens every split of dataset `name` from `data_dir` with its dataset-specific `options`."""
    if "manual_dir" in options and options["manual_dir"] is None:
        raise DatasetError(
            f"Dataset {name!r} reads files you download yourself: set "
            f"--config.data.{name}.manual_dir to their directory (README section Datasets)."
        )
    if name not in DATASETS:
        raise DatasetError(f"Unknown dataset {name!r}; set data.name to one of {sorted(DATASETS)}.")
    accepted = set(inspect.signature(DATASETS[name]).parameters) - {"data_dir"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DatasetError(
            f"Dataset {name!r} takes no option(s) {unknown}; its options are {sorted(accepted)}."
        )
    return DATASETS[name](resolve_data_dir(data_dir), **options)
