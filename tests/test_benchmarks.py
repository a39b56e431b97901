"""The step benchmark attributes time to the compiled step's HLO ops and measures its own peak."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from ocjax import profiling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_top_ops_attribute_the_time_to_the_module_ops():
    a = jnp.ones((768, 768))
    f = jax.jit(lambda x: (x @ x) + 1.0).lower(a).compile()
    names = profiling.hlo_names(f.as_text())
    assert names and all(" " not in n for n in names)
    ops = profiling.top_ops(lambda: f(a).block_until_ready(), 3, None, names)
    assert ops and {op["op"] for op in ops} <= set(names)
    assert sum(op["share"] for op in ops) == pytest.approx(1.0)
    assert [op["share"] for op in ops] == sorted((op["share"] for op in ops), reverse=True)
    assert ops[0]["share"] > 0.5  # The 768^3 product dominates the add.
    kinds = dict(profiling.op_kinds(ops))
    assert sum(kinds.values()) == pytest.approx(1.0)


def test_hlo_names_reads_plain_and_root_instructions():
    text = (
        "ENTRY %main {\n  %p = f32[2]{0} parameter(0)\n"
        '  ROOT add.3 = f32[2]{0} add(p, p), metadata={op_name="jit(f)/transpose(jvp(M))/dec/add"}\n}'
    )
    assert profiling.hlo_names(text) == {"p": "f32[2] fwd", "add.3": "f32[2] bwd dec/add"}


@pytest.mark.slow
def test_script_reports_fraction_of_its_own_peak(tmp_path):
    command = [
        sys.executable,
        os.path.join(REPO, "benchmarks", "train_step.py"),
        "--config",
        os.path.join(REPO, "configs", "shapes_cae.py:quick"),
        "--batch=4",
        "--warmup=1",
        "--steps=1",
        "--profile_steps=1",
        "--peak_size=256",
    ]
    out = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["batch"] == 4 and result["input"] == "random"
    assert result["achieved_gflops"] == pytest.approx(
        result["gflop_per_step"] / result["ms_per_step"] * 1e3
    )
    assert result["fraction_of_peak"] == pytest.approx(
        result["achieved_gflops"] / result["peak_gflops_float32"]
    )
    assert 0 < result["fraction_of_peak"] < 1.5 and len(result["top_ops"]) == 10
    assert "top 10 HLO ops" in out.stdout
