"""Metrics with unambiguous names (DESIGN section 5, "metric parity trap").

- `micro_ap`: torchmetrics MultilabelAveragePrecision(average="micro"): the authors' "mAP".
- `macro_ap_present`: mean per-class AP over classes with at least one positive (Animal
  Kingdom's own mAP).
- `macro_ap_all`: torchmetrics' macro average over all classes (classes without positives
  count as 0 AP, as torchmetrics returns for them).
- `top1_accuracy`: single-label accuracy of the arg-max class.
All take probabilities [n, classes] and targets [n, classes] in {0, 1}.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import multilabel_average_precision

METRIC_LABELS = {
    "top1_accuracy": "top-1 accuracy (%)",
    "micro_ap": "micro AP (%) [authors' mAP]",
    "macro_ap_present": "macro AP over classes with positives (%) [dataset mAP]",
    "macro_ap_all": "macro AP over all classes (%) [torchmetrics macro]",
}


def per_class_ap(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[classes] AP of each class; NaN for a class with no positive example."""
    t_probs, t_targets = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(targets).long()
    values = multilabel_average_precision(t_probs, t_targets, num_labels=probs.shape[1], average="none").numpy()
    values = values.astype(np.float64)
    values[targets.sum(axis=0) == 0] = np.nan
    return values


def micro_ap(probs: np.ndarray, targets: np.ndarray) -> float:
    t_probs, t_targets = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(targets).long()
    return float(multilabel_average_precision(t_probs, t_targets, num_labels=probs.shape[1], average="micro"))


def macro_ap_present(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.nanmean(per_class_ap(probs, targets)))


def macro_ap_all(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.nan_to_num(per_class_ap(probs, targets), nan=0.0).mean())


def top1_accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is a positive class."""
    picked = probs.argmax(axis=1)
    return float(targets[np.arange(len(picked)), picked].mean())


def all_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Every headline metric, in percent."""
    functions = {
        "top1_accuracy": top1_accuracy,
        "micro_ap": micro_ap,
        "macro_ap_present": macro_ap_present,
        "macro_ap_all": macro_ap_all,
    }
    return {name: 100.0 * fn(probs, targets) for name, fn in functions.items()}


def per_group_accuracy(probs: np.ndarray, targets: np.ndarray, groups: list[str]) -> dict[str, float]:
    """Top-1 accuracy (%) within each group value (species group, view, domain...)."""
    frame = pd.DataFrame({"group": groups, "correct": targets[np.arange(len(probs)), probs.argmax(axis=1)]})
    return {str(k): 100.0 * float(v) for k, v in frame.groupby("group")["correct"].mean().items()}


def confusion_matrix(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[classes, classes] counts: row = true class (first positive), column = predicted."""
    classes = probs.shape[1]
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (targets.argmax(axis=1), probs.argmax(axis=1)), 1)
    return matrix
