"""How a video's score relates to its window scores (README "Action timelines"; issue 28).

Renders longer clips of the demo's held-out domain than the demo trains on, extracts them with a
trained head's own feature settings (`predict`'s path), and prints for each clip's true action:
the whole-video score (the evaluated prediction), each window's score, and the score of the whole
video subsampled to the training clips' length. Run on a finished demo's seed-0 head:

Run:  PYTHONPATH=src python benchmarks/video_vs_window_scores.py
      results/models/demo/actiondiff/main/L09_T20/seed0.safetensors [--frames 300] [--seed 7]
      (in the demo's working folder; prints one line per clip). It runs the workflow's portable
      CPU kernels, as the demo's jobs did (README "Numbers that reproduce"), on one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from actiondiff.tools.cpu_kernels import kernel_mode, pin_cpu_kernels, portable_env
from actiondiff.tools.demo_data import DOMAINS, render_clip, write_mp4
from actiondiff.tools.predict import build_extractor, load_classifier, window_rows

TRAINING_LENGTH = 25  # the demo's clips: one 25-frame window each


def score_clip(classifier, extractor, action: str, frames: int, seed: int, folder: Path) -> str:
    """One rendered clip of the held-out domain doing `action`: its scores for `action`, as a line."""
    path = folder / f"{action}_{frames}.mp4"
    write_mp4(render_clip(DOMAINS[-1], action, frames, 64, np.random.default_rng(seed)), path)
    features = extractor.extract_video(path, path.stem)
    sequence = classifier.sequence(features)
    index = classifier.classes.index(action)
    video = classifier.scores([sequence])[0][index]
    windows = window_rows(path.stem, features, classifier)[action].to_numpy()
    uniform = np.linspace(0, len(sequence) - 1, TRAINING_LENGTH).round().astype(int)
    subsampled = classifier.scores([sequence[uniform]])[0][index]
    return (f"{action}: {frames} frames, {len(sequence)} kept; video {video:.3f}; windows "
            f"{', '.join(f'{w:.3f}' for w in windows)}; whole video subsampled to {TRAINING_LENGTH} frames "
            f"{subsampled:.3f} (head max_length {classifier.head.max_length})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a trained demo head (.safetensors with its .json)")
    parser.add_argument("--frames", type=int, default=300, help="rendered frames per clip (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="the clips' random seed (default 7)")
    args = parser.parse_args()
    if kernel_mode() != "portable":  # NumPy reads its variable at import: start again with them set
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **portable_env(), "OMP_NUM_THREADS": "1"})
    pin_cpu_kernels()
    classifier = load_classifier(args.checkpoint)
    extractor = build_extractor(classifier)
    with tempfile.TemporaryDirectory() as folder:
        for action in ("pulse", "cross"):
            print(score_clip(classifier, extractor, action, args.frames, args.seed, Path(folder)))


if __name__ == "__main__":
    main()
