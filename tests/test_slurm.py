"""The demo workflow through a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd).

Select with `pytest -m slurm`; needs root and `../shared/tools/local-slurm.sh` (relative to the
repository root), which this module runs once to start the cluster. Runs three reduced demo
workflows (local `--cores 2`, SLURM, SLURM with an extraction job cancelled): about 10 minutes
on a 2-core machine. The partition and account come from `ACTIONDIFF_SLURM_PARTITION` and
`ACTIONDIFF_SLURM_ACCOUNT` (defaults: the local cluster's `main` / `local`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
# 32 videos in 6 shards of 6: grouped two per submission, so fewer submissions than shards.
REDUCED = {
    "demo": {"videos_per_pair": 2, "num_frames": 40, "size": 64, "test_domains": ["yellow_cross_checker"]},
    "shard_size": 6,
    "train": {"preset": "demo", "seeds": [0], "epochs": 8},
}
SHARDS = 6
PARTITION = os.environ.get("ACTIONDIFF_SLURM_PARTITION", "main")
ACCOUNT = os.environ.get("ACTIONDIFF_SLURM_ACCOUNT", "local")
# The local node has 2 CPUs and 2 placeholder GPUs: a group's CPUs and memory are the sums of
# its components', so the test groups two shards per submission with 1 CPU and 1 GB each
# (the profile's 8 GB / 2 CPUs per shard do not fit this node).
SLURM_ARGS = (
    "--executor", "slurm", "--profile", "workflow/profiles/slurm",
    "--default-resources", f"slurm_partition={PARTITION}", f"slurm_account={ACCOUNT}",
    "mem_mb=1000", "runtime=30", "cpus_per_task=1",
    "--set-resources", "extract_features:mem_mb=1000", "extract_features:cpus_per_gpu=1",
    "train_head:mem_mb=2000",
    "--group-components", "extract=2",
    "--seconds-between-status-checks", "3",
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    "--latency-wait", "5",
)
TABLES = ("results/tables/demo/results.csv", "results/tables/demo/results.md")


def find_cluster_script() -> Path | None:
    """`<repo>/../shared/tools/local-slurm.sh`, else /work/shared/tools/local-slurm.sh."""
    for candidate in (REPO.parent / "shared" / "tools" / "local-slurm.sh", Path("/work/shared/tools/local-slurm.sh")):
        if candidate.is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Starts (or restarts, idempotently) the local SLURM cluster."""
    script = find_cluster_script()
    if script is None:
        pytest.skip("no ../shared/tools/local-slurm.sh to start a local SLURM cluster")
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM cluster needs root")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise AssertionError(f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def make_workdir(path: Path) -> Path:
    """A copy of the workflow with the reduced demo config."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", path / "Snakefile")
    shutil.copytree(REPO / "workflow", path / "workflow")
    shutil.copytree(REPO / "config", path / "config")
    config = yaml.safe_load((path / "config" / "config.yaml").read_text())
    config.update(REDUCED)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


def environment() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"))


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        snakemake_command(*args), cwd=workdir, env=environment(), capture_output=True, text=True, timeout=1200
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def submission_logs(workdir: Path) -> dict[str, Path]:
    """SLURM job id -> its SLURM log, as Snakemake's own logs report every submission."""
    text = "".join(p.read_text() for p in (workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    return {m[0]: Path(m[1]) for m in re.findall(r"submitted with SLURM jobid (\d+) \(log: (.+?)\)", text)}


def sacct_jobs(workdir: Path) -> list[dict[str, str]]:
    """SLURM's accounting records (allocations only) of the jobs submitted from `workdir`.

    Slurm 22.05 keeps no job comment in accounting, so each job's `Rule` (e.g. `rule_train_head`,
    `group_extract_extract_features`) is the folder of its SLURM log named in Snakemake's log.
    """
    fields = ["JobID", "JobName", "AllocTRES", "State", "WorkDir"]
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-a", "--starttime", "now-1days", f"--format={','.join(fields)}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line.strip()]
    rows = [row for row in rows if Path(row["WorkDir"]).resolve() == workdir.resolve()]
    logs = submission_logs(workdir)
    for row in rows:
        log = logs.get(row["JobID"])
        # .snakemake/slurm_logs/<rule_x | group_extract_extract_features>/[<wildcards>/]<id>.log
        row["Rule"] = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0] if log else ""
        row["Log"] = str(log or "")
    return rows


def store_files(workdir: Path) -> dict[str, bytes]:
    """Every file of the packed store, by path relative to the store."""
    (store,) = (workdir / "results" / "stores" / "demo").glob("*.zarr")
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def cache_dir(workdir: Path) -> Path:
    (cache,) = (workdir / "results" / "features" / "demo").iterdir()
    return cache


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The reference: the same reduced config on the local executor."""
    work = make_workdir(tmp_path_factory.mktemp("local"))
    snakemake(work, "--cores", "2")
    return work


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory) -> Path:
    work = make_workdir(tmp_path_factory.mktemp("slurm"))
    snakemake(work, *SLURM_ARGS)
    return work


def test_cpu_only_jobs_get_no_gpu(slurm_run):
    jobs = sacct_jobs(slurm_run)
    assert jobs and all(j["Rule"] and j["State"] == "COMPLETED" for j in jobs), jobs
    others = [j for j in jobs if j["Rule"] != "group_extract_extract_features"]
    assert {j["Rule"] for j in others} == {
        "rule_make_demo_data", "rule_make_tiny_weights", "rule_train_head", "rule_evaluate_head"
    }
    for job in others:
        assert "gres/gpu" not in job["AllocTRES"], job


@pytest.mark.xfail(
    strict=True,
    reason="snakemake 9 + snakemake-executor-plugin-slurm 2.8.0 submit grouped jobs without "
    "--gpus/--gres (sbatch call has neither, for `gpu: 1` and for `gres: gpu:1`): grouped "
    "extraction gets no GPU; strict, so this test flags the day it is fixed",
)
def test_extraction_jobs_get_one_gpu(slurm_run):
    extract = [j for j in sacct_jobs(slurm_run) if j["Rule"] == "group_extract_extract_features"]
    assert extract
    for job in extract:
        assert "gres/gpu=1" in job["AllocTRES"].split(","), job


def test_grouped_extraction_uses_fewer_submissions_than_shards(slurm_run):
    shards = sorted((cache_dir(slurm_run) / "shards").glob("*.json"))
    submissions = [j for j in sacct_jobs(slurm_run) if j["Rule"] == "group_extract_extract_features"]
    assert len(shards) == SHARDS
    assert len(submissions) == SHARDS // 2  # two shards per group submission


def test_every_job_log_is_where_the_readme_says(slurm_run):
    jobs = sacct_jobs(slurm_run)
    assert jobs and all(j["Rule"] for j in jobs), jobs
    for job in jobs:
        slurm_log = Path(job["Log"])
        assert slurm_log.is_file() and slurm_log.name == f"{job['JobID']}.log", slurm_log
        rule = job["Rule"].removeprefix("rule_").removeprefix("group_extract_")
        assert any((slurm_run / "logs" / rule).rglob("*.log")), rule
    shard_logs = list((slurm_run / "logs" / "extract_features").rglob("*.log"))
    assert len(shard_logs) == SHARDS


def test_slurm_store_and_tables_equal_local_run(slurm_run, local_run):
    assert store_files(slurm_run) == store_files(local_run)
    for table in TABLES:
        assert (slurm_run / table).read_bytes() == (local_run / table).read_bytes(), table


def wait_for_running_extraction(workdir: Path, process: subprocess.Popen, timeout: float = 600) -> str:
    """The SLURM id of a running extraction job once it has committed at least one video."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended before an extraction job could be cancelled:\n{process.stdout.read()[-3000:]}")
        out = subprocess.run(
            ["squeue", "-h", "-t", "R", "-o", "%i|%k|%Z"], capture_output=True, text=True, check=True
        ).stdout
        running = [
            line.split("|")[0] for line in out.splitlines()
            if line.split("|")[1].startswith("rule_extract")  # squeue still shows the comment and Path(line.split("|")[2]).resolve() == workdir.resolve()
        ]
        features = workdir / "results" / "features" / "demo"
        committed = list(features.glob("*/videos/*.done")) if features.is_dir() else []
        if running and committed:
            return running[0]
        time.sleep(0.5)
    raise AssertionError("no extraction job was seen running with a committed video")


def test_cancelled_extraction_resumes_without_recomputing(slurm_cluster, local_run, tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("slurm_fault"))
    process = subprocess.Popen(
        snakemake_command(*SLURM_ARGS), cwd=work, env=environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        job_id = wait_for_running_extraction(work, process)
        subprocess.run(["scancel", job_id], check=True)
        time.sleep(3)  # let the killed job's last atomic write (if any) land before the snapshot
        committed = {p.name: p.stat().st_mtime_ns for p in (cache_dir(work) / "videos").glob("*.*")}
        process.communicate(timeout=1200)
    finally:
        if process.poll() is None:
            process.kill()
    if process.returncode != 0:  # retries exhausted: a plain rerun resumes
        snakemake(work, *SLURM_ARGS)
    assert any(j["JobID"] == job_id and j["State"].startswith("CANCELLED") for j in sacct_jobs(work))
    cache = cache_dir(work)
    # Videos committed before the cancel were neither rewritten nor extracted again.
    assert committed
    for name, mtime in committed.items():
        assert (cache / "videos" / name).stat().st_mtime_ns == mtime, name
    summaries = [json.loads(p.read_text()) for p in sorted((cache / "shards").glob("*.json"))]
    assert len(summaries) == SHARDS
    extracted = [v for s in summaries for v in s["extracted"]]
    skipped = [v for s in summaries for v in s["skipped"]]
    committed_ids = {
        json.loads((cache / "videos" / n).read_text())["video_id"] for n in committed if n.endswith(".done")
    }
    assert len(extracted) + len(skipped) == 32 and len(set(extracted)) == len(extracted)
    # The resubmitted shards found the cancelled job's committed videos and skipped them.
    assert skipped and set(skipped) <= committed_ids
    assert store_files(work) == store_files(local_run)
