"""One pass per video for several SVD feature sets: decode once, share the VAE and CLIP.

Feature sets that may share (`sharing.can_share`: the SVD path, the same weights, the same decode
settings but for the window length, the same device placement) are extracted together:

- the video is decoded once; each window length cuts the same frames into its own windows;
- each VAE chunk's posterior (mean and log-variance) and each CLIP image embedding is computed
  once per video for every set whose keys match (`SVDExtractor._vae_key` / `_clip_key`) and
  whose window batches the same frames (`features/stage_memo.py`), whatever its window length
  (the chunk of frames 0-7 opens windows of 10, 16 and 25 alike): the same code on the same
  inputs, so the same bytes;
- the modules are loaded once per `sharing.module_key`;
- each set keeps its own generator (seeded as a separate pass seeds it, from its own settings),
  so its random draws (conditioning noise, posterior sample, UNet noise) and everything after
  them (the conditioning VAE pass, the UNet) stay its own. With the draws seeded per set, no
  two sets of the shipped configs ever feed the UNet the same latents: the UNet is not shared.

The features of each set are committed into that set's own cache, under its own identity,
exactly as a separate pass would (tests/test_shared.py compares the bytes).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from actiondiff.features.job import BackboneLoader, JobSummary, VideoOutcome, VideoProgress
from actiondiff.features.sharing import can_share, module_key
from actiondiff.features.stage_memo import StageMemo, window_frame_ids
from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.windows import PREFETCH_WINDOWS, _to_input, content_key, video_seed
from actiondiff.io.prefetch import prefetched
from actiondiff.io.video import VideoError, VideoWarning, iter_frames
from actiondiff.store.cache import FeatureCache
from actiondiff.store.records import VideoFeatures

log = logging.getLogger(__name__)

class SharedPass:
    """Several SVD extractors (one per feature set, sharing modules) run over each video once.

    Args:
        extractors: {set name: SVDExtractor}, in the order their stages run per window.
    Raises:
        ValueError: two extractors whose decode settings differ beyond the window length.
    """

    def __init__(self, extractors: dict[str, SVDExtractor]) -> None:
        decodes = {dataclasses.replace(e.decode, window=1) for e in extractors.values()}
        if len(decodes) != 1:
            raise ValueError(
                f"Expected the feature sets of one pass {sorted(extractors)} to share their decode settings "
                f"but for `window`, but got {len(decodes)} different ones."
            )
        self.extractors = extractors
        self.decode = next(iter(decodes))

    def extract_video(
        self,
        path: str | Path,
        video_id: str,
        names: list[str] | None = None,
        prefetch: int = PREFETCH_WINDOWS,
        on_frame: Callable[[int], None] | None = None,
    ) -> dict[str, VideoFeatures]:
        """Decode one video once and return the features of each set of `names` (default: all).

        Each set's windows are those of a separate pass: consecutive runs of its `window`
        kept frames, the last one shorter. `on_frame`: called with each decoded frame's source
        index (a progress tick).
        """
        names = list(self.extractors) if names is None else names
        key = content_key(path)
        runs = {name: _SetRun(self.extractors[name], video_seed(key, self.extractors[name].extract)) for name in names}
        windows: dict[int, list[str]] = {}
        for name in names:
            windows.setdefault(self.extractors[name].decode.window, []).append(name)
        buffers = {length: _Buffer() for length in windows}
        device = next(iter(self.extractors.values())).device
        memo = StageMemo()
        depth = prefetch * max(windows)  # frames decoded ahead: `prefetch` windows of the longest
        for index, stamp, rgb in prefetched(iter_frames(path, self.decode), depth):
            frame = torch.from_numpy(np.ascontiguousarray(rgb))
            for length, buffer in buffers.items():
                buffer.add(frame, index, stamp)
                if len(buffer.frames) == length:
                    self._run_window(buffer, length, [runs[n] for n in windows[length]], device, memo)
            # every window still to run starts at its length's first buffered frame, or later
            memo.forget_before(min((b.indices[0] for b in buffers.values() if b.indices), default=index + 1))
            if on_frame is not None:
                on_frame(index)
        for length, buffer in buffers.items():
            if buffer.frames:
                self._run_window(buffer, length, [runs[n] for n in windows[length]], device, memo)
        return {name: run.features(video_id) for name, run in runs.items()}

    def _run_window(self, buffer: _Buffer, length: int, runs: list[_SetRun], device: torch.device, memo: StageMemo) -> None:
        """One window of `length` through every set that cuts it, sharing the video's memo."""
        frames = _to_input(buffer.frames, self.decode, device)
        memo.frame_ids = window_frame_ids(buffer.indices, length)
        for run in runs:
            run.add(run.extractor.extract_window(frames, run.generator, memo), buffer)
        buffer.clear()


class _Buffer:
    """The kept frames of one window being filled, with their source indices and timestamps."""

    def __init__(self) -> None:
        self.clear()

    def add(self, frame: torch.Tensor, index: int, stamp: float) -> None:
        self.frames.append(frame)
        self.indices.append(index)
        self.stamps.append(stamp)

    def clear(self) -> None:
        self.frames: list[torch.Tensor] = []
        self.indices: list[int] = []
        self.stamps: list[float] = []


class _SetRun:
    """One feature set's state over one video: its generator and its features so far."""

    def __init__(self, extractor: SVDExtractor, seed: int) -> None:
        self.extractor = extractor
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.parts: dict[str, list[np.ndarray]] = {}
        self.indices: list[np.ndarray] = []
        self.stamps: list[np.ndarray] = []

    def add(self, features: dict[str, np.ndarray], buffer: _Buffer) -> None:
        for name, value in features.items():
            self.parts.setdefault(name, []).append(value)
        self.indices.append(np.asarray(buffer.indices, dtype=np.int64))
        self.stamps.append(np.asarray(buffer.stamps, dtype=np.float64))

    def features(self, video_id: str) -> VideoFeatures:
        return VideoFeatures(
            video_id=video_id,
            features={name: np.concatenate(chunks) for name, chunks in self.parts.items()},
            frame_index=np.concatenate(self.indices),
            timestamp_ms=np.concatenate(self.stamps),
        )


def load_shared(loaders: dict[str, BackboneLoader], caches: dict[str, FeatureCache], device: str) -> SharedPass:
    """One `SharedPass` over the sets of `loaders`, each module set loaded once per
    `sharing.module_key`; each set's weight checksums checked and recorded in its cache,
    as `BackboneLoader` does for a separate pass.

    Raises:
        ValueError: sets that may not share (`can_share`).
    """
    if not can_share(*((x.backbone, x.decode, x.settings, x.weights) for x in loaders.values())):
        raise ValueError(f"Expected feature sets that may share one pass (`can_share`), but {sorted(loaders)} may not.")
    modules: dict[Hashable, tuple] = {}
    extractors = {}
    for name, loader in loaders.items():
        key = module_key(loader.weights, loader.settings)
        if key not in modules:
            modules[key] = SVDExtractor.load_modules(loader.weights, loader.settings)
        extractors[name] = SVDExtractor(*modules[key], loader.decode, loader.settings, device)
        loader.check_and_record(caches[name])
    return SharedPass(extractors)


@dataclass(frozen=True)
class SetTarget:
    """One feature set of a shared job: where its features go and which videos it needs."""

    loader: BackboneLoader
    cache: FeatureCache
    video_ids: frozenset[str]


def run_shared_extraction(
    videos: list[tuple[str, str]], targets: dict[str, SetTarget], device: str, strict: bool = False
) -> dict[str, JobSummary]:
    """Extract every (video, set) of `videos` [(video_id, path)] not yet committed, one pass
    per video for all the sets that still need it.

    A video is done for a set once committed to that set's cache; a rerun skips it for that set
    only, so a job killed between two sets' commits redoes the others, with the same bytes
    (each set's draws are its own). A video that fails is recorded in each needing set's cache.

    Returns:
        {set name: its JobSummary}.
    """
    summaries = {name: JobSummary() for name in targets}
    todo = []
    for video_id, path in videos:
        names = [n for n, t in targets.items() if video_id in t.video_ids]
        needing = [n for n in names if not targets[n].cache.is_committed(video_id)]
        for name in names:
            if name not in needing:
                summaries[name].skipped.append(video_id)
        if needing:
            todo.append((video_id, path, needing))
    if not todo:
        return summaries
    working = [n for n in targets if any(n in names for *_, names in todo)]
    shared = load_shared({n: targets[n].loader for n in working}, {n: targets[n].cache for n in working}, device)
    progress = VideoProgress(len(todo), sys.stderr.isatty())
    try:
        for video_id, path, names in todo:
            outcomes = extract_sets_into_caches(shared, {n: targets[n].cache for n in names}, video_id, path, strict)
            for name, outcome in outcomes.items():
                summaries[name].add(outcome)
            progress.finished(outcomes[names[0]])
    finally:
        progress.close()
    return summaries


def extract_sets_into_caches(
    shared: SharedPass, caches: dict[str, FeatureCache], video_id: str, path: str, strict: bool = False
) -> dict[str, VideoOutcome]:
    """One pass over one video for the sets of `caches`, each committed to its own cache (in
    `caches` order), or the failure recorded in each (`strict`: raise). A partly decoded video
    is committed and recorded with kind "warning" in each, as `job.extract_into_cache` does."""
    began = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", VideoWarning)
            features = shared.extract_video(path, video_id, list(caches))
    except VideoError as error:
        if strict:
            raise
        log.warning("video %s failed: %s", video_id, error)
        for cache in caches.values():
            cache.record_failure(video_id, path, error)
        return {name: VideoOutcome(video_id, failed=True, seconds=time.perf_counter() - began) for name in caches}
    problems = [item.message for item in caught if issubclass(item.category, VideoWarning)]
    for item in caught:
        if not issubclass(item.category, VideoWarning):
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if problems:
        log.warning("video %s decoded partly: %s", video_id, "; ".join(map(str, problems)))
    seconds = time.perf_counter() - began
    outcomes = {}
    for name, cache in caches.items():
        cache.commit(features[name])  # removes an earlier failure record of this video
        if problems:
            cache.record_failure(video_id, path, VideoWarning(" | ".join(map(str, problems))), kind="warning")
        frames = len(features[name].frame_index)
        outcomes[name] = VideoOutcome(video_id, failed=False, warned=bool(problems), frames=frames, seconds=seconds)
    return outcomes
