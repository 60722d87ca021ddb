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
