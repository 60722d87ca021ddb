"""Per-video claims on a cache folder, so that concurrent extraction runs share out its videos.

Two `actiondiff extract` runs given the same `--out` (two terminals, or two nodes on a shared
disk) would each extract every video. Before extracting a video, a run takes an exclusive
`flock` on `{root}/claims/{id}.lock` without waiting; a video that another run holds is put off
and taken later, when that run is done with it (then it is usually committed, and skipped as
such). A claim is the lock, not the file: the kernel drops it when its process ends, however it
ends (`kill -9` included), so a killed run never leaves a video blocked. The holder removes the
file when done, and a claimer checks that the file it locked is still the one at the path (the
usual lock-file protocol), so two runs never both hold one video. Multi-device workers claim the
same way, after taking a video from their shared counter.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from actiondiff.store.cache import FeatureCache, safe_name

log = logging.getLogger(__name__)

CLAIMS = "claims"
_WARNED: set[Path] = set()  # caches whose file system refused a lock: warned about once


def claim_path(cache: FeatureCache, video_id: str) -> Path:
    """The lock file of one video's claim in `cache`."""
    return cache.root / CLAIMS / f"{safe_name(video_id)}.lock"


def _lock(path: Path, wait: bool) -> int | None:
    """An open descriptor of `path` holding its exclusive lock, or None when another process
    holds it and `wait` is False. Raises OSError where the file system has no locks."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise
        # The holder before us removes the file before it unlocks: if it did while we waited,
        # our lock is on a file no longer at the path, and a third run may lock the new one.
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        held = os.fstat(fd)
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)


@contextmanager
def claim(cache: FeatureCache, video_id: str, wait: bool) -> Iterator[bool]:
    """Hold this process's claim on `video_id` for the `with` block.

    Yields True while the claim is held (or when the file system cannot lock: then a warning
    says that concurrent runs may extract a video twice), False when another process holds it
    and `wait` is False (nothing is held then).
    """
    path = claim_path(cache, video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _lock(path, wait)
    except OSError as error:  # e.g. ENOLCK: a network file system mounted without locks
        if cache.root not in _WARNED:
            _WARNED.add(cache.root)
            log.warning("could not lock %s (%s): videos are not claimed, so concurrent runs on %s may extract a "
                        "video twice", path, error, cache.root)
        yield True
        return
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)  # before unlocking: see `_lock`
        os.close(fd)


def claim_each(
    videos: Iterable[tuple[str, str]], cache: FeatureCache, on_elsewhere: Callable[[str], None]
) -> Iterator[tuple[str, str]]:
    """The videos of `videos` [(video_id, path)] that this process claimed and that are still
    to extract, each claimed until the caller asks for the next one.

    Videos another run holds are put off; once `videos` is exhausted the put-off ones are
    tried again, and when another run holds all that are left, the first is waited for. A
    video found committed once claimed (another run extracted it) goes to `on_elsewhere`.
    """
    put_off = yield from _claim_free(videos, cache, on_elsewhere)
    while put_off:
        left = yield from _claim_free(put_off, cache, on_elsewhere)
        if len(left) == len(put_off):  # another run holds every one: wait for the first
            log.info("%d videos held by other runs on %s; waiting for %s", len(left), cache.root, left[0][0])
            with claim(cache, left[0][0], wait=True):
                if cache.is_committed(left[0][0]):
                    on_elsewhere(left[0][0])
                else:
                    yield left[0]
            left = left[1:]
        put_off = left


def _claim_free(
    videos: Iterable[tuple[str, str]], cache: FeatureCache, on_elsewhere: Callable[[str], None]
) -> Generator[tuple[str, str], None, list[tuple[str, str]]]:
    """Yield the videos of `videos` no other run holds and not yet committed (claimed while
    the caller works on each); returns those another run held."""
    held_elsewhere = []
    for video_id, path in videos:
        with claim(cache, video_id, wait=False) as held:
            if not held:
                held_elsewhere.append((video_id, path))
            elif cache.is_committed(video_id):
                on_elsewhere(video_id)
            else:
                yield video_id, path
    return held_elsewhere
