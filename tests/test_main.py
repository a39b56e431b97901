"""Command line and start-up checks: each bad input fails early with a message that says the fix."""

import os
import subprocess
import sys

import pytest

from configs import clevr_sa_ae
from ocjax.main import unknown_override
from ocjax.training import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ocjax.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_unknown_override_names_key_and_alternatives():
    config = clevr_sa_ae.get_config()
    assert unknown_override(config, ["--config.model.num_slots=3"]) is None
    message = unknown_override(config, ["--config.model.num_slot=3"])
    assert "config.model has no key 'num_slot'" in message and "num_slots" in message
    assert "config has no key 'modle'" in unknown_override(config, ["--config.modle.x=1"])


def test_cli_rejects_unknown_key_and_wrong_type(tmp_path):
    base = ["--config", "configs/clevr_sa_ae.py:quick", "--workdir", str(tmp_path)]
    result = _cli(*base, "--config.training.batch_sz=4")
    assert result.returncode != 0
    assert "config.training has no key 'batch_sz'" in result.stderr
    result = _cli(*base, "--config.training.batch_size=four")
    assert result.returncode != 0 and "batch_size" in result.stderr
    result = _cli("--config", "configs/clevr_sa_ae.py:huge", "--workdir", str(tmp_path))
    assert result.returncode != 0 and "Unknown preset 'huge'" in result.stderr


def test_eval_mode_without_checkpoint(config, tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        trainer.evaluate_checkpoint(config, str(tmp_path))


def test_image_size_is_checked_before_any_data_is_made(config, tmp_path):
    config.data.data_dir = str(tmp_path / "data")
    config.data.resolution = 24
    with pytest.raises(ValueError, match="decoder_initial_size"):
        trainer.Experiment(config)
    assert not os.path.exists(tmp_path / "data")


def test_batch_not_divisible_by_devices(data_dir, tmp_path):
    code = (
        "from tests.conftest import tiny_config\nfrom ocjax.training import trainer\n"
        f"c = tiny_config({data_dir!r}); c.training.batch_size = 12\ntrainer.Experiment(c)"
    )
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "training.batch_size is 12, which does not divide over 8 devices" in result.stderr


def test_nan_stops_training_after_saving(config, tmp_path):
    config.optimizer.schedule.update(learning_rate=1e30, warmup_steps=0, decay_steps=10)
    config.training.update(num_steps=6, log_every=3)
    with pytest.raises(
        trainer.NonFiniteLossError, match=r"Loss term 'loss.*' became NaN/Inf at step \d"
    ):
        trainer.train_and_evaluate(config, str(tmp_path))
    assert os.listdir(tmp_path / "checkpoints")
