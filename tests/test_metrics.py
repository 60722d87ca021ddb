"""Metrics pinned against hand-computed values, including a class with no positives."""

import numpy as np
import pytest

from actiondiff.learn.metrics import (
    all_metrics,
    confusion_matrix,
    macro_ap_all,
    macro_ap_present,
    micro_ap,
    most_frequent_class_probs,
    per_class_accuracy,
    per_class_ap,
    per_class_table,
    per_group_accuracy,
    top1_accuracy,
)

# 4 videos x 3 classes; class 2 has no positive example.
PROBS = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.3], [0.2, 0.8, 0.4], [0.4, 0.1, 0.9]])
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_per_class_ap_by_hand():
    # class 0 ranked: .9(+) .6 .4 .2(+) -> (1/1 + 2/4) / 2 = 0.75
    # class 1 ranked: .8(+) .7(+) .2 .1 -> (1 + 1) / 2 = 1.0; class 2: no positives -> NaN
    values = per_class_ap(PROBS, TARGETS)
    assert values[:2] == pytest.approx([0.75, 1.0])
    assert np.isnan(values[2])


def test_macro_ap_present_skips_class_without_positives():
    assert macro_ap_present(PROBS, TARGETS) == pytest.approx((0.75 + 1.0) / 2)


def test_macro_ap_all_counts_class_without_positives_as_zero():
    assert macro_ap_all(PROBS, TARGETS) == pytest.approx((0.75 + 1.0 + 0.0) / 3)


def test_micro_ap_by_hand():
    # All 12 (video, class) pairs pooled, 4 positives. Distinct thresholds, descending:
    # .9: 2 predicted, 1 TP (P 1/2, R 1/4); .8: 3, 2 TP (P 2/3, R 2/4); .7: 4, 3 TP (P 3/4, R 3/4);
    # .6/.4/.3: recall unchanged; .2: 10 predicted, 4 TP (P 4/10, R 1).
    expected = 0.25 * (1 / 2) + 0.25 * (2 / 3) + 0.25 * (3 / 4) + 0.25 * (4 / 10)
    assert micro_ap(PROBS, TARGETS) == pytest.approx(expected)


def test_top1_and_per_class_accuracy():
    # arg-max per row: 0 (hit), 1 (hit), 1 (hit), 2 (miss: no positives)
    assert top1_accuracy(PROBS, TARGETS) == pytest.approx(0.75)
    accuracy = per_class_accuracy(PROBS, TARGETS)
    # class 0 positive in rows 0, 2: predicted 0 only in row 0; class 1 rows 1, 2 both predicted 1
    assert accuracy[:2] == pytest.approx([0.5, 1.0])
    assert np.isnan(accuracy[2])


def test_all_metrics_in_percent_and_table():
    metrics = all_metrics(PROBS, TARGETS)
    assert metrics["top1_accuracy"] == pytest.approx(75.0)
    assert metrics["macro_ap_present"] == pytest.approx(87.5)
    assert metrics["macro_ap_all"] == pytest.approx(175.0 / 3)
    table = per_class_table(PROBS, TARGETS, ["a", "b", "c"])
    assert table["positives"].tolist() == [2, 2, 0]
    assert table["ap"].iloc[:2].tolist() == pytest.approx([75.0, 100.0])
    assert np.isnan(table["ap"].iloc[2])


def test_per_group_accuracy_and_confusion():
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9], [0.55, 0.45]])
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0]])
    groups = ["birds", "birds", "fish", "fish", "fish"]
    assert per_group_accuracy(probs, targets, groups) == pytest.approx({"birds": 50.0, "fish": 200.0 / 3})
    # rows: true class; columns: predicted
    assert confusion_matrix(probs, targets).tolist() == [[2, 1], [1, 1]]


def test_most_frequent_class_baseline():
    train = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    probs = most_frequent_class_probs(train, 3)
    assert probs.shape == (3, 3)
    assert probs[0].tolist() == pytest.approx([0.25, 0.5, 0.25])
    test = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0]])
    assert top1_accuracy(probs, test) == pytest.approx(2 / 3)
    # constant scores: each class's AP is its prevalence among the test rows
    assert per_class_ap(probs, test)[:2] == pytest.approx([1 / 3, 2 / 3])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        micro_ap(PROBS, TARGETS[:, :2])
