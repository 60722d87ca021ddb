"""How long each dataset adapter takes on annotation files of the real releases' sizes.

Writes synthetic annotation files in the real formats (AR_metadata.xlsx with 30,100 clips,
Charades-Ego CSVs, UCF101 split-1 lists, HMDB51 split-1 files) into a temporary folder, then
times `actiondiff manifest`'s adapters on them (no video files: every row is checked on disk
and dropped through `allow_missing`, so the timing includes the file checks). Prints a
Markdown table. Usage: `PYTHONPATH=src python benchmarks/bench_datasets.py`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from openpyxl import Workbook

from actiondiff.io.datasets import (
    read_animal_kingdom,
    read_charades_ego,
    read_hmdb51,
    read_ucf101,
    read_ucf_hmdb,
)
from actiondiff.io.datasets.ucf_hmdb import SHARED_CLASSES, UCF_TO_SHARED

HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length,egocentric,charades_video"


def write_animal_kingdom(folder: Path, clips: int = 30_100, double_encoded: int = 411) -> Path:
    book = Workbook(write_only=True)
    ar = book.create_sheet("AR")
    ar.append(["S/N", "video_id", "type", "labels", "list_animal_action"])
    for i in range(clips):
        video_id = "".join(chr(65 + (i // 26**k) % 26) for k in range(8))
        pairs = f"[('Species {i % 900}', 'Action {i % 140}'), ('Species {(i + 1) % 900}', 'Action 2')]"
        if i < double_encoded:
            pairs = repr([pairs])
        ar.append([i + 1, video_id, "train" if i % 5 else "test", f"{i % 140},2", pairs])
    book.create_sheet("CARe").append(["video_id"])
    action = book.create_sheet("Action")
    action.append(["Label", "Category", "Action", "Description"])
    for i in range(140):
        action.append([float(i) if i != 139 else None, "c", f"Action {i}", "d"])
    animal = book.create_sheet("Animal")
    animal.append(["Animal", "Parent Class", "Class", "Sub-Class", "Young", "Generic name"])
    for i in range(958):
        animal.append([f"Species {i}", "p", "c", f"Group {i % 107}", "y", "g"])
    path = folder / "AR_metadata.xlsx"
    book.save(path)
    return path


def write_charades(folder: Path, pairs: int = 3_930) -> Path:
    folder.mkdir()
    (folder / "Charades_v1_classes.txt").write_text("\n".join(f"c{i:03d} Doing thing {i}/else" for i in range(157)))
    for split, share in (("train", 0.8), ("test", 0.2)):
        rows = [HEADER]
        for i in range(int(pairs * share)):
            video = f"{split[:2].upper()}{i:04d}"
            actions = f"c{i % 157:03d} 0.00 3.50;c{(i * 7) % 157:03d} 1.00 9.00"
            for suffix, ego in (("EGO", "Yes"), ("", "No")):
                rows.append(f'{video}{suffix},S,Kitchen,5,5,Yes,"A person, cooking.",,{{}},{actions},30.00,{ego},')
        (folder / f"CharadesEgo_v1_{split}.csv").write_bytes("\r\n".join([*rows, ""]).encode())
    return folder


def write_ucf(folder: Path) -> Path:
    folder.mkdir()
    classes = sorted([*UCF_TO_SHARED, *(f"Other{i:02d}" for i in range(86))])
    (folder / "classInd.txt").write_bytes("".join(f"{i} {c}\r\n" for i, c in enumerate(classes, 1)).encode())
    train = [f"{c}/v_{c}_g{8 + k // 7:02d}_c{k % 7 + 1:02d}.avi {n}" for n, c in enumerate(classes, 1) for k in range(95 - (n <= 43))]
    test = [f"{c}/v_{c}_g{1 + k // 7:02d}_c{k % 7 + 1:02d}.avi" for n, c in enumerate(classes, 1) for k in range(37 + (n <= 46))]
    (folder / "trainlist01.txt").write_bytes("\r\n".join(train[:9537]).encode() + b"\r\n")
    (folder / "testlist01.txt").write_bytes("\r\n".join(test[:3783]).encode() + b"\r\n")
    return folder


def write_hmdb(folder: Path) -> Path:
    folder.mkdir()
    for name in sorted([*SHARED_CLASSES, *(f"other_{i:02d}" for i in range(39))]):
        codes = [1] * 70 + [2] * 30 + [0] * 33
        (folder / f"{name}_test_split1.txt").write_text("".join(f"{name}_#{k}_(x)_&_[y]!.avi {c} \n" for k, c in enumerate(codes)))
    return folder


def timed(function, *args) -> tuple[float, int]:
    start = time.perf_counter()
    manifest = function(*args, allow_missing=True)
    return time.perf_counter() - start, len(manifest) + len(manifest.attrs["missing_videos"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        metadata = write_animal_kingdom(root)
        charades, ucf, hmdb = write_charades(root / "charades"), write_ucf(root / "ucf"), write_hmdb(root / "hmdb")
        rows = [
            ("animal_kingdom (AR_metadata.xlsx, 30,100 clips)", *timed(read_animal_kingdom, metadata, root / "video")),
            ("charades_ego (train + test CSV, 7,860 videos)", *timed(read_charades_ego, charades, root / "v")),
            ("ucf101 split 1 (9,537 + 3,783 lines)", *timed(read_ucf101, ucf, root / "v")),
            ("hmdb51 split 1 (51 files, 6,783 lines)", *timed(read_hmdb51, hmdb, root / "v")),
            ("ucf_hmdb (12 classes, both datasets)", *timed(lambda *a, **k: read_ucf_hmdb(ucf, hmdb, *a, **k), root / "v", root / "w")),
        ]
    print("| adapter (synthetic files of the real size) | rows | seconds | rows/s |")
    print("|---|---|---|---|")
    for name, seconds, count in rows:
        print(f"| {name} | {count:,} | {seconds:.2f} | {count / seconds:,.0f} |")


if __name__ == "__main__":
    main()
