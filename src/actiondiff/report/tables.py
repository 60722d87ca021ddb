"""The paper's tables and figures, from evaluation JSONs alone (no features, no GPU).

| output | paper | from |
|---|---|---|
| results table | Tables 1-3 | one row per run of a protocol + most-frequent-class row + published rows |
| ablation table | Table 4, S5 | one row per ablation run (head, window, loss, conditioning, layer) |
| grid figure | Fig. 5 | layer x timestep heatmaps, in-domain and out-of-domain, best layer per timestep |
| matrix figures | Fig. 4, S12, S13, S15, S16 | domain-to-domain accuracy, action-frequency correlation, baseline, gains |

Every evaluation comes from `actiondiff.learn.run.evaluate_run`; metrics are in percent.
"""

from __future__ import annotations

import html
import json
import textwrap
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from actiondiff.learn.metrics import METRIC_LABELS  # noqa: E402
from actiondiff.learn.results import Evaluation  # noqa: E402
from actiondiff.report.html_tables import html_path, table_page, write_csv  # noqa: E402
from actiondiff.report.labels import shorten  # noqa: E402
from actiondiff.report.paper import (  # noqa: E402
    REFERENCE_BACKBONES,
    REFERENCE_FREQUENCY_RHO,
    REFERENCE_RESULTS,
    display_name,
)
from actiondiff.settings import parse_tap  # noqa: E402

PAPER = "paper (published)"
THIS_RUN = "this run"
BASELINE = "most frequent class (training side)"


def load_evaluations(paths: list[str | Path]) -> list[Evaluation]:
    """The evaluation JSONs written by `actiondiff evaluate-head`, typed."""
    return [Evaluation.read(p) for p in paths]


def metric_column(metric: str, stat: str = "mean") -> str:
    """A column name that says which metric it holds, e.g. `micro_ap (%) mean`."""
    return f"{metric} (%) {stat}"


def _run_columns(evaluation: Evaluation) -> dict[str, Any]:
    run = evaluation.run
    return {
        "experiment": run["label"],
        "backbone": display_name(run.get("backbone", "svd")),
        "variant": run["variant"],
        "feature_set": run["feature_set"],
        "tap": evaluation.tap,
        "head": run["head"],
        "conditioning": run["conditioning"],
        "sdv2": "yes" if run["sdv2"] else "no",
        "window": run["window"],
    }


# The authors' released training code reports the maximum test score over epochs (no validation set).
PAPER_EPOCH = "best epoch on test (authors' code)"
EPOCH_SELECTION = {
    "last": "last epoch (no validation set)",
    "best_val": "best epoch on validation",
}


def epoch_label(evaluation: Evaluation) -> str:
    """How the evaluated heads' epoch was chosen, in words (older evaluations: best on validation)."""
    return " + ".join(EPOCH_SELECTION.get(k, k) for k in evaluation.epoch_selection.split("+"))


def in_domain_mean(evaluation: Evaluation, metric: str) -> float:
    """The in-domain (validation clips) mean of `metric`; NaN when the run had no validation set."""
    return float(evaluation.in_domain.metrics[metric].mean) if evaluation.in_domain else float("nan")


def results_table(evaluations: list[Evaluation]) -> pd.DataFrame:
    """Tables 1-3: the runs of one protocol, its most-frequent-class row and the paper's rows.

    Each run row names its backbone (SVD, SDv2, VideoMAE, V-JEPA 2 or an entry point's name),
    so experiments on feature sets of several backbones give one row per backbone, next to
    the paper's rows of the same backbones.

    Columns: source, experiment, feature columns, and per metric of the protocol (headline
    first) its mean and std over seeds on the test (out-of-domain) videos, the headline's
    in-domain mean (empty without a validation set), the headline's gain over the
    most-frequent-class baseline, and `epoch` (how the head's epoch was chosen: the last one
    when the protocol trains on its whole training side, else the best on validation).

    Raises:
        ValueError: the evaluations mix protocols.
    """
    protocols = {e.protocol["name"] for e in evaluations}
    if len(protocols) != 1:
        raise ValueError(f"Expected evaluations of one protocol per results table, but got {sorted(protocols)}.")
    protocol = evaluations[0].protocol
    metrics = [protocol["headline_metric"], *(m for m in protocol["metrics"] if m != protocol["headline_metric"])]
    headline = metrics[0]
    rows = []
    for evaluation in evaluations:
        row = {"source": THIS_RUN, **_run_columns(evaluation)}
        for metric in metrics:
            row[metric_column(metric)] = evaluation.metrics[metric].mean
            row[metric_column(metric, "sample std")] = evaluation.metrics[metric].std
        row[metric_column(headline, "in-domain mean")] = in_domain_mean(evaluation, headline)
        row[f"{headline} gain over most frequent class"] = (
            evaluation.metrics[headline].mean - evaluation.baseline.metrics[headline]
        )
        row["seeds"] = len(evaluation.per_seed)
        row["test_videos"] = evaluation.num_test_videos
        # videos of the protocol without features (failed extraction; the store's failures.csv)
        row["excluded_videos"] = len(evaluation.excluded_videos)
        row["epoch"] = epoch_label(evaluation)
        rows.append(row)
    baseline = {"source": BASELINE, "experiment": "most frequent class"}
    baseline.update({metric_column(m): evaluations[0].baseline.metrics[m] for m in metrics})
    rows.append(baseline)
    for method, metric, value in REFERENCE_RESULTS.get(protocol["name"], []):
        rows.append({"source": PAPER, "experiment": method, "backbone": REFERENCE_BACKBONES[method],
                     metric_column(metric): value, "epoch": PAPER_EPOCH})
    frame = pd.DataFrame(rows)
    counts = [c for c in INTEGER_COLUMNS if c in frame.columns]
    numeric = frame.select_dtypes("number").columns.difference(counts)
    frame[numeric] = frame[numeric].round(2)
    return with_integer_columns(frame)


# Counts and sizes: written as 3, not 3.0, also in rows (baseline, paper) where they are empty.
INTEGER_COLUMNS = ("seeds", "test_videos", "excluded_videos", "window")


def with_integer_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its count columns as nullable integers (pandas makes them float when a row lacks one)."""
    for column in INTEGER_COLUMNS:
        if column in frame.columns:
            try:
                frame[column] = frame[column].astype("Int64")
            except (TypeError, ValueError):  # a mixed column, e.g. window "checkpoint" of encoder backbones
                frame[column] = frame[column].map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    return frame


def ablation_table(evaluations: list[Evaluation]) -> pd.DataFrame:
    """Table 4 / S5: one row per run, what it varies, and its headline metric in and out of domain."""
    rows = []
    for evaluation in evaluations:
        headline = evaluation.protocol["headline_metric"]
        rows.append({
            "ablation": evaluation.run["ablation"] or "baseline",
            **_run_columns(evaluation),
            "protocol": evaluation.protocol["name"],
            "metric": METRIC_LABELS[headline],
            "out-of-domain mean": round(evaluation.metrics[headline].mean, 2),
            "out-of-domain sample std": round(evaluation.metrics[headline].std, 2),
            "in-domain mean": round(in_domain_mean(evaluation, headline), 2),
            "most frequent class": round(evaluation.baseline.metrics[headline], 2),
            "epoch": epoch_label(evaluation),
        })
    return with_integer_columns(pd.DataFrame(rows))


def write_table(frame: pd.DataFrame, csv: str | Path, markdown: str | Path) -> None:
    """The table as CSV, as its HTML page next to the CSV (`html_tables.write_csv`) and as Markdown."""
    Path(markdown).parent.mkdir(parents=True, exist_ok=True)
    write_csv(frame, csv)
    shown = frame.astype(object).where(frame.notna(), "")  # blank cells, not "nan"
    Path(markdown).write_text(shown.to_markdown(index=False) + "\n")


def _save(fig: plt.Figure, png: str | Path, pdf: str | Path) -> None:
    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    fig.savefig(pdf)  # vector
    plt.close(fig)


# --------------------------------------------------------------------------- Fig. 5 grid


def grid_frame(evaluations: list[Evaluation], metric: str) -> pd.DataFrame:
    """Long table: layer, timestep_index, in-domain and out-of-domain mean of `metric` (and the
    out-of-domain sample std) over the tap's `seeds`."""
    rows = []
    for evaluation in evaluations:
        layer, timestep = parse_tap(evaluation.tap)
        rows.append({
            "layer": layer,
            "timestep_index": timestep,
            "in_domain": in_domain_mean(evaluation, metric),
            "out_of_domain": evaluation.metrics[metric].mean,
            "out_of_domain_std": evaluation.metrics[metric].std,
            "seeds": len(evaluation.per_seed),
        })
    return pd.DataFrame(rows).sort_values(["layer", "timestep_index"]).reset_index(drop=True)


def cell_text(value: float, decimals: int = 1) -> str:
    """A figure's number as the CSVs hold it, rounded half up to `decimals` ("42.5", "17.5",
    "66.7"; a whole number without ".0": "45"). Python's and matplotlib's own formatting round
    half to even, which would print 42.5 as "42" beside a CSV saying 42.5."""
    text = str(Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))
    return text[:-2] if decimals == 1 and text.endswith(".0") else text


def seeds_text(counts: list[int] | pd.Series) -> str:
    """"3 seeds", "1 seed" or "1-3 seeds" for the seed counts of the runs a figure shows."""
    low, high = int(min(counts)), int(max(counts))
    return f"{low} seed" if high == 1 else f"{low}-{high} seeds" if low != high else f"{low} seeds"


def text_colour(image: Any, value: float) -> str:
    """Black or white, whichever reads on the cell's colour: black where its sRGB-weighted
    luminance is above 0.4 (the yellow end of viridis), white on the dark end."""
    red, green, blue, _ = image.cmap(image.norm(value))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return "black" if luminance > 0.4 else "white"


# Fig. 5's panels: column of `grid_frame`, short name, panel title, and why it can hold no value.
GRID_PANELS = (
    ("in_domain", "in-domain", "in-domain (held-out clips of training domains)",
     "no validation set (protocol.val_fraction 0 and no rows marked val)"),
    ("out_of_domain", "out-of-domain", "out-of-domain (test domains)", "no test metric"),
)


def plot_grid(frame: pd.DataFrame, metric: str, png: str | Path, pdf: str | Path, title: str = "") -> list[str]:
    """Fig. 5: per evaluation (in-domain, out-of-domain) a layer x timestep heatmap of the metric
    (both on one colour range; the title names the seeds) and, under it, the best-over-layers
    metric per timestep.

    A panel without a single value (in-domain, when the runs had no validation set) is left
    out rather than drawn blank, and the title says why.
    Returns:
        one "<panel> panel not drawn: <why>" line per left-out panel (empty when both are drawn).
    Raises:
        ValueError: neither panel has a value (the figure would be empty).
    """
    drawn = [panel for panel in GRID_PANELS if frame[panel[0]].notna().any()]
    notes = [f"{short} panel not drawn: {why}" for key, short, _, why in GRID_PANELS if frame[key].isna().all()]
    if not drawn:
        raise ValueError(f"Expected {METRIC_LABELS[metric]} values to draw the grid from, but every tap's is empty "
                         f"({', '.join(notes)}; {len(frame)} taps).")
    fig, axes = plt.subplots(2, len(drawn), figsize=(5 * len(drawn), 6.5), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.4]})
    # one colour range for both panels: the same colour is the same accuracy left and right
    values = frame[[key for key, *_ in drawn]].to_numpy(dtype=float)
    vmin, vmax = np.nanmin(values), np.nanmax(values)
    for col, (key, _, name, _) in enumerate(drawn):
        grid = frame.pivot(index="layer", columns="timestep_index", values=key)  # [layers, timesteps]
        ax = axes[0, col]
        image = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_xlabel("timestep index (0 = noisiest)")
        ax.set_ylabel("UNet layer")
        ax.set_title(name, fontsize=10)
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(value):  # a tap without a value stays a blank cell, not "nan"
                ax.text(j, i, cell_text(value), ha="center", va="center", color=text_colour(image, value), fontsize=8)
        fig.colorbar(image, ax=ax, label=METRIC_LABELS[metric])
        best = grid.max(axis=0)
        line = axes[1, col]
        line.plot(range(len(best)), best.to_numpy(), marker="o")
        line.set_xticks(range(len(best)), best.index)
        line.set_xlabel("timestep index")
        line.set_ylabel("best over layers")
        line.grid(alpha=0.3)
    heading = title or f"Layer x timestep grid: {METRIC_LABELS[metric]}"
    heading += f"\neach cell one tap (layer, timestep), mean over {seeds_text(frame['seeds'])}"
    # notes wrapped to the figure's width: one panel is 5 inches, about 60 characters at 10 pt
    wrapped = [line for note in notes for line in textwrap.wrap(note, 60 * len(drawn))]
    fig.suptitle("\n".join([heading, *wrapped]), fontsize=10 if notes else None)
    fig.tight_layout()
    _save(fig, png, pdf)
    return notes


# --------------------------------------------------------------------------- Fig. 4, S12-S16


def domain_matrices(evaluations: list[Evaluation]) -> dict[str, pd.DataFrame]:
    """Square [train domain, test domain] top-1 accuracy matrices (%), mean over seeds.

    Returns `accuracy` (diagonal: in-domain held-out clips), `baseline` (most frequent class of
    the training domain), `gain` (accuracy - baseline) and `frequency_correlation` (Pearson
    correlation of two domains' action-frequency vectors; NaN when one is constant).
    """
    domains: list[str] = []
    counts: dict[str, np.ndarray] = {}
    for evaluation in evaluations:
        domains += [d for d in evaluation.protocol["train_domains"] if d not in domains]
        for domain, values in evaluation.class_counts.items():
            counts.setdefault(domain, np.asarray(values, dtype=float))
    accuracy = pd.DataFrame(np.nan, index=domains, columns=domains)
    baseline = accuracy.copy()
    for evaluation in evaluations:
        (source,) = evaluation.protocol["train_domains"]
        out = pd.DataFrame(evaluation.per_domain).groupby("domain")["top1_accuracy"].mean()
        inside_rows = (evaluation.in_domain.per_domain if evaluation.in_domain else None) or [{"domain": source, "top1_accuracy": np.nan}]
        inside = pd.DataFrame(inside_rows).groupby("domain")["top1_accuracy"].mean()
        for target in domains:
            if target == source:
                accuracy.loc[source, target] = inside.get(source, np.nan)
            else:
                accuracy.loc[source, target] = out.get(target, np.nan)
                baseline.loc[source, target] = evaluation.baseline.per_domain.get(target, np.nan)
    frequency = pd.DataFrame(np.nan, index=domains, columns=domains)
    for a in domains:
        for b in domains:
            x, y = counts.get(a), counts.get(b)
            if x is not None and y is not None and x.std() > 0 and y.std() > 0:
                frequency.loc[a, b] = float(np.corrcoef(x, y)[0, 1])
    return {"accuracy": accuracy, "baseline": baseline, "gain": accuracy - baseline, "frequency_correlation": frequency}


def frequency_rho(matrices: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Spearman and Pearson correlation between off-diagonal accuracy and frequency similarity
    (NaN when fewer than 3 defined pairs or a constant variable)."""
    accuracy, frequency = matrices["accuracy"], matrices["frequency_correlation"]
    mask = ~np.eye(len(accuracy), dtype=bool)
    pairs = pd.DataFrame({"accuracy": accuracy.to_numpy()[mask], "frequency": frequency.to_numpy()[mask]}).dropna()
    if len(pairs) < 3 or pairs.accuracy.nunique() < 2 or pairs.frequency.nunique() < 2:
        return {"spearman": float("nan"), "pearson": float("nan"), "pairs": len(pairs)}
    # Spearman's rho is Pearson's r of the (average, for ties) ranks: pandas' method="spearman"
    # imports scipy, which is no dependency of ours.
    return {
        "spearman": float(pairs.accuracy.rank().corr(pairs.frequency.rank())),
        "pearson": float(pairs.accuracy.corr(pairs.frequency, method="pearson")),
        "pairs": len(pairs),
    }


# Domain names up to this many characters show whole in a matrix's ticks (longer: cut with "…").
NAME_WIDTH = 28


def _heatmap(ax: plt.Axes, matrix: pd.DataFrame, title: str, cmap: str, vmin: float, vmax: float) -> None:
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    short = [shorten(d, NAME_WIDTH) for d in matrix.columns]
    ax.set_xticks(range(len(short)), short, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(short)), short, fontsize=8)
    ax.set_xlabel("test domain")
    ax.set_ylabel("training domain")
    ax.set_title(title, fontsize=10)
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            # correlations (a colour range within [-1, 1]) with two decimals, percentages with one
            text = cell_text(value, 2 if vmax - vmin <= 2 else 1)
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=text_colour(image, value))
    plt.colorbar(image, ax=ax, fraction=0.046)


def runs_note(evaluations: list[Evaluation]) -> str:
    """What a matrix figure shows, for its title: the taps and seeds of its runs."""
    taps = sorted({e.tap for e in evaluations})
    return f"{', '.join(taps)}, mean over {seeds_text([len(e.per_seed) for e in evaluations])}"


def _matrix_size(matrix: pd.DataFrame, panels: int = 1) -> tuple[float, float]:
    """Figure inches for `panels` heatmaps of `matrix`: wide and tall enough for its names' ticks."""
    longest = max((len(shorten(d, NAME_WIDTH)) for d in matrix.columns), default=4)
    side = max(4.0, 0.8 * len(matrix)) + 0.07 * longest  # ~0.07 in per 8 pt character, rotated 30 deg
    return panels * (side + 1.2), side + 0.6


def plot_matrix(matrices: dict[str, pd.DataFrame], png: str | Path, pdf: str | Path, about: str = "") -> None:
    """Fig. 4: domain-to-domain top-1 accuracy (diagonal: in-domain held-out clips); `about`
    (`runs_note`) names the tap and seeds under the title."""
    fig, ax = plt.subplots(figsize=_matrix_size(matrices["accuracy"]))
    title = "Top-1 accuracy (%): train on row, test on column"
    _heatmap(ax, matrices["accuracy"], f"{title}\n{about}" if about else title, "Blues", 0, 100)
    fig.tight_layout()
    _save(fig, png, pdf)


# Fewer pairs make no correlation worth a figure: Spearman's rho over 2 points is always +-1.
MIN_FREQUENCY_PAIRS = 3
FREQUENCY_FIGURE = ("frequency.png", "frequency.pdf")
FREQUENCY_NOTE = "frequency_not_drawn.html"  # written instead of the figure: the report shows it


def frequency_not_drawn(matrices: dict[str, pd.DataFrame], rho: dict[str, float]) -> str:
    """Why Fig. S12/S13 would be empty: "not drawn: ..." with the causes found, or "" when
    `rho` has at least `MIN_FREQUENCY_PAIRS` off-diagonal pairs to draw."""
    if rho["pairs"] >= MIN_FREQUENCY_PAIRS:
        return ""
    frequency, accuracy = matrices["frequency_correlation"], matrices["accuracy"]
    domains = list(frequency.index)
    causes = []
    # A domain's correlation with itself is 1 unless its action counts are constant or missing.
    flat = [str(d) for d in domains if np.isnan(frequency.loc[d, d])]
    if flat:
        causes.append(f"every action is equally frequent (or uncounted) in {', '.join(flat)}, "
                      "so no correlation is defined with them")
    possible = len(domains) * (len(domains) - 1)
    if possible < MIN_FREQUENCY_PAIRS:
        causes.append(f"{len(domains)} domains give only {possible} off-diagonal pairs")
    mask = ~np.eye(len(domains), dtype=bool)
    untested = int((np.isfinite(frequency.to_numpy()[mask]) & np.isnan(accuracy.to_numpy()[mask])).sum())
    if untested:
        causes.append(f"{untested} pairs with a correlation have no test accuracy")
    because = f" ({'; '.join(causes)})" if causes else ""
    return (f"not drawn: {rho['pairs']} off-diagonal domain pairs with a defined action-frequency correlation "
            f"and accuracy; needs >= {MIN_FREQUENCY_PAIRS}{because}")


def plot_frequency(matrices: dict[str, pd.DataFrame], rho: dict[str, float], png: str | Path, pdf: str | Path) -> None:
    """Fig. S12 (action-frequency correlation between domains) and S13 (accuracy vs it).

    Raises:
        ValueError: fewer than `MIN_FREQUENCY_PAIRS` pairs (the figure would be empty); see
            `write_frequency`, which writes why instead.
    """
    reason = frequency_not_drawn(matrices, rho)
    if reason:
        raise ValueError(f"Expected at least {MIN_FREQUENCY_PAIRS} domain pairs for Fig. S12/S13, but it is {reason}.")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _heatmap(left, matrices["frequency_correlation"], "Action-frequency correlation (Pearson)", "RdBu_r", -1, 1)
    mask = ~np.eye(len(matrices["accuracy"]), dtype=bool)
    right.scatter(matrices["frequency_correlation"].to_numpy()[mask], matrices["accuracy"].to_numpy()[mask])
    right.set_xlabel("action-frequency correlation of the two domains")
    right.set_ylabel("top-1 accuracy (%), train -> test")
    if np.isnan(rho["spearman"]):  # enough pairs, but accuracy or correlation is the same in all
        measured = "rho undefined: accuracy or correlation constant over the pairs"
    else:
        measured = f"Spearman rho {rho['spearman']:.2f}, Pearson r {rho['pearson']:.2f}"
    right.set_title(f"{measured} ({rho['pairs']} pairs; paper rho {REFERENCE_FREQUENCY_RHO})", fontsize=9)
    right.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, png, pdf)


def not_drawn_page(figure: str, reason: str) -> str:
    """A one-paragraph HTML page saying that `figure` was not drawn and why (for the report)."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(figure)}: not drawn</title></head>\n"
            f"<body><p><b>{html.escape(figure)}</b> {html.escape(reason)}.</p></body></html>\n")


def write_frequency(matrices: dict[str, pd.DataFrame], rho: dict[str, float], folder: str | Path) -> str:
    """Fig. S12/S13 into `folder`: `frequency.png` and `.pdf` when there are enough pairs, else
    `frequency_not_drawn.html` saying why. The files of the other case are removed, so a rerun
    never leaves an earlier run's figure next to the note (or a stale note next to a figure).

    Returns:
        the console line: what was written, or why the figure was not drawn.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf, note = (folder / name for name in (*FREQUENCY_FIGURE, FREQUENCY_NOTE))
    reason = frequency_not_drawn(matrices, rho)
    for stale in (png, pdf) if reason else (note,):
        stale.unlink(missing_ok=True)
    if reason:
        note.write_text(not_drawn_page("Fig. S12/S13 (action-frequency correlation)", reason))
        return f"Fig. S12/S13 {reason}; wrote {note} instead"
    plot_frequency(matrices, rho, png, pdf)
    return f"wrote {png} and {pdf.name} ({rho['pairs']} domain pairs)"


def constant_baseline(matrices: dict[str, pd.DataFrame]) -> float | None:
    """The most-frequent-class accuracy when it is the same on every tested pair (e.g. 25% on
    the demo, whose 4 actions are equally frequent everywhere), else None."""
    values = pd.unique(matrices["baseline"].stack().dropna().round(6))
    return float(values[0]) if len(values) == 1 else None


def plot_baseline(matrices: dict[str, pd.DataFrame], png: str | Path, pdf: str | Path, about: str = "") -> None:
    """Fig. S15 (most-frequent-class accuracy) and S16 (the model's gain over it). When the
    baseline is one number on every pair, its panel would say nothing: only the gain is drawn,
    and the title gives that number."""
    same = constant_baseline(matrices)
    gain = "Gain over most frequent class (points)"
    if same is not None:
        gain += f"\nmost frequent class: {cell_text(same)}% on every pair (its panel left out)"
    fig, axes = plt.subplots(1, 1 if same is not None else 2, figsize=_matrix_size(matrices["gain"], 1 if same is not None else 2),
                             squeeze=False)
    if same is None:
        _heatmap(axes[0, 0], matrices["baseline"], "Most frequent training class: accuracy (%)", "Greys", 0, 100)
    _heatmap(axes[0, -1], matrices["gain"], f"{gain}\n{about}" if about else gain, "RdBu", -100, 100)
    fig.tight_layout()
    _save(fig, png, pdf)


def matrix_long(matrices: dict[str, pd.DataFrame], rho: dict[str, float]) -> pd.DataFrame:
    """One row per (training, test) domain pair with every matrix's value; the correlation of
    accuracy with frequency similarity over all off-diagonal pairs (`frequency_rho`) is repeated
    on every row, so the CSV alone holds the figure's numbers."""
    rows = []
    accuracy = matrices["accuracy"]
    for source in accuracy.index:
        for target in accuracy.columns:
            rows.append({
                "train_domain": source,
                "test_domain": target,
                "top1_accuracy": accuracy.loc[source, target],
                "most_frequent_class": matrices["baseline"].loc[source, target],
                "gain": matrices["gain"].loc[source, target],
                "frequency_correlation": matrices["frequency_correlation"].loc[source, target],
            })
    frame = pd.DataFrame(rows).round(3)
    frame["frequency_rho_spearman"] = round(rho["spearman"], 3)
    frame["frequency_rho_pearson"] = round(rho["pearson"], 3)
    frame["frequency_rho_pairs"] = int(rho["pairs"])
    return frame


def write_extraction_report(store: str | Path, failures: str | Path, settings_csv: str | Path, failures_csv: str | Path) -> None:
    """The store's extraction settings as a key/value CSV, and its failure table as is; each with
    its HTML page next to it."""
    zarr_json = json.loads((Path(store) / "zarr.json").read_text())
    attrs = zarr_json.get("attributes", {})
    rows = [{"key": "settings_hash", "value": attrs.get("settings_hash", "")},
            {"key": "actiondiff_version", "value": attrs.get("actiondiff_version", "")},
            {"key": "taps", "value": " ".join(attrs.get("taps", []))}]
    for block, values in sorted(attrs.get("settings", {}).items()):
        if not isinstance(values, dict):  # a plain setting, e.g. `backbone: videomae`
            rows.append({"key": block, "value": json.dumps(values)})
            continue
        for key, value in sorted(values.items()):
            rows.append({"key": f"{block}.{key}", "value": json.dumps(value)})
    write_csv(pd.DataFrame(rows), settings_csv, title=f"extraction settings of store {attrs.get('settings_hash', '')}")
    Path(failures_csv).parent.mkdir(parents=True, exist_ok=True)
    Path(failures_csv).write_text(Path(failures).read_text())
    table = pd.read_csv(failures_csv, dtype=str, keep_default_na=False, na_values=[""])
    html_path(failures_csv).write_text(table_page(table, "videos that could not be extracted"))
