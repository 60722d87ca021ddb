"""The demo through the generic cluster executor (profiles/cluster-generic) on a real SLURM cluster.

Selected with `pytest -m slurm`, like tests/test_slurm.py, whose cluster fixture and helpers it
reuses (root and `../shared/tools/local-slurm.sh` needed, else it skips). The profile runs as
shipped: `sbatch` is the generic submit command, `slurm-status.sh` the status command and
`scancel` the cancel command; only status polling is made faster. The same reduced demo as
tests/test_slurm.py (32 videos, 2 shards, one experiment, one seed) runs locally with
`--cores 2` (the reference) and, at the same time, through the generic executor, one
submission per job (no grouping). An extraction submission is `scancel`led once its shard has
committed some, not all, videos; the profile's retries resubmit it within the same run.
Measured: 7.5 minutes for the module on the shared 2-core machine with other work running
(2026-12-07; the runs themselves 437 s).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_slurm as slurm
from test_slurm import slurm_cluster  # noqa: F401  (the module-scoped fixture that starts SLURM)

pytestmark = pytest.mark.slurm

GENERIC_ARGS = (
    "--workflow-profile", "profiles/cluster-generic",
    "--seconds-between-status-checks", "2",
    "--latency-wait", "5",
)
EXTRACT_NAME = "actiondiff-extract_features"  # the job name the profile's sbatch gives extraction


def job_names(workdir: Path, since: str) -> dict[str, tuple[str, str, str]]:
    """SLURM job id -> (job name, state, AllocTRES) of the jobs submitted from `workdir`."""
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-a", "--starttime", since, "--format=JobID,JobName,State,AllocTRES,WorkDir"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {i: (name, state, tres) for i, name, state, tres, cwd in rows if Path(cwd).resolve() == workdir.resolve()}


def scheduler_log(workdir: Path, job_id: str) -> Path:
    """The sbatch `--output` of an extraction job, as the profile names it."""
    return workdir / "logs" / "cluster" / "extract_features" / f"{job_id}.log"


def cancel_mid_shard(workdir: Path, process: subprocess.Popen, timeout: float = 400) -> tuple[str, int, set[str]]:
    """Waits until a running extraction job has committed some, not all, videos of its shard,
    then scancels it. Returns (SLURM id, shard, ids committed in that shard)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended before a job was cancelled:\n{process.output.read_text()[-3000:]}")
        out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%j|%Z"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            job_id, state, name, cwd = line.split("|")
            if state != "RUNNING" or name != EXTRACT_NAME or Path(cwd).resolve() != workdir.resolve():
                continue
            shards = slurm.shards_in_log(scheduler_log(workdir, job_id))
            if not shards:
                continue
            done = slurm.committed_ids(workdir) & slurm.shard_ids(workdir, shards[0])
            if 0 < len(done) < slurm.SHARD_SIZE:
                subprocess.run(["scancel", job_id], check=True)
                return job_id, shards[0], done
        time.sleep(0.2)
    raise AssertionError("no extraction job was seen running half-way through a shard")


@dataclass
class Runs:
    local: Path
    generic: Path
    cancelled_job: str
    cancelled_shard: int
    committed_in_shard: set[str]
    code: int | None  # exit code of the generic run (None: it hung and was killed)
    output: str  # its output's tail
    since: str


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory) -> Runs:  # noqa: F811
    """Demo inputs built once; the local reference and the generic-executor run side by side."""
    start, since = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S")
    inputs = slurm.make_workdir(tmp_path_factory.mktemp("inputs"))
    slurm.snakemake(inputs, "--cores", "2", "make_demo_data", "make_tiny_weights")
    local = slurm.make_workdir(tmp_path_factory.mktemp("local"), inputs / "resources")
    generic = slurm.make_workdir(tmp_path_factory.mktemp("generic"), inputs / "resources")
    local_process = slurm.start_snakemake(local, "--cores", "2")
    process = slurm.start_snakemake(generic, *GENERIC_ARGS)
    try:
        job_id, shard, done = cancel_mid_shard(generic, process)
        code, output = slurm.finish(process)
    finally:
        if process.poll() is None:
            process.kill()
        if process.returncode != 0:
            slurm.cancel_jobs_of(generic)
    local_code, local_tail = slurm.finish(local_process)
    assert local_code == 0, local_tail
    print(f"\ncluster-generic test runs: {time.monotonic() - start:.0f} s; cancelled job {job_id} in shard {shard}")
    return Runs(local, generic, job_id, shard, done, code, output, since)


def test_cancelled_job_is_retried_and_the_run_completes(runs):
    assert runs.code == 0, runs.output
    jobs = job_names(runs.generic, runs.since)
    assert jobs[runs.cancelled_job][1].startswith("CANCELLED"), jobs
    # The shard's retry: a later extraction job that ran the same shard and completed.
    retried = [i for i, (name, state, _) in jobs.items() if name == EXTRACT_NAME and state == "COMPLETED"
               and runs.cancelled_shard in slurm.shards_in_log(scheduler_log(runs.generic, i))]
    assert retried and all(int(i) > int(runs.cancelled_job) for i in retried), jobs
    summary = json.loads((slurm.cache_dir(runs.generic) / "shards" / f"{runs.cancelled_shard}.json").read_text())
    assert runs.committed_in_shard <= set(summary["skipped"])  # what the cancelled job committed was kept


def test_resources_are_mapped_as_in_the_slurm_profile(runs):
    jobs = job_names(runs.generic, runs.since)
    names = {name for name, _, _ in jobs.values()}
    assert names == {EXTRACT_NAME, "actiondiff-train_head", "actiondiff-evaluate_head"}, jobs
    first_try = {EXTRACT_NAME: "8000M", "actiondiff-train_head": "8000M", "actiondiff-evaluate_head": "2000M"}
    for job_id, (name, _, tres) in jobs.items():
        tres = dict(item.split("=", 1) for item in tres.split(",") if "=" in item)
        if name == EXTRACT_NAME:
            assert tres.get("gres/gpu") == "1" and tres["cpu"] == "2", tres
        else:
            assert "gres/gpu" not in tres and tres["cpu"] == "1", tres
        # A retry (after the cancel) asks for twice the memory.
        assert tres["mem"] == first_try[name] or (name == EXTRACT_NAME and tres["mem"] == "16000M"), (job_id, tres)


def test_store_and_tables_equal_local_run(runs):
    files = slurm.store_files(runs.generic)
    assert files and "zarr.json" in files
    assert files == slurm.store_files(runs.local)
    for table in slurm.TABLES:
        assert (runs.generic / table).read_bytes() == (runs.local / table).read_bytes(), table
