"""The reproduction driver runs a protocol end to end and writes a well-formed report row."""

import dataclasses
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import coco_dinosaur
from ocjax import reproduce
from ocjax.models import build_model
from ocjax.training import trainer
from tests.conftest import tiny_config

TINY = reproduce.Protocol(
    system="Slot Attention AE",
    data="tiny CLEVR-like",
    config="configs/clevr_sa_ae.py:quick",
    metric="decoder/fg_ari",
    metric_label="FG-ARI",
    paper="98.8 ± 0.3",
    target=0.5,
    picture="slots_decoder",
    extra_metrics=(("decoder/mbo", "mBO"),),
)


def _table_rows(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = lines.index(reproduce.TABLE_HEADER)
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2 :] if line]


def test_held_out_evaluation_is_logged_during_training(config, tmp_path):
    config.training.update(num_steps=6, log_every=2)
    config.evaluation.update(every_steps=3, heldout_examples=5)
    trainer.train_and_evaluate(config, str(tmp_path))
    records = reproduce.read_metrics(str(tmp_path))
    held_out = {r["step"]: r for r in records if "eval/decoder/fg_ari" in r}
    assert sorted(held_out) == [3, 6]
    assert held_out[3]["eval/num_images"] == 5  # The fixed subset, not the whole split.
    test = {r["step"]: r for r in records if "test/decoder/fg_ari" in r}
    assert sorted(test) == [6]
    final = json.loads((tmp_path / "eval.json").read_text())
    assert final["num_images"] == config.data.clevr_like.num_test
    assert test[6]["test/decoder/fg_ari"] == pytest.approx(final["decoder/fg_ari"])


def test_unknown_held_out_split_is_named(config, tmp_path):
    config.evaluation.update(every_steps=3, heldout_split="dev")
    with pytest.raises(ValueError, match="no split 'dev'.*'validation'"):
        trainer.train_and_evaluate(config, str(tmp_path))


def test_driver_writes_row_curve_and_masks(data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.training.update(num_steps=4, log_every=2)
    config.evaluation.update(every_steps=2, heldout_examples=4)
    docs = tmp_path / "docs"
    reference = tmp_path / "official.csv"
    reference.write_text("step,fg_ari\n2,0.1\n4,0.3\n")
    row = reproduce.reproduce(
        "tiny",
        seeds=2,
        workroot=str(tmp_path / "runs"),
        docs=str(docs),
        protocol=TINY,
        config=config,
        reference=[str(reference)],
        reference_label="official",
    )
    # Independent recomputation of the summary from the seeds' eval.json files.
    values = [
        json.loads((tmp_path / "runs" / "tiny" / f"seed{k}" / "eval.json").read_text())
        for k in range(2)
    ]
    fg_ari = np.array([v["decoder/fg_ari"] for v in values])
    assert values[0]["decoder/fg_ari"] != values[1]["decoder/fg_ari"]  # Seeds differ.
    rows = _table_rows(str(docs / "reproductions.md"))
    assert len(rows) == 1 and len(rows[0]) == len(reproduce.TABLE_COLUMNS)
    cells = dict(zip(reproduce.TABLE_COLUMNS, rows[0]))
    assert cells["result (mean ± std)"].startswith(
        f"FG-ARI {fg_ari.mean():.3f} ± {fg_ari.std(ddof=1):.3f}; mBO "
    )
    assert cells["seeds"] == "2" and cells["steps"] == "4 × batch 8"
    assert cells["reached"] == ("yes" if fg_ari.mean() >= 0.5 else "no")
    assert cells["date"] and cells["commit"] and "cores" in cells["machine"]
    run = json.loads((tmp_path / "runs" / "tiny" / "seed0" / "run.json").read_text())
    assert run["commits"] == [cells["commit"]] and run["seconds"] > 0
    loads = [
        json.loads((tmp_path / "runs" / "tiny" / f"seed{k}" / "run.json").read_text())["load"]
        for k in range(2)
    ]
    assert cells["machine"].endswith(f"; load {max(loads):.1f}")
    assert row["metric_values"] == list(fg_ari)
    for picture in ("tiny_curve.png", "tiny_masks.png"):
        assert (docs / "reproductions" / picture).stat().st_size > 1000

    # A rerun reuses finished seeds (no training), redraws the pictures and does not repeat
    # the row.
    mtime = os.path.getmtime(tmp_path / "runs" / "tiny" / "seed0" / "eval.json")
    reproduce.reproduce(
        "tiny",
        seeds=2,
        workroot=str(tmp_path / "runs"),
        docs=str(docs),
        protocol=TINY,
        config=config,
    )
    assert os.path.getmtime(tmp_path / "runs" / "tiny" / "seed0" / "eval.json") == mtime
    assert len(_table_rows(str(docs / "reproductions.md"))) == 1


def test_a_seed_trained_alone_is_reused_by_the_driver(data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.training.update(num_steps=2, log_every=1)
    runs = tmp_path / "runs"
    alone = reproduce.train_one_seed("tiny", 1, workroot=str(runs), protocol=TINY, config=config)
    seed1 = runs / "tiny" / "seed1"
    assert not (runs / "tiny" / "seed0").exists()
    assert json.loads((seed1 / "run.json").read_text())["seconds"] > 0
    mtime = os.path.getmtime(seed1 / "eval.json")
    row = reproduce.reproduce(
        "tiny",
        seeds=2,
        workroot=str(runs),
        docs=str(tmp_path / "docs"),
        protocol=TINY,
        config=config,
    )
    assert os.path.getmtime(seed1 / "eval.json") == mtime  # Reused, not trained again.
    assert row["metric_values"][1] == alone["decoder/fg_ari"]


def test_read_metrics_keeps_the_last_record_of_a_repeated_step(tmp_path):
    lines = [
        {"step": 2, "loss": 1.0},
        {"step": 4, "loss": 0.5},
        {"step": 4, "loss": 0.4},
        {"step": 4, "eval/x": 0.1},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert reproduce.read_metrics(str(tmp_path)) == [
        {"step": 2, "loss": 1.0},
        {"step": 4, "loss": 0.4, "eval/x": 0.1},
    ]


def test_row_load_is_the_largest_recorded_or_says_when_it_was_taken():
    assert reproduce.describe_load([0.5, 1.73, 1.2]) == "load 1.7"
    now = reproduce.describe_load([0.5, None])  # A seed trained before loads were recorded.
    assert re.fullmatch(r"load \d+\.\d when the row was written", now), now


def test_row_format_rejects_missing_columns_and_escapes_pipes():
    values = {c: "x" for c in reproduce.TABLE_COLUMNS}
    values["paper"] = "a | b"
    row = reproduce.format_row(values)
    assert row.count(" | ") == len(reproduce.TABLE_COLUMNS) - 1 and "a \\| b" in row
    with pytest.raises(KeyError, match="date"):
        reproduce.format_row({k: v for k, v in values.items() if k != "date"})


@pytest.mark.parametrize("name", sorted(reproduce.PROTOCOLS))
def test_every_protocol_config_builds_its_model_and_evaluates_during_training(name, tmp_path):
    protocol = reproduce.PROTOCOLS[name]
    config = reproduce.load_protocol_config(protocol)
    backbone = config.model.get("backbone")
    if backbone is not None and backbone.kind == "ocjax_vit":  # The encoder's run, as saved.
        # `runs/reproduce/<protocol>/seed0`: the flagship's or an encoder pretrained here.
        encoder = reproduce.PROTOCOLS[backbone.workdir.split("/")[2]]
        encoder_config = reproduce.load_protocol_config(encoder)
        (tmp_path / "config.json").write_text(encoder_config.to_json_best_effort())
        backbone.workdir = str(tmp_path)
        assert encoder_config.data.resolution == config.data.resolution
    if config.model.get("teacher") is not None:  # SPOT's teacher run, as saved.
        stage1 = (protocol.paired or ("spot_teacher_clevr",))[0]
        teacher = reproduce.load_protocol_config(reproduce.PROTOCOLS[stage1])
        if teacher.model.backbone.kind == "ocjax_vit":
            teacher.model.backbone.workdir = str(tmp_path)
        (tmp_path / "teacher").mkdir()
        (tmp_path / "teacher" / "config.json").write_text(teacher.to_json_best_effort())
        config.model.teacher.workdir = str(tmp_path / "teacher")
    assert config.evaluation.every_steps, "the curve needs held-out evaluation"
    steps = config.training.num_steps or round(
        config.training.num_epochs
        * config.data[config.data.name].num_train
        / config.training.batch_size
    )
    assert steps % config.evaluation.every_steps == 0
    assert protocol.target is None or 0 < protocol.target <= 1
    res, channels = config.data.resolution, config.data.get("channels", 3)
    model = build_model(**config.model)
    images = jax.ShapeDtypeStruct((2, res, res, channels), jnp.float32)
    rngs = {"params": jax.random.key(0), "slots": jax.random.key(1)}
    variables = jax.eval_shape(lambda x: model.init(rngs, x, train=False), images)
    outputs = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, rngs={"slots": rngs["slots"]}),
        variables,
        images,
    )
    kind = protocol.metric.split("/")[0]
    if kind == "parts":
        assert outputs["masks"].shape == (2, config.model.num_parts + 1, res, res)
    elif "features" in outputs:  # Feature reconstruction (DINOSAUR): masks over the patches.
        assert outputs["reconstruction"].shape == outputs["features"].shape
        assert outputs["masks"].shape[:2] == (2, config.model.num_slots)
    elif "tokens" in outputs:  # A pretrained encoder, scored by k-means of its patch tokens.
        grid = (res // config.model.patch_size) ** 2
        assert outputs["tokens"].shape == (2, grid, config.model.dim)
        assert config.evaluation.probe.steps > 0
    elif kind in ("decoder", "readout"):
        assert outputs["reconstruction"].shape == (2, res, res, channels)
    elif kind == "attention":
        assert outputs["attention"].shape[0] == 2
    else:
        assert protocol.metric == "vqa/ap" and config.evaluation.probe.steps > 0


def test_orderings_name_registered_protocols_and_agree_both_ways():
    claims = {
        (name, o.metric, o.other): o.relation
        for name, p in reproduce.PROTOCOLS.items()
        for o in p.orderings
    }
    flip = {">": "<", "<": ">"}
    for (name, metric, other), relation in claims.items():
        assert other in reproduce.PROTOCOLS and other != name
        assert claims.get((other, metric, name), flip[relation]) == flip[relation]


def _write_eval(workroot, name, values, step):
    for seed, value in enumerate(values):
        path = workroot / name / f"seed{seed}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "eval.json").write_text(json.dumps({"m": value, "step": step}))
        (path / "run.json").write_text(json.dumps({"seconds": 1.0, "commits": ["abc"]}))


def test_judge_checks_the_target_and_each_ordering(tmp_path, monkeypatch):
    monkeypatch.setitem(reproduce.PROTOCOLS, "other", TINY)
    steps = reproduce.load_protocol_config(TINY).training.num_steps
    ordering = reproduce.Ordering("m", "M", ">", "other")
    protocol = dataclasses.replace(TINY, metric="m", target=0.5, orderings=(ordering,))
    mine = [{"m": 0.6}, {"m": 0.8}]  # Mean 0.7.
    assert reproduce.judge(protocol, mine, str(tmp_path))[0] == "pending"
    _write_eval(tmp_path, "other", [0.9], steps)  # One seed where two are needed: still pending.
    assert reproduce.judge(protocol, mine, str(tmp_path))[0] == "pending"
    _write_eval(tmp_path, "other", [0.5, 0.95], steps - 1)  # A shorter run: still pending.
    assert reproduce.judge(protocol, mine, str(tmp_path))[0] == "pending"
    _write_eval(tmp_path, "other", [0.5, 0.95], steps)  # Mean 0.725 > 0.7: the ordering fails.
    verdict, checks = reproduce.judge(protocol, mine, str(tmp_path))
    assert verdict == "no" and "0.700 > 0.725" in checks[1]
    below = dataclasses.replace(protocol, orderings=(dataclasses.replace(ordering, relation="<"),))
    assert reproduce.judge(below, mine, str(tmp_path))[0] == "yes"
    assert reproduce.judge(dataclasses.replace(below, target=0.71), mine, str(tmp_path))[0] == "no"
    report_only = dataclasses.replace(protocol, target=None, orderings=())
    assert reproduce.judge(report_only, mine, str(tmp_path))[0] == "–"
    beats = dataclasses.replace(report_only, beats=(("m", "base", "M"),))
    above = [{"m": 0.6, "base": 0.2}, {"m": 0.8, "base": 0.9}]  # Means 0.7 > 0.55.
    assert reproduce.judge(beats, above, str(tmp_path))[0] == "yes"
    below = [{"m": 0.6, "base": 0.9}, {"m": 0.8, "base": 0.9}]
    verdict, checks = reproduce.judge(beats, below, str(tmp_path))
    assert verdict == "no" and "0.700 > baseline 0.900" in checks[0]
    with pytest.raises(ValueError, match="'>' or '<'"):
        reproduce.Ordering("m", "M", ">=", "other")


def test_reference_curves_are_read_by_step_and_checked(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("step,ari_bg,mbo\n500,0.1,0.2\n1000,0.3,0.4\n")
    b.write_text("step,ari_bg,mbo\n500,0.2,0.2\n")
    assert reproduce.read_reference([str(a), str(b)], "ari_bg") == {500: [0.1, 0.2], 1000: [0.3]}
    with pytest.raises(ValueError, match="'fg_ari'"):
        reproduce.read_reference([str(a)], "fg_ari")


def test_seed_config_moves_other_protocols_workdirs_under_the_workroot():
    base = reproduce.load_protocol_config(reproduce.PROTOCOLS["parts_figures"])
    config = reproduce.seed_config(base, 2, "/elsewhere/root")
    assert config.seed == base.seed + 2
    before = [v for v in _strings(base.to_dict()) if v.startswith("runs/reproduce/")]
    after = [v for v in _strings(config.to_dict()) if v.startswith("/elsewhere/root/")]
    assert before and [v.replace("runs/reproduce", "/elsewhere/root", 1) for v in before] == after


def test_a_student_seed_reads_its_own_seeds_teacher():
    protocol = reproduce.PROTOCOLS["spot_student_patches"]
    base = reproduce.load_protocol_config(protocol)
    for seed in range(3):
        config = reproduce.seed_config(base, seed, "/root", protocol.paired)
        assert config.model.teacher.workdir == f"/root/spot_teacher_patches/seed{seed}"
    # Unpaired protocols keep reading seed 0 (the flagship's ViT is one shared backbone).
    config = reproduce.seed_config(base, 2, "/root")
    assert config.model.teacher.workdir == "/root/spot_teacher_patches/seed0"


def _strings(tree):
    for value in tree.values():
        if isinstance(value, dict):
            yield from _strings(value)
        elif isinstance(value, str):
            yield value


def test_dinosaur_row_quotes_the_mlp_decoders_figures():
    # SPOT's Table 1 has two DINOSAUR rows: the transformer decoder (COCO mBO_i 32.3, mBO_c
    # 38.8) and DINOSAUR-MLP (27.7, 30.9); `dinosaur_clevr` trains the MLP decoder.
    protocol = reproduce.PROTOCOLS["dinosaur_clevr"]
    path, preset = protocol.config.split(":")
    assert path == "configs/coco_dinosaur.py"
    assert coco_dinosaur.get_config(preset).model.decoder == "mlp"
    paper = protocol.paper
    assert "mBO_i 27.7, mBO_c 30.9" in paper and "32.3" not in paper and "34.1" not in paper
    docs = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "reproductions.md")
    with open(docs, encoding="utf-8") as file:
        rows = [line for line in file if line.startswith("| `dinosaur_clevr`")]
    assert rows and all("27.7" in row and "32.3" not in row for row in rows)
