"""Every config and each of its presets gives a model and objective that build (values the
registries accept), without touching data: a typo in a preset fails here, not mid-run."""

import importlib
import os

import pytest

from ocjax.models import build_model
from ocjax.training import sections
from ocjax.training.objectives import build_objective

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = sorted(
    f[:-3] for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".py") and f[0] != "_"
)
# Configs whose presets modify one of several stages, each run named with its stage.
STAGES = {"coco_spot": ("teacher", "student")}


def _presets(name: str) -> list[str]:
    """The default and each preset of config `name` (for staged configs, each with each stage;
    an encoder pretrained here with `cpu`, the data it was trained on)."""
    presets = [
        f"cpu+{p}" if p in sections.ENCODER_RUNS else p
        for p in importlib.import_module(f"configs.{name}").PRESETS
    ]
    stages = STAGES.get(name)
    if stages is None:
        return ["", *presets]
    modifiers = [p for p in presets if p not in stages]
    return [f"{s}+{p}" if p else s for s in stages for p in ("", *modifiers)]


CASES = [(name, preset) for name in NAMES for preset in _presets(name)]


@pytest.mark.parametrize("name, preset", CASES)
def test_every_preset_builds_its_model_and_objective(name, preset):
    config = importlib.import_module(f"configs.{name}").get_config(preset)
    build_objective(**config.objective)
    backbone = config.model.get("backbone")
    if backbone is not None and backbone.get("kind") == "ocjax_vit":
        return  # Reads another run's config.json (tests/training cover it on tiny runs).
    teacher = config.model.get("teacher")
    if teacher is not None and teacher.get("workdir"):
        return  # Reads the teacher run's config.json likewise.
    build_model(**config.model)


# The quick chain of the README: each downstream quick preset with the run it reads.
QUICK_CHAIN = [
    ("coco_dinosaur", "quick"),
    ("coco_spot", "teacher+quick"),
    ("parts", "quick"),
]


@pytest.mark.parametrize("name, preset", QUICK_CHAIN)
def test_quick_presets_read_the_quick_encoder_at_its_resolution(name, preset):
    from configs import mae

    encoder = mae.get_config("quick")
    config = importlib.import_module(f"configs.{name}").get_config(preset)
    assert config.model.backbone.kind == "ocjax_vit"
    assert config.model.backbone.workdir == sections.QUICK_ENCODER_WORKDIR
    # The encoder's positions are learned for its crops: the downstream images match them.
    assert config.data.resolution == encoder.model.image_size
    assert config.data.resolution % encoder.model.patch_size == 0


def test_quick_spot_student_reads_the_quick_teacher():
    from configs import coco_spot

    teacher = coco_spot.get_config("teacher+quick")
    student = coco_spot.get_config("student+quick")
    assert student.model.teacher.workdir == coco_spot.QUICK_TEACHER_WORKDIR
    assert student.model.backbone.to_dict() == teacher.model.backbone.to_dict()
    assert student.training.num_steps == teacher.training.num_steps <= 200


def test_a_missing_encoder_run_names_the_command_that_trains_it(tmp_path):
    from ocjax.models import backbones

    workdir = str(tmp_path / "mae")
    with pytest.raises(FileNotFoundError, match=f"configs/mae.py:quick --workdir {workdir}"):
        backbones.resolve({"kind": "ocjax_vit", "workdir": workdir})


@pytest.mark.parametrize("name", ["coco_dinosaur", "parts"])
@pytest.mark.parametrize("encoder", sorted(sections.ENCODER_RUNS))
def test_encoder_presets_read_the_encoder_pretrained_here(name, encoder):
    module = importlib.import_module(f"configs.{name}")
    config = module.get_config(f"cpu+{encoder}")
    assert config.model.backbone.workdir == f"runs/reproduce/{encoder}_clevr/seed0"
    for bad in (encoder, f"cpu+patches+{encoder}", "cpu+mae+dino"):
        if bad == f"cpu+patches+{encoder}" and "patches" not in module.PRESETS:
            continue
        with pytest.raises(ValueError, match="at most one encoder preset"):
            module.get_config(bad)


def test_spot_students_read_their_encoders_teacher():
    from configs import coco_spot

    for encoder, run in sections.ENCODER_RUNS.items():
        student = coco_spot.get_config(f"student+cpu+{encoder}")
        assert student.model.teacher.workdir == f"runs/reproduce/spot_teacher_{encoder}/seed0"
        assert student.model.backbone.workdir == run
