"""Charades-Ego v1: `CharadesEgo_v1_{train,test}[_only1st|_only3rd].csv` -> the canonical manifest.

Video-level multi-hot over the 157 classes of `Charades_v1_classes.txt`: the time intervals of
`actions` are ignored, a class named twice counts once, and an empty `actions` cell is a valid
all-zero target. The view (`1st` / `3rd`) comes from the `_only1st` / `_only3rd` file a row is
in, else from `egocentric` (Yes / No), else from the `EGO` id suffix; where these disagree the
row is reported. Quirks handled: CRLF, quoted cells with commas, `{}` descriptions, a trailing
space and no final newline in the classes file. A missing or empty classes file or CSV, a CSV
with another delimiter, a classes file without all 157 classes, or no train (or no test) CSV at
all is an error naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from actiondiff.io.manifest import (
    CLASSES_ATTR,
    ManifestError,
    absolute_path,
    annotation_lines,
    join_labels,
    raise_problems,
    read_annotation_table,
    validate,
)

CLASSES_FILE = "Charades_v1_classes.txt"
NUM_CLASSES = 157  # c000..c156
COLUMNS = ("id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
           "descriptions", "actions", "length", "egocentric", "charades_video")
VIEWS = {"_only1st": "1st", "_only3rd": "3rd", "": None}
ACTION_PATTERN = re.compile(r"^(c\d{3})\s+(-?[\d.]+)\s+(-?[\d.]+)$")


def read_classes(path: str | Path) -> dict[str, str]:
    """`Charades_v1_classes.txt` -> {`c000`: name}, in file order.

    Raises:
        ManifestError: the file is missing or empty, a line is not `cNNN name`, or a code repeats.
    """
    classes: dict[str, str] = {}
    problems = []
    for number, line in annotation_lines(path, f"the Charades class list ({CLASSES_FILE}, lines `cNNN name`)"):
        code, _, name = line.partition(" ")
        name = " ".join(name.split())
        if not re.fullmatch(r"c\d{3}", code) or not name or ";" in name:
            problems.append(f"line {number}: {line!r} is not `cNNN name`")
        elif code in classes:
            problems.append(f"line {number}: class {code} repeats")
        else:
            classes[code] = name
    raise_problems(problems, str(path), "lines `cNNN name`")
    return classes


def parse_actions(text: str) -> list[str]:
    """An `actions` cell -> its class codes in first-mention order, each once.

    `"c092 11.90 21.20;c147 0.00 12.60"` -> ["c092", "c147"]; "" -> []. Intervals with
    end < start or end > length occur in the release and are accepted (times are ignored).

    Raises:
        ValueError: an entry is not `cNNN start end`.
    """
    codes = []
    for entry in str(text).split(";"):
        entry = entry.strip()
        if not entry:
            continue
        match = ACTION_PATTERN.match(entry)
        if not match:
            raise ValueError(f"entry {entry!r} is not `cNNN start end`")
        codes.append(match.group(1))
    return list(dict.fromkeys(codes))


def view_files(split: str, view: str) -> tuple[str, str]:
    """The files that can hold the `split` rows of one view: its `_only<view>` file, then the
    combined file (`train`, `3rd` -> CharadesEgo_v1_train_only3rd.csv, CharadesEgo_v1_train.csv)."""
    return f"CharadesEgo_v1_{split}_only{view}.csv", f"CharadesEgo_v1_{split}.csv"


def annotation_files(folder: Path) -> list[tuple[Path, str, str | None]]:
    """The annotation CSVs present in `folder`: (path, split, view from the file name or None)."""
    found = []
    for split in ("train", "test"):
        for suffix, view in VIEWS.items():
            path = folder / f"CharadesEgo_v1_{split}{suffix}.csv"
            if path.is_file():
                found.append((path, split, view))
    return found


def _row_view(video_id: str, egocentric: str, file_view: str | None) -> tuple[str | None, str]:
    """The view of a row and, if its sources disagree, why (empty when they agree)."""
    by_suffix = "1st" if video_id.endswith("EGO") else "3rd"
    flag = egocentric.strip().lower()
    by_flag = {"yes": "1st", "no": "3rd"}.get(flag)
    if flag and by_flag is None:
        return None, f"egocentric {egocentric!r} is not Yes or No"
    views = {v for v in (file_view, by_flag, by_suffix) if v}
    if len(views) > 1:
        return None, f"views disagree (file: {file_view}, egocentric: {egocentric!r}, id suffix: {by_suffix})"
    return views.pop(), ""


def read_charades_ego(
    annotations: str | Path, videos_dir: str | Path, allow_missing: bool = False, check_videos: bool = True
) -> pd.DataFrame:
    """The Charades-Ego annotation folder + `CharadesEgo_v1/` -> the canonical manifest.

    Reads every `CharadesEgo_v1_{train,test}[_only1st|_only3rd].csv` present (a video listed
    in several of them must agree) and `Charades_v1_classes.txt` from `annotations`.
    Columns: video_id, path (`<videos_dir>/<id>.mp4`), labels (class names), label_ids (0-156),
    domain (= view), split (train / test), view (1st / 3rd). The class list (`attrs["classes"]`)
    is the 157 names of the classes file, whichever classes the rows use.

    Raises:
        ManifestError: no train or no test CSV, a missing or empty classes file or CSV, a CSV
            with another delimiter or without the `id`, `actions`, `egocentric` columns, a classes
            file without the codes c000..c156, rows with unreadable `actions`, unknown classes,
            an unknown `egocentric` value, disagreeing views or a video listed in two splits;
            missing videos unless `allow_missing`.
    """
    folder = Path(annotations)
    files = annotation_files(folder)
    absent_splits = [split for split in ("train", "test") if not any(s == split for _, s, _ in files)]
    if absent_splits:
        raise ManifestError(
            f"Expected CharadesEgo_v1_train.csv and _test.csv (or their _only1st / _only3rd variants) in "
            f"{str(folder)!r}, but it has no {' and no '.join(absent_splits)} file"
            + (f" (only {[path.name for path, _, _ in files]})" if files else "")
            + ". Point --annotations at the CharadesEgo annotation folder, or copy the missing CSVs there."
        )
    classes = read_classes(folder / CLASSES_FILE)
    class_ids = {code: int(code[1:]) for code in classes}
    if sorted(class_ids.values()) != list(range(NUM_CLASSES)):
        raise ManifestError(
            f"Expected the codes of {folder / CLASSES_FILE} to be c000..c{NUM_CLASSES - 1:03d} (each once: the "
            f"{NUM_CLASSES} Charades classes), but got {len(classes)} codes, {sorted(classes)[:3]}...{sorted(classes)[-3:]}. "
            f"A truncated copy gives this: copy the file again."
        )
    rows: dict[str, dict[str, str]] = {}
    problems = []
    for path, split, file_view in files:
        table = read_annotation_table(path, "Charades-Ego annotation CSV", ",", ("id", "actions", "egocentric"))
        for line, (video_id, actions, egocentric) in enumerate(
            zip(table["id"], table["actions"], table["egocentric"], strict=True), start=2
        ):
            video_id = video_id.strip()
            where = f"{path.name} row {line} ({video_id or 'no id'})"
            view, why = _row_view(video_id, egocentric, file_view)
            try:
                codes = parse_actions(actions)
            except ValueError as error:
                problems.append(f"{where}: actions {actions!r}: {error}")
                continue
            unknown = [c for c in codes if c not in classes]
            if not video_id or why or unknown:
                problems.append(f"{where}: " + ("empty id" if not video_id else why or f"unknown classes {unknown}"))
                continue
            row = {
                "video_id": video_id,
                "path": absolute_path(Path(videos_dir) / f"{video_id}.mp4"),
                "labels": join_labels([classes[c] for c in codes]),
                "label_ids": join_labels([class_ids[c] for c in codes]),
                "domain": view,
                "split": split,
                "dataset": "charades_ego",
                "view": view,
            }
            seen = rows.setdefault(video_id, row)
            if seen != row:
                problems.append(f"{where}: differs from its row in another file ({seen['split']}, {seen['view']}, {seen['labels']!r})")
    raise_problems(problems, str(folder))
    manifest = validate(pd.DataFrame(list(rows.values())), str(folder), allow_missing, allow_unlabelled=True,
                        check_videos=check_videos)
    manifest.attrs[CLASSES_ATTR] = [classes[code] for code in sorted(classes, key=lambda c: class_ids[c])]
    return manifest
