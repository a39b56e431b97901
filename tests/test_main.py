"""Command line and start-up checks: each bad input fails early with a message that says the fix."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import clevr_sa_ae
from ocjax.main import show_traceback, unknown_override
from ocjax.training import checkpoint, console, trainer
from ocjax.training.writers import rewind
from tests.conftest import FAST_COMPILE

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
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {FAST_COMPILE}",
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


# A user's mistakes on the command line: each is one `ocjax: error:` line, no traceback.
_MISTAKES = {
    "value of the wrong type": (["--config.training.batch_size=abc"], "batch_size"),
    "missing config file": (["--config=configs/no_such_config.py"], "no_such_config.py"),
    "unknown preset": (["--config=configs/clevr_sa_ae.py:huge"], "Unknown preset 'huge'"),
    "missing dataset file": (
        [
            "--config.data.name=multi_dsprites",
            "--config.data.multi_dsprites.manual_dir=/nonexistent/ocjax",
        ],
        "multi_dsprites_colored_on_grayscale.tfrecords",
    ),
    "impossible shapes": (
        ["--config=configs/clevr_slots.py:quick", "--config.data.resolution=30"],
        "does not divide",
    ),
    "eval without a run": (["--mode=eval"], "No checkpoint"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(_MISTAKES))
def test_user_errors_are_one_line(case, tmp_path):
    extra, expected = _MISTAKES[case]
    workdir = tmp_path / "run"
    config = [a for a in extra if a.startswith("--config=")] or [
        "--config=configs/clevr_sa_ae.py:quick"
    ]
    extra = [a for a in extra if not a.startswith("--config=")]
    args = [*config, "--workdir", str(workdir), f"--config.data.data_dir={tmp_path / 'data'}"]
    args += extra
    result = _cli(*args)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ocjax: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert not workdir.exists()  # Nothing is created for a command that cannot run.


def test_traceback_on_request(tmp_path):
    args = ["--config=configs/clevr_sa_ae.py:quick", "--workdir", str(tmp_path), "--mode=eval"]
    result = _cli(*args, env=dict(os.environ, OCJAX_TRACEBACK="1"))
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "No checkpoint" in result.stderr
    assert show_traceback(["x", "--verbosity=1"]) and show_traceback(["x", "-v", "2"])
    assert not show_traceback(["x", "--verbosity=0"]) and not show_traceback(["x"])


_CONFIG_FILE = """
from tests.conftest import tiny_config


def get_config():
    config = tiny_config({data_dir!r})
    config.training.update(num_steps=12, log_every=1, checkpoint_every=5)
    return config
"""

# ocjax.main as on the command line, with a SIGTERM sent to itself as step STOP_AT begins.
_MAIN_WITH_SIGTERM = """
import os, signal, sys
from absl import app
from ocjax import main
from ocjax.training import trainer

stop_at, iterate = int(os.environ.get("STOP_AT", "0")), trainer.pipeline.iterate


def interrupting(data, start=0):
    for step, batch in enumerate(iterate(data, start), start + 1):
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        yield batch


trainer.pipeline.iterate = interrupting
sys.argv = ["ocjax.main", *sys.argv[1:]]
app.run(main.main, flags_parser=main.parse_flags)
"""


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_resume_is_exact(data_dir, tmp_path):
    (tmp_path / "tiny.py").write_text(_CONFIG_FILE.format(data_dir=data_dir))
    workdir = tmp_path / "run"
    args = ["-c", _MAIN_WITH_SIGTERM, "--config", str(tmp_path / "tiny.py"), "--workdir"]

    def run(stop_at):
        env = dict(os.environ, STOP_AT=str(stop_at), PYTHONPATH=REPO)
        return subprocess.run(
            [sys.executable, *args, str(workdir)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    stopped = run(stop_at=7)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "stopped by SIGTERM at step 7" in stopped.stderr and "Traceback" not in stopped.stderr
    assert sorted(int(s) for s in os.listdir(workdir / "checkpoints")) == [5, 7]
    with open(workdir / "metrics.jsonl", "a", encoding="utf-8") as f:  # As if killed later:
        f.write(json.dumps({"step": 8, "loss": 1.0}) + '\n{"step": 9, "lo')  # lines to rewind.

    resumed = run(stop_at=0)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 7/12" in resumed.stdout
    assert "test metrics" in resumed.stdout and str(workdir / "eval.json") in resumed.stdout
    console = resumed.stdout + resumed.stderr.replace("\r", "\n")
    assert "INFO" not in console and "Traceback" not in console
    steps = [r["step"] for r in map(json.loads, (workdir / "metrics.jsonl").open()) if "loss" in r]
    assert steps == list(range(1, 13))

    config = trainer_config(data_dir)
    straight = trainer.train_and_evaluate(config, str(tmp_path / "straight"))
    restored = checkpoint.checkpoint_manager(str(workdir), 5).restore(12)
    for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(restored["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def trainer_config(data_dir):
    """The config of `_CONFIG_FILE`, built in this process."""
    namespace = {}
    exec(_CONFIG_FILE.format(data_dir=data_dir), namespace)  # noqa: S102
    return namespace["get_config"]()


def test_rewind_drops_later_and_cut_records():
    records = [{"step": s, "loss": s / 10} for s in (1, 2, 3, 3, 4)] + [{"step": 3, "test/ari": 1}]
    lines = [json.dumps(r) + "\n" for r in records] + ['{"step": 2, "lo']
    kept = [json.loads(line) for line in rewind(lines, 3, lambda r: "test/ari" in r)]
    assert kept == [r for r in records if r["step"] < 3 or (r["step"] == 3 and "loss" in r)]


def test_results_table_lists_metrics_and_paths():
    table = console.results_table(
        {"step": 10, "split": "test", "decoder/fg_ari": 0.51234, "num_images": 12},
        {"eval.json": "/w/eval.json"},
    )
    lines = table.splitlines()
    assert lines[0] == "test metrics"
    assert any(line.split() == ["decoder/fg_ari", "0.5123"] for line in lines)
    assert any(line.split() == ["num_images", "12"] for line in lines)
    assert lines[-1].split() == ["eval.json", "/w/eval.json"]
