"""Experiment parsing (feature sets, references, runs) and the most-frequent-class baseline."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from actiondiff.learn.protocols import PROTOCOLS, ProtocolSettings
from actiondiff.learn.run import domain_class_counts, most_frequent_class
from actiondiff.plan import check_protocols, feature_sets, parse_experiments, variant_name
from actiondiff.report.paper import REFERENCE_BACKBONES, REFERENCE_RESULTS
from actiondiff.settings import parse_tap

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def with_experiments(experiments, sets=None):
    config = copy.deepcopy(CONFIG)
    config["experiments"] = experiments
    if sets is not None:
        config["feature_sets"] = sets
    return config


def test_default_config_expands_to_the_demo_runs():
    experiments = parse_experiments(CONFIG)
    assert list(experiments) == ["actiondiff", "head_mlp", "head_linear", "grid", "aggregate", "domains"]
    assert experiments["aggregate"].runs() == [("main", "ALL")]  # one head over every tap
    grid = experiments["grid"]
    assert len(grid.runs()) == 12 and grid.runs()[0] == ("main", "L03_T10") and grid.runs()[-1] == ("main", "L12_T29")
    domains = experiments["domains"]
    assert domains.variants == ["from_red_square_flat", "from_green_disc_noise", "from_blue_diamond_stripes",
                                "from_yellow_cross_checker"]
    block = domains.protocol_block("from_green_disc_noise")
    assert block["train_domains"] == ["green_disc_noise"]
    assert block["test_domains"] == ["red_square_flat", "blue_diamond_stripes", "yellow_cross_checker"]
    # Every experiment of the demo reads the same single extraction pass.
    assert {e.feature_set.settings_hash for e in experiments.values()} == {feature_sets(CONFIG)["default"].settings_hash}
    assert experiments["head_mlp"].head.kind == "mlp" and experiments["actiondiff"].head.kind == "transformer"
    settings = experiments["head_mlp"].run_settings(CONFIG, "main")
    assert settings["head"]["kind"] == "mlp" and settings["run"]["experiment"] == "head_mlp"
    assert settings["extraction"]["layers"] == [3, 6, 9, 12]


def test_feature_sets_have_their_own_hash_and_taps():
    sets = feature_sets({**CONFIG, "feature_sets": {"default": {}, "paper": {"layers": [9], "timestep_indices": [20]},
                                                    "sdv2": {"sdv2": True}}})
    assert sets["paper"].taps == ["L09_T20"]
    assert len({s.settings_hash for s in sets.values()}) == 3
    assert sets["default"].settings_hash == feature_sets(CONFIG)["default"].settings_hash  # `{}` = the block as is
    with pytest.raises(ValueError, match="identical"):
        feature_sets({**CONFIG, "feature_sets": {"a": {}, "b": {"sdv2": False}}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['layer'\]"):
        feature_sets({**CONFIG, "feature_sets": {"a": {"layer": [3]}}})


def test_feature_set_can_override_the_decode_window():
    config = {**CONFIG, "feature_sets": {"default": {}, "window_16": {"decode": {"window": 16}, "layers": [9]}}}
    sets = feature_sets(config)
    assert (sets["default"].decode.window, sets["window_16"].decode.window) == (25, 16)
    assert sets["window_16"].decode.stride == sets["default"].decode.stride  # the rest of `decode` kept
    assert sets["window_16"].settings_hash != feature_sets({**config, "feature_sets": {"w": {"layers": [9]}}})["w"].settings_hash
    experiments = parse_experiments({**config, "experiments": {"w16": {"feature_set": "window_16", "ablation": "window"}}})
    run = experiments["w16"].run_settings(config, "main")
    assert run["decode"]["window"] == 16 and run["run"]["window"] == 16
    with pytest.raises(ValueError, match=r"`feature_sets.w.decode` .* unknown key\(s\) \['windw'\]"):
        feature_sets({**CONFIG, "feature_sets": {"w": {"decode": {"windw": 16}}}})


def test_authors_code_preset_expands_and_the_sets_own_keys_win():
    sets = feature_sets({**CONFIG, "feature_sets": {
        "authors": {"preset": "authors_code"},
        "authors_short": {"preset": "authors_code", "conditioning": "none", "decode": {"max_seconds": 60}},
    }})
    authors, short = sets["authors"], sets["authors_short"]
    assert (authors.extract.conditioning, authors.extract.z_encoder, authors.extract.resnet_norm_eps) == (
        "per_frame", "first_stage", "sgm")
    assert authors.decode.max_seconds == 180 and authors.decode.window == CONFIG["decode"]["window"]
    assert (short.extract.conditioning, short.extract.z_encoder, short.decode.max_seconds) == ("none", "first_stage", 60)
    with pytest.raises(ValueError, match=r"`preset` to be one of \['authors_code'\], but got 'author' .*feature_sets.a"):
        feature_sets({**CONFIG, "feature_sets": {"a": {"preset": "author"}}})


def test_unknown_feature_set_is_named_before_any_job():
    with pytest.raises(ValueError, match=r"got 'sdv3' \(config key `experiments.x`\)"):
        parse_experiments(with_experiments({"x": {"feature_set": "sdv3"}}))


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        ({"taps": ["L13_T20"]}, r"Expected `taps` to be among the feature set's"),
        ({"taps": ["layer9"]}, "look like L09_T20"),
        ({"tables": ["figures"]}, r"Expected `tables` to be among \['results', 'ablation'\]"),
        ({"matrix": ["red_square_flat"]}, "at least two domains"),
        ({"head": {"kind": "rnn"}}, "rnn"),
        ({"train": {"preset": "imagenet"}}, "imagenet"),
        ({"protocl": {}}, r"unknown key\(s\) \['protocl'\]"),
        ({"matrix": ["a", "b"], "protocol": {"name": "ucf_to_hmdb"}}, "custom or ak_unseen_species"),
    ],
)
def test_bad_experiments_fail_with_the_key(experiment, message):
    with pytest.raises(ValueError, match=message):
        parse_experiments(with_experiments({"x": experiment}))


def test_bad_names_and_taps():
    with pytest.raises(ValueError, match="experiment names"):
        parse_experiments(with_experiments({"my run": {}}))
    assert parse_tap("L09_T20") == (9, 20)
    assert variant_name("frog / toad") == "from_frog_toad"


def test_reference_numbers_match_design_and_protocols():
    assert set(REFERENCE_RESULTS) <= set(PROTOCOLS)
    assert ("ActionDiff", "micro_ap", 80.79) in REFERENCE_RESULTS["ak_full"]
    # Table 3 of the paper: ActionDiff and the three frozen backbones run with the same head
    assert REFERENCE_RESULTS["hmdb_to_ucf"] == [("ActionDiff", "top1_accuracy", 81.5), ("V-JEPA", "top1_accuracy", 60.58),
                                                ("SDv2", "top1_accuracy", 79.5), ("VideoMAEv2", "top1_accuracy", 26.7)]
    assert all({m for m, _, _ in rows} == set(REFERENCE_BACKBONES) for rows in REFERENCE_RESULTS.values())
    for protocol, rows in REFERENCE_RESULTS.items():
        assert {metric for _, metric, _ in rows} <= set(PROTOCOLS[protocol].metrics)


def test_most_frequent_class_baseline_by_hand():
    train = np.eye(3, dtype=np.float32)[[0, 1, 1, 2, 1]]  # class 1 is the most frequent
    test = np.eye(3, dtype=np.float32)[[1, 0, 1, 2]]
    result = most_frequent_class(train, test, ["a", "a", "b", "b"], ["eat", "run", "sit"])
    assert result.class_name == "run"
    assert result.metrics["top1_accuracy"] == pytest.approx(50.0)
    assert result.per_domain == {"a": pytest.approx(50.0), "b": pytest.approx(50.0)}
    # Micro AP by hand: class 1's score 0.6 ranks 4 entries first (2 positives: precision 1/2 at
    # recall 1/2), the 8 entries scored 0.2 follow (precision 4/12 at recall 1).
    assert result.metrics["micro_ap"] == pytest.approx(100 * (0.5 * 0.5 + 0.5 * 4 / 12), abs=1e-4)


def test_domain_class_counts_follow_the_protocol():
    manifest = pd.DataFrame({
        "video_id": [f"v{i}" for i in range(8)],
        "labels": ["run", "run", "eat", "run", "eat", "eat", "eat", "run"],
        "domain": ["a", "a", "a", "a", "b", "b", "c", "c"],
        "split": ["train", "train", "val", "train", "test", "test", "train", "train"],
    })
    protocol = ProtocolSettings(train_domains=("a",), test_domains=("b",))
    counts = domain_class_counts(manifest, protocol, ["eat", "run"])
    assert counts == {"a": [1, 3], "b": [2, 0]}  # domain c is unused by this protocol


def test_train_overrides_plan_and_resolve_as_training_does():
    # `train: {overrides: {...}}` used to be refused by planning ("unknown key(s) ['overrides']")
    from actiondiff.cli import _experiment_settings
    from actiondiff.settings import resolve_train

    config = with_experiments({"x": {"train": {"overrides": {"epochs": 3}, "seeds": [1, 2]}}})
    experiment = parse_experiments(config)["x"]
    assert experiment.seeds == (1, 2)
    planned, seeds = resolve_train(experiment.blocks["train"], experiment.protocol.spec.preset,
                                   experiment.protocol.spec.multilabel)
    _, _, trained, train_seeds = _experiment_settings({**config, **experiment.blocks})
    assert planned == trained and planned.epochs == 3 and seeds == train_seeds == [1, 2]


def test_multilabel_defaults_from_the_protocol_in_planning_too():
    from actiondiff.settings import resolve_train

    multi, _ = resolve_train({}, "animal_kingdom_full", True)
    single, _ = resolve_train({"multilabel": False, "loss": "ce"}, "animal_kingdom_full", True)
    assert multi.multilabel and not single.multilabel


@pytest.mark.parametrize("seeds", [[-1], [], [0.5], "0"])
def test_bad_seeds_fail_when_planning(seeds):
    with pytest.raises(ValueError, match="train.seeds"):
        parse_experiments(with_experiments({"x": {"train": {"seeds": seeds}}}))


def test_a_key_given_twice_in_train_is_named():
    with pytest.raises(ValueError, match=r"\['epochs'\] are both in `train` and `train.overrides`"):
        parse_experiments(with_experiments({"x": {"train": {"epochs": 2, "overrides": {"epochs": 3}}}}))


def _demo_manifest(root: Path) -> Path:
    """The demo's manifest (4 domains x 4 actions x 2 clips) where the workflow writes it."""
    from actiondiff.cli import main
    from actiondiff.tools.demo_data import make_demo_dataset

    make_demo_dataset(root / "resources" / "demo", videos_per_pair=2, num_frames=4, size=16,
                      test_domains=("yellow_cross_checker",))
    manifest = root / "results" / "manifests" / "demo.csv"
    columns = {"video": "video", "label": "action", "domain": "domain", "split": "split"}
    assert main(["manifest", "custom", "--annotations", str(root / "resources" / "demo" / "labels.csv"),
                 "--videos", str(root / "resources" / "demo"), "--out", str(manifest),
                 "--missing", str(manifest.with_suffix(".missing.csv")),
                 "--settings", json.dumps({"dataset": {"columns": columns}})]) == 0
    return manifest


def test_protocol_domains_are_checked_against_the_manifest_when_planning(tmp_path):
    from actiondiff.io.manifest import read_manifest

    manifest = read_manifest(_demo_manifest(tmp_path))
    check_protocols(parse_experiments(CONFIG), manifest, "demo.csv")  # the demo's own config plans
    typo = with_experiments({"x": {"protocol": {"train_domains": ["red_square_flatt"]}}})
    with pytest.raises(ValueError, match=r"among \['blue_diamond_stripes', 'green_disc_noise', 'red_square_flat', "
                       r"'yellow_cross_checker'\], but got unknown \['red_square_flatt'\] \(config key `experiments.x`, "
                       r"variant main; manifest demo.csv\)"):
        check_protocols(parse_experiments(typo), manifest, "demo.csv")
    matrix = with_experiments({"m": {"matrix": ["red_square_flat", "purple"]}})
    with pytest.raises(ValueError, match=r"unknown \['purple'\] \(config key `experiments.m`, variant from_red_square_flat"):
        check_protocols(parse_experiments(matrix), manifest, "demo.csv")


def test_a_typo_in_train_domains_fails_the_dry_run(tmp_path):
    import os
    import subprocess
    import sys

    from workflow_copy import copy_workflow

    work = copy_workflow(tmp_path / "work", with_experiments({"x": {"protocol": {"train_domains": ["green_disk_noise"]}}}))
    _demo_manifest(work)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert dry.returncode != 0
    assert "but got unknown ['green_disk_noise'] (config key `experiments.x`, variant main" in dry.stdout + dry.stderr
