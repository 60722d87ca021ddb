"""The typed result of evaluating one run, and its JSON (what the report reads; no torch).

`actiondiff.learn.run.evaluate_run` returns an `Evaluation`; `write_evaluation` writes
`Evaluation.to_json()`; the report (`actiondiff.report.tables`, `.figures`) reads it back with
`Evaluation.read`. Metrics are in percent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from actiondiff.learn.metrics import METRIC_LABELS


@dataclass
class MeanStd:
    """A metric over seeds (%; `std` is the sample std, ddof 1: 0 for one seed)."""

    mean: float
    std: float


@dataclass
class Baseline:
    """The most-frequent-class baseline: the training side's class frequencies as scores."""

    class_name: str  # the most frequent class of the training side (JSON: "class")
    metrics: dict[str, float]  # every metric, %
    per_domain: dict[str, float]  # top-1 accuracy per test domain, %


@dataclass
class RoleEvaluation:
    """Metrics of the models on the videos of one role (in-domain: "val")."""

    metrics: dict[str, MeanStd]
    per_domain: list[dict[str, Any]]  # {"seed", "domain", "top1_accuracy"}
    num_videos: int


@dataclass
class Evaluation:
    """Out-of-domain (test) and in-domain (val) evaluation of one run's seeds, with its baseline.

    `metrics`, `per_seed`, `per_domain`, `per_class` and `confusion` are on the test videos;
    `in_domain` on the val videos (the clips that selected the epoch: optimistic; None without
    a validation set). On disk it
    is the JSON of `to_json` (the report's input), read back by `read`.
    """

    tap: str
    settings_hash: str
    classes: list[str]
    metrics: dict[str, MeanStd]
    per_seed: list[dict[str, float]]
    per_domain: list[dict[str, Any]]  # {"seed", "domain", "top1_accuracy"}
    per_class: list[dict[str, Any]]  # {"class", "positives", "ap", "top1_accuracy"} (mean over seeds; null: no positives)
    confusion: list[list[int]]  # [true, predicted], summed over seeds
    num_test_videos: int
    excluded_videos: list[str]
    baseline: Baseline
    in_domain: RoleEvaluation | None  # None: the run had no validation set (trained on the whole training side)
    class_counts: dict[str, list[int]]  # {domain: clips per class} over the protocol's videos
    protocol: dict[str, Any]  # protocol settings plus "metrics" and "headline_metric"
    run: dict[str, Any] = field(default_factory=dict)  # experiment, variant, ablation...
    # how the evaluated heads' epoch was chosen: "last" (no validation set) or "best_val";
    # "+"-joined when seeds differ
    epoch_selection: str = "best_val"
    metric_labels: dict[str, str] = field(default_factory=lambda: dict(METRIC_LABELS))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["baseline"]["class"] = data["baseline"].pop("class_name")
        data["num_excluded_videos"] = len(self.excluded_videos)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        """Rebuild from `to_json`'s dict (ignores `num_excluded_videos`, derived)."""
        def mean_std(block: dict[str, Any]) -> dict[str, MeanStd]:
            return {name: MeanStd(**value) for name, value in block.items()}

        values = {k: v for k, v in data.items() if k != "num_excluded_videos"}
        baseline = dict(values["baseline"])
        values["baseline"] = Baseline(class_name=baseline.pop("class"), **baseline)
        values["metrics"] = mean_std(values["metrics"])
        inside = values.get("in_domain")
        values["in_domain"] = RoleEvaluation(**{**inside, "metrics": mean_std(inside["metrics"])}) if inside else None
        return cls(**values)

    @classmethod
    def read(cls, path: str | Path) -> Evaluation:
        return cls.from_json(json.loads(Path(path).read_text()))
