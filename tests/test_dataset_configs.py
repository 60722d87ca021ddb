"""Each real-dataset config plans the paper's experiments on fixture annotations.

The manifest (a checkpoint) is built for real from annotations in the release formats (the
writers of tests/test_datasets.py); then a dry run lists every job, counted by rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
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

from actiondiff.io.datasets import read_animal_kingdom
from actiondiff.io.manifest import num_shards, read_manifest
from actiondiff.learn.protocols import ProtocolSettings, assign_roles
from actiondiff.plan import feature_set_protocols, feature_sets, parse_experiments, select_videos


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
        # window_10/16/21 (11) + layers (3) + grid (13 x 7) + aggregate (1) + species matrix (9 groups)
        "train_head": 11 + 3 + GRID + 1 + 9,
        "compare_taps": 1,  # aggregate vs the grid's taps
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
def test_real_dataset_config_plans_the_papers_jobs(name, tmp_path, tiny_weights):
    write, stores, expected = EXPECTED[name]
    work = copy_workflow(tmp_path / "work")
    # Planning hashes the weights and refuses a path that does not exist: tiny ones stand in.
    paths = {"dataset": write(tmp_path / "data"), "weights": {k: str(v) for k, v in tiny_weights.items()}}
    (work / "paths.yaml").write_text(yaml.safe_dump(paths))
    config = ("--configfile", f"config/{name}.yaml", "paths.yaml", "--replace-workflow-config")
    snakemake(work, *config, "--until", "build_manifest")
    manifest = read_manifest(work / "results" / "manifests" / f"{name}.csv")
    values = yaml.safe_load((work / "config" / f"{name}.yaml").read_text())
    # The videos of each feature set (checkpoint select_videos, named in the first dry run), then
    # the dry run of the rest.
    first = snakemake(work, *config, "-n")
    subsets = sorted(set(re.findall(rf"results/manifests/{name}/[0-9a-f]{{12}}\.csv", first.stdout + first.stderr)))
    assert len(subsets) == stores
    snakemake(work, *config, *subsets)
    selected = [read_manifest(work / path) for path in subsets]
    assert all(set(m.video_id) <= set(manifest.video_id) for m in selected)
    union = {v for m in selected for v in m.video_id}
    plan = snakemake(work, *config, "-n")
    counts = job_counts(plan.stdout + plan.stderr)
    runs = expected["train_head"]
    assert counts == {
        # every set of a shipped config shares one pass per video: the shards of the union of their videos
        "extract_shared": num_shards(pd.DataFrame({"video_id": sorted(union)}), values["shard_size"]),
        "verify_features": stores,
        "pack_store": stores,
        "report_extraction": stores,
        "evaluate_head": runs,
        "all": 1,
        **expected,
    }


def test_feature_sets_extract_only_the_videos_their_experiments_read(tmp_path):
    """config/animal_kingdom.yaml: `paper` and `sdv2` serve ak_full (every clip); the window,
    no_conditioning and grid sets serve only ak_unseen_species (on the published file 5,749 of
    30,100 clips; here the fixture's 14 of 19)."""
    values = yaml.safe_load((Path(__file__).parents[1] / "config" / "animal_kingdom.yaml").read_text())
    paths = animal_kingdom(tmp_path)
    manifest = read_animal_kingdom(paths["annotations"], paths["videos"])
    experiments = parse_experiments(values)
    unseen = manifest.video_id[assign_roles(manifest, ProtocolSettings(name="ak_unseen_species")) != ""]
    sizes = {}
    for name in feature_sets(values):
        blocks = feature_set_protocols(experiments, name)
        sizes[name] = len(select_videos(manifest, blocks))
        if name not in ("paper", "sdv2"):
            assert {b["name"] for b in blocks} == {"ak_unseen_species"}
            assert select_videos(manifest, blocks).video_id.tolist() == sorted(unseen)
    assert sizes == {"paper": 19, "sdv2": 19, "no_conditioning": 14, "window_10": 14, "window_16": 14, "window_21": 14, "grid": 14}
