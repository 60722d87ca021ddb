"""Train and evaluate one experiment: packed store + manifest + protocol -> models, metrics.

This is where the frozen-backbone side (the store) meets the trainable side (the head). A run
opens the store once and reads one tap of the videos it needs (train + val to train, val + test
to evaluate: the training videos' labels come from the manifest), fitted to the head's
`max_length`, float16 until a batch is formed, streamed from the store when it would not fit.
Its result is an `Evaluation`, written as the JSON that the report reads back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from actiondiff.io.manifest import class_names
from actiondiff.learn.head import HeadSettings
from actiondiff.learn.metrics import (
    all_metrics,
    confusion_matrix,
    most_frequent_class_probs,
    per_class_table,
    per_group_accuracy,
)
from actiondiff.learn.protocols import ProtocolSettings, assign_roles, multi_hot
from actiondiff.learn.results import Baseline, Evaluation, MeanStd, RoleEvaluation
from actiondiff.learn.train import (
    StoreSequences,
    TrainSettings,
    checkpoint_info,
    load_checkpoint,
    predict,
    read_fitted,
    save_checkpoint,
    selected_epoch,
    train_head,
    with_seed,
)
from actiondiff.settings import ALL_TAPS, from_dict, to_dict
from actiondiff.store.packed import FeatureStore

log = logging.getLogger(__name__)

ROLES = ("train", "val", "test")


@dataclass
class VideoSet:
    """The videos of one role: ids, sequences ([n_i, d] float16; None: labels only), targets, domains."""

    video_id: list[str]
    sequences: Sequence[np.ndarray] | None
    targets: np.ndarray  # [n, classes] float32 multi-hot
    domain: list[str]


@dataclass
class Sets:
    """The roles of a protocol over the videos of a store."""

    classes: list[str]
    excluded: list[str]  # videos the protocol uses that have no features
    roles: dict[str, VideoSet]

    def __getitem__(self, role: str) -> VideoSet:
        return self.roles[role]


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux MemAvailable; else free pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def load_sets(
    store: FeatureStore,
    manifest: pd.DataFrame,
    tap: str,
    protocol: ProtocolSettings,
    roles: tuple[str, ...] = ROLES,
    head: HeadSettings | None = None,
    stream: bool | None = False,
    labels_only: tuple[str, ...] = (),
) -> Sets:
    """Sequences and targets of the given roles; videos without features are excluded and counted.

    Only `tap` of the videos of `roles` is read, in one pass over the store.
    Args:
        head: with it, sequences are fitted to its `max_length` as they are read; without,
            whole sequences are returned.
        stream: with `head`, read nothing now: sequences are `StoreSequences`, read per batch;
            None: only when the fitted videos read would not fit (`should_stream`).
        labels_only: roles (among `roles`) whose features are not read: their `sequences` is
            None, their ids, targets and domains come from the manifest alone.
    Returns:
        `Sets` with a `VideoSet` per role; sequences [n_i, d] float16.
    """
    classes = class_names(manifest)
    assigned = assign_roles(manifest, protocol)
    has_features = manifest.video_id.isin(store.position)
    excluded = manifest.loc[(assigned != "") & ~has_features, "video_id"].tolist()
    if excluded:
        log.warning("%d videos have no features (failed or not extracted) and are excluded: %s", len(excluded), excluded[:10])
    rows = {role: manifest[(assigned == role) & has_features] for role in roles}
    read = [role for role in roles if role not in labels_only]
    ids = [v for role in read for v in rows[role].video_id]
    indices = store.indices(ids)
    if head is not None and stream is None:
        stream = should_stream(store, manifest, tap, head, indices)
    if head is not None and stream:
        sequences: Sequence[np.ndarray] = StoreSequences(store, tap, indices, head)
    elif head is not None:
        sequences = read_fitted(store, tap, indices, head)
    else:
        features = store.read(tap, ids)
        sequences = [features[v] for v in ids]
    sets, at = {}, 0
    for role in roles:
        n = len(rows[role])
        if role in labels_only:
            part = None
        elif isinstance(sequences, StoreSequences):
            part = StoreSequences(store, tap, indices[at : at + n], head)
        else:
            part = sequences[at : at + n]
        sets[role] = VideoSet(rows[role].video_id.tolist(), part, multi_hot(rows[role].labels, classes), rows[role].domain.tolist())
        at += 0 if part is None else n
    return Sets(classes, excluded, sets)


def should_stream(store: FeatureStore, manifest: pd.DataFrame, tap: str, head: HeadSettings,
                  indices: np.ndarray | None = None) -> bool:
    """True when the fitted float16 frames of the videos at store positions `indices` (None:
    every store video) exceed half the available memory."""
    start, stop = store.columns(tap)
    lengths = store.lengths if indices is None else store.lengths[np.asarray(indices, dtype=np.int64)]
    needed = int(np.minimum(lengths, head.max_length).sum()) * (stop - start) * 2
    return needed > available_memory() // 2


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
    stream: bool | None = None,
) -> list[Path]:
    """Train one head per seed; write `seed{k}.safetensors` + `.json` and `history.csv`.

    The store is opened and its tap read once for all seeds (train and val videos only, fitted
    float16). The JSON records the classes, the feature width and tap, the store's settings
    hash and the full extraction identity (`extraction`: decode/extraction/weights blocks, as
    packed into the store), so `actiondiff predict` can extract new videos the same way.
    Args:
        stream: read the tap per batch from the store instead of into memory (same results,
            slower); None: only when it would not fit (`should_stream`).
    """
    store = FeatureStore(store_path)
    if (head.kind == "aggregate") != (tap == ALL_TAPS):
        raise ValueError(f"Expected tap {ALL_TAPS!r} for head.kind aggregate (and only for it), but got tap {tap!r} and kind {head.kind!r}.")
    if stream is None:
        stream = should_stream(store, manifest, tap, head)
    if stream:
        log.warning("tap %s of %s does not fit in memory: training streams it from the store", tap, store_path)
    sets = load_sets(store, manifest, tap, protocol, roles=("train", "val"), head=head, stream=stream)
    out_dir = Path(out_dir)
    train, val = sets["train"], sets["val"]
    if not len(train.sequences):
        raise ValueError(
            f"Expected training videos with features in {store_path}, but got none "
            f"({len(sets.excluded)} of the protocol's videos have no features). Check the protocol and the extraction."
        )
    paths, histories = [], []
    for seed in seeds:
        seeded = with_seed(settings, seed)
        layout = store.attrs["tap_columns"] if tap == ALL_TAPS else None  # the aggregate head's input
        model, history = train_head(
            (train.sequences, train.targets), (val.sequences, val.targets), head, seeded, device=device, tap_columns=layout
        )
        path = out_dir / f"seed{seed}.safetensors"
        epoch, selection = selected_epoch(history)
        info = checkpoint_info(
            head,
            seeded,
            classes=sets.classes,
            settings_hash=store.attrs["settings_hash"],
            extraction=store.attrs.get("settings"),
            backbone=store.attrs.get("backbone"),
            tap=tap,
            **({"tap_columns": layout} if layout else {}),
            width=int(train.sequences[0].shape[1]),
            protocol=protocol.name,
            num_train_videos=len(train.video_id),
            num_val_videos=len(val.video_id),
            best_val_score=max(row["val_score"] for row in history) if selection == "best_val" else None,
            epoch_selection=selection,
            selected_epoch=epoch,
            excluded_videos=sets.excluded,
        )
        save_checkpoint(model, path, info)
        histories += [{"seed": seed, **row} for row in history]
        paths.append(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(histories).to_csv(out_dir / "history.csv", index=False)
    return paths


# --------------------------------------------------------------------------- evaluation


def _mean_std(rows: list[dict[str, float]]) -> dict[str, MeanStd]:
    """{metric: MeanStd} over seeds: the sample std (ddof 1, as papers report spread over
    seeds), 0 for one seed."""
    def spread(values: list[float]) -> float:
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    return {name: MeanStd(float(np.mean([r[name] for r in rows])), spread([r[name] for r in rows])) for name in rows[0]}


def most_frequent_class(train_targets: np.ndarray, test_targets: np.ndarray, test_domains: list[str],
                        classes: list[str]) -> Baseline:
    """The most-frequent-class baseline of the training side, scored on the test side.

    Args:
        train_targets: [n_train, classes] multi-hot targets of the training videos.
        test_targets: [n_test, classes] multi-hot targets of the test videos.
        test_domains: the n_test videos' domains.
        classes: the class names.
    Returns:
        every metric (%, scoring each test video with the training class frequencies, so top-1
        picks the most frequent class, the first on ties), per-domain top-1 accuracy (%), and
        the most frequent class's name.
    """
    probs = most_frequent_class_probs(train_targets, len(test_targets))  # [n_test, classes]
    return Baseline(
        class_name=classes[int(probs[0].argmax())],
        metrics=all_metrics(probs, test_targets),
        per_domain=per_group_accuracy(probs, test_targets, test_domains),
    )


def evaluate_run(store_path: str | Path, manifest: pd.DataFrame, protocol: ProtocolSettings,
                 checkpoints: list[str | Path], run: dict[str, Any] | None = None) -> Evaluation:
    """Out-of-domain (test) and in-domain (val) evaluation of one run, with its baseline.

    The store is opened once and the run's tap is read once (val and test videos only, fitted
    to the head's `max_length`, streamed when they would not fit; training videos give only
    their labels, from the manifest); each checkpoint then scores the test and the val videos
    once. Per class AP / accuracy and per domain accuracy are means over seeds, the confusion
    matrix a sum.
    Raises:
        ValueError: no checkpoint; checkpoints of several taps; a checkpoint trained on features
            of other settings than the store's, or on other classes than the manifest's.
    """
    if not checkpoints:
        raise ValueError("Expected at least one checkpoint to evaluate, but got none.")
    store = FeatureStore(store_path)
    loaded = [(path, *load_checkpoint(path, expected_hash=store.attrs["settings_hash"])) for path in checkpoints]
    taps = sorted({info["tap"] for _, _, info in loaded})
    if len(taps) != 1:
        raise ValueError(f"Expected the checkpoints of one run to share one tap, but got {taps} ({[str(p) for p in checkpoints]}).")
    per_seed, domain_rows, class_tables, confusion = [], [], [], None
    val_seed, val_domains = [], []
    # older checkpoints recorded no rule: they chose the best epoch on validation
    selections = sorted({info.get("epoch_selection", "best_val") for _, _, info in loaded})
    sets, fitting = None, None
    for path, model, info in loaded:
        head = from_dict(HeadSettings, info["head"], f"checkpoint {path}")
        if (head.max_length, head.long_policy) != fitting:  # the seeds of one run share it: one read
            # Val and test videos fitted as `predict` fits them (the same numbers as whole
            # sequences); training videos give only their labels (the baseline).
            sets = test = val = None
            sets = load_sets(store, manifest, taps[0], protocol, roles=ROLES, head=head, stream=None, labels_only=("train",))
            test, val, fitting = sets["test"], sets["val"], (head.max_length, head.long_policy)
        if sets.classes != info["classes"]:
            raise ValueError(
                f"Expected the manifest's classes to be the {len(info['classes'])} classes {path} was "
                f"trained on, but got {sets.classes}."
            )
        seed, multilabel = info["train"]["seed"], info["train"]["multilabel"]
        probs = predict(model, test.sequences, head, multilabel)
        per_seed.append(all_metrics(probs, test.targets))
        for domain, value in per_group_accuracy(probs, test.targets, test.domain).items():
            domain_rows.append({"seed": seed, "domain": domain, "top1_accuracy": value})
        class_tables.append(per_class_table(probs, test.targets, sets.classes).assign(seed=seed))
        matrix = confusion_matrix(probs, test.targets)
        confusion = matrix if confusion is None else confusion + matrix
        if len(val.video_id):  # in-domain: held-out clips of the training domains, if any
            val_probs = predict(model, val.sequences, head, multilabel)
            val_seed.append(all_metrics(val_probs, val.targets))
            for domain, value in per_group_accuracy(val_probs, val.targets, val.domain).items():
                val_domains.append({"seed": seed, "domain": domain, "top1_accuracy": value})
    # The baseline: the training side's (train + val) most frequent class for every test video.
    train_side = np.concatenate([sets["train"].targets, val.targets])
    per_class = pd.concat(class_tables).groupby("class", sort=False)[["positives", "ap", "top1_accuracy"]].mean()
    return Evaluation(
        tap=taps[0],
        settings_hash=store.attrs["settings_hash"],
        classes=sets.classes,
        metrics=_mean_std(per_seed),
        per_seed=per_seed,
        per_domain=domain_rows,
        per_class=[
            {"class": name, "positives": int(row.positives), "ap": _none_if_nan(row.ap), "top1_accuracy": _none_if_nan(row.top1_accuracy)}
            for name, row in per_class.iterrows()
        ],
        confusion=confusion.tolist(),
        num_test_videos=len(test.video_id),
        excluded_videos=sets.excluded,
        baseline=most_frequent_class(train_side, test.targets, test.domain, sets.classes),
        in_domain=RoleEvaluation(_mean_std(val_seed), val_domains, len(val.video_id)) if val_seed else None,
        class_counts=domain_class_counts(manifest, protocol, sets.classes),
        protocol={**to_dict(protocol), "metrics": list(protocol.spec.metrics), "headline_metric": protocol.headline_metric},
        run=dict(run or {}),
        epoch_selection="+".join(selections),
    )


def domain_class_counts(manifest: pd.DataFrame, protocol: ProtocolSettings, classes: list[str]) -> dict[str, list[int]]:
    """{domain: [classes] number of clips with each action} over the videos the protocol uses."""
    roles = assign_roles(manifest, protocol)
    used = manifest[roles != ""]
    targets = multi_hot(used.labels, classes)
    return {
        str(domain): targets[(used.domain == domain).to_numpy()].sum(axis=0).astype(int).tolist()
        for domain in sorted(set(used.domain))
    }


def _none_if_nan(value: float) -> float | None:
    """JSON has no NaN: a class without positives gets null."""
    return None if np.isnan(value) else float(value)


def write_json(data: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_evaluation(evaluation: Evaluation, path: str | Path) -> None:
    """The evaluation JSON that the report reads back with `Evaluation.read`."""
    write_json(evaluation.to_json(), path)
