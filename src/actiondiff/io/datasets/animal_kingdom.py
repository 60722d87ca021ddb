"""Animal Kingdom (action recognition track): `AR_metadata.xlsx` -> the canonical manifest.

Sheets read by name: `AR` (one row per clip: video_id, type, labels, list_animal_action),
`Action` (Label -> action name) and `Animal` (species -> Sub-Class, the species group of the
cross-species protocols). Quirks of the published file (sutdcv/Animal-Kingdom @ 23320fb3,
`Animal_Kingdom/action_recognition/AR_metadata.xlsx`; reference/DATASETS.md) handled: integer
Labels (text `63` or float `63.0` accepted too), the `Yawning` row's Label is the error formula
`=#N/A` (pandas reads NaN; it takes id 139, the one id left), `labels` stored as text,
double-encoded `list_animal_action` cells (a list of one or SEVERAL strings, each the text of a
list of pairs: parsed again and concatenated), the empty list `[]`, species in any case, the two
species aliases. Label ids come from `labels`, never from the names in `list_animal_action`; the
class list is the `Action` sheet's 140 names, whichever ids the clips use.
"""

from __future__ import annotations

import ast
import math
import zipfile
from pathlib import Path

import pandas as pd
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from actiondiff.io.manifest import (
    CLASSES_ATTR,
    ManifestError,
    absolute_path,
    join_labels,
    raise_problems,
    validate,
)

METADATA_FILE = "AR_metadata.xlsx"
SHEETS = ("AR", "Action", "Animal")
NUM_ACTIONS = 140
SPECIES_ALIASES = {"common quail": "common quail bird", "cuckoo bird": "common cuckoo bird"}

# The unseen-species protocol of the Animal Kingdom paper, as the ActionDiff authors ran it.
UNSEEN_TRAIN_GROUPS = ("bird", "fish", "frog / toad", "snake / cobra / viper / python")
UNSEEN_TEST_GROUPS = (
    "lizard / gecko / draco / iguana / chamelon",
    "primate / monkey / macaque / baboon / chimpanzee / gorilla / orangutan / langur",
    "spider / tarantula",
    "cricket / grasshopper / praying mantis / leafhopper",
    "water bird / duck / swan / goose",
)
# moving, eating, attending, swimming, sensing, keeping still
UNSEEN_ACTIONS = (78, 40, 2, 123, 102, 68)


def _key(text: str) -> str:
    """Species / group names compare lower-cased with single spaces (`Russell'S Viper`)."""
    return " ".join(str(text).split()).lower()


# What an error cell (`=#N/A`, as the published Yawning Label) or an empty cell reads as.
_NO_LABEL = ("", "#N/A", "=#N/A", "nan")


def _no_label(label: object) -> bool:
    """True for an empty Label cell or an error cell (pandas reads `=#N/A` as a float NaN)."""
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return True
    return str(label).strip().upper() in {v.upper() for v in _NO_LABEL}


def _integer(text: str) -> int:
    """`63`, `63.0` or ` 63 ` -> 63; ValueError for anything else."""
    value = float(str(text).strip())
    if not value.is_integer():
        raise ValueError(f"not an integer: {text!r}")
    return int(value)


def read_action_names(sheet: pd.DataFrame, source: str) -> dict[int, str]:
    """Sheet `Action` -> {action id: name}; one empty or `#N/A` Label takes the one id left
    (Yawning, 139, in the published file).

    Raises:
        ManifestError: absent columns, unreadable or repeated ids, more than one empty Label.
    """
    _require_columns(sheet, ("Label", "Action"), f"{source} sheet `Action`")
    names: dict[int, str] = {}
    unnumbered, problems = [], []
    for row, (label, name) in enumerate(zip(sheet["Label"], sheet["Action"], strict=True), start=2):
        name = " ".join(str(name).split())
        if not name:
            continue
        if _no_label(label):
            unnumbered.append(name)
            continue
        try:
            number = _integer(label)
        except ValueError:
            problems.append(f"sheet `Action` row {row} ({name}): Label {label!r} is not an integer")
            continue
        if number in names:
            problems.append(f"sheet `Action` row {row} ({name}): Label {number} repeats ({names[number]})")
        names[number] = name
    left = sorted(set(range(max(NUM_ACTIONS, len(names) + len(unnumbered)))) - set(names))
    if len(unnumbered) > 1 or len(unnumbered) != len(left):
        problems.append(f"sheet `Action`: rows without Label {unnumbered} cannot take the ids left {left[:10]}")
    elif unnumbered:
        names[left[0]] = unnumbered[0]
    raise_problems(problems, source)
    return names


def read_species_groups(sheet: pd.DataFrame, source: str) -> dict[str, str]:
    """Sheet `Animal` -> {species (lower-cased): Sub-Class (lower-cased)}, aliases added.

    Raises:
        ManifestError: absent columns, or one species listed under two Sub-Classes.
    """
    _require_columns(sheet, ("Animal", "Sub-Class"), f"{source} sheet `Animal`")
    groups: dict[str, str] = {}
    problems = []
    for row, (animal, group) in enumerate(zip(sheet["Animal"], sheet["Sub-Class"], strict=True), start=2):
        animal, group = _key(animal), _key(group)
        if not animal:
            continue
        if groups.setdefault(animal, group) != group:
            problems.append(f"sheet `Animal` row {row}: {animal!r} is in Sub-Class {groups[animal]!r} and {group!r}")
    raise_problems(problems, source)
    for alias, species in SPECIES_ALIASES.items():
        if species in groups:
            groups.setdefault(alias, groups[species])
    return groups


def parse_animal_actions(text: str) -> list[tuple[str, str]]:
    """A `list_animal_action` cell -> [(species, action), ...]; double-encoded cells too.

    `"[('Snake', 'Moving')]"` parses as is. A double-encoded cell is a list of strings, each the
    text of a list of pairs (411 rows of the published file, those naming an `X'S` species: 277
    hold one string, 134 hold 2 to 10); each string is parsed and the lists concatenated in
    order. `[]` gives [].

    Raises:
        ValueError: the cell is not a list of (species, action) pairs.
    """
    try:
        value = ast.literal_eval(str(text).strip())
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            # double-encoded: [string of a list, string of a list, ...] -> one list
            value = [pair for part in value for pair in _literal_list(part)]
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"not a list of (species, action) pairs: {text!r}") from error
    if not isinstance(value, list) or not all(
        isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(v, str) for v in pair) for pair in value
    ):
        raise ValueError(f"not a list of (species, action) pairs: {text!r}")
    return [(species, action) for species, action in value]


def _literal_list(text: str) -> list:
    value = ast.literal_eval(text)
    if not isinstance(value, list):
        raise ValueError(f"not a list: {text!r}")
    return value


def read_sheets(path: Path) -> dict[str, pd.DataFrame]:
    """The sheets `AR`, `Action`, `Animal` of `AR_metadata.xlsx`, every cell as text (an
    error cell as NaN), headers stripped.

    Raises:
        ManifestError: the file is missing, not an xlsx workbook (a CSV, a truncated download),
            or lacks a sheet (e.g. `annotation/df_action.xlsx`, sheet `AR_count`, given instead).
    """
    expected = f"Expected `{path}` to be Animal Kingdom's {METADATA_FILE} (an xlsx workbook with sheets {list(SHEETS)})"
    if not path.is_file():
        raise ManifestError(f"{expected}, but it does not exist. Point --annotations at the file or its folder.")
    try:
        with path.open("rb") as handle:  # names the sheets without reading the cells
            workbook = load_workbook(handle, read_only=True)
            sheet_names = list(workbook.sheetnames)
            workbook.close()
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError) as error:
        raise ManifestError(
            f"{expected}, but it cannot be read as one ({type(error).__name__}: {error}). A truncated download or "
            f"a CSV export gives this: download the release's {METADATA_FILE} again."
        ) from error
    absent = [name for name in SHEETS if name not in sheet_names]
    if absent:
        hint = " (that is `annotation/df_action.xlsx`, the action counts)" if "AR_count" in sheet_names else ""
        raise ManifestError(f"{expected}, but it has the sheets {sheet_names}{hint}: {absent} are absent.")
    sheets = pd.read_excel(path, sheet_name=list(SHEETS), dtype=str, keep_default_na=False)
    for sheet in sheets.values():
        sheet.columns = [str(c).strip() for c in sheet.columns]
    return sheets


def read_animal_kingdom(
    annotations: str | Path, videos_dir: str | Path, allow_missing: bool = False, check_videos: bool = True
) -> pd.DataFrame:
    """`AR_metadata.xlsx` (or the folder holding it) + `video/` -> the canonical manifest.

    Columns: video_id, path (`<videos_dir>/<video_id>.mp4`), labels (action names),
    label_ids (0-139), domain (the species group of the clip's first (species, action) pair,
    the group the unseen-species protocol uses), split (the `type` column: train / test),
    species and species_group (`;`-joined, lower-cased, in order of first mention). The class
    list (`attrs["classes"]`) is the 140 names of sheet `Action` in id order.

    Raises:
        ManifestError: an unreadable workbook; naming every unreadable row (bad type, labels or
            list_animal_action), unknown label id and unknown species; missing videos unless
            `allow_missing` (or `check_videos=False`: annotations only, no file is looked at).
    """
    path = Path(annotations)
    if path.is_dir():
        path = path / METADATA_FILE
    source = str(path)
    sheets = read_sheets(path)
    actions = read_action_names(sheets["Action"], source)
    groups = read_species_groups(sheets["Animal"], source)
    clips = sheets["AR"]
    _require_columns(clips, ("video_id", "type", "labels", "list_animal_action"), f"{source} sheet `AR`")

    rows, problems, unknown_species = [], [], {}
    for row, clip in enumerate(clips.itertuples(index=False), start=2):
        video_id, split = str(clip.video_id).strip(), str(clip.type).strip().lower()
        where = f"sheet `AR` row {row} ({video_id or 'no video_id'})"
        if not video_id:
            problems.append(f"{where}: empty video_id")
            continue
        if split not in ("train", "test"):
            problems.append(f"{where}: type {clip.type!r} is not train or test")
            continue
        try:
            ids = list(dict.fromkeys(_integer(part) for part in str(clip.labels).split(",") if part.strip()))
        except ValueError:
            problems.append(f"{where}: labels {clip.labels!r} are not comma-joined integers")
            continue
        unknown = [i for i in ids if i not in actions]
        if not ids or unknown:
            problems.append(f"{where}: labels {clip.labels!r} " + (f"hold unknown ids {unknown}" if ids else "are empty"))
            continue
        try:
            pairs = parse_animal_actions(clip.list_animal_action)
        except ValueError:
            problems.append(f"{where}: list_animal_action {clip.list_animal_action!r} is not a list of (species, action)")
            continue
        species = list(dict.fromkeys(_key(s) for s, _ in pairs if _key(s)))
        for name in species:
            if name not in groups:
                unknown_species.setdefault(name, video_id)
        clip_groups = list(dict.fromkeys(groups.get(name, "") for name in species))
        rows.append(
            {
                "video_id": video_id,
                "path": absolute_path(Path(videos_dir) / f"{video_id}.mp4"),
                "labels": join_labels([actions[i] for i in ids]),
                "label_ids": join_labels(ids),
                "domain": clip_groups[0] if clip_groups else "",
                "split": split,
                "dataset": "animal_kingdom",
                "species": join_labels(species),
                "species_group": join_labels(clip_groups),
            }
        )
    problems += [
        f"species {name!r} (first in {video_id}) is not in sheet `Animal` (nor an alias {sorted(SPECIES_ALIASES)})"
        for name, video_id in sorted(unknown_species.items())
    ]
    raise_problems(problems, source)
    manifest = validate(pd.DataFrame(rows), source, allow_missing, check_videos=check_videos)
    manifest.attrs[CLASSES_ATTR] = [actions[i] for i in sorted(actions)]
    return manifest


def _require_columns(table: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise_problems([f"column {c!r} is absent (columns: {list(table.columns)})" for c in absent], where, "columns")
