"""The records the extraction side writes and the store side reads, with no torch or PyAV.

`VideoFeatures` is what an extraction job hands to the per-video cache, `VerifyReport` what
every check of the cache or the packed store returns, `atomic_write` how every file of a
store is written (a killed writer leaves the old file or the new one, never half of one).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class VideoFeatures:
    """All features of one video.

    features: {tap name, e.g. "L09_T20": [num_frames, channels] float32}.
    frame_index: [num_frames] int64; timestamp_ms: [num_frames] float64.
    """

    video_id: str
    features: dict[str, np.ndarray]
    frame_index: np.ndarray
    timestamp_ms: np.ndarray


@dataclass
class VerifyReport:
    """What `store.verify_store` / `FeatureCache.verify` found: damaged videos and store-wide problems."""

    checked: int = 0
    bad: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.problems

    def flag(self, video_id: str, reason: str) -> None:
        self.bad.setdefault(video_id, []).append(reason)

    def lines(self) -> list[str]:
        """One line per problem and per damaged video, then a verdict."""
        out = [f"PROBLEM {p}" for p in self.problems]
        out += [f"BAD {v}: {'; '.join(reasons)}" for v, reasons in sorted(self.bad.items())]
        verdict = "OK" if self.ok else f"FAILED: {len(self.bad)} damaged videos, {len(self.problems)} store problems"
        return [*out, f"{verdict} ({self.checked} videos checked)"]


# `.NAME.tmp-<host>-<pid>`, or `.NAME.tmp-<pid>` as written before the host was recorded.
TEMPORARY = re.compile(r"^\..+\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)$")
# A temporary file is renamed within seconds of its creation; one a day old has no writer left.
STALE_AFTER_S = 24 * 3600


def temporary_path(path: Path) -> Path:
    """The name a writer on this machine gives `path` until it renames it into place."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _running_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: Path, now: float | None = None) -> list[Path]:
    """Remove the temporary files (or folders) that killed writers left in `folder`.

    The rule: `.NAME.tmp-<host>-<pid>` is stale when <host> is this machine and no process
    <pid> runs here; any other temporary (another machine's, or the older `.NAME.tmp-<pid>`
    form) is stale once it is `STALE_AFTER_S` (a day) old, because a writer on another node of
    a shared file system may still be running. Returns the paths removed, sorted.
    """
    now = time.time() if now is None else now
    host, removed = socket.gethostname(), []
    for path in sorted(folder.glob(".*.tmp-*")) if folder.is_dir() else []:
        match = TEMPORARY.match(path.name)
        if not match:
            continue
        try:
            age = now - path.lstat().st_mtime
        except FileNotFoundError:  # renamed by its writer meanwhile
            continue
        here = match["host"] == host
        if (here and not _running_here(int(match["pid"]))) or (not here and age > STALE_AFTER_S):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary name, fsync, then rename (atomic on POSIX)."""
    tmp = temporary_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
