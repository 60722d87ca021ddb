"""Snakemake profiles: SLURM resources land on extraction jobs only; retries ask for more.

Dry runs only plan (no job runs); the retry test runs a two-line Snakefile locally with the
real profile, so the `attempt` expressions are evaluated by Snakemake itself.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow_copy import copy_workflow, default_config

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, **environment: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), **environment)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def workflow_with_manifest(work: Path, num_videos: int, shard_size: int) -> None:
    """A copy of the workflow whose manifest checkpoint is already done (fake video paths)."""
    config = default_config()
    config["dataset"].update(name="big", annotations="resources/big/labels.csv", videos="resources/big", allow_missing=True)
    config["shard_size"] = shard_size
    copy_workflow(work, config)
    (work / "resources" / "big").mkdir(parents=True)
    (work / "resources" / "big" / "labels.csv").write_text("video,action,domain,split\n")  # the configured columns (checked when planning)
    manifests = work / "results" / "manifests"
    manifests.mkdir(parents=True)
    ids = [f"v{i:05d}" for i in range(num_videos)]
    # The demo config's domains, one held out for testing: planning applies its protocols.
    domains = [config["experiments"]["domains"]["matrix"][i % 4] for i in range(num_videos)]
    pd.DataFrame(
        {"video_id": ids, "path": [f"/nonexistent/{v}.mp4" for v in ids], "labels": "a", "domain": domains,
         "split": ["test" if d == "yellow_cross_checker" else "train" for d in domains]}
    ).to_csv(manifests / "big.csv", index=False)
    pd.DataFrame({"label_id": ["0"], "label": ["a"]}).to_csv(manifests / "big.classes.csv", index=False)
    pd.DataFrame(columns=["video_id", "path"]).to_csv(manifests / "big.missing.csv", index=False)
    # The second checkpoint: each feature set's videos (select_videos, named by a first dry run).
    subsets = sorted(set(re.findall(r"results/manifests/big/[0-9a-f]{12}\.csv", snakemake(work, "-n"))))
    assert subsets
    snakemake(work, "--cores", "1", *subsets)


def planned_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job in a dry run's output, in printed order."""
    jobs, rule = [], None
    for line in output.splitlines():
        if match := re.match(r"\s*(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif (match := re.match(r"\s*resources: (.*)", line)) and rule:
            jobs.append((rule, dict(item.split("=", 1) for item in match.group(1).split(", "))))
            rule = None
    return jobs


def test_slurm_dry_run_asks_for_gpus_on_extraction_jobs_only(tmp_path):
    workflow_with_manifest(tmp_path, num_videos=12, shard_size=1)  # 3 per domain: each trains with a val clip
    output = snakemake(tmp_path, "-n", "--workflow-profile", "profiles/slurm",
                       ACTIONDIFF_SLURM_PARTITION="gpu_a", ACTIONDIFF_SLURM_ACCOUNT="lab_b")
    jobs = planned_resources(output)
    # The site's partition and account come from the environment (the profile reads them).
    assert {(r["slurm_partition"], r["slurm_account"]) for _, r in jobs} == {("gpu_a", "lab_b")}
    extract = [r for rule, r in jobs if rule == "extract_features"]
    others = {rule: r for rule, r in jobs if rule != "extract_features"}
    # One job per video, each listed once and ungrouped: the shard is the unit of bundling.
    assert sorted(int(s) for s in re.findall(r"output: results/features/\S+/shards/(\d+)\.json", output)) == list(range(12))
    assert len(extract) == 12
    for resources in extract:
        assert (resources["gpu"], resources["cpus_per_gpu"], resources["mem_mb"], resources["runtime"]) == ("1", "2", "8000", "240")
        assert "cpus_per_task" not in resources  # it would override cpus_per_gpu in the executor
    assert {"pack_store", "train_head", "evaluate_head", "plot_results"} <= set(others)
    assert not any("gpu" in r for r in others.values())
    assert others["train_head"]["mem_mb"] == "8000" and others["pack_store"]["mem_mb"] == "2000"
    # Grouped submissions would lose their GPU request with the SLURM plugin (README, SLURM).
    assert "Group job" not in output


RETRY_SNAKEFILE = """
rule extract_features:
    output: "done.txt"
    shell: "echo {resources.mem_mb} {resources.runtime} >> attempts.txt; [ $(wc -l < attempts.txt) -ge 2 ] && touch {output}"
"""


@pytest.mark.parametrize(
    ("profile", "expected"),
    [("default", ["4000", "8000"]), ("slurm", ["8000 240", "16000 480"])],
)
def test_retried_job_asks_for_more_memory_and_time(tmp_path, profile, expected):
    snakefile = RETRY_SNAKEFILE if profile == "slurm" else RETRY_SNAKEFILE.replace(" {resources.runtime}", "")
    (tmp_path / "Snakefile").write_text(snakefile)
    snakemake(tmp_path, "--workflow-profile", str(REPO / "profiles" / profile), "--executor", "local", "--cores", "1")
    attempts = [line.strip() for line in (tmp_path / "attempts.txt").read_text().splitlines()]
    assert attempts == expected  # first attempt fails, the retry gets twice the resources
