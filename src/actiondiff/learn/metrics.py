"""Metrics with unambiguous names (docs/design.md section 5, "metric parity trap").

- `micro_ap`: torchmetrics MultilabelAveragePrecision(average="micro"): the authors' "mAP".
- `macro_ap_present`: mean per-class AP over classes with at least one positive (Animal
  Kingdom's own mAP).
- `macro_ap_all`: torchmetrics' macro average over all classes (torchmetrics gives a class
  without positives an AP of 0 and keeps it in the mean).
- `top1_accuracy`: fraction of videos whose arg-max class is one of their positives
  (single-label accuracy; "top-1 hit rate" for multi-label targets).
All take probabilities `probs` [n, classes] float and `targets` [n, classes] in {0, 1}. The
functions return fractions in [0, 1]; `all_metrics` and the tables give percent.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

METRIC_LABELS = {
    "top1_accuracy": "top-1 accuracy (%)",
    "micro_ap": "micro AP (%) [authors' mAP]",
    "macro_ap_present": "macro AP over classes with positives (%) [dataset mAP]",
    "macro_ap_all": "macro AP over all classes (%) [torchmetrics macro]",
}

# torchmetrics warns once per class without positives; we report those classes explicitly.
_NO_POSITIVES_WARNING = "No positive samples found in target"


def _check(probs: np.ndarray, targets: np.ndarray) -> None:
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(
            f"Expected `probs` and `targets` to be [n, classes] arrays of the same shape, "
            f"but got {probs.shape} and {targets.shape}."
        )
    if probs.shape[0] == 0:
        raise ValueError("Expected at least one row of `probs`, but got none (no test videos?).")


def _ap(probs: np.ndarray, targets: np.ndarray, average: str) -> np.ndarray:
    """torchmetrics multilabel AP with the given averaging ("micro", "macro", "none")."""
    # Imported here: `import torchmetrics` takes ~8 s (it imports torchvision and transformers),
    # which every table, plot and single-label training job would otherwise pay.
    import torch
    from torchmetrics.functional.classification import multilabel_average_precision

    _check(probs, targets)
    t_probs = torch.as_tensor(np.asarray(probs), dtype=torch.float32)
    t_targets = torch.as_tensor(np.asarray(targets)).long()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NO_POSITIVES_WARNING)
        return multilabel_average_precision(t_probs, t_targets, num_labels=probs.shape[1], average=average).numpy()


def per_class_ap(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[classes] float64 AP of each class; NaN for a class with no positive example."""
    values = _ap(probs, targets, "none").astype(np.float64)
    values[np.asarray(targets).sum(axis=0) == 0] = np.nan
    return values


def micro_ap(probs: np.ndarray, targets: np.ndarray) -> float:
    """AP of all (video, class) pairs pooled: the authors' "mAP"."""
    return float(_ap(probs, targets, "micro"))


def macro_ap_present(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean per-class AP over the classes that have a positive example."""
    values = per_class_ap(probs, targets)
    if np.isnan(values).all():
        raise ValueError("Expected some class to have a positive example, but none has.")
    return float(np.nanmean(values))


def macro_ap_all(probs: np.ndarray, targets: np.ndarray) -> float:
    """torchmetrics' macro AP: every class counts, a class without positives as AP 0."""
    return float(_ap(probs, targets, "macro"))


def top1_accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is a positive class."""
    _check(probs, targets)
    picked = np.asarray(probs).argmax(axis=1)
    return float(np.asarray(targets)[np.arange(len(picked)), picked].mean())


def per_class_accuracy(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[classes] float64: among rows where class c is positive, the fraction predicted c
    (arg-max); for single-label targets this is each class's recall. NaN without positives."""
    _check(probs, targets)
    targets = np.asarray(targets)
    hit = (np.asarray(probs).argmax(axis=1)[:, None] == np.arange(targets.shape[1])[None]) & (targets > 0)
    positives = targets.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, hit.sum(axis=0) / positives, np.nan)


def all_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Every headline metric, in percent (keys as in METRIC_LABELS)."""
    functions = {
        "top1_accuracy": top1_accuracy,
        "micro_ap": micro_ap,
        "macro_ap_present": macro_ap_present,
        "macro_ap_all": macro_ap_all,
    }
    return {name: 100.0 * fn(probs, targets) for name, fn in functions.items()}


def per_class_table(probs: np.ndarray, targets: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per class: positives, AP (%) and top-1 accuracy (%) (NaN without positives)."""
    return pd.DataFrame(
        {
            "class": classes,
            "positives": np.asarray(targets).sum(axis=0).astype(np.int64),
            "ap": 100.0 * per_class_ap(probs, targets),
            "top1_accuracy": 100.0 * per_class_accuracy(probs, targets),
        }
    )


def per_group_accuracy(probs: np.ndarray, targets: np.ndarray, groups: list[str]) -> dict[str, float]:
    """Top-1 accuracy (%) within each group value (species group, view, domain...)."""
    _check(probs, targets)
    if len(groups) != len(probs):
        raise ValueError(f"Expected one group per row ({len(probs)}), but got {len(groups)}.")
    picked = np.asarray(probs).argmax(axis=1)
    frame = pd.DataFrame({"group": groups, "correct": np.asarray(targets)[np.arange(len(picked)), picked]})
    return {str(k): 100.0 * float(v) for k, v in frame.groupby("group")["correct"].mean().items()}


def confusion_matrix(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[classes, classes] int64 counts: row = true class, column = predicted (arg-max).

    Meant for single-label targets; a multi-label row counts under its first positive class.
    """
    _check(probs, targets)
    classes = probs.shape[1]
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(targets).argmax(axis=1), np.asarray(probs).argmax(axis=1)), 1)
    return matrix


def most_frequent_class_probs(train_targets: np.ndarray, num_rows: int) -> np.ndarray:
    """The most-frequent-class baseline (Fig. S15/S16) as scores for `num_rows` test rows.

    Every row gets the training side's class frequencies [classes] (float64, summing to 1 for
    single-label targets), so its arg-max is the training domain's most frequent class (the
    lowest class index on ties) and AP metrics see one constant ranking.
    Returns:
        [num_rows, classes] float64.
    """
    train_targets = np.asarray(train_targets, dtype=np.float64)
    if train_targets.ndim != 2 or train_targets.shape[0] == 0:
        raise ValueError(f"Expected `train_targets` to be a non-empty [n, classes] array, but got shape {train_targets.shape}.")
    frequency = train_targets.sum(axis=0) / train_targets.shape[0]
    return np.repeat(frequency[None], num_rows, axis=0)
