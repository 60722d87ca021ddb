"""Dataset adapters and protocols on fixtures written in the real release formats.

Every fixture is written here, in the format and with the quirks of reference/DATASETS.md:
AR_metadata.xlsx with text cells, float / empty Labels and double-encoded species lists;
Charades-Ego CSVs with CRLF, quoted commas and newlines, empty actions; UCF101 / HMDB51 split
lists of the real sizes (synthetic names), CRLF / trailing spaces and `& ( ) [ ] ! # +` names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import Workbook

from actiondiff.cli import main
from actiondiff.io.datasets import (
    CustomColumns,
    read_animal_kingdom,
    read_charades_ego,
    read_custom,
    read_folders,
    read_hmdb51,
    read_ucf101,
    read_ucf_hmdb,
)
from actiondiff.io.datasets.animal_kingdom import parse_animal_actions
from actiondiff.io.datasets.ucf_hmdb import (
    SHARED_CLASSES,
    UCF_TO_SHARED,
    hmdb_split_table,
    ucf_split_table,
)
from actiondiff.io.manifest import ManifestError, class_names, read_manifest, write_manifest
from actiondiff.learn.protocols import ProtocolSettings, assign_roles, multi_hot


def touch(paths) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


# --------------------------------------------------------------------------- Animal Kingdom

AK_NAMES = {2: "Attending", 40: "Eating", 52: "Flying", 63: "Hanging", 68: "Keeping still", 78: "Moving",
            102: "Sensing", 123: "Swimming", 133: "Walking", 139: "Yawning"}
# (S/N, video_id, type, labels, list_animal_action): the first four rows are real rows.
AK_ROWS = [
    (1, "AAACXZTV", "train", "2,40", "[('Common Crane', 'Attending'), ('Common Crane', 'Eating')]"),
    (3, "AABKMGHE", "train", "78", "[('Snake', 'Moving')]"),
    (69, "ABKBWVMW", "train", "68", "['[(\"Russell\\'S Viper\", \\'Keeping still\\')]']"),
    (9459, "KDIANBXG", "train", "68,52,133", "[]"),
    (10, "QUAILAAA", "test", "40", "[('Common Quail', 'Eating')]"),  # alias -> common quail bird
    (11, "CUCKOOAA", "train", "102", "[('cuckoo bird', 'Sensing')]"),  # alias -> common cuckoo bird
    (12, "IGUANAAA", "test", "123", "[('Green Iguana', 'Swimming')]"),
    (13, "DUCKAAAA", "train", "123", "[('MALLARD DUCK', 'Swimming')]"),
    (14, "MACAQUEA", "test", "139", "[('Rhesus Macaque', 'Yawning')]"),
    (15, "TIGERAAA", "test", "78", "[('Tiger', 'Moving')]"),
    (16, "MIXEDAAA", "train", "78", "[('Snake', 'Moving'), ('Mallard Duck', 'Moving')]"),
    (17, "GOLDFISH", "test", "123", "[('Goldfish', 'Eating')]"),  # names disagree with labels: ids win
]
AK_ANIMALS = [  # Animal, Parent Class, Class, Sub-Class, Young, Generic name
    ("Common Crane", "Bird", "Bird", "Bird", "chick", "crane"),
    ("Snake", "Reptile", "Snake", "Snake / Cobra / Viper / Python", "snakelet", "snake"),
    ("Russell's Viper", "Reptile", "Snake", "Snake / Cobra / Viper / Python", "snakelet", "viper"),
    ("Common Quail Bird", "Bird", "Bird", "Bird", "chick", "quail"),
    ("Common Cuckoo Bird", "Bird", "Bird", "Bird", "chick", "cuckoo"),
    ("Green Iguana", "Reptile", "Lizard", "Lizard / Gecko / Draco / Iguana / Chamelon", "hatchling", "iguana"),
    ("Mallard Duck", "Bird", "Water bird", "Water Bird / Duck / Swan / Goose", "duckling", "duck"),
    ("Rhesus Macaque", "Mammal", "Primate", "Primate / Monkey / Macaque / Baboon / Chimpanzee / Gorilla / Orangutan / Langur", "infant", "monkey"),
    ("Tiger", "Mammal", "Cat", "Cat / Tiger / Lion / Leopard", "cub", "tiger"),
    ("Goldfish", "Fish", "Fish", "Fish", "fry", "fish"),
]


def write_ak_metadata(path: Path, rows=AK_ROWS) -> Path:
    """AR_metadata.xlsx with sheets AR, CARe, Action, Animal; AR cells but S/N stored as text."""
    book = Workbook()
    ar = book.active
    ar.title = "AR"
    ar.append(["S/N", "video_id", "type", "labels", "list_animal_action"])
    for row in rows:
        ar.append(list(row))
    care = book.create_sheet("CARe")
    care.append(["video_id", "split"])
    care.append(["ZZZZZZZZ", "train"])  # another paper's split: ids not in AR
    action = book.create_sheet("Action")
    action.append(["Label", "Category", "Action", "Description"])
    for i in range(139):  # Labels are floats (63.0); Yawning (139) has an empty Label
        action.append([float(i), "Category", AK_NAMES.get(i, f"Action {i} (& more)"), "text"])
    action.insert_rows(60)  # an empty row in the middle
    action.append([None, "Category", "Yawning ", "opening the mouth"])
    animal = book.create_sheet("Animal")
    animal.append(["Animal", "Parent Class", "Class", "Sub-Class", "Young", "Generic name"])
    for row in AK_ANIMALS:
        animal.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


@pytest.fixture
def animal_kingdom(tmp_path: Path) -> tuple[Path, Path]:
    metadata = write_ak_metadata(tmp_path / "annotation" / "AR_metadata.xlsx")
    videos = tmp_path / "dataset" / "video"
    touch(videos / f"{row[1]}.mp4" for row in AK_ROWS)
    return metadata, videos


def test_parse_animal_actions_plain_double_encoded_and_empty():
    assert parse_animal_actions("[('Snake', 'Moving')]") == [("Snake", "Moving")]
    assert parse_animal_actions(AK_ROWS[2][4]) == [("Russell'S Viper", "Keeping still")]
    assert parse_animal_actions("[]") == []
    with pytest.raises(ValueError, match="not a list"):
        parse_animal_actions("['Snake']")


def test_animal_kingdom_manifest_rows(animal_kingdom):
    metadata, videos = animal_kingdom
    manifest = read_animal_kingdom(metadata, videos).set_index("video_id")
    assert len(manifest) == 12
    assert (manifest.split == "train").sum() == 7 and (manifest.split == "test").sum() == 5
    assert manifest.loc["AAACXZTV", "labels"] == "Attending;Eating"
    assert manifest.loc["AAACXZTV", "label_ids"] == "2;40"
    assert manifest.loc["AAACXZTV", "species_group"] == "bird"
    assert manifest.loc["ABKBWVMW", "species"] == "russell's viper"
    assert manifest.loc["ABKBWVMW", "species_group"] == "snake / cobra / viper / python"
    assert manifest.loc["KDIANBXG", "label_ids"] == "68;52;133"
    assert manifest.loc["KDIANBXG", "species_group"] == ""
    assert manifest.loc["QUAILAAA", "species_group"] == "bird"  # alias
    assert manifest.loc["CUCKOOAA", "species_group"] == "bird"  # alias
    assert manifest.loc["MACAQUEA", "labels"] == "Yawning"
    assert manifest.loc["MACAQUEA", "label_ids"] == "139"
    assert manifest.loc["GOLDFISH", "labels"] == "Swimming"  # from `labels`, not the names
    assert manifest.loc["MIXEDAAA", "species_group"] == "snake / cobra / viper / python;water bird / duck / swan / goose"
    assert manifest.loc["AABKMGHE", "path"] == str((videos / "AABKMGHE.mp4").resolve())
    assert class_names(manifest.reset_index()) == [AK_NAMES[i] for i in sorted(AK_NAMES) if i != 63]  # 63: no clip


def test_animal_kingdom_protocols(animal_kingdom):
    manifest = read_animal_kingdom(*animal_kingdom)
    full = assign_roles(manifest, ProtocolSettings(name="ak_full", val_fraction=2 / 7))
    assert (full == "test").sum() == 5 and (full == "val").sum() == 2 and (full == "train").sum() == 5
    assert set(manifest.video_id[full == "test"]) == {"QUAILAAA", "IGUANAAA", "MACAQUEA", "TIGERAAA", "GOLDFISH"}

    unseen = ProtocolSettings(name="ak_unseen_species")
    roles = assign_roles(manifest, unseen).set_axis(manifest.video_id)
    assert sorted(roles.index[roles.isin(["train", "val"])]) == ["AABKMGHE", "ABKBWVMW", "CUCKOOAA", "GOLDFISH", "QUAILAAA"]
    assert sorted(roles.index[roles == "test"]) == ["DUCKAAAA", "IGUANAAA"]  # official type ignored
    assert (roles == "val").sum() == 1
    assert unseen.headline_metric == "top1_accuracy" and not unseen.spec.multilabel
    targets = multi_hot(manifest.labels[(roles == "test").to_numpy()], class_names(manifest))
    assert targets.shape == (2, 9) and targets.sum() == 2 and targets[:, 6].sum() == 2  # Swimming

    pair = ProtocolSettings(name="ak_species_pair", train_domains=("water bird / duck / swan / goose",),
                            test_domains=("lizard / gecko / draco / iguana / chamelon",), val_fraction=0)
    with pytest.raises(ValueError, match="leave some val"):
        assign_roles(manifest, pair)
    pair = ProtocolSettings(name="ak_species_pair", train_domains=("snake / cobra / viper / python",),
                            test_domains=("bird",), val_fraction=0.5)
    roles = assign_roles(manifest, pair).set_axis(manifest.video_id)
    assert sorted(roles.index[roles == "test"]) == ["CUCKOOAA", "QUAILAAA"]
    assert sorted(roles.index[roles.isin(["train", "val"])]) == ["AABKMGHE", "ABKBWVMW"]
    diagonal = manifest.copy()  # one group with itself: its clips split by the official type
    diagonal.loc[diagonal.video_id == "MIXEDAAA", "species_group"] = "bird"
    roles = assign_roles(diagonal, ProtocolSettings(name="ak_species_pair", train_domains=("bird",),
                                                    test_domains=("bird",), val_fraction=0.5)).set_axis(manifest.video_id)
    assert roles[roles != ""].sort_index().to_dict() == {"CUCKOOAA": "train", "MIXEDAAA": "val", "QUAILAAA": "test"}
    with pytest.raises(ValueError, match="one species group each"):
        ProtocolSettings(name="ak_species_pair", train_domains=("bird", "fish"), test_domains=("bird",))
    with pytest.raises(ValueError, match="unknown"):
        assign_roles(manifest, ProtocolSettings(name="ak_species_pair", train_domains=("birds",), test_domains=("fish",)))


def test_animal_kingdom_reports_bad_rows_by_name(tmp_path: Path):
    rows = AK_ROWS[:2] + [
        (20, "BADLABEL", "train", "140", "[('Snake', 'Moving')]"),
        (21, "BADLISTS", "train", "78", "[('Snake', 'Moving')"),
        (22, "BADSPECI", "test", "78", "[('Unicorn', 'Moving')]"),
        (23, "BADTYPEA", "val", "78", "[('Snake', 'Moving')]"),
        (24, "NOLABELS", "train", "", "[('Snake', 'Moving')]"),
    ]
    metadata = write_ak_metadata(tmp_path / "AR_metadata.xlsx", rows)
    with pytest.raises(ManifestError) as error:
        read_animal_kingdom(tmp_path, tmp_path)
    message = str(error.value)
    assert "5 are not" in message
    for expected in ("BADLABEL): labels '140' hold unknown ids [140]", "BADLISTS): list_animal_action",
                     "'unicorn' (first in BADSPECI)", "BADTYPEA): type 'val'", "NOLABELS): labels '' are empty"):
        assert expected in message
    good = write_ak_metadata(tmp_path / "good" / "AR_metadata.xlsx", AK_ROWS[:2])
    with pytest.raises(ManifestError, match=r"2 are missing, e.g. \['AAACXZTV', 'AABKMGHE'\]"):
        read_animal_kingdom(good, tmp_path / "none")
    assert "BADLABEL" in str(error.value) and metadata.is_file()


def test_animal_kingdom_allow_missing_lists_dropped(animal_kingdom):
    metadata, videos = animal_kingdom
    (videos / "TIGERAAA.mp4").unlink()
    manifest = read_animal_kingdom(metadata, videos, allow_missing=True)
    assert len(manifest) == 11 and "TIGERAAA" not in set(manifest.video_id)
    assert manifest.attrs["missing_videos"] == [{"video_id": "TIGERAAA", "path": str((videos / "TIGERAAA.mp4").resolve())}]


# --------------------------------------------------------------------------- Charades-Ego

CHARADES_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length,egocentric,charades_video"
CHARADES_TRAIN = [  # real rows first
    '6AFMPEGO,I4RP,Bedroom,7,2,Yes,"A person is running up to a doorway.  While smiling, they turn the doorknob.",door,,c006 0.00 3.50,5.00,Yes,PJ2NN',
    "8U2AREGO,KFGP,Living room,6,6,Yes,A person is throwing down their shoes then opening a laptop.,,{},,24.29,Yes,9A58F",
    '6AFMP,I4RP,Bedroom,7,2,Yes,"A person runs,\nthen smiles.",door;doorknob,"{}",c006 0.00 3.50;c092 1.00 2.00,5.00,No,',
    "8U2AR,KFGP,Living room,6,6,Yes,Shoes.,,{},c147 5.00 2.00;c147 0.00 12.60,24.29,No,",
]
CHARADES_TEST = [
    "D3TR8EGO,AB12,Kitchen,5,5,Yes,Cooking.,,{},c092 11.90 21.20;c147 0.00 12.60,30.00,Yes,",
    "D3TR8,AB12,Kitchen,5,5,Yes,Cooking.,,{},c092 1.00 99.00,30.00,No,",
]
CHARADES_NAMES = {6: "Opening a door", 92: "Holding a laptop", 147: "Taking/consuming some medicine"}


def write_charades(folder: Path, train=CHARADES_TRAIN, test=CHARADES_TEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"c{i:03d} {CHARADES_NAMES.get(i, f'Doing thing {i} with something/somewhere')}" for i in range(157)]
    lines[5] += " "  # a trailing space, and no final newline
    (folder / "Charades_v1_classes.txt").write_bytes("\n".join(lines).encode())
    for name, rows in (("train", train), ("test", test)):
        (folder / f"CharadesEgo_v1_{name}.csv").write_bytes("\r\n".join([CHARADES_HEADER, *rows, ""]).encode())
    only1st = [r for r in test if r.split(",")[0].endswith("EGO")]
    (folder / "CharadesEgo_v1_test_only1st.csv").write_bytes("\r\n".join([CHARADES_HEADER, *only1st, ""]).encode())
    return folder


@pytest.fixture
def charades(tmp_path: Path) -> tuple[Path, Path]:
    videos = tmp_path / "CharadesEgo_v1"
    touch(videos / f"{r.split(',')[0]}.mp4" for r in CHARADES_TRAIN + CHARADES_TEST)
    return write_charades(tmp_path / "CharadesEgo"), videos


def test_charades_ego_manifest_rows(charades):
    manifest = read_charades_ego(*charades).set_index("video_id")
    assert len(manifest) == 6
    assert manifest.view.to_dict() == {"6AFMP": "3rd", "6AFMPEGO": "1st", "8U2AR": "3rd", "8U2AREGO": "1st",
                                       "D3TR8": "3rd", "D3TR8EGO": "1st"}
    assert manifest.split.to_dict() == {"6AFMP": "train", "6AFMPEGO": "train", "8U2AR": "train", "8U2AREGO": "train",
                                        "D3TR8": "test", "D3TR8EGO": "test"}
    assert manifest.loc["6AFMP", "labels"] == "Opening a door;Holding a laptop"
    assert manifest.loc["6AFMP", "label_ids"] == "6;92"
    assert manifest.loc["8U2AR", "labels"] == "Taking/consuming some medicine"  # repeat counted once
    assert manifest.loc["8U2AREGO", "labels"] == "" and manifest.loc["8U2AREGO", "label_ids"] == ""
    assert manifest.loc["D3TR8EGO", "label_ids"] == "92;147"
    targets = multi_hot(manifest.labels, class_names(manifest.reset_index()))
    assert targets.shape == (6, 3) and targets.sum(axis=1).tolist() == [2, 1, 1, 0, 1, 2]


def test_charades_ego_protocols(charades):
    manifest = read_charades_ego(*charades)
    ids = manifest.video_id
    for name, train_side, test in (
        ("charades_1st_1st", {"6AFMPEGO", "8U2AREGO"}, {"D3TR8EGO"}),
        ("charades_3rd_1st", {"6AFMP", "8U2AR"}, {"D3TR8EGO"}),
        ("charades_1st_3rd", {"6AFMPEGO", "8U2AREGO"}, {"D3TR8"}),
    ):
        protocol = ProtocolSettings(name=name, val_fraction=0.5)
        roles = assign_roles(manifest, protocol)
        assert set(ids[roles.isin(["train", "val"])]) == train_side
        assert set(ids[roles == "test"]) == test and (roles == "val").sum() == 1
        assert protocol.headline_metric == "micro_ap" and protocol.spec.multilabel
    with pytest.raises(ValueError, match="dataset 'animal_kingdom'"):
        assign_roles(manifest.assign(species_group="", label_ids=""), ProtocolSettings(name="ak_full"))


def test_charades_ego_reports_bad_rows(tmp_path: Path):
    bad = CHARADES_TRAIN[:1] + [
        "XYZ12EGO,S,Kitchen,5,5,Yes,Text.,,{},c006 0.00 1.00,3.00,No,",
        "ABCDE,S,Kitchen,5,5,Yes,Text.,,{},c157 0.00 1.00,3.00,No,",
        "FGHIJ,S,Kitchen,5,5,Yes,Text.,,{},c006 zero 1.00,3.00,No,",
    ]
    folder = write_charades(tmp_path, train=bad)
    with pytest.raises(ManifestError) as error:
        read_charades_ego(folder, tmp_path)
    message = str(error.value)
    assert "3 are not" in message and "(XYZ12EGO): views disagree" in message
    assert "(ABCDE): unknown classes ['c157']" in message and "(FGHIJ): actions 'c006 zero 1.00'" in message


# --------------------------------------------------------------------------- UCF101 / HMDB51

HMDB_CLASSES = sorted([*SHARED_CLASSES, *(f"other_{i:02d}" for i in range(39))])
UCF_CLASSES = sorted([*UCF_TO_SHARED, "HandstandPushups", *(f"Other{i:02d}" for i in range(85))])


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def write_ucf_lists(folder: Path, videos: Path) -> None:
    """classInd + split-1 lists of the real sizes: 9,537 train / 3,783 test; the 15 classes of
    UCF-HMDB hold 1,438 / 571 of them. CRLF; HandstandPushups files spelled HandStand."""
    folder.mkdir(parents=True)
    (folder / "classInd.txt").write_bytes("".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)).encode())
    mapped = [c for c in UCF_CLASSES if c in UCF_TO_SHARED]
    others = [c for c in UCF_CLASSES if c not in UCF_TO_SHARED]
    counts = {}
    for classes, train, test in ((mapped, 1438, 571), (others, 9537 - 1438, 3783 - 571)):
        counts.update(zip(classes, zip(_spread(train, len(classes)), _spread(test, len(classes)), strict=True), strict=True))
    train_lines, test_lines = [], []
    for number, name in enumerate(UCF_CLASSES, 1):
        stem = "HandStandPushups" if name == "HandstandPushups" else name
        train, test = counts[name]
        test_lines += [f"{name}/v_{stem}_g{1 + k // 7:02d}_c{k % 7 + 1:02d}.avi" for k in range(test)]
        train_lines += [f"{name}/v_{stem}_g{8 + k // 7:02d}_c{k % 7 + 1:02d}.avi {number}" for k in range(train)]
    (folder / "trainlist01.txt").write_bytes(("\r\n".join(train_lines) + "\r\n").encode())
    (folder / "testlist01.txt").write_bytes(("\r\n".join(test_lines) + "\r\n").encode())
    # Video files only for the classes the tests read with files present (creating all
    # 13,320 is slow on a busy disk); the others are counted through --allow-missing.
    kept = (*UCF_TO_SHARED, "HandstandPushups")
    touch(videos / line.split()[0] for line in train_lines + test_lines if line.split("/")[0] in kept)


def hmdb_name(class_name: str, k: int) -> str:
    if class_name == "kick_ball" and k == 0:
        return "Goal_1_&_2_(Rivaldo)_[HD]!_#1+_kick_ball_f_cm_np1_ri_med_0.avi"
    return f"{class_name}_clip_{k:03d}_f_cm_np1_fr_med_0.avi"


def write_hmdb_splits(folder: Path, videos: Path) -> None:
    """51 `<class>_test_split1.txt` (70 train, 30 test, 8 unused each; LF, trailing space) and
    split-2 files that must be ignored."""
    folder.mkdir(parents=True)
    for name in HMDB_CLASSES:
        codes = [1] * 70 + [2] * 30 + [0] * 8
        lines = [f"{hmdb_name(name, k)} {code} \n" for k, code in enumerate(codes)]
        (folder / f"{name}_test_split1.txt").write_text("".join(lines))
        (folder / f"{name}_test_split2.txt").write_text("".join(lines[::-1]).replace(" 1 ", " 9 "))
        if name in SHARED_CLASSES:
            touch(videos / name / hmdb_name(name, k) for k in range(len(codes)))


@pytest.fixture(scope="module")
def ucf_hmdb(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ucf_hmdb")
    paths = {"ucf_lists": root / "ucfTrainTestlist", "hmdb_splits": root / "testTrainMulti_7030_splits",
             "ucf_videos": root / "UCF-101", "hmdb_videos": root / "hmdb51"}
    write_ucf_lists(paths["ucf_lists"], paths["ucf_videos"])
    write_hmdb_splits(paths["hmdb_splits"], paths["hmdb_videos"])
    return paths


def test_ucf101_split1_counts(ucf_hmdb):
    table = ucf_split_table(ucf_hmdb["ucf_lists"], 1)
    assert (table.split == "train").sum() == 9537 and (table.split == "test").sum() == 3783
    assert table["class"].nunique() == 101 and table.class_id.max() == 100
    manifest = read_ucf101(ucf_hmdb["ucf_lists"], ucf_hmdb["ucf_videos"], allow_missing=True)
    assert len(manifest) + len(manifest.attrs["missing_videos"]) == 9537 + 3783
    assert set(manifest.labels) == {*UCF_TO_SHARED, "HandstandPushups"}  # the classes with files
    assert class_names(manifest)[0] == "Archery" and manifest.label_ids[manifest.labels == "Archery"].eq("0").all()
    row = manifest.set_index("video_id").loc["v_HandStandPushups_g08_c01"]
    assert row.labels == "HandstandPushups" and row.label_ids == str(UCF_CLASSES.index("HandstandPushups"))
    assert row.path == str((ucf_hmdb["ucf_videos"] / "HandstandPushups" / "v_HandStandPushups_g08_c01.avi").resolve())


def test_hmdb51_split1_counts_and_odd_names(ucf_hmdb):
    table = hmdb_split_table(ucf_hmdb["hmdb_splits"], 1)
    assert table.split.value_counts().to_dict() == {"train": 3570, "test": 1530, "": 408}
    assert table["class"].nunique() == 51
    manifest = read_hmdb51(ucf_hmdb["hmdb_splits"], ucf_hmdb["hmdb_videos"], allow_missing=True)
    assert manifest.split.value_counts().to_dict() == {"train": 840, "test": 360, "": 96}
    row = manifest.set_index("video_id").loc["Goal_1_&_2_(Rivaldo)_[HD]!_#1+_kick_ball_f_cm_np1_ri_med_0"]
    assert row.labels == "kick_ball" and row.split == "train" and Path(row.path).is_file()


def test_ucf_hmdb_counts_and_protocols(ucf_hmdb):
    manifest = read_ucf_hmdb(**ucf_hmdb)
    counts = manifest.groupby(["source", "split"]).size().to_dict()
    assert counts == {("hmdb51", "train"): 840, ("hmdb51", "val"): 360, ("ucf101", "train"): 1438, ("ucf101", "val"): 571}
    assert class_names(manifest) == list(SHARED_CLASSES)
    climbing = manifest[manifest.source_class == "RopeClimbing"]
    assert set(climbing.labels) == {"climb"} and set(climbing.label_ids) == {"0"}
    roles = assign_roles(manifest, ProtocolSettings(name="ucf_to_hmdb"))
    assert roles.value_counts().to_dict() == {"train": 1438, "test": 1200, "val": 571}
    assert set(manifest.source[roles == "test"]) == {"hmdb51"}
    roles = assign_roles(manifest, ProtocolSettings(name="hmdb_to_ucf"))
    assert roles.value_counts().to_dict() == {"test": 2009, "train": 840, "val": 360}


def test_ucf_list_errors_name_file_and_line(tmp_path: Path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "classInd.txt").write_bytes(b"1 Archery\r\n2 Basketball\r\n")
    (folder / "trainlist01.txt").write_bytes(b"Archery/v_Archery_g08_c01.avi 2\r\nBowling/v_Bowling_g08_c01.avi 1\r\n")
    (folder / "testlist01.txt").write_bytes(b"Archery/v_Archery_g01_c01.avi\r\nArchery/v_Archery_g01_c01.avi\r\n")
    with pytest.raises(ManifestError) as error:
        read_ucf101(folder, tmp_path)
    message = str(error.value)
    assert "trainlist01.txt line 1 (Archery/v_Archery_g08_c01.avi): expected `<Class>/<file>` followed by class number 1" in message
    assert "trainlist01.txt line 2 (Bowling/v_Bowling_g08_c01.avi): folder 'Bowling'" in message
    assert "video v_Archery_g01_c01 is listed twice" in message


# --------------------------------------------------------------------------- custom / demo / CLI


def test_custom_table_with_own_column_names(tmp_path: Path):
    videos = tmp_path / "clips"
    touch(videos / f"{name}.mp4" for name in ("a1", "a2", "b1", "b2", "c1"))
    table = ("clip file\tbehaviour\tanimal\tset\r\n"
             "a1.mp4\tgroom \tmouse\t\r\n a2.mp4\tgroom; walk\tmouse\tval\r\n"
             "b1.mp4\twalk\trat\t\r\nb2.mp4\trear\trat\tTRAIN\r\nc1.mp4\twalk\tvole\ttest\r\n")
    (tmp_path / "labels.tsv").write_bytes(table.encode())
    columns = CustomColumns(video="clip file", label="behaviour", domain="animal", split="set")
    manifest = read_custom(tmp_path / "labels.tsv", videos, columns)
    assert manifest.labels.tolist() == ["groom", "groom;walk", "walk", "rear", "walk"]
    assert manifest.label_ids.tolist() == ["0", "0;2", "2", "1", "2"]
    assert manifest.split.tolist() == ["", "val", "", "train", "test"]
    roles = assign_roles(manifest, ProtocolSettings(train_domains=("mouse",), test_domains=("rat",)))
    assert roles.tolist() == ["train", "val", "test", "test", ""]
    with pytest.raises(ManifestError, match="label='action'"):
        read_custom(tmp_path / "labels.tsv", videos, CustomColumns(video="clip file", label="action", domain="animal", split="set"))


def test_custom_csv_with_byte_order_mark_and_repeated_id(tmp_path: Path):
    touch([tmp_path / "v" / "a.mp4", tmp_path / "v" / "b.mp4"])
    (tmp_path / "t.csv").write_bytes("\ufeffvideo,label,domain,split\r\na.mp4,walk,x,\r\nb.mp4,run,y,\r\n".encode())
    manifest = read_custom(tmp_path / "t.csv", tmp_path / "v", CustomColumns())
    assert manifest.video_id.tolist() == ["a", "b"] and manifest.labels.tolist() == ["walk", "run"]
    (tmp_path / "t.csv").write_text("video,label,domain,split\na.mp4,walk,x,\nb.mp4,run,y,\na.mp4,run,y,\n")
    with pytest.raises(ManifestError, match=r"unique video ids .* repeats: \['a'\]"):
        read_custom(tmp_path / "t.csv", tmp_path / "v", CustomColumns())
    (tmp_path / "t.csv").write_text("video,label,domain,split\na.mp4,walk,x,training\n")
    with pytest.raises(ManifestError, match=r"splits among .* but got \['training'\]"):
        read_custom(tmp_path / "t.csv", tmp_path / "v", CustomColumns())


def test_custom_class_per_subfolder(tmp_path: Path):
    touch([tmp_path / "zoo" / "rat" / "walk" / "w1.mp4", tmp_path / "zoo" / "rat" / "rear" / "r1.avi",
           tmp_path / "zoo" / "mouse" / "walk" / "w2.MOV", tmp_path / "zoo" / "notes.txt"])
    manifest = read_folders(tmp_path / "zoo", "domain/label")
    assert manifest[["video_id", "labels", "domain"]].values.tolist() == [
        ["mouse/walk/w2", "walk", "mouse"], ["rat/rear/r1", "rear", "rat"], ["rat/walk/w1", "walk", "rat"]]
    with pytest.raises(ManifestError, match="depth"):
        read_folders(tmp_path / "zoo", "label")


def test_demo_dataset_goes_through_the_custom_path(tmp_path: Path):
    from actiondiff.tools.demo_data import ACTIONS, make_demo_dataset

    make_demo_dataset(tmp_path, videos_per_pair=2, num_frames=2, size=16, val_fraction=0.5)
    out = tmp_path / "manifest.csv"
    settings = json.dumps({"dataset": {"columns": {"label": "action"}}})
    assert main(["manifest", "custom", "--annotations", str(tmp_path / "labels.csv"), "--videos", str(tmp_path),
                 "--out", str(out), "--settings", settings]) == 0
    manifest = read_manifest(out)
    assert len(manifest) == 32 and class_names(manifest) == sorted(ACTIONS)
    roles = assign_roles(manifest, ProtocolSettings(test_domains=("blue_diamond_stripes", "yellow_cross_checker")))
    assert roles.value_counts().to_dict() == {"test": 16, "train": 8, "val": 8}


def test_cli_manifest_ucf_hmdb_and_allow_missing(ucf_hmdb, tmp_path: Path, capsys):
    out, missing = tmp_path / "m.csv", tmp_path / "missing.csv"
    argv = ["manifest", "ucf_hmdb", "--annotations", str(ucf_hmdb["ucf_lists"]), str(ucf_hmdb["hmdb_splits"]),
            "--videos", str(ucf_hmdb["ucf_videos"]), str(tmp_path / "no-hmdb"), "--out", str(out)]
    assert main(argv) == 2  # every HMDB video missing, no flag
    assert main([*argv, "--allow-missing", "--missing", str(missing)]) == 0
    manifest = read_manifest(out)
    assert len(manifest) == 2009 and set(manifest.source) == {"ucf101"}
    assert list(manifest.columns) == ["video_id", "path", "labels", "domain", "split", "label_ids", "dataset", "source", "source_class"]
    dropped = pd.read_csv(missing)
    assert len(dropped) == 1200 and "dropped 1200 rows" in capsys.readouterr().out
    assert main(["manifest", "ucf_hmdb", "--annotations", str(ucf_hmdb["ucf_lists"]), "--videos", "x", "y", "--out", str(out)]) == 2


def test_manifest_round_trip_keeps_ids_and_empty_labels(charades, tmp_path: Path):
    manifest = read_charades_ego(*charades)
    write_manifest(manifest, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert back.equals(manifest[back.columns].astype(str))
    assert class_names(back) == ["Opening a door", "Holding a laptop", "Taking/consuming some medicine"]
    assert np.array_equal(multi_hot(back.labels, class_names(back))[3], [0, 0, 0])


def test_protocol_settings_validation():
    assert ProtocolSettings().headline_metric == "top1_accuracy"
    assert ProtocolSettings(name="ak_full").spec.metrics == ("micro_ap", "macro_ap_present", "macro_ap_all")
    assert ProtocolSettings(name="ak_full", metric="macro_ap_present").headline_metric == "macro_ap_present"
    with pytest.raises(ValueError, match="protocol.name"):
        ProtocolSettings(name="ak_unseen")
    with pytest.raises(ValueError, match="disjoint"):
        ProtocolSettings(train_domains=("a",), test_domains=("a",))
    with pytest.raises(ValueError, match="sides are fixed"):
        ProtocolSettings(name="ucf_to_hmdb", test_domains=("hmdb51",))


@pytest.mark.slow  # ~20 s on a busy 2-core machine, nearly all importing torch / torchmetrics; training < 1 s
def test_named_protocol_trains_and_evaluates_through_the_cli(charades, tmp_path: Path, capsys):
    """charades_3rd_1st end to end on a packed store of synthetic features: the protocol makes
    the head multi-label, classes follow the class ids, an empty label is an all-zero target."""
    from actiondiff.store.cache import FeatureCache
    from actiondiff.store.packed import pack_store
    from actiondiff.store.records import VideoFeatures

    manifest = read_charades_ego(*charades)
    write_manifest(manifest, tmp_path / "manifest.csv")
    cache = FeatureCache(tmp_path / "cache", "abc123")
    rng = np.random.default_rng(0)
    for video_id in manifest.video_id:
        frames = rng.normal(size=(5, 16)).astype(np.float32)  # [num_frames, channels]
        cache.commit(VideoFeatures(video_id, {"L09_T20": frames}, np.arange(5), np.arange(5) * 40.0))
    pack_store(cache, list(manifest.video_id), tmp_path / "store.zarr", {"settings_hash": "abc123"})
    settings = json.dumps({"protocol": {"name": "charades_3rd_1st", "val_fraction": 0.5},
                           "head": {"num_layers": 1, "num_heads": 2}, "train": {"epochs": 1, "seeds": [0]}})
    common = ["--store", str(tmp_path / "store.zarr"), "--manifest", str(tmp_path / "manifest.csv"), "--settings", settings]
    assert main(["train", *common, "--tap", "L09_T20", "--out", str(tmp_path / "models")]) == 0
    info = json.loads((tmp_path / "models" / "seed0.json").read_text())
    assert info["train"]["multilabel"] is True and info["train"]["lr"] == 1e-4  # charades_ego preset
    assert info["classes"] == ["Opening a door", "Holding a laptop", "Taking/consuming some medicine"]
    out = tmp_path / "evaluation.json"
    assert main(["evaluate", *common, "--models", str(tmp_path / "models" / "seed0.safetensors"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_test_videos"] == 1 and result["classes"] == info["classes"]
    assert "micro_ap on 1 test videos" in capsys.readouterr().out
    assert result["protocol"]["name"] == "charades_3rd_1st" and result["protocol"]["headline_metric"] == "micro_ap"
    assert result["protocol"]["metrics"] == ["micro_ap", "macro_ap_present"]
