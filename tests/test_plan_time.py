"""Planning writes nothing, trusts content rather than modification times, and fails on a bad
config value or a missing input with one line naming the key (issue 26, items 1 and 4).

The tiny demo (tests/tiny_demo.py: 32 short videos, one tap, one seed), run once per session
through the real Snakemake DAG: the tests below copy it or dry-run it.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file
from tiny_demo import TINY
from workflow_copy import copy_workflow, default_config

pytestmark = pytest.mark.slow  # the fixture runs the demo DAG (~1 min on a busy 2-core machine)

REPO = Path(__file__).resolve().parents[1]
NOTHING = "Nothing to be done"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=workdir, env=env, capture_output=True,
        text=True, timeout=900,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def planned(output: str) -> set[str]:
    return set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", output, re.MULTILINE))


def files_outside_snakemake(workdir: Path) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of every file of the workflow folder but `.snakemake/`."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in workdir.rglob("*")
        if p.is_file() and not p.relative_to(workdir).parts[0] == ".snakemake"
    }


def test_a_dry_run_on_a_fresh_copy_writes_nothing_outside_snakemake(tmp_path):
    work = copy_workflow(tmp_path / "fresh", {**default_config(), **TINY})
    before = files_outside_snakemake(work)
    ok(snakemake(work, "-n"))
    assert files_outside_snakemake(work) == before  # the tiny weights: built by the run's rule
    assert (work / ".snakemake/actiondiff/weights-sha256.json").is_file()


@pytest.fixture(scope="module")
def finished(tiny_demo_runs) -> Path:
    """The tiny demo, finished (this machine's run; dry runs only, or copied)."""
    return tiny_demo_runs[0]


def test_a_weights_typo_fails_the_dry_run_writes_nothing_and_its_fix_plans_nothing(finished, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"weights": {"svd": "resources/weights/nothere"}}))
    before = files_outside_snakemake(finished)
    result = snakemake(finished, "-n", "--configfile", str(typo))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Expected config key `weights.svd` to name an existing file or folder, but resources/weights/nothere does not exist" in output
    assert len(output.splitlines()) < 10
    assert files_outside_snakemake(finished) == before
    assert NOTHING in ok(snakemake(finished, "-n"))


def copy_to_another_disk(source: Path, dest: Path) -> Path:
    """Copy file by file without keeping modification times, then touch every input again
    (weights, videos, labels: newer than every output)."""
    shutil.copytree(source, dest, copy_function=shutil.copy, symlinks=True)
    for path in (dest / "resources").rglob("*"):
        if path.is_file():
            path.touch()
    return dest


def test_copied_and_touched_inputs_plan_nothing_and_a_changed_tensor_plans_extraction(finished, tmp_path):
    work = copy_to_another_disk(finished, tmp_path / "copy")
    assert NOTHING in ok(snakemake(work, "-n"))
    unet = work / "resources/weights/tiny-svd/unet/diffusion_pytorch_model.safetensors"
    tensors = load_file(unet)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, unet, metadata={"format": "pt"})
    output = ok(snakemake(work, "-n"))
    rules = planned(output)  # (extraction jobs join once the new hash's checkpoint select_videos has run)
    assert {"select_videos", "pack_store", "train_head"} <= rules
    assert not rules & {"make_tiny_weights", "make_demo_data", "build_manifest"}  # the manifest stays
    old = next((work / "results/stores/demo").glob("*.zarr")).name
    assert re.search(r"results/stores/demo/[0-9a-f]{12}\.zarr", output) and old not in output  # a new store


def test_an_edited_label_table_reruns_its_manifest_by_content(finished, tmp_path):
    work = copy_to_another_disk(finished, tmp_path / "copy")
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    table = work / "labels.csv"  # the user's own table (the demo's is named by its settings)
    shutil.copy(work / "resources/demo/labels.csv", table)
    config["dataset"]["annotations"] = "labels.csv"
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    assert "build_manifest" in planned(ok(snakemake(work, "-n")))  # its content is a new parameter
    ok(snakemake(work, "--until", "build_manifest"))
    table.touch()
    assert "build_manifest" not in planned(ok(snakemake(work, "-n", "--until", "build_manifest")))
    table.write_text(table.read_text().replace("\n", "\r\n"))  # other bytes, same rows
    assert "build_manifest" in planned(ok(snakemake(work, "-n", "--until", "build_manifest")))


def test_forcerun_then_a_target_after_a_double_dash_forces_only_that_target(finished):
    store = next((finished / "results/stores/demo").glob("*.zarr"))
    target = str(store.relative_to(finished))
    # README "Resuming": the target after `--` (or before --forcerun): --forcerun takes every
    # following word as a rule name.
    for args in (("--forcerun", "pack_store", "--", target), (target, "--forcerun", "pack_store")):
        rules = planned(ok(snakemake(finished, "-n", *args)))
        assert rules == {"verify_features", "pack_store"}, args


def test_config_values_and_inputs_fail_the_dry_run_with_one_line_each(finished, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "device": "gpu",
        "dataset": {"columns": {"label": "actoin"}, "videos": "resources/nowhere"},
        "weights": {"clip_checkpoint": "resources/weights/missing.safetensors"},
    }))
    result = snakemake(finished, "-n", "--configfile", str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for line in (
        "Expected config key `device` to be a torch device such as cpu, cuda, cuda:1 or mps, but got 'gpu'",
        "Expected config key `dataset.columns.label` to name a column of resources/demo/labels.csv, but 'actoin' is not among",
        "Expected config key `dataset.videos` to name an existing folder, but resources/nowhere does not exist",
        "Expected config key `weights.clip_checkpoint` to name an existing file or folder, but resources/weights/missing.safetensors",
    ):
        assert line in output, output
    domain = tmp_path / "domain.yaml"
    domain.write_text(yaml.safe_dump({"protocol": {"test_domains": ["purple_nothing"]}}))
    result = snakemake(finished, "-n", "--configfile", str(domain))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output and len(output.splitlines()) < 10, output
    assert "got unknown ['purple_nothing'] (config key `experiments.actiondiff`" in output
    annotations = tmp_path / "annotations.yaml"
    annotations.write_text(yaml.safe_dump({"dataset": {"annotations": "resources/gone.csv"}}))
    result = snakemake(finished, "-n", "--configfile", str(annotations))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Expected config key `dataset.annotations` to name an existing file or folder, but resources/gone.csv does not exist" in output
