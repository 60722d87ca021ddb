"""The config schema agrees with the settings dataclasses, field by field: keys, defaults, bounds
and choices (the dataclasses validate; the schema must say the same, so neither can drift)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from actiondiff.learn.protocols import ProtocolSettings
from actiondiff.settings import (
    DecodeSettings,
    ExtractSettings,
    HeadSettings,
    TrainSettings,
    WeightsSettings,
)

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text())
BLOCKS = {
    "decode": DecodeSettings,
    "extraction": ExtractSettings,
    "weights": WeightsSettings,
    "head": HeadSettings,
    "protocol": ProtocolSettings,
    "train": TrainSettings,
}
# Keys of the `train` block that are not TrainSettings fields (resolve_train reads them).
TRAIN_EXTRA = {"preset", "seeds", "overrides"}


def properties(block: str) -> dict[str, dict[str, Any]]:
    return SCHEMA["properties"][block]["properties"]


def fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def default(f: dataclasses.Field) -> Any:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return list(value) if isinstance(value, tuple) else value


def cases() -> list[tuple[str, str]]:
    return [(block, name) for block, cls in BLOCKS.items() for name in fields(cls)]


@pytest.mark.parametrize("block", list(BLOCKS))
def test_schema_keys_are_the_dataclass_fields(block):
    expected = set(fields(BLOCKS[block])) | (TRAIN_EXTRA if block == "train" else set())
    assert set(properties(block)) == expected
    assert SCHEMA["properties"][block]["additionalProperties"] is False
    assert all(spec.get("description") for spec in properties(block).values())


@pytest.mark.parametrize(("block", "name"), cases())
def test_schema_default_is_the_dataclass_default(block, name):
    spec, value = properties(block)[name], default(fields(BLOCKS[block])[name])
    if block == "train":  # defaults come from the preset
        assert "default" not in spec
    elif block == "protocol" and "default" not in spec:  # some defaults depend on the protocol's name
        return
    elif value is None:
        assert spec.get("default") is None
    else:
        assert spec.get("default") == value, f"`{block}.{name}`: schema {spec.get('default')!r}, settings {value!r}"


# Fields whose valid range depends on another field: the probe sets that one so only the
# probed bound decides (the schema cannot express these couplings; the settings check them).
CONTEXT = {
    (ExtractSettings, "num_timesteps"): {"timestep_indices": (0,)},
    (ExtractSettings, "sigma_max"): {"sigma_min": 1e-9},
    (ExtractSettings, "conditioning"): {"action_names": ("walk",)},
    (TrainSettings, "loss"): {"multilabel": True},
    (ProtocolSettings, "name"): {},
}


def build(cls: type, name: str, value: Any) -> Any:
    values = {**CONTEXT.get((cls, name), {}), name: tuple(value) if isinstance(value, list) else value}
    if cls is TrainSettings and name == "loss" and value == "ce":
        values["multilabel"] = False
    if cls is ProtocolSettings and name == "name" and value == "ak_species_pair":
        values.update(train_domains=("bird",), test_domains=("fish",))
    return cls(**values)


def probes(spec: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(values the schema accepts, values it refuses) at its bounds and choices."""
    ok, bad = [], []
    number = "integer" if "integer" in (spec["type"] if isinstance(spec["type"], list) else [spec["type"]]) else "number"
    step = 1 if number == "integer" else 1e-6
    if "minimum" in spec:
        ok.append(spec["minimum"])
        bad.append(spec["minimum"] - step)
    if "maximum" in spec:
        ok.append(spec["maximum"])
        bad.append(spec["maximum"] + step)
    if "exclusiveMaximum" in spec:
        ok.append(spec["exclusiveMaximum"] - step)
        bad.append(spec["exclusiveMaximum"])
    if "exclusiveMinimum" in spec:
        ok.append(spec["exclusiveMinimum"] + step)
        bad.append(spec["exclusiveMinimum"])
    if "enum" in spec:
        ok += spec["enum"]
        bad.append("no-such-choice")
    return ok, bad


@pytest.mark.parametrize(("block", "name"), cases())
def test_schema_bounds_and_choices_are_the_dataclass_checks(block, name):
    spec, cls = properties(block)[name], BLOCKS[block]
    if spec.get("type") == "array" and isinstance(spec.get("items"), dict):
        item_ok, item_bad = probes({"type": spec["items"].get("type", "number"), **spec["items"]})
        ok, bad = [[v] for v in item_ok], [[v] for v in item_bad]
    elif "type" in spec:
        ok, bad = probes(spec)
    else:
        ok, bad = [], []
    for value in ok:
        build(cls, name, value)  # raises if the settings refuse what the schema allows
    for value in bad:
        with pytest.raises((ValueError, TypeError)):
            build(cls, name, value)


REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_the_repository_config_is_valid():
    from actiondiff.plan import config_errors

    assert config_errors(CONFIG, SCHEMA) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"shard_sise": 3}, "Expected config key `shard_sise` to be one of ['backbone', 'dataset',"),
        ({"head": {**CONFIG["head"], "kind": "rnn"}}, "Expected config key `head.kind` to be one of ['transformer', 'mlp', 'linear', 'aggregate'], but got 'rnn'"),
        ({"decode": {**CONFIG["decode"], "strid": 2}}, "Expected config key `decode.strid` to be one of ["),
        ({"shard_size": 0}, "Expected config key `shard_size` to satisfy minimum 1, but got 0"),
    ],
)
def test_config_errors_are_one_line_naming_key_choices_and_source(change, expected):
    from actiondiff.plan import check_config

    with pytest.raises(ValueError) as raised:
        check_config({**CONFIG, **change}, REPO / "workflow" / "schemas" / "config.schema.yaml", "my.yaml")
    message = str(raised.value)
    assert expected in message and "(my.yaml)" in message
    assert len(message.splitlines()) <= 6  # not the ~900-line schema dump


def test_identical_feature_sets_are_named_in_pairs_with_the_merge_hint():
    from actiondiff.plan import feature_sets

    config = {**CONFIG, "feature_sets": {"a": {}, "b": {"layers": [9]}, "c": {"layers": [3]}}}
    config["extraction"] = {**CONFIG["extraction"], "layers": [9]}
    with pytest.raises(ValueError, match=r"\['a', 'b'\] are identical .* --replace-workflow-config"):
        feature_sets(config)
