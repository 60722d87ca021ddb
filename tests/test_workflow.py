"""The real Snakemake DAG, end to end, on a reduced demo config (one test module, run in order)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REDUCED = {
    "demo": {"videos_per_pair": 3, "num_frames": 40, "size": 64, "test_domains": ["yellow_cross_checker"]},
    "shard_size": 12,
    "train": {"preset": "demo", "seeds": [0], "epochs": 8},
}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the workflow with a reduced config, run once for every test below."""
    work = tmp_path_factory.mktemp("workflow")
    shutil.copy(REPO / "Snakefile", work / "Snakefile")
    shutil.copytree(REPO / "workflow", work / "workflow")
    shutil.copytree(REPO / "config", work / "config")
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config.update(REDUCED)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(work)
    return work


def test_demo_writes_store_table_and_figures(workdir):
    stores = list((workdir / "results" / "stores" / "demo").glob("*.zarr"))
    assert len(stores) == 1 and (stores[0] / "zarr.json").is_file()
    table = pd.read_csv(workdir / "results" / "tables" / "demo" / "results.csv")
    accuracy = table.set_index("metric").loc["top1_accuracy"]
    assert accuracy["test_videos"] == 12  # 4 actions x 3 clips of the held-out domain
    assert 0.0 <= accuracy["mean"] <= 100.0
    for name in ("per_domain_accuracy.png", "confusion.png"):
        png = workdir / "results" / "figures" / "demo" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (workdir / "logs" / "extract_features").is_dir()


def test_rerun_has_nothing_to_do(workdir):
    result = snakemake(workdir, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleted_figures_regenerate_without_extraction(workdir):
    figures = workdir / "results" / "figures" / "demo"
    shutil.rmtree(figures)
    plan = snakemake(workdir, "-n")
    planned = plan.stdout + plan.stderr
    assert "plot_results" in planned
    assert "extract_features" not in planned and "train_head" not in planned
    snakemake(workdir)
    assert (figures / "per_domain_accuracy.png").is_file()


def test_report_is_built(workdir):
    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text(errors="replace")
    assert "per_domain_accuracy.png" in html


def test_misspelt_config_key_fails_before_any_job(workdir):
    result = snakemake(workdir, "-n", "--config", "shard_sise=3", check=False)
    assert result.returncode != 0
    assert "shard_sise" in result.stdout + result.stderr


def test_lint_reports_no_errors(workdir):
    result = snakemake(workdir, "--lint", check=False)
    assert "error" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
