"""The records the extraction side writes and the store side reads, with no torch or PyAV.

`VideoFeatures` is what an extraction job hands to the per-video cache, `VerifyReport` what
every check of the cache or the packed store returns, `atomic_write` how every file of a
store is written (a killed writer leaves the old file or the new one, never half of one).
"""

from __future__ import annotations

import os
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


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary name, fsync, then rename (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
