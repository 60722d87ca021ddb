"""Tables and figures from evaluation JSONs: values by hand, files really written."""

from __future__ import annotations

import dataclasses
import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from actiondiff.learn.results import Evaluation
from actiondiff.report.tables import (
    BASELINE,
    FREQUENCY_NOTE,
    PAPER,
    ablation_table,
    domain_matrices,
    frequency_not_drawn,
    frequency_rho,
    grid_frame,
    matrix_long,
    metric_column,
    plot_baseline,
    plot_frequency,
    plot_grid,
    plot_matrix,
    results_table,
    write_extraction_report,
    write_frequency,
    write_table,
)

DOMAINS = ["a", "b", "c"]


def evaluation(tap="L09_T20", protocol="custom", value=60.0, inside=80.0, baseline=25.0, experiment="main",
               train_domains=(), per_domain=(), in_per_domain=(), baseline_per_domain=None, counts=None, head="transformer", window=25):
    metrics = ("micro_ap", "macro_ap_present") if protocol.startswith("charades") else ("top1_accuracy",)
    all_metrics = ("top1_accuracy", "micro_ap", "macro_ap_present", "macro_ap_all")
    return Evaluation.from_json({
        "tap": tap,
        "settings_hash": "abc",
        "classes": ["x", "y", "z"],
        "per_class": [],
        "confusion": [],
        "excluded_videos": [],
        "metrics": {m: {"mean": value, "std": 2.0} for m in all_metrics},
        "in_domain": {"metrics": {m: {"mean": inside, "std": 1.0} for m in all_metrics},
                      "per_domain": [{"seed": 0, "domain": d, "top1_accuracy": v} for d, v in in_per_domain],
                      "num_videos": 6},
        "baseline": {"class": "x", "metrics": dict.fromkeys(all_metrics, baseline), "per_domain": baseline_per_domain or {}},
        "per_domain": [{"seed": s, "domain": d, "top1_accuracy": v + s} for d, v in per_domain for s in (0, 2)],
        "per_seed": [{}, {}],
        "num_test_videos": 12,
        "class_counts": counts or {},
        "protocol": {"name": protocol, "metrics": list(metrics), "headline_metric": metrics[0],
                     "train_domains": list(train_domains)},
        "run": {"label": experiment, "variant": "main", "feature_set": "default", "head": head,
                "conditioning": "middle_frame", "sdv2": False, "window": window,
                "ablation": {"transformer": "", "linear": "head"}[head] or ("window" if window != 25 else "")},
    })


def test_results_table_rows_baseline_and_paper_rows():
    frame = results_table([evaluation(protocol="charades_1st_1st", value=31.0, baseline=10.0)])
    assert frame.source.tolist() == ["this run", BASELINE, PAPER, PAPER, PAPER, PAPER]
    assert frame.backbone.tolist()[:1] + frame.backbone.tolist()[2:] == [
        "SVD", "SVD", "V-JEPA (v1)", "SDv2", "VideoMAE v2 (ViT-g)"]
    run = frame.iloc[0]
    assert run[metric_column("micro_ap")] == 31.0 and run[metric_column("micro_ap", "sample std")] == 2.0
    assert run[metric_column("micro_ap", "in-domain mean")] == 80.0
    assert run["micro_ap gain over most frequent class"] == 21.0
    assert frame.iloc[1][metric_column("micro_ap")] == 10.0
    assert frame.iloc[2]["experiment"] == "ActionDiff" and frame.iloc[2][metric_column("micro_ap")] == 36.5
    assert metric_column("top1_accuracy") not in frame.columns  # only the protocol's own metrics
    assert len(results_table([evaluation()])) == 2  # custom: no published row
    with pytest.raises(ValueError, match="one protocol"):
        results_table([evaluation(), evaluation(protocol="ucf_to_hmdb")])


def test_tables_say_how_the_epoch_was_chosen():
    no_val = dataclasses.replace(evaluation(protocol="charades_1st_1st", value=31.0), in_domain=None, epoch_selection="last")
    with_val = dataclasses.replace(evaluation(protocol="charades_1st_1st", value=33.0), epoch_selection="best_val")
    frame = results_table([no_val, with_val])
    assert frame.epoch.tolist() == ["last epoch (no validation set)", "best epoch on validation", np.nan,
                                    *["best epoch on test (authors' code)"] * 4]
    inside = frame[metric_column("micro_ap", "in-domain mean")]
    assert math.isnan(inside[0]) and inside[1] == 80.0
    ablation = ablation_table([no_val])
    assert ablation.epoch.tolist() == ["last epoch (no validation set)"] and math.isnan(ablation["in-domain mean"][0])
    assert math.isnan(grid_frame([no_val], "micro_ap").in_domain[0])


def test_ablation_table_names_what_varies():
    frame = ablation_table([
        evaluation(value=70.0),
        evaluation(value=40.0, head="linear", experiment="head_linear"),
        evaluation(value=65.0, window=16, experiment="window_16"),
    ])
    assert frame.ablation.tolist() == ["baseline", "head", "window"]
    assert frame["head"].tolist() == ["transformer", "linear", "transformer"]
    assert frame["window"].tolist() == [25, 25, 16]
    assert frame["out-of-domain mean"].tolist() == [70.0, 40.0, 65.0]
    assert frame.metric.iloc[0] == "top-1 accuracy (%)"


def test_grid_frame_and_figure(tmp_path):
    evaluations = [evaluation(tap=f"L{lay:02d}_T{t:02d}", value=lay + t, inside=100 - lay) for lay in (3, 9) for t in (10, 20, 29)]
    frame = grid_frame(evaluations, "top1_accuracy")
    assert frame[["layer", "timestep_index"]].values.tolist() == [[3, 10], [3, 20], [3, 29], [9, 10], [9, 20], [9, 29]]
    assert frame.out_of_domain.tolist() == [13, 23, 32, 19, 29, 38]
    assert plot_grid(frame, "top1_accuracy", tmp_path / "grid.png", tmp_path / "grid.pdf") == []
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "grid.pdf").read_bytes()[:5] == b"%PDF-"
    assert plt.imread(tmp_path / "grid.png").shape[:2] == (780, 1200)  # two panels of 5 x 6.5 in at 120 dpi


def test_grid_without_a_validation_set_leaves_out_the_blank_in_domain_panel(tmp_path):
    runs = [dataclasses.replace(evaluation(tap=f"L{lay:02d}_T20", value=lay), in_domain=None) for lay in (3, 9)]
    frame = grid_frame(runs, "top1_accuracy")
    notes = plot_grid(frame, "top1_accuracy", tmp_path / "grid.png", tmp_path / "grid.pdf")
    assert notes == ["in-domain panel not drawn: no validation set (protocol.val_fraction 0 and no rows marked val)"]
    assert plt.imread(tmp_path / "grid.png").shape[:2] == (780, 600)  # one panel: out-of-domain
    frame["out_of_domain"] = np.nan
    with pytest.raises(ValueError, match="every tap's is empty"):
        plot_grid(frame, "top1_accuracy", tmp_path / "empty.png", tmp_path / "empty.pdf")
    assert not (tmp_path / "empty.png").exists()


def matrix_evaluations():
    counts = {"a": [5, 1, 0], "b": [4, 2, 1], "c": [0, 1, 6]}
    out = []
    for i, source in enumerate(DOMAINS):
        others = [d for d in DOMAINS if d != source]
        out.append(evaluation(
            train_domains=[source],
            per_domain=[(d, 10.0 * (i + 1) + j) for j, d in enumerate(others)],
            in_per_domain=[(source, 90.0 + i)],
            baseline_per_domain={d: 20.0 for d in others},
            counts={d: counts[d] for d in DOMAINS},
        ))
    return out


def test_domain_matrices_by_hand(tmp_path):
    matrices = domain_matrices(matrix_evaluations())
    accuracy = matrices["accuracy"]
    assert accuracy.index.tolist() == DOMAINS and accuracy.columns.tolist() == DOMAINS
    # Diagonal: in-domain; off-diagonal: mean of seeds (v, v + 2) = v + 1.
    assert np.diag(accuracy.to_numpy()).tolist() == [90.0, 91.0, 92.0]
    assert accuracy.loc["a", "b"] == 11.0 and accuracy.loc["a", "c"] == 12.0 and accuracy.loc["c", "b"] == 32.0
    assert matrices["gain"].loc["a", "b"] == -9.0 and math.isnan(matrices["gain"].loc["a", "a"])
    expected = np.corrcoef([5, 1, 0], [0, 1, 6])[0, 1]
    assert matrices["frequency_correlation"].loc["a", "c"] == pytest.approx(expected)
    rho = frequency_rho(matrices)
    pairs = pd.DataFrame({
        "acc": [accuracy.loc[s, t] for s in DOMAINS for t in DOMAINS if s != t],
        "freq": [matrices["frequency_correlation"].loc[s, t] for s in DOMAINS for t in DOMAINS if s != t],
    })
    assert rho["pairs"] == 6
    assert rho["spearman"] == pytest.approx(pairs.acc.rank().corr(pairs.freq.rank()))
    assert rho["pearson"] == pytest.approx(pairs.acc.corr(pairs.freq))
    long = matrix_long(matrices, rho)
    assert len(long) == 9 and long.set_index(["train_domain", "test_domain"]).loc[("b", "b"), "top1_accuracy"] == 91.0
    assert long.frequency_rho_spearman.eq(round(rho["spearman"], 3)).all() and long.frequency_rho_pairs.eq(6).all()
    for plot, name in ((plot_matrix, "matrix"), (plot_baseline, "baseline")):
        plot(matrices, tmp_path / f"{name}.png", tmp_path / f"{name}.pdf")
    (tmp_path / FREQUENCY_NOTE).write_text("an earlier run's note")  # stale: removed when the figure is drawn
    assert write_frequency(matrices, rho, tmp_path) == f"wrote {tmp_path / 'frequency.png'} and frequency.pdf (6 domain pairs)"
    for name in ("matrix", "baseline", "frequency"):
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-" and (tmp_path / f"{name}.png").stat().st_size > 5000
    assert not (tmp_path / FREQUENCY_NOTE).exists()


def constant_frequency_matrices():
    evaluations = matrix_evaluations()
    for e in evaluations:
        e.class_counts = {d: [3, 3, 3] for d in DOMAINS}  # the demo's balanced actions
    return domain_matrices(evaluations)


def test_constant_frequencies_give_nan_rho_not_an_error():
    matrices = constant_frequency_matrices()
    assert matrices["frequency_correlation"].isna().all().all()
    rho = frequency_rho(matrices)
    assert math.isnan(rho["spearman"]) and rho["pairs"] == 0


def test_frequency_figure_without_pairs_is_a_note_not_an_empty_plot(tmp_path):
    matrices = constant_frequency_matrices()
    rho = frequency_rho(matrices)
    reason = ("not drawn: 0 off-diagonal domain pairs with a defined action-frequency correlation and accuracy; "
              "needs >= 3 (every action is equally frequent (or uncounted) in a, b, c, so no correlation is "
              "defined with them)")
    assert frequency_not_drawn(matrices, rho) == reason
    with pytest.raises(ValueError, match="at least 3 domain pairs"):
        plot_frequency(matrices, rho, tmp_path / "f.png", tmp_path / "f.pdf")
    assert not (tmp_path / "f.png").exists()
    # A rerun into the folder of an earlier, drawn figure: the figure goes, the note says why.
    drawn = domain_matrices(matrix_evaluations())
    write_frequency(drawn, frequency_rho(drawn), tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"frequency.png", "frequency.pdf"}
    assert write_frequency(matrices, rho, tmp_path) == f"Fig. S12/S13 {reason}; wrote {tmp_path / FREQUENCY_NOTE} instead"
    assert {p.name for p in tmp_path.iterdir()} == {FREQUENCY_NOTE}
    page = (tmp_path / FREQUENCY_NOTE).read_text()
    assert page.startswith("<!DOCTYPE html>") and "0 off-diagonal domain pairs" in page and "equally frequent" in page


def test_two_domains_never_give_enough_pairs_and_the_note_says_so():
    evaluations = [e for e in matrix_evaluations() if e.protocol["train_domains"] != ["c"]]
    for e in evaluations:
        e.protocol["train_domains"] = e.protocol["train_domains"][:1]
        e.per_domain = [row for row in e.per_domain if row["domain"] != "c"]
        e.class_counts = {d: e.class_counts[d] for d in ("a", "b")}
    matrices = domain_matrices(evaluations)
    rho = frequency_rho(matrices)
    assert rho["pairs"] == 2 and matrices["frequency_correlation"].loc["a", "b"] == pytest.approx(
        np.corrcoef([5, 1, 0], [4, 2, 1])[0, 1])
    assert frequency_not_drawn(matrices, rho).endswith("needs >= 3 (2 domains give only 2 off-diagonal pairs)")


def test_matrix_tick_labels_cut_long_domain_names_with_an_ellipsis():
    import matplotlib.pyplot as plt

    from actiondiff.report.tables import _heatmap

    names = ["bird", "primate / monkey / macaque / baboon"]
    fig, ax = plt.subplots()
    _heatmap(ax, pd.DataFrame([[90.0, 10.0], [20.0, 80.0]], index=names, columns=names), "t", "Blues", 0, 100)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bird", "primate / monkey / macaque…"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bird", "primate / monkey / macaque…"]
    plt.close(fig)


def test_results_table_one_row_per_backbone():
    evaluations = []
    for backbone, value in (("svd", 60.0), ("sdv2", 50.0), ("videomae", 40.0), ("vjepa2", 45.0), ("histogram", 30.0)):
        evaluations.append(evaluation(experiment=f"run_{backbone}", value=value))
        evaluations[-1].run["backbone"] = backbone
    frame = results_table(evaluations)
    runs = frame[frame.source == "this run"]
    assert runs.backbone.tolist() == ["SVD", "SDv2", "VideoMAE", "V-JEPA 2", "histogram"]
    assert runs[metric_column("top1_accuracy")].tolist() == [60.0, 50.0, 40.0, 45.0, 30.0]
    del evaluations[0].run["backbone"]  # evaluations written before backbones had names: SVD
    assert results_table(evaluations[:1]).backbone.iloc[0] == "SVD"


def test_extraction_report_lists_every_setting(tmp_path):
    store = tmp_path / "store.zarr"
    store.mkdir()
    settings = {"backbone": "videomae", "decode": {"stride": 4, "window": 16}, "extraction": {"dtype": "float32"}}
    attrs = {"settings_hash": "abc123def456", "actiondiff_version": "0.1", "taps": ["L00_T00"], "settings": settings}
    (store / "zarr.json").write_text(json.dumps({"attributes": attrs}))
    (tmp_path / "failures.csv").write_text("video_id,path,kind,reason\nv1,a.mp4,error,corrupt\n")
    write_extraction_report(store, tmp_path / "failures.csv", tmp_path / "s.csv", tmp_path / "f.csv")
    rows = pd.read_csv(tmp_path / "s.csv").set_index("key")["value"].to_dict()
    assert rows["backbone"] == '"videomae"' and rows["decode.window"] == "16" and rows["taps"] == "L00_T00"
    assert rows["extraction.dtype"] == '"float32"' and rows["settings_hash"] == "abc123def456"
    assert (tmp_path / "f.csv").read_text() == (tmp_path / "failures.csv").read_text()


def test_results_table_counts_the_videos_excluded_for_lack_of_features():
    runs = [evaluation(), dataclasses.replace(evaluation(experiment="other"), excluded_videos=["v03", "v11"])]
    frame = results_table(runs)
    assert frame.excluded_videos.tolist()[:2] == [0, 2] and frame.test_videos.tolist()[:2] == [12, 12]


def test_grid_numbers_are_black_on_light_cells_and_white_on_dark_ones():
    import matplotlib.pyplot as plt

    from actiondiff.report.tables import text_colour

    fig, ax = plt.subplots()
    image = ax.imshow(np.array([[0.0, 100.0]]), cmap="viridis", vmin=0, vmax=100)
    assert text_colour(image, 0.0) == "white" and text_colour(image, 100.0) == "black"
    plt.close(fig)


def test_count_columns_are_integers_even_with_empty_rows(tmp_path):
    frame = results_table([evaluation()])  # + the baseline row, which has no seeds or window
    write_table(frame, tmp_path / "t.csv", tmp_path / "t.md")
    header, run, baseline = (tmp_path / "t.csv").read_text().splitlines()[:3]
    cells = dict(zip(header.split(","), run.split(","), strict=True))
    assert cells["seeds"] == "2" and cells["test_videos"] == "12" and cells["window"] == "25"
    assert str(frame.seeds.dtype) == "Int64" and frame.seeds.isna().tolist()[-1]
    # encoder backbones report their window as "checkpoint": kept, the numbers still integers
    encoder = dataclasses.replace(evaluation(experiment="vmae"), run={**evaluation().run, "window": "checkpoint"})
    assert results_table([evaluation(), encoder]).window.tolist()[:2] == [25, "checkpoint"]


def off_diagonal(values: list[float]) -> pd.DataFrame:
    """A 3 x 3 domain matrix whose 6 off-diagonal cells, row by row, are `values`."""
    cells = iter(values)
    return pd.DataFrame([[np.nan if s == t else next(cells) for t in DOMAINS] for s in DOMAINS], index=DOMAINS, columns=DOMAINS)


@pytest.mark.parametrize(
    ("frequency", "expected"),
    [
        # No ties: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)); ranks 2 1 4 3 6 5, sum(d^2) = 6.
        ([0.2, 0.1, 0.4, 0.3, 0.6, 0.5], 1 - 6 * 6 / (6 * 35)),
        # Ties take their average rank (1.5 1.5 3 4.5 4.5 6): Pearson of the ranks, 16.5 / sqrt(17.5 * 16.5).
        ([0.1, 0.1, 0.2, 0.3, 0.3, 0.4], math.sqrt(16.5 / 17.5)),
    ],
)
def test_spearman_rho_is_computed_without_scipy(frequency, expected):
    matrices = {"accuracy": off_diagonal([10, 20, 30, 40, 50, 60]), "frequency_correlation": off_diagonal(frequency)}
    rho = frequency_rho(matrices)
    assert rho["pairs"] == 6 and rho["spearman"] == pytest.approx(expected, abs=1e-12)


def test_cell_numbers_round_half_up_as_the_csvs_do():
    from actiondiff.report.tables import cell_text

    # 42.5 and 17.5 are what matrix.csv holds; half-to-even formatting would print "42" and "18"
    assert [cell_text(v) for v in (42.5, 17.5, 45.0, 66.66667, 0.0, -16.66667, 100.0)] == [
        "42.5", "17.5", "45", "66.7", "0", "-16.7", "100"]
    assert [cell_text(v, 2) for v in (0.125, -0.5, 1.0)] == ["0.13", "-0.50", "1.00"]  # correlations


def test_matrix_text_reads_on_dark_and_light_cells():
    from actiondiff.report.tables import _heatmap

    fig, ax = plt.subplots()
    names = ["a", "b"]
    _heatmap(ax, pd.DataFrame([[95.0, 5.0], [50.0, 42.5]], index=names, columns=names), "t", "Blues", 0, 100)
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours == {"95": "white", "5": "black", "50": "black", "42.5": "black"}
    plt.close(fig)


def test_a_baseline_that_is_one_number_everywhere_is_said_not_drawn(tmp_path):
    from actiondiff.report.tables import constant_baseline

    matrices = domain_matrices(matrix_evaluations())  # 20 on every pair, as 25 on the balanced demo
    assert constant_baseline(matrices) == 20.0
    plot_baseline(matrices, tmp_path / "b.png", tmp_path / "b.pdf", about="L09_T20, mean over 2 seeds")
    one_panel = plt.imread(tmp_path / "b.png").shape[1]
    varying = matrix_evaluations()
    varying[0].baseline.per_domain["b"] = 40.0
    matrices = domain_matrices(varying)
    assert constant_baseline(matrices) is None
    plot_baseline(matrices, tmp_path / "c.png", tmp_path / "c.pdf")
    assert plt.imread(tmp_path / "c.png").shape[1] == 2 * one_panel  # both panels


def test_grid_panels_share_one_colour_range_and_name_the_seeds(tmp_path, monkeypatch):
    from actiondiff.report import tables

    evaluations = [evaluation(tap=f"L{lay:02d}_T20", value=10.0 * lay, inside=100.0 - lay) for lay in (3, 9)]
    frame = grid_frame(evaluations, "top1_accuracy")
    assert frame.seeds.tolist() == [2, 2]
    drawn = []
    monkeypatch.setattr(tables, "_save", lambda fig, png, pdf: drawn.append(fig))
    plot_grid(frame, "top1_accuracy", tmp_path / "g.png", tmp_path / "g.pdf")
    (fig,) = drawn
    ranges = [(image.norm.vmin, image.norm.vmax) for ax in fig.axes for image in ax.images]
    assert ranges == [(30.0, 97.0), (30.0, 97.0)]  # in-domain 97, 91; out-of-domain 30, 90
    assert "mean over 2 seeds" in fig._suptitle.get_text()
    plt.close(fig)


def test_every_table_csv_gets_a_sortable_html_page_with_the_csv_cells(tmp_path):
    from actiondiff.report.html_tables import write_csv

    frame = results_table([evaluation()])  # a run row and the baseline row (no seeds: a blank cell)
    page = write_csv(frame, tmp_path / "results.csv", title="results <custom>")
    assert page == tmp_path / "results.html"
    text = page.read_text()
    assert "<caption>results &lt;custom&gt; (2 rows; click a header to sort)</caption>" in text
    assert '<th>top1_accuracy (%) mean</th>' in text and 'table class="sortable"' in text
    rows = text.split("<tbody>")[1].split("</tr>")
    assert '<td class="number">60.0</td>' in rows[0] and '<td class="number">2</td>' in rows[0]  # seeds "2", as in the CSV
    assert "<td>most frequent class (training side)</td>" in rows[1] and '<td class="number"></td>' in rows[1]
    assert "nan" not in text
