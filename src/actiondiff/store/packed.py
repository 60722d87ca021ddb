"""The packed feature store: one Zarr v3 group per (dataset, extraction settings).

Layout (rows are frames of all videos, in sorted video-id order):
    features          [total_frames, channels] float16, every tap side by side; tap t owns the
                      columns attrs["tap_columns"][t] = [start, stop] (taps in sorted order)
    offsets           [videos + 1] int64; video i owns rows offsets[i]:offsets[i+1]
    video_id          [videos] string
    frame_index       [total_frames] int64 (source frame, decode order)
    timestamp_ms      [total_frames] float64 (NaN where the source has no time: frame folders)
    checksums         [videos, taps + 1, 32] uint8: SHA-256 of each video's float16 rows of each
                      tap (attrs["checksum_columns"] names the columns), and in the last column
                      of its frame_index + timestamp_ms bytes, so `verify_store` names the video
                      whose bytes were damaged
    attrs             settings, settings hash, backbone identity, actiondiff version, taps

Why this layout (issue 17: 30,000 videos x 91 taps of the paper's grid):
- One array for all taps, sharded (Zarr v3 `sharding_indexed`). A shard is a block of rows
  across every channel (about SHARD_BYTES of float16), stored as one file; inside it, inner
  chunks of about CHUNK_BYTES are [rows, gcd of the tap widths], so a tap's columns are whole
  inner chunks and reading one tap decompresses only that tap's chunks (partial reads of the
  shard file through its index). The grid of 30,000 videos (~340 GB) is ~2,600 files, not the
  ~340,000 of 1 MiB chunk files or the 91 x shards of one sharded array per tap; a one-tap
  store of 30,000 videos (5.4 GiB) is 110 files (BENCHMARKS.md "Scale: pack and training").
- Rows along frames, videos contiguous: a video is one row range, a subset of videos a few
  ranges, and pack appends rows in order, so it writes shard by shard.
- Small arrays (ids, offsets, frame_index, timestamp_ms, checksums) are plain chunked arrays
  written block by block as well.
Packing streams: peak memory is one shard's buffer plus one video (never the dataset), the store
is written under a temporary name and renamed into place (a killed pack leaves no half store),
and the same committed videos give the same bytes, however and whenever they were extracted.
Training reads only packed stores, and only what it needs (`FeatureStore.read`, `iter_rows`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from actiondiff import __version__
from actiondiff.settings import ALL_TAPS
from actiondiff.store.cache import FeatureCache
from actiondiff.store.records import VerifyReport, temporary_path

# Byte-shuffle: on feature-like float16 data (benchmarks/bench_store.py, BENCHMARKS.md "Store")
# it compresses to a ratio of 1.16 against bit-shuffle's 1.04, with the same read time.
COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
REQUIRED_ATTRS = ("settings", "settings_hash", "backbone", "actiondiff_version", "taps", "tap_columns")
META_COLUMN = "frame_index+timestamp_ms"

# About 1 MiB of float16 per inner chunk (measured in BENCHMARKS.md "Store"): ~400 frames of
# 1280 channels, a few whole videos, so reading one video decompresses 1-2 chunks per tap.
CHUNK_BYTES = 1 << 20
# About 128 MiB of float16 per shard file: what pack holds in memory (BENCHMARKS.md "Scale").
SHARD_BYTES = 128 << 20
# Rows (frames) per chunk of frame_index / timestamp_ms, videos per chunk of the per-video arrays.
META_ROWS = 1 << 17
VIDEO_ROWS = 1 << 12
# What `iter_rows` reads in one call: about this many bytes of one tap.
READ_BYTES = 64 << 20


def chunk_rows(total_frames: int, channels: int, target_bytes: int = CHUNK_BYTES) -> int:
    """Rows per chunk: about `target_bytes` of float16, so a chunk holds whole short videos."""
    return max(1, min(max(total_frames, 1), target_bytes // (2 * channels)))


def feature_grid(total_frames: int, widths: list[int], chunk_bytes: int, shard_bytes: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(inner chunk shape, shard shape) of the `features` array.

    Inner chunks span gcd(widths) columns (whole chunks per tap) and about `chunk_bytes`; a
    shard spans every column and about `shard_bytes`, a whole number of inner chunks.
    """
    channels = sum(widths)
    columns = math.gcd(*widths)
    shard = chunk_rows(total_frames, channels, shard_bytes)
    inner = min(shard, chunk_rows(total_frames, columns, chunk_bytes))
    shard = max(inner, shard // inner * inner)
    return (inner, columns), (shard, channels)


def rows_sha256(rows: np.ndarray) -> str:
    """Hex SHA-256 of one video's rows of one tap.

    Args:
        rows: [num_frames, channels], hashed as C-ordered little-endian float16.
    """
    return hashlib.sha256(np.ascontiguousarray(rows, dtype="<f2").tobytes()).hexdigest()


def meta_sha256(frame_index: np.ndarray, timestamp_ms: np.ndarray) -> str:
    """Hex SHA-256 of one video's frame_index (<i8) then timestamp_ms (<f8) bytes (NaN included)."""
    digest = hashlib.sha256(np.ascontiguousarray(frame_index, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(timestamp_ms, dtype="<f8").tobytes())
    return digest.hexdigest()


class _BlockWriter:
    """Appends rows to an array in order and writes them in aligned blocks of `block` rows,
    so at most one block is held in memory."""

    def __init__(self, array: zarr.Array, block: int) -> None:
        self.array, self.block = array, block
        self.buffer = np.empty((block, *array.shape[1:]), dtype=array.dtype)
        self.filled = self.start = 0

    def append(self, rows: np.ndarray) -> None:
        done = 0
        while done < len(rows):
            take = min(self.block - self.filled, len(rows) - done)
            self.buffer[self.filled : self.filled + take] = rows[done : done + take]
            self.filled, done = self.filled + take, done + take
            if self.filled == self.block:
                self.flush()

    def flush(self) -> None:
        if self.filled:
            self.array[self.start : self.start + self.filled] = self.buffer[: self.filled]
            self.start, self.filled = self.start + self.filled, 0


def _committed_lengths(cache: FeatureCache, ids: list[str]) -> np.ndarray:
    """Frames per committed video, from the markers (the features are checked when loaded)."""
    lengths = []
    for video_id in ids:
        marker = cache._paths(video_id)[1]
        lengths.append(int(json.loads(marker.read_text())["num_frames"]))
    return np.asarray(lengths, dtype=np.int64)


def pack_store(
    cache: FeatureCache,
    video_ids: list[str],
    out: str | Path,
    attrs: dict[str, Any],
    chunk_bytes: int = CHUNK_BYTES,
    compressor: BloscCodec = COMPRESSOR,
    shard_bytes: int = SHARD_BYTES,
) -> dict[str, int]:
    """Pack the committed videos among `video_ids` into a Zarr store at `out`, video by video.

    The store is written under a temporary name and renamed into place, so a killed pack
    never leaves a half-written store behind. Videos are stored in sorted id order; memory
    holds one shard (about `shard_bytes`) and one video, whatever the number of videos.
    Args:
        chunk_bytes, shard_bytes, compressor: inner chunk and shard size, and codec of the
            features (defaults: measured choice).
    Returns:
        {"packed": n, "missing": m}: videos packed, and ids with no committed features.
    Raises:
        ValueError: no committed video; a video's taps, widths or frame count differ from the
            first video's or from its marker; a damaged cache file (`FeatureCache.load`).
    """
    # 1. What to pack: sorted committed ids, their lengths (markers) and the taps (first video).
    out = Path(out)
    ids = sorted(v for v in set(video_ids) if cache.is_committed(v))
    if not ids:
        raise ValueError(f"Expected committed videos in {cache.root} to pack, but there are none.")
    lengths = _committed_lengths(cache, ids)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    first = cache.load(ids[0])
    taps = sorted(first.features)
    widths = [int(first.features[t].shape[1]) for t in taps]
    columns = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    tap_columns = {t: [int(columns[k]), int(columns[k + 1])] for k, t in enumerate(taps)}
    # 2. Empty arrays of the final shapes under a temporary name. Empty chunks are written too
    #    (write_empty_chunks), so a chunk missing on disk is damage, never "all zeros".
    tmp = temporary_path(out)  # stale ones of killed packs: removed by `pack-store` first
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    inner, shard = feature_grid(total, widths, chunk_bytes, shard_bytes)
    dense = {"write_empty_chunks": True}
    meta_rows, video_rows = min(META_ROWS, max(total, 1)), min(VIDEO_ROWS, len(ids) + 1)

    def create(name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...], **kw: Any) -> zarr.Array:
        return root.create_array(name, shape=shape, dtype=dtype, chunks=chunks, fill_value="" if dtype is str else 0,
                                 config=dense, **kw)

    features = create("features", (total, int(columns[-1])), "float16", inner, shards=shard, compressors=compressor)
    checksums = create("checksums", (len(ids), len(taps) + 1, 32), "uint8", (video_rows, len(taps) + 1, 32))
    writers = {
        "features": _BlockWriter(features, shard[0]),
        "frame_index": _BlockWriter(create("frame_index", (total,), "int64", (meta_rows,), compressors=COMPRESSOR), meta_rows),
        "timestamp_ms": _BlockWriter(create("timestamp_ms", (total,), "float64", (meta_rows,), compressors=COMPRESSOR), meta_rows),
        "checksums": _BlockWriter(checksums, video_rows),
    }
    # 3. Video by video: check, append its rows, hash them.
    for i, video_id in enumerate(ids):
        video = first if i == 0 else cache.load(video_id)
        got = sorted(video.features)
        if got != taps or [video.features[t].shape[1] for t in taps] != widths:
            raise ValueError(
                f"Expected video {video_id!r} to have the taps {dict(zip(taps, widths, strict=True))} of "
                f"{ids[0]!r}, but got {({t: video.features[t].shape[1] for t in got})} (cache {cache.root})."
            )
        if any(video.features[t].shape[0] != lengths[i] for t in taps) or video.timestamp_ms.shape[0] != lengths[i]:
            raise ValueError(
                f"Expected video {video_id!r} to have {lengths[i]} frames in every array (its marker), but got "
                f"{video.frame_index.shape[0]} (cache {cache.root}). Delete it and its .done marker and rerun extraction."
            )
        # [num_frames, width] per tap -> [num_frames, channels], taps in sorted order
        rows = np.concatenate([video.features[t].astype(np.float16) for t in taps], axis=1)
        writers["features"].append(rows)
        writers["frame_index"].append(video.frame_index.astype(np.int64))
        writers["timestamp_ms"].append(video.timestamp_ms.astype(np.float64))
        sums = [rows_sha256(rows[:, a:b]) for a, b in tap_columns.values()]
        sums.append(meta_sha256(video.frame_index, video.timestamp_ms))
        writers["checksums"].append(np.frombuffer(bytes.fromhex("".join(sums)), dtype=np.uint8).reshape(1, len(taps) + 1, 32))
    for writer in writers.values():
        writer.flush()
    # 4. The per-video arrays (ids: variable-length UTF-8, the Zarr v3 string type), attrs, rename.
    offsets_array = create("offsets", offsets.shape, "int64", (video_rows,))
    video_id = create("video_id", (len(ids),), str, (video_rows,))
    for start in range(0, len(ids) + 1, video_rows):
        offsets_array[start : start + video_rows] = offsets[start : start + video_rows]
        if start < len(ids):
            video_id[start : start + video_rows] = np.asarray(ids[start : start + video_rows], dtype=object)
    root.attrs.update({**attrs, "taps": taps, "tap_columns": tap_columns, "checksum_columns": [*taps, META_COLUMN],
                       "actiondiff_version": __version__})
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"packed": len(ids), "missing": len(set(video_ids)) - len(ids)}


class FeatureStore:
    """Read access to a packed store by need: one tap, a subset of videos, float16.

    Opening reads the attrs, the video ids and the offsets (O(videos), a few MB at 30,000);
    features are read only when asked for.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(f"Expected a packed Zarr store at {str(self.path)!r}, but there is none.")
        self.group = zarr.open_group(str(self.path), mode="r")
        self.attrs = dict(self.group.attrs)
        if "features" not in self.group or "tap_columns" not in self.attrs:
            raise ValueError(
                f"Expected store {self.path} to hold one `features` array with attr `tap_columns` (the layout of "
                f"actiondiff >= issue 17), but it does not. Pack it again with `actiondiff pack`."
            )
        self.array = self.group["features"]
        self.video_ids = [str(v) for v in self.group["video_id"][:]]
        self.offsets = np.asarray(self.group["offsets"][:], dtype=np.int64)
        self.position = {v: i for i, v in enumerate(self.video_ids)}

    @property
    def taps(self) -> list[str]:
        return list(self.attrs["taps"])

    @property
    def lengths(self) -> np.ndarray:
        """[videos] int64 frames per video."""
        return np.diff(self.offsets)

    def columns(self, tap: str) -> tuple[int, int]:
        """The [start, stop) columns of `tap` in `features` (`ALL`: every tap, side by side)."""
        if tap == ALL_TAPS:  # what the aggregate head reads
            return 0, int(self.array.shape[1])
        if tap not in self.attrs["tap_columns"]:
            raise KeyError(f"Expected tap {tap!r} to be one of {self.taps} in store {self.path}, but it is not.")
        start, stop = self.attrs["tap_columns"][tap]
        return int(start), int(stop)

    def indices(self, video_ids: list[str]) -> np.ndarray:
        """Store positions of `video_ids` (in their order).

        Raises:
            KeyError: a video is not in the store.
        """
        missing = [v for v in video_ids if v not in self.position]
        if missing:
            raise KeyError(f"Expected videos {missing[:10]} to be in store {self.path}, but they are not.")
        return np.asarray([self.position[v] for v in video_ids], dtype=np.int64)

    def rows(self, tap: str, index: int) -> np.ndarray:
        """[num_frames, width] float16 rows of the video at position `index` (one read)."""
        start, stop = self.columns(tap)
        return self.array[int(self.offsets[index]) : int(self.offsets[index + 1]), start:stop]

    def iter_rows(self, tap: str, indices: np.ndarray | list[int], read_bytes: int = READ_BYTES) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (position, [num_frames, width] float16 rows) for the videos at `indices`, in
        ascending position order, reading about `read_bytes` of the tap per call (neighbouring
        videos share one read; gaps up to that size are read and dropped)."""
        start, stop = self.columns(tap)
        budget = max(1, read_bytes // (2 * (stop - start)))
        order = np.unique(np.asarray(indices, dtype=np.int64))
        k = 0
        while k < len(order):
            group_end = k + 1
            first_row = int(self.offsets[order[k]])
            while group_end < len(order) and self.offsets[order[group_end] + 1] - first_row <= budget:
                group_end += 1
            last_row = int(self.offsets[order[group_end - 1] + 1])
            block = self.array[first_row:last_row, start:stop]  # [rows, width] float16
            for i in order[k:group_end]:
                yield int(i), block[self.offsets[i] - first_row : self.offsets[i + 1] - first_row]
            k = group_end

    def read(self, tap: str, video_ids: list[str] | None = None) -> dict[str, np.ndarray]:
        """{video_id: [num_frames, width] float16} for one tap: every video, or `video_ids`.

        One float16 buffer holds the videos' rows (views into it); other taps are not read.
        """
        start, stop = self.columns(tap)
        if video_ids is None:
            data = self.array[:, start:stop]  # [total_frames, width] float16
            return {v: data[self.offsets[i] : self.offsets[i + 1]] for i, v in enumerate(self.video_ids)}
        indices = self.indices(list(video_ids))
        unique = np.unique(indices)
        lengths = self.lengths[unique]
        at = dict(zip(unique.tolist(), np.concatenate([[0], np.cumsum(lengths)])[:-1].tolist(), strict=True))
        data = np.empty((int(lengths.sum()), stop - start), dtype=np.float16)
        for i, rows in self.iter_rows(tap, unique):
            data[at[i] : at[i] + len(rows)] = rows
        return {self.video_ids[i]: data[at[i] : at[i] + self.lengths[i]] for i in indices.tolist()}


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
    array = store.array
    per_tap = {}
    for tap in taps:
        start, stop = store.columns(tap)
        per_tap[tap] = {"channels": stop - start, "columns": [start, stop]}
    raw = int(np.prod(array.shape)) * array.dtype.itemsize
    stored = _tree_bytes(store.path / "features" / "c")  # shard files, not the metadata
    return {
        "path": str(store.path),
        "videos": len(store.video_ids),
        "frames": frames,
        "taps": per_tap,
        "chunk": list(array.chunks),
        "shard": list(array.shards or array.chunks),
        "layers": sorted({int(t[1:3]) for t in taps}),
        "timestep_indices": sorted({int(t[5:7]) for t in taps}),
        "settings_hash": store.attrs.get("settings_hash"),
        "settings": store.attrs.get("settings"),
        "backbone": store.attrs.get("backbone"),
        "actiondiff_version": store.attrs.get("actiondiff_version"),
        "size_bytes": _tree_bytes(store.path),
        "files": sum(1 for p in store.path.rglob("*") if p.is_file()),
        "feature_bytes_raw": raw,
        "compression_ratio": raw / stored if stored else float("nan"),
    }


# --------------------------------------------------------------------------- verify

EMPTY = np.uint64(2**64 - 1)
# Blosc (1.x frame) header: 16 bytes, the frame's own length (cbytes) little-endian at 12:16.
BLOSC_HEADER = 16


@dataclass(frozen=True)
class ChunkDamage:
    """A chunk of one array that Zarr would read as fill value (absent) or as garbage (cut).

    rows: the [start, stop) range of the array's first axis the chunk holds: frames for
    features / frame_index / timestamp_ms, videos for checksums / video_id, entries of offsets.
    """

    name: str
    rows: tuple[int, int]
    label: str


def _blosc_cut(handle: BinaryIO, offset: int, nbytes: int) -> str | None:
    """Why the Blosc frame of `nbytes` at `offset` of an open file is not whole, or None.

    A cut frame must never reach the decoder: numcodecs' Blosc reads the length its header
    records, past the end of a shorter buffer, and returns garbage without an error.
    """
    if nbytes < BLOSC_HEADER:
        return f"{nbytes} bytes, shorter than a Blosc header: cut"
    handle.seek(offset)
    recorded = int.from_bytes(handle.read(BLOSC_HEADER)[12:16], "little")
    return None if recorded == nbytes else f"{nbytes} bytes where its Blosc header records {recorded}: cut"


def damaged_chunks(path: Path, name: str, array: zarr.Array) -> list[ChunkDamage]:
    """Chunks of `array` that are absent on disk, listed as empty in their shard's index, or cut
    short: everything Zarr would silently read as fill value, or (a cut Blosc frame) as garbage.
    Reads file sizes, shard indexes and Blosc headers only, not the data.

    The shard index (Zarr v3 sharding spec, index at the end): [inner chunks] x (offset, nbytes)
    little-endian uint64, then a 4-byte CRC32C; (2^64-1, 2^64-1) marks an empty inner chunk.
    """
    outer = array.shards or array.chunks
    blosc = any(isinstance(c, BloscCodec) for c in array.compressors)
    damage = []
    for key in np.ndindex(*[math.ceil(s / c) for s, c in zip(array.shape, outer, strict=True)]) if array.shape else [()]:
        file = path / name / "c" / "/".join(str(k) for k in key) if key else path / name / "c"
        label = f"{name} chunk {'/'.join(map(str, key))}"
        rows = (key[0] * outer[0], min(array.shape[0], (key[0] + 1) * outer[0])) if key else (0, 1)
        if not file.is_file():
            damage.append(ChunkDamage(name, rows, f"{label} is missing"))
            continue
        with open(file, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if array.shards is None:
                if blosc and (cut := _blosc_cut(handle, 0, size)):
                    damage.append(ChunkDamage(name, rows, f"{label} has {cut}"))
                continue
            damage += _shard_damage(handle, size, name, array, key, label)
    return damage


def _shard_damage(handle: BinaryIO, size: int, name: str, array: zarr.Array, key: tuple[int, ...],
                  label: str) -> list[ChunkDamage]:
    """The damaged inner chunks of one shard file (open, `size` bytes) of a sharded `array`."""
    per_shard = [s // c for s, c in zip(array.shards, array.chunks, strict=True)]
    count = int(np.prod(per_shard))
    body = size - 16 * count - 4
    shard_rows = (key[0] * array.shards[0], min(array.shape[0], (key[0] + 1) * array.shards[0]))
    if body < 0:
        return [ChunkDamage(name, shard_rows, f"{label} has {size} bytes, shorter than its shard index: cut")]
    handle.seek(body)
    index = np.frombuffer(handle.read(16 * count), dtype="<u8").reshape(*per_shard, 2)
    blosc = any(isinstance(c, BloscCodec) for c in array.compressors)
    damage = []
    for inner in np.ndindex(*per_shard):
        start = [k * s + i * c for k, s, i, c in zip(key, array.shards, inner, array.chunks, strict=True)]
        if any(a >= n for a, n in zip(start, array.shape, strict=True)):
            continue  # past the array's edge: never written
        rows = (start[0], min(array.shape[0], start[0] + array.chunks[0]))
        inner_label = f"{label} inner chunk {'/'.join(map(str, inner))}"
        if index[inner][0] == EMPTY and index[inner][1] == EMPTY:
            damage.append(ChunkDamage(name, rows, f"{inner_label} is missing (empty in the shard index)"))
            continue
        offset, nbytes = int(index[inner][0]), int(index[inner][1])
        if offset + nbytes > body:
            damage.append(ChunkDamage(name, rows, f"{inner_label} ends past the shard's data: cut"))
        elif blosc and (cut := _blosc_cut(handle, offset, nbytes)):
            damage.append(ChunkDamage(name, rows, f"{inner_label} has {cut}"))
    return damage


def _check_layout(path: Path, group: zarr.Group, report: VerifyReport) -> tuple[list[str], np.ndarray, dict[str, list[int]], list[ChunkDamage]] | None:
    """Attrs, every chunk of every array whole, offsets and shapes; None when per-video
    checks are impossible. Returns the ids, offsets, tap columns and the damaged chunks."""
    attrs = dict(group.attrs)
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        report.problems.append(f"Expected attrs {list(REQUIRED_ATTRS)}, but {missing} are missing")
    settings = attrs.get("settings", {})
    if not isinstance(settings, dict) or not {"decode", "extraction", "weights"} <= set(settings):
        report.problems.append(f"Expected attr `settings` to hold decode, extraction and weights, but got {settings!r:.200}")
    names = ("features", "offsets", "video_id", "frame_index", "timestamp_ms", "checksums")
    absent = [n for n in names if n not in group]
    if absent:
        report.problems.append(f"Expected the arrays {list(names)}, but {absent} are missing")
        return None
    damage = [d for name in names for d in damaged_chunks(path, name, group[name])]
    for d in damage:
        report.problems.append(f"Expected every chunk of `{d.name}` whole on disk, but {d.label}")
    columns = {}
    for name in ("video_id", "offsets"):
        try:
            columns[name] = group[name][:]
        except Exception as error:  # noqa: BLE001  -- any read error is damage to report, not a crash
            report.problems.append(f"Expected `{name}` to be readable, but got {error!r:.200}")
    if len(columns) < 2:
        return None
    ids, offsets = [str(v) for v in columns["video_id"]], np.asarray(columns["offsets"])
    if len(offsets) != len(ids) + 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        report.problems.append(
            f"Expected `offsets` to be {len(ids) + 1} non-decreasing values from 0, but got {len(offsets)} values "
            f"starting {offsets[:3].tolist()}"
        )
        return None
    total = int(offsets[-1])
    taps = list(attrs.get("taps", []))
    tap_columns = attrs.get("tap_columns", {})
    wrong = {n: group[n].shape[0] for n in ("features", "frame_index", "timestamp_ms") if group[n].shape[0] != total}
    for name, rows in wrong.items():
        report.problems.append(f"Expected `{name}` to have {total} rows (the last offset), but got {rows}")
    if wrong:
        return None
    widths = sorted(tuple(c) for c in tap_columns.values())
    if not taps or sorted(tap_columns) != sorted(taps) or [a for a, _ in widths] != [0, *(b for _, b in widths[:-1])] \
            or widths[-1][1] != group["features"].shape[1]:
        report.problems.append(f"Expected `tap_columns` to split the {group['features'].shape[1]} feature columns among "
                               f"the taps {taps}, but got {tap_columns}")
        return None
    if group["checksums"].shape != (len(ids), len(taps) + 1, 32):
        report.problems.append(f"Expected `checksums` of shape {(len(ids), len(taps) + 1, 32)}, but got {group['checksums'].shape}")
        return None
    return ids, offsets, {t: tap_columns[t] for t in taps}, damage


class _RowReader:
    """Reads one array's rows (first axis) for verify, blaming failures on the array by name.

    A block is read at once; when it fails (or holds a damaged chunk, never read: a cut Blosc
    frame decodes to garbage) each video's rows are read alone, so only the videos whose rows
    are damaged are flagged, each with the array's name.
    """

    def __init__(self, group: zarr.Group, name: str, damage: list[ChunkDamage]) -> None:
        self.array, self.name = group[name], name
        self.damage = [d for d in damage if d.name == name]
        self.block: tuple[int, int, np.ndarray | None] = (0, 0, None)

    def blame(self, start: int, stop: int) -> str | None:
        """Why rows start:stop cannot be trusted without reading them (they lie in a damaged
        chunk), naming the array and the rows; None when their chunks are whole."""
        hit = [d.label for d in self.damage if d.rows[0] < max(stop, start + 1) and start < d.rows[1]]
        if not hit:
            return None
        where = f"row {start} lies" if stop - start == 1 else f"rows {start}:{stop} lie"
        return f"`{self.name}` {where} in a damaged chunk ({'; '.join(hit)})"

    def load(self, start: int, stop: int) -> None:
        """Read rows start:stop as one block, if they are whole and readable."""
        rows = None
        if not self.blame(start, stop):
            try:
                rows = np.asarray(self.array[start:stop])
            except Exception:  # noqa: BLE001  -- retried video by video in `rows`, which names it
                rows = None
        self.block = (start, stop, rows)

    def rows(self, start: int, stop: int) -> np.ndarray | str:
        """Rows start:stop, or why they cannot be read (naming the array and the rows)."""
        first, last, block = self.block
        if block is not None and first <= start and stop <= last:
            return block[start - first : stop - first]
        if damaged := self.blame(start, stop):
            return damaged
        try:
            return np.asarray(self.array[start:stop])
        except Exception as error:  # noqa: BLE001  -- a damaged chunk is reported, not raised
            where = f"row {start}" if stop - start == 1 else f"rows {start}:{stop}"
            return f"`{self.name}` {where} unreadable ({error!r:.120})"


def verify_store(path: str | Path) -> VerifyReport:
    """Check a packed store: attrs complete, every chunk of every array whole on disk, offsets
    consistent, every video readable, its features finite and every array equal to its recorded
    checksum. NaN timestamps are allowed (frame folders have no times; the checksum still covers
    them). Damaged videos are named, never raised, each reason naming the array it blames."""
    report = VerifyReport()
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as error:  # noqa: BLE001
        report.problems.append(f"Expected a readable Zarr store at {str(path)!r}, but got {error!r}")
        return report
    layout = _check_layout(path, group, report)
    if layout is None:
        return report
    ids, offsets, tap_columns, damage = layout
    report.checked = len(ids)
    readers = {n: _RowReader(group, n, damage) for n in ("checksums", "frame_index", "timestamp_ms", "features")}
    # Features are read one row band of inner chunks (all taps) at a time, cached while the
    # videos in it are checked; a band that fails to read is retried video by video and tap by
    # tap, so damage is named by video and tap.
    cached: tuple[int, np.ndarray | None] = (-1, None)
    for start_video in range(0, len(ids), VIDEO_ROWS):
        stop_video = min(len(ids), start_video + VIDEO_ROWS)
        readers["checksums"].load(start_video, stop_video)
        for name in ("frame_index", "timestamp_ms"):
            readers[name].load(int(offsets[start_video]), int(offsets[stop_video]))
        for i in range(start_video, stop_video):
            start, stop = int(offsets[i]), int(offsets[i + 1])
            got = {n: readers[n].rows(start, stop) for n in ("frame_index", "timestamp_ms")}
            expected = readers["checksums"].rows(i, i + 1)  # [1, taps + 1, 32] uint8
            for reason in [r for r in (expected, *got.values()) if isinstance(r, str)]:
                report.flag(ids[i], reason)
            expected = None if isinstance(expected, str) else expected[0]
            if expected is not None and not any(isinstance(r, str) for r in got.values()) \
                    and meta_sha256(got["frame_index"], got["timestamp_ms"]) != expected[-1].tobytes().hex():
                # one digest covers both arrays: which of the two changed cannot be told
                report.flag(ids[i], "frame_index/timestamp_ms differ from their recorded checksum")
            if damaged := readers["features"].blame(start, stop):
                report.flag(ids[i], damaged)
                continue
            cached = _check_video(readers["features"].array, offsets, i, ids[i], tap_columns, expected, report, cached,
                                  readers["features"])
    return report


def _check_video(features: zarr.Array, offsets: np.ndarray, i: int, video_id: str, tap_columns: dict[str, list[int]],
                 expected: np.ndarray | None, report: VerifyReport, cached: tuple[int, np.ndarray | None],
                 reader: _RowReader) -> tuple[int, np.ndarray | None]:
    """Finite and checksum checks of video `i`'s rows of every tap; returns the cached band.

    Args:
        expected: [taps + 1, 32] uint8 recorded digests of the video (None: unreadable, so only
            the finite check runs).
        cached: (band number, [band rows, channels] float16 or None when unreadable).
        reader: the features' reader, which knows the damaged chunks (a band holding one is not
            read as a whole).
    """
    step, total = features.chunks[0], features.shape[0]
    start, stop = int(offsets[i]), int(offsets[i + 1])
    first, last = start // step, max(start, stop - 1) // step
    band = (first * step, min((first + 1) * step, total))
    if first == last and cached[0] != first:
        try:
            cached = (first, None if reader.blame(*band) else features[band[0] : band[1]])
        except Exception:  # noqa: BLE001  -- a damaged chunk is reported below, not raised
            cached = (first, None)
    for k, (tap, (a, b)) in enumerate(tap_columns.items()):
        try:
            if first == last and cached[1] is not None:
                rows = cached[1][start - band[0] : stop - band[0], a:b]
            else:
                rows = features[start:stop, a:b]
        except Exception as error:  # noqa: BLE001  -- a damaged chunk is reported, not raised
            report.flag(video_id, f"{tap}: `features` rows {start}:{stop} unreadable ({error!r:.120})")
            continue
        if not np.isfinite(rows).all():
            report.flag(video_id, f"{tap}: {int((~np.isfinite(rows)).sum())} NaN/Inf values")
        elif expected is not None and rows_sha256(rows) != expected[k].tobytes().hex():
            report.flag(video_id, f"{tap}: rows differ from their recorded checksum")
    return cached
