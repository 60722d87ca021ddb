"""One pass per video for several feature sets (issue 27): the same bytes as separate passes.

Every feature set of the shipped dataset configs, on tiny seeded weights at 64x64 (the sets'
own windows, dtypes, conditioning and taps), extracted once separately (modules loaded per set,
as separate jobs do) and once in one shared pass; every array must be byte-identical.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_svd_extractor import write_video

from actiondiff.features.backbones import feature_identity
from actiondiff.features.job import BackboneLoader, run_extraction
from actiondiff.features.shared import SetTarget, SharedPass, run_shared_extraction
from actiondiff.features.sharing import can_share, module_key
from actiondiff.features.stage_memo import StageMemo, window_frame_ids
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.plan import feature_sets
from actiondiff.store.cache import FeatureCache
from actiondiff.store.records import VideoFeatures
from actiondiff.tools.config_cost import SetStages, shared_stage_costs

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("animal_kingdom", "charades_ego", "ucf_hmdb")


def tiny_sets(name: str, tiny_weights: dict) -> dict:
    """The config's feature sets with the tiny weights, at 64x64 and every frame kept."""
    config = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    config["weights"] = {key: str(value) for key, value in tiny_weights.items()}
    config["decode"] = {**config["decode"], "height": 64, "width": 64, "stride": 1}
    return feature_sets(config)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """22 frames (one window of 25, three of 10, two of 16 and of 21: every length pads) and
    12 and 4 (shorter: for the job tests)."""
    root = tmp_path_factory.mktemp("shared_videos")
    return {name: write_video(root / f"{name}.mp4", n, seed) for name, n, seed in [("long", 22, 5), ("mid", 12, 6), ("short", 4, 7)]}


def distinct_sets(tiny_weights) -> dict:
    """Every feature set of the shipped configs, once per distinct (decode, settings): the
    Charades and UCF/HMDB sets (paper, sdv2) are Animal Kingdom's, so AK's 7 cover all."""
    found: dict = {}
    for config in CONFIGS:
        for name, fs in tiny_sets(config, tiny_weights).items():
            found.setdefault((fs.decode, fs.extract), (f"{config}.{name}", fs))
    return dict(found.values())


def same_bytes(one: VideoFeatures, two: VideoFeatures) -> None:
    assert sorted(one.features) == sorted(two.features)
    for tap in one.features:
        assert one.features[tap].tobytes() == two.features[tap].tobytes(), tap
    assert one.frame_index.tobytes() == two.frame_index.tobytes()
    assert np.array_equal(one.timestamp_ms, two.timestamp_ms, equal_nan=True)


def separate(fs) -> SVDExtractor:
    """A separate pass's extractor: its own modules, loaded as its job loads them."""
    return SVDExtractor(*SVDExtractor.load_modules(fs.weights, fs.extract), fs.decode, fs.extract)


def test_one_pass_gives_the_bytes_of_separate_passes(tiny_weights, clips):
    sets = distinct_sets(tiny_weights)
    assert len(sets) == 7 and all(name.startswith("animal_kingdom.") for name in sets)
    assert can_share(*((fs.backbone, fs.decode, fs.extract, fs.weights) for fs in sets.values()))
    modules = {}
    extractors = {}
    for name, fs in sets.items():
        key = module_key(fs.weights, fs.extract)
        modules.setdefault(key, SVDExtractor.load_modules(fs.weights, fs.extract))
        extractors[name] = SVDExtractor(*modules[key], fs.decode, fs.extract)
    assert len(modules) == 1  # one set of modules for all seven
    with vae_rows() as shared_rows:
        together = SharedPass(extractors).extract_video(clips["long"], "long")
    with vae_rows() as separate_rows:
        for name, fs in sets.items():
            same_bytes(together[name], separate(fs).extract_video(clips["long"], "long"))
    # The first-stage VAE chunks (vae_chunk 8) of 22 frames: 204 rows over the seven sets (4 sets
    # x 25, 3 x 10, 2 x 16, 2 x 21), 73 distinct: windows of 25 cut (0-7) (8-15) (16-21 + 2 pads)
    # (1 pad); of 10 add (8-9) (10-17) (18-19) (20-21 + 6 pads) (2 pads); of 16 add (8 pads); of 21
    # add (16-20) (21 + 7 pads) (5 pads). The conditioning VAE passes are each set's own.
    assert sum(separate_rows) - sum(shared_rows) == 204 - 73



def test_a_chunk_is_kept_until_the_last_window_that_reads_it(tiny_weights, tmp_path):
    """60 frames, windows of 25 and 10: the chunks (0-7) and (50-57) open windows of both lengths;
    each is computed by the first window of 10 that reads it and must survive until the window of
    25 that reads it too (frame 24; the end of the video), while older chunks are dropped."""
    sets = tiny_sets("animal_kingdom", tiny_weights)
    paper, window_10 = sets["paper"], sets["window_10"]
    modules = SVDExtractor.load_modules(paper.weights, paper.extract)
    extractors = {name: SVDExtractor(*modules, fs.decode, fs.extract) for name, fs in (("paper", paper), ("window_10", window_10))}
    clip = write_video(tmp_path / "sixty.mp4", 60, 8)
    with vae_rows() as shared_rows:
        together = SharedPass(extractors).extract_video(clip, "sixty")
    with vae_rows() as separate_rows:
        for name, fs in (("paper", paper), ("window_10", window_10)):
            same_bytes(together[name], separate(fs).extract_video(clip, "sixty"))
    assert sum(separate_rows) - sum(shared_rows) == 16

def test_the_cost_tool_counts_the_chunks_a_shared_pass_computes():
    """`flops --config` counts the same 73 distinct rows of 204 for the seven sets over 22 frames
    (one GFLOP per row here), and every row once per video at vae_chunk 1."""
    windows = {"paper": 25, "sdv2": 25, "no_conditioning": 25, "grid": 25, "window_10": 10, "window_16": 16, "window_21": 21}
    members = [SetStages(n, w, float(w), 0.0, 0.0, ("group", "zeros", False), 8, None, "middle") for n, w in windows.items()]
    assert sum(shared_stage_costs(members, 22, stage="first_stage").values()) == pytest.approx(73)
    # vae_chunk 1: 22 frames and one padding row (every padding row is the same image)
    assert sum(shared_stage_costs(members, 22, 1, "first_stage").values()) == pytest.approx(23)


@contextmanager
def vae_rows():
    """The batch sizes of every VAE encoder call inside the block (first stage and conditioning)."""
    rows: list[int] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: rows.append(args[0].shape[0]) if type(module).__name__ == "Encoder" else None
    )
    try:
        yield rows
    finally:
        hook.remove()


def test_sets_that_may_not_share_are_refused(tiny_weights):
    sets = tiny_sets("ucf_hmdb", tiny_weights)
    paper = sets["paper"]
    other = paper.decode.__class__(**{**paper.decode.__dict__, "stride": 2})
    assert not can_share((paper.backbone, paper.decode, paper.extract, paper.weights), ("svd", other, paper.extract, paper.weights))
    assert not can_share(("videomae", paper.decode, paper.extract, paper.weights))
    with pytest.raises(ValueError, match="share their decode settings"):
        SharedPass({"a": separate(paper), "b": SVDExtractor(*SVDExtractor.load_modules(paper.weights, paper.extract), other, paper.extract)})


def _targets(sets, root: Path, videos: dict[str, set[str]]) -> dict[str, SetTarget]:
    targets = {}
    for name, fs in sets.items():
        identity = feature_identity(fs.decode, fs.backbone, fs.extract, fs.weights)
        loader = BackboneLoader(fs.backbone, fs.extract, fs.decode, fs.weights, identity)
        targets[name] = SetTarget(loader, FeatureCache(root / name, fs.settings_hash), frozenset(videos[name]))
    return targets


def test_shared_job_commits_each_set_and_resumes_per_set(tiny_weights, clips, tmp_path):
    """Sets with different videos: each gets exactly its own; a set already committed for a
    video is skipped for it alone, and the bytes are those of separate jobs."""
    sets = tiny_sets("animal_kingdom", tiny_weights)
    sets = {name: sets[name] for name in ("paper", "window_10")}
    videos = [(video_id, str(clips[video_id])) for video_id in ("mid", "short")]
    wanted = {"paper": {"mid", "short"}, "window_10": {"mid"}}
    # separate jobs, one per set: the reference
    reference = _targets(sets, tmp_path / "separate", wanted)
    for name, target in reference.items():
        mine = [v for v in videos if v[0] in wanted[name]]
        run_extraction(mine, target.cache, lambda t=target: t.loader("cpu", t.cache))
    # shared: `paper` already has `short` committed (a job killed after that commit)
    targets = _targets(sets, tmp_path / "shared", wanted)
    targets["paper"].cache.commit(reference["paper"].cache.load("short"))
    summaries = run_shared_extraction(videos, targets, "cpu")
    assert summaries["paper"].skipped == ["short"] and summaries["paper"].extracted == ["mid"]
    assert summaries["window_10"].extracted == ["mid"] and not summaries["window_10"].skipped
    for name, target in targets.items():
        assert target.cache.is_committed("short") == (name == "paper")
        for video_id in wanted[name]:
            same_bytes(target.cache.load(video_id), reference[name].cache.load(video_id))
        assert target.cache.recorded_weights() == reference[name].cache.recorded_weights()
    # a rerun finds everything committed and loads no model
    again = run_shared_extraction(videos, targets, "cpu")
    assert all(not s.extracted and s.skipped for s in again.values())


def test_a_video_that_fails_is_recorded_in_every_set_that_needs_it(tiny_weights, tmp_path):
    sets = tiny_sets("ucf_hmdb", tiny_weights)
    targets = _targets(sets, tmp_path, {name: {"gone"} for name in sets})
    summaries = run_shared_extraction([("gone", str(tmp_path / "gone.mp4"))], targets, "cpu")
    for name, target in targets.items():
        assert summaries[name].failed == ["gone"]
        assert target.cache.failure("gone")["video_id"] == "gone"


def test_plan_groups_the_sets_that_may_share(tiny_weights):
    from actiondiff.plan import share_groups

    sets = tiny_sets("animal_kingdom", tiny_weights)
    assert share_groups(sets) == [list(sets)]  # all seven in one pass
    config = yaml.safe_load((ROOT / "config" / "animal_kingdom.yaml").read_text())
    config["weights"] = {key: str(value) for key, value in tiny_weights.items()}
    config["feature_sets"] = {"paper": {}, "float32": {"dtype": "float32"}, "half": {"decode": {"height": 64, "width": 64}}}
    assert share_groups(feature_sets(config)) == [["paper"], ["float32"], ["half"]]
    # `share: false` keeps a set out of the others' pass (the same hash: it is not an extraction setting)
    config["feature_sets"] = {"paper": {}, "sdv2": {"sdv2": True}, "grid": {"layers": [3, 9], "share": False}}
    sets = feature_sets(config)
    assert share_groups(sets) == [["paper", "sdv2"], ["grid"]]
    config["feature_sets"]["grid"].pop("share")
    assert feature_sets(config)["grid"].settings_hash == sets["grid"].settings_hash
    config["feature_sets"]["grid"]["share"] = "no"
    with pytest.raises(ValueError, match=r"`share` to be true or false, but got 'no' \(config key `feature_sets.grid`\)"):
        feature_sets(config)


def test_the_workflow_extracts_groups_of_two_or_more_hashes_together(tiny_weights):
    from actiondiff.plan import shared_extraction_groups

    sets = tiny_sets("animal_kingdom", tiny_weights)
    ((group, hashes),) = shared_extraction_groups(sets).items()  # one group id: its members' hashes
    assert hashes == [fs.settings_hash for fs in sets.values()] and len(group) == 12
    assert shared_extraction_groups({"paper": sets["paper"], "sdv2": sets["sdv2"]}).keys() != {group}
    # a lone set, or two names of one identity, keep extract_features
    assert shared_extraction_groups({"paper": sets["paper"], "again": sets["paper"]}) == {}


def test_extract_shared_refuses_one_video_under_two_paths(tmp_path, caplog):
    from actiondiff.cli import main

    sets = []
    for name, path in (("a", "x/one.mp4"), ("b", "y/one.mp4")):
        manifest = tmp_path / f"{name}.csv"
        manifest.write_text(f"video_id,path,labels,domain,split\none,{path},run,d,train\n")
        sets.append({"name": name, "manifest": str(manifest), "out": str(tmp_path / name), "settings": {}})
    assert main(["extract-shared", "--sets", json.dumps({"sets": sets})]) == 2
    assert "Expected video 'one' to have one path in every manifest of --sets" in caplog.text


def test_verify_maps_a_set_s_videos_to_the_shards_of_its_group_s_union(tmp_path):
    """verify-features --shard-manifests: the shards cut the id-sorted union of the group's
    videos (as extract_shared's jobs do), so a set's unaccounted video reopens the right job."""
    from actiondiff.cli import _shards_of
    from actiondiff.io.manifest import read_manifest

    paths = {}
    for name, ids in (("a", ["v0", "v1", "v2", "v3", "v4"]), ("b", ["v7", "v3", "v6", "v4", "v5"])):
        paths[name] = tmp_path / f"{name}.csv"
        pd.DataFrame({"video_id": ids, "path": ids, "labels": "x", "domain": "d", "split": "train"}).to_csv(paths[name], index=False)
    b = read_manifest(paths["b"])
    assert _shards_of(b, [paths["a"], paths["b"]], 3) == {"v3": 1, "v4": 1, "v5": 1, "v6": 2, "v7": 2}
    assert _shards_of(b, [paths["b"]], 3) == {"v3": 0, "v4": 0, "v5": 0, "v6": 1, "v7": 1}  # a lone set
    with pytest.raises(ValueError, match=r"to be in one of --shard-manifests .*, but 3 are not: v5, v6, v7"):
        _shards_of(b, [paths["a"]], 3)


def test_stage_memo_keys_by_frames_and_forgets_what_no_window_reads():
    memo = StageMemo()
    memo.frame_ids = window_frame_ids([0, 1, 2], 4)
    assert memo.frame_ids == (0, 1, 2, None)
    assert memo.get("vae", slice(0, 2), lambda: "frames 0-1") == "frames 0-1"
    memo.frame_ids = window_frame_ids([0, 1, 2, 3, 4], 5)  # another window length, the same frames
    assert memo.get("vae", slice(0, 2), lambda: "again") == "frames 0-1"
    assert memo.get("clip", slice(0, 2), lambda: "clip 0-1") == "clip 0-1"  # another stage
    assert memo.get("vae", slice(1, 3), lambda: "frames 1-2") == "frames 1-2"  # other frames
    memo.frame_ids = window_frame_ids([], 2)
    memo.get("vae", slice(0, 2), lambda: "padding")
    memo.forget_before(2)  # frames 0-1 are behind every window still to run; 1-2 and padding stay
    assert len(memo) == 2
    assert memo.get("vae", slice(0, 2), lambda: "recomputed") == "padding"
