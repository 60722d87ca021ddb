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

from actiondiff.io.manifest import class_names
from actiondiff.learn.head import HeadSettings
from actiondiff.learn.metrics import (
    METRIC_LABELS,
    all_metrics,
    confusion_matrix,
    most_frequent_class_probs,
    per_class_table,
    per_group_accuracy,
)
from actiondiff.learn.protocols import ProtocolSettings, assign_roles, multi_hot
from actiondiff.learn.train import (
    TrainSettings,
    checkpoint_info,
    load_checkpoint,
    predict,
    save_checkpoint,
    selected_epoch,
    train_head,
    with_seed,
)
from actiondiff.settings import from_dict, to_dict
from actiondiff.store.packed import FeatureStore

log = logging.getLogger(__name__)


def load_sets(
    store: FeatureStore,
    manifest: pd.DataFrame,
    tap: str,
    protocol: ProtocolSettings,
    features: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Sequences and targets of each role; videos without features are excluded and counted.

    Args:
        features: {video_id: [num_frames, d]} already read from `store` (read here if None).
    Returns:
        {"classes": [...], "excluded": [video ids], "train" | "val" | "test": {"video_id",
        "sequences" (list of [n_i, d] float32), "targets" ([n, classes] float32), "domain"}}.
    """
    features = store.features(tap) if features is None else features
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
    device: str = "cpu",
) -> list[Path]:
    """Train one head per seed; write `seed{k}.safetensors` + `.json` and `history.csv`.

    The JSON records the classes, the feature width and tap, the store's settings hash and
    the full extraction identity (`extraction`: decode/extraction/weights blocks, as packed
    into the store), so `actiondiff predict` can extract new videos the same way.
    """
    store = FeatureStore(store_path)
    sets = load_sets(store, manifest, tap, protocol)
    out_dir = Path(out_dir)
    train, val = sets["train"], sets["val"]
    if not train["sequences"]:
        raise ValueError(
            f"Expected training videos with features in {store_path}, but got none "
            f"({len(sets['excluded'])} of the protocol's videos have no features). Check the protocol and the extraction."
        )
    paths, histories = [], []
    for seed in seeds:
        seeded = with_seed(settings, seed)
        model, history = train_head(
            (train["sequences"], train["targets"]), (val["sequences"], val["targets"]), head, seeded, device=device
        )
        path = out_dir / f"seed{seed}.safetensors"
        epoch, selection = selected_epoch(history)
        info = checkpoint_info(
            head,
            seeded,
            classes=sets["classes"],
            settings_hash=store.attrs["settings_hash"],
            extraction=store.attrs.get("settings"),
            backbone=store.attrs.get("backbone"),
            tap=tap,
            width=int(train["sequences"][0].shape[1]),
            protocol=protocol.name,
            num_train_videos=len(train["video_id"]),
            num_val_videos=len(val["video_id"]),
            best_val_score=max(row["val_score"] for row in history) if selection == "best_val" else None,
            epoch_selection=selection,
            selected_epoch=epoch,
            excluded_videos=sets["excluded"],
        )
        save_checkpoint(model, path, info)
        histories += [{"seed": seed, **row} for row in history]
        paths.append(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(histories).to_csv(out_dir / "history.csv", index=False)
    return paths


def _mean_std(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "std"}} over seeds (population std, 0 for one seed)."""
    return {name: {"mean": float(np.mean([r[name] for r in rows])), "std": float(np.std([r[name] for r in rows]))} for name in rows[0]}


def evaluate_models(
    store_path: str | Path, manifest: pd.DataFrame, protocol: ProtocolSettings, checkpoints: list[str | Path]
) -> dict[str, Any]:
    """Test every seed's model on the protocol's test videos; mean and std over seeds.

    Also reports the most-frequent-class-of-the-training-domain baseline (`baselines`), per
    class AP / accuracy and per-domain accuracy (mean over seeds), and the confusion matrix
    summed over seeds. Metric names are explained in `metric_labels`.
    Raises:
        ValueError: a checkpoint was trained on features of other settings than the store's.
    """
    if not checkpoints:
        raise ValueError("Expected at least one checkpoint to evaluate, but got none.")
    store = FeatureStore(store_path)
    features_by_tap: dict[str, dict[str, np.ndarray]] = {}
    per_seed, domain_rows, class_tables, confusion, selections = [], [], [], None, set()
    for path in checkpoints:
        model, info = load_checkpoint(path, expected_hash=store.attrs["settings_hash"])
        head = from_dict(HeadSettings, info["head"], f"checkpoint {path}")
        selections.add(info.get("epoch_selection", "best_val"))  # older checkpoints: best on validation
        if info["tap"] not in features_by_tap:
            features_by_tap[info["tap"]] = store.features(info["tap"])
        sets = load_sets(store, manifest, info["tap"], protocol, features_by_tap[info["tap"]])
        if sets["classes"] != info["classes"]:
            raise ValueError(
                f"Expected the manifest's classes to be the {len(info['classes'])} classes {path} was "
                f"trained on, but got {sets['classes']}."
            )
        test = sets["test"]
        probs = predict(model, test["sequences"], head, info["train"]["multilabel"])
        per_seed.append(all_metrics(probs, test["targets"]))
        seed = info["train"]["seed"]
        for domain, value in per_group_accuracy(probs, test["targets"], test["domain"]).items():
            domain_rows.append({"seed": seed, "domain": domain, "top1_accuracy": value})
        class_tables.append(per_class_table(probs, test["targets"], sets["classes"]).assign(seed=seed))
        matrix = confusion_matrix(probs, test["targets"])
        confusion = matrix if confusion is None else confusion + matrix
    # The baseline: the training side's (train + val) most frequent class for every test video.
    train_side = np.concatenate([sets["train"]["targets"], sets["val"]["targets"]])
    baseline_probs = most_frequent_class_probs(train_side, len(test["video_id"]))
    per_class = pd.concat(class_tables).groupby("class", sort=False)[["positives", "ap", "top1_accuracy"]].mean()
    return {
        "metrics": _mean_std(per_seed),
        "metric_labels": METRIC_LABELS,
        "per_seed": per_seed,
        "per_domain": domain_rows,
        "per_class": [
            {"class": name, "positives": int(row.positives), "ap": _none_if_nan(row.ap), "top1_accuracy": _none_if_nan(row.top1_accuracy)}
            for name, row in per_class.iterrows()
        ],
        "baselines": {
            "most_frequent_class": {
                "class": sets["classes"][int(baseline_probs[0].argmax())],
                "metrics": all_metrics(baseline_probs, test["targets"]),
                "per_domain": per_group_accuracy(baseline_probs, test["targets"], test["domain"]),
            }
        },
        "confusion": confusion.tolist(),
        "classes": info["classes"],
        "num_test_videos": len(test["video_id"]),
        "excluded_videos": sets["excluded"],
        "tap": info["tap"],
        "settings_hash": info["settings_hash"],
        "epoch_selection": "+".join(sorted(selections)),
    }


def role_metrics(store_path: str | Path, manifest: pd.DataFrame, protocol: ProtocolSettings,
                 checkpoints: list[str | Path], role: str) -> dict[str, Any]:
    """Metrics (mean/std over seeds) and per-domain top-1 accuracy of the models on one role.

    `role="val"` is the in-domain evaluation: held-out clips of the training domains (the
    same clips that selected the epoch, so it is an optimistic estimate).
    """
    store = FeatureStore(store_path)
    per_seed, per_domain = [], []
    for path in checkpoints:
        model, info = load_checkpoint(path, expected_hash=store.attrs["settings_hash"])
        head = HeadSettings(**info["head"])
        rows = load_sets(store, manifest, info["tap"], protocol)[role]
        probs = predict(model, rows["sequences"], head, info["train"]["multilabel"])
        per_seed.append(all_metrics(probs, rows["targets"]))
        for domain, value in per_group_accuracy(probs, rows["targets"], rows["domain"]).items():
            per_domain.append({"seed": info["train"]["seed"], "domain": domain, "top1_accuracy": value})
    return {"metrics": _mean_std(per_seed), "per_domain": per_domain, "num_videos": len(rows["video_id"])}


def most_frequent_class(train_targets: np.ndarray, test_targets: np.ndarray, test_domains: list[str]) -> dict[str, Any]:
    """The most-frequent-class baseline of the training side, scored on the test side.

    Args:
        train_targets: [n_train, classes] multi-hot targets of the training videos.
        test_targets: [n_test, classes] multi-hot targets of the test videos.
        test_domains: the n_test videos' domains.
    Returns:
        `metrics` (every metric, %, scoring each test video with the training class frequencies,
        so top-1 picks the most frequent class, the first on ties), `per_domain` top-1 accuracy
        (%), and `class` (the index of the most frequent class).
    """
    frequency = train_targets.mean(axis=0)  # [classes]
    probs = np.tile(frequency, (len(test_targets), 1))  # [n_test, classes]
    return {
        "metrics": all_metrics(probs, test_targets),
        "per_domain": per_group_accuracy(probs, test_targets, test_domains),
        "class": int(frequency.argmax()),
    }


def domain_class_counts(manifest: pd.DataFrame, protocol: ProtocolSettings, classes: list[str]) -> dict[str, list[int]]:
    """{domain: [classes] number of clips with each action} over the videos the protocol uses."""
    roles = assign_roles(manifest, protocol)
    used = manifest[roles != ""]
    targets = multi_hot(used.labels, classes)
    return {
        str(domain): targets[(used.domain == domain).to_numpy()].sum(axis=0).astype(int).tolist()
        for domain in sorted(set(used.domain))
    }


def evaluate_run(store_path: str | Path, manifest: pd.DataFrame, protocol: ProtocolSettings,
                 checkpoints: list[str | Path], run: dict[str, Any]) -> dict[str, Any]:
    """Out-of-domain (test) and in-domain (val) evaluation of one run, with its baseline.

    Returns the `actiondiff.learn.run.evaluate_models` result (out-of-domain, as the results
    table shows it, and `epoch_selection`: "last" without a validation set, else "best_val")
    plus `in_domain` (None without a validation set), `baseline` (most frequent class), `class_counts` per
    domain, `protocol` (with its metrics, headline first) and `run` (experiment, variant...).
    """
    result = evaluate_models(store_path, manifest, protocol, checkpoints)
    sets = load_sets(FeatureStore(store_path), manifest, result["tap"], protocol)
    # In-domain: held-out clips of the training domains; none without a validation set.
    result["in_domain"] = role_metrics(store_path, manifest, protocol, checkpoints, "val") if sets["val"]["video_id"] else None
    train = np.concatenate([sets["train"]["targets"], sets["val"]["targets"]])
    result["baseline"] = most_frequent_class(train, sets["test"]["targets"], sets["test"]["domain"])
    result["class_counts"] = domain_class_counts(manifest, protocol, result["classes"])
    result["protocol"] = {
        **to_dict(protocol), "metrics": list(protocol.spec.metrics), "headline_metric": protocol.headline_metric,
    }
    result["run"] = dict(run)
    return result


def _none_if_nan(value: float) -> float | None:
    """JSON has no NaN: a class without positives gets null."""
    return None if np.isnan(value) else float(value)


def write_json(data: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
