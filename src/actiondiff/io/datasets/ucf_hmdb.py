"""UCF101 and HMDB51 split lists, and the 12-class UCF-HMDB (full) benchmark built from them.

UCF101 (`ucfTrainTestlist/`, CRLF): `classInd.txt` (`1 ApplyEyeMakeup`, 1-based),
`trainlist0N.txt` (`Class/v_Class_gGG_cCC.avi <class number>`) and `testlist0N.txt` (no
number: the class is the folder). The folder, not the file name, names the class
(`HandstandPushups/v_HandStandPushups_...`). HMDB51 (`testTrainMulti_7030_splits/`, LF):
`<class>_test_split<N>.txt` with lines `name.avi <0|1|2> ` (1 train, 2 test, 0 unused; a
trailing space); names keep `& ( ) [ ] ! # + ; ~ @` as they are on disk. HMDB51 class ids follow
the sorted class names (`climb` 5, `climb_stairs` 6; sorting the file names would swap
climb/climb_stairs, kick/kick_ball and sword/sword_exercise, as `_` sorts before letters).
Checked on the published lists (yjxiong/temporal-segment-networks @ 2c5e5e7c,
`data/ucf101_splits/`, `data/hmdb51_splits/`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from actiondiff.io.manifest import (
    CLASSES_ATTR,
    ManifestError,
    absolute_path,
    raise_problems,
    validate,
)

SHARED_CLASSES = ("climb", "fencing", "golf", "kick_ball", "pullup", "punch", "pushup",
                  "ride_bike", "ride_horse", "shoot_ball", "shoot_bow", "walk")
UCF_TO_SHARED = {
    "RockClimbingIndoor": "climb", "RopeClimbing": "climb", "Fencing": "fencing", "GolfSwing": "golf",
    "SoccerPenalty": "kick_ball", "PullUps": "pullup", "Punch": "punch", "BoxingPunchingBag": "punch",
    "BoxingSpeedBag": "punch", "PushUps": "pushup", "Biking": "ride_bike", "HorseRiding": "ride_horse",
    "Basketball": "shoot_ball", "Archery": "shoot_bow", "WalkingWithDog": "walk",
}
HMDB_TO_SHARED = {name: name for name in SHARED_CLASSES}
HMDB_SPLIT_CODES = {"1": "train", "2": "test", "0": ""}


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines; CRLF or LF, trailing spaces."""
    text = path.read_text(encoding="utf-8")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _check_split_number(split_number: int) -> None:
    if split_number not in (1, 2, 3):
        raise ValueError(f"Expected `split_number` to be 1, 2 or 3, but got {split_number!r}.")


def read_ucf_classes(path: str | Path) -> dict[str, int]:
    """`classInd.txt` -> {class name: 0-based id}."""
    classes, problems = {}, []
    for number, line in _lines(Path(path)):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            problems.append(f"line {number}: {line!r} is not `<number> <class>`")
            continue
        classes[parts[1]] = int(parts[0]) - 1
    raise_problems(problems, str(path), "lines `<number> <class>`")
    return classes


def ucf_split_table(list_dir: str | Path, split_number: int = 1) -> pd.DataFrame:
    """UCF101 split lists -> rows (video_id, relative path, class, class_id, split train/test).

    Raises:
        ManifestError: unreadable lines, an unknown class folder, a class number that
            disagrees with the folder, or a video listed twice; each named by file and line.
    """
    _check_split_number(split_number)
    folder = Path(list_dir)
    classes = read_ucf_classes(folder / "classInd.txt")
    rows, problems = [], []
    for split, name in (("train", f"trainlist0{split_number}.txt"), ("test", f"testlist0{split_number}.txt")):
        for number, line in _lines(folder / name):
            parts = line.split()
            relative = parts[0]
            where = f"{name} line {number} ({relative})"
            class_name, _, file_name = relative.partition("/")
            if class_name not in classes or not file_name:
                problems.append(f"{where}: folder {class_name!r} is not a class of classInd.txt")
                continue
            if len(parts) > 2 or (split == "train" and (len(parts) != 2 or parts[1] != str(classes[class_name] + 1))):
                problems.append(f"{where}: expected `<Class>/<file>` followed by class number {classes[class_name] + 1}")
                continue
            rows.append({"video_id": Path(file_name).stem, "relative": relative, "class": class_name,
                         "class_id": classes[class_name], "split": split})
    table = pd.DataFrame(rows, columns=["video_id", "relative", "class", "class_id", "split"])
    problems += [f"video {v} is listed twice" for v in sorted(set(table.video_id[table.video_id.duplicated()]))]
    raise_problems(problems, str(folder))
    return table


def hmdb_split_table(split_dir: str | Path, split_number: int = 1) -> pd.DataFrame:
    """HMDB51 `<class>_test_split<N>.txt` files -> rows (video_id, relative path, class,
    class_id (sorted class names), split train/test/'' for codes 1/2/0).

    Raises:
        ManifestError: no split files, unreadable lines or codes, or a video listed twice.
    """
    _check_split_number(split_number)
    folder = Path(split_dir)
    suffix = f"_test_split{split_number}.txt"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    if not files:
        raise ManifestError(f"Expected HMDB51 files `<class>{suffix}` in {str(folder)!r}, but found none.")
    # Ids by sorted class names: sorted file names put `climb_stairs_test...` before `climb_test...`.
    classes = {name: i for i, name in enumerate(sorted(path.name[: -len(suffix)] for path in files))}
    rows, problems = [], []
    for path in files:
        class_name = path.name[: -len(suffix)]
        for number, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in HMDB_SPLIT_CODES:
                problems.append(f"{path.name} line {number}: {line!r} is not `<name>.avi <0|1|2>`")
                continue
            rows.append({"video_id": Path(parts[0]).stem, "relative": f"{class_name}/{parts[0]}", "class": class_name,
                         "class_id": classes[class_name], "split": HMDB_SPLIT_CODES[parts[1]]})
    table = pd.DataFrame(rows, columns=["video_id", "relative", "class", "class_id", "split"])
    problems += [f"video {v} is listed twice" for v in sorted(set(table.video_id[table.video_id.duplicated()]))]
    raise_problems(problems, str(folder))
    return table


def _manifest(table: pd.DataFrame, videos_dir: str | Path, dataset: str) -> pd.DataFrame:
    root = Path(videos_dir)
    table = table.reset_index(drop=True)
    return pd.DataFrame(
        {
            "video_id": table.video_id,
            "path": [absolute_path(root / r) for r in table.relative],
            "labels": table["class"],
            "label_ids": table.class_id.astype(str),
            "domain": dataset,
            "split": table.split,
            "dataset": dataset,
            "source": dataset,
        }
    )


def _class_list(table: pd.DataFrame) -> list[str]:
    """Class names in class-id order, from every listed row (before missing videos are dropped)."""
    pairs = dict(zip(table.class_id, table["class"], strict=True))
    return [pairs[i] for i in sorted(pairs)]


def read_ucf101(list_dir: str | Path, videos_dir: str | Path, split_number: int = 1, allow_missing: bool = False,
                check_videos: bool = True) -> pd.DataFrame:
    """UCF101 (101 classes of classInd.txt) of one official split: `UCF-101/<Class>/<file>.avi` videos."""
    table = ucf_split_table(list_dir, split_number)
    manifest = validate(_manifest(table, videos_dir, "ucf101"), str(list_dir), allow_missing, check_videos=check_videos)
    manifest.attrs[CLASSES_ATTR] = [c for c, _ in sorted(read_ucf_classes(Path(list_dir) / "classInd.txt").items(),
                                                          key=lambda item: item[1])]
    return manifest


def read_hmdb51(split_dir: str | Path, videos_dir: str | Path, split_number: int = 1, allow_missing: bool = False,
                check_videos: bool = True) -> pd.DataFrame:
    """HMDB51 (51 classes) of one official split; unused clips (code 0) get an empty split."""
    table = hmdb_split_table(split_dir, split_number)
    manifest = validate(_manifest(table, videos_dir, "hmdb51"), str(split_dir), allow_missing, check_videos=check_videos)
    manifest.attrs[CLASSES_ATTR] = _class_list(table)
    return manifest


def read_ucf_hmdb(
    ucf_lists: str | Path,
    hmdb_splits: str | Path,
    ucf_videos: str | Path,
    hmdb_videos: str | Path,
    allow_missing: bool = False,
    split_number: int = 1,
    check_videos: bool = True,
) -> pd.DataFrame:
    """UCF-HMDB (full): the 12 shared classes of both datasets in one manifest.

    UCF: trainlist clips of the 15 mapped classes -> train, testlist clips -> val.
    HMDB: code 1 clips of the 12 classes -> train, code 2 -> val (code 0 dropped).
    Both of official split `split_number` (TA3N's lists are split 1: UCF 1,438 / 571, HMDB
    840 / 360; split 2: UCF 1,457 / 552, split 3: 1,453 / 556; HMDB 840 / 360 in each).
    Columns: labels (shared class name), label_ids (0-11), source_class (the dataset's own
    class), source and domain (ucf101 / hmdb51), dataset (ucf_hmdb).
    """
    parts = []
    for source, table, mapping, videos in (
        ("ucf101", ucf_split_table(ucf_lists, split_number), UCF_TO_SHARED, ucf_videos),
        ("hmdb51", hmdb_split_table(hmdb_splits, split_number), HMDB_TO_SHARED, hmdb_videos),
    ):
        absent = sorted(set(mapping) - set(table["class"]))
        if absent:
            raise ManifestError(f"Expected the {source} lists to hold the classes {absent}, but they do not.")
        table = table[table["class"].isin(list(mapping)) & (table.split != "")].reset_index(drop=True)
        manifest = _manifest(table, videos, source)
        manifest["labels"] = table["class"].map(mapping).to_numpy()
        manifest["label_ids"] = [str(SHARED_CLASSES.index(mapping[c])) for c in table["class"]]
        manifest["split"] = table.split.map({"train": "train", "test": "val"}).to_numpy()
        manifest["source_class"] = table["class"].to_numpy()
        manifest["dataset"] = "ucf_hmdb"
        parts.append(manifest)
    manifest = pd.concat(parts, ignore_index=True)
    manifest = validate(manifest, f"{ucf_lists} + {hmdb_splits}", allow_missing, check_videos=check_videos)
    manifest.attrs[CLASSES_ATTR] = list(SHARED_CLASSES)
    return manifest
