"""UCF101 and HMDB51 split lists, and the 12-class UCF-HMDB (full) benchmark built from them.

UCF101 (`ucfTrainTestlist/`, CRLF): `classInd.txt` (`1 ApplyEyeMakeup`, 1-based),
`trainlist0N.txt` (`Class/v_Class_gGG_cCC.avi <class number>`) and `testlist0N.txt` (no
number: the class is the folder). The folder, not the file name, names the class
(`HandstandPushups/v_HandStandPushups_...`). HMDB51 (`testTrainMulti_7030_splits/`, LF):
`<class>_test_split<N>.txt` with lines `name.avi <0|1|2> ` (1 train, 2 test, 0 unused; a
trailing space); names keep `& ( ) [ ] ! # + ; ~ @` as they are on disk. HMDB51 ships no class
file: its class list is the 51 published class names (`HMDB51_CLASSES`), and each needs its
split file (a missing or empty one is an error, never a 50-class manifest with shifted ids).
HMDB51 class ids follow the sorted class names (`climb` 5, `climb_stairs` 6; sorting the file
names would swap climb/climb_stairs, kick/kick_ball and sword/sword_exercise, as `_` sorts
before letters). Every list file must exist and list something: an empty `trainlist01.txt`
would otherwise give a manifest without training videos.
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
    annotation_lines,
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
# The 51 classes of HMDB51, sorted (= their ids): the names of the published split files.
HMDB51_CLASSES = (
    "brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "climb_stairs", "dive", "draw_sword", "dribble",
    "drink", "eat", "fall_floor", "fencing", "flic_flac", "golf", "handstand", "hit", "hug", "jump", "kick",
    "kick_ball", "kiss", "laugh", "pick", "pour", "pullup", "punch", "push", "pushup", "ride_bike", "ride_horse",
    "run", "shake_hands", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "situp", "smile", "smoke", "somersault",
    "stand", "swing_baseball", "sword", "sword_exercise", "talk", "throw", "turn", "walk", "wave",
)


def _check_split_number(split_number: int) -> None:
    if split_number not in (1, 2, 3):
        raise ValueError(f"Expected `split_number` to be 1, 2 or 3, but got {split_number!r}.")


def read_ucf_classes(path: str | Path) -> dict[str, int]:
    """`classInd.txt` -> {class name: 0-based id}.

    Raises:
        ManifestError: the file is missing or empty, or a line is not the next `<number> <class>`.
    """
    classes, problems = {}, []
    for number, line in annotation_lines(path, "UCF101 class list (classInd.txt, lines `<number> <class>`)"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            problems.append(f"line {number}: {line!r} is not `<number> <class>`")
        elif parts[1] in classes or int(parts[0]) != len(classes) + 1:
            problems.append(f"line {number}: {line!r} is not class number {len(classes) + 1} (a new class, numbered in order)")
        else:
            classes[parts[1]] = int(parts[0]) - 1
    raise_problems(problems, str(path), "lines `<number> <class>` numbered 1, 2, ... in order")
    return classes


def ucf_split_table(list_dir: str | Path, split_number: int = 1) -> pd.DataFrame:
    """UCF101 split lists -> rows (video_id, relative path, class, class_id, split train/test).

    Raises:
        ManifestError: a missing or empty class or split list; unreadable lines, an unknown
            class folder, a class number that disagrees with the folder, or a video listed
            twice, each named by file and line.
    """
    _check_split_number(split_number)
    folder = Path(list_dir)
    classes = read_ucf_classes(folder / "classInd.txt")
    rows, problems = [], []
    for split, name, what in (("train", f"trainlist0{split_number}.txt", "UCF101 training list (`<Class>/<file>.avi <number>`)"),
                              ("test", f"testlist0{split_number}.txt", "UCF101 test list (`<Class>/<file>.avi`)")):
        for number, line in annotation_lines(folder / name, what):
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
        ManifestError: a class of `HMDB51_CLASSES` without its split file, a split file of
            another class, an empty split file, unreadable lines or codes, or a video listed
            twice.
    """
    _check_split_number(split_number)
    folder = Path(split_dir)
    if not folder.is_dir():
        raise ManifestError(f"Expected the HMDB51 split folder (testTrainMulti_7030_splits/) at {str(folder)!r}, but it is absent.")
    suffix = f"_test_split{split_number}.txt"
    found = {path.name[: -len(suffix)]: path for path in folder.iterdir() if path.name.endswith(suffix)}
    missing = [f"{name}{suffix}" for name in HMDB51_CLASSES if name not in found]
    unknown = [f"{name}{suffix}" for name in sorted(set(found) - set(HMDB51_CLASSES))]
    wrong = ([f"{len(missing)} are missing: {missing[:10]}"] if missing else []) + (
        [f"{unknown[:10]} are of no HMDB51 class"] if unknown else [])
    if wrong:
        raise ManifestError(
            f"Expected one split file `<class>{suffix}` for each of the 51 HMDB51 classes in {str(folder)!r}, but "
            f"{'; '.join(wrong)}. Copy the split files again (the release's testTrainMulti_7030_splits holds 153)."
        )
    classes = {name: i for i, name in enumerate(HMDB51_CLASSES)}  # sorted class names, not sorted file names
    files = [found[name] for name in HMDB51_CLASSES]
    rows, problems = [], []
    for path in files:
        class_name = path.name[: -len(suffix)]
        for number, line in annotation_lines(path, "HMDB51 split file (lines `<name>.avi <0|1|2>`)"):
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
    """HMDB51 (the 51 classes of `HMDB51_CLASSES`) of one official split; unused clips (code 0)
    get an empty split."""
    table = hmdb_split_table(split_dir, split_number)
    manifest = validate(_manifest(table, videos_dir, "hmdb51"), str(split_dir), allow_missing, check_videos=check_videos)
    manifest.attrs[CLASSES_ATTR] = list(HMDB51_CLASSES)
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
