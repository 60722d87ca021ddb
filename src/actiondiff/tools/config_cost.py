"""What a config's extraction costs before it runs: GFLOP per feature set, separate vs shared.

Per feature set, one full window of the full-size SVD-XT models is counted on the `meta`
device (`tools/flops.py`), split into the stages a shared pass computes once per video
(`features/shared.py`, `features/stage_memo.py`): the first-stage VAE pass, once per `vae_key`
and chunk of frames (`vae_chunk` rows of a window, whatever window length cut them), and the
CLIP image embedding, once per `clip_key` and batch of frames; the rest (the conditioning VAE
pass of the set's own noise, the UNet) is the set's own. Both stages cost the same per row
(each frame is its own image), so a chunk costs its rows times the stage's cost per frame.

Videos: from the annotations-only manifest when the config's annotation file is on disk (each
set's videos are those its experiments' protocols select, `plan.select_videos`); otherwise from
the published counts per protocol (`PUBLISHED_VIDEOS`), the smaller sets' videos taken to be
among the larger ones' (so in the shipped configs: Animal Kingdom's unseen-species clips are
AK clips); `videos` overrides both (every set reads the same videos). Frames: `kept_frames`
per video (default: `ASSUMED_KEPT_FRAMES`, README's extraction-speed assumptions), padded to
whole windows as the backbone pads them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actiondiff.features.stage_memo import FrameIds, chunk_frame_ids, window_frame_ids
from actiondiff.plan import (
    FeatureSet,
    feature_set_protocols,
    feature_sets,
    parse_experiments,
    select_videos,
    set_share_key,
)
from actiondiff.settings import DecodeSettings, ExtractSettings
from actiondiff.tools.flops import _ours_counts, build_models, count_flops

# Videos each protocol reads, as published: Animal Kingdom's AR_metadata.xlsx (30,100 rows; the
# unseen-species filter keeps 5,749, `plan.select_videos`), Charades-Ego's CSVs (7,860) and the
# UCF101 + HMDB51 clips of the 12 shared classes (2,009 + 1,200): README, extraction speed.
PUBLISHED_VIDEOS = {
    "ak_full": 30_100,
    "ak_unseen_species": 5_749,
    "ak_species_pair": 5_749,
    "charades_1st_1st": 7_860,
    "charades_3rd_1st": 7_860,
    "charades_1st_3rd": 7_860,
    "ucf_to_hmdb": 3_209,
    "hmdb_to_ucf": 3_209,
}
# Kept frames per video at stride 4 (README, extraction speed: assumed clip lengths); ucf_hmdb:
# the mean of UCF's 46 and HMDB's 23 weighted by their 2,009 and 1,200 clips.
ASSUMED_KEPT_FRAMES = {"animal_kingdom": 75, "charades_ego": 237, "ucf_hmdb": 37}
# README's as-shipped H200 estimate for the paper set (layer 9, t 20, 576x1024, window 25).
STATED_FPS = 20.0


@dataclass(frozen=True)
class SetStages:
    """GFLOP of one full window of a feature set, by stage, and what its shared stages read."""

    name: str
    window: int
    first_stage: float  # the window's VAE pass
    clip: float  # its CLIP image embedding (0: none)
    own: float  # the rest: conditioning VAE pass, UNet
    vae_key: tuple  # sets with equal keys share VAE chunks of the same frames
    vae_chunk: int
    clip_key: tuple | None  # None: no CLIP image embedding
    clip_rows: str  # which rows of a window CLIP embeds: "middle" or "all"

    @property
    def total(self) -> float:
        return self.first_stage + self.clip + self.own


def set_stages(models: tuple, fs: FeatureSet) -> SetStages:
    """Count one full window of `fs` on `meta` (full-size models) and split it by stage."""
    total, first, conditioning, clip = _ours_counts(models, fs.decode, fs.extract, count_flops)
    e = fs.extract
    group = set_share_key(fs) or ("alone", fs.name)  # a set that shares nothing keys only itself
    vae_key = (group, e.padding, e.tf32)
    clip_key = (vae_key, "clip") if e.conditioning in ("middle_frame", "per_frame") else None
    rows = "middle" if e.conditioning == "middle_frame" else "all"
    return SetStages(fs.name, fs.decode.window, first / 1e9, clip / 1e9, (total - first - clip) / 1e9, vae_key, e.vae_chunk, clip_key, rows)


def stage_batches(stages: SetStages, kept: int, vae_chunk: int | None = None) -> dict[str, list[FrameIds]]:
    """The batches a set's windows run its shared stages on over a video of `kept` frames (frame
    ids 0..kept-1, padding None), as `SVDExtractor.window_taps` cuts them: {"first_stage": VAE
    chunks, "clip": CLIP batches}. `vae_chunk` overrides the set's."""
    out: dict[str, list[FrameIds]] = {"first_stage": [], "clip": []}
    for start in range(0, kept, stages.window):
        ids = window_frame_ids(range(start, min(start + stages.window, kept)), stages.window)
        out["first_stage"] += chunk_frame_ids(ids, vae_chunk or stages.vae_chunk)
        if stages.clip_key is not None:
            middle = (min(start + stages.window, kept) - start) // 2  # the middle real frame
            out["clip"].append(ids[middle : middle + 1] if stages.clip_rows == "middle" else ids)
    return out


def video_groups(config: dict[str, Any], sets: dict[str, FeatureSet], videos: int | None) -> tuple[Counter, str]:
    """{frozenset of set names: number of videos read by exactly those sets}, and its source."""
    experiments = parse_experiments(config)
    used = [name for name in sets if any(e.feature_set.name == name for e in experiments.values())]
    if videos is not None:
        return Counter({frozenset(used): videos}), f"--videos {videos} (every set reads them)"
    annotations = Path(str((config.get("dataset") or {}).get("annotations", "")))
    if annotations.exists():
        manifest = _annotations_manifest(config, annotations)
        readers: dict[str, set[str]] = {}
        for name in used:
            for video_id in select_videos(manifest, feature_set_protocols(experiments, name)).video_id:
                readers.setdefault(video_id, set()).add(name)
        return Counter(frozenset(names) for names in readers.values()), f"the annotations-only manifest of {annotations}"
    counts = {}
    for name in used:
        protocols = {block.get("name", "custom") for block in feature_set_protocols(experiments, name)}
        unknown = sorted(protocols - set(PUBLISHED_VIDEOS))
        if unknown:
            raise ValueError(
                f"Expected {annotations} (config key `dataset.annotations`) to exist, or published video counts for "
                f"protocols {unknown} of feature set {name!r}, but there are neither: pass --videos N."
            )
        counts[name] = max(PUBLISHED_VIDEOS[p] for p in protocols)
    groups: Counter = Counter()
    levels = sorted(set(counts.values()), reverse=True) + [0]
    for high, low in zip(levels, levels[1:], strict=False):
        groups[frozenset(n for n, c in counts.items() if c >= high)] = high - low
    return groups, "published counts (annotations not on disk; smaller sets' videos taken as among the larger ones')"


def _annotations_manifest(config: dict[str, Any], annotations: Path) -> Any:
    from actiondiff.io.datasets import ManifestRequest, build_manifest

    dataset = config["dataset"]
    request = ManifestRequest(
        dataset=dataset["adapter"],
        annotations=(str(annotations),),
        videos=(".",) * (2 if dataset["adapter"] == "ucf_hmdb" else 1),
        check_videos=False,
    )
    return build_manifest(request)


@dataclass(frozen=True)
class ConfigCost:
    """GFLOP over a config's videos, per set (separate; shared with shared stages split evenly
    among the sets that share them) and in all."""

    stages: dict[str, SetStages]
    separate: dict[str, float]
    shared: dict[str, float]
    videos: dict[str, int]
    frames: dict[str, int]  # backbone frames (padded windows) per set
    source: str
    kept_frames: int
    reference_gflop_per_frame: float
    # what `vae_chunk: 1` (each frame its own VAE batch, so every frame shared whatever window
    # cuts it) would save: a new feature identity (vae_chunk is hashed), not the shipped default
    per_frame_vae_saving: float

    def gpu_hours(self, gflop: float, fps: float) -> float:
        """Hours at `fps` frames/s of the reference settings, every set at that FLOP rate."""
        return gflop / (fps * self.reference_gflop_per_frame) / 3600


def shared_stage_costs(members: list[SetStages], kept: int, vae_chunk: int | None = None, stage: str | None = None) -> dict[str, float]:
    """GFLOP per video of the shared stages (`stage`: one of them; default both) of the sets
    `members` that read one video of `kept` frames: each distinct (key, batch of frames) once,
    split evenly among the sets that run it. `vae_chunk` overrides every set's."""
    users: dict[tuple, set[str]] = {}
    cost: dict[tuple, float] = {}
    for s in members:
        for name, batches in stage_batches(s, kept, vae_chunk).items():
            if stage not in (None, name):
                continue
            per_row = s.first_stage / s.window if name == "first_stage" else s.clip / (1 if s.clip_rows == "middle" else s.window)
            for ids in batches:
                key = (name, s.vae_key if name == "first_stage" else s.clip_key, ids)
                users.setdefault(key, set()).add(s.name)
                cost[key] = per_row * len(ids)
    out = {s.name: 0.0 for s in members}
    for key, names in users.items():
        for name in names:
            out[name] += cost[key] / len(names)
    return out


def config_cost(config: dict[str, Any], videos: int | None = None, kept_frames: int | None = None, arch: str = "svd-xt") -> ConfigCost:
    """Count a config's extraction, separate passes vs one shared pass per video."""
    sets = feature_sets(config)
    groups, source = video_groups(config, sets, videos)
    adapter = (config.get("dataset") or {}).get("adapter", "")
    kept = kept_frames or ASSUMED_KEPT_FRAMES.get(adapter)
    if not kept:
        raise ValueError(f"Expected --kept-frames (kept frames per video): no assumed length for dataset adapter {adapter!r}.")
    models = build_models(arch)
    used = sorted({n for names in groups for n in names}, key=list(sets).index)
    stages = {name: set_stages(models, sets[name]) for name in used}
    windows = {name: math.ceil(kept / stages[name].window) for name in used}  # windows per video
    separate = {name: 0.0 for name in used}
    shared = {name: 0.0 for name in used}
    per_frame_vae = 0.0  # what vae_chunk 1 would save: every frame its own VAE batch
    for names, count in groups.items():
        members = [stages[n] for n in names]
        for name in names:
            separate[name] += count * windows[name] * stages[name].total
            shared[name] += count * windows[name] * stages[name].own
        for name, cost in shared_stage_costs(members, kept).items():
            shared[name] += count * cost
        now, per_frame = (sum(shared_stage_costs(members, kept, chunk, "first_stage").values()) for chunk in (None, 1))
        per_frame_vae += count * (now - per_frame)
    reference = _ours_counts(models, DecodeSettings(), ExtractSettings(), count_flops)[0] / 1e9 / DecodeSettings().window
    return ConfigCost(
        stages,
        separate,
        shared,
        {name: sum(c for names, c in groups.items() if name in names) for name in used},
        {name: sum(c for names, c in groups.items() if name in names) * windows[name] * stages[name].window for name in used},
        source,
        kept,
        reference,
        per_frame_vae,
    )


def format_config_cost(cost: ConfigCost, title: str, fps: float = STATED_FPS) -> str:
    """`config_cost` as Markdown: per set and in all, PFLOP (1e6 GFLOP) and GPU-hours."""
    lines = [
        f"#### {title}",
        "",
        f"Videos: {cost.source}; {cost.kept_frames} kept frames per video, padded to whole windows. GPU-hours at "
        f"{fps:g} frames/s of the paper settings ({cost.reference_gflop_per_frame:,.1f} GFLOP/frame), every set at that FLOP rate.",
        "",
        "| feature set | window | videos | backbone frames | GFLOP/frame | separate PFLOP | shared PFLOP | separate GPU-h | shared GPU-h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, stages in cost.stages.items():
        sep, sh = cost.separate[name], cost.shared[name]
        lines.append(
            f"| {name} | {stages.window} | {cost.videos[name]:,} | {cost.frames[name]:,} | {stages.total / stages.window:,.1f} | "
            f"{sep / 1e6:,.1f} | {sh / 1e6:,.1f} | {cost.gpu_hours(sep, fps):,.1f} | {cost.gpu_hours(sh, fps):,.1f} |"
        )
    separate, shared = sum(cost.separate.values()), sum(cost.shared.values())
    lines.append(
        f"| **all** | | | | | **{separate / 1e6:,.1f}** | **{shared / 1e6:,.1f}** | "
        f"**{cost.gpu_hours(separate, fps):,.1f}** | **{cost.gpu_hours(shared, fps):,.1f}** |"
    )
    lines += ["", f"separate / shared: **{separate / shared:.3f}x** (shared = 1/{separate / shared:.3f} of separate)"]
    if cost.per_frame_vae_saving > 0:
        per_frame = shared - cost.per_frame_vae_saving
        lines.append(
            f"With `vae_chunk: 1` (each frame its own VAE batch, so shared whatever window cuts it; a new feature "
            f"identity, vae_chunk is hashed): {per_frame / 1e6:,.1f} PFLOP, separate / shared {separate / per_frame:.3f}x."
        )
    return "\n".join(lines)
