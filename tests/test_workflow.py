"""The real Snakemake DAG, end to end, on a reduced demo config (one test module, run in order)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_copy import copy_workflow, default_config

from actiondiff.cli import main

REPO = Path(__file__).resolve().parents[1]
REDUCED = {
    "demo": {"videos_per_pair": 3, "num_frames": 40, "size": 64, "test_domains": ["yellow_cross_checker"]},
    "shard_size": 24,
    "train": {"preset": "demo", "seeds": [0], "epochs": 8},
    # A 2 x 2 grid from one extraction pass, one head ablation, a 2-domain matrix, the aggregate head: 8 runs.
    "extraction": {"layers": [6, 9], "timestep_indices": [20, 29], "conditioning": "middle_frame",
                   "sdv2": False, "dtype": "float32"},
    "experiments": {
        "actiondiff": {"taps": ["L09_T20"], "tables": ["results", "ablation"], "ablation": "baseline", "timelines": True},
        "head_linear": {"taps": ["L09_T20"], "head": {"kind": "linear"}, "tables": ["ablation"], "ablation": "head"},
        "grid": {"grid": True, "tables": []},
        "domains": {"taps": ["L09_T20"], "matrix": ["red_square_flat", "yellow_cross_checker"], "tables": []},
        # issue 28: every tap mixed by learned weights, compared with the grid and L09_T20
        "aggregate": {"head": {"kind": "aggregate", "aggregate_width": 16}, "compare": ["grid", "actiondiff"], "tables": []},
    },
    "timelines": {"window": 4, "hop": 2},
}
FIGURES = ["actiondiff/per_domain_accuracy.png", "actiondiff/confusion.png", "grid/grid.png", "grid/grid.pdf",
           "aggregate/mixing.png", "aggregate/mixing.pdf",
           *(f"domains/{name}.{ext}" for name in ("matrix", "baseline") for ext in ("png", "pdf"))]
# The demo's actions are equally frequent in every domain: no frequency correlation, no Fig. S12/S13.
FREQUENCY_NOTE = "domains/frequency/frequency_not_drawn.html"


def snakemake(workdir: Path, *args: str, check: bool = True, pythonpath: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in (REPO / "src", *pythonpath)))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the workflow with a reduced config, run once for every test below."""
    work = copy_workflow(tmp_path_factory.mktemp("workflow"), {**default_config(), **REDUCED})
    snakemake(work)
    return work


def test_demo_writes_tables_and_figures(workdir):
    stores = list((workdir / "results" / "stores" / "demo").glob("*.zarr"))
    assert len(stores) == 1 and (stores[0] / "zarr.json").is_file()  # every experiment: one extraction
    tables = workdir / "results" / "tables" / "demo"
    results = pd.read_csv(tables / "results_custom.csv")
    assert results.source.tolist() == ["this run", "most frequent class (training side)"]
    run = results.iloc[0]
    assert run["experiment"] == "actiondiff" and run["tap"] == "L09_T20" and run["test_videos"] == 12
    assert 0.0 <= run["top1_accuracy (%) mean"] <= 100.0
    assert results.iloc[1]["top1_accuracy (%) mean"] == 25.0  # 4 balanced actions: the first wins the tie
    ablation = pd.read_csv(tables / "ablation.csv")
    assert ablation["head"].tolist() == ["transformer", "linear"]
    grid = pd.read_csv(tables / "grid" / "grid.csv")
    assert grid[["layer", "timestep_index"]].values.tolist() == [[6, 20], [6, 29], [9, 20], [9, 29]]
    matrix = pd.read_csv(tables / "domains" / "matrix.csv")
    assert len(matrix) == 4 and matrix.top1_accuracy.between(0, 100).all()
    for name in FIGURES:
        data = (workdir / "results" / "figures" / "demo" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if name.endswith(".png") else data[:5] == b"%PDF-"
    note = workdir / "results" / "figures" / "demo" / FREQUENCY_NOTE
    assert "0 off-diagonal domain pairs" in note.read_text()
    assert not list(note.parent.glob("*.p[nd][gf]"))  # no empty figure next to it
    taps = pd.read_csv(tables / "aggregate" / "taps.csv")  # aggregate head, best on validation, L09_T20, best on test
    assert taps.tap.iloc[0] == "ALL" and taps.tap.iloc[2] == "L09_T20" and "TEST" in taps["head"].iloc[-1]
    timelines = sorted((workdir / "results" / "figures" / "demo" / "actiondiff" / "timelines").glob("*.png"))
    assert len(timelines) == 12  # one per held-out clip
    settings = pd.read_csv(next((tables / "extraction").glob("*.settings.csv"))).set_index("key")
    assert settings.loc["extraction.layers", "value"] == "[6, 9]"
    assert (workdir / "logs" / "extract_features").is_dir()


def test_rerun_has_nothing_to_do(workdir):
    result = snakemake(workdir, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def planned_rules(workdir: Path, *args: str) -> set[str]:
    plan = snakemake(workdir, "-n", *args)
    return set(re.findall(r"^(?:local)?rule (\w+):", plan.stdout + plan.stderr, re.MULTILINE))


def test_predict_reproduces_the_trained_run_on_a_held_out_video(workdir, tmp_path, monkeypatch):
    # `actiondiff predict` re-extracts the video with the settings the checkpoint recorded: the
    # same features as in the store, so the same scores as classifying the store's copy.
    # From another folder: the checkpoint names the weights relative to the workflow folder
    # (resources/weights/...), which predict finds from the checkpoint's location, not the cwd.
    monkeypatch.chdir(tmp_path)
    model = str(workdir / "results/models/demo/actiondiff/main/L09_T20/seed0.safetensors")
    store = str(next((workdir / "results/stores/demo").glob("*.zarr")))
    video = pd.read_csv(workdir / "results/manifests/demo.csv").query("split == 'test'").iloc[0]
    assert main(["predict", video.path, "--model", model, "--out", str(tmp_path / "video.csv")]) == 0
    assert main(["predict", video.video_id, "--store", store, "--model", model, "--out", str(tmp_path / "store.csv")]) == 0
    from_video, from_store = pd.read_csv(tmp_path / "video.csv"), pd.read_csv(tmp_path / "store.csv")
    assert from_video["class"].tolist() == from_store["class"].tolist() and len(from_video) == 4
    # equal up to float summation order (the extraction job ran with other thread counts)
    np.testing.assert_allclose(from_video.score, from_store.score, atol=1e-3)


def test_retraining_plans_no_extraction(workdir):
    rules = planned_rules(workdir, "--forcerun", "train_head")
    assert {"train_head", "evaluate_head", "plot_grid", "plot_matrix"} <= rules
    assert not rules & {"extract_features", "pack_store", "build_manifest"}


def test_deleted_tables_and_figures_regenerate_by_plotting_only(workdir):
    for folder in ("tables", "figures"):
        shutil.rmtree(workdir / "results" / folder)
    rules = planned_rules(workdir)
    assert rules == {"make_results_table", "make_ablation_table", "plot_grid", "plot_matrix", "plot_results",
                     "compare_taps", "plot_timelines", "report_extraction", "all"}
    snakemake(workdir)
    for name in [*FIGURES, FREQUENCY_NOTE]:
        assert (workdir / "results" / "figures" / "demo" / name).is_file()


# Each table's HTML page (report/html_tables.py) draws its header cells in this colour: pixels of
# it in a screenshot are a rendered table, not a download link.
TABLE_HEADER_RGB = (0xDD, 0xE7, 0xF3)
# Shows one result the way clicking it in the report's sidebar does (snakemake's app.setView).
SHOW_RESULT = """<script>setTimeout(() => {{
  const path = Object.keys(results).find((p) => p.endsWith("{name}"));
  app.setView({{content: "html", contentPath: results[path].data_uri, resultPath: path}});
}}, 1000);</script>"""


def screenshot(chromium: str, page: Path, png: Path) -> np.ndarray:
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900",
         "--virtual-time-budget=15000", f"--screenshot={png}", page.as_uri()],
        check=True, capture_output=True, timeout=180,
    )
    return plt.imread(png)[..., :3]  # [h, w, 3] floats in [0, 1]


def test_report_renders_in_headless_chromium(workdir):
    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text(errors="replace")
    tables = ("results_custom.html", "ablation.html", "grid.html", "matrix.html", "metrics.html", "settings.html",
              "failures.html")
    for name in ("grid.png", "matrix.png", "frequency_not_drawn.html", "baseline.png", "results_custom.csv", *tables):
        assert name in html, name
    assert "frequency.png" not in html
    assert "Categories (as in the sidebar): <strong>Tables</strong>" in html and "actiondiff, head_linear, grid, domains" in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no headless chromium (apt-get install -y chromium) to render report.html")
    pixels = screenshot(chromium, workdir / "report.html", workdir / "report.png")
    assert pixels.shape[:2] == (900, 1280)
    assert pixels.std() > 0.05 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not a blank page
    # the results table, opened in the report as from its sidebar: a table with header cells
    page = workdir / "report_table.html"
    head, _, tail = html.rpartition("</body>")  # the last: the report's scripts hold the word too
    page.write_text(head + SHOW_RESULT.format(name="results_custom.html") + "</body>" + tail)
    pixels = screenshot(chromium, page, workdir / "report_table.png")
    header = np.all(np.abs(pixels * 255 - TABLE_HEADER_RGB) < 2, axis=-1)  # [h, w]
    assert header.sum() > 5000, "no rendered table in the report's view of results_custom.html"
    assert len(np.unique(np.nonzero(header)[0])) < 120  # one header row (wrapped names), not a page of it


def test_unknown_feature_set_fails_before_any_job(workdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"experiments": {"oops": {"feature_set": "sdv3"}}}))
    result = snakemake(workdir, "-n", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert "sdv3" in result.stdout + result.stderr and "oops" in result.stdout + result.stderr


def test_misspelt_config_key_fails_before_any_job(workdir):
    result = snakemake(workdir, "-n", "--config", "shard_sise=3", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Expected config key `shard_sise` to be one of" in output and "shard_size" in output
    assert len(output.splitlines()) < 25  # one screen, not the schema dump


# The backbone comparison on a reduced demo: the top-level `backbone: videomae` (tiny, offline)
# and a third-party backbone that only an entry point in a test package registers
# (tests/plugin_backbone, on PYTHONPATH), through extraction -> store -> training -> table.
BACKBONES = {
    "dataset": {"name": "demo_backbones", "adapter": "custom", "annotations": "resources/demo/labels.csv",
                "videos": "resources/demo", "columns": {"video": "video", "label": "action", "domain": "domain", "split": "split"}},
    "demo": {"videos_per_pair": 2, "num_frames": 24, "size": 32, "test_domains": ["yellow_cross_checker"]},
    "backbone": "videomae",
    "shard_size": 64,
    "head": {"kind": "transformer", "num_layers": 1, "num_heads": 2, "max_length": 8},
    "train": {"preset": "demo", "seeds": [0], "epochs": 2},
    "feature_sets": {"default": {}, "plugin": {"backbone": "histogram", "bins": 4}},
    "experiments": {"videomae": {"label": "VideoMAE"}, "histogram": {"feature_set": "plugin", "label": "colour histogram"}},
}


def test_videomae_and_an_entry_point_backbone_run_through_the_dag(tmp_path):
    base = yaml.safe_load((REPO / "config" / "backbones.yaml").read_text())
    base.pop("feature_sets"), base.pop("experiments")
    copy_workflow(tmp_path, {**base, **BACKBONES})
    table = "results/tables/demo_backbones/results_custom.csv"
    snakemake(tmp_path, table, pythonpath=(REPO / "tests" / "plugin_backbone",))
    results = pd.read_csv(tmp_path / table)
    runs = results[results.source == "this run"]
    assert runs.backbone.tolist() == ["VideoMAE", "histogram"] and runs.tap.tolist() == ["L00_T00", "L00_T00"]
    assert runs.experiment.tolist() == ["VideoMAE", "colour histogram"] and (runs.test_videos == 8).all()
    assert runs["top1_accuracy (%) mean"].between(0, 100).all()
    assert not (tmp_path / "resources" / "weights" / "tiny-svd").exists()  # only the weights a feature set reads
    stores = {}
    for store in (tmp_path / "results" / "stores" / "demo_backbones").glob("*.zarr"):
        attrs = json.loads((store / "zarr.json").read_text())["attributes"]
        stores[attrs["backbone"]["name"]] = attrs
    assert sorted(stores) == ["histogram", "videomae"]
    # the files the checkpoint is read from, normalisation included (it changes the features)
    assert sorted(Path(f).name for f in stores["videomae"]["backbone"]["files"]) == [
        "config.json", "model.safetensors", "preprocessor_config.json"]
    assert stores["histogram"]["settings"]["extraction"] == {"bins": 4, "size": 32}
    assert stores["videomae"]["settings"]["weights"] == {"videomae": "resources/weights/tiny-videomae"}
