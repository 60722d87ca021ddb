"""The command line's own behaviour: how --config and --settings combine."""

from __future__ import annotations

import argparse

import yaml

from actiondiff.cli import _load_settings, deep_merge


def test_settings_merge_into_the_config_block_by_block(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"decode": {"height": 576, "width": 1024, "stride": 4}, "device": "cpu"}))
    args = argparse.Namespace(config=str(config), settings='{"decode": {"height": 128}, "device": "cuda"}')
    assert _load_settings(args) == {"decode": {"height": 128, "width": 1024, "stride": 4}, "device": "cuda"}


def test_deep_merge_replaces_non_mappings_and_keeps_the_base():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "d": {"e": 2}}) == {"a": {"b": 1, "c": [3]}, "d": {"e": 2}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # not modified


def test_help_lists_user_verbs_apart_from_rule_verbs(capsys):
    from actiondiff.cli import USER_VERBS, build_parser

    parser = build_parser()
    parser.print_help()
    text = capsys.readouterr().out
    user, rules = text.split("workflow rule verbs")
    user = user.split("commands:")[1]

    def listed(part: str) -> set[str]:
        return {line.split()[0] for line in part.splitlines() if line.startswith("  ") and line[2] != " "}

    assert {"extract", "predict", "localize", "weights", "store", "flops", "train", "evaluate"} <= listed(user)
    assert {"make-demo-data", "build-manifest", "extract-features"}.isdisjoint(listed(user))
    assert {"build-manifest", "verify-features", "evaluate-head", "plot-grid"} <= listed(rules)
    assert not {"extract", "extract-features", "predict", "train", "train-head"} & listed(rules)
    assert set(USER_VERBS) <= set(parser._subparsers._group_actions[0].choices)  # every user verb exists
