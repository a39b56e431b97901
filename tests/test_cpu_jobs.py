"""Commands run side by side on disjoint CPU groups; the driver trains unfinished seeds that way."""

import json
import os
import pathlib
import sys
import time

import pytest

from ocjax import cpu_jobs, reproduce


@pytest.mark.parametrize("num_cpus", [1, 2, 3, 5, 8])
def test_cpu_groups_are_disjoint_consecutive_and_balanced(num_cpus):
    cpus = [10 + 2 * i for i in range(num_cpus)]  # Arbitrary ids, in order.
    for jobs in range(1, num_cpus + 1):
        groups = cpu_jobs.cpu_groups(jobs, cpus)
        assert len(groups) == jobs
        assert [c for g in groups for c in g] == cpus  # Every CPU once, in order.
        sizes = [len(g) for g in groups]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("jobs", [0, 3])
def test_more_jobs_than_cpus_is_named(jobs):
    with pytest.raises(
        ValueError, match=f"Cannot run {jobs} jobs on 2 CPU.*--jobs must be between 1 and 2"
    ):
        cpu_jobs.cpu_groups(jobs, [0, 1])


def _probe(path: str, seconds: float, exit_code: int = 0) -> list[str]:
    """A command that records its CPU affinity and start/end times in `path`."""
    code = (
        "import json, os, sys, time; start = time.time(); "
        f"time.sleep({seconds}); "
        f"json.dump({{'cpus': sorted(os.sched_getaffinity(0)), 'start': start, "
        f"'end': time.time()}}, open({path!r}, 'w')); sys.exit({exit_code})"
    )
    return [sys.executable, "-c", code]


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(cpu_jobs.available_cpus()) < 2,
    reason="needs CPU affinity and at least 2 CPUs",
)
def test_commands_run_at_most_jobs_at_a_time_each_on_its_own_cpus(tmp_path):
    cpus = cpu_jobs.available_cpus()[:2]
    paths = [str(tmp_path / f"probe{i}.json") for i in range(3)]
    logs = [str(tmp_path / "logs" / f"probe{i}.log") for i in range(3)]
    before = os.sched_getaffinity(0)
    cpu_jobs.run_pinned([_probe(p, 0.6) for p in paths], logs, 2, cpus=cpus, poll_seconds=0.05)
    probes = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    assert all(len(p["cpus"]) == 1 and p["cpus"][0] in cpus for p in probes)
    assert probes[0]["cpus"] != probes[1]["cpus"]  # The first two ran side by side.
    assert probes[2]["start"] >= min(probes[0]["end"], probes[1]["end"])  # Then the third.
    for i, a in enumerate(probes):  # Never two at once on the same CPU.
        for b in probes[i + 1 :]:
            if a["cpus"] == b["cpus"]:
                assert a["end"] <= b["start"] or b["end"] <= a["start"]
    assert all(os.path.exists(log) for log in logs)
    assert os.sched_getaffinity(0) == before  # The parent's own mask is restored.


def test_a_failing_command_stops_the_others_and_names_its_log(tmp_path):
    cpus = cpu_jobs.available_cpus()[:2]
    jobs = len(cpus)
    commands = [_probe(str(tmp_path / "fails.json"), 0.1, exit_code=3)]
    commands += [_probe(str(tmp_path / "sleeper.json"), 60.0)] * (jobs - 1)
    logs = [str(tmp_path / f"{i}.log") for i in range(len(commands))]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"seed A failed \(exit code 3\).*0\.log"):
        cpu_jobs.run_pinned(
            commands,
            logs,
            jobs,
            cpus=cpus,
            names=["seed A", "seed B"][: len(commands)],
            poll_seconds=0.05,
        )
    assert time.monotonic() - start < 30  # The 60 s sleeper was stopped, not waited for.
    assert not (tmp_path / "sleeper.json").exists()


def test_parallel_driver_trains_only_unfinished_seeds(tmp_path, monkeypatch):
    workroot = str(tmp_path / "runs")
    base = reproduce.load_protocol_config(reproduce.PROTOCOLS["cae_2shapes"])
    done = reproduce.seed_workdir(workroot, "cae_2shapes", 1)
    os.makedirs(done)
    with open(os.path.join(done, "eval.json"), "w") as f:
        json.dump({"step": base.training.num_steps}, f)
    with open(os.path.join(done, "run.json"), "w") as f:
        json.dump({"seconds": 1.0, "commits": ["abc"]}, f)
    unfinished = reproduce.seed_workdir(workroot, "cae_2shapes", 2)
    os.makedirs(unfinished)
    with open(os.path.join(unfinished, "eval.json"), "w") as f:
        json.dump({"step": 10}, f)  # An interrupted seed resumes.
    with open(os.path.join(unfinished, "run.json"), "w") as f:
        json.dump({"seconds": 1.0, "commits": ["abc"]}, f)
    calls = []
    monkeypatch.setattr(
        cpu_jobs,
        "run_pinned",
        lambda commands, logs, jobs, **kw: calls.append((commands, logs, jobs)),
    )
    reproduce.train_seeds_in_parallel("cae_2shapes", 3, 2, workroot)
    [(commands, logs, jobs)] = calls
    assert [c[-1] for c in commands] == ["0", "2"]
    assert commands[0][1:] == [
        "-m",
        "ocjax.reproduce",
        "cae_2shapes",
        "--workroot",
        workroot,
        "--only_seed",
        "0",
    ]
    assert logs == [
        os.path.join(workroot, "cae_2shapes", "seed0.log"),
        os.path.join(workroot, "cae_2shapes", "seed2.log"),
    ]
    assert jobs == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cae_2shapes", "--jobs", "2", "--only_seed", "0"], "--jobs trains several seeds"),
        (["cae_2shapes", "--jobs", "0"], "--jobs must be between 1 and"),
        (["cae_2shapes", "--jobs", "999"], "--jobs must be between 1 and"),
    ],
)
def test_bad_jobs_arguments_are_named(argv, message):
    with pytest.raises(SystemExit, match=message):
        reproduce.main(argv)
