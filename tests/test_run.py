"""Seed statistics of one run (learn/run.py)."""

from __future__ import annotations

import math

from actiondiff.learn.run import _mean_std


def test_spread_over_seeds_is_the_sample_std():
    stats = _mean_std([{"top1": 1.0}, {"top1": 3.0}, {"top1": 5.0}])["top1"]
    assert stats.mean == 3.0 and math.isclose(stats.std, 2.0)  # population std would be 1.633
    assert _mean_std([{"top1": 7.0}])["top1"].std == 0.0  # one seed: no spread
