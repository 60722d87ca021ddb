"""The packed feature store: one Zarr v3 group per (dataset, extraction settings).

Layout:
    features/{tap}    [total_frames, channels] float16, Blosc-zstd, e.g. features/L09_T20
    offsets           [videos + 1] int64; video i owns rows offsets[i]:offsets[i+1]
    video_id          [videos] string
    frame_index       [total_frames] int64 (source frame, decode order)
    timestamp_ms      [total_frames] float64
    checksums/{tap}   [videos] string: SHA-256 of each video's float16 rows of that tap, so
                      `verify_store` can name the video whose bytes were damaged
    attrs             settings, settings hash, backbone identity, actiondiff version
Training reads only packed stores. Packing is deterministic: the same committed videos give
the same bytes, however and whenever they were extracted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from actiondiff import __version__
from actiondiff.store.cache import FeatureCache
from actiondiff.store.records import VerifyReport, temporary_path

# Byte-shuffle: on feature-like float16 data (benchmarks/bench_store.py, BENCHMARKS.md "Store")
# it compresses to a ratio of 1.16 against bit-shuffle's 1.04, with the same read time.
COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
REQUIRED_ATTRS = ("settings", "settings_hash", "backbone", "actiondiff_version", "taps")


# About 1 MiB of float16 per chunk (measured in BENCHMARKS.md "Store"): ~400 frames of
# 1280 channels, i.e. a few whole videos, so reading one video decompresses 1-2 chunks.
CHUNK_BYTES = 1 << 20


def chunk_rows(total_frames: int, channels: int, target_bytes: int = CHUNK_BYTES) -> int:
    """Rows per chunk: about `target_bytes` of float16, so a chunk holds whole short videos."""
    return max(1, min(max(total_frames, 1), target_bytes // (2 * channels)))


def rows_sha256(rows: np.ndarray) -> str:
    """Hex SHA-256 of one video's rows of one tap.

    Args:
        rows: [num_frames, channels], hashed as C-ordered little-endian float16.
    """
    return hashlib.sha256(np.ascontiguousarray(rows, dtype="<f2").tobytes()).hexdigest()


def pack_store(
    cache: FeatureCache,
    video_ids: list[str],
    out: str | Path,
    attrs: dict[str, Any],
    chunk_bytes: int = CHUNK_BYTES,
    compressor: BloscCodec = COMPRESSOR,
) -> dict[str, int]:
    """Pack the committed videos among `video_ids` into a Zarr store at `out`.

    The store is written under a temporary name and renamed into place, so a killed pack
    never leaves a half-written store behind. Videos are stored in sorted id order.
    Args:
        chunk_bytes, compressor: feature chunking and codec (defaults: measured choice).
    Returns:
        {"packed": n, "missing": m}: videos packed, and ids with no committed features.
    """
    out = Path(out)
    ids = sorted(v for v in set(video_ids) if cache.is_committed(v))
    videos = [cache.load(v) for v in ids]
    if not videos:
        raise ValueError(f"Expected committed videos in {cache.root} to pack, but there are none.")
    taps = sorted(videos[0].features)
    lengths = np.asarray([v.frame_index.shape[0] for v in videos], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tmp = temporary_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    for tap in taps:
        data = np.concatenate([v.features[tap] for v in videos]).astype(np.float16)
        rows = chunk_rows(data.shape[0], data.shape[1], chunk_bytes)
        root.create_array(f"features/{tap}", data=data, chunks=(rows, data.shape[1]), compressors=compressor)
        sums = [rows_sha256(data[offsets[i] : offsets[i + 1]]) for i in range(len(ids))]
        checksums = root.create_array(f"checksums/{tap}", shape=(len(ids),), dtype=str, chunks=(len(ids),))
        checksums[:] = np.asarray(sums, dtype=object)
    root.create_array("offsets", data=offsets, chunks=(offsets.shape[0],))
    # Variable-length UTF-8 strings: the Zarr v3 string type, readable by other libraries.
    video_id = root.create_array("video_id", shape=(len(ids),), dtype=str, chunks=(len(ids),))
    video_id[:] = np.asarray(ids, dtype=object)
    frame_index = np.concatenate([v.frame_index for v in videos])
    timestamp = np.concatenate([v.timestamp_ms for v in videos])
    root.create_array("frame_index", data=frame_index, chunks=(frame_index.shape[0],), compressors=COMPRESSOR)
    root.create_array("timestamp_ms", data=timestamp, chunks=(timestamp.shape[0],), compressors=COMPRESSOR)
    root.attrs.update({**attrs, "taps": taps, "actiondiff_version": __version__})
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"packed": len(ids), "missing": len(set(video_ids)) - len(ids)}


class FeatureStore:
    """Read access to a packed store; features are read whole into memory once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(f"Expected a packed Zarr store at {str(self.path)!r}, but there is none.")
        self.group = zarr.open_group(str(self.path), mode="r")
        self.attrs = dict(self.group.attrs)
        self.video_ids = [str(v) for v in self.group["video_id"][:]]
        self.offsets = self.group["offsets"][:]

    @property
    def taps(self) -> list[str]:
        return list(self.attrs["taps"])

    def features(self, tap: str) -> dict[str, np.ndarray]:
        """{video_id: [num_frames, channels] float32} for one tap."""
        if tap not in self.taps:
            raise KeyError(f"Expected tap {tap!r} to be one of {self.taps} in store {self.path}, but it is not.")
        data = self.group[f"features/{tap}"][:].astype(np.float32)
        return {v: data[self.offsets[i] : self.offsets[i + 1]] for i, v in enumerate(self.video_ids)}


def _tree_bytes(path: Path) -> int:
    """Bytes of every file under `path`, as stored on disk (compressed)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def store_info(path: str | Path) -> dict[str, Any]:
    """A summary of a packed store: videos, frames, taps, settings, size, compression ratio.

    The compression ratio is the raw float16 feature bytes over their bytes on disk.
    """
    store = FeatureStore(path)
    taps = store.taps
    frames = int(store.offsets[-1]) if len(store.offsets) else 0
    raw = stored = 0
    per_tap = {}
    for tap in taps:
        array = store.group[f"features/{tap}"]
        tap_raw = int(np.prod(array.shape)) * array.dtype.itemsize
        tap_stored = _tree_bytes(store.path / "features" / tap)
        per_tap[tap] = {"channels": int(array.shape[1]), "chunk_rows": int(array.chunks[0]), "bytes": tap_stored}
        raw, stored = raw + tap_raw, stored + tap_stored
    return {
        "path": str(store.path),
        "videos": len(store.video_ids),
        "frames": frames,
        "taps": per_tap,
        "layers": sorted({int(t[1:3]) for t in taps}),
        "timestep_indices": sorted({int(t[5:7]) for t in taps}),
        "settings_hash": store.attrs.get("settings_hash"),
        "settings": store.attrs.get("settings"),
        "backbone": store.attrs.get("backbone"),
        "actiondiff_version": store.attrs.get("actiondiff_version"),
        "size_bytes": _tree_bytes(store.path),
        "feature_bytes_raw": raw,
        "compression_ratio": raw / stored if stored else float("nan"),
    }


def _check_layout(group: zarr.Group, report: VerifyReport) -> tuple[list[str], np.ndarray, list[str]] | None:
    """Attrs, offsets and array lengths; None when per-video checks are impossible."""
    attrs = dict(group.attrs)
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        report.problems.append(f"Expected attrs {list(REQUIRED_ATTRS)}, but {missing} are missing")
    settings = attrs.get("settings", {})
    if not isinstance(settings, dict) or not {"decode", "extraction", "weights"} <= set(settings):
        report.problems.append(f"Expected attr `settings` to hold decode, extraction and weights, but got {settings!r:.200}")
    try:
        ids = [str(v) for v in group["video_id"][:]]
        offsets = np.asarray(group["offsets"][:])
        taps = list(attrs.get("taps", []))
        frame_rows = [group[name].shape[0] for name in ("frame_index", "timestamp_ms")]
    except Exception as error:  # noqa: BLE001  -- any read error is damage to report, not a crash
        report.problems.append(f"Expected video_id, offsets, frame_index and timestamp_ms to be readable, but got {error!r}")
        return None
    if len(offsets) != len(ids) + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        report.problems.append(
            f"Expected `offsets` to be {len(ids) + 1} non-decreasing values from 0, but got {len(offsets)} values "
            f"starting {offsets[:3].tolist()}"
        )
        return None
    total = int(offsets[-1])
    if frame_rows != [total, total]:
        report.problems.append(f"Expected frame_index and timestamp_ms to have {total} rows, but got {frame_rows}")
        return None
    stored = sorted(group["features"].array_keys()) if "features" in group else []
    if stored != sorted(taps) or not taps:
        report.problems.append(f"Expected features/ to hold the taps {taps}, but it holds {stored}")
        return None
    for tap in taps:
        rows = group[f"features/{tap}"].shape[0]
        if rows != total:
            report.problems.append(f"Expected features/{tap} to have {total} rows, but got {rows}")
            return None
        if f"checksums/{tap}" not in group or group[f"checksums/{tap}"].shape != (len(ids),):
            report.problems.append(f"Expected checksums/{tap} with {len(ids)} entries, but it is missing or short")
            return None
    return ids, offsets, taps


def _video_rows(array: zarr.Array, offsets: np.ndarray) -> Any:
    """Yield (video index, rows or error) for every video, decompressing each chunk once."""
    step = array.chunks[0]
    total = array.shape[0]
    decoded: dict[int, np.ndarray | Exception] = {}
    for i in range(len(offsets) - 1):
        start, stop = int(offsets[i]), int(offsets[i + 1])
        first, last = start // step, max(start, stop - 1) // step
        for c in [c for c in decoded if c < first]:
            del decoded[c]
        for c in range(first, last + 1):
            if c not in decoded:
                try:
                    decoded[c] = array[c * step : min((c + 1) * step, total)]
                except Exception as error:  # noqa: BLE001  -- a damaged chunk is reported, not raised
                    decoded[c] = error
        errors = [decoded[c] for c in range(first, last + 1) if isinstance(decoded[c], Exception)]
        if errors:
            yield i, errors[0]
            continue
        block = np.concatenate([decoded[c] for c in range(first, last + 1)])
        yield i, block[start - first * step : stop - first * step]


def verify_store(path: str | Path) -> VerifyReport:
    """Check a packed store: attrs complete, offsets consistent, every video readable, finite
    and equal to its recorded checksum. Damaged videos are named, never raised."""
    report = VerifyReport()
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as error:  # noqa: BLE001
        report.problems.append(f"Expected a readable Zarr store at {str(path)!r}, but got {error!r}")
        return report
    layout = _check_layout(group, report)
    if layout is None:
        return report
    ids, offsets, taps = layout
    report.checked = len(ids)
    for tap in taps:
        sums = [str(s) for s in group[f"checksums/{tap}"][:]]
        for i, rows in _video_rows(group[f"features/{tap}"], offsets):
            if isinstance(rows, Exception):
                report.flag(ids[i], f"{tap}: rows {offsets[i]}:{offsets[i + 1]} unreadable ({rows!r:.120})")
            elif not np.isfinite(rows).all():
                report.flag(ids[i], f"{tap}: {int((~np.isfinite(rows)).sum())} NaN/Inf values")
            elif rows_sha256(rows) != sums[i]:
                report.flag(ids[i], f"{tap}: rows differ from their recorded checksum")
    try:
        timestamps = np.asarray(group["timestamp_ms"][:])
    except Exception as error:  # noqa: BLE001
        report.problems.append(f"Expected timestamp_ms to be readable, but got {error!r}")
        return report
    for i, video_id in enumerate(ids):
        if not np.isfinite(timestamps[offsets[i] : offsets[i + 1]]).all():
            report.flag(video_id, "NaN/Inf timestamps")
    return report
