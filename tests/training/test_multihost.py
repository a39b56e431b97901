"""Two processes on this machine, 2 CPU devices each, train through `python -m ocjax.main` as
the hosts of a pod would (`OCJAX_COORDINATOR` etc., see `ocjax.parallel.ENVIRONMENT`), and are
compared with one process on 4 devices: the same batches, losses, checkpoints and outputs."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import FAST_COMPILE

# One worker builds the runs every test here reads (pytest.ini: --dist=loadgroup).
pytestmark = pytest.mark.xdist_group("multihost")
REPO = pathlib.Path(__file__).resolve().parents[2]
NUM_STEPS = 5

_CONFIG_FILE = """
from tests.conftest import tiny_config


def get_config():
    config = tiny_config({data_dir!r})
    config.training.update(num_steps={num_steps}, log_every=1, checkpoint_every=3, image_every=2)
    return config
"""

# ocjax.main as on the command line, recording to $RECORD/p<process>.jsonl where training
# starts, a fingerprint of every row of each training batch, and every file it writes; as
# step $SIGNAL_STEP begins, process $SIGNAL_PROCESS sends itself signal $SIGNAL.
_MAIN = """
import hashlib, json, os, signal, sys
import jax
from absl import app
from ocjax import main, visualize
from ocjax.training import trainer, writers

record_dir, iterate = os.environ["RECORD"], trainer.pipeline.iterate
signal_step = int(os.environ.get("SIGNAL_STEP", "0"))


def record(**entry):
    with open(os.path.join(record_dir, f"p{jax.process_index()}.jsonl"), "a") as f:
        f.write(json.dumps(entry) + "\\n")


def recording(data, start=0):
    training = len(data) > 10**9  # The training stream repeats forever.
    if training:
        record(start=start)
    for step, batch in enumerate(iterate(data, start), start + 1):
        if training:
            rows = [hashlib.md5(x.tobytes()).hexdigest() for x in batch["image"]]
            record(step=step, rows=rows)
            if step == signal_step and jax.process_index() == int(os.environ["SIGNAL_PROCESS"]):
                os.kill(os.getpid(), int(os.environ["SIGNAL"]))
        yield batch


def recorded(write, kind):
    def wrapper(path, *args, **kwargs):
        record(wrote=kind, path=str(path))
        return write(path, *args, **kwargs)
    return wrapper


class SummaryWriter(writers.tensorboardX.SummaryWriter):
    def __init__(self, logdir, *args, **kwargs):
        record(wrote="tensorboard", path=str(logdir))
        super().__init__(logdir, *args, **kwargs)


trainer.pipeline.iterate = recording
trainer.files.write_text = recorded(trainer.files.write_text, "text")
visualize.save_png = recorded(visualize.save_png, "png")
writers.tensorboardX.SummaryWriter = SummaryWriter
sys.argv = ["ocjax.main", *sys.argv[1:]]
app.run(main.main, flags_parser=main.parse_flags)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(
    setup: dict, workdir: pathlib.Path, record: pathlib.Path, processes: int, **env: str
) -> list[subprocess.Popen]:
    """Starts `processes` processes of ocjax.main with 4 // processes CPU devices each."""
    record.mkdir(parents=True, exist_ok=True)
    base = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        # Unoptimised XLA:CPU and a compilation cache shared by the runs: compiling is most
        # of the time of these tiny runs.
        XLA_FLAGS=f"--xla_force_host_platform_device_count={4 // processes} {FAST_COMPILE}",
        JAX_COMPILATION_CACHE_DIR=str(setup["root"] / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=str(REPO),
        RECORD=str(record),
        **env,
    )
    port = _free_port()
    if processes > 1:  # Short timeouts, so that a lost process is noticed within seconds.
        base.update(
            OCJAX_COORDINATOR=f"localhost:{port}",
            OCJAX_NUM_PROCESSES=str(processes),
            OCJAX_INIT_TIMEOUT="60",
            OCJAX_HEARTBEAT_TIMEOUT="10",
            OCJAX_SHUTDOWN_TIMEOUT="10",
        )
    command = [sys.executable, "-c", _MAIN, "--config", setup["config"], "--workdir", workdir]
    return [
        subprocess.Popen(
            [str(c) for c in command],
            cwd=REPO,
            env=dict(base, OCJAX_PROCESS_ID=str(i)) if processes > 1 else base,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]


def _signal(number: int) -> dict[str, str]:
    """Environment under which process 1 sends itself signal `number` as step 3 begins."""
    return {"SIGNAL_STEP": "3", "SIGNAL_PROCESS": "1", "SIGNAL": str(int(number))}


def _finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    """Return codes, stdouts and stderrs of processes once all have ended."""
    results = []
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _records(record: pathlib.Path, process: int) -> list[dict]:
    path = record / f"p{process}.jsonl"
    return [json.loads(line) for line in path.open()] if path.exists() else []


def _losses(workdir: pathlib.Path) -> dict[int, float]:
    records = map(json.loads, (workdir / "metrics.jsonl").open())
    return {r["step"]: r["loss"] for r in records if "loss" in r}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """One process on 4 devices; two processes stopped by SIGTERM to process 1 at step 3,
    then resumed to the end."""
    root = tmp_path_factory.mktemp("multihost")
    (root / "tiny.py").write_text(_CONFIG_FILE.format(data_dir=data_dir, num_steps=NUM_STEPS))
    setup = {"config": root / "tiny.py", "root": root}
    # The single-process run renders the dataset (if no test has) before two processes read it.
    ((code, _, err),) = _finish(_start(setup, root / "one", root / "record_one", 1))
    assert code == 0, err
    stopped = _finish(
        _start(setup, root / "two", root / "record_stopped", 2, **_signal(signal.SIGTERM))
    )
    resumed = _finish(_start(setup, root / "two", root / "record_resumed", 2))
    return dict(setup, stopped=stopped, resumed=resumed)


@pytest.mark.slow
def test_hosts_read_their_blocks_of_the_one_host_global_batches(runs):
    root = runs["root"]
    one = {r["step"]: r["rows"] for r in _records(root / "record_one", 0) if "step" in r}
    assert sorted(one) == list(range(1, NUM_STEPS + 1))
    steps = {}
    for name in ("record_stopped", "record_resumed"):
        hosts = [
            {r["step"]: r["rows"] for r in _records(root / name, i) if "step" in r} for i in (0, 1)
        ]
        assert sorted(hosts[0]) == sorted(hosts[1])
        for step in hosts[0]:
            assert len(hosts[0][step]) == len(hosts[1][step]) == 4
            assert not set(hosts[0][step]) & set(hosts[1][step])
            steps[step] = hosts[0][step] + hosts[1][step]
    for step in range(1, NUM_STEPS + 1):
        assert steps[step] == one[step], step


@pytest.mark.slow
def test_two_hosts_train_as_one_host_on_as_many_devices(runs):
    root = runs["root"]
    assert all(code == 0 for code, _, _ in runs["resumed"]), runs["resumed"]
    one, two = _losses(root / "one"), _losses(root / "two")
    assert sorted(one) == sorted(two) == list(range(1, NUM_STEPS + 1))
    for step in one:
        np.testing.assert_allclose(two[step], one[step], rtol=1e-5, atol=1e-7)
    eval_one = json.loads((root / "one" / "eval.json").read_text())
    eval_two = json.loads((root / "two" / "eval.json").read_text())
    assert eval_two["num_images"] == eval_one["num_images"] == 12
    for key, value in eval_one.items():
        if isinstance(value, float):
            np.testing.assert_allclose(eval_two[key], value, rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_only_process_zero_writes_logs_and_images(runs):
    root = runs["root"]
    for name in ("record_stopped", "record_resumed"):
        assert not [r for r in _records(root / name, 1) if "wrote" in r]
        kinds = {r["wrote"] for r in _records(root / name, 0) if "wrote" in r}
        assert {"text", "tensorboard"} <= kinds
    assert "png" in {r["wrote"] for r in _records(root / "record_resumed", 0) if "wrote" in r}
    assert (root / "two" / "images" / "slots_decoder.png").exists()
    out0, out1 = runs["resumed"][0][1], runs["resumed"][1][1]
    assert "resuming at step 4/5" in out0 and "on 2 hosts" in out0 and "test metrics" in out0
    assert "ocjax" not in out1 and "metrics" not in out1  # Only Gloo's connection notes.


@pytest.mark.slow
def test_sigterm_to_one_host_checkpoints_the_same_step_on_both_and_resumes(runs):
    root = runs["root"]
    for code, _, err in runs["stopped"]:
        assert code == 128 + signal.SIGTERM, err
        assert "stopped by SIGTERM at step 4" in err and "Traceback" not in err
    for i in (0, 1):
        stopped_steps = [r["step"] for r in _records(root / "record_stopped", i) if "step" in r]
        assert stopped_steps[-1] == 4  # The step after the one the signal arrived in.
        starts = [r["start"] for r in _records(root / "record_resumed", i) if "start" in r]
        assert starts == [4]  # Both processes restored the checkpoint of step 4.
    checkpoints = sorted(p.name for p in (root / "two" / "checkpoints").iterdir())
    assert checkpoints == ["3", "4", "5"]


@pytest.mark.slow
def test_a_killed_process_ends_the_other_within_the_heartbeat_timeout(runs, tmp_path):
    procs = _start(runs, tmp_path / "run", tmp_path / "record", 2, **_signal(signal.SIGKILL))
    try:
        procs[1].wait(timeout=240)
    finally:
        killed = time.monotonic()
        ((code, _, err),) = _finish(procs[:1], timeout=60)
    waited = time.monotonic() - killed
    assert procs[1].returncode == -signal.SIGKILL
    # JAX's heartbeat (OCJAX_HEARTBEAT_TIMEOUT=10) notices the lost process and aborts.
    assert code not in (0, None) and waited < 60, (code, waited, err[-2000:])
    assert "JAX distributed service detected fatal errors" in err, err[-2000:]
    assert "another task died" in err
