"""One extraction job: a shard of videos through one loaded extractor into the cache.

Committed videos are skipped, so a killed or preempted job, rerun, redoes only the rest. A
video that fails is recorded in the cache's failure manifest and the job carries on; a video
that decodes only partly (a `VideoWarning`) keeps its features and gets a manifest line of
kind "warning".
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass, field

from tqdm import tqdm

from actiondiff.features.backbones import Backbone
from actiondiff.io.video import VideoError, VideoWarning
from actiondiff.store.cache import FeatureCache
from actiondiff.store.records import VideoFeatures

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    """What one job did: video ids extracted now, skipped as already committed, and failed."""

    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)

    def line(self) -> str:
        ok = len(self.extracted) + len(self.skipped)
        return (
            f"{ok} ok ({len(self.extracted)} extracted, {len(self.skipped)} already committed, "
            f"{len(self.warned)} with warnings), {len(self.failed)} failed"
        )


def progress_line(done: int, total: int, video_id: str, frames: int, seconds: float, elapsed: float) -> str:
    """One job-log line: videos done / total, this video's frames/s, the shard's ETA."""
    eta = elapsed / done * (total - done)
    return (
        f"video {done}/{total} {video_id}: {frames} frames in {seconds:.1f} s "
        f"({frames / max(seconds, 1e-9):.1f} frames/s); ETA {int(eta // 60)} min {int(eta % 60):02d} s"
    )


def run_extraction(
    videos: list[tuple[str, str]], cache: FeatureCache, extractor_factory, strict: bool = False
) -> JobSummary:
    """Extract every uncommitted video of `videos` [(video_id, path)] into `cache`.

    Args:
        extractor_factory: builds the `Backbone` (anything with `extract_video(path, video_id)`);
            called only if some video needs work,
            so a fully committed shard never loads the models.
        strict: re-raise the first video error instead of recording it.
    """
    summary = JobSummary()
    todo = []
    for video_id, path in videos:
        if cache.is_committed(video_id):
            summary.skipped.append(video_id)
        else:
            todo.append((video_id, path))
    if summary.skipped:
        log.info("%d videos already committed for settings %s", len(summary.skipped), cache.settings_hash)
    if not todo:
        return summary
    extractor: Backbone = extractor_factory()
    # A console gets tqdm's bar; a log file (Snakemake's `> {log}`) gets one line per video.
    console = sys.stderr.isatty()
    start = time.perf_counter()
    for done, (video_id, path) in enumerate(tqdm(todo, desc="extract", unit="video", disable=not console), start=1):
        began = time.perf_counter()
        try:
            features, problems = _extract_one(extractor, path, video_id)
        except VideoError as error:
            if strict:
                raise
            log.warning("video %s failed: %s", video_id, error)
            cache.record_failure(video_id, path, error)
            summary.failed.append(video_id)
            continue
        cache.commit(features)  # removes an earlier failure record of this video
        if problems:
            log.warning("video %s decoded partly: %s", video_id, "; ".join(map(str, problems)))
            cache.record_failure(video_id, path, VideoWarning(" | ".join(map(str, problems))), kind="warning")
            summary.warned.append(video_id)
        summary.extracted.append(video_id)
        if not console:
            now = time.perf_counter()
            log.info("%s", progress_line(done, len(todo), video_id, len(features.frame_index), now - began, now - start))
    return summary


def _extract_one(extractor: Backbone, path: str, video_id: str) -> tuple[VideoFeatures, list[VideoWarning]]:
    """Extract one video, collecting the `VideoWarning`s its decode emits; others pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VideoWarning)
        features = extractor.extract_video(path, video_id)
    problems = []
    for item in caught:
        if issubclass(item.category, VideoWarning):
            problems.append(item.message)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return features, problems
