"""Your own videos: a folder plus a CSV/TSV label table, or one sub-folder per class.

The label table's column names are set in the config (`dataset.columns`), so a user's table
is read as it is. The demo dataset goes through this same path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from actiondiff.io.manifest import (
    CLASSES_ATTR,
    LABEL_SEPARATOR,
    ManifestError,
    absolute_path,
    join_labels,
    read_annotation_table,
    split_labels,
    validate,
)
from actiondiff.settings import _doc

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
FOLDER_LEVELS = ("label", "domain", "split")


@dataclass(frozen=True)
class CustomColumns:
    """Column names of a user's own label table (`custom` adapter); "" = no such column."""

    video: str = _doc("video", "column with the video file, relative to the videos folder")
    label: str = _doc("label", "column with the action label(s); several joined by `;`")
    domain: str = _doc("domain", "column with the domain (species, view, context...); '' = none")
    split: str = _doc("split", "column with train / val / test; empty = decided by the protocol; '' = none")


def read_custom(
    labels_file: str | Path,
    videos_dir: str | Path,
    columns: CustomColumns,
    allow_missing: bool = False,
    check_videos: bool = True,
) -> pd.DataFrame:
    """A user's folder of videos plus a CSV/TSV label table -> the canonical manifest.

    The separator is a tab for `.tsv`/`.tab` files, else a comma. Cells are stripped; the
    video id is the video's path relative to `videos_dir` without its suffix; class ids
    (`label_ids`) follow the sorted class names.

    Raises:
        ManifestError: the table is missing, empty (or a header alone), written with another
            delimiter than its suffix says, a configured column is absent, an id repeats, a
            label is empty, or a video file is missing (unless `allow_missing`: then the row
            is dropped and listed in `attrs["missing_videos"]`).
    """
    labels_file, videos_dir = Path(labels_file), Path(videos_dir)
    sep = "\t" if labels_file.suffix in (".tsv", ".tab") else ","
    table = read_annotation_table(labels_file, "label table", sep)
    wanted = {"video": columns.video, "label": columns.label, "domain": columns.domain, "split": columns.split}
    absent = sorted(f"{key}={name!r}" for key, name in wanted.items() if name and name not in table.columns)
    if absent or not columns.video or not columns.label:
        raise ManifestError(
            f"Expected label table {str(labels_file)!r} to have the configured columns {absent or [columns.video, columns.label]}, "
            f"but its columns are {list(table.columns)}. Set `dataset.columns` in the config."
        )

    def column(name: str) -> pd.Series:
        return table[name].str.strip() if name else pd.Series("", index=table.index)

    video = column(columns.video)
    manifest = pd.DataFrame(
        {
            "video_id": video.map(lambda v: str(Path(v).with_suffix(""))),
            "path": video.map(lambda v: absolute_path(videos_dir / v)),
            "labels": table[columns.label].map(_normalise_labels),
            "domain": column(columns.domain),
            "split": column(columns.split).str.lower(),
        }
    )
    return _with_classes(validate(_with_label_ids(manifest), str(labels_file), allow_missing, check_videos=check_videos),
                         manifest)


def read_folders(videos_dir: str | Path, levels: str = "label", allow_missing: bool = False, check_videos: bool = True) -> pd.DataFrame:
    """Videos sorted into sub-folders (no label table) -> the canonical manifest.

    Args:
        videos_dir: the root folder.
        levels: what each folder level above a video file means, `/`-joined from the root
            down, among label, domain, split: "label" reads `<root>/<label>/<file>`,
            "domain/label" reads `<root>/<domain>/<label>/<file>`. `label` is required.
    Raises:
        ManifestError: a bad `levels`, no video files, or a file at another depth.
    """
    root = Path(videos_dir)
    names = levels.split("/")
    if "label" not in names or len(set(names)) != len(names) or not set(names) <= set(FOLDER_LEVELS):
        raise ManifestError(
            f"Expected `dataset.folder_levels` to be distinct names among {list(FOLDER_LEVELS)} joined by '/', "
            f"including label, but got {levels!r}."
        )
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ManifestError(f"Expected video files ({', '.join(VIDEO_SUFFIXES)}) under {str(root)!r}, but found none.")
    rows, problems = [], []
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) != len(names) + 1:
            problems.append(f"{path.relative_to(root)}: expected {len(names)} folder level(s) ({levels})")
            continue
        values = dict(zip(names, parts[:-1], strict=True))
        relative = path.relative_to(root)
        rows.append(
            {
                "video_id": str(relative.with_suffix("")),
                "path": absolute_path(path),
                "labels": values["label"],
                "domain": values.get("domain", ""),
                "split": values.get("split", "").lower(),
            }
        )
    if problems:
        raise ManifestError(f"Expected every video under {str(root)!r} at the depth of {levels!r}, but: {problems[:10]}")
    manifest = pd.DataFrame(rows)
    return _with_classes(validate(_with_label_ids(manifest), str(root), allow_missing, check_videos=check_videos), manifest)


def _normalise_labels(text: str) -> str:
    return join_labels(part.strip() for part in str(text).split(LABEL_SEPARATOR) if part.strip())


def _with_label_ids(manifest: pd.DataFrame) -> pd.DataFrame:
    """Add `label_ids`: each name's index among the sorted class names."""
    classes = sorted({name for labels in manifest.labels for name in split_labels(labels)})
    index = {name: i for i, name in enumerate(classes)}
    manifest = manifest.copy()
    manifest["label_ids"] = manifest.labels.map(lambda text: join_labels(index[n] for n in split_labels(text)))
    manifest["dataset"] = "custom"
    return manifest


def _with_classes(manifest: pd.DataFrame, listed: pd.DataFrame) -> pd.DataFrame:
    """Record the class list of every listed row (before missing videos were dropped)."""
    manifest.attrs[CLASSES_ATTR] = sorted({name for labels in listed.labels for name in split_labels(labels)})
    return manifest
