"""Which tap? The learned layer x timestep mixing against the single taps (issue 28).

Two answers to "which layer and timestep" side by side:
- the aggregate head's learned mixing weights (a softmax over every tap, learned on the
  training side; nothing is chosen on the test set), and
- the grid of one head per tap (Fig. 5), whose best tap can be chosen on the validation clips
  (training side) or, as the paper did, on the test set (optimistic: labelled so).

`tap_comparison` is the table, `plot_mixing` the figure; both read evaluation JSONs, and the
weights are read from the aggregate head's checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actiondiff.learn.results import Evaluation  # noqa: E402
from actiondiff.learn.train import load_checkpoint  # noqa: E402
from actiondiff.report.tables import in_domain_mean  # noqa: E402
from actiondiff.settings import parse_tap  # noqa: E402

PAPER_TAP = "L09_T20"  # the paper's layer 9, timestep index 20
CHOSEN = {
    "learned": "none: every tap, mixing weights learned on the training side",
    "val": "best in-domain (validation clips, training side) of the grid",
    "paper": "fixed by the paper (L9/T20)",
    "fixed": "fixed in the config",
    "test": "best out-of-domain of the grid: chosen on the TEST set (optimistic, as the paper's grid)",
}


def mixing_weights(checkpoints: list[str | Path]) -> pd.DataFrame:
    """The aggregate heads' mixing weights: one row per tap with layer, timestep_index, and the
    weight's mean and sample std over the checkpoints (seeds); weights sum to 1 per seed.

    Raises:
        ValueError: a checkpoint is not an aggregate head.
    """
    per_seed = []
    for path in checkpoints:
        model, info = load_checkpoint(path)
        if info["head"].get("kind") != "aggregate":
            raise ValueError(f"Expected an aggregate head's checkpoint, but {path} holds a {info['head'].get('kind')!r} head.")
        per_seed.append(pd.Series(model.mixing_weights().detach().numpy(), index=model.taps))
    frame = pd.concat(per_seed, axis=1)  # [taps, seeds]
    cells = [parse_tap(t) for t in frame.index]
    return pd.DataFrame({
        "tap": frame.index,
        "layer": [layer for layer, _ in cells],
        "timestep_index": [step for _, step in cells],
        "weight_mean": frame.mean(axis=1).to_numpy(),
        "weight_std": frame.std(axis=1, ddof=1).fillna(0.0).to_numpy() if frame.shape[1] > 1 else 0.0,
        "seeds": frame.shape[1],
    }).sort_values(["layer", "timestep_index"]).reset_index(drop=True)


def _row(name: str, chosen: str, evaluation: Evaluation, metrics: list[str]) -> dict[str, object]:
    row: dict[str, object] = {
        "head": name,
        "experiment": evaluation.run.get("label", ""),
        "tap": evaluation.tap,
        "tap chosen on": CHOSEN[chosen],
        "seeds": len(evaluation.per_seed),
    }
    for metric in metrics:
        row[f"{metric} (%) mean"] = round(evaluation.metrics[metric].mean, 2)
        # a sample std needs two seeds: blank for one (the demo grid's), not a misleading 0
        several = len(evaluation.per_seed) > 1
        row[f"{metric} (%) std"] = round(evaluation.metrics[metric].std, 2) if several else None
    row[f"in-domain {metrics[0]} (%)"] = round(in_domain_mean(evaluation, metrics[0]), 2)
    return row


def tap_comparison(aggregate: Evaluation, grid: list[Evaluation], singles: list[Evaluation]) -> pd.DataFrame:
    """The aggregate head next to single taps, out-of-domain (test) mean and sample std over seeds.

    Rows: the aggregate head; the grid's best tap on validation (when the protocol has a
    validation set); each single-tap run (the paper's L09_T20 named so); the grid's best tap on
    the test set, labelled as chosen on test. Metrics: the protocol's headline first, then
    top-1 accuracy when it is another.

    Raises:
        ValueError: the evaluations mix protocols.
    """
    protocols = {e.protocol["name"] for e in [aggregate, *grid, *singles]}
    if len(protocols) != 1:
        raise ValueError(f"Expected the compared evaluations to share one protocol, but got {sorted(protocols)}.")
    headline = aggregate.protocol["headline_metric"]
    metrics = [headline] + (["top1_accuracy"] if headline != "top1_accuracy" else [])
    rows = [_row("aggregate (learned mixing)", "learned", aggregate, metrics)]
    with_val = [e for e in grid if e.in_domain is not None]
    if with_val:
        best_val = max(with_val, key=lambda e: in_domain_mean(e, headline))
        rows.append(_row("single tap, best on validation", "val", best_val, metrics))
    for evaluation in singles:
        paper = evaluation.tap == PAPER_TAP
        rows.append(_row("single tap, the paper's" if paper else "single tap", "paper" if paper else "fixed", evaluation, metrics))
    if grid and not any(e.tap == PAPER_TAP for e in singles):
        rows += [_row("single tap, the paper's", "paper", e, metrics) for e in grid if e.tap == PAPER_TAP]
    if grid:
        best_test = max(grid, key=lambda e: e.metrics[headline].mean)
        rows.append(_row("single tap, best on TEST (optimistic)", "test", best_test, metrics))
    return pd.DataFrame(rows)


def _heatmap(ax: plt.Axes, frame: pd.DataFrame, column: str, title: str, fmt: str, label: str) -> None:
    """One layer (rows) x timestep (columns) heatmap of `frame[column]`, values written in cells."""
    table = frame.pivot(index="layer", columns="timestep_index", values=column)
    image = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [f"T{t}" for t in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"L{layer}" for layer in table.index])
    ax.set_xlabel("timestep index (0 = noisiest)")
    ax.set_ylabel("UNet layer")
    ax.set_title(title, fontsize=10)
    for (i, j), value in np.ndenumerate(table.to_numpy(dtype=float)):
        if not np.isnan(value):
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=8,
                    color="black" if image.norm(value) > 0.5 else "white")
    ax.figure.colorbar(image, ax=ax, label=label, shrink=0.85)


def plot_mixing(weights: pd.DataFrame, grid: pd.DataFrame | None, metric: str, png: str | Path, pdf: str | Path) -> None:
    """The learned mixing weights (mean over seeds) as a layer x timestep heatmap, beside the
    grid's per-tap out-of-domain `metric` when a grid was run.

    Args:
        weights: `mixing_weights`' table; grid: `report.tables.grid_frame`'s, or None.
    """
    panels = 2 if grid is not None and len(grid) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4), squeeze=False)
    seeds = int(weights["seeds"].iloc[0])
    _heatmap(axes[0, 0], weights, "weight_mean", f"learned mixing weight (mean of {seeds} seeds)", ".2f", "weight")
    if panels == 2:
        _heatmap(axes[0, 1], grid, "out_of_domain", f"one head per tap: out-of-domain {metric} (%)", ".1f", f"{metric} (%)")
    fig.suptitle("Which layer and timestep? Learned mixing vs. the grid of single taps", fontsize=11)
    fig.tight_layout()
    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    plt.close(fig)
