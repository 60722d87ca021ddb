"""Evaluation protocols: which videos train, which select the model, which test.

A protocol assigns each manifest row a role (`train`, `val`, `test` or none) and names its
headline metric. The validation set always comes from the training side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .manifest import LABEL_SEPARATOR
from .settings import _check_min, _doc


@dataclass(frozen=True)
class ProtocolSettings:
    """`custom`: train on some domain values, test on others (the demo and your own videos)."""

    name: str = _doc("custom", "protocol name")
    train_domains: tuple[str, ...] = _doc((), "domain values to train on (empty: every non-test domain)")
    test_domains: tuple[str, ...] = _doc((), "domain values to test on (empty: the rows whose split is test)")
    val_fraction: float = _doc(0.2, "share of training rows held out for model selection when no row is marked val")
    seed: int = _doc(0, "seed of the validation draw")
    metric: str = _doc("top1_accuracy", "headline metric of the results table")

    def __post_init__(self) -> None:
        overlap = set(self.train_domains) & set(self.test_domains)
        if overlap:
            raise ValueError(f"Expected train and test domains to be disjoint, but both contain {sorted(overlap)}.")
        _check_min("val_fraction", self.val_fraction, 0)


def assign_roles(manifest: pd.DataFrame, protocol: ProtocolSettings) -> pd.Series:
    """The role of each row: 'train', 'val', 'test' or '' (unused)."""
    domains = set(manifest.domain)
    unknown = sorted((set(protocol.train_domains) | set(protocol.test_domains)) - domains)
    if unknown:
        raise ValueError(f"Expected protocol domains to be among {sorted(domains)}, but got unknown {unknown}.")
    if protocol.test_domains:
        test = manifest.domain.isin(protocol.test_domains)
    else:
        test = manifest.split == "test"
    train_side = ~test & (manifest.domain.isin(protocol.train_domains) if protocol.train_domains else True)
    roles = pd.Series("", index=manifest.index)
    roles[test] = "test"
    roles[train_side] = "train"
    marked_val = train_side & (manifest.split == "val")
    if marked_val.any():
        roles[marked_val] = "val"
    else:
        rng = np.random.default_rng(protocol.seed)
        candidates = manifest.index[train_side].to_numpy()
        chosen = rng.choice(candidates, size=round(len(candidates) * protocol.val_fraction), replace=False)
        roles[chosen] = "val"
    for role in ("train", "val", "test"):
        if not (roles == role).any():
            raise ValueError(f"Expected protocol {protocol.name!r} to leave some {role} videos, but it leaves none.")
    return roles


def multi_hot(labels: pd.Series, classes: list[str]) -> np.ndarray:
    """[n, classes] float32 targets from `;`-joined label names.

    Raises:
        ValueError: a label is not among `classes` (named, with its row).
    """
    index = {name: i for i, name in enumerate(classes)}
    targets = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, text in enumerate(labels):
        for name in text.split(LABEL_SEPARATOR):
            if name not in index:
                raise ValueError(f"Expected label {name!r} (row {row}) to be one of the classes {classes}, but it is not.")
            targets[row, index[name]] = 1.0
    return targets
