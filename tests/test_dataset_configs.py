"""Each real-dataset config plans the paper's experiments on fixture annotations.

The manifest (a checkpoint) is built for real from annotations in the release formats (the
writers of tests/test_datasets.py); then a dry run lists every job, counted by rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from test_datasets import (
    AK_ROWS,
    CHARADES_TEST,
    CHARADES_TRAIN,
    touch,
    write_ak_metadata,
    write_charades,
    write_hmdb_splits,
    write_ucf_lists,
)
from test_workflow import snakemake
from workflow_copy import copy_workflow

from actiondiff.io.manifest import num_shards, read_manifest


def animal_kingdom(root: Path) -> dict:
    metadata = write_ak_metadata(root / "annotation" / "AR_metadata.xlsx")
    touch(root / "video" / f"{row[1]}.mp4" for row in AK_ROWS)
    return {"annotations": str(metadata), "videos": str(root / "video")}


def charades_ego(root: Path) -> dict:
    touch(root / "videos" / f"{r.split(',')[0]}.mp4" for r in CHARADES_TRAIN + CHARADES_TEST)
    return {"annotations": str(write_charades(root / "CharadesEgo")), "videos": str(root / "videos")}


def ucf_hmdb(root: Path) -> dict:
    write_ucf_lists(root / "ucfTrainTestlist", root / "UCF-101")
    write_hmdb_splits(root / "splits", root / "hmdb51")
    return {"annotations": [str(root / "ucfTrainTestlist"), str(root / "splits")],
            "videos": [str(root / "UCF-101"), str(root / "hmdb51")], "allow_missing": True}


GRID = 13 * 7
# config -> (fixture writer, stores, {rule: jobs}); runs per experiment are in the configs' comments.
EXPECTED = {
    "animal_kingdom": (animal_kingdom, 7, {
        # full, full_sdv2, unseen, unseen_sdv2, head_mlp, head_linear, loss_ce, conditioning_none,
        # window_10/16/21 (11) + layers (3) + grid (13 x 7) + species matrix (9 groups)
        "train_head": 11 + 3 + GRID + 9,
        "make_results_table": 2,  # ak_full, ak_unseen_species
        "make_ablation_table": 1,
        "plot_grid": 1,
        "plot_matrix": 1,
        "plot_results": 4,
    }),
    "charades_ego": (charades_ego, 2, {
        "train_head": 6,
        "make_results_table": 3,  # 1st->1st, 3rd->1st, 1st->3rd
        "make_ablation_table": 1,
        "plot_results": 5,
    }),
    "ucf_hmdb": (ucf_hmdb, 2, {
        "train_head": 5,
        "make_results_table": 2,
        "make_ablation_table": 1,
        "plot_results": 4,
    }),
}


def job_counts(output: str) -> dict[str, int]:
    """The dry run's `Job stats` table as {rule: count}."""
    table = output[output.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE) if m.group(1) != "total"}


@pytest.mark.parametrize(
    "name",
    # The UCF/HMDB fixture writes the real split lists (13,320 + 5,508 lines) and ~3,000 files.
    ["animal_kingdom", "charades_ego", pytest.param("ucf_hmdb", marks=pytest.mark.slow)],
)
def test_real_dataset_config_plans_the_papers_jobs(name, tmp_path):
    write, stores, expected = EXPECTED[name]
    work = copy_workflow(tmp_path / "work")
    paths = {"dataset": write(tmp_path / "data")}
    (work / "paths.yaml").write_text(yaml.safe_dump(paths))
    config = ("--configfile", f"config/{name}.yaml", "paths.yaml", "--replace-workflow-config")
    snakemake(work, *config, "--until", "build_manifest")
    manifest = read_manifest(work / "results" / "manifests" / f"{name}.csv")
    shard_size = yaml.safe_load((work / "config" / f"{name}.yaml").read_text())["shard_size"]
    plan = snakemake(work, *config, "-n")
    counts = job_counts(plan.stdout + plan.stderr)
    runs = expected["train_head"]
    assert counts == {
        "extract_features": stores * num_shards(manifest, shard_size),  # every shard of every feature set
        "pack_store": stores,
        "report_extraction": stores,
        "evaluate_head": runs,
        "all": 1,
        **expected,
    }
