"""Evaluation protocols: which videos train, which select the model, which test.

A protocol assigns each manifest row a role (`train`, `val`, `test` or none) and states its
metrics (headline first). The validation set always comes from the training side: the rows
the dataset marks `val` there (UCF-HMDB), else a seeded, class-stratified `val_fraction` draw
of the training rows. The default `val_fraction` is 0: the paper's protocols train on the
whole training side, as the authors did, and the head of the last epoch is kept (the authors
reported the best test epoch; selecting on test is not offered). The results tables say which.

| protocol | manifest | targets | metrics |
|---|---|---|---|
| custom | any (`domain`, `split`) | as labelled | top-1 accuracy |
| ak_full | animal_kingdom | multi-hot, 140 | micro AP (authors), macro AP present (dataset), macro AP all |
| ak_unseen_species | animal_kingdom | one-hot, 140 | top-1 accuracy |
| ak_species_pair | animal_kingdom | one-hot, 140 | top-1 accuracy |
| charades_1st_1st, charades_3rd_1st, charades_1st_3rd | charades_ego | multi-hot, 157 | micro AP (authors), macro AP present |
| ucf_to_hmdb, hmdb_to_ucf | ucf_hmdb | one-hot, 12 | top-1 accuracy |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from actiondiff.io.datasets.animal_kingdom import (
    UNSEEN_ACTIONS,
    UNSEEN_TEST_GROUPS,
    UNSEEN_TRAIN_GROUPS,
)
from actiondiff.io.manifest import LABEL_SEPARATOR, split_labels
from actiondiff.settings import _check_min, _doc

METRICS = ("top1_accuracy", "micro_ap", "macro_ap_present", "macro_ap_all")


@dataclass(frozen=True)
class ProtocolSpec:
    """What a named protocol needs and reports."""

    dataset: str  # the `dataset` column it expects ("" = any manifest)
    multilabel: bool  # sigmoid + multi-hot targets (else softmax, single label)
    metrics: tuple[str, ...]  # headline first
    preset: str  # the paper's training hyperparameters, the default of `train.preset`
    summary: str


PROTOCOLS: dict[str, ProtocolSpec] = {
    "custom": ProtocolSpec("", False, ("top1_accuracy",), "animal_kingdom_unseen",
                           "train on some domain values, test on others (or on rows marked test)"),
    "ak_full": ProtocolSpec("animal_kingdom", True, ("micro_ap", "macro_ap_present", "macro_ap_all"), "animal_kingdom_full",
                            "official train -> official test, all 140 actions, multi-label"),
    "ak_unseen_species": ProtocolSpec("animal_kingdom", False, ("top1_accuracy",), "animal_kingdom_unseen",
                                      "single-label clips of six actions; train species groups -> unseen test groups"),
    "ak_species_pair": ProtocolSpec("animal_kingdom", False, ("top1_accuracy",), "animal_kingdom_unseen",
                                    "the unseen-species filter, one species group -> another (Fig. 4 matrix)"),
    "charades_1st_1st": ProtocolSpec("charades_ego", True, ("micro_ap", "macro_ap_present"), "charades_ego",
                                     "first-person train -> first-person test"),
    "charades_3rd_1st": ProtocolSpec("charades_ego", True, ("micro_ap", "macro_ap_present"), "charades_ego",
                                     "third-person train -> first-person test"),
    "charades_1st_3rd": ProtocolSpec("charades_ego", True, ("micro_ap", "macro_ap_present"), "charades_ego",
                                     "first-person train -> third-person test"),
    "ucf_to_hmdb": ProtocolSpec("ucf_hmdb", False, ("top1_accuracy",), "ucf_hmdb",
                                "UCF train (UCF val selects) -> all HMDB clips, 12 classes"),
    "hmdb_to_ucf": ProtocolSpec("ucf_hmdb", False, ("top1_accuracy",), "ucf_hmdb",
                                "HMDB train (HMDB val selects) -> all UCF clips, 12 classes"),
}
SPECIES_PROTOCOLS = ("ak_unseen_species", "ak_species_pair")


@dataclass(frozen=True)
class ProtocolSettings:
    """Which protocol splits the manifest, and its few knobs (see the module table)."""

    name: str = _doc("custom", "protocol: " + " | ".join(PROTOCOLS))
    train_domains: tuple[str, ...] = _doc(
        (), "custom: domain values to train on (empty: every non-test domain); ak_unseen_species / "
        "ak_species_pair: species groups (Sub-Class, lower case; empty: the paper's train groups)")
    test_domains: tuple[str, ...] = _doc(
        (), "custom: domain values to test on (empty: the rows whose split is test); AK species "
        "protocols: species groups (empty: the paper's test groups)")
    actions: tuple[int, ...] = _doc((), "AK species protocols: action ids kept (empty: the paper's six)")
    val_fraction: float = _doc(
        0.0, "share of training rows held out (class-stratified, seeded) to select the epoch when no row is marked "
        "val; 0: train on the whole training side (as the paper) and keep the last epoch")
    seed: int = _doc(0, "seed of the validation draw")
    metric: str = _doc("", "headline metric of the results table (empty: the protocol's first metric)")

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ValueError(f"Expected `protocol.name` to be one of {list(PROTOCOLS)}, but got {self.name!r}.")
        if self.metric and self.metric not in METRICS:
            raise ValueError(f"Expected `protocol.metric` to be empty or one of {list(METRICS)}, but got {self.metric!r}.")
        overlap = set(self.train_domains) & set(self.test_domains)
        if overlap and self.name != "ak_species_pair":
            raise ValueError(f"Expected train and test domains to be disjoint, but both contain {sorted(overlap)}.")
        if self.name == "ak_species_pair" and (len(self.train_domains) != 1 or len(self.test_domains) != 1):
            raise ValueError(
                f"Expected `protocol.train_domains` and `protocol.test_domains` to name one species group each "
                f"for ak_species_pair, but got {list(self.train_domains)} and {list(self.test_domains)}."
            )
        if self.actions and self.name not in SPECIES_PROTOCOLS:
            raise ValueError(f"Expected `protocol.actions` to be empty for {self.name!r} (it filters AK species protocols), but got {list(self.actions)}.")
        if (self.train_domains or self.test_domains) and self.name not in ("custom", *SPECIES_PROTOCOLS):
            raise ValueError(f"Expected no train/test domains for {self.name!r} (its sides are fixed), but got some.")
        _check_min("val_fraction", self.val_fraction, 0)
        if self.val_fraction >= 1:
            raise ValueError(f"Expected `protocol.val_fraction` to be in [0, 1), but got {self.val_fraction!r}.")

    @property
    def spec(self) -> ProtocolSpec:
        return PROTOCOLS[self.name]

    @property
    def headline_metric(self) -> str:
        """`metric` if set, else the protocol's own first metric."""
        return self.metric or self.spec.metrics[0]


def _require(manifest: pd.DataFrame, protocol: ProtocolSettings, columns: tuple[str, ...]) -> None:
    absent = [c for c in columns if c not in manifest.columns]
    dataset = protocol.spec.dataset
    if absent:
        raise ValueError(
            f"Expected the manifest to have columns {absent} for protocol {protocol.name!r}, but it does not: "
            f"build it with `actiondiff manifest {dataset}`."
        )
    found = sorted(set(manifest.dataset)) if "dataset" in manifest.columns else []
    if found != [dataset]:
        raise ValueError(f"Expected a manifest of dataset {dataset!r} for protocol {protocol.name!r}, but got {found}.")


def _custom_sides(manifest: pd.DataFrame, protocol: ProtocolSettings) -> tuple[pd.Series, pd.Series]:
    domains = set(manifest.domain)
    unknown = sorted((set(protocol.train_domains) | set(protocol.test_domains)) - domains)
    if unknown:
        raise ValueError(f"Expected protocol domains to be among {sorted(domains)}, but got unknown {unknown}.")
    test = manifest.domain.isin(protocol.test_domains) if protocol.test_domains else manifest.split == "test"
    train_side = ~test & (manifest.domain.isin(protocol.train_domains) if protocol.train_domains else True)
    return train_side, test


def _ak_full_sides(manifest: pd.DataFrame, protocol: ProtocolSettings) -> tuple[pd.Series, pd.Series]:
    _require(manifest, protocol, ("dataset",))
    return manifest.split.isin(("train", "val")), manifest.split == "test"


def first_group(manifest: pd.DataFrame) -> pd.Series:
    """Each clip's species group: that of its first (species, action) pair ('' for none).

    `species_group` lists the groups in order of first mention, so its first entry is the
    group of the first pair's species, as the authors choose it (later pairs are ignored).
    """
    return manifest.species_group.map(lambda groups: groups.split(LABEL_SEPARATOR)[0])


def species_eligible(manifest: pd.DataFrame, actions: tuple[int, ...] = UNSEEN_ACTIONS) -> pd.Series:
    """Animal Kingdom clips with exactly one label id, among `actions`, whose first (species,
    action) pair names a species of a known group. On the published AR_metadata.xlsx the
    paper's groups then hold 4,710 train / 1,039 test clips."""
    wanted = {str(a) for a in actions}
    single = manifest.label_ids.map(lambda ids: len(split_labels(ids)) == 1 and ids in wanted)
    return single & (first_group(manifest) != "")


def _species_sides(manifest: pd.DataFrame, protocol: ProtocolSettings) -> tuple[pd.Series, pd.Series]:
    """Species groups, not the official split, decide the sides; a pair of one group with
    itself (the matrix diagonal) splits that group by the official split instead."""
    _require(manifest, protocol, ("dataset", "label_ids", "species_group"))
    train_groups = protocol.train_domains or UNSEEN_TRAIN_GROUPS
    test_groups = protocol.test_domains or UNSEEN_TEST_GROUPS
    known = set(manifest.species_group.map(split_labels).explode().dropna())
    # The paper's groups may be absent from a subset of the dataset; groups the user names may not.
    unknown = sorted((set(protocol.train_domains) | set(protocol.test_domains)) - known)
    if unknown:
        raise ValueError(f"Expected species groups among the manifest's {sorted(known)[:20]}..., but got unknown {unknown}.")
    eligible = species_eligible(manifest, protocol.actions or UNSEEN_ACTIONS)
    group = first_group(manifest)
    train_side = eligible & group.isin(train_groups)
    test = eligible & group.isin(test_groups)
    if set(train_groups) == set(test_groups):
        train_side, test = train_side & (manifest.split != "test"), test & (manifest.split == "test")
    return train_side, test


# Charades-Ego protocols: (train view, test view).
VIEW_SIDES = {"charades_1st_1st": ("1st", "1st"), "charades_3rd_1st": ("3rd", "1st"), "charades_1st_3rd": ("1st", "3rd")}


def _view_sides(train_view: str, test_view: str) -> Callable[[pd.DataFrame, ProtocolSettings], tuple[pd.Series, pd.Series]]:
    def sides(manifest: pd.DataFrame, protocol: ProtocolSettings) -> tuple[pd.Series, pd.Series]:
        _require(manifest, protocol, ("dataset", "view"))
        train_side = manifest.split.isin(("train", "val")) & (manifest.view == train_view)
        return train_side, (manifest.split == "test") & (manifest.view == test_view)

    return sides


def _source_sides(train_source: str, test_source: str) -> Callable[[pd.DataFrame, ProtocolSettings], tuple[pd.Series, pd.Series]]:
    def sides(manifest: pd.DataFrame, protocol: ProtocolSettings) -> tuple[pd.Series, pd.Series]:
        _require(manifest, protocol, ("dataset", "source"))
        listed = manifest.split.isin(("train", "val"))
        return listed & (manifest.source == train_source), listed & (manifest.source == test_source)

    return sides


_SIDES = {
    "custom": _custom_sides,
    "ak_full": _ak_full_sides,
    "ak_unseen_species": _species_sides,
    "ak_species_pair": _species_sides,
    **{name: _view_sides(*views) for name, views in VIEW_SIDES.items()},
    "ucf_to_hmdb": _source_sides("ucf101", "hmdb51"),
    "hmdb_to_ucf": _source_sides("hmdb51", "ucf101"),
}


def stratified_draw(labels: pd.Series, fraction: float, seed: int) -> pd.Index:
    """A seeded draw of `round(fraction * n)` rows of `labels`, stratified by class.

    Each row's stratum is its rarest class among these rows (the class itself for single-label
    rows; '' for an unlabelled row), so every class keeps its share on both sides. Each stratum
    gives `fraction` of its rows, rounded by largest remainder so that the total is exact.
    Returns the index labels of the drawn rows.
    """
    names = labels.map(split_labels)
    frequency = names.explode().value_counts()
    strata = names.map(lambda row: min(row, key=lambda n: (frequency[n], n)) if row else "")
    groups = sorted(strata.groupby(strata).groups.items())
    quotas = np.array([len(index) * fraction for _, index in groups])
    counts = np.floor(quotas).astype(int)
    order = sorted(range(len(groups)), key=lambda i: (-(quotas[i] - counts[i]), i))
    counts[order[: round(len(labels) * fraction) - int(counts.sum())]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.asarray(index), size=count, replace=False) for (_, index), count in zip(groups, counts, strict=True)]
    return pd.Index(np.concatenate(chosen) if chosen else [])


_NO_TRAIN_HINT = {
    name: f"it needs train rows of view {train}: `CharadesEgo_v1_train_only{train}.csv` (or the combined "
    f"`CharadesEgo_v1_train.csv`) in the annotation folder; add it and rebuild the manifest"
    for name, (train, _) in VIEW_SIDES.items()
}
_NO_TEST_HINT = {
    name: f"it needs test rows of view {test}: `CharadesEgo_v1_test_only{test}.csv` (or the combined "
    f"`CharadesEgo_v1_test.csv`) in the annotation folder; add it and rebuild the manifest"
    for name, (_, test) in VIEW_SIDES.items()
}


def assign_roles(manifest: pd.DataFrame, protocol: ProtocolSettings) -> pd.Series:
    """The role of each row: 'train', 'val', 'test' or '' (unused).

    Steps: 1. the protocol picks its training side and its test rows; 2. the training side's
    rows marked `val` become val, or (none marked) a seeded, class-stratified `val_fraction`
    draw of them (none with the default 0: no validation set, the last epoch is kept).

    Raises:
        ValueError: the manifest lacks the protocol's columns or dataset, names unknown
            domains / species groups, or leaves no train or no test rows (naming the
            annotation file a Charades-Ego protocol needs).
    """
    train_side, test = _SIDES[protocol.name](manifest, protocol)
    train_side = pd.Series(train_side, index=manifest.index, dtype=bool) & ~test
    roles = pd.Series("", index=manifest.index)
    roles[test] = "test"
    roles[train_side] = "train"
    marked_val = train_side & (manifest.split == "val")
    if marked_val.any():
        roles[marked_val] = "val"
    elif protocol.val_fraction > 0:
        roles[stratified_draw(manifest.labels[train_side], protocol.val_fraction, protocol.seed)] = "val"
    for role, hints in (("train", _NO_TRAIN_HINT), ("test", _NO_TEST_HINT)):
        if not (roles == role).any():
            hint = f": {hints[protocol.name]}" if protocol.name in hints else ""
            raise ValueError(f"Expected protocol {protocol.name!r} to leave some {role} videos, but it leaves none{hint}.")
    return roles


def multi_hot(labels: pd.Series, classes: list[str]) -> np.ndarray:
    """[n, classes] float32 targets from `;`-joined label names; an empty cell is all zeros.

    Raises:
        ValueError: a label is not among `classes` (named, with its row).
    """
    index = {name: i for i, name in enumerate(classes)}
    targets = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, text in enumerate(labels):
        for name in split_labels(text):
            if name not in index:
                raise ValueError(f"Expected label {name!r} (row {row}) to be one of the classes {classes}, but it is not.")
            targets[row, index[name]] = 1.0
    return targets
