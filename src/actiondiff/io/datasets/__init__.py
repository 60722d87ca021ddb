"""Dataset adapters: each reads a dataset's annotation files as shipped -> the canonical manifest.

One module per dataset: `animal_kingdom`, `charades_ego`, `ucf_hmdb` (UCF101, HMDB51 and the
12-class UCF-HMDB benchmark) and `custom` (your own videos: a label table with configurable
column names, or one sub-folder per class). `build_manifest` dispatches by dataset name, as
`actiondiff manifest DATASET` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from actiondiff.io.datasets.animal_kingdom import read_animal_kingdom
from actiondiff.io.datasets.charades_ego import read_charades_ego
from actiondiff.io.datasets.custom import CustomColumns, read_custom, read_folders
from actiondiff.io.datasets.ucf_hmdb import read_hmdb51, read_ucf101, read_ucf_hmdb

DATASETS = ("animal_kingdom", "charades_ego", "ucf101", "hmdb51", "ucf_hmdb", "custom")

__all__ = [
    "DATASETS", "CustomColumns", "ManifestRequest", "build_manifest", "read_animal_kingdom",
    "read_charades_ego", "read_custom", "read_folders", "read_hmdb51", "read_ucf101", "read_ucf_hmdb",
]


@dataclass(frozen=True)
class ManifestRequest:
    """What `actiondiff manifest` was asked for (paths as given on the command line)."""

    dataset: str
    annotations: tuple[str, ...]
    videos: tuple[str, ...]
    columns: CustomColumns = CustomColumns()
    folder_levels: str = "label"
    split_number: int = 1
    allow_missing: bool = False
    check_videos: bool = True  # False: annotations only, no video file looked at


_ANNOTATIONS = {
    "animal_kingdom": "AR_metadata.xlsx (or its folder)",
    "charades_ego": "the folder with CharadesEgo_v1_*.csv and Charades_v1_classes.txt",
    "ucf101": "ucfTrainTestlist/",
    "hmdb51": "testTrainMulti_7030_splits/",
    "ucf_hmdb": "ucfTrainTestlist/ then testTrainMulti_7030_splits/",
    "custom": "the label table (CSV/TSV), or nothing for one sub-folder per class",
}
_VIDEOS = {"ucf_hmdb": 2}


def build_manifest(request: ManifestRequest) -> pd.DataFrame:
    """The canonical manifest of `request.dataset` (see each adapter for its columns).

    Raises:
        ValueError: an unknown dataset, or the wrong number of --annotations / --videos paths.
        ManifestError: from the adapter, naming the offending rows or files.
    """
    name, annotations, videos = request.dataset, list(request.annotations), list(request.videos)
    if name not in DATASETS:
        raise ValueError(f"Expected a dataset among {list(DATASETS)}, but got {name!r}.")
    wanted_annotations = 0 if name == "custom" and not annotations else _VIDEOS.get(name, 1)
    if len(annotations) != wanted_annotations or len(videos) != _VIDEOS.get(name, 1):
        raise ValueError(
            f"Expected {wanted_annotations or 'no'} --annotations path(s) ({_ANNOTATIONS[name]}) and "
            f"{_VIDEOS.get(name, 1)} --videos folder(s) for dataset {name!r}, but got {annotations} and {videos}."
        )
    missing, check = request.allow_missing, request.check_videos
    if name == "animal_kingdom":
        return read_animal_kingdom(annotations[0], videos[0], missing, check_videos=check)
    if name == "charades_ego":
        return read_charades_ego(annotations[0], videos[0], missing, check_videos=check)
    if name == "ucf101":
        return read_ucf101(annotations[0], videos[0], request.split_number, missing, check_videos=check)
    if name == "hmdb51":
        return read_hmdb51(annotations[0], videos[0], request.split_number, missing, check_videos=check)
    if name == "ucf_hmdb":
        return read_ucf_hmdb(annotations[0], annotations[1], videos[0], videos[1], missing,
                             split_number=request.split_number, check_videos=check)
    if annotations:
        return read_custom(annotations[0], videos[0], request.columns, missing, check_videos=check)
    return read_folders(videos[0], request.folder_levels, missing, check_videos=check)
