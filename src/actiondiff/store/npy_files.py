"""`extract --format npy`: each committed video of a cache also as plain .npy files, one per tap.

For users of extractors such as video_features, who load one array per video and feature.
Layout, in `{cache}/npy/` (file names from `safe_name(video_id)`):
    {id}_{tap}.npy           [frames, channels] float32: the features of tap `tap` (e.g. L09_T20)
    {id}_timestamp_ms.npy    [frames] float64: each row's presentation time in the video
    {id}_frame_index.npy     [frames] int64: each row's frame index in the video (decode order);
                             written last, so its presence says the video's files are complete
The arrays are those of the cache's committed `.npz`, read back through its checksum: the
cache stays the record (resume, one settings identity, `pack-store`), these are a copy.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from actiondiff.store.cache import FeatureCache, safe_name
from actiondiff.store.records import VideoFeatures, atomic_write

NPY_FOLDER = "npy"


def npy_folder(cache: FeatureCache) -> Path:
    """Where a cache's .npy files go."""
    return cache.root / NPY_FOLDER


def write_npy_files(folder: Path, features: VideoFeatures) -> list[Path]:
    """Write one video's arrays as .npy files in `folder`, each atomically; returns their paths,
    the frame index (the completion mark) last."""
    folder.mkdir(parents=True, exist_ok=True)
    name = safe_name(features.video_id)
    arrays = {**features.features, "timestamp_ms": features.timestamp_ms, "frame_index": features.frame_index}
    paths = []
    for key, value in arrays.items():  # dicts keep order: frame_index last
        buffer = io.BytesIO()
        np.save(buffer, value)
        path = folder / f"{name}_{key}.npy"
        atomic_write(path, buffer.getvalue())
        paths.append(path)
    return paths


def export_committed(cache: FeatureCache, video_id: str) -> bool:
    """Write a committed video's .npy files unless they are complete already (a resumed run).

    Returns True when files were written.
    Raises:
        FileNotFoundError, ValueError: as `FeatureCache.load` (not committed, or damaged).
    """
    folder = npy_folder(cache)
    if (folder / f"{safe_name(video_id)}_frame_index.npy").is_file():
        return False
    write_npy_files(folder, cache.load(video_id))
    return True
