"""The notebooks: committed without outputs, and each runs top to bottom (nbclient) on a tiny
run that the test puts in place of the notebook's parameters cell, showing its masks and metrics.
"""

import base64
import json
import pathlib
import re

import nbclient
import nbformat
import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"

_STEPS = {
    "training.batch_size": 8,
    "training.log_every": 1,
    "training.checkpoint_every": 2,
    "training.image_every": 1000,
    "evaluation.batch_size": 8,
    "evaluation.num_images": 2,
}
_CLEVR = {
    "data.resolution": 32,
    "data.max_objects": 4,
    "data.clevr_like.min_objects": 2,
    "data.clevr_like.num_train": 16,
    "data.clevr_like.num_validation": 8,
    "data.clevr_like.num_test": 8,
}
_SLOTS = {
    "model.num_iterations": 2,
    "model.slot_dim": 16,
    "model.mlp_hidden_dim": 16,
    "model.encoder_channels": [8, 8],
    "model.decoder_hidden_channels": [8],
}

# Per notebook: overrides that shrink its preset to seconds (2 steps of batch 8, 8 test images),
# and the metrics it must show.
TINY = {
    "quickstart.ipynb": (
        {
            **_STEPS,
            **_CLEVR,
            **_SLOTS,
            "training.num_steps": 2,
            "model.num_slots": 4,
            "model.decoder_upsample_channels": [8, 8],  # 8x8 -> 32x32
        },
        ["decoder/fg_ari", "attention/fg_ari"],
    ),
    "slot_attention.ipynb": (
        {
            **_STEPS,
            **_SLOTS,
            "training.num_steps": 2,
            "data.tetrominoes_like.num_train": 16,
            "data.tetrominoes_like.num_validation": 8,
            "data.tetrominoes_like.num_test": 8,
        },
        ["decoder/fg_ari", "attention/fg_ari"],
    ),
    "flagship.ipynb": (
        {
            **_STEPS,
            **_CLEVR,
            "training.num_epochs": 1.0,  # 16 scenes: 2 steps
            "data.views.size": 32,
            "model.patch_size": 8,
            "model.dim": 16,
            "model.depth": 1,
            "model.num_heads": 2,
            "model.mlp_dim": 32,
            "model.num_queries": 5,
            "model.global_dim": 16,
            "model.projection_dim": 8,
            "evaluation.probe.steps": 20,
        },
        ["attention/otsu_iou", "vqa/ap"],
    ),
    "synchrony.ipynb": (
        {
            **_STEPS,
            "training.num_steps": 2,
            "data.shapes.num_train": 16,
            "data.shapes.num_validation": 4,
            "data.shapes.num_test": 8,
            "model.hidden_dim": 8,
            "model.linear_dim": 16,
            "objective.n_init": 2,
        },
        ["readout/ari_bg", "readout/mbo"],
    ),
}

PLACEHOLDER = re.compile(r"<your|YOUR_|your[-_]org", re.IGNORECASE)


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _parameters_index(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def test_every_notebook_has_a_tiny_run():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_is_committed_clean(name):
    nb = _read(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        assert not PLACEHOLDER.search(cell.source), cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip the outputs"
    parameters = nb.cells[_parameters_index(nb)].source
    for variable in ("PRESET", "WORKDIR", "OVERRIDES", "ACCELERATOR"):
        assert re.search(rf"^{variable} = ", parameters, re.MULTILINE), variable


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, set[bytes]]:
    """All text the executed notebook showed, and the PNG images it displayed."""
    text, images = [], set()
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text.append(output.text)
            data = output.get("data", {})
            text.append(data.get("text/plain", ""))
            if "image/png" in data:
                images.add(base64.b64decode(data["image/png"]))
    return "".join(text), images


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs_top_to_bottom(name, data_dir, tmp_path):
    overrides, metrics = TINY[name]
    workdir = tmp_path / "run"
    nb = _read(name)
    parameters = {
        "WORKDIR": str(workdir),
        "OVERRIDES": {**overrides, "data.data_dir": data_dir},
        "ACCELERATOR": "cpu",
        "TENSORBOARD": False,
    }
    source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(_parameters_index(nb) + 1, injected)

    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # Raises CellExecutionError, naming the cell, if any cell fails.

    text, images = _outputs(nb)
    results = sorted(workdir.rglob("eval.json"))
    assert len(results) == (2 if name == "synchrony.ipynb" else 1)
    for path in results:
        shown = [k for k, v in json.loads(path.read_text()).items() if isinstance(v, float)]
        assert set(metrics) <= set(shown)
        missing = [key for key in shown if key not in text]
        assert not missing, f"metrics of {path} not shown: {missing}"
    pictures = sorted(workdir.rglob("images/*.png"))
    assert len(pictures) >= len(results)
    for picture in pictures:
        assert picture.read_bytes() in images, f"{picture} was not displayed"
