"""Classify new videos with a trained head: extract exactly as at training time, then score.

A checkpoint's JSON records the full extraction identity of the features the head was trained
on (`extraction`: the decode / extraction / weights blocks packed into the store) and their
settings hash. Prediction rebuilds the `SVDExtractor` from that identity, so a new video gets
the same features a training video got; features of any other settings are refused.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.io.video import VideoError
from actiondiff.learn.head import HeadSettings
from actiondiff.learn.hub import load_model
from actiondiff.learn.train import check_settings_hash, predict
from actiondiff.settings import (
    ALL_TAPS,
    DecodeSettings,
    ExtractSettings,
    WeightsSettings,
    _check_min,
    _doc,
    from_dict,
)
from actiondiff.store.records import VideoFeatures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictSettings:
    """How `actiondiff predict` runs and reports."""

    top_k: int = _doc(5, "classes listed per video, best first")
    device: str = _doc("cpu", "where the backbone and the head run: cpu | cuda | cuda:N")

    def __post_init__(self) -> None:
        _check_min("top_k", self.top_k, 1)


@dataclass
class Classifier:
    """A trained head plus everything needed to feed it: settings, classes, the tap it reads."""

    model: nn.Module
    info: dict[str, Any]
    head: HeadSettings
    decode: DecodeSettings
    extract: ExtractSettings
    weights: WeightsSettings

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    @property
    def multilabel(self) -> bool:
        return bool(self.info["train"]["multilabel"])

    @property
    def tap(self) -> str:
        return str(self.info["tap"])

    def sequence(self, features: VideoFeatures) -> np.ndarray:
        """[num_frames, width] what the head reads of a video: its tap, or (aggregate head)
        every tap side by side in the store's column order."""
        return tap_sequence(features.features, self.tap, self.info.get("tap_columns"))

    def scores(self, sequences: list[np.ndarray], device: str = "cpu") -> np.ndarray:
        """Probabilities [n, classes] float32 of sequences [n_i, d] (sigmoid or softmax)."""
        return predict(self.model.to(device), sequences, self.head, self.multilabel, device=device)


def tap_sequence(features: dict[str, np.ndarray], tap: str, tap_columns: dict[str, list[int]] | None) -> np.ndarray:
    """One tap of per-tap features, or for `ALL` every tap of `tap_columns`, side by side.

    Raises:
        KeyError: a tap the head reads is not among the features (named).
    """
    taps = sorted(tap_columns, key=lambda t: tap_columns[t][0]) if tap == ALL_TAPS and tap_columns else [tap]
    missing = [t for t in taps if t not in features]
    if missing:
        raise KeyError(f"Expected features of taps {missing} (what the head reads), but got only {sorted(features)}.")
    return features[taps[0]] if len(taps) == 1 else np.concatenate([features[t] for t in taps], axis=1)


def identity_settings(identity: dict[str, Any], where: str) -> tuple[DecodeSettings, ExtractSettings, WeightsSettings]:
    """The settings objects of a stored extraction identity (unknown keys are errors)."""
    from actiondiff.features.backbones import parse_identity

    decode, name, extract, weights = parse_identity(identity, where)
    if name != "svd":
        raise ValueError(
            f"Expected the features of {where} to come from the SVD or SDv2 backbone, but they come from "
            f"{name!r}: `predict` and `localize` rebuild only the SVD extractor so far."
        )
    return decode, extract, weights


def identity_hash(decode: DecodeSettings, extract: ExtractSettings, weights: WeightsSettings) -> str:
    """The settings hash of an SVD extraction, computed as the workflow, `extract` and `pack` do."""
    from actiondiff.features.backbones import feature_hash, feature_identity

    return feature_hash(feature_identity(decode, "svd", extract, weights))


def load_classifier(checkpoint: str | Path, weights: WeightsSettings | None = None) -> Classifier:
    """Load a head and the extraction settings it was trained on.

    Args:
        weights: other locations of the same weight files (e.g. the checkpoint moved to
            another machine). Whichever files are used, their SHA-256 must match the backbone
            identity recorded at training time (when one was recorded).
    Raises:
        ValueError: the checkpoint has no extraction identity (trained before it was
            recorded), the identity does not hash to the recorded settings hash, or the
            substitute weights are other files.
    """
    model, info = load_model(checkpoint)  # a checkpoint file, a model folder or a Hub repo id
    if not info.get("extraction"):
        raise ValueError(
            f"Expected checkpoint {checkpoint} to record the extraction settings (`extraction`), but it "
            f"does not. Retrain it with this version of `actiondiff train`."
        )
    from actiondiff.features.backbones import feature_hash

    identity = info["extraction"]
    decode, extract, recorded = identity_settings(identity, f"checkpoint {checkpoint}")
    check_settings_hash(info, feature_hash(identity, f"checkpoint {checkpoint}"), checkpoint, "its own `extraction` block")
    substitutes = weights is not None
    weights = weights or located_weights(recorded, checkpoint)
    if identity.get("weights_sha256"):
        check_weights_content(identity["weights_sha256"], weights, checkpoint)
    elif substitutes or recorded_checksums(info):  # trained before identities held the content
        check_same_weight_files(info, weights, checkpoint)
    head = from_dict(HeadSettings, info["head"], f"checkpoint {checkpoint}")
    return Classifier(model, info, head, decode, extract, weights)


def located_weights(recorded: WeightsSettings, checkpoint: str | Path) -> WeightsSettings:
    """The recorded weight locations, each relative path looked up from the checkpoint's folder
    upwards (the workflow folder holds both `results/models/...` and `resources/weights/...`),
    so `predict` works from any working directory. A path found nowhere (a hub id, an OpenCLIP
    model name) stays as recorded, and the loader names it if it is missing."""
    folders = Path(checkpoint).resolve().parents
    found = {}
    for item in dataclasses.fields(recorded):
        value = getattr(recorded, item.name)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            value = next((str(folder / value) for folder in folders if (folder / value).exists()), value)
        found[item.name] = value
    return dataclasses.replace(recorded, **found)


def recorded_checksums(info: dict[str, Any]) -> list[str]:
    """Sorted SHA-256 of the backbone's weight files, as recorded in the store at pack time."""
    return sorted(((info.get("backbone") or {}).get("files") or {}).values())


def check_weights_content(recorded: dict[str, str], weights: WeightsSettings, checkpoint: str | Path) -> None:
    """Refuse weights (replaced in place, or substitutes at other paths) whose content differs
    from the identity the head was trained on: the same files are what the identity names."""
    from actiondiff.features.backbones import weight_checksums

    actual = weight_checksums("svd", weights)
    changed = sorted(role for role in {*recorded, *actual} if recorded.get(role) != actual.get(role))
    if changed:
        raise ValueError(
            f"Expected the weights at {weights.svd!r} (and the conditioning at {weights.clip_checkpoint or weights.svd!r}) "
            f"to be the files {checkpoint} was trained with (same SHA-256), but {changed} differ. Features of "
            f"other weights are other settings: re-extract and retrain, or point --svd etc. at the training weights."
        )


def check_same_weight_files(info: dict[str, Any], weights: WeightsSettings, checkpoint: str | Path) -> None:
    """Refuse weight files whose checksums differ from those recorded at training time
    (replaced in place, or substitutes at other paths); substitutes need recorded checksums."""
    from actiondiff.features.backbones import weight_file_checksums

    recorded = recorded_checksums(info)
    actual = sorted(weight_file_checksums("svd", weights).values())
    if not recorded or recorded != actual:
        raise ValueError(
            f"Expected the weights at {weights.svd!r} and {weights.clip_checkpoint!r} to be the files "
            f"{checkpoint} was trained with (same SHA-256), but they differ (or no checksums were "
            f"recorded). Features of other weights are other settings."
        )


def build_extractor(classifier: Classifier, device: str = "cpu") -> SVDExtractor:
    """The frozen extractor with the classifier's decode and extraction settings."""
    return SVDExtractor.from_weights(classifier.weights, classifier.decode, classifier.extract, device)


def window_rows(
    video_id: str, features: VideoFeatures, classifier: Classifier, device: str = "cpu", size: int = 0, hop: int = 0
) -> pd.DataFrame:
    """Per-window scores: the head applied to each window's frames alone.

    Args:
        size, hop: window length and step in kept frames (0: the backbone's windows,
            `decode.window` frames each, one after the other); the last window ends at the
            video's end.
    Returns:
        one row per window: video_id, window, first_frame, last_frame (source indices),
        start_ms, end_ms, then one score column per class.
    """
    sequence = classifier.sequence(features)  # [num_frames, d]
    size = size or classifier.decode.window
    starts = window_starts(sequence.shape[0], size, hop or size)
    scores = classifier.scores([sequence[s : s + size] for s in starts], device)
    rows = pd.DataFrame(
        {
            "video_id": video_id,
            "window": np.arange(len(starts)),
            "first_frame": [int(features.frame_index[s]) for s in starts],
            "last_frame": [int(features.frame_index[min(s + size, sequence.shape[0]) - 1]) for s in starts],
            "start_ms": [float(features.timestamp_ms[s]) for s in starts],
            "end_ms": [float(features.timestamp_ms[min(s + size, sequence.shape[0]) - 1]) for s in starts],
        }
    )
    return pd.concat([rows, pd.DataFrame(scores, columns=classifier.classes)], axis=1)


def window_starts(length: int, size: int, hop: int) -> list[int]:
    """First frames of windows of `size` frames every `hop` frames over `length` frames; with a
    hop below the size the last window is moved to end at the last frame (none cut short)."""
    if hop >= size:
        return list(range(0, length, hop))
    starts = list(range(0, max(length - size, 0) + 1, hop))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def top_k_rows(video_id: str, path: str, scores: np.ndarray, classes: list[str], k: int) -> list[dict[str, Any]]:
    """The k best classes of one video's scores [classes], best first."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        {"video_id": video_id, "path": path, "rank": rank + 1, "class": classes[c], "score": float(scores[c]), "error": ""}
        for rank, c in enumerate(order)
    ]


def predict_videos(
    videos: Iterable[str | Path],
    checkpoint: str | Path,
    settings: PredictSettings = PredictSettings(),
    weights: WeightsSettings | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Extract and classify videos.

    Returns:
        (per-video top-k table: video_id, path, rank, class, score, error; per-window table,
        see `window_rows`). A video that cannot be read gets one row with its error.
    """
    classifier = load_classifier(checkpoint, weights)
    extractor = build_extractor(classifier, settings.device)
    video_rows: list[dict[str, Any]] = []
    windows = []
    for path in videos:
        video_id = Path(path).stem
        try:
            features = extractor.extract_video(path, video_id)
        except VideoError as error:
            log.warning("video %s failed: %s", path, error)
            video_rows.append({"video_id": video_id, "path": str(path), "rank": 0, "class": "", "score": np.nan, "error": str(error)})
            continue
        scores = classifier.scores([classifier.sequence(features)], settings.device)[0]
        video_rows += top_k_rows(video_id, str(path), scores, classifier.classes, min(settings.top_k, len(scores)))
        windows.append(window_rows(video_id, features, classifier, settings.device))
    window_table = pd.concat(windows, ignore_index=True) if windows else pd.DataFrame()
    return pd.DataFrame(video_rows), window_table


# Videos scored per store read by `predict_store`: 16 of `predict`'s batches of 64, so the
# batches (and the scores) are those of one pass over all the videos.
STORE_CHUNK_VIDEOS = 1024


def predict_store(
    store_path: str | Path, video_ids: list[str] | None, checkpoint: str | Path, settings: PredictSettings = PredictSettings()
) -> pd.DataFrame:
    """Top-k classes of videos already in a packed store (refused if its settings differ).

    The tap is streamed: `STORE_CHUNK_VIDEOS` videos at a time, fitted to the head's
    `max_length` as they are read (float16), never the whole tap at once.
    Args:
        video_ids: the videos to score, in this order; None: every video of the store.
    Raises:
        ValueError: the store's settings hash is not the checkpoint's, or a video is not in it.
    """
    from actiondiff.learn.train import read_fitted
    from actiondiff.store.packed import FeatureStore

    store = FeatureStore(store_path)
    model, info = load_model(checkpoint)  # a checkpoint file, a model folder or a Hub repo id
    check_settings_hash(info, store.attrs["settings_hash"], checkpoint, f"store {store_path}")
    head = from_dict(HeadSettings, info["head"], f"checkpoint {checkpoint}")
    ids = list(video_ids or store.video_ids)
    missing = sorted(set(ids) - set(store.video_ids))
    if missing:
        raise ValueError(f"Expected videos {missing[:10]} to be in store {store_path}, but they are not.")
    rows = []
    for at in range(0, len(ids), STORE_CHUNK_VIDEOS):
        chunk = ids[at : at + STORE_CHUNK_VIDEOS]
        sequences = read_fitted(store, info["tap"], store.indices(chunk), head)  # that tap only, float16
        scores = predict(model, sequences, head, info["train"]["multilabel"], device=settings.device)
        for video_id, row in zip(chunk, scores, strict=True):
            rows += top_k_rows(video_id, "", row, info["classes"], min(settings.top_k, len(row)))
    return pd.DataFrame(rows)


def windows_path(out: str | Path) -> Path:
    """Where the per-window table goes beside `out`: preds.csv -> preds.windows.csv."""
    out = Path(out)
    return out.with_name(f"{out.stem}.windows{out.suffix or '.csv'}")

