"""The demo workflow through a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd).

Selected with `pytest -m slurm` (`.ci/run` runs it as its own step). Needs root and
`../shared/tools/local-slurm.sh` (relative to the repository root), which starts the cluster;
without either the tests skip with the reason. On a fresh machine the script apt-installs
SLURM, munge and MariaDB first (75 packages, 75 s here); installed, it starts in about 5 s.

One reduced demo (32 videos in 2 extraction shards, the `actiondiff` experiment only, one seed,
2 epochs) runs twice, from the same demo videos and weights (built once, copied):
- locally with `--cores 2`, the reference;
- through SLURM with the real profile (`--executor slurm --workflow-profile profiles/slurm`),
  adding only grouping (`--groups extract_features=extract --group-components extract=2
  --cores 1`: both shards in one submission, run one after another on one GPU; the profile
  itself does not group, see its comment) and faster status polling. While it runs, the
  extraction submission is `scancel`led once it has committed some, not all, videos of its
  current shard; the profile's retries resubmit it (or, if the run fails or hangs, a plain
  rerun completes it).
The two runs overlap (the SLURM run mostly waits on the scheduler), and every assertion is
made on their final state. Measured wall time of the module (cluster installed, 2-core
machine): 3.5 minutes idle (2026-11-26); 4.8 minutes at a load average of 2-3 (demo inputs 18 s, local
run 2.5 min, SLURM run 4.2 min with the cancel and the retry), 10.5 minutes at a load average of
3.5-4 before the workflow parse stopped importing torch. Where the SLURM run's time goes: each
job step starts Python twice (the jobstep's snakemake, then `srun` of snakemake per job) before
`actiondiff` itself starts, and the executor polls less and less often while nothing finishes
(+10 s per poll, up to 180 s), so the end of a long job is noticed up to a minute late.

Partition and account come from `ACTIONDIFF_SLURM_PARTITION` / `ACTIONDIFF_SLURM_ACCOUNT`
(read by the profile; defaults: the local cluster's `main` / `local`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from workflow_copy import copy_workflow, default_config

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
REDUCED = {
    "demo": {"videos_per_pair": 2, "num_frames": 30, "size": 64, "test_domains": ["yellow_cross_checker"]},
    "shard_size": 16,
    "train": {"preset": "demo", "seeds": [0], "epochs": 2},
    "extraction": {"layers": [9], "timestep_indices": [20], "conditioning": "middle_frame",
                   "sdv2": False, "dtype": "float32"},
    "experiments": {"actiondiff": {"taps": ["L09_T20"], "tables": ["results"]}},
}
VIDEOS, SHARD_SIZE, SHARDS, PER_SUBMISSION = 32, 16, 2, 2  # 4 domains x 4 actions x 2 clips
# The real profile, plus grouping (not in the profile: its dry run does not end at scale) and
# faster polling. `--cores 1` makes a group run its shards one after another and ask for one GPU
# (with more cores it asks for one per shard, summed). A command-line --default-resources /
# --set-resources would replace the profile's whole block, so none is given here.
SLURM_ARGS = (
    "--executor", "slurm", "--workflow-profile", "profiles/slurm",
    "--groups", "extract_features=extract", "--group-components", "extract=2", "--cores", "1",
    "--seconds-between-status-checks", "2",
    "--slurm-init-seconds-before-status-checks", "1",
    "--slurm-keep-successful-logs",
    "--latency-wait", "5",
)
EXTRACT_GROUP = "group_extract_extract_features"  # the SLURM log folder of grouped extraction
TABLES = ("results/tables/demo/results_custom.csv", "results/tables/demo/results_custom.md",
          "results/tables/demo/actiondiff/metrics.csv")
RUN_TIMEOUT = 480  # seconds; a SLURM run that hangs longer is killed and rerun


def find_cluster_script() -> Path | None:
    """`<repo>/../shared/tools/local-slurm.sh`, else /work/shared/tools/local-slurm.sh."""
    for candidate in (REPO.parent / "shared" / "tools" / "local-slurm.sh", Path("/work/shared/tools/local-slurm.sh")):
        if candidate.is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """Starts (or restarts, idempotently) the local SLURM cluster; skips where it cannot."""
    script = find_cluster_script()
    if script is None:
        pytest.skip("no ../shared/tools/local-slurm.sh to start a local SLURM cluster")
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM cluster needs root")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no slurmctld and no apt-get to install it")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise AssertionError(f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def make_workdir(path: Path, resources: Path | None = None) -> Path:
    """A copy of the workflow with the reduced demo config (and a copy of `resources`)."""
    copy_workflow(path, {**default_config(), **REDUCED})
    if resources is not None:
        shutil.copytree(resources, path / "resources")
    return path


def start_snakemake(workdir: Path, *args: str, output: str = "snakemake.out") -> subprocess.Popen:
    """Starts snakemake in `workdir`, its output going to `workdir/<output>` (a pipe could fill up)."""
    # SLURM jobs inherit this environment (sbatch --export=ALL): they run this checkout's code.
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    with open(workdir / output, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    process.output = workdir / output
    return process


def finish(process: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> tuple[int | None, str]:
    """(exit code, output tail) of a snakemake process; exit code None if it hung and was killed."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode if process.returncode >= 0 else None, process.output.read_text()[-6000:]


def snakemake(workdir: Path, *args: str, output: str = "snakemake.out") -> None:
    code, tail = finish(start_snakemake(workdir, *args, output=output))
    if code != 0:
        raise AssertionError(f"snakemake {' '.join(args)} ended with {code}:\n{tail}")


def queued_jobs(workdir: Path) -> list[tuple[str, str, str]]:
    """(SLURM id, state, comment) of this workdir's jobs that squeue still lists."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%T|%k|%Z"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [(i, state, comment) for i, state, comment, cwd in rows if Path(cwd).resolve() == workdir.resolve()]


def cancel_jobs_of(workdir: Path) -> None:
    """Cancels whatever a killed snakemake left queued or running in `workdir` (by job id)."""
    ids = [i for i, state, _ in queued_jobs(workdir) if state in ("PENDING", "RUNNING")]
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def submission_logs(workdir: Path) -> dict[str, Path]:
    """SLURM job id -> its SLURM log, as Snakemake's own logs report every submission."""
    text = "".join(p.read_text() for p in (workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    return {m[0]: Path(m[1]) for m in re.findall(r"submitted with SLURM jobid (\d+) \(log: (.+?)\)", text)}


def sacct_jobs(workdir: Path, since: str) -> list[dict[str, str]]:
    """SLURM's accounting records (allocations only) of the jobs submitted from `workdir`
    since `since` (ISO time; a later test session may reuse the same tmp path).

    Slurm 22.05 keeps no job comment in accounting, so each job's `Rule` (e.g. `rule_train_head`,
    `group_extract_extract_features`) is the folder of its SLURM log named in Snakemake's log.
    """
    fields = ["JobID", "JobName", "AllocTRES", "State", "WorkDir"]
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-a", "--starttime", since, f"--format={','.join(fields)}"],
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


def shards_in_log(slurm_log: Path) -> list[int]:
    """The extraction shards a grouped submission started, in order, from its SLURM log."""
    text = slurm_log.read_text() if slurm_log.is_file() else ""
    return [int(s) for s in re.findall(r"wildcards: .*shard=(\d+)", text)]


def cache_dir(workdir: Path) -> Path:
    (cache,) = (workdir / "results" / "features" / "demo").iterdir()
    return cache


def committed_ids(workdir: Path) -> set[str]:
    """Video ids with a completion marker (committed), from the markers' file names."""
    features = workdir / "results" / "features" / "demo"
    markers = features.glob("*/videos/*.done") if features.is_dir() else []
    return {unquote(p.name.removesuffix(".done")) for p in markers}


def manifest_ids(workdir: Path) -> list[str]:
    """Every video id of the manifest, sorted (the order shards are cut from)."""
    return sorted(pd.read_csv(workdir / "results" / "manifests" / "demo.csv").video_id)


def shard_ids(workdir: Path, shard: int) -> set[str]:
    """The video ids of one shard: blocks of SHARD_SIZE of the sorted manifest ids."""
    return set(manifest_ids(workdir)[shard * SHARD_SIZE : (shard + 1) * SHARD_SIZE])


def cancel_mid_shard(workdir: Path, process: subprocess.Popen, timeout: float = 300) -> tuple[str, int, set[str]]:
    """Waits until a running extraction submission has committed some, not all, videos of its
    current shard, then scancels it. Returns (SLURM id, shard, ids committed in that shard)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended before a job was cancelled:\n{process.output.read_text()[-3000:]}")
        logs = submission_logs(workdir)
        for job_id, state, _ in queued_jobs(workdir):
            if state != "RUNNING" or job_id not in logs or logs[job_id].parent.name != EXTRACT_GROUP:
                continue
            started = shards_in_log(logs[job_id])
            if not started:
                continue
            done = committed_ids(workdir) & shard_ids(workdir, started[-1])
            if 0 < len(done) < SHARD_SIZE:
                subprocess.run(["scancel", job_id], check=True)
                return job_id, started[-1], done
        time.sleep(0.2)
    raise AssertionError("no extraction submission was seen running half-way through a shard")


@dataclass
class Runs:
    local: Path
    slurm: Path
    cancelled_job: str
    cancelled_shard: int
    committed_in_shard: set[str]  # videos of the cancelled shard committed before the cancel
    markers: dict[str, int]  # every completion marker before the cancel -> its mtime (ns)
    resumed_by: str  # "retries" (the same snakemake run) or "rerun"
    seconds: float
    since: str  # when the runs started (ISO time), for sacct


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory) -> Runs:
    """Builds the demo inputs once, then runs the local reference and the SLURM run (with a
    cancelled extraction job) side by side."""
    start, since = time.monotonic(), time.strftime("%Y-%m-%dT%H:%M:%S")
    # 1. Demo videos and tiny weights, built once and copied into both runs.
    inputs = make_workdir(tmp_path_factory.mktemp("inputs"))
    snakemake(inputs, "--cores", "2", "make_demo_data", "make_tiny_weights")
    local = make_workdir(tmp_path_factory.mktemp("local"), inputs / "resources")
    slurm = make_workdir(tmp_path_factory.mktemp("slurm"), inputs / "resources")
    # 2. Both runs at once: the SLURM run mostly waits for the scheduler.
    local_process = start_snakemake(local, "--cores", "2")
    process = start_snakemake(slurm, *SLURM_ARGS)
    try:
        job_id, shard, done = cancel_mid_shard(slurm, process)
        time.sleep(2)  # a video being renamed into place when the job died lands before the snapshot
        markers = {p.name: p.stat().st_mtime_ns for p in (cache_dir(slurm) / "videos").glob("*.done")}
        code, _ = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    resumed_by = "retries"
    if code != 0:  # retries exhausted, or the run hung: stop what is left, rerun
        cancel_jobs_of(slurm)
        snakemake(slurm, "--unlock", "--cores", "1", output="snakemake.unlock.out")
        snakemake(slurm, *SLURM_ARGS, output="snakemake.rerun.out")
        resumed_by = "rerun"
    local_code, local_tail = finish(local_process)
    assert local_code == 0, local_tail
    seconds = time.monotonic() - start
    print(f"\nSLURM test runs: {seconds:.0f} s; cancelled job {job_id} in shard {shard}; resumed by {resumed_by}")
    return Runs(local, slurm, job_id, shard, done, markers, resumed_by, seconds, since)


def test_extraction_jobs_get_one_gpu_and_cpu_jobs_none(runs):
    jobs = sacct_jobs(runs.slurm, runs.since)
    assert jobs and all(j["Rule"] for j in jobs), jobs
    assert all(j["State"] == "COMPLETED" for j in jobs if j["JobID"] != runs.cancelled_job), jobs
    extract = [j for j in jobs if j["Rule"] == EXTRACT_GROUP]
    others = [j for j in jobs if j["Rule"] != EXTRACT_GROUP]
    assert extract and {j["Rule"] for j in others} == {"rule_train_head", "rule_evaluate_head"}
    for job in extract:  # a group runs its shards one after another on one GPU
        assert "gres/gpu=1" in job["AllocTRES"].split(","), job
    for job in others:
        assert "gres/gpu" not in job["AllocTRES"], job


def test_grouped_extraction_uses_fewer_submissions_than_shards(runs):
    assert len(list((cache_dir(runs.slurm) / "shards").glob("*.json"))) == SHARDS
    completed = [j for j in sacct_jobs(runs.slurm, runs.since) if j["Rule"] == EXTRACT_GROUP and j["State"] == "COMPLETED"]
    assert len(completed) < SHARDS
    ran = [sorted(set(shards_in_log(Path(j["Log"])))) for j in completed]
    assert any(len(shards) == PER_SUBMISSION for shards in ran), ran  # two shards in one submission
    assert all(1 <= len(shards) <= PER_SUBMISSION for shards in ran), ran
    assert {s for shards in ran for s in shards} == set(range(SHARDS)), ran


def test_every_job_log_is_where_the_readme_says(runs):
    jobs = sacct_jobs(runs.slurm, runs.since)
    slurm_logs = runs.slurm / ".snakemake" / "slurm_logs"
    for job in jobs:
        log = Path(job["Log"])
        assert log.is_file() and log.name == f"{job['JobID']}.log", log
        if job["Rule"] == EXTRACT_GROUP:
            assert log.parent == slurm_logs / EXTRACT_GROUP, log
        else:  # .snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log
            assert log.is_relative_to(slurm_logs / job["Rule"]), log
    settings_hash = cache_dir(runs.slurm).name
    for shard in range(SHARDS):
        assert (runs.slurm / "logs" / "extract_features" / "demo" / settings_hash / f"{shard}.log").is_file()
    for rule in ("train_head", "evaluate_head"):
        assert (runs.slurm / "logs" / rule / "demo" / "actiondiff" / "main" / "L09_T20.log").is_file(), rule


def store_files(workdir: Path) -> dict[str, bytes]:
    """Every file of the packed store, by path relative to the store."""
    (store,) = (workdir / "results" / "stores" / "demo").glob("*.zarr")
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def test_slurm_store_and_tables_equal_local_run(runs):
    files = store_files(runs.slurm)
    assert files and "zarr.json" in files
    assert files == store_files(runs.local)
    for table in TABLES:
        assert (runs.slurm / table).read_bytes() == (runs.local / table).read_bytes(), table


def test_cancelled_extraction_resumes_without_recomputing(runs):
    states = {j["JobID"]: j["State"] for j in sacct_jobs(runs.slurm, runs.since)}
    assert states[runs.cancelled_job].startswith("CANCELLED"), states
    cache = cache_dir(runs.slurm)
    # Videos committed before the cancel were not written again ...
    assert runs.markers
    for name, mtime in runs.markers.items():
        assert (cache / "videos" / name).stat().st_mtime_ns == mtime, name
    # ... nor extracted again: every video extracted exactly once over the final shard records.
    summaries = {int(p.stem): json.loads(p.read_text()) for p in (cache / "shards").glob("*.json")}
    assert sorted(summaries) == list(range(SHARDS))
    extracted = [v for s in summaries.values() for v in s["extracted"]]
    skipped = [v for s in summaries.values() for v in s["skipped"]]
    assert len(manifest_ids(runs.slurm)) == VIDEOS
    assert sorted(extracted + skipped) == manifest_ids(runs.slurm)
    before = {unquote(n.removesuffix(".done")) for n in runs.markers}
    assert not before & set(extracted)
    # The resubmitted shard found the videos the cancelled job had committed and redid only the rest.
    cancelled = summaries[runs.cancelled_shard]
    assert runs.committed_in_shard <= set(cancelled["skipped"])
    assert set(cancelled["extracted"]) == shard_ids(runs.slurm, runs.cancelled_shard) - set(cancelled["skipped"])
    assert cancelled["extracted"] and not cancelled["failed"]
