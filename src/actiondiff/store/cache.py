"""Per-video feature cache with atomic commits: what extraction jobs write, what pack reads.

Layout of one cache (one dataset x one settings hash):
    {root}/settings.json              the extraction settings the hash names
    {root}/weights.json               SHA-256 of each weight file, taken when extraction loaded it
    {root}/videos/{id}.npz            features of one video (committed by rename)
    {root}/videos/{id}.done           completion marker: settings hash + checksum of the npz
    {root}/failures/{id}.json         why a video failed (removed when it later succeeds)
    {root}/shards/{i}.json            what the extraction job of shard i did (the workflow's output)
    {root}/claims/{id}.lock           a run's claim on a video while it extracts it (features/claims.py)
A video counts as done only when its marker exists and names this cache's hash, so a job
killed at any moment leaves either a committed video or nothing that counts. A manifest video
is *accounted for* when it is committed intact or recorded as failed; `unaccounted` names the
others (features damaged, removed by hand, or never extracted), which nothing may pack over.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from urllib.parse import quote

import numpy as np

from actiondiff.store.records import (
    VerifyReport,
    VideoFeatures,
    atomic_write,
    remove_stale_temporaries,
)


def safe_name(video_id: str) -> str:
    """A file name for a video id (ids may hold `/`, spaces or `&()[]!#+`)."""
    return quote(video_id, safe=" &()[]!#+,-_.=@")


class FeatureCache:
    """One directory of per-video features for one settings hash."""

    def __init__(self, root: str | Path, settings_hash: str) -> None:
        self.root = Path(root)
        self.settings_hash = settings_hash
        self.videos = self.root / "videos"
        self.failures = self.root / "failures"

    def _paths(self, video_id: str) -> tuple[Path, Path]:
        name = safe_name(video_id)
        return self.videos / f"{name}.npz", self.videos / f"{name}.done"

    def is_committed(self, video_id: str) -> bool:
        """True when the video's marker exists and was written for this settings hash."""
        _, marker = self._paths(video_id)
        try:
            return json.loads(marker.read_text())["settings_hash"] == self.settings_hash
        except (OSError, ValueError, KeyError):
            return False

    def commit(self, features: VideoFeatures) -> None:
        """Write one video's features, then its marker; each step atomic."""
        self.videos.mkdir(parents=True, exist_ok=True)
        data, marker = self._paths(features.video_id)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            frame_index=features.frame_index,
            timestamp_ms=features.timestamp_ms,
            **{f"feature/{name}": value for name, value in features.features.items()},
        )
        payload = buffer.getvalue()
        atomic_write(data, payload)
        record = {
            "video_id": features.video_id,
            "settings_hash": self.settings_hash,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "num_frames": int(features.frame_index.shape[0]),
        }
        atomic_write(marker, (json.dumps(record, sort_keys=True) + "\n").encode())
        self.failure_path(features.video_id).unlink(missing_ok=True)

    def load(self, video_id: str) -> VideoFeatures:
        """Read a committed video's features.

        Raises:
            FileNotFoundError: the video is not committed.
            ValueError: its file does not match the checksum in its marker (damaged).
        """
        data, marker = self._paths(video_id)
        if not self.is_committed(video_id):
            raise FileNotFoundError(f"Expected video {video_id!r} to be committed in {self.root}, but it is not.")
        payload = data.read_bytes()
        record = json.loads(marker.read_text())
        if hashlib.sha256(payload).hexdigest() != record["sha256"]:
            raise ValueError(
                f"Expected the features of video {video_id!r} ({data}) to match their checksum, but "
                f"they do not: the file is damaged. `snakemake --forcerun pack_store` sets damaged videos "
                f"aside (verify_features) and the run after re-extracts exactly them (README, Resuming)."
            )
        with np.load(io.BytesIO(payload)) as arrays:
            return VideoFeatures(
                video_id=video_id,
                features={k.removeprefix("feature/"): arrays[k] for k in arrays.files if k.startswith("feature/")},
                frame_index=arrays["frame_index"],
                timestamp_ms=arrays["timestamp_ms"],
            )

    def record_weights(self, files: dict[str, str]) -> None:
        """Record {weight file: SHA-256} of the weights an extraction job loaded (`weights.json`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / "weights.json", (json.dumps(files, indent=2, sort_keys=True) + "\n").encode())

    def recorded_weights(self) -> dict[str, str] | None:
        """The weight checksums recorded by extraction, or None if no job recorded them."""
        try:
            return json.loads((self.root / "weights.json").read_text())
        except (OSError, ValueError):
            return None

    def unaccounted(self, video_ids: list[str], check_data: bool = False) -> dict[str, str]:
        """{video_id: why} for the videos that are neither committed nor recorded as failed.

        Args:
            check_data: also read each committed video and check it against its checksum
                (reads the whole cache); without it only the markers are read.
        """
        problems = {}
        for video_id in video_ids:
            if self.is_committed(video_id):
                if check_data:
                    try:
                        self.load(video_id)
                    except ValueError:
                        problems[video_id] = "its features do not match their checksum (damaged)"
                    except OSError as error:
                        problems[video_id] = f"its features are unreadable ({error!r:.200})"
                continue
            failure = self.failure(video_id)
            if failure is not None and failure.get("kind") != "warning":
                continue  # failed, and recorded why
            # (a warning is recorded after the commit: without the commit it lost its features)
            aside = self._paths(video_id)[0].with_suffix(".npz.damaged")
            if aside.exists():
                problems[video_id] = f"its features were damaged and set aside as {aside}"
            else:
                problems[video_id] = "neither committed nor recorded as failed (features removed, or never extracted)"
        return problems

    def set_aside(self, video_id: str) -> Path | None:
        """Uncommit a video: remove its marker, then rename its data to `{id}.npz.damaged`.

        Returns the set-aside file (None if there was no data). The next extraction redoes it.
        """
        data, marker = self._paths(video_id)
        marker.unlink(missing_ok=True)
        if not data.exists():
            return None
        aside = data.with_name(data.name + ".damaged")
        data.replace(aside)
        return aside

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove temporary files killed writers left in this cache (rule: `records.remove_stale_temporaries`)."""
        folders = (self.root, self.videos, self.failures, self.root / "shards")
        return [path for folder in folders for path in remove_stale_temporaries(folder)]

    def failure_path(self, video_id: str) -> Path:
        return self.failures / f"{safe_name(video_id)}.json"

    def record_failure(self, video_id: str, path: str, error: BaseException, kind: str = "error") -> None:
        """Record why a video failed (or warned), atomically."""
        self.failures.mkdir(parents=True, exist_ok=True)
        record = {
            "video_id": video_id,
            "path": str(path),
            "kind": kind,
            "error_type": type(error).__name__,
            "message": str(error),
        }
        atomic_write(self.failure_path(video_id), (json.dumps(record, sort_keys=True) + "\n").encode())

    def failure(self, video_id: str) -> dict | None:
        """The recorded failure of a video, if any."""
        try:
            return json.loads(self.failure_path(video_id).read_text())
        except (OSError, ValueError):
            return None

    def verify(self) -> VerifyReport:
        """Check every committed video: marker readable and for this hash, file matching its
        checksum, arrays consistent and finite. Damaged videos are named, never raised.

        A video with data but no marker (a job killed between the two renames) is not
        committed, so it is not checked: the next run redoes it.
        """
        report = VerifyReport()
        for marker in sorted(self.videos.glob("*.done")):
            try:
                record = json.loads(marker.read_text())
                video_id = record["video_id"]
            except (OSError, ValueError, KeyError) as error:
                report.flag(marker.name, f"marker {marker} unreadable ({error!r:.120})")
                continue
            if record.get("settings_hash") != self.settings_hash:
                report.flag(video_id, f"marker names settings {record.get('settings_hash')!r}, not {self.settings_hash!r}")
                continue
            report.checked += 1
            try:
                features = self.load(video_id)
            except (OSError, ValueError) as error:
                report.flag(video_id, f"{error!s:.300}")
                continue
            num_frames = features.frame_index.shape[0]
            if num_frames != record.get("num_frames") or features.timestamp_ms.shape[0] != num_frames:
                report.flag(video_id, f"Expected {record.get('num_frames')} frames, but got {num_frames}")
            for tap, value in sorted(features.features.items()):
                if value.shape[0] != num_frames:
                    report.flag(video_id, f"{tap}: Expected {num_frames} rows, but got {value.shape[0]}")
                elif not np.isfinite(value).all():
                    report.flag(video_id, f"{tap}: {int((~np.isfinite(value)).sum())} NaN/Inf values")
        return report
