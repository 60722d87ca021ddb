"""The adapters and protocols on the published annotation files themselves (opt-in).

The files are not committed (Animal Kingdom's has no licence); point
`ACTIONDIFF_REAL_ANNOTATIONS` at a folder holding copies, laid out as
  ak/AR_metadata.xlsx       sutdcv/Animal-Kingdom @ 23320fb38a9e4b81adc7dd3f4b19fa32ca69d683,
                            Animal_Kingdom/action_recognition/AR_metadata.xlsx
  ak/df_action.xlsx         same commit, Animal_Kingdom/action_recognition/annotation/df_action.xlsx
  ucf/                      yjxiong/temporal-segment-networks @ 2c5e5e7c9c4f552cfde46fa90a4c0c230d857afe,
                            data/ucf101_splits/ (classInd.txt, trainlist0N.txt, testlist0N.txt)
  hmdb/                     same commit, data/hmdb51_splits/ (<class>_test_split{1,2,3}.txt)
Each test is skipped when its file is absent. The counts pinned here are those of these files;
the fixtures of tests/test_datasets.py reproduce their quirks. (The Charades-Ego v1 CSVs were
not found in any public repository, so no count of them is pinned.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from actiondiff.io.datasets import read_animal_kingdom, read_hmdb51, read_ucf101, read_ucf_hmdb
from actiondiff.io.manifest import ManifestError, class_names
from actiondiff.learn.protocols import ProtocolSettings, assign_roles, first_group

ROOT = Path(os.environ.get("ACTIONDIFF_REAL_ANNOTATIONS", "/nonexistent"))


def needs(relative: str) -> Path:
    path = ROOT / relative
    if not path.exists():
        pytest.skip(f"set ACTIONDIFF_REAL_ANNOTATIONS to a folder with {relative} (see the module docstring)")
    return path


@pytest.fixture(scope="module")
def ak_manifest():
    return read_animal_kingdom(needs("ak/AR_metadata.xlsx"), "video", check_videos=False)


def test_published_animal_kingdom_manifest(ak_manifest):
    manifest = ak_manifest
    assert len(manifest) == 30100 and manifest.split.value_counts().to_dict() == {"train": 24004, "test": 6096}
    classes = class_names(manifest)
    assert len(classes) == 140 and classes[139] == "Yawning"  # the `=#N/A` Label
    row = manifest.set_index("video_id").loc["ADIGUTHG"]  # double-encoded, two strings
    assert row.species == "bay's duiker"
    assert manifest.set_index("video_id").loc["KDIANBXG", "species_group"] == ""  # `[]`
    assert not manifest.label_ids.str.contains(r"\.").any()


def test_published_animal_kingdom_protocols(ak_manifest):
    manifest = ak_manifest
    roles = assign_roles(manifest, ProtocolSettings(name="ak_unseen_species"))
    assert roles.value_counts().to_dict() == {"": 24351, "train": 4710, "test": 1039}
    groups = first_group(manifest)[roles != ""].map(lambda g: g.split(" /")[0]).value_counts().to_dict()
    assert groups == {"bird": 2171, "snake": 1602, "frog": 537, "fish": 400, "lizard": 359, "spider": 249,
                      "cricket": 153, "primate": 141, "water bird": 137}
    assert assign_roles(manifest, ProtocolSettings(name="ak_full")).value_counts().to_dict() == {"train": 24004, "test": 6096}
    drawn = assign_roles(manifest, ProtocolSettings(name="ak_full", val_fraction=0.2))
    assert drawn.value_counts().to_dict() == {"train": 19203, "test": 6096, "val": 4801}


def test_published_df_action_is_refused_by_name():
    path = needs("ak/df_action.xlsx")
    with pytest.raises(ManifestError, match=r"has the sheets \['AR_count'\]"):
        read_animal_kingdom(path, "video", check_videos=False)


@pytest.mark.parametrize("split, ucf101, ucf_hmdb", [
    (1, (9537, 3783), (1438, 571)), (2, (9586, 3734), (1457, 552)), (3, (9624, 3696), (1453, 556)),
])
def test_published_ucf_hmdb_splits(split, ucf101, ucf_hmdb):
    ucf, hmdb = needs("ucf"), needs("hmdb")
    manifest = read_ucf101(ucf, "UCF-101", split, check_videos=False)
    assert (manifest.split.eq("train").sum(), manifest.split.eq("test").sum()) == ucf101
    assert class_names(manifest)[36] == "HandstandPushups"
    both = read_ucf_hmdb(ucf, hmdb, "UCF-101", "hmdb51", split_number=split, check_videos=False)
    counts = both.groupby(["source", "split"]).size().to_dict()
    assert counts == {("ucf101", "train"): ucf_hmdb[0], ("ucf101", "val"): ucf_hmdb[1],
                      ("hmdb51", "train"): 840, ("hmdb51", "val"): 360}
    hmdb51 = read_hmdb51(hmdb, "hmdb51", split, check_videos=False)
    assert hmdb51.split.value_counts().to_dict() == {"train": 3570, "": 1666, "test": 1530}
    classes = class_names(hmdb51)
    assert classes[5:7] == ["climb", "climb_stairs"] and classes[20:22] == ["kick", "kick_ball"]
    assert classes[44:46] == ["sword", "sword_exercise"]


def test_published_lists_with_a_file_missing_or_emptied_are_refused(tmp_path):
    import shutil

    ucf, hmdb = shutil.copytree(needs("ucf"), tmp_path / "ucf"), shutil.copytree(needs("hmdb"), tmp_path / "hmdb")
    (hmdb / "brush_hair_test_split1.txt").unlink()  # was: 50 classes, every later id one lower
    with pytest.raises(ManifestError, match=r"1 are missing: \['brush_hair_test_split1.txt'\]"):
        read_hmdb51(hmdb, "hmdb51", 1, check_videos=False)
    assert len(class_names(read_hmdb51(hmdb, "hmdb51", 2, check_videos=False))) == 51  # split 2 is whole
    (ucf / "trainlist01.txt").write_bytes(b"")  # was: 3,783 test rows and no training row
    with pytest.raises(ManifestError, match=r"trainlist01.txt' to list at least one line, but it is empty"):
        read_ucf101(ucf, "UCF-101", 1, check_videos=False)
