"""Dataset adapters and protocols on fixtures written with the quirks of the published files.

Every fixture is written here, reproducing what the published annotation files hold (checked
on the files themselves, which are not committed: Animal Kingdom's has no licence):
- AR_metadata.xlsx (sutdcv/Animal-Kingdom @ 23320fb38a9e, Animal_Kingdom/action_recognition/):
  integer Labels, the Yawning Label an `#N/A` error cell (pandas reads NaN), `labels` as text,
  S/N as numbers, double-encoded species lists of one and of several strings, `[]`, title-case
  action names in the pairs, the real Sub-Class spellings, trailing empty formatted rows in
  sheet `Animal`, CARe's real header;
- Charades-Ego CSVs with CRLF, quoted commas and newlines, empty actions (the v1 CSVs were not
  found in any public repository: the format follows reference/DATASETS.md);
- UCF101 / HMDB51 split lists (yjxiong/temporal-segment-networks @ 2c5e5e7c, data/ucf101_splits,
  data/hmdb51_splits) of the real sizes per split (synthetic names), CRLF, the HandStandPushups
  file names, LF with a trailing space, the real HMDB class names and `& ( ) [ ] ! # + ; ~ @`.
The counts of the published files themselves are pinned in tests/test_real_annotations.py.
"""

from __future__ import annotations

import json
import re
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
# (S/N, video_id, type, labels, list_animal_action): the first five rows are real rows.
AK_ROWS = [
    (1, "AAACXZTV", "train", "2,40", "[('Common Crane', 'Attending'), ('Common Crane', 'Eating')]"),
    (3, "AABKMGHE", "train", "78", "[('Snake', 'Moving')]"),
    (69, "ABKBWVMW", "train", "68", "['[(\"Russell\\'S Viper\", \\'Keeping still\\')]']"),
    (9459, "KDIANBXG", "train", "68,52,133", "[]"),
    # double-encoded with several strings, each the text of a list (134 rows, 2 to 10 strings)
    (135, "ADIGUTHG", "train", "133", "['[(\"Bay\\'S Duiker\", \\'Walking\\')]', '[(\"Bay\\'S Duiker\", \\'Running\\')]']"),
    (10, "QUAILAAA", "test", "40", "[('Common Quail', 'Eating')]"),  # alias -> common quail bird
    (11, "CUCKOOAA", "train", "102", "[('cuckoo bird', 'Sensing')]"),  # alias -> common cuckoo bird
    (12, "IGUANAAA", "test", "123", "[('Green Iguana', 'Swimming')]"),
    (13, "DUCKAAAA", "train", "123", "[('MALLARD DUCK', 'Swimming')]"),
    (14, "MACAQUEA", "test", "139", "[('Rhesus Macaque', 'Yawning')]"),
    (15, "TIGERAAA", "test", "78", "[('Tiger', 'Moving')]"),
    (16, "MIXEDAAA", "train", "78", "[('Snake', 'Moving'), ('Mallard Duck', 'Moving')]"),  # first pair: snake
    (17, "GOLDFISH", "test", "123", "[('Goldfish', 'Eating')]"),  # names disagree with labels: ids win
    (18, "TWOVIPER", "test", "2", "['[(\"Russell\\'S Viper\", \\'Attending\\')]', '[(\"Green Iguana\", \\'Attending\\')]']"),
    (19, "KEEPSTIL", "train", "68", "[('Mallard Duck', 'Keeping Still'), ('Snake', 'Keeping Still')]"),  # title case
    (20, "FROGAAAA", "train", "78", "[('Common Frog', 'Moving')]"),
    (21, "SPIDERAA", "test", "102", "[('Tarantula', 'Sensing')]"),
    (22, "CRICKETA", "train", "40", "[('House Cricket', 'Eating')]"),
    (23, "PRIMATEA", "test", "2", "[('Rhesus Macaque', 'Attending')]"),
]
AK_ANIMALS = [  # Animal, Parent Class, Class, Sub-Class, Young, Generic name (real Sub-Class spellings)
    ("Common Crane", "Bird", "Bird", "Bird", None, None),
    ("Snake", "Reptile", "Snake", "Snake / Cobra / Viper / Python", None, None),
    ("Russell's Viper", "Reptile", "Snake", "Snake / Cobra / Viper / Python", None, None),
    ("Bay's Duiker", "Mammal", "Deer", "Deer / Antelope / Caribou / Moose", None, None),
    ("Common Quail Bird", "Bird", "Bird", "Bird", None, None),
    ("Common Cuckoo Bird", "Bird", "Bird", "Bird", None, None),
    ("Green Iguana", "Reptile", "Lizard", "Lizard / Gecko / Draco / Iguana / Chamelon", None, None),
    ("Mallard Duck", "Bird", "Water bird", "Water bird / Duck / Swan / Goose", "duckling", "duck"),
    ("Rhesus Macaque", "Mammal", "Primate", "Primate / Monkey / Macaque / Baboon / Chimpanzee / Gorilla / Orangutan / Langur", None, None),
    ("Tiger", "Mammal", "Cat", "Cat / Lion / Tiger / Cheetah / Leopard / Cheetah / Cougar / Civet cat", "cub", None),
    ("Goldfish", "Fish", "Fish", "Fish", None, None),
    ("Common Frog", "Amphibian", "Frog", "Frog / Toad", "tadpole", None),
    ("Tarantula", "Invertebrate", "Spider", "Spider / Tarantula", None, None),
    ("House Cricket", "Invertebrate", "Insect", "Cricket / Grasshopper / Praying mantis / Leafhopper", None, None),
]
# The published Yawning Label (A121) is `<c t="e"><f>#N/A</f><v>#N/A</v></c>`: pandas reads NaN.
# openpyxl writes "#N/A" as an error cell (pandas: NaN, as the published file) and "=#N/A" as a
# formula without a cached value (pandas: ""); both must give id 139.
YAWNING_LABEL = "#N/A"


def write_ak_metadata(path: Path, rows=AK_ROWS, yawning_label=YAWNING_LABEL) -> Path:
    """AR_metadata.xlsx with sheets AR, CARe, Action, Animal in the published order and cell types."""
    from openpyxl.styles import Font

    book = Workbook()
    ar = book.active
    ar.title = "AR"
    ar.append(["S/N", "video_id", "type", "labels", "list_animal_action"])
    for row in rows:
        ar.append(list(row))  # S/N a number; labels text, even a single id ("78")
    care = book.create_sheet("CARe")
    care.append(["S/N", "train_test", "animal_class", "animal_sub_class", "animal", "video_id", "action"])
    care.append([1, "train_bird", " Bird", "Bird", "Common Crane", "ZZZZZZZZ", 2])  # another paper's split: ids not in AR
    action = book.create_sheet("Action")
    action.append(["Label", "Category", "Action", "Description"])
    for i in range(139):  # integer Labels 0..138; Yawning's Label is the error cell, row 121 as published
        if i == 119:
            action.append([yawning_label, "Category", "Yawning", "opening the mouth"])
        action.append([i, "Category", AK_NAMES.get(i, f"Action {i} (& more)"), "text" if i % 13 else None])
    animal = book.create_sheet("Animal")
    animal.append(["Animal", "Parent Class", "Class", "Sub-Class", "Young", "Generic name"])
    for row in AK_ANIMALS:
        animal.append(list(row))
    for r in range(len(AK_ANIMALS) + 2, len(AK_ANIMALS) + 12):  # empty formatted rows (the file has 1,000)
        animal.cell(row=r, column=1).font = Font(bold=True)
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
    assert parse_animal_actions(AK_ROWS[4][4]) == [("Bay'S Duiker", "Walking"), ("Bay'S Duiker", "Running")]
    assert parse_animal_actions("[]") == []
    with pytest.raises(ValueError, match="not a list"):
        parse_animal_actions("['Snake']")
    with pytest.raises(ValueError, match="not a list"):
        parse_animal_actions("['[(\"A\", \\'B\\')]', 'Snake']")


def test_animal_kingdom_fixture_has_the_published_cell_types(animal_kingdom):
    from openpyxl import load_workbook

    book = load_workbook(animal_kingdom[0])
    assert book.sheetnames == ["AR", "CARe", "Action", "Animal"]
    assert book["Action"]["A121"].data_type == "e" and book["Action"]["A121"].value == "#N/A"
    assert book["Action"]["A64"].value == 62 and book["Action"]["A64"].data_type == "n"
    assert book["AR"]["A2"].data_type == "n" and book["AR"]["D3"].value == "78" and book["AR"]["D3"].data_type == "s"
    assert pd.isna(pd.read_excel(animal_kingdom[0], sheet_name="Action", dtype=str).Label[119])


@pytest.mark.parametrize("yawning_label", ["#N/A", "=#N/A", None])
def test_animal_kingdom_manifest_rows(animal_kingdom, tmp_path, yawning_label):
    metadata, videos = animal_kingdom
    metadata = write_ak_metadata(tmp_path / "yawning" / "AR_metadata.xlsx", yawning_label=yawning_label)
    manifest = read_animal_kingdom(metadata, videos).set_index("video_id")
    assert len(manifest) == 19
    assert (manifest.split == "train").sum() == 11 and (manifest.split == "test").sum() == 8
    assert manifest.loc["AAACXZTV", "labels"] == "Attending;Eating"
    assert manifest.loc["AAACXZTV", "label_ids"] == "2;40"
    assert manifest.loc["AAACXZTV", "species_group"] == "bird"
    assert manifest.loc["ABKBWVMW", "species"] == "russell's viper"
    assert manifest.loc["ABKBWVMW", "species_group"] == "snake / cobra / viper / python"
    assert manifest.loc["ADIGUTHG", "species"] == "bay's duiker" and manifest.loc["ADIGUTHG", "labels"] == "Walking"
    assert manifest.loc["TWOVIPER", "species"] == "russell's viper;green iguana"
    assert manifest.loc["TWOVIPER", "domain"] == "snake / cobra / viper / python"  # the first pair's group
    assert manifest.loc["KDIANBXG", "label_ids"] == "68;52;133"
    assert manifest.loc["KDIANBXG", "species_group"] == "" and manifest.loc["KDIANBXG", "domain"] == ""
    assert manifest.loc["QUAILAAA", "species_group"] == "bird"  # alias
    assert manifest.loc["CUCKOOAA", "species_group"] == "bird"  # alias
    assert manifest.loc["MACAQUEA", "labels"] == "Yawning"
    assert manifest.loc["MACAQUEA", "label_ids"] == "139"
    assert manifest.loc["GOLDFISH", "labels"] == "Swimming"  # from `labels`, not the names
    assert manifest.loc["MIXEDAAA", "species_group"] == "snake / cobra / viper / python;water bird / duck / swan / goose"
    assert manifest.loc["AABKMGHE", "path"] == str((videos / "AABKMGHE.mp4").resolve())
    classes = class_names(manifest.reset_index())  # the Action sheet's 140, whichever ids the clips use
    assert len(classes) == 140 and classes[63] == "Hanging" and classes[139] == "Yawning" and classes[0] == "Action 0 (& more)"


def test_animal_kingdom_class_list_survives_a_subset(animal_kingdom, tmp_path):
    metadata, videos = animal_kingdom
    for row in AK_ROWS[1:]:
        (videos / f"{row[1]}.mp4").unlink()
    manifest = read_animal_kingdom(metadata, videos, allow_missing=True)
    assert manifest.video_id.tolist() == ["AAACXZTV"]
    write_manifest(manifest, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert (tmp_path / "m.classes.csv").read_text().splitlines()[:3] == ["label_id,label", "0,Action 0 (& more)", "1,Action 1 (& more)"]
    assert class_names(back) == class_names(manifest) and len(class_names(back)) == 140
    assert multi_hot(back.labels, class_names(back)).shape == (1, 140)
    assert np.flatnonzero(multi_hot(back.labels, class_names(back))[0]).tolist() == [2, 40]


def test_animal_kingdom_protocols(animal_kingdom):
    manifest = read_animal_kingdom(*animal_kingdom)
    full = assign_roles(manifest, ProtocolSettings(name="ak_full"))  # default: the whole training side
    assert full.value_counts().to_dict() == {"train": 11, "test": 8}
    full = assign_roles(manifest, ProtocolSettings(name="ak_full", val_fraction=2 / 11))
    assert (full == "test").sum() == 8 and (full == "val").sum() == 2 and (full == "train").sum() == 9
    assert set(manifest.video_id[full == "test"]) == {"QUAILAAA", "IGUANAAA", "MACAQUEA", "TIGERAAA", "GOLDFISH",
                                                      "TWOVIPER", "SPIDERAA", "PRIMATEA"}

    unseen = ProtocolSettings(name="ak_unseen_species")
    roles = assign_roles(manifest, unseen).set_axis(manifest.video_id)
    # The first pair's species decides: MIXEDAAA (snake, then duck) and TWOVIPER (viper, then iguana)
    # train; KEEPSTIL (duck, then snake) tests. The official type is ignored.
    assert sorted(roles.index[roles == "train"]) == ["AABKMGHE", "ABKBWVMW", "CUCKOOAA", "FROGAAAA", "GOLDFISH",
                                                     "MIXEDAAA", "QUAILAAA", "TWOVIPER"]
    assert sorted(roles.index[roles == "test"]) == ["CRICKETA", "DUCKAAAA", "IGUANAAA", "KEEPSTIL", "PRIMATEA", "SPIDERAA"]
    assert not (roles == "val").any()
    assert unseen.headline_metric == "top1_accuracy" and not unseen.spec.multilabel
    targets = multi_hot(manifest.labels[(roles == "test").to_numpy()], class_names(manifest))
    assert targets.shape == (6, 140) and targets.sum() == 6 and targets[:, 123].sum() == 2
    assert targets[:, [2, 40, 68, 102]].sum(axis=0).tolist() == [1, 1, 1, 1]

    pair = ProtocolSettings(name="ak_species_pair", train_domains=("water bird / duck / swan / goose",),
                            test_domains=("cat / lion / tiger / cheetah / leopard / cheetah / cougar / civet cat",))
    with pytest.raises(ValueError, match="leave some test"):  # the tiger's Moving clip is in neither group's six
        assign_roles(manifest.assign(label_ids=manifest.label_ids.replace("78", "133")), pair)
    pair = ProtocolSettings(name="ak_species_pair", train_domains=("snake / cobra / viper / python",),
                            test_domains=("bird",), val_fraction=0.5)
    roles = assign_roles(manifest, pair).set_axis(manifest.video_id)
    assert sorted(roles.index[roles == "test"]) == ["CUCKOOAA", "QUAILAAA"]
    assert sorted(roles.index[roles.isin(["train", "val"])]) == ["AABKMGHE", "ABKBWVMW", "MIXEDAAA", "TWOVIPER"]
    # stratified by class: Moving (AABKMGHE, MIXEDAAA) gives one, Keeping still / Attending one more
    assert (roles == "val").sum() == 2 and sorted(roles.index[roles == "val"]) != ["ABKBWVMW", "TWOVIPER"]
    assert len({"AABKMGHE", "MIXEDAAA"} & set(roles.index[roles == "val"])) == 1
    diagonal = manifest.copy()  # one group with itself: its clips split by the official type
    roles = assign_roles(diagonal, ProtocolSettings(name="ak_species_pair", train_domains=("bird",),
                                                    test_domains=("bird",))).set_axis(manifest.video_id)
    assert roles[roles != ""].sort_index().to_dict() == {"CUCKOOAA": "train", "GOLDFISH": "test", "QUAILAAA": "test"} or \
        roles[roles != ""].sort_index().to_dict() == {"CUCKOOAA": "train", "QUAILAAA": "test"}
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
    good = write_ak_metadata(tmp_path / "good" / "AR_metadata.xlsx", AK_ROWS[:3])
    touch([tmp_path / "some" / "AAACXZTV.mp4"])
    with pytest.raises(ManifestError, match=r"2 are missing, e.g. \['AABKMGHE', 'ABKBWVMW'\]"):
        read_animal_kingdom(good, tmp_path / "some")
    with pytest.raises(ManifestError, match=r"all 3 are missing .*--annotations-only"):
        read_animal_kingdom(good, tmp_path / "none", allow_missing=True)
    assert len(read_animal_kingdom(good, tmp_path / "none", check_videos=False)) == 3
    assert "BADLABEL" in str(error.value) and metadata.is_file()


def test_animal_kingdom_wrong_files_are_named(tmp_path: Path, capsys):
    """A truncated download, a CSV, and df_action.xlsx (sheet AR_count) each exit 2 naming the file."""
    good = write_ak_metadata(tmp_path / "AR_metadata.xlsx").read_bytes()
    (tmp_path / "truncated.xlsx").write_bytes(good[: len(good) // 2])
    (tmp_path / "AR_metadata.csv").write_text("S/N,video_id,type,labels,list_animal_action\n1,AAACXZTV,train,2,[]\n")
    book = Workbook()
    book.active.title = "AR_count"
    book.active.append(["S/N", "action_category", "action", "index", "segment", "count"])
    book.save(tmp_path / "df_action.xlsx")
    expected = {
        "truncated.xlsx": "cannot be read as one (BadZipFile",
        "AR_metadata.csv": "cannot be read as one (BadZipFile",
        "df_action.xlsx": "has the sheets ['AR_count'] (that is `annotation/df_action.xlsx`",
        "absent.xlsx": "but it does not exist",
    }
    for name, message in expected.items():
        path = tmp_path / name
        with pytest.raises(ManifestError) as error:
            read_animal_kingdom(path, tmp_path, check_videos=False)
        assert f"Expected `{path}` to be Animal Kingdom's AR_metadata.xlsx" in str(error.value)
        assert message in str(error.value)
        assert main(["manifest", "animal_kingdom", "--annotations", str(path), "--annotations-only", "--summary"]) == 2


def test_animal_kingdom_allow_missing_lists_dropped(animal_kingdom):
    metadata, videos = animal_kingdom
    (videos / "TIGERAAA.mp4").unlink()
    manifest = read_animal_kingdom(metadata, videos, allow_missing=True)
    assert len(manifest) == 18 and "TIGERAAA" not in set(manifest.video_id)
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
    classes = class_names(manifest.reset_index())  # the classes file's 157, whichever the rows use
    assert len(classes) == 157 and classes[6] == "Opening a door" and classes[5] == "Doing thing 5 with something/somewhere"
    targets = multi_hot(manifest.labels, classes)
    assert targets.shape == (6, 157) and targets.sum(axis=1).tolist() == [2, 1, 1, 0, 1, 2]
    assert np.flatnonzero(targets[0]).tolist() == [6, 92]


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


def test_charades_3rd_1st_names_the_missing_third_person_file(tmp_path: Path):
    from actiondiff.plan import annotation_warnings, parse_experiments

    folder = tmp_path / "CharadesEgo"
    write_charades(folder)
    (folder / "CharadesEgo_v1_train.csv").unlink()
    first = [r for r in CHARADES_TRAIN if r.split(",")[0].endswith("EGO")]
    (folder / "CharadesEgo_v1_train_only1st.csv").write_bytes("\r\n".join([CHARADES_HEADER, *first, ""]).encode())
    manifest = read_charades_ego(folder, tmp_path, check_videos=False)
    assert assign_roles(manifest, ProtocolSettings(name="charades_1st_1st")).value_counts().to_dict() == {"train": 2, "test": 1, "": 1}
    with pytest.raises(ValueError, match=r"leaves none: it needs train rows of view 3rd: `CharadesEgo_v1_train_only3rd.csv` "
                                         r"\(or the combined `CharadesEgo_v1_train.csv`\)"):
        assign_roles(manifest, ProtocolSettings(name="charades_3rd_1st"))
    config = {"experiments": {"first_first": {"protocol": {"name": "charades_1st_1st"}},
                              "third_first": {"protocol": {"name": "charades_3rd_1st"}}}}
    warnings = annotation_warnings({"adapter": "charades_ego", "annotations": str(folder)}, parse_experiments(config))
    assert warnings == [
        f"experiment 'third_first' (charades_3rd_1st) needs the train rows of view 3rd, but neither "
        f"CharadesEgo_v1_train_only3rd.csv nor CharadesEgo_v1_train.csv is in {folder}: its jobs will fail."
    ]


def test_stratified_validation_draw_keeps_each_class_share():
    from actiondiff.learn.protocols import stratified_draw

    labels = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["a;c"] * 5, index=range(100, 200))
    chosen = stratified_draw(labels, 0.2, seed=0)
    assert len(chosen) == 20 and set(chosen) <= set(labels.index)
    assert labels[chosen].value_counts().to_dict() == {"a": 10, "b": 6, "c": 3, "a;c": 1}  # a;c's rarest class is c
    assert stratified_draw(labels, 0.2, seed=0).equals(chosen) and not stratified_draw(labels, 0.2, seed=1).equals(chosen)
    odd = stratified_draw(pd.Series(["a"] * 3 + ["b"] * 3 + [""] * 1), 0.5, seed=0)
    assert len(odd) == 4  # round(3.5): largest remainders, ties to the first strata


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

# The 51 published HMDB51 class names (sorted class names, not sorted file names, give the ids).
HMDB_CLASSES = [
    "brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "climb_stairs", "dive", "draw_sword", "dribble",
    "drink", "eat", "fall_floor", "fencing", "flic_flac", "golf", "handstand", "hit", "hug", "jump", "kick",
    "kick_ball", "kiss", "laugh", "pick", "pour", "pullup", "punch", "push", "pushup", "ride_bike", "ride_horse",
    "run", "shake_hands", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "situp", "smile", "smoke", "somersault",
    "stand", "swing_baseball", "sword", "sword_exercise", "talk", "throw", "turn", "walk", "wave",
]
UCF_CLASSES = sorted([*UCF_TO_SHARED, "HandstandPushups", *(f"Other{i:02d}" for i in range(85))])
# Published UCF101 split sizes (trainlist0N / testlist0N lines) and those of the 15 UCF-HMDB classes.
UCF_SPLITS = {1: (9537, 3783, 1438, 571), 2: (9586, 3734, 1457, 552), 3: (9624, 3696, 1453, 556)}


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def write_ucf_lists(folder: Path, videos: Path, splits=(1, 2, 3)) -> None:
    """classInd + split lists of the published sizes (UCF_SPLITS), CRLF; HandstandPushups files
    spelled HandStand. Video files are touched for split 1's UCF-HMDB classes only."""
    folder.mkdir(parents=True)
    (folder / "classInd.txt").write_bytes("".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)).encode())
    mapped = [c for c in UCF_CLASSES if c in UCF_TO_SHARED]
    others = [c for c in UCF_CLASSES if c not in UCF_TO_SHARED]
    for split in splits:
        total_train, total_test, train_15, test_15 = UCF_SPLITS[split]
        counts = {}
        for classes, train, test in ((mapped, train_15, test_15), (others, total_train - train_15, total_test - test_15)):
            counts.update(zip(classes, zip(_spread(train, len(classes)), _spread(test, len(classes)), strict=True), strict=True))
        first_test_group = 1 + 7 * (split - 1)  # split 1 tests groups 1-7, split 2 8-14, split 3 15-21
        train_lines, test_lines = [], []
        for number, name in enumerate(UCF_CLASSES, 1):
            stem = "HandStandPushups" if name == "HandstandPushups" else name
            train, test = counts[name]
            test_lines += [f"{name}/v_{stem}_g{first_test_group + k // 7:02d}_c{k % 7 + 1:02d}.avi" for k in range(test)]
            train_groups = [g for g in range(1, 26) if not first_test_group <= g < first_test_group + 7]
            train_lines += [f"{name}/v_{stem}_g{train_groups[k // 7]:02d}_c{k % 7 + 1:02d}.avi {number}" for k in range(train)]
        (folder / f"trainlist0{split}.txt").write_bytes(("\r\n".join(train_lines) + "\r\n").encode())
        (folder / f"testlist0{split}.txt").write_bytes(("\r\n".join(test_lines) + "\r\n").encode())
        if split == 1:
            # Video files only for the classes the tests read with files present (creating all
            # 13,320 is slow on a busy disk); the others are counted through --allow-missing.
            kept = (*UCF_TO_SHARED, "HandstandPushups")
            touch(videos / line.split()[0] for line in train_lines + test_lines if line.split("/")[0] in kept)


def hmdb_name(class_name: str, k: int) -> str:
    if class_name == "kick_ball" and k == 0:
        return "Goal_1_&_2_(Rivaldo)_[HD]!_#1+_kick_ball_f_cm_np1_ri_med_0.avi"
    if class_name == "cartwheel" and k == 1:  # `;` `~` `@` occur in the published names too
        return "Geena_und_die_Radschl_ge___;-)_jenny_~_@_cartwheel_f_cm_np1_fr_med_2.avi"
    return f"{class_name}_clip_{k:03d}_f_cm_np1_fr_med_0.avi"


def write_hmdb_splits(folder: Path, videos: Path) -> None:
    """51 `<class>_test_split{1,2,3}.txt` (70 train, 30 test, 8 unused each, as published: 70 / 30
    per class in every split; LF, a trailing space), plus TSN's extra `class_list.txt`."""
    folder.mkdir(parents=True)
    (folder / "class_list.txt").write_text("\n".join(HMDB_CLASSES))
    for name in HMDB_CLASSES:
        codes = [1] * 70 + [2] * 30 + [0] * 8
        for split in (1, 2, 3):  # each split rotates which clips train / test
            shift = 30 * (split - 1)
            rotated = codes[-shift:] + codes[:-shift] if shift else codes
            lines = [f"{hmdb_name(name, k)} {code} \n" for k, code in enumerate(rotated)]
            (folder / f"{name}_test_split{split}.txt").write_text("".join(lines))
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


def test_hmdb51_class_ids_follow_sorted_class_names(ucf_hmdb):
    table = hmdb_split_table(ucf_hmdb["hmdb_splits"], 1)
    ids = dict(zip(table["class"], table.class_id, strict=True))
    # sorted file names would give climb_stairs 5 / climb 6, kick_ball 20 / kick 21, sword_exercise 44 / sword 45
    assert (ids["climb"], ids["climb_stairs"], ids["kick"], ids["kick_ball"], ids["sword"], ids["sword_exercise"]) == (
        5, 6, 20, 21, 44, 45)
    assert [name for name, _ in sorted(ids.items(), key=lambda item: item[1])] == HMDB_CLASSES
    manifest = read_hmdb51(ucf_hmdb["hmdb_splits"], ucf_hmdb["hmdb_videos"], check_videos=False)
    assert class_names(manifest) == HMDB_CLASSES and len(manifest) == 51 * 108
    assert manifest.set_index("video_id").loc["Geena_und_die_Radschl_ge___;-)_jenny_~_@_cartwheel_f_cm_np1_fr_med_2",
                                              "label_ids"] == "1"


@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf_hmdb_honours_the_split_number(ucf_hmdb, split):
    manifest = read_ucf_hmdb(**ucf_hmdb, split_number=split, check_videos=False)
    counts = manifest.groupby(["source", "split"]).size().to_dict()
    _, _, ucf_train, ucf_val = UCF_SPLITS[split]
    assert counts == {("hmdb51", "train"): 840, ("hmdb51", "val"): 360, ("ucf101", "train"): ucf_train, ("ucf101", "val"): ucf_val}
    first = read_ucf_hmdb(**ucf_hmdb, split_number=1, check_videos=False).set_index("video_id").split
    ours = manifest.set_index("video_id").split
    moved = (first.reindex(ours.index) != ours).sum()
    assert (moved == 0) == (split == 1)
    table = ucf_split_table(ucf_hmdb["ucf_lists"], split)
    assert table.split.value_counts().to_dict() == {"train": UCF_SPLITS[split][0], "test": UCF_SPLITS[split][1]}


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


def _copy_lists(ucf_hmdb, tmp_path: Path) -> dict[str, Path]:
    """Copies of the published-layout UCF and HMDB lists (not the videos), to damage."""
    import shutil

    paths = {key: tmp_path / path.name for key, path in ucf_hmdb.items() if key.endswith(("_lists", "_splits"))}
    for key, path in paths.items():
        shutil.copytree(ucf_hmdb[key], path)
    return paths


def test_a_missing_hmdb51_split_file_is_an_error_not_shifted_ids(ucf_hmdb, tmp_path: Path, caplog):
    lists = _copy_lists(ucf_hmdb, tmp_path)
    (lists["hmdb_splits"] / "brush_hair_test_split1.txt").unlink()  # split 2 and 3 files of the class remain
    argv = ["manifest", "hmdb51", "--annotations", str(lists["hmdb_splits"]), "--annotations-only", "--out", str(tmp_path / "m.csv")]
    assert main(argv) == 2 and not (tmp_path / "m.csv").exists()
    assert "51 HMDB51 classes" in caplog.text and "1 are missing: ['brush_hair_test_split1.txt']" in caplog.text
    assert read_hmdb51(lists["hmdb_splits"], "v", split_number=2, check_videos=False).label_ids.map(int).max() == 50
    with pytest.raises(ManifestError, match=r"1 are missing: \['brush_hair_test_split1.txt'\]"):
        read_ucf_hmdb(**lists, ucf_videos="u", hmdb_videos="h", check_videos=False)
    (lists["hmdb_splits"] / "brush_hair_test_split1.txt").write_text("")  # present but empty
    with pytest.raises(ManifestError, match=r"HMDB51 split file .*brush_hair_test_split1.txt' to list at least one line, but it is empty"):
        read_hmdb51(lists["hmdb_splits"], "v", check_videos=False)
    (lists["hmdb_splits"] / "brush_hair_test_split1.txt").write_text("a.avi 1 \n")
    (lists["hmdb_splits"] / "brushhair_test_split1.txt").write_text("b.avi 1 \n")
    with pytest.raises(ManifestError, match=r"\['brushhair_test_split1.txt'\] are of no HMDB51 class"):
        read_hmdb51(lists["hmdb_splits"], "v", check_videos=False)


@pytest.mark.parametrize("name, damage, expected", [
    ("trainlist01.txt", "empty", r"UCF101 training list .*trainlist01.txt' to list at least one line, but it is empty"),
    ("trainlist01.txt", "blank", r"trainlist01.txt' to list at least one line, but it is empty"),
    ("testlist01.txt", "delete", r"UCF101 test list .* at '.*testlist01.txt', but it is absent"),
    ("classInd.txt", "empty", r"UCF101 class list .*classInd.txt' to list at least one line"),
])
def test_missing_or_empty_ucf_lists_are_errors(ucf_hmdb, tmp_path: Path, caplog, name, damage, expected):
    lists = _copy_lists(ucf_hmdb, tmp_path)
    path = lists["ucf_lists"] / name
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(b"" if damage == "empty" else b"\r\n \r\n")
    argv = ["manifest", "ucf101", "--annotations", str(lists["ucf_lists"]), "--annotations-only", "--out", str(tmp_path / "m.csv")]
    assert main(argv) == 2 and not (tmp_path / "m.csv").exists()  # was: 3,783 test rows, no training row, exit 0
    assert re.search(expected, caplog.text)
    with pytest.raises(ManifestError, match=expected):
        read_ucf_hmdb(**lists, ucf_videos="u", hmdb_videos="h", check_videos=False)


def test_ucf_class_numbers_must_run_in_order(tmp_path: Path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "classInd.txt").write_bytes(b"1 Archery\r\n3 Basketball\r\n3 Biking\r\n")
    with pytest.raises(ManifestError, match=r"line 2: '3 Basketball' is not class number 2"):
        read_ucf101(folder, tmp_path, check_videos=False)


@pytest.mark.parametrize("damage, expected", [
    ("no classes file", r"Charades class list .* at '.*Charades_v1_classes.txt', but it is absent"),
    ("empty classes file", r"Charades_v1_classes.txt' to list at least one line, but it is empty"),
    ("156 classes", r"c000..c156 \(each once: the 157 Charades classes\), but got 156 codes"),
    ("empty csv", r"Charades-Ego annotation CSV '.*CharadesEgo_v1_test.csv' to be a table separated by commas, but the file is empty"),
    ("header only", r"CharadesEgo_v1_test.csv' to have at least one row below its header, but it has none"),
    ("semicolons", r"CharadesEgo_v1_train.csv' to be separated by commas, but its header 'id;subject;.* is separated by semicolons"),
    ("no id column", r"to have the columns \['id', 'actions', 'egocentric'\], but \['id'\] are absent"),
    ("no test file", r"has no test file \(only \['CharadesEgo_v1_train.csv'\]\)"),
])
def test_charades_ego_missing_or_empty_files_are_named(tmp_path: Path, damage, expected):
    folder = write_charades(tmp_path / "CharadesEgo")
    classes, train, test = (folder / "Charades_v1_classes.txt", folder / "CharadesEgo_v1_train.csv",
                            folder / "CharadesEgo_v1_test.csv")
    if damage == "no classes file":
        classes.unlink()
    elif damage == "empty classes file":
        classes.write_text("")
    elif damage == "156 classes":
        classes.write_text("\n".join(classes.read_text().splitlines()[:156]))
    elif damage == "empty csv":
        test.write_bytes(b"")
    elif damage == "header only":
        test.write_bytes((CHARADES_HEADER + "\r\n").encode())
    elif damage == "semicolons":  # a spreadsheet's ;-export: cells with commas are quoted, so pandas splits nothing
        train.write_bytes("\r\n".join([CHARADES_HEADER.replace(",", ";"), '8U2AR;KFGP;Living room;6;6;Yes;"Shoes, a laptop.";;{};;24.29;No;', ""]).encode())
    elif damage == "no id column":
        train.write_bytes(train.read_bytes().replace(b"id,subject", b"video,subject", 1))
    else:
        test.unlink()
        (folder / "CharadesEgo_v1_test_only1st.csv").unlink()
    with pytest.raises(ManifestError, match=expected):
        read_charades_ego(folder, tmp_path, check_videos=False)


@pytest.mark.parametrize("name, text, expected", [
    ("t.csv", "", r"label table '.*t.csv' to be a table separated by commas, but the file is empty"),
    ("t.csv", "video,label,domain,split\r\n", r"t.csv' to have at least one row below its header, but it has none"),
    ("t.csv", "video;label;domain;split\na.mp4;walk;x;\n", r"t.csv' to be separated by commas, but its header .* is separated by semicolons"),
    ("t.csv", "video\tlabel\tdomain\tsplit\na.mp4\twalk\tx\t\n", r"separated by tabs\. Save the table with commas \(or name it \.tsv"),
    ("t.tsv", "video,label,domain,split\na.mp4,walk,x,\n", r"t.tsv' to be separated by tabs, but its header .* is separated by commas"),
    ("t.csv", 'video,label\na.mp4,"walk\nb.mp4,run\n', r"t.csv' to be a table separated by commas, but it cannot be read as one \(Error tokenizing"),
    ("none.csv", None, r"label table at '.*none.csv', but it is absent"),
])
def test_custom_table_errors_name_the_file(tmp_path: Path, caplog, name, text, expected):
    touch([tmp_path / "v" / "a.mp4"])
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError, match=expected):
        read_custom(tmp_path / name, tmp_path / "v", CustomColumns())
    argv = ["manifest", "custom", "--annotations", str(tmp_path / name), "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "m.csv")]
    assert main(argv) == 2 and re.search(expected, caplog.text) and "pandas" not in caplog.text


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


def test_manifest_paths_keep_the_configured_symlinks(tmp_path: Path):
    # the failure table and the manifest name the path the user configured, not the link target
    touch([tmp_path / "disk" / "walk" / "w1.mp4"])
    (tmp_path / "videos").symlink_to(tmp_path / "disk")
    (tmp_path / "t.csv").write_text("video,label,domain,split\nwalk/w1.mp4,walk,a,train\n")
    for manifest in (read_folders(tmp_path / "videos", "label"), read_custom(tmp_path / "t.csv", tmp_path / "videos", CustomColumns())):
        assert manifest.path.tolist() == [str(tmp_path / "videos" / "walk" / "w1.mp4")]


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
    printed = capsys.readouterr().out
    assert len(dropped) == 1200 and f"dropped 1200 rows whose video file is missing (listed in {missing})" in printed
    assert "Goal_1" not in printed and len(printed.splitlines()) == 2  # one line each: written, dropped
    assert main([*argv, "--split-number", "2", "--annotations-only", "--summary", str(tmp_path / "summary.txt")]) == 0
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.startswith(f"{ucf_hmdb['ucf_lists']} + {ucf_hmdb['hmdb_splits']}: 3209 videos, 12 classes (0 without a video)")
    per_domain = {line.split()[0]: line.split()[1:] for line in summary.splitlines() if line.startswith(("hmdb51 ", "ucf101 "))}
    assert per_domain == {"hmdb51": ["840", "360", "1200"], "ucf101": ["1457", "552", "2009"]}
    assert main(["manifest", "ucf_hmdb", "--annotations", str(ucf_hmdb["ucf_lists"]), "--videos", "x", "y", "--out", str(out)]) == 2


def test_manifest_round_trip_keeps_ids_and_empty_labels(charades, tmp_path: Path):
    manifest = read_charades_ego(*charades)
    write_manifest(manifest, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert back.equals(manifest[back.columns].astype(str))
    assert class_names(back) == class_names(manifest) and len(class_names(back)) == 157
    assert [class_names(back)[i] for i in (6, 92, 147)] == ["Opening a door", "Holding a laptop", "Taking/consuming some medicine"]
    assert not multi_hot(back.labels, class_names(back))[3].any()


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
    assert len(info["classes"]) == 157 and info["classes"][92] == "Holding a laptop"
    assert info["epoch_selection"] == "best_val" and info["selected_epoch"] == 1
    out = tmp_path / "evaluation.json"
    assert main(["evaluate", *common, "--models", str(tmp_path / "models" / "seed0.safetensors"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_test_videos"] == 1 and result["classes"] == info["classes"]
    assert "micro_ap on 1 test videos" in capsys.readouterr().out
    assert result["protocol"]["name"] == "charades_3rd_1st" and result["protocol"]["headline_metric"] == "micro_ap"
    assert result["protocol"]["metrics"] == ["micro_ap", "macro_ap_present"]
