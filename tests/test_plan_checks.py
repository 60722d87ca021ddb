"""Plan-time checks of the config's inputs and values, one line each naming the key, and the
weights' content read at planning time without writing outside `.snakemake/` (issue 26)."""

import hashlib
from pathlib import Path

import pytest
import yaml

from actiondiff.features.backbones.registry import weight_checksums
from actiondiff.plan import annotation_checksums, check_paths, content_digest, path_errors
from actiondiff.settings import WeightsSettings
from actiondiff.tools.demo_weights import planning_checksums

REPO = Path(__file__).resolve().parents[1]
SOURCE = "test"


@pytest.fixture
def config(tmp_path, monkeypatch) -> dict:
    """The repository's demo config, in an empty folder (nothing built yet)."""
    monkeypatch.chdir(tmp_path)
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def with_table(config: dict, header: str, name: str = "labels.csv") -> dict:
    Path("videos").mkdir(exist_ok=True)
    Path(name).write_text(header + "\n")
    return {**config, "dataset": {**config["dataset"], "annotations": name, "videos": "videos"}}


def test_the_demo_plans_before_its_files_are_built(config):
    assert path_errors(config, SOURCE) == []


def test_a_weights_typo_is_named_by_its_key(config):
    config["weights"]["svd"] = "resources/weights/nothere"
    with pytest.raises(ValueError) as error:
        check_paths(config, SOURCE)
    assert str(error.value) == (
        "Invalid config:\n  Expected config key `weights.svd` to name an existing file or folder, but "
        "resources/weights/nothere does not exist (test)."
    )


def test_hub_ids_and_model_names_are_not_paths(config):
    config["weights"].update(svd="stabilityai/stable-video-diffusion-img2vid-xt", clip_arch="ViT-H-14",
                             clip_checkpoint="hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    assert path_errors(config, SOURCE) == []


def test_weights_of_unused_backbones_are_not_checked(config):
    config["weights"]["videomae"] = "/nowhere/videomae"
    assert path_errors(config, SOURCE) == []
    config["backbone"] = "videomae"
    assert path_errors(config, SOURCE) == [
        "Expected config key `weights.videomae` to name an existing file or folder, but /nowhere/videomae does not exist (test)."]


@pytest.mark.parametrize(("device", "ok"), [("cpu", True), ("cuda", True), ("cuda:1", True), ("mps", True),
                                            ("gpu", False), ("cuda:x", False), ("", False)])
def test_device_values(config, device, ok):
    config["device"] = device
    errors = path_errors(config, SOURCE)
    assert errors == [] if ok else errors == [
        f"Expected config key `device` to be a torch device such as cpu, cuda, cuda:1 or mps, but got {device!r} (test)."]


def test_missing_annotations_and_videos_are_named(config):
    config["dataset"].update(annotations="data/labels.csv", videos="data/videos")
    assert path_errors(config, SOURCE) == [
        "Expected config key `dataset.annotations` to name an existing file or folder, but data/labels.csv does not exist (test).",
        "Expected config key `dataset.videos` to name an existing folder, but data/videos does not exist (test).",
    ]


def test_custom_columns_are_checked_against_the_header(config):
    good = with_table(config, "video,action,domain,split")
    assert path_errors(good, SOURCE) == []
    bad = with_table(config, "video,actoin,domain,split")
    assert path_errors(bad, SOURCE) == [
        "Expected config key `dataset.columns.label` to name a column of labels.csv, but 'action' is not among "
        "['video', 'actoin', 'domain', 'split'] (test)."]
    tsv = with_table(config, "video\taction\tdomain\tsplit", "labels.tsv")  # read with tabs, as the adapter does
    assert path_errors(tsv, SOURCE) == []


def test_annotation_content_names_the_manifest(config):
    assert annotation_checksums(config, ".snakemake/actiondiff/a.json") == {}  # the demo's own: its settings
    table = with_table(config, "video,action,domain,split")
    digest = hashlib.sha256(Path("labels.csv").read_bytes()).hexdigest()
    assert annotation_checksums(table, ".snakemake/actiondiff/a.json") == {"labels.csv": digest}


def test_planning_hashes_a_staged_copy_of_the_demo_weights_as_the_built_ones(config, tiny_weights):
    staged = planning_checksums(config, ".snakemake/actiondiff")
    built = weight_checksums("svd", WeightsSettings(**{k: str(v) for k, v in tiny_weights.items()}), cache="c.json")
    assert staged == {"svd": built}
    assert not Path("resources").exists()  # nothing written outside .snakemake/
    assert planning_checksums(config, ".snakemake/actiondiff") == staged  # the copy is reused


def test_the_annotation_digest_is_one_short_value_naming_paths_and_content():
    one = content_digest({"a.txt": "0" * 64, "b.txt": "1" * 64})
    assert len(one) == 64 and one == content_digest({"b.txt": "1" * 64, "a.txt": "0" * 64})
    assert one != content_digest({"a.txt": "0" * 64, "b.txt": "2" * 64}) != content_digest({"c.txt": "0" * 64, "b.txt": "1" * 64})
