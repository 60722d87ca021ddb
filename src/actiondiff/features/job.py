"""One extraction job: a list of videos through one loaded extractor into the cache.

Committed videos are skipped, so a killed or preempted job, rerun, redoes only the rest. Each
video is claimed before it is extracted (`claims.py`), so two runs on one cache folder share its
videos out instead of both extracting every one. A video that fails is recorded in the cache's failure manifest and the job carries on; a video
that decodes only partly (a `VideoWarning`) keeps its features and gets a manifest line of
kind "warning".

Progress: on a terminal, a bar over the job's videos and, under it, a bar over the current
video's frames, ticked after each window; in a log file (Snakemake's `> {log}`), one
`progress_line` per video. `multi_device.py` runs the same per-video step in one worker
process per device.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from actiondiff.features.backbones import Backbone, backbone_class, weight_checksums
from actiondiff.features.backbones.registry import weight_paths
from actiondiff.features.claims import claim_each
from actiondiff.features.weight_files import WeightsError
from actiondiff.io.video import VideoError, VideoWarning, declared_frames
from actiondiff.settings import DecodeSettings, WeightsSettings
from actiondiff.store.cache import FeatureCache
from actiondiff.store.records import VideoFeatures

log = logging.getLogger(__name__)


@dataclass
class VideoOutcome:
    """What extracting one video did; small, as worker processes hand it to their parent."""

    video_id: str
    failed: bool
    warned: bool = False
    frames: int = 0  # kept frames (rows of features)
    seconds: float = 0.0
    worker: str = ""  # multi-device runs: which worker (e.g. "1:cuda:1")
    elsewhere: bool = False  # committed by another run on the same cache while this one ran


@dataclass
class JobSummary:
    """What one job did: video ids extracted now, skipped as already committed, and failed."""

    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)

    def add(self, outcome: VideoOutcome) -> None:
        if outcome.elsewhere:
            self.skipped.append(outcome.video_id)
            return
        if outcome.failed:
            self.failed.append(outcome.video_id)
            return
        self.extracted.append(outcome.video_id)
        if outcome.warned:
            self.warned.append(outcome.video_id)

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


class VideoProgress:
    """Progress over a job's videos: a tqdm bar on a terminal, else one `progress_line` per
    extracted video in the log (a log file gets no carriage returns)."""

    def __init__(self, total: int, console: bool) -> None:
        self.total, self.console, self.done = total, console, 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc="extract", unit="video", disable=not console)

    def loaded(self) -> None:
        """Restart the clock once the models are loaded (before any video is done), so that
        the ETA counts extraction only (a multi-device run creates this before its workers load)."""
        if self.done == 0:
            self.start = time.perf_counter()
            self.bar.reset()

    def finished(self, outcome: VideoOutcome) -> None:
        self.done += 1
        self.bar.update()
        if not self.console and not outcome.failed and not outcome.elsewhere:
            elapsed = time.perf_counter() - self.start
            log.info("%s", progress_line(self.done, self.total, outcome.video_id, outcome.frames, outcome.seconds, elapsed))

    def close(self) -> None:
        self.bar.close()


class FramesBar:
    """A tqdm bar over one video's source frames (total: what the video declares), ticked by
    calling it with each window's [f] source frame indices: an `on_window` callback."""

    def __init__(self, label: str, path: str, position: int = 1) -> None:
        self.bar = tqdm(total=declared_frames(path), desc=label, unit="frame", position=position, leave=False)

    def __call__(self, frame_index: np.ndarray) -> None:
        self.bar.update(int(frame_index[-1]) + 1 - self.bar.n)  # the bar stands at the last index + 1


@contextmanager
def frames_bar(label: str, path: str, console: bool, position: int = 1) -> Iterator[FramesBar | None]:
    """On a terminal a `FramesBar` for one video, closed after it; elsewhere None (no callback).

    Args:
        position: the bar's line under the videos bar (worker k of a multi-device run: k + 1).
    """
    if not console:
        yield None
        return
    bar = FramesBar(label, path, position)
    try:
        yield bar
    finally:
        bar.bar.close()


@dataclass(frozen=True)
class BackboneLoader:
    """Loads the backbone of one feature identity on a device; picklable, so that each worker
    process of a multi-device run loads its own.

    The weights' checksums are taken again once they are loaded (a file changed since the
    identity was computed is an error), so a cache records the weights that produced its
    features (`weights.json`), not those found at pack time.
    """

    backbone: str
    settings: Any  # the backbone's settings object (`ExtractSettings` for svd / sdv2)
    decode: DecodeSettings
    weights: WeightsSettings
    identity: dict[str, Any]  # `feature_identity` of these settings and weights

    def __call__(self, device: str, cache: FeatureCache) -> Backbone:
        model = backbone_class(self.backbone).load(self.settings, self.decode, self.weights, device)
        self.check_and_record(cache)
        return model

    def check_and_record(self, cache: FeatureCache) -> None:
        """Once the weights are loaded: their checksums are the identity's (else an error), and
        they are recorded in `cache` (also for modules loaded once for several sets)."""
        loaded, expected = weight_checksums(self.backbone, self.weights), self.identity["weights_sha256"]
        if loaded != expected:
            changed = sorted(r for r in {*loaded, *expected} if loaded.get(r) != expected.get(r))
            raise WeightsError(f"Expected the weight files to stay as they were while they were loaded, but {changed} changed. Rerun.")
        cache.record_weights({path: loaded[role] for path, role in weight_paths(self.backbone, self.weights).items()})


def pending(
    videos: list[tuple[str, str]],
    cache: FeatureCache,
    summary: JobSummary,
    on_committed: Callable[[str], None] | None = None,
) -> list[tuple[str, str]]:
    """The videos of `videos` [(video_id, path)] not yet committed; the others go to
    `summary.skipped`, and to `on_committed` if given."""
    todo = []
    for video_id, path in videos:
        if cache.is_committed(video_id):
            summary.skipped.append(video_id)
        else:
            todo.append((video_id, path))
    if summary.skipped:
        log.info("%d videos already committed for settings %s", len(summary.skipped), cache.settings_hash)
    for video_id in summary.skipped if on_committed else ():
        on_committed(video_id)
    return todo


def run_extraction(
    videos: list[tuple[str, str]],
    cache: FeatureCache,
    extractor_factory: Callable[[], Backbone],
    strict: bool = False,
    on_committed: Callable[[str], None] | None = None,
) -> JobSummary:
    """Extract every uncommitted video of `videos` [(video_id, path)] into `cache`.

    Args:
        extractor_factory: builds the `Backbone` (anything with `extract_video(path, video_id,
            on_window)`); called only if some video needs work, so a fully committed shard
            never loads the models.
        strict: re-raise the first video error instead of recording it.
        on_committed: called with the id of each video committed, now or before (e.g. to
            write it in another format too).
    """
    summary = JobSummary()
    todo = pending(videos, cache, summary, on_committed)
    if not todo:
        return summary
    extractor = extractor_factory()
    console = sys.stderr.isatty()
    progress = VideoProgress(len(todo), console)

    def finished(outcome: VideoOutcome) -> None:
        summary.add(outcome)
        progress.finished(outcome)
        if on_committed and not outcome.failed:
            on_committed(outcome.video_id)

    try:
        # claimed one by one: another run on this cache takes the videos this one holds
        for video_id, path in claim_each(todo, cache, lambda v: finished(VideoOutcome(v, failed=False, elsewhere=True))):
            with frames_bar(video_id, path, console) as on_window:
                outcome = extract_into_cache(extractor, cache, video_id, path, strict, on_window)
            finished(outcome)
    finally:
        progress.close()
    return summary


def extract_into_cache(
    extractor: Backbone,
    cache: FeatureCache,
    video_id: str,
    path: str,
    strict: bool = False,
    on_window: Callable[[np.ndarray], None] | None = None,
) -> VideoOutcome:
    """Extract one video and commit it to `cache`, or record why it failed (`strict`: raise).

    A partly decoded video is committed and also recorded, with kind "warning".
    """
    began = time.perf_counter()
    try:
        features, problems = _extract_one(extractor, path, video_id, on_window)
    except VideoError as error:
        if strict:
            raise
        log.warning("video %s failed: %s", video_id, error)
        cache.record_failure(video_id, path, error)
        return VideoOutcome(video_id, failed=True, seconds=time.perf_counter() - began)
    cache.commit(features)  # removes an earlier failure record of this video
    if problems:
        log.warning("video %s decoded partly: %s", video_id, "; ".join(map(str, problems)))
        cache.record_failure(video_id, path, VideoWarning(" | ".join(map(str, problems))), kind="warning")
    return VideoOutcome(
        video_id, failed=False, warned=bool(problems), frames=len(features.frame_index), seconds=time.perf_counter() - began
    )


def _extract_one(
    extractor: Backbone, path: str, video_id: str, on_window: Callable[[np.ndarray], None] | None
) -> tuple[VideoFeatures, list[VideoWarning]]:
    """Extract one video, collecting the `VideoWarning`s its decode emits; others pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VideoWarning)
        # without a callback (log files), the two-argument call that backbones of other
        # packages, written before `on_window`, still answer
        if on_window is None:
            features = extractor.extract_video(path, video_id)
        else:
            features = extractor.extract_video(path, video_id, on_window=on_window)
    problems = []
    for item in caught:
        if issubclass(item.category, VideoWarning):
            problems.append(item.message)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return features, problems
