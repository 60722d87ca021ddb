"""Train and evaluate one experiment: packed store + manifest + protocol -> models, metrics.

This is where the frozen-backbone side (the store) meets the trainable side (the head).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .head import HeadSettings
from .manifest import class_names
from .metrics import METRIC_LABELS, all_metrics, confusion_matrix, per_group_accuracy
from .protocols import ProtocolSettings, assign_roles, multi_hot
from .store import FeatureStore
from .train import (
    TrainSettings,
    checkpoint_info,
    load_checkpoint,
    predict,
    save_checkpoint,
    train_head,
)

log = logging.getLogger(__name__)


def load_sets(store: FeatureStore, manifest: pd.DataFrame, tap: str, protocol: ProtocolSettings) -> dict[str, Any]:
    """Sequences and targets of each role; videos without features are excluded and counted."""
    features = store.features(tap)
    classes = class_names(manifest)
    roles = assign_roles(manifest, protocol)
    has_features = manifest.video_id.isin(features)
    excluded = manifest.loc[(roles != "") & ~has_features, "video_id"].tolist()
    if excluded:
        log.warning("%d videos have no features (failed or not extracted) and are excluded: %s", len(excluded), excluded[:10])
    sets: dict[str, Any] = {"classes": classes, "excluded": excluded}
    for role in ("train", "val", "test"):
        rows = manifest[(roles == role) & has_features]
        sets[role] = {
            "video_id": rows.video_id.tolist(),
            "sequences": [features[v] for v in rows.video_id],
            "targets": multi_hot(rows.labels, classes),
            "domain": rows.domain.tolist(),
        }
    return sets


def train_seeds(
    store_path: str | Path,
    manifest: pd.DataFrame,
    tap: str,
    protocol: ProtocolSettings,
    head: HeadSettings,
    settings: TrainSettings,
    seeds: list[int],
    out_dir: str | Path,
) -> list[Path]:
    """Train one head per seed; write `seed{k}.safetensors` + `.json` and `history.csv`."""
    store = FeatureStore(store_path)
    sets = load_sets(store, manifest, tap, protocol)
    out_dir = Path(out_dir)
    paths, histories = [], []
    for seed in seeds:
        seeded = TrainSettings(**{**settings.__dict__, "seed": seed})
        train, val = sets["train"], sets["val"]
        model, history = train_head((train["sequences"], train["targets"]), (val["sequences"], val["targets"]), head, seeded)
        path = out_dir / f"seed{seed}.safetensors"
        info = checkpoint_info(
            head,
            seeded,
            classes=sets["classes"],
            settings_hash=store.attrs["settings_hash"],
            tap=tap,
            width=int(train["sequences"][0].shape[1]),
            excluded_videos=sets["excluded"],
        )
        save_checkpoint(model, path, info)
        histories += [{"seed": seed, **row} for row in history]
        paths.append(path)
    pd.DataFrame(histories).to_csv(out_dir / "history.csv", index=False)
    return paths


def evaluate_models(
    store_path: str | Path, manifest: pd.DataFrame, protocol: ProtocolSettings, checkpoints: list[str | Path]
) -> dict[str, Any]:
    """Test every seed's model on the protocol's test videos; mean and std over seeds."""
    store = FeatureStore(store_path)
    per_seed, domain_rows, confusion = [], [], None
    for path in checkpoints:
        model, info = load_checkpoint(path, expected_hash=store.attrs["settings_hash"])
        head = HeadSettings(**info["head"])
        test = load_sets(store, manifest, info["tap"], protocol)["test"]
        probs = predict(model, test["sequences"], head, info["train"]["multilabel"])
        per_seed.append(all_metrics(probs, test["targets"]))
        for domain, value in per_group_accuracy(probs, test["targets"], test["domain"]).items():
            domain_rows.append({"seed": info["train"]["seed"], "domain": domain, "top1_accuracy": value})
        matrix = confusion_matrix(probs, test["targets"])
        confusion = matrix if confusion is None else confusion + matrix
    metrics = {
        name: {"mean": float(np.mean([m[name] for m in per_seed])), "std": float(np.std([m[name] for m in per_seed]))}
        for name in per_seed[0]
    }
    return {
        "metrics": metrics,
        "metric_labels": METRIC_LABELS,
        "per_seed": per_seed,
        "per_domain": domain_rows,
        "confusion": confusion.tolist(),
        "classes": info["classes"],
        "num_test_videos": len(test["video_id"]),
        "excluded_videos": info["excluded_videos"],
        "tap": info["tap"],
        "settings_hash": info["settings_hash"],
    }


def write_json(data: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
