"""End-to-end training: loss goes down, resume is exact, 1 and 8 devices agree, outputs exist."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from ocjax.data import pipeline
from ocjax.training import trainer
from tests.conftest import FAST_COMPILE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_training_lowers_loss_and_writes_outputs(config, tmp_path, monkeypatch):
    config.training.update(num_steps=40, log_every=10, batch_size=8, image_every=20)
    config.optimizer.schedule.update(learning_rate=3e-3, warmup_steps=5)
    config.evaluation.update(every_steps=20, heldout_examples=8)
    counts = []
    check = trainer.warn_if_recompiled
    monkeypatch.setattr(
        trainer,
        "warn_if_recompiled",
        lambda jitted, name: counts.append(trainer.compilations(jitted)) or check(jitted, name),
    )
    trainer.train_and_evaluate(config, str(tmp_path))
    assert counts == [1]  # One compilation of the step for the whole run (evals in between).
    losses = _losses(tmp_path)
    assert losses[40] < 0.7 * losses[10], losses
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["num_images"] == config.data.clevr_like.num_test
    for key in (
        "decoder/fg_ari",
        "decoder/ari",
        "decoder/mbo",
        "decoder/miou",
        "decoder/nmi",
        "decoder/fg_nmi",
        "attention/fg_ari",
    ):
        assert -1.0 <= results[key] <= 1.0
    assert (tmp_path / "images" / "slots_decoder.png").exists()
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "tensorboard"))


def test_a_recompiled_step_is_reported(caplog):
    step = jax.jit(lambda x: x * 2)
    step(np.ones(3))
    assert trainer.compilations(step) == 1 and not trainer.warn_if_recompiled(step, "step")
    step(np.ones(4))  # A new shape: a second compilation.
    with caplog.at_level("WARNING"):
        assert trainer.warn_if_recompiled(step, "step")
    assert "step was compiled 2 times" in caplog.text


def test_resume_reproduces_uninterrupted_run(config, tmp_path):
    straight = trainer.train_and_evaluate(config, str(tmp_path / "straight"))
    config.training.num_steps = 3
    trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
    config.training.num_steps = 6
    resumed = trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert int(resumed.step) == int(straight.step) == 6
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


_RUN = """
import json, sys
from tests.conftest import tiny_config
from ocjax.training import trainer
config = tiny_config(sys.argv[1])
config.training.update(num_steps=5, log_every=1, batch_size=8)
trainer.train_and_evaluate(config, sys.argv[2])
"""


@pytest.mark.slow
def test_one_and_eight_devices_agree(data_dir, tmp_path):
    for n in (1, 8):
        env = dict(
            os.environ,
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=f"--xla_force_host_platform_device_count={n} {FAST_COMPILE}",
        )
        subprocess.run(
            [sys.executable, "-c", _RUN, data_dir, str(tmp_path / str(n))],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
    one, eight = _losses(tmp_path / "1"), _losses(tmp_path / "8")
    assert sorted(one) == sorted(eight) == [1, 2, 3, 4, 5]
    for step in one:
        np.testing.assert_allclose(eight[step], one[step], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("presets", ["", "cross_ctr_img", "global_only"])
def test_contrastive_experiment_end_to_end(data_dir, tmp_path, presets):
    from tests.conftest import tiny_slots_config

    config = tiny_slots_config(data_dir, presets)
    trainer.train_and_evaluate(config, str(tmp_path))
    results = json.loads((tmp_path / "eval.json").read_text())
    losses = _losses(tmp_path)
    assert sorted(losses) == [2, 4, 6] and all(np.isfinite(v) for v in losses.values())
    assert results["num_images"] == 12 and 0.0 <= results["vqa/ap"] <= 1.0
    if presets == "global_only":
        assert not any(k.startswith("attention/") for k in results)
    else:
        assert 0.0 <= results["attention/otsu_iou"] <= 1.0
        assert (tmp_path / "images" / "slots_attention.png").exists()


def test_coco_with_masks_finer_than_the_images_trains_and_evaluates(tmp_path):
    from tests.conftest import tiny_config
    from tests.data.test_coco import _square, _write_split

    manual = tmp_path / "manual"
    objects = [
        {"segmentation": _square(2, 2, 9, 9), "category_id": 1, "iscrowd": 0},
        {"segmentation": _square(12, 6, 20, 14), "category_id": 18, "iscrowd": 0},
    ]
    _write_split(manual, "train2017", "a.png", objects, seed=0)
    _write_split(manual, "val2017", "b.png", objects, seed=1)
    config = tiny_config(str(tmp_path / "tfds"))
    config.data.name = "coco"
    config.data.coco.update(manual_dir=str(manual), mask_resolution=64)
    config.evaluation.update(split="validation", num_classes=2, batch_size=1)
    config.training.update(batch_size=1, num_steps=2, checkpoint_every=2)
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results["num_images"] == 1
    for key in ("decoder/fg_ari", "decoder/mbo", "decoder/mbo_c"):
        assert np.isfinite(results[key]), key
    assert (tmp_path / "run" / "images" / "slots_decoder.png").exists()


@pytest.mark.parametrize("experiment", ["sa_ae", "slots"])
def test_trains_on_clevr_with_masks_fixture_by_changing_data_only(data_dir, tmp_path, experiment):
    from tests.conftest import tiny_config, tiny_slots_config
    from tests.data.test_multi_object import CLEVR_OBJECTS, _clevr_scene, _write
    from ocjax.data.builders import multi_object

    manual = tmp_path / "manual"
    manual.mkdir()
    rng = np.random.default_rng(0)
    scenes = [_clevr_scene(rng, count)[0] for count in CLEVR_OBJECTS]
    _write(
        str(manual / "clevr_with_masks_train.tfrecords"),
        multi_object.SPECS["clevr_with_masks"],
        scenes,
    )
    config = (tiny_config if experiment == "sa_ae" else tiny_slots_config)(str(tmp_path / "tfds"))
    config.data.name = "clevr_with_masks"
    config.data.max_objects = 10
    config.data.clevr_with_masks.update(
        manual_dir=str(manual), num_train=6, num_validation=2, num_test=2
    )
    config.training.batch_size = config.evaluation.batch_size = 2
    if experiment == "slots":
        config.evaluation.probe.train_fraction = 0.5
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results["num_images"] == 2
    assert all(np.isfinite(v) for v in _losses(tmp_path / "run").values())


def _tiny_synchrony_config(name: str, data_dir: str):
    """A synchrony config's quick preset shrunk to seconds: 8 hidden channels, 4 steps."""
    from configs import clevr_rotating, shapes_cae, shapes_rotating

    module = {"shapes_rotating": shapes_rotating, "shapes_cae": shapes_cae}.get(
        name, clevr_rotating
    )
    config = module.get_config("quick")
    config.data.data_dir = data_dir
    config.data[config.data.name].update(num_train=16, num_validation=4, num_test=6)
    config.model.update(hidden_dim=8, linear_dim=16)
    config.objective.n_init = 2
    config.training.update(batch_size=8, num_steps=2, log_every=1, checkpoint_every=2)
    config.evaluation.update(batch_size=8, num_images=2)
    return config


@pytest.mark.parametrize("name", ["shapes_rotating", "shapes_cae", "clevr_rotating"])
def test_synchrony_experiment_end_to_end(data_dir, tmp_path, name):
    config = _tiny_synchrony_config(name, data_dir)
    trainer.train_and_evaluate(config, str(tmp_path))
    results = json.loads((tmp_path / "eval.json").read_text())
    losses = _losses(tmp_path)
    assert sorted(losses) == [1, 2] and all(np.isfinite(v) for v in losses.values())
    assert results["num_images"] == 6
    assert -1.0 <= results["readout/ari_bg"] <= 1.0 and 0.0 <= results["readout/mbo"] <= 1.0
    assert (tmp_path / "images" / "readout_clusters.png").exists()


def test_rotating_model_rejects_signed_images(data_dir):
    config = _tiny_synchrony_config("shapes_rotating", data_dir)
    config.data.normalization = "signed"
    exp = trainer.Experiment(config)
    with pytest.raises(ValueError, match="data.normalization=unit"):
        trainer._check_inputs(exp, exp.train_data[0])


def test_wrong_channel_count_names_the_fix(data_dir):
    config = _tiny_synchrony_config("shapes_cae", data_dir)
    config.data.channels = 3
    with pytest.raises(ValueError, match="data.channels=1"):
        trainer.Experiment(config)


def _feature_config(config, data_dir, flagship):
    """A DINOSAUR / SPOT config shrunk to the tiny data and the tiny flagship's ViT."""
    config.data.data_dir = data_dir
    config.data.resolution = 32
    config.data.max_objects = 4
    config.data.clevr_like.update(min_objects=2, num_train=48, num_validation=8, num_test=12)
    config.model.backbone.workdir = str(flagship)
    config.model.update(
        num_slots=4, slot_dim=16, mlp_hidden_dim=16, decoder_hidden_dims=[32], decoder_dim=16
    )
    config.optimizer.schedule.update(learning_rate=3e-3, warmup_steps=2)
    config.training.update(num_steps=30, log_every=10, batch_size=8, checkpoint_every=30)
    config.evaluation.update(every_steps=30, heldout_examples=8, batch_size=8)
    return config


def _saved_params(workdir, subtree):
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(str(workdir / "checkpoints"))
    saved = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
    return saved["params"][subtree]


def _assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_dinosaur_and_spot_train_on_a_frozen_flagship_vit(data_dir, tmp_path):
    from configs import coco_dinosaur, coco_spot
    from tests.conftest import tiny_slots_config

    flagship = tmp_path / "flagship"
    trainer.train_and_evaluate(tiny_slots_config(data_dir), str(flagship))
    vit = _saved_params(flagship, "backbone")
    vit.pop("norm")  # DINOSAUR reads the last block before the final norm.

    # DINOSAUR (MLP decoder), with mBO_c over the 3 CLEVR shapes.
    config = _feature_config(coco_dinosaur.get_config("quick"), data_dir, flagship)
    config.evaluation.num_classes = 3
    state = trainer.train_and_evaluate(config, str(tmp_path / "dinosaur"))
    losses = _losses(tmp_path / "dinosaur")
    assert losses[30] < 0.8 * losses[10], losses
    results = json.loads((tmp_path / "dinosaur" / "eval.json").read_text())
    assert -1 <= results["decoder/fg_ari"] <= 1 and 0 <= results["decoder/mbo"] <= 1
    assert 0 <= results["decoder/mbo_c"] <= 1
    _assert_same_tree(vit, state.params["backbone"]["vit"])  # Frozen.

    # SPOT: a teacher (random patch orders), then a student distilling its masks.
    teacher = tmp_path / "teacher"
    config = _feature_config(coco_spot.get_config("teacher+cpu"), data_dir, flagship)
    trainer.train_and_evaluate(config, str(teacher))
    config = _feature_config(coco_spot.get_config("student+cpu"), data_dir, flagship)
    config.model.teacher.workdir = str(teacher)
    config.objective.distillation_weight = 1.0  # The paper's 5e-3 moves little in 30 steps.
    state = trainer.train_and_evaluate(config, str(tmp_path / "student"))
    with open(tmp_path / "student" / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    distill = [r["loss/distillation"] for r in records if "loss/distillation" in r]
    assert distill and all(np.isfinite(distill)) and distill[-1] < distill[0]
    _assert_same_tree(_saved_params(teacher, "head"), state.params["teacher"])
    _assert_same_tree(vit, state.params["backbone"]["vit"])
    results = json.loads((tmp_path / "student" / "eval.json").read_text())
    assert 0 <= results["decoder/mbo"] <= 1 and 0 <= results["attention/mbo"] <= 1


@pytest.mark.slow
def test_part_discovery_trains_on_the_embedded_figures(data_dir, tmp_path):
    from configs import parts
    from tests.conftest import tiny_slots_config

    flagship = tmp_path / "flagship"
    trainer.train_and_evaluate(tiny_slots_config(data_dir), str(flagship))
    config = parts.get_config("quick")
    config.data.data_dir = data_dir
    config.data.resolution = 32
    config.data.parts_like.update(num_train=32, num_validation=8, num_test=8)
    config.model.backbone.workdir = str(flagship)
    config.model.update(channels=[8, 8], dilations=(1, 1), kernel_size=3)
    config.training.update(num_steps=20, log_every=5, batch_size=8, checkpoint_every=20)
    config.evaluation.update(every_steps=20, heldout_examples=8, batch_size=8)
    state = trainer.train_and_evaluate(config, str(tmp_path / "parts"))
    with open(tmp_path / "parts" / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    losses = [r["loss"] for r in records if "loss" in r]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    for term in ("feature", "contrastive", "visual", "equivariance"):
        assert any(f"loss/{term}" in r for r in records), term
    results = json.loads((tmp_path / "parts" / "eval.json").read_text())
    assert -1 <= results["parts/fg_ari"] <= 1 and 0 <= results["parts/mbo"] <= 1
    # The k-means baseline on the frozen features, scored on the object's pixels.
    assert -1 <= results["readout/ari_bg"] <= 1 and 0 <= results["readout/fg_nmi"] <= 1
    assert -1 <= results["readout/pooled_fg_ari"] <= 1
    assert 0 <= results["readout/pooled_fg_nmi"] <= 1
    # The paper's scores pool every test image's pixels: equal to sklearn on all of them.
    exp, restored = trainer.restore_run(config, str(tmp_path / "parts"))
    true_all, pred_all = [], []
    for batch in pipeline.iterate(exp.eval_data):
        out = exp.eval_step(restored.variables, batch)
        pred = np.asarray(out["masks"]["parts"]).argmax(axis=1)
        keep = np.asarray(batch["pixel_valid"]) & np.asarray(batch["valid"])[:, None, None]
        true_all.append(np.asarray(batch["segmentation"])[keep])
        pred_all.append(pred[keep])
    true, pred = np.concatenate(true_all), np.concatenate(pred_all)
    fg = true != 0
    assert results["parts/pooled_fg_ari"] == pytest.approx(
        adjusted_rand_score(true[fg], pred[fg]), abs=1e-5
    )
    assert results["parts/pooled_fg_nmi"] == pytest.approx(
        normalized_mutual_info_score(true[fg], pred[fg]), abs=1e-5
    )
    assert results["parts/pooled_ari"] == pytest.approx(adjusted_rand_score(true, pred), abs=1e-5)
    _assert_same_tree(_saved_params(flagship, "backbone"), state.params["backbone"]["vit"])


def test_corrupt_latest_checkpoint_falls_back_to_the_one_before(config, tmp_path, caplog):
    straight = trainer.train_and_evaluate(config, str(tmp_path / "straight"))
    config.training.num_steps = 5  # Checkpoints at 3 and 5; step 5's files are then cut short.
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
    for path in (tmp_path / "run" / "checkpoints" / "5").rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "METADATA" not in path.name:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    config.training.num_steps = 6
    with caplog.at_level("WARNING", logger="ocjax"):
        resumed = trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert "checkpoint of step 5" in caplog.text and "cannot be read" in caplog.text
    assert int(resumed.step) == 6  # Steps 4-6 retrained from step 3: the same as straight.
    names = sorted(os.listdir(tmp_path / "run" / "checkpoints"))
    assert names == ["3", "5.unreadable", "6"]
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


_FILE_SIZE_LIMITED_MAIN = """
import resource, signal, sys
from absl import app
from ocjax import main

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # A write past the limit fails with EFBIG.
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ["ocjax.main", *sys.argv[2:]]
app.run(main.main, flags_parser=main.parse_flags)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX file-size limits")
def test_a_checkpoint_write_that_fails_stops_the_run_with_one_clear_error(config, tmp_path):
    trainer.train_and_evaluate(config, str(tmp_path / "renders_the_data"))
    checkpoint_sizes = [
        p.stat().st_size for p in (tmp_path / "renders_the_data" / "checkpoints").rglob("*")
    ]
    limit = max(checkpoint_sizes) // 2  # The logs written before the first checkpoint are smaller.
    (tmp_path / "tiny.py").write_text(
        "from tests.conftest import tiny_config\n\n\n"
        f"def get_config():\n    return tiny_config({config.data.data_dir!r})\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _FILE_SIZE_LIMITED_MAIN,
            str(limit),
            "--config",
            str(tmp_path / "tiny.py"),
            "--workdir",
            str(tmp_path / "full"),
        ],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("ocjax: error:")]
    # Orbax's writer threads' tracebacks are not shown: the run ends with ocjax's one error.
    assert len(errors) == 1 and errors[0] == run.stderr.splitlines()[-2], run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "Event loop" not in run.stderr, run.stderr[-3000:]
    assert f"Writing a checkpoint in {tmp_path / 'full' / 'checkpoints'} failed" in errors[0]
    assert "File too large" in errors[0] and "starts afresh" in errors[0]
    assert not (tmp_path / "full" / "eval.json").exists()  # It stopped, saving nothing.
    assert [p.name for p in (tmp_path / "full" / "checkpoints").iterdir() if p.name.isdigit()] == []


def test_a_different_model_refuses_to_resume(config, tmp_path):
    trainer.train_and_evaluate(config, str(tmp_path))
    config.model.slot_dim = 24
    config.model.num_iterations = 3
    with pytest.raises(ValueError, match="different model") as error:
        trainer.train_and_evaluate(config, str(tmp_path))
    assert "model.slot_dim: 16 there, 24 now" in str(error.value)
    assert "model.num_iterations: 2 there, 3 now" in str(error.value)


def test_pretrained_weights_that_do_not_fit_are_named():
    """A teacher head of another layout (or a wrong shape) fails with what did not fit."""
    initial = {"decoder": {"slots": {"kernel": np.zeros((4, 8))}}}
    old_layout = {"decoder": {"slot_input": {"kernel": np.ones((4, 8))}}}
    with pytest.raises(
        ValueError,
        match=r"SPOT teacher.*missing \['decoder/slots/kernel'\].*"
        r"unexpected \['decoder/slot_input/kernel'\].*Retrain the teacher",
    ):
        trainer._replace_like(initial, old_layout, "teacher")
    with pytest.raises(
        ValueError,
        match=r"pretrained backbone: parameter decoder/slots/kernel "
        r"has shape \(4, 6\), the model needs \(4, 8\)",
    ):
        trainer._replace_like(initial, {"decoder": {"slots": {"kernel": np.ones((4, 6))}}})
    fitted = trainer._replace_like(initial, {"decoder": {"slots": {"kernel": np.ones((4, 8))}}})
    np.testing.assert_array_equal(fitted["decoder"]["slots"]["kernel"], 1.0)
