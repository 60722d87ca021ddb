"""How long Snakemake takes to plan a 30,000-video extraction with the SLURM profile.

Writes a copy of the workflow whose manifest checkpoint is already done (30,000 rows with fake
video paths: a dry run never opens videos) and whose weight files exist, then times
`snakemake -n --workflow-profile profiles/slurm` for several shard sizes.
Run: PYTHONPATH=src python benchmarks/bench_dag.py [shard sizes...]   (prints a Markdown table)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
NUM_VIDEOS = 30_000


def prepare(work: Path, shard_size: int, num_videos: int = NUM_VIDEOS) -> None:
    """A workflow copy with a finished manifest checkpoint of `num_videos` rows."""
    shutil.copy(REPO / "Snakefile", work / "Snakefile")
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "config", work / "config")
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["dataset"].update(name="big", annotations="resources/big/labels.csv", videos="resources/big", allow_missing=True)
    config["shard_size"] = shard_size
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (work / "resources" / "big").mkdir(parents=True)
    (work / "resources" / "big" / "labels.csv").write_text("video,action\n")
    weights = config["weights"]
    for path in (f"{weights['svd']}/unet/config.json", f"{weights['svd']}/vae/config.json",
                 weights["clip_arch"], weights["clip_checkpoint"]):
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text("{}")
    manifests = work / "results" / "manifests"
    manifests.mkdir(parents=True)
    ids = [f"video{i:05d}" for i in range(num_videos)]
    pd.DataFrame({
        "video_id": ids,
        "path": [f"/data/videos/{v}.mp4" for v in ids],
        "labels": [f"action{i % 140}" for i in range(num_videos)],
        # the demo config's domains (planning applies its protocols to the manifest), one for testing
        "domain": [config["experiments"]["domains"]["matrix"][i % 4] for i in range(num_videos)],
        "split": ["test" if i % 4 == 3 else "train" for i in range(num_videos)],
    }).to_csv(manifests / "big.csv", index=False)
    pd.DataFrame(columns=["video_id", "path"]).to_csv(manifests / "big.missing.csv", index=False)


def time_dry_run(work: Path) -> tuple[float, int, int]:
    """Seconds for the dry run, extraction jobs planned, jobs with a gpu resource."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "profiles/slurm"],
        cwd=work, env=env, capture_output=True, text=True, timeout=1800,
    )
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(output[-3000:])
    jobs = int(re.search(r"^extract_features\s+(\d+)", output, re.MULTILINE).group(1))
    return seconds, jobs, len(re.findall(r"gpu=1", output))


def main(shard_sizes: list[int]) -> None:
    print(f"| shard_size | extraction jobs | jobs asking gpu=1 | dry-run seconds ({NUM_VIDEOS:,} videos) |")
    print("|---|---|---|---|")
    for shard_size in shard_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            prepare(Path(tmp), shard_size)
            seconds, jobs, gpu_jobs = time_dry_run(Path(tmp))
        print(f"| {shard_size} | {jobs:,} | {gpu_jobs:,} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [20, 100])
