"""Results tables and figures, rendered from an evaluation JSON (no features needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actiondiff.learn.results import Evaluation  # noqa: E402
from actiondiff.report.html_tables import write_csv  # noqa: E402
from actiondiff.report.labels import shorten  # noqa: E402
from actiondiff.report.tables import cell_text, seeds_text  # noqa: E402


def run_metrics_table(evaluation: Evaluation) -> pd.DataFrame:
    """One row per metric: mean and std over seeds, with the metric's unambiguous label."""
    rows = []
    for name, value in evaluation.metrics.items():
        rows.append(
            {
                "metric": name,
                "description": evaluation.metric_labels[name],
                "mean": round(value.mean, 2),
                "sample std": round(value.std, 2),
                "seeds": len(evaluation.per_seed),
                "test_videos": evaluation.num_test_videos,
                "feature": evaluation.tap,
            }
        )
    return pd.DataFrame(rows)


def error_bar_note(seeds: int) -> str:
    """What a bar's error bar is, for a figure's title."""
    return "error bar: sample std over seeds" if seeds > 1 else "one seed: no error bar"


def plot_per_domain(evaluation: Evaluation, path: str | Path, chance: float) -> None:
    """Bar chart of held-out-domain top-1 accuracy (mean +- sample std over seeds, each bar
    labelled with its mean) with chance level; the title names the tap, seeds and error bar."""
    frame = pd.DataFrame(evaluation.per_domain).groupby("domain")["top1_accuracy"].agg(["mean", "std"]).fillna(0)
    seeds = len(evaluation.per_seed)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    bars = ax.bar(range(len(frame)), frame["mean"], yerr=frame["std"] if seeds > 1 else None, capsize=4, color="#4C72B0")
    ax.bar_label(bars, labels=[cell_text(m) for m in frame["mean"]], padding=3, fontsize=9)
    ax.set_xticks(range(len(frame)), [shorten(d, 32) for d in frame.index], rotation=15, ha="right")
    ax.axhline(chance, color="grey", linestyle="--", label=f"chance ({cell_text(chance)}%)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Unseen-domain accuracy ({evaluation.tap}, mean over {seeds_text([seeds])})\n{error_bar_note(seeds)}",
                 fontsize=10)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(evaluation: Evaluation, path: str | Path) -> None:
    """Confusion matrix summed over seeds, rows normalised to the true class."""
    matrix = np.asarray(evaluation.confusion, dtype=float)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    classes = [shorten(c, 32) for c in evaluation.classes]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(normalised):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(f"Confusion on unseen domains\n{evaluation.tap}, summed over {seeds_text([len(evaluation.per_seed)])}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(evaluation_path: str | Path, table: str | Path, markdown: str | Path, figure: str | Path, confusion: str | Path) -> None:
    """Write the results table (CSV + Markdown) and the figures of one evaluation."""
    evaluation = Evaluation.read(evaluation_path)
    frame = run_metrics_table(evaluation)
    for path in (markdown, figure, confusion):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_csv(frame, table, title=f"metrics of {evaluation.tap}")
    Path(markdown).write_text(frame.to_markdown(index=False) + "\n")
    plot_per_domain(evaluation, figure, chance=100.0 / len(evaluation.classes))
    plot_confusion(evaluation, confusion)
