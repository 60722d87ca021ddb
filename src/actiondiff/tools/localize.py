"""Where in the frame an action happens (Fig. S11): classify fixed patches over time.

The video is cut into a grid of fixed patches (e.g. 4x4); each patch, followed through the
whole video, is resized to the backbone's input size and goes through the same extraction and
head as a whole video. The chosen class's score per patch is drawn as a heatmap over a frame.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from actiondiff.features.svd_extractor import SVDExtractor
from actiondiff.features.windows import content_key, video_seed
from actiondiff.io.video import iter_frames, resize_frame
from actiondiff.settings import DecodeSettings, WeightsSettings
from actiondiff.tools.predict import Classifier, build_extractor, load_classifier

log = logging.getLogger(__name__)


def parse_grid(text: str) -> tuple[int, int]:
    """"4x4" -> (rows, columns).

    Raises:
        ValueError: not of the form RxC with R, C >= 1.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"Expected `--grid` to be ROWSxCOLUMNS such as 4x4, but got {text!r}.")
    return int(match[1]), int(match[2])


def patch_bounds(height: int, width: int, grid: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (top, bottom, left, right) of the grid's patches, row by row.

    Boundaries are rounded from an even split, so the patches tile the frame exactly.
    """
    rows = np.linspace(0, height, grid[0] + 1).round().astype(int)
    cols = np.linspace(0, width, grid[1] + 1).round().astype(int)
    return [(rows[r], rows[r + 1], cols[c], cols[c + 1]) for r in range(grid[0]) for c in range(grid[1])]


def crop_windows(path: str | Path, decode: DecodeSettings, box: tuple[int, int, int, int] | None) -> Iterator[torch.Tensor]:
    """Windows [f, 3, H, W] float32 in [-1, 1] of the kept frames cropped to `box`
    (top, bottom, left, right; None = whole frame), then resized as `decode` says."""
    frames: list[torch.Tensor] = []
    for _, _, rgb in iter_frames(path, decode):
        crop = rgb if box is None else rgb[box[0] : box[1], box[2] : box[3]]
        frames.append(resize_frame(crop, decode))
        if len(frames) == decode.window:
            yield torch.stack(frames)  # f x [3, H, W] -> [f, 3, H, W]
            frames = []
    if frames:
        yield torch.stack(frames)


@torch.inference_mode()
def patch_features(
    path: str | Path, extractor: SVDExtractor, tap: str, box: tuple[int, int, int, int] | None
) -> np.ndarray:
    """One tap's features [num_frames, d] float32 of a cropped video (box None: whole frame).

    Each patch draws its noise from its own generator, seeded from the video's content and the
    box (the whole frame: from the content alone, exactly as `extract_video`), so results do
    not depend on the order patches are processed in.
    """
    key = content_key(path)
    name = key if box is None else f"{key}#patch{tuple(int(v) for v in box)}"
    generator = torch.Generator(device="cpu").manual_seed(video_seed(name, extractor.extract))
    parts = [extractor.extract_window(window, generator)[tap] for window in crop_windows(path, extractor.decode, box)]
    return np.concatenate(parts)


def kept_frame(path: str | Path, decode: DecodeSettings, index: int) -> np.ndarray:
    """The `index`-th kept frame (decode order) as [h, w, 3] uint8, at the video's own size."""
    kept = -1
    for kept, (_, _, rgb) in enumerate(iter_frames(path, decode)):
        if kept == index:
            return rgb
    raise ValueError(f"Expected video {str(path)!r} to have more than {index} kept frames, but it has {kept + 1}.")


def localize(
    video: str | Path,
    checkpoint: str | Path,
    grid: tuple[int, int] = (4, 4),
    class_name: str | None = None,
    device: str = "cpu",
    weights: WeightsSettings | None = None,
) -> tuple[np.ndarray, str, np.ndarray, Classifier]:
    """Score every grid patch of a video for one class.

    Args:
        class_name: the class to map; None = the whole video's top-1 class.
    Returns:
        (scores [rows, columns] float32 of the class per patch, the class name, the middle
        kept frame [h, w, 3] uint8, the classifier).
    Raises:
        ValueError: `class_name` is not one of the model's classes.
    """
    classifier = load_classifier(checkpoint, weights)
    if class_name is not None and class_name not in classifier.classes:
        raise ValueError(f"Expected `--class` to be one of {classifier.classes}, but got {class_name!r}.")
    extractor = build_extractor(classifier, device)
    video_id = Path(video).stem
    # 1. the whole frame: the video's prediction and the number of kept frames
    whole = patch_features(video, extractor, classifier.tap, None)  # [num_frames, d]
    video_scores = classifier.scores([whole], device)[0]
    chosen = class_name or classifier.classes[int(video_scores.argmax())]
    index = classifier.classes.index(chosen)
    log.info("video %s: top-1 %s; mapping %s", video_id, classifier.classes[int(video_scores.argmax())], chosen)
    # 2. every patch through the same extraction and head
    middle = kept_frame(video, classifier.decode, whole.shape[0] // 2)
    boxes = patch_bounds(middle.shape[0], middle.shape[1], grid)
    scores = np.zeros(len(boxes), dtype=np.float32)
    for i, box in enumerate(boxes):
        patch = patch_features(video, extractor, classifier.tap, box)
        scores[i] = classifier.scores([patch], device)[0, index]
    return scores.reshape(grid), chosen, middle, classifier


def plot_heatmap(frame: np.ndarray, scores: np.ndarray, class_name: str, path: str | Path, title: str = "") -> None:
    """Draw the patch scores [rows, columns] over the frame [h, w, 3] as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    height, width = frame.shape[:2]
    fig, ax = plt.subplots(figsize=(6, 6 * height / width + 0.6))
    ax.imshow(frame)
    image = ax.imshow(scores, cmap="inferno", alpha=0.55, extent=(0, width, height, 0), vmin=0.0, vmax=1.0, interpolation="nearest")
    for (r, c), value in np.ndenumerate(scores):
        y = (r + 0.5) * height / scores.shape[0]
        x = (c + 0.5) * width / scores.shape[1]
        ax.text(x, y, f"{value:.2f}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label=f"score of {class_name!r}")
    ax.set_title(title or f"{class_name}: score per patch")
    ax.set_axis_off()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scores_table(scores: np.ndarray, class_name: str, video: str | Path) -> pd.DataFrame:
    """The heatmap as rows: video, class, row, column, score."""
    return pd.DataFrame(
        [{"video": str(video), "class": class_name, "row": r, "column": c, "score": float(v)} for (r, c), v in np.ndenumerate(scores)]
    )

