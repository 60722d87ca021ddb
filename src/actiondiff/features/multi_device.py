"""Extraction over several devices: one worker process per device, claiming videos as it goes.

`extract --devices cuda:0,cuda:1` starts one process per device ('spawn', as CUDA needs).
Each loads the backbone once, then claims the next unclaimed video of the shared list (a
counter in shared memory, taken under its lock, then the video's claim in the cache, which
other runs on the same folder respect: `claims.py`), extracts it and commits it to the cache
itself, with the same atomic commits and failure records as a single-process job
(`job.extract_into_cache`), and tells the parent what it did. A slow video holds up only its
own worker. The parent counts, shows progress and writes the one summary.

Kill-safety: nothing but the cache is written, so a killed worker, or a killed run, leaves
committed videos and nothing half-done that counts; the rerun redoes the rest. A worker that
dies or fails to load leaves its share to the others; the videos it left unfinished are named.
Workers stop claiming once the parent is gone. Features do not depend on the device split:
each video's random draws come from its own seeded generator (`windows.video_seed`). (On CPU
they do depend, in the last bits, on torch's thread count, which workers keep as it is set.)
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import queue
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from actiondiff.features.claims import claim_each
from actiondiff.features.job import (
    BackboneLoader,
    JobSummary,
    VideoOutcome,
    VideoProgress,
    extract_into_cache,
    frames_bar,
    pending,
)
from actiondiff.store.cache import FeatureCache

log = logging.getLogger(__name__)

# How often (seconds) the parent looks whether its workers still run while none reports.
POLL_S = 0.5


@dataclass
class WorkerLoaded:
    """A worker's first message: its backbone is loaded (the ETA starts at the first)."""

    worker: str


@dataclass
class WorkerStopped:
    """A worker's last message when it stops on an error (the rest of its share goes to others)."""

    worker: str
    reason: str


def parse_devices(text: str) -> list[str]:
    """`cuda:0,cuda:1` -> ["cuda:0", "cuda:1"]; a name may repeat (`cpu,cpu`: two CPU workers).

    Raises:
        ValueError: an empty name, or one torch does not read as a device.
    """
    names = [name.strip() for name in text.split(",")]
    for name in names:
        try:
            torch.device(name)
        except RuntimeError as error:
            raise ValueError(
                f"Expected --devices to be torch devices separated by commas (e.g. cuda:0,cuda:1), but got "
                f"{name!r} in {text!r}."
            ) from error
    return names


def run_on_devices(
    videos: list[tuple[str, str]],
    cache: FeatureCache,
    loader: BackboneLoader,
    devices: list[str],
    strict: bool = False,
    on_committed: Callable[[str], None] | None = None,
) -> JobSummary:
    """`job.run_extraction` with one worker process per device of `devices`.

    Raises:
        RuntimeError: with `strict`, the first video error (the other workers are stopped);
            else when workers stopped and left videos neither committed nor recorded as
            failed, naming them (a rerun extracts exactly those).
    """
    summary = JobSummary()
    todo = pending(videos, cache, summary, on_committed)
    if not todo:
        return summary
    devices = devices[: len(todo)]  # no worker without a video
    context = torch.multiprocessing.get_context("spawn")
    next_video = context.Value("q", 0)  # index into `todo` of the next video to claim
    outcomes = context.Queue()
    console = sys.stderr.isatty()
    plan = (todo, next_video, outcomes, loader, cache, strict, console, log.getEffectiveLevel())
    workers = [
        context.Process(target=_work, args=(slot, device, *plan), name=f"extract-{slot}-{device}", daemon=True)
        for slot, device in enumerate(devices)
    ]
    for worker in workers:
        worker.start()
    progress, reported, stopped, per_worker = VideoProgress(len(todo), console), set(), {}, {}
    try:
        for message in _messages(outcomes, workers):
            if isinstance(message, WorkerLoaded):
                progress.loaded()
                continue
            if isinstance(message, WorkerStopped):
                log.error("worker %s stopped: %s", message.worker, message.reason)
                stopped[message.worker] = message.reason
                if strict:
                    raise RuntimeError(f"Worker {message.worker} stopped at a bad video (--strict): {message.reason}")
                continue
            summary.add(message)
            progress.finished(message)
            reported.add(message.video_id)
            per_worker[message.worker] = per_worker.get(message.worker, 0) + 1
            if on_committed and not message.failed:
                on_committed(message.video_id)
            if len(reported) == len(todo):
                break  # every video is committed or recorded: the workers have nothing left to lose
    finally:
        progress.close()
        for worker in workers:  # still running when every video is done (or the parent stops early)
            if worker.is_alive():
                worker.terminate()  # spares their teardown; each write of theirs is atomic
            worker.join()
    log.info("videos per worker: %s", ", ".join(f"{w} {n}" for w, n in sorted(per_worker.items())) or "none")
    left = [video_id for video_id, _ in todo if video_id not in reported]
    if left:
        for slot, (worker, device) in enumerate(zip(workers, devices, strict=True)):
            label = f"{slot}:{device}"
            if worker.exitcode != 0 and label not in stopped:
                stopped[label] = f"exited with code {worker.exitcode} (killed, or out of memory?)"
        raise RuntimeError(
            f"{summary.line()}, but {len(stopped)} of {len(workers)} workers stopped early "
            f"({'; '.join(f'{w}: {r}' for w, r in sorted(stopped.items()))}) and {len(left)} videos were neither "
            f"committed nor recorded as failed: {left[:10]}{' ...' if len(left) > 10 else ''}. Rerun the same "
            f"command: committed videos are kept and only the others are extracted."
        )
    return summary


def _messages(outcomes, workers: list) -> Iterator[VideoOutcome | WorkerLoaded | WorkerStopped]:
    """The workers' messages as they come, until every worker has exited and all are read."""
    while True:
        try:
            yield outcomes.get(timeout=POLL_S)
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                break
    while True:  # what the last workers sent just before they exited
        try:
            yield outcomes.get_nowait()
        except queue.Empty:
            return


def _taken(todo: list[tuple[str, str]], next_video, parent) -> Iterator[tuple[str, str]]:
    """The videos of `todo` this worker takes from the shared counter (under its lock), until
    none is left or the parent is gone."""
    while parent is None or parent.is_alive():
        with next_video.get_lock():
            index = next_video.value
            next_video.value += 1
        if index >= len(todo):
            return
        yield todo[index]


def _work(
    slot: int,
    device: str,
    todo: list[tuple[str, str]],
    next_video,
    outcomes,
    loader: BackboneLoader,
    cache: FeatureCache,
    strict: bool,
    console: bool,
    log_level: int,
) -> None:
    """One worker process: load the backbone on `device`, then claim, extract and report
    videos until none is left (or the parent is gone)."""
    label = f"{slot}:{device}"
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s %(name)s [worker {label}]: %(message)s")
    parent = multiprocessing.parent_process()
    try:
        # CPU workers keep torch's thread count (OMP_NUM_THREADS, as the parent's): CPU features
        # differ in their last bits between thread counts, as any reduction split over threads.
        if torch.device(device).type == "cuda" and torch.device(device).index is not None:
            torch.cuda.set_device(device)  # else pinned copies would open a context on cuda:0
        extractor = loader(device, cache)
        outcomes.put(WorkerLoaded(label))
        # each video taken from the shared counter is also claimed in the cache, as another
        # run on the same folder may be extracting it (see `claims.py`)
        def elsewhere(video_id: str) -> None:
            outcomes.put(VideoOutcome(video_id, failed=False, worker=label, elsewhere=True))

        for video_id, path in claim_each(_taken(todo, next_video, parent), cache, elsewhere):
            with frames_bar(f"[{label}] {video_id}", path, console, position=slot + 1) as on_window:
                outcome = extract_into_cache(extractor, cache, video_id, path, strict, on_window)
            outcomes.put(dataclasses.replace(outcome, worker=label))
    except Exception as error:  # not swallowed: the parent names it, and this worker exits 1
        if not isinstance(error, ValueError | RuntimeError | OSError):  # a bug: its traceback helps
            log.exception("stopping on an unexpected error")
        outcomes.put(WorkerStopped(label, f"{type(error).__name__}: {error}"))
        sys.exit(1)
