"""Action timelines: when in a video does the head see each action? (issue 28)

One figure per video: the top classes' window scores over time (each window drawn at its
centre, in seconds), the video score of each drawn class as a dashed line of the same colour,
and the true label(s) when known. Windows come from `predict.window_rows` (the head applied to
each window's frames alone); the video score is the head applied to the whole video, fitted to
its `max_length` as in training and evaluation: not an average of the windows (README.md,
"Classifying new videos", says why the two can differ).

`plot_store_timelines` draws the held-out (test) videos of a protocol straight from a packed
store (the workflow target `plot_timelines`): no video is decoded again.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actiondiff.io.manifest import split_labels  # noqa: E402
from actiondiff.learn.hub import load_model  # noqa: E402
from actiondiff.learn.protocols import ProtocolSettings, assign_roles  # noqa: E402
from actiondiff.settings import HeadSettings, from_dict  # noqa: E402
from actiondiff.store.packed import FeatureStore  # noqa: E402
from actiondiff.store.records import VideoFeatures  # noqa: E402
from actiondiff.tools.predict import Classifier, identity_settings, window_rows  # noqa: E402

WINDOW_COLUMNS = ("video_id", "window", "first_frame", "last_frame", "start_ms", "end_ms")


def centres_s(windows: pd.DataFrame) -> np.ndarray:
    """[windows] each window's centre in seconds, from its first and last kept frame's time."""
    return ((windows["start_ms"] + windows["end_ms"]) / 2000.0).to_numpy()


def drawn_classes(windows: pd.DataFrame, video_scores: pd.Series, truth: list[str], top_k: int) -> list[str]:
    """The classes drawn: the `top_k` best by video score, plus the true ones if not among them."""
    best = video_scores.sort_values(ascending=False, kind="stable").index[:top_k].tolist()
    return best + [c for c in truth if c not in best and c in windows.columns]


def plot_timeline(windows: pd.DataFrame, video_scores: pd.Series, truth: list[str], path: str | Path, top_k: int = 3) -> None:
    """One video's timeline PNG.

    Args:
        windows: `window_rows` of one video (one score column per class).
        video_scores: {class: the video's score}.
        truth: the true label(s); empty when unknown.
    """
    times = centres_s(windows)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    colours = plt.get_cmap("tab10")
    for k, name in enumerate(drawn_classes(windows, video_scores, truth, top_k)):
        colour, true = colours(k % 10), name in truth
        label = f"{name} (video {video_scores[name]:.2f})" + (" = TRUE" if true else "")
        ax.plot(times, windows[name], marker="o", markersize=3, color=colour, linewidth=2.6 if true else 1.4, label=label)
        ax.axhline(video_scores[name], color=colour, linestyle="--", linewidth=0.9)
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    if len(times) == 1:  # one window: a point, not a line
        ax.set_xlim(times[0] - 1, times[0] + 1)
    video = str(windows["video_id"].iloc[0])
    ax.set_title(f"{video}: true {', '.join(truth)}" if truth else f"{video} (true label unknown)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="solid: windows; dashed: video", title_fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def file_name(video_id: str) -> str:
    """A file name for a video id (characters outside [A-Za-z0-9_.-] become `_`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", video_id).strip("_") + ".png"


def plot_all(windows: pd.DataFrame, videos: pd.DataFrame, classes: list[str], truth: dict[str, list[str]],
             out_dir: str | Path, top_k: int = 3) -> list[Path]:
    """A timeline per video of a window table.

    Args:
        windows: `window_rows` of one or more videos.
        videos: one row of scores per video (index: video_id, one column per class).
        truth: {video_id: true labels} (missing: unknown).
    Returns:
        the PNG paths written.
    """
    paths = []
    for video_id, rows in windows.groupby("video_id", sort=False):
        path = Path(out_dir) / file_name(str(video_id))
        plot_timeline(rows, videos.loc[video_id, classes], truth.get(str(video_id), []), path, top_k)
        paths.append(path)
    return paths


def store_features(store: FeatureStore, index: int, tap: str) -> VideoFeatures:
    """The video at store position `index` as `VideoFeatures` holding only `tap` (float32)."""
    start, stop = int(store.offsets[index]), int(store.offsets[index + 1])
    return VideoFeatures(
        store.video_ids[index],
        {tap: store.rows(tap, index).astype(np.float32)},
        np.asarray(store.group["frame_index"][start:stop]),
        np.asarray(store.group["timestamp_ms"][start:stop]),
    )


def plot_store_timelines(store_path: str | Path, manifest: pd.DataFrame, protocol: ProtocolSettings, model: str | Path,
                         out_dir: str | Path, size: int = 0, hop: int = 0, top_k: int = 3) -> list[Path]:
    """Timelines of a protocol's held-out (test) videos, from their features in a packed store.

    Args:
        model: a checkpoint, model folder or Hub repo id trained on the store's features.
        size, hop: windows in kept frames (0: the backbone's windows; see `window_rows`).
    Returns:
        the PNG paths written (one per test video with features).
    """
    from actiondiff.learn.train import check_settings_hash

    store = FeatureStore(store_path)
    head_model, info = load_model(model)
    check_settings_hash(info, store.attrs["settings_hash"], model, f"store {store_path}")
    classifier = Classifier(head_model, info, from_dict(HeadSettings, info["head"], f"model {model}"),
                            *identity_settings(info["extraction"], f"model {model}"))
    test = manifest[(assign_roles(manifest, protocol) == "test") & manifest.video_id.isin(store.position)]
    windows, videos = [], []
    for video_id in test.video_id:
        features = store_features(store, store.position[video_id], classifier.tap)
        windows.append(window_rows(video_id, features, classifier, size=size, hop=hop))
        videos.append(classifier.scores([classifier.sequence(features)])[0])
    scores = pd.DataFrame(videos, columns=classifier.classes, index=test.video_id.tolist())
    truth = {v: split_labels(labels) for v, labels in zip(test.video_id, test.labels, strict=True)}
    return plot_all(pd.concat(windows, ignore_index=True), scores, classifier.classes, truth, out_dir, top_k)
