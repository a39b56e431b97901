"""The training loop: config -> data -> model -> jitted sharded steps -> logs, checkpoints, eval."""

import functools
import json
import time
from typing import Any

import flax
import jax
import ml_collections
import numpy as np
import tqdm

from ocjax import files, parallel, visualize
from ocjax.data import augment, load_sources, multicrop, pipeline
from ocjax.metrics import otsu, parts, vqa
from ocjax.models import backbones, build_model, input_check, pretraining, readout
from ocjax.models.dinosaur import frozen_subtrees, teacher_params
from ocjax.training import cached_features, checkpoint, console, optim
from ocjax.training.objectives import build_objective
from ocjax.training.preemption import Interrupted, StopRequest
from ocjax.training.state import TrainState, create_state
from ocjax.training.steps import eval_step, train_step
from ocjax.training.writers import MetricWriter


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or Inf; the last good state was checkpointed."""


class Experiment:
    """Everything built from a config once: mesh, data, model, optimiser and jitted steps."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.mesh = parallel.make_mesh(config.mesh.num_devices)
        self.batch_size = parallel.per_host_batch_size(
            config.training.batch_size, self.mesh, "training.batch_size"
        )
        self.eval_batch_size = parallel.per_host_batch_size(
            config.evaluation.batch_size, self.mesh, "evaluation.batch_size"
        )
        self.model = build_model(**config.model)
        self.objective = build_objective(**config.objective)
        self.views = views = _views(config.data)
        self.pretrained = pretrained_subtrees(self.model, (config.data.resolution,) * 2)
        self.normalization = normalization = (
            "imagenet" if views else config.data.get("normalization", "signed")
        )
        self.rng = jax.random.key(config.seed)
        res = config.data.resolution
        dummy = self.dummy_images()
        # Shape errors (and a backbone that does not fit) surface before any data is made.
        jax.eval_shape(self._init_variables, dummy, self.pretrained)
        self.sources = load_sources(
            config.data.name,
            config.data.data_dir,
            dict(
                resolution=res, max_objects=config.data.max_objects, **config.data[config.data.name]
            ),
        )
        _check_channels(self.sources["train"], dummy.shape[-1], config.data.name)
        if config.data.get("cache_features"):  # DINOSAUR / SPOT train on stored features.
            self.sources = cached_features.cached_sources(
                config,
                self.model,
                jax.jit(self._backbone_params)(dummy, self.pretrained),
                self.sources,
                normalization,
                self.eval_batch_size,
            )
        self.steps_per_epoch = len(self.sources["train"]) // config.training.batch_size
        self.num_steps = optim.total_steps(
            config.training.get("num_steps"),
            config.training.get("num_epochs"),
            self.steps_per_epoch,
        )
        self.schedule = optim.learning_rate_schedule(
            total_steps=self.num_steps,
            **optim.in_steps(config.optimizer.schedule, self.steps_per_epoch),
        )
        self.tx = optim.from_config(
            config.optimizer,
            self.schedule,
            frozen=frozen_subtrees(self.model),
            total_steps=self.num_steps,
        )
        self.state_shape = jax.eval_shape(self._init, dummy, self.pretrained)
        self.train_data = pipeline.training_batches(
            self.sources["train"],
            pipeline.ScenePreprocess(
                config.data.max_objects,
                normalization,
                views,
                random_flip=config.data.get("random_flip", False),
            ),
            batch_size=self.batch_size,
            seed=config.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        self.eval_data = self._evaluation_batches(
            config.evaluation.split, config.evaluation.max_examples
        )
        # A fixed held-out subset scored every `evaluation.every_steps` during training.
        self.heldout_data = (
            self._evaluation_batches(
                config.evaluation.heldout_split, config.evaluation.heldout_examples
            )
            if config.evaluation.get("every_steps")
            else None
        )

        replicated = parallel.replicated(self.mesh)
        batch = parallel.batch_sharding(self.mesh)
        state_sharding = jax.tree.map(lambda _: replicated, self.state_shape)
        self._init_jit = jax.jit(self._init, out_shardings=state_sharding)
        self.train_step = jax.jit(
            functools.partial(
                train_step,
                model=self.model,
                tx=self.tx,
                objective=self.objective,
                schedule=self.schedule,
                rng=jax.random.fold_in(self.rng, 1),
                augment=views.render if views else None,
                after_update=self._momentum_update(),
            ),
            in_shardings=(state_sharding, batch),
            out_shardings=(state_sharding, replicated),
            donate_argnums=0,
        )
        self.eval_step = jax.jit(
            functools.partial(
                eval_step,
                model=self.model,
                objective=self.objective,
                rng=jax.random.fold_in(self.rng, 2),
                num_true=config.data.max_objects + 1,
                num_classes=config.evaluation.get("num_classes"),
            ),
            in_shardings=(state_sharding.variables, batch),
        )

    def _evaluation_batches(self, split: str, max_examples: int | None) -> Any:
        """This host's share of the first `max_examples` (None: all) examples of `split`."""
        if split not in self.sources:
            raise ValueError(
                f"Dataset {self.config.data.name!r} has no split {split!r} to evaluate on; "
                f"its splits are {sorted(self.sources)}."
            )
        return pipeline.evaluation_batches(
            self.sources[split],
            pipeline.ScenePreprocess(self.config.data.max_objects, self.normalization),
            batch_size=self.eval_batch_size,
            max_examples=max_examples,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    def dummy_images(self) -> np.ndarray:
        """Zero images `[1, res, res, data.channels]` (3 channels unless the config says)."""
        res = self.config.data.resolution
        return np.zeros((1, res, res, self.config.data.get("channels", 3)), np.float32)

    def init_state(self, images: np.ndarray) -> TrainState:
        """A fresh training state (pretrained backbone weights in place) from `[1, h, w, c]`."""
        return self._init_jit(images, self.pretrained)

    def _init_variables(self, images: np.ndarray, pretrained: Any = None) -> Any:
        """Initialises the model's Flax variables from a dummy batch `[1, h, w, c]`, with
        `pretrained` backbone weights in place (see `ocjax.models.backbones`); they are an
        argument, not a constant, so that large weights stay out of the compiled program."""
        params_rng, slots_rng = jax.random.split(jax.random.fold_in(self.rng, 0))
        variables = self.model.init({"params": params_rng, "slots": slots_rng}, images, train=False)
        if getattr(self.model, "EMA", ()):  # Momentum encoders start as the online ones.
            pairs = self.model.EMA
            variables = {
                **variables,
                "params": pretraining.init_momentum(variables["params"], pairs),
            }
        if pretrained:
            params = dict(variables["params"])
            for name, loaded in pretrained.items():
                params[name] = _replace_like(params[name], loaded, name)
            variables = {**variables, "params": params}
        return variables

    def _backbone_params(self, images: np.ndarray, pretrained: Any = None) -> Any:
        """The frozen backbone's initial parameters alone (`{}` if it has none); under `jit`
        the rest of the model's initialisation is dead code and never runs."""
        return self._init_variables(images, pretrained)["params"].get("backbone", {})

    def _momentum_update(self) -> Any:
        """The EMA step of the model's momentum encoders after each update, or None."""
        if not getattr(self.model, "EMA", ()):
            return None
        return functools.partial(
            pretraining.momentum_update,
            pairs=self.model.EMA,
            base=self.model.momentum,
            final=self.model.final_momentum,
            total_steps=self.num_steps,
        )

    def _init(self, images: np.ndarray, pretrained: Any = None) -> TrainState:
        """Initialises parameters, model state and optimiser state from a dummy batch."""
        return create_state(self._init_variables(images, pretrained), self.tx)


def _views(data: ml_collections.ConfigDict) -> Any:
    """The augmentation that makes each training example's views: the flagship's two views
    (`data.views`), the crops of self-supervised pretraining (`data.crops`), or None."""
    if data.get("views") is not None and data.get("crops") is not None:
        raise ValueError("Set data.views (two views) or data.crops (multi-crop), not both.")
    if data.get("views") is not None:
        return augment.TwoViewAugment(**data.views)
    if data.get("crops") is not None:
        return multicrop.MultiCropAugment(**data.crops)
    return None


def pretrained_subtrees(model: Any, image_size: tuple[int, int]) -> dict[str, Any] | None:
    """Weights the model starts from, by top-level parameter name: a pretrained backbone's
    (unless it is a randomly initialised `dino_vit`) and the fine-tuned copy of its last
    blocks, and a SPOT teacher's head."""
    loaded = {}
    if "backbone" in frozen_subtrees(model):
        backbone = backbones.pretrained_params(model.backbone, image_size)
        if backbone is not None:
            loaded["backbone"] = backbone
            if dict(model.backbone).get("finetune_from_block") is not None:
                loaded["finetuned"] = backbones.finetuned_params(backbone, model.backbone)
    if getattr(model, "teacher", None) is not None:
        loaded["teacher"] = teacher_params(model.teacher)
    return loaded or None


PRETRAINED = {
    "backbone": ("The pretrained backbone", ""),
    "finetuned": ("The fine-tuned copy of the backbone's last blocks", ""),
    "teacher": (
        "The SPOT teacher's head (model.teacher.workdir)",
        (
            " Retrain the teacher with this version of ocjax: a teacher trained with another "
            "decoder layout cannot be read."
        ),
    ),
}


def _replace_like(initial: Any, loaded: Any, name: str = "backbone") -> Any:
    """`loaded` arrays in the structure of `initial`, checked name by name and shape by shape;
    `name` (a key of `PRETRAINED`) says in the error what did not fit."""
    what, hint = PRETRAINED[name]
    flat_initial = flax.traverse_util.flatten_dict(flax.core.unfreeze(initial), sep="/")
    flat_loaded = flax.traverse_util.flatten_dict(dict(loaded), sep="/")
    if set(flat_initial) != set(flat_loaded):
        missing = sorted(set(flat_initial) - set(flat_loaded))
        extra = sorted(set(flat_loaded) - set(flat_initial))
        raise ValueError(
            f"{what} does not fit the model: missing {missing[:3]}, unexpected {extra[:3]}.{hint}"
        )
    for key, value in flat_initial.items():
        if tuple(value.shape) != tuple(np.shape(flat_loaded[key])):
            raise ValueError(
                f"{what}: parameter {key} has shape {np.shape(flat_loaded[key])}, the model "
                f"needs {tuple(value.shape)}.{hint}"
            )
    return flax.traverse_util.unflatten_dict(
        {k: jax.numpy.asarray(flat_loaded[k], flat_initial[k].dtype) for k in flat_initial},
        sep="/",
    )


def _check_channels(source: Any, channels: int, name: str) -> None:
    """Raise unless the images of `source` have the `channels` the model is built for."""
    found = np.asarray(source[0]["image"]).shape[-1]
    if found != channels:
        raise ValueError(
            f"Dataset {name!r} has {found}-channel images but the model is built for "
            f"{channels}; set --config.data.channels={found}."
        )


def _check_inputs(exp: Experiment, batch: dict[str, np.ndarray]) -> None:
    """Runs the model's host-side input check (if it has one) on a training batch."""
    check = input_check(exp.model)
    if check is None:
        return
    try:
        check(batch["image"])
    except ValueError as error:
        raise ValueError(
            f"{error} With data.normalization {exp.normalization!r} the images are not in "
            "[0, 1]; set --config.data.normalization=unit."
        ) from error


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, name: str | None = None
) -> TrainState:
    """Trains (resuming from `workdir` if it holds checkpoints), then evaluates on the test split.

    Prints one line at start (`name` is the config as given on the command line) and the
    metrics table at the end. SIGINT or SIGTERM stops after the current step with a checkpoint
    of it and raises `Interrupted`; the next run resumes there.
    """
    root = files.workdir_path(workdir)  # A bucket without its file system fails here.
    exp = Experiment(config)
    cfg = config.training
    is_lead = jax.process_index() == 0
    manager = checkpoint.checkpoint_manager(workdir, cfg.keep_checkpoints)
    if manager.latest_step() is not None:
        check_same_model(root, config)
    if is_lead:  # What a later run needs to rebuild this model (e.g. as a frozen backbone).
        files.write_text(root / "config.json", config.to_json_best_effort(indent=2))
    state = checkpoint.restore_latest(manager, exp.init_state(exp.dummy_images()))
    start = int(jax.device_get(state.step))
    final = f"{config.evaluation.split}/"
    writer = MetricWriter(
        workdir,
        enabled=is_lead,
        resume_step=start,
        drop_at_resume=lambda record: any(k.startswith(final) for k in record),
    )
    if is_lead:
        line = console.start_line(
            config,
            workdir,
            num_train=len(exp.sources["train"]),
            devices=console.devices_text(jax.devices()),
            start=start,
            num_steps=exp.num_steps,
        )
        print(line.replace("ocjax: ", f"ocjax: {name}: ", 1) if name else line, flush=True)
    _check_inputs(exp, exp.train_data[start])
    batches = pipeline.iterate(exp.train_data, start)
    window: list[dict[str, jax.Array]] = []
    progress = tqdm.tqdm(
        total=exp.num_steps,
        initial=start,
        disable=not is_lead,
        dynamic_ncols=True,
        desc="train",
        unit="step",
    )
    tick, tick_step = time.perf_counter(), start
    with progress, StopRequest(exp.mesh) as stop:  # The bar ends before any error is printed.
        for step in range(start + 1, exp.num_steps + 1):
            state, metrics = exp.train_step(state, parallel.to_global(next(batches), exp.mesh))
            window.append(metrics)
            progress.update(1)
            if step % cfg.log_every == 0 or step == exp.num_steps:
                summary = _summarise(window)
                if summary is None:
                    checkpoint.save(manager, state)
                    checkpoint.wait(manager)
                    bad_step, term = _first_nonfinite(window, step - len(window) + 1)
                    raise NonFiniteLossError(
                        f"Loss term {term!r} became NaN/Inf at step {bad_step}. The last finite "
                        f"state (step {int(jax.device_get(state.step))}) is saved in "
                        f"{workdir}/checkpoints; lower optimizer.schedule.learning_rate or set "
                        "optimizer.grad_clip_norm."
                    )
                now = time.perf_counter()
                summary["steps_per_sec"] = (step - tick_step) / (now - tick)
                tick, tick_step = now, step
                writer.scalars(step, summary)
                progress.set_postfix(loss=f"{summary['loss']:.4f}")
                window = []
            if step % cfg.checkpoint_every == 0 or step == exp.num_steps:
                checkpoint.save(manager, state)
            if step % cfg.image_every == 0:
                writer.images(step, _pictures(exp, state, limit=config.evaluation.num_images))
            if exp.heldout_data is not None and step % config.evaluation.every_steps == 0:
                heldout = compute_metrics(exp, state, exp.heldout_data, probe=False)
                writer.scalars(step, {f"eval/{k}": v for k, v in heldout.items()})
            signum = stop.poll()  # The same on every host.
            if signum is not None and step < exp.num_steps:
                if manager.latest_step() != step:
                    checkpoint.save(manager, state)
                checkpoint.wait(manager)
                writer.close()
                raise Interrupted(signum, step, workdir)
    warn_if_recompiled(exp.train_step, "train_step")
    checkpoint.wait(manager)
    results = evaluate(exp, state, workdir, writer)
    writer.close()
    if is_lead:
        print(console.results_table(results, output_paths(workdir)), flush=True)
    return state


# Settings whose change makes a workdir's checkpoints belong to another model.
_MODEL_KEYS = ("model", "data.resolution", "data.channels")


def check_same_model(root: Any, config: ml_collections.ConfigDict) -> None:
    """Raises if the run saved in `root/config.json` had other model settings than `config`,
    listing every differing key (resuming would load parameters of another shape)."""
    path = root / "config.json"
    if not path.exists():
        return
    saved = _flat(json.loads(path.read_text()))
    current = _flat(json.loads(config.to_json_best_effort()))
    keys = sorted(
        k
        for k in set(saved) | set(current)
        if any(k == p or k.startswith(p + ".") for p in _MODEL_KEYS)
        and saved.get(k) != current.get(k)
    )
    if keys:
        changes = "; ".join(f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now" for k in keys)
        raise ValueError(
            f"{root} holds checkpoints of a different model ({changes}). Resume with the "
            "same settings, or train this one in a new --workdir."
        )


def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists become tuples so that they compare."""
    flat = flax.traverse_util.flatten_dict(tree, sep=".")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}


def output_paths(workdir: str) -> dict[str, str]:
    """Where a run's outputs are, for the end-of-run table."""
    root = files.workdir_path(workdir)
    return {
        "eval.json": str(root / "eval.json"),
        "images/": str(root / "images"),
        "TensorBoard": f"tensorboard --logdir {root / 'tensorboard'}",
    }


def compilations(jitted: Any) -> int:
    """How many executables a `jax.jit` function has compiled in this process (-1: unknown)."""
    size = getattr(jitted, "_cache_size", None)
    return int(size()) if size is not None else -1


def warn_if_recompiled(jitted: Any, name: str) -> bool:
    """Logs a warning if `jitted` compiled more than once (a shape, dtype or sharding of its
    inputs changed between calls, so every change paid a compilation); returns whether."""
    count = compilations(jitted)
    if count > 1:
        console.LOGGER.warning(
            "%s was compiled %d times in this run: its input shapes, dtypes or shardings "
            "changed between steps (e.g. a short last batch or a changing Python scalar). "
            "Each change costs a full compilation.",
            name,
            count,
        )
    return count > 1


def _summarise(window: list[dict[str, jax.Array]]) -> dict[str, float] | None:
    """Means of a window of step metrics, or None if any step was not finite."""
    host = jax.device_get(window)
    if min(m["finite"] for m in host) < 1:
        return None
    return {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "finite"}


def _first_nonfinite(window: list[dict[str, jax.Array]], first_step: int) -> tuple[int, str]:
    """The first step of a window whose metrics were not finite, and the first bad term."""
    for offset, metrics in enumerate(jax.device_get(window)):
        if metrics["finite"] < 1:
            bad = [k for k, v in metrics.items() if k.startswith("loss") and not np.isfinite(v)]
            bad.sort(key=lambda k: "/" not in k)  # Name a specific term before the total.
            return first_step + offset, (bad[0] if bad else "grad_norm")
    raise AssertionError("no non-finite step in window")


def _pictures(exp: Experiment, state: TrainState, limit: int) -> dict[str, np.ndarray]:
    """A panel per kind of predicted mask for the first evaluation images (see `slot_panel`),
    and `readout/clusters` with the read-out and its clusters (see `readout_panel`)."""
    batch = exp.eval_data[0]
    out = exp.eval_step(state.variables, parallel.to_global(batch, exp.mesh))
    host = parallel.to_host({k: out[k] for k in ("outputs", "masks", "readout")})
    n = min(limit, batch["image"].shape[0])
    norm = exp.normalization
    images = visualize.to_uint8(batch["image"][:n], norm)
    recon = host["outputs"].get("reconstruction")
    if recon is not None and recon.shape != batch["image"].shape:
        recon = None  # Not an image (e.g. DINOSAUR reconstructs features).
    recon = None if recon is None else visualize.to_uint8(recon[:n], norm)
    panels = {}
    segmentation = batch["segmentation"][:n]
    if segmentation.shape[1:] != images.shape[1:3]:  # Masks stored finer than the images.
        segmentation = np.asarray(
            jax.image.resize(segmentation, (n, *images.shape[1:3]), "nearest")
        )
    for name, masks in host["masks"].items():
        masks = masks[:n]
        if masks.shape[2:] != images.shape[1:3]:
            masks = np.asarray(
                jax.image.resize(masks, masks.shape[:2] + images.shape[1:3], "bilinear")
            )
        binary = np.asarray(otsu.otsu_masks(masks)) if name in exp.objective.otsu_masks else None
        panels[f"slots/{name}"] = visualize.slot_panel(
            images,
            masks,
            segmentation,
            exp.config.data.max_objects + 1,
            reconstructions=recon,
            binary=binary,
        )
    if host["readout"] is not None:
        clusters, _, _ = _cluster(exp, host["readout"][:n], {k: v[:n] for k, v in batch.items()})
        panels["readout/clusters"] = visualize.readout_panel(
            images,
            recon,
            host["readout"][:n],
            clusters,
            segmentation,
            exp.config.data.max_objects + 1,
        )
    return panels


_READOUT_TARGETS = ("segmentation", "pixel_valid", "present", "valid", "foreground")


def _cluster(
    exp: Experiment, points: np.ndarray, batch: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Host step of the objective's read-out: k-means of points `[b, h, w, f]` per image."""
    settings = exp.objective.readout
    valid = batch["pixel_valid"]
    if "foreground" in batch:  # Part datasets: cluster the object's pixels only.
        valid = valid & batch["foreground"]
    return readout.cluster_scores(
        points,
        batch["segmentation"],
        valid,
        batch["present"].sum(axis=-1) * batch["valid"],
        exp.config.data.max_objects + 1,
        num_clusters=settings.num_clusters,
        seed=exp.config.seed,
        n_init=settings.n_init,
    )


def _clustered_pixels(batch: dict[str, np.ndarray]) -> np.ndarray:
    """Pixels `[b, h, w]` the read-out clusters: valid ones, on the object for part data."""
    valid = batch["pixel_valid"] & batch["valid"][:, None, None]
    return valid & batch["foreground"] if "foreground" in batch else valid


def _pooled_centroids(exp: Experiment, state: TrainState, data: Any) -> np.ndarray:
    """A first pass over `data`: one k-means `[K, f]` of read-out points from every image."""
    settings = exp.objective.readout
    samples = []
    for i, batch in enumerate(pipeline.iterate(data)):
        global_batch = parallel.to_global(batch, exp.mesh)
        points = parallel.to_host(exp.eval_step(state.variables, global_batch)["readout"])
        targets = parallel.to_host(
            {k: global_batch[k] for k in _READOUT_TARGETS if k in global_batch}
        )
        samples.append(
            readout.sample_points(
                points,
                _clustered_pixels(targets),
                settings.pooled_points_per_image,
                seed=exp.config.seed + i,
            )
        )
    return readout.fit_centroids(
        np.concatenate(samples), settings.num_clusters, exp.config.seed, settings.n_init
    )


def _pooled_table(
    exp: Experiment, points: np.ndarray, batch: dict[str, np.ndarray], centroids: np.ndarray
) -> np.ndarray:
    """Contingency `[num_true, K + 1]` of the batch's nearest-centroid ids, summed over images."""
    ids = readout.assign_clusters(points, centroids, _clustered_pixels(batch))
    table = parts.contingency(
        batch["segmentation"],
        ids,
        exp.config.data.max_objects + 1,
        len(centroids) + 1,
        valid=batch["pixel_valid"],
    )
    return np.einsum("b,btp->tp", batch["valid"].astype(np.float64), np.asarray(table))


def compute_metrics(
    exp: Experiment, state: TrainState, data: Any, *, probe: bool = True
) -> dict[str, float]:
    """Per-image metrics averaged over the images of `data` (evaluation batches) they apply to.

    With a read-out (synchrony models) its points are clustered on the host per batch into
    `readout/ari_bg` and `readout/mbo` (a pooled read-out also fits one k-means on the whole
    split first: `readout/pooled_...`); the objective's `pooled_masks` are scored over the
    whole split from summed contingency tables (`<kind>/pooled_...`); with `probe` and a VQA probe configured, object
    features of every image are collected on the host and the probe is trained and scored
    on a split of them (`vqa/...`). Also `num_images`.
    """
    totals: dict[str, float] = {}
    counts: dict[str, float] = {}
    collected: dict[str, list[np.ndarray]] = {}
    tables: dict[str, np.ndarray] = {}
    settings = exp.objective.readout
    centroids = _pooled_centroids(exp, state, data) if settings and settings.pooled else None
    probe = probe and exp.config.evaluation.get("probe") is not None
    num_images = 0
    for batch in pipeline.iterate(data):
        global_batch = parallel.to_global(batch, exp.mesh)
        out = exp.eval_step(state.variables, global_batch)
        host = parallel.to_host(
            {
                k: out[k]
                for k in ("per_image", "weights", "features", "attributes", "readout", "tables")
            }
        )
        keep = host["attributes"].pop("valid")
        num_images += int(keep.sum())
        if host["readout"] is not None:
            targets = parallel.to_host(
                {k: global_batch[k] for k in _READOUT_TARGETS if k in global_batch}
            )
            _, scores, w = _cluster(exp, host["readout"], targets)
            host["per_image"].update({f"readout/{k}": v for k, v in scores.items()})
            host["weights"].update({f"readout/{k}": w for k in scores})
            if centroids is not None:
                host["tables"]["readout"] = _pooled_table(exp, host["readout"], targets, centroids)
        for name, table in host["tables"].items():
            tables[name] = tables.get(name, 0.0) + np.asarray(table, np.float64)
        for key, values in host["per_image"].items():
            w = host["weights"][key].astype(np.float64)
            totals[key] = totals.get(key, 0.0) + float(np.sum(values * w))
            counts[key] = counts.get(key, 0.0) + float(np.sum(w))
        if probe and host["features"] is not None:
            for key, values in dict(host["attributes"], features=host["features"]).items():
                collected.setdefault(key, []).append(values[keep])
    results = {k: totals[k] / counts[k] for k in sorted(totals) if counts[k]}
    for name, table in sorted(tables.items()):
        results.update({f"{name}/{k}": v for k, v in parts.pooled_scores(table).items()})
    if collected:
        results.update(
            _vqa_probe(
                {k: np.concatenate(v) for k, v in collected.items()},
                seed=exp.config.seed,
                **exp.config.evaluation.probe,
            )
        )
    results["num_images"] = num_images
    return results


def evaluate(
    exp: Experiment, state: TrainState, workdir: str, writer: MetricWriter | None = None
) -> dict[str, Any]:
    """Metrics over the evaluation split -> `workdir/eval.json`, pictures -> `workdir/images/`.

    See `compute_metrics`; a metric that applies to no image (e.g. FG-ARI on scenes without
    foreground) is absent. TensorBoard and `metrics.jsonl` get them as `<split>/<metric>`.
    """
    step = int(jax.device_get(state.step))
    split = exp.config.evaluation.split
    results = {"step": step, "split": split, **compute_metrics(exp, state, exp.eval_data)}
    pictures = _pictures(exp, state, limit=exp.config.evaluation.num_images)  # On every host.
    if jax.process_index() == 0:
        root = files.workdir_path(workdir)
        files.write_text(root / "eval.json", json.dumps(results, indent=2))
        for name, picture in pictures.items():
            visualize.save_png(root / "images" / (name.replace("/", "_") + ".png"), picture)
        if writer is not None:
            writer.scalars(
                step, {f"{split}/{k}": v for k, v in results.items() if isinstance(v, float)}
            )
            writer.images(step, pictures)
    return results


def _vqa_probe(
    data: dict[str, np.ndarray],
    *,
    steps: int,
    learning_rate: float,
    weight_decay: float,
    pos_weight: float,
    train_fraction: float,
    seed: int,
) -> dict[str, float]:
    """Trains the linear VQA probe on the first `train_fraction` of images, AP on the rest."""
    labels = np.asarray(
        vqa.question_labels(
            data["size"], data["color"], data["material"], data["shape"], data["present"]
        )
    )
    features = data["features"]
    split = int(round(train_fraction * len(features)))
    if not 0 < split < len(features):
        raise ValueError(
            f"The VQA probe needs images on both sides of the split, got "
            f"{len(features)} images and train_fraction {train_fraction}."
        )
    params = vqa.train_probe(
        features[:split],
        labels[:split],
        steps=steps,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        pos_weight=pos_weight,
        seed=seed,
    )
    scores = np.asarray(vqa.probe_scores(params, features[split:]))
    return {
        "vqa/ap": float(vqa.probe_ap(scores, labels[split:], pos_weight=pos_weight)),
        "vqa/train_images": split,
        "vqa/test_images": len(features) - split,
    }


def restore_run(config: ml_collections.ConfigDict, workdir: str) -> tuple[Experiment, TrainState]:
    """The experiment of `config` and the latest checkpoint in `workdir`, restored into it."""
    missing = FileNotFoundError(
        f"No checkpoint in {workdir}/checkpoints; train first "
        "(--mode train) or pass the --workdir of a finished run."
    )
    if not (files.workdir_path(workdir) / "checkpoints").is_dir():
        raise missing
    exp = Experiment(config)
    manager = checkpoint.checkpoint_manager(workdir, config.training.keep_checkpoints)
    if manager.latest_step() is None:
        raise missing
    return exp, checkpoint.restore_latest(manager, exp.init_state(exp.dummy_images()))


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Evaluates the latest checkpoint in `workdir` (`--mode eval`); creates nothing there but
    `eval.json` and `images/`."""
    exp, state = restore_run(config, workdir)
    results = evaluate(exp, state, workdir)
    if jax.process_index() == 0:
        print(console.results_table(results, output_paths(workdir)), flush=True)
    return results
