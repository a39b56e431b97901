"""Where a jitted step spends its time, and what this device's matmuls reach.

`matmul_peak` times a large `jnp.dot`; `hlo_names` reads an HLO module's instructions
with the source op and pass of each; `top_ops` profiles calls of a function with
`jax.profiler` and ranks the module's ops by time; `op_kinds` sums shares by kind of op.
`benchmarks/train_step.py` prints all of them for a config's train step.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def matmul_peak(dtype: Any, size: int, repeats: int = 8) -> float:
    """Best GFLOP/s of a `[size, size] @ [size, size]` product in `dtype` on device 0."""
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.random.normal(k, (size, size), dtype) for k in keys)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def hlo_names(hlo_text: str) -> dict[str, str]:
    """Instruction name -> `shape fwd|bwd source-op` for each instruction of an HLO module.

    The source op comes from the instruction's `op_name` metadata (e.g. `fwd
    decoder/hidden_0/conv_general_dilated`); `bwd` marks the transposed (backward) pass.
    """
    line_pattern = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)", re.MULTILINE)
    names = {}
    for match in line_pattern.finditer(hlo_text):
        end = hlo_text.find("\n", match.end())
        line = hlo_text[match.end() : end if end >= 0 else None]
        source = re.search(r'op_name="([^"]*)"', line)
        where = source.group(1) if source else ""
        where = re.sub(r"^jit\([^)]*\)/", "", where)
        phase = "bwd" if where.startswith("transpose(") else "fwd"
        where = re.sub(r"^(transpose\()?jvp\([^)]*\)\)?/", "", where)
        names[match.group(1)] = f"{match.group(2).split('{')[0]} {phase} {where}".strip()
    return names


def top_ops(run: Callable[[], None], steps: int, top: int, names: set[str]) -> list[dict[str, Any]]:
    """The `top` HLO ops (instructions in `names`) by time over `steps` calls of `run`.

    From a profiler trace: each entry has the op's name, what it computes (see
    `hlo_names`), ms per step and share of the time of all ops in `names`; runtime and Python events are left out, and events of one op on
    several threads add up.
    """
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp)
        for _ in range(steps):
            run()
        jax.profiler.stop_trace()
        paths = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
        data = jax.profiler.ProfileData.from_file(max(paths))
    totals: collections.Counter[str] = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name in names:
                    totals[event.name] += event.duration_ns
    total = sum(totals.values()) or 1
    return [
        {"op": name, "what": names[name], "ms_per_step": ns / 1e6 / steps, "share": ns / total}
        for name, ns in totals.most_common(top)
    ]


def op_kinds(ops: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Shares of time by kind of op (the name without its `.N` suffix), largest first."""
    shares: collections.Counter[str] = collections.Counter()
    for op in ops:
        shares[re.sub(r"\.\d+$", "", op["op"])] += op["share"]
    return shares.most_common()
