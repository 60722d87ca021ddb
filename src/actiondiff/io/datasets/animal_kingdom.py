"""Animal Kingdom (action recognition track): `AR_metadata.xlsx` -> the canonical manifest.

Sheets read by name: `AR` (one row per clip: video_id, type, labels, list_animal_action),
`Action` (Label -> action name) and `Animal` (species -> Sub-Class, the species group of the
cross-species protocols). Quirks handled (reference/DATASETS.md): every cell stored as text,
float labels (`63.0`) and the `Yawning` row's empty Label (id 139, the one id left), double
encoded `list_animal_action` cells (parsed twice), empty lists, species in any case, the two
species aliases. Label ids come from `labels`, never from the names in `list_animal_action`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from actiondiff.io.manifest import join_labels, raise_problems, validate

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


def _integer(text: str) -> int:
    """`63`, `63.0` or ` 63 ` -> 63; ValueError for anything else."""
    value = float(str(text).strip())
    if not value.is_integer():
        raise ValueError(f"not an integer: {text!r}")
    return int(value)


def read_action_names(sheet: pd.DataFrame, source: str) -> dict[int, str]:
    """Sheet `Action` -> {action id: name}; one empty Label takes the one id left (Yawning, 139).

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
        if not str(label).strip():
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

    `"[('Snake', 'Moving')]"` and `"['[(\"Russell\\'S Viper\", \\'Keeping still\\')]']"` (a
    one-element list holding the string of the list) both parse; `[]` gives [].

    Raises:
        ValueError: the cell is not a list of (species, action) pairs.
    """
    try:
        value = ast.literal_eval(str(text).strip())
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            value = ast.literal_eval(value[0])  # double-encoded: the string of the list
    except (ValueError, SyntaxError) as error:
        raise ValueError(f"not a list of (species, action) pairs: {text!r}") from error
    if not isinstance(value, list) or not all(
        isinstance(pair, tuple | list) and len(pair) == 2 and all(isinstance(v, str) for v in pair) for pair in value
    ):
        raise ValueError(f"not a list of (species, action) pairs: {text!r}")
    return [(species, action) for species, action in value]


def read_animal_kingdom(
    annotations: str | Path, videos_dir: str | Path, allow_missing: bool = False
) -> pd.DataFrame:
    """`AR_metadata.xlsx` (or the folder holding it) + `video/` -> the canonical manifest.

    Columns: video_id, path (`<videos_dir>/<video_id>.mp4`), labels (action names),
    label_ids (0-139), domain (= species_group), split (the `type` column: train / test),
    species and species_group (`;`-joined, lower-cased, in order of first mention).

    Raises:
        ManifestError: naming every unreadable row (bad type, labels or list_animal_action),
            unknown label id and unknown species; missing videos unless `allow_missing`.
    """
    path = Path(annotations)
    if path.is_dir():
        path = path / METADATA_FILE
    source = str(path)
    sheets = pd.read_excel(path, sheet_name=list(SHEETS), dtype=str, keep_default_na=False)
    for sheet in sheets.values():
        sheet.columns = [str(c).strip() for c in sheet.columns]
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
                "path": str((Path(videos_dir) / f"{video_id}.mp4").resolve()),
                "labels": join_labels([actions[i] for i in ids]),
                "label_ids": join_labels(ids),
                "domain": join_labels(clip_groups),
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
    return validate(pd.DataFrame(rows), source, allow_missing)


def _require_columns(table: pd.DataFrame, columns: tuple[str, ...], where: str) -> None:
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise_problems([f"column {c!r} is absent (columns: {list(table.columns)})" for c in absent], where, "columns")
