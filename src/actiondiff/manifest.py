"""The canonical manifest: one validated row per video, whatever the dataset's own format.

Columns: video_id, path (absolute), labels (class names joined by `;`), domain, split.
Adapters turn a dataset's annotation files into this table; everything downstream (shards,
packing, training splits) reads only the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .settings import _doc

MANIFEST_COLUMNS = ("video_id", "path", "labels", "domain", "split")
LABEL_SEPARATOR = ";"
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """The annotations do not make a valid manifest; the message names the rows or files."""


@dataclass(frozen=True)
class CustomColumns:
    """Column names of a user's own label table (`custom` adapter)."""

    video: str = _doc("video", "column with the video file, relative to the videos folder")
    label: str = _doc("label", "column with the action label(s); several joined by `;`")
    domain: str = _doc("domain", "column with the domain (species, view, context...)")
    split: str = _doc("split", "column with train / val / test; empty = decided by the protocol")


def read_custom(labels_file: str | Path, videos_dir: str | Path, columns: CustomColumns, allow_missing: bool = False) -> pd.DataFrame:
    """A user's folder of videos plus a CSV/TSV label table -> the canonical manifest.

    Raises:
        ManifestError: a configured column is absent, an id repeats, a label is empty, or a
            video file is missing (unless `allow_missing`: then the row is dropped).
    """
    labels_file, videos_dir = Path(labels_file), Path(videos_dir)
    sep = "\t" if labels_file.suffix in (".tsv", ".tab") else ","
    table = pd.read_csv(labels_file, sep=sep, dtype=str, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    wanted = {"video": columns.video, "label": columns.label, "domain": columns.domain, "split": columns.split}
    absent = sorted(f"{key}={name!r}" for key, name in wanted.items() if name not in table.columns)
    if absent:
        raise ManifestError(
            f"Expected label table {str(labels_file)!r} to have the configured columns {absent}, "
            f"but its columns are {list(table.columns)}. Set `dataset.columns` in the config."
        )
    video = table[columns.video].str.strip()
    manifest = pd.DataFrame(
        {
            "video_id": video.map(lambda v: str(Path(v).with_suffix(""))),
            "path": video.map(lambda v: str((videos_dir / v).resolve())),
            "labels": table[columns.label].map(_normalise_labels),
            "domain": table[columns.domain].str.strip(),
            "split": table[columns.split].str.strip().str.lower(),
        }
    )
    return validate(manifest, str(labels_file), allow_missing)


def _normalise_labels(text: str) -> str:
    return LABEL_SEPARATOR.join(part.strip() for part in str(text).split(LABEL_SEPARATOR) if part.strip())


def validate(manifest: pd.DataFrame, source: str, allow_missing: bool = False) -> pd.DataFrame:
    """Check a manifest and return it sorted by video_id; errors name the offending ids."""
    duplicated = sorted(manifest.loc[manifest.video_id.duplicated(), "video_id"].unique())
    if duplicated:
        raise ManifestError(f"Expected unique video ids in {source}, but got repeats: {duplicated[:10]}.")
    unlabelled = sorted(manifest.loc[manifest.labels == "", "video_id"])
    if unlabelled:
        raise ManifestError(f"Expected every video in {source} to have a label, but these have none: {unlabelled[:10]}.")
    bad_split = sorted(set(manifest.split) - set(SPLITS) - {""})
    if bad_split:
        raise ManifestError(f"Expected splits among {list(SPLITS)} in {source}, but got {bad_split}.")
    missing = manifest.path.map(lambda p: not Path(p).is_file())
    if missing.any() and not allow_missing:
        names = sorted(manifest.loc[missing, "video_id"])
        raise ManifestError(
            f"Expected every video file of {source} to exist, but {len(names)} are missing, e.g. "
            f"{names[:10]}. Fix the videos path, or pass --allow-missing to drop them."
        )
    return manifest.loc[~missing].sort_values("video_id").reset_index(drop=True)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a canonical manifest written by `write_manifest`."""
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    absent = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if absent:
        raise ManifestError(f"Expected manifest {str(path)!r} to have columns {absent}, but it does not.")
    return manifest


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    manifest.loc[:, list(MANIFEST_COLUMNS)].to_csv(path, index=False)


def class_names(manifest: pd.DataFrame) -> list[str]:
    """Sorted class names over the whole manifest."""
    return sorted({name for labels in manifest.labels for name in labels.split(LABEL_SEPARATOR)})


def shard_ids(manifest: pd.DataFrame, shard: int, shard_size: int) -> list[str]:
    """The video ids of one shard: consecutive blocks of the id-sorted manifest."""
    ids = sorted(manifest.video_id)
    return ids[shard * shard_size : (shard + 1) * shard_size]


def num_shards(manifest: pd.DataFrame, shard_size: int) -> int:
    return max(1, -(-len(manifest) // shard_size))
