"""A `gs://` workdir: every output goes through the bucket's file system, or the run is refused
at start naming the package to install. The bucket is a local folder behind epath's mock."""

import importlib.util
import json
import os

import pytest
from etils import epath
from etils.epath import backend, gpath, testing

from ocjax import files
from ocjax.training import checkpoint, trainer

BUCKET = "gs://ocjax-test-bucket"


def _bucket_on_disk(root):
    """epath's mock: every `gs://ocjax-test-bucket/...` path lives under `root`."""
    local = lambda p: str(p).replace(BUCKET, str(root))  # noqa: E731
    one = lambda name: lambda _, p, *a, **k: getattr(backend.os_backend, name)(local(p), *a, **k)  # noqa: E731
    two = lambda name: (
        lambda _, p, q, *a, **k: getattr(backend.os_backend, name)(  # noqa: E731
            local(p), local(q), *a, **k
        )
    )
    names = ("exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove")
    return testing.mock_epath(
        **{n: one(n) for n in names + ("rmtree", "stat", "walk")},
        **{n: two(n) for n in ("copy", "rename", "replace")},
    )


def test_bucket_workdir_holds_every_output(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)  # Else epath skips the mock.
    root = tmp_path / "bucket"
    manager = checkpoint.checkpoint_manager
    # Orbax writes arrays with TensorStore, which reaches gs:// itself (not through epath):
    # only its directory is redirected here.
    monkeypatch.setattr(
        checkpoint,
        "checkpoint_manager",
        lambda workdir, keep: manager(workdir.replace(BUCKET, str(root)), keep),
    )
    config.training.update(num_steps=4, image_every=2)
    with _bucket_on_disk(root):
        trainer.train_and_evaluate(config, f"{BUCKET}/run")
    run = root / "run"
    assert json.loads((run / "eval.json").read_text())["step"] == 4
    assert json.loads((run / "config.json").read_text())["model"]["name"] == config.model.name
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[:2] == [2, 4]
    assert (run / "images" / "slots_decoder.png").stat().st_size > 0
    events = [p for p in (run / "tensorboard").iterdir() if p.name.startswith("events")]
    assert events and events[0].stat().st_size > 0
    assert sorted(os.listdir(run / "checkpoints")) == ["3", "4"]
    assert not (tmp_path / "gs:").exists()  # The old failure: a local folder named "gs:".


def test_bucket_without_its_file_system_is_refused(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("tensorflow", "gcsfs") else find_spec(name, *a),
    )
    with pytest.raises(ValueError, match="pip install gcsfs"):
        files.workdir_path(f"{BUCKET}/run")
    with pytest.raises(ValueError, match="ftp://, which ocjax cannot write to"):
        files.workdir_path("ftp://host/run")
    assert files.workdir_path("runs/x") == epath.Path(os.path.abspath("runs/x"))


def test_local_text_writes_leave_no_partial_file(tmp_path):
    path = epath.Path(tmp_path) / "a" / "eval.json"
    files.write_text(path, "first")
    files.write_text(path, "second")
    assert path.read_text() == "second" and sorted(os.listdir(tmp_path / "a")) == ["eval.json"]
