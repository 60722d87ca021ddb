"""The canonical manifest: one validated row per video, whatever the dataset's own format.

Required columns: video_id, path (absolute), labels (class names joined by `;`; empty = no
action, an all-zero target), domain, split (the official split: train / val / test, or empty).
Optional columns, written when an adapter fills them: label_ids (class ids joined by `;`, in
the same order as `labels`), dataset, species, species_group, view, source, source_class.
Adapters (`actiondiff.io.datasets`) turn a dataset's annotation files into this table; everything
downstream (shards, packing, training splits) reads only the manifest.

The class list is the dataset's own (its class file or sheet: 140 Animal Kingdom actions, 157
Charades classes, ...), whichever classes the rows use: adapters put it in `attrs["classes"]`
(names in class-id order), `write_manifest` writes it beside the manifest as
`<name>.classes.csv` (label_id, label) and `read_manifest` reads it back, so a subset of the
videos never shrinks the class list or shifts class indices.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST_COLUMNS = ("video_id", "path", "labels", "domain", "split")
OPTIONAL_COLUMNS = ("label_ids", "dataset", "species", "species_group", "view", "source", "source_class")
LABEL_SEPARATOR = ";"
SPLITS = ("train", "val", "test")
MISSING_ATTR = "missing_videos"
CLASSES_ATTR = "classes"

log = logging.getLogger(__name__)


class ManifestError(ValueError):
    """The annotations do not make a valid manifest; the message names the rows or files."""


def absolute_path(path: str | Path) -> str:
    """The absolute form of a configured path, symlinks kept: manifests and failure tables name
    the paths the user wrote, not where links point."""
    return os.path.abspath(path)


def raise_problems(problems: list[str], source: str, what: str = "readable annotation rows") -> None:
    """Raise one ManifestError naming every problem row (the first 20, and the count)."""
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ManifestError(f"Expected {what} in {source}, but {len(problems)} are not:\n  {shown}{more}")


def annotation_lines(path: str | Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of an annotation list file.

    CRLF or LF, trailing spaces and a missing final newline are all read alike.
    Args:
        what: what the file should hold, named in errors (e.g. "UCF101 training list").
    Raises:
        ManifestError: the file is missing, not UTF-8 text, or holds no non-empty line (an
            empty list would silently drop every video of its split or shift class ids).
    """
    text = _annotation_text(Path(path), what)
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ManifestError(f"Expected {what} {str(path)!r} to list at least one line, but it is empty. {_REDOWNLOAD}")
    return lines


_REDOWNLOAD = "A truncated download or an unpacking error gives this: copy the dataset's file again."
_DELIMITERS = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "vertical bars"}


def _annotation_text(path: Path, what: str) -> str:
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "absent"
        raise ManifestError(f"Expected {what} at {str(path)!r}, but it is {kind}. Check the annotations path.")
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark; newline="": a CRLF
        # inside a quoted cell stays as written.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise ManifestError(f"Expected {what} {str(path)!r} to be UTF-8 text, but it is not ({error}).") from error


def read_annotation_table(path: str | Path, what: str, sep: str = ",", columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV / TSV annotation table: every cell as text (nothing read as NaN), headers stripped.

    Args:
        what: what the table should hold, named in errors (e.g. "Charades-Ego annotation CSV").
        sep: the delimiter the format prescribes ("," or "\\t").
        columns: columns the table must have (else the error lists the ones it has).
    Returns:
        the table, at least one data row.
    Raises:
        ManifestError: the file is missing, empty, written with another delimiter (a header
            without `sep` holding `;`, a tab, ...), not parsable with `sep`, lacks `columns`, or
            has a header and no row.
    """
    path = Path(path)
    name = _DELIMITERS.get(sep, repr(sep))
    text = _annotation_text(path, what)
    if not text.strip():
        raise ManifestError(f"Expected {what} {str(path)!r} to be a table separated by {name}, but the file is empty. {_REDOWNLOAD}")
    header = text.lstrip().splitlines()[0]
    others = [label for key, label in _DELIMITERS.items() if key != sep and key in header]
    if sep not in header and others:
        raise ManifestError(
            f"Expected {what} {str(path)!r} to be separated by {name}, but its header {header[:120]!r} is separated by "
            f"{others[0]}. Save the table with {name}" + (" (or name it .tsv for tabs)." if sep == "," else ".")
        )
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as error:
        raise ManifestError(
            f"Expected {what} {str(path)!r} to be a table separated by {name}, but it cannot be read as one "
            f"({' '.join(str(error).split())}). Check its delimiter and quoting."
        ) from error
    table.columns = [str(c).strip() for c in table.columns]
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise ManifestError(f"Expected {what} {str(path)!r} to have the columns {list(columns)}, but {absent} are absent "
                            f"(its columns: {list(table.columns)[:20]}).")
    if table.empty:
        raise ManifestError(f"Expected {what} {str(path)!r} to have at least one row below its header, but it has none.")
    return table


def join_labels(values: list[Any]) -> str:
    """`;`-joined text of label names or ids, in the given order."""
    return LABEL_SEPARATOR.join(str(v) for v in values)


def split_labels(text: str) -> list[str]:
    """The label names (or ids) of a `;`-joined cell; an empty cell gives []."""
    return [part for part in str(text).split(LABEL_SEPARATOR) if part]


def validate(
    manifest: pd.DataFrame,
    source: str,
    allow_missing: bool = False,
    allow_unlabelled: bool = False,
    check_videos: bool = True,
) -> pd.DataFrame:
    """Check a manifest and return it sorted by video_id; errors name the offending ids.

    Args:
        manifest: a table with at least MANIFEST_COLUMNS.
        source: the annotation file(s) it came from, named in errors.
        allow_missing: drop rows whose video file does not exist instead of failing; the
            dropped rows (video_id, path) are listed in the result's `attrs["missing_videos"]`.
        allow_unlabelled: accept rows without labels (multi-label datasets where "no action"
            is a valid, all-zero target, e.g. Charades-Ego).
        check_videos: False: annotations only, no video file is looked at (every row is kept;
            to plan and count a protocol before the videos are downloaded).
    Raises:
        ManifestError: no rows, repeated ids, unlabelled rows, unknown splits, label names holding `;`
            or not matching their ids, missing video files (without `allow_missing`), or no row
            left once the missing ones are dropped.
    """
    if manifest.empty or any(c not in manifest.columns for c in MANIFEST_COLUMNS):
        raise ManifestError(f"Expected at least one video listed in {source}, but the annotations list none. Check the annotation path.")
    duplicated = sorted(manifest.loc[manifest.video_id.duplicated(), "video_id"].unique())
    if duplicated:
        raise ManifestError(f"Expected unique video ids in {source}, but got repeats: {duplicated[:10]}.")
    if not allow_unlabelled:
        unlabelled = sorted(manifest.loc[manifest.labels == "", "video_id"])
        if unlabelled:
            raise ManifestError(f"Expected every video in {source} to have a label, but these have none: {unlabelled[:10]}.")
    bad_split = sorted(set(manifest.split) - set(SPLITS) - {""})
    if bad_split:
        raise ManifestError(f"Expected splits among {list(SPLITS)} in {source}, but got {bad_split}.")
    if "label_ids" in manifest.columns:
        class_names(manifest)  # raises if a name and an id disagree
    # A frame folder is a video too, so a path only has to exist.
    if check_videos:
        missing = manifest.path.map(lambda p: not Path(p).exists()).astype(bool)
    else:
        missing = pd.Series(False, index=manifest.index)
    if missing.all():
        folders = sorted({str(Path(p).parent) for p in manifest.path})
        raise ManifestError(
            f"Expected at least one video file of {source} to exist, but all {len(manifest)} are missing "
            f"(e.g. {manifest.path.iloc[0]!r}; folders {folders[:3]}). Fix the videos path, or build the manifest "
            f"from the annotations alone (--annotations-only) to plan before the download."
        )
    if missing.any() and not allow_missing:
        names = sorted(manifest.loc[missing, "video_id"])
        raise ManifestError(
            f"Expected every video file of {source} to exist, but {len(names)} are missing, e.g. "
            f"{names[:10]}. Fix the videos path, or pass --allow-missing to drop them."
        )
    dropped = manifest.loc[missing, ["video_id", "path"]].sort_values("video_id")
    result = manifest.loc[~missing].sort_values("video_id").reset_index(drop=True)
    result.attrs[MISSING_ATTR] = dropped.to_dict("records")
    return result


def classes_path(path: str | Path) -> Path:
    """The class list beside a manifest: `m.csv` -> `m.classes.csv`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.classes.csv")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a canonical manifest written by `write_manifest` (every column as text), with its
    class list (`attrs["classes"]`) when `<name>.classes.csv` is beside it."""
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    absent = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if absent:
        raise ManifestError(f"Expected manifest {str(path)!r} to have columns {absent}, but it does not.")
    classes = classes_path(path)
    if classes.is_file():
        table = pd.read_csv(classes, dtype=str, keep_default_na=False)
        ids = [int(i) for i in table.label_id] if "label_id" in table.columns else []
        if list(table.columns) != ["label_id", "label"] or ids != list(range(len(table))):
            raise ManifestError(
                f"Expected class list {str(classes)!r} to have columns label_id, label with ids 0..n-1 in order, "
                f"but got columns {list(table.columns)}. Rebuild the manifest."
            )
        manifest.attrs[CLASSES_ATTR] = table.label.tolist()
    return manifest


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    """Write the required columns, then whichever optional columns the manifest has, and the
    class list (`attrs["classes"]`, if any) as `<name>.classes.csv` beside it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    columns = list(MANIFEST_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in manifest.columns]
    manifest.loc[:, columns].to_csv(path, index=False)
    classes = manifest.attrs.get(CLASSES_ATTR)
    if classes:
        table = pd.DataFrame({"label_id": range(len(classes)), "label": classes})
        table.to_csv(classes_path(path), index=False)


def write_missing(manifest: pd.DataFrame, path: str | Path) -> None:
    """Write the rows `validate` dropped for a missing video file (video_id, path) as CSV."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows = manifest.attrs.get(MISSING_ATTR, [])
    pd.DataFrame(rows, columns=["video_id", "path"]).to_csv(path, index=False)


def class_names(manifest: pd.DataFrame) -> list[str]:
    """The dataset's class names in class-id order.

    The adapter's class list (`attrs["classes"]`, from the class file / sheet) when there is
    one; its ids and names must agree with every row. Else the classes the rows name: in
    class-id order when `label_ids` is filled, sorted alphabetically without ids.

    Raises:
        ManifestError: a row's names and ids differ in number, or one id carries two names
            (or one name two ids), or a row's class is not in the class list.
    """
    listed = manifest.attrs.get(CLASSES_ATTR)
    if listed:
        index = {name: i for i, name in enumerate(listed)}
        has_ids = "label_ids" in manifest.columns
        for row in manifest.itertuples(index=False):
            names = split_labels(row.labels)
            numbers = split_labels(row.label_ids) if has_ids else [str(index.get(n, "?")) for n in names]
            for name, number in zip(names, numbers, strict=False):
                if str(index.get(name)) != number or len(names) != len(numbers):
                    raise ManifestError(
                        f"Expected class {name!r} (id {number}) of video {row.video_id} to be class {number} of "
                        f"the dataset's {len(listed)} classes, but the class list gives it "
                        + (f"id {index[name]}." if name in index else "no id (it is not in the list).")
                    )
        return list(listed)
    if "label_ids" not in manifest.columns or not (manifest.label_ids != "").any():
        return sorted({name for labels in manifest.labels for name in split_labels(labels)})
    by_id: dict[int, str] = {}
    for video_id, labels, ids in zip(manifest.video_id, manifest.labels, manifest.label_ids, strict=True):
        names, numbers = split_labels(labels), split_labels(ids)
        if len(names) != len(numbers):
            raise ManifestError(
                f"Expected as many label ids as label names, but got {numbers} for {names} (video {video_id})."
            )
        for name, number in zip(names, numbers, strict=True):
            if by_id.setdefault(int(number), name) != name:
                raise ManifestError(
                    f"Expected class id {number} to have one name, but got {by_id[int(number)]!r} and {name!r} (video {video_id})."
                )
    ordered = [by_id[i] for i in sorted(by_id)]
    if len(set(ordered)) != len(ordered):
        repeated = sorted({n for n in ordered if ordered.count(n) > 1})
        raise ManifestError(f"Expected each class name to have one id, but {repeated} have several.")
    return ordered


def shard_ids(manifest: pd.DataFrame, shard: int, shard_size: int) -> list[str]:
    """The video ids of one shard: consecutive blocks of the id-sorted manifest."""
    ids = sorted(manifest.video_id)
    return ids[shard * shard_size : (shard + 1) * shard_size]


def num_shards(manifest: pd.DataFrame, shard_size: int) -> int:
    return max(1, -(-len(manifest) // shard_size))


def summarize(manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Counts of a manifest, from its rows alone (no video file is looked at).

    Returns:
        {"split": videos per split, "domain": videos per domain x split, "class": videos per
        class x split, every class of the class list in id order (0 for a class no row has)}.
        Split columns: train / val / test / none (an empty split), those present.
    """
    splits = manifest.split.replace("", "none")
    order = [s for s in (*SPLITS, "none") if (splits == s).any()]
    per_split = splits.value_counts().reindex(order).rename("videos").to_frame()
    per_domain = pd.crosstab(manifest.domain.replace("", "(none)"), splits).reindex(columns=order)
    per_domain["all"] = per_domain.sum(axis=1)
    exploded = pd.DataFrame({"class": manifest.labels.map(split_labels), "split": splits}).explode("class").dropna()
    per_class = pd.crosstab(exploded["class"], exploded.split).reindex(
        index=class_names(manifest), columns=order, fill_value=0
    ).fillna(0).astype(int)
    per_class["all"] = per_class.sum(axis=1)
    return {"split": per_split, "domain": per_domain, "class": per_class}


def format_summary(manifest: pd.DataFrame, source: str) -> str:
    """The `summarize` counts as plain text tables (for the console or a file)."""
    tables = summarize(manifest)
    classes = tables["class"]
    lines = [
        f"{source}: {len(manifest)} videos, {len(classes)} classes ({int((classes['all'] == 0).sum())} without a video), "
        f"{len(tables['domain'])} domains",
        "", "videos per split:", tables["split"].to_string(),
        "", "videos per domain and split:", tables["domain"].to_string(),
        "", "videos per class and split (a multi-label video counts once per class):", classes.to_string(),
    ]
    return "\n".join(lines) + "\n"
