"""Per-run figures and the per-run metrics table (report/figures.py), from a hand-written evaluation."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd

from actiondiff.learn.results import Evaluation
from actiondiff.report.figures import run_metrics_table, write_results


def evaluation() -> dict:
    # 2 seeds, 2 held-out domains, 2 classes; numbers chosen so every cell is known by hand
    return {
        "tap": "L09_T20",
        "metrics": {"top1_accuracy": {"mean": 62.5, "std": 17.6777}, "micro_ap": {"mean": 70.123, "std": 0.0}},
        "metric_labels": {"top1_accuracy": "top-1 accuracy (%)", "micro_ap": "micro AP (%)"},
        "per_seed": [{"top1_accuracy": 75.0}, {"top1_accuracy": 50.0}],
        "num_test_videos": 8,
        "per_domain": [
            {"seed": 0, "domain": "a", "top1_accuracy": 100.0}, {"seed": 0, "domain": "b", "top1_accuracy": 50.0},
            {"seed": 1, "domain": "a", "top1_accuracy": 50.0}, {"seed": 1, "domain": "b", "top1_accuracy": 50.0},
        ],
        "classes": ["walk", "run"],
        "confusion": [[6, 2], [4, 4]],
        "settings_hash": "abc", "per_class": [], "excluded_videos": [], "class_counts": {}, "protocol": {}, "run": {},
        "baseline": {"class": "walk", "metrics": {"top1_accuracy": 50.0}, "per_domain": {}},
        "in_domain": {"metrics": {"top1_accuracy": {"mean": 90.0, "std": 0.0}}, "per_domain": [], "num_videos": 4},
    }


def test_run_metrics_table_by_hand():
    table = run_metrics_table(Evaluation.from_json(evaluation()))
    assert list(table.metric) == ["top1_accuracy", "micro_ap"]
    assert table.loc[0, "mean"] == 62.5 and table.loc[0, "sample std"] == 17.68 and table.loc[1, "mean"] == 70.12
    assert set(table.seeds) == {2} and set(table.test_videos) == {8} and set(table.feature) == {"L09_T20"}


def test_write_results_writes_table_markdown_and_two_figures(tmp_path):
    source = tmp_path / "evaluation.json"
    source.write_text(json.dumps(evaluation()))
    paths = [tmp_path / name for name in ("t.csv", "t.md", "domains.png", "confusion.png")]
    write_results(source, *paths)
    assert pd.read_csv(paths[0]).metric.tolist() == ["top1_accuracy", "micro_ap"]
    assert "| top1_accuracy" in paths[1].read_text()
    for png in paths[2:]:
        image = mpimg.imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert np.ptp(image[..., :3]) > 0.5  # something is drawn, not a blank canvas


def test_figures_name_tap_seeds_and_error_bar_and_label_the_bars(tmp_path, monkeypatch):
    from actiondiff.report import figures

    drawn = []
    monkeypatch.setattr(figures.plt, "close", drawn.append)  # keep the figures to read them
    run = Evaluation.from_json(evaluation())
    figures.plot_per_domain(run, tmp_path / "d.png", chance=50.0)
    figures.plot_confusion(run, tmp_path / "c.png")
    bars, confusion = (fig.axes[0] for fig in drawn)
    assert bars.get_title() == "Unseen-domain accuracy (L09_T20, mean over 2 seeds)\nerror bar: sample std over seeds"
    assert [t.get_text() for t in bars.texts] == ["75", "50"]  # domain a: (100 + 50) / 2, b: 50
    assert confusion.get_title() == "Confusion on unseen domains\nL09_T20, summed over 2 seeds"
