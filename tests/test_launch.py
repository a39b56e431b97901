"""The launch scripts: usage on wrong arguments, no placeholders, and the commands they run
(with `srun` and `gcloud` replaced by stubs that record their arguments)."""

import os
import pathlib
import re
import shutil
import subprocess
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ["launch/gpu_slurm.sh", "launch/tpu_pod.sh"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(script: str, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        ["bash", str(REPO / script), *args],
        check=False,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script):
    assert subprocess.run(["bash", "-n", str(REPO / script)], check=False).returncode == 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_has_no_placeholders(script):
    text = (REPO / script).read_text()
    assert not re.search(r"<your|YOUR_|your[-_]org|<[a-z ]*fork>", text, re.IGNORECASE)


@pytest.mark.parametrize(
    "script, args",
    [
        ("launch/gpu_slurm.sh", []),
        ("launch/gpu_slurm.sh", ["configs/clevr_sa_ae.py"]),
        ("launch/gpu_slurm.sh", ["-h"]),
        ("launch/gpu_slurm.sh", ["--help"]),
        ("launch/gpu_slurm.sh", ["--config", "configs/clevr_sa_ae.py"]),
        ("launch/tpu_pod.sh", []),
        ("launch/tpu_pod.sh", ["--help"]),
        ("launch/tpu_pod.sh", ["my-tpu", "us-central2-b"]),
        ("launch/tpu_pod.sh", ["install", "my-tpu"]),
        ("launch/tpu_pod.sh", ["train", "my-tpu", "us-central2-b", "configs/clevr_sa_ae.py"]),
    ],
)
def test_wrong_arguments_print_usage(script, args):
    result = _run(script, *args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "unbound variable" not in result.stderr
    assert result.stdout == ""


@pytest.fixture
def stubs(tmp_path):
    """`srun` and `gcloud` on PATH that append their arguments (one per line) to a log, and
    keep a copy of any .tar.gz they are given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("srun", "gcloud"):
        stub = bin_dir / name
        stub.write_text(
            "#!/usr/bin/env bash\n"
            f'printf "%s\\n" {name} "$@" >> "$STUB_LOG"\n'
            'for a in "$@"; do if [[ "$a" == *.tar.gz && -f "$a" ]]; then '
            'cp "$a" "$STUB_LOG.tar.gz"; fi; done\n'
        )
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log)}, log


def test_gpu_slurm_runs_ocjax_with_the_overrides(stubs):
    env, log = stubs
    result = _run(
        "launch/gpu_slurm.sh",
        "configs/clevr_sa_ae.py:quick",
        "runs/x",
        "--config.model.dtype=bfloat16",
        env={**env, "PYTHON": "python3"},
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().split("\n")[:-1] == [
        "srun",
        "python3",
        "-m",
        "ocjax.main",
        "--config",
        "configs/clevr_sa_ae.py:quick",
        "--workdir",
        "runs/x",
        "--config.model.dtype=bfloat16",
    ]


def test_gpu_slurm_names_a_missing_config(stubs):
    env, log = stubs
    result = _run("launch/gpu_slurm.sh", "configs/nope.py", "runs/x", env=env)
    assert result.returncode == 2 and "configs/nope.py" in result.stderr
    assert not log.exists()


def test_tpu_pod_install_copies_this_checkout_and_installs_jax_tpu(stubs):
    env, log = stubs
    result = _run("launch/tpu_pod.sh", "install", "my-tpu", "us-central2-b", env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert "scp" in calls and "my-tpu:ocjax.tar.gz" in calls
    assert calls.count("--worker=all") == 2 and calls.count("us-central2-b") == 2
    assert "pip install -q -e ocjax 'jax[tpu]'" in calls
    with tarfile.open(f"{log}.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"setup.py", "ocjax/main.py", "configs/clevr_sa_ae.py", "launch/tpu_pod.sh"} <= names
    assert not any(n.startswith(("runs/", ".git/")) or "__pycache__" in n for n in names)


def test_tpu_pod_train_runs_ocjax_on_every_host(stubs):
    env, log = stubs
    result = _run(
        "launch/tpu_pod.sh",
        "train",
        "my-tpu",
        "us-central2-b",
        "configs/clevr_sa_ae.py",
        "gs://bucket/runs/sa ae",
        "--config.model.dtype=bfloat16",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    command = log.read_text().split("\n")[-2]
    assert command == (
        "cd ocjax && OCJAX_DISTRIBUTED=1 python3 -m ocjax.main --config configs/clevr_sa_ae.py "
        "--workdir gs://bucket/runs/sa\\ ae --config.model.dtype=bfloat16"
    )
    assert "--worker=all" in log.read_text()


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_document_the_variables_that_connect_hosts(script):
    from ocjax.parallel import ENVIRONMENT

    text = (REPO / script).read_text()
    assert [name for name in ENVIRONMENT if name not in text] == []
    assert "tests/training/test_multihost.py" in text


def test_tpu_pod_train_passes_the_timeouts_on(stubs):
    env, log = stubs
    env = {**env, "OCJAX_HEARTBEAT_TIMEOUT": "30", "OCJAX_SHUTDOWN_TIMEOUT": "60"}
    result = _run(
        "launch/tpu_pod.sh", "train", "t", "z", "configs/clevr_sa_ae.py", "gs://b/r", env=env
    )
    assert result.returncode == 0, result.stderr
    command = log.read_text().split("\n")[-2]
    assert command.startswith(
        "cd ocjax && OCJAX_DISTRIBUTED=1 OCJAX_HEARTBEAT_TIMEOUT=30 OCJAX_SHUTDOWN_TIMEOUT=60 "
        "python3 -m ocjax.main "
    )


@pytest.mark.parametrize("tasks, distributed", [("1", ""), ("4", "1")])
def test_gpu_slurm_connects_the_processes_of_several_tasks(stubs, tasks, distributed):
    env, log = stubs
    srun = pathlib.Path(env["PATH"].split(os.pathsep)[0]) / "srun"
    srun.write_text(
        '#!/usr/bin/env bash\necho "OCJAX_DISTRIBUTED=${OCJAX_DISTRIBUTED:-}" > "$STUB_LOG"\n'
    )
    env = {**env, "SLURM_NTASKS": tasks, "OCJAX_DISTRIBUTED": ""}
    result = _run("launch/gpu_slurm.sh", "configs/clevr_sa_ae.py", "runs/x", env=env)
    assert result.returncode == 0, result.stderr
    assert log.read_text() == f"OCJAX_DISTRIBUTED={distributed}\n"
