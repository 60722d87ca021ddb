"""The packed feature store: one Zarr v3 group per (dataset, extraction settings).

Layout:
    features/{tap}    [total_frames, channels] float16, Blosc-zstd, e.g. features/L09_T20
    offsets           [videos + 1] int64; video i owns rows offsets[i]:offsets[i+1]
    video_id          [videos] string
    frame_index       [total_frames] int64 (source frame, decode order)
    timestamp_ms      [total_frames] float64
    attrs             settings, settings hash, backbone identity, actiondiff version
Training reads only packed stores. Packing is deterministic: the same committed videos give
the same bytes, however and whenever they were extracted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from . import __version__
from .feature_cache import FeatureCache

# Bit-shuffle groups the slowly varying exponent bits of float16 features, which zstd then
# compresses better than byte-shuffled ones (measured in BENCHMARKS.md).
COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")
REQUIRED_ATTRS = ("settings", "settings_hash", "backbone", "actiondiff_version", "taps")


def chunk_rows(total_frames: int, channels: int, target_bytes: int = 1 << 20) -> int:
    """Rows per chunk: about 1 MiB of float16, so a chunk holds many whole short videos."""
    return max(1, min(max(total_frames, 1), target_bytes // (2 * channels)))


def pack_store(
    cache: FeatureCache,
    video_ids: list[str],
    out: str | Path,
    attrs: dict[str, Any],
) -> dict[str, int]:
    """Pack the committed videos among `video_ids` into a Zarr store at `out`.

    The store is written under a temporary name and renamed into place, so a killed pack
    never leaves a half-written store behind. Videos are stored in sorted id order.
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
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    for tap in taps:
        data = np.concatenate([v.features[tap] for v in videos]).astype(np.float16)
        rows = chunk_rows(data.shape[0], data.shape[1])
        root.create_array(f"features/{tap}", data=data, chunks=(rows, data.shape[1]), compressors=COMPRESSOR)
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
