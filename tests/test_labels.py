"""Names cut to fit a tick label (report/labels.py): an ellipsis marks every cut."""

from __future__ import annotations

import pytest

from actiondiff.report.labels import ELLIPSIS, shorten


def test_a_name_that_fits_is_unchanged():
    assert shorten("bird", 18) == "bird"
    assert shorten("x" * 18, 18) == "x" * 18  # exactly the width: not cut
    assert shorten(7, 18) == "7"  # domain names read from a CSV may be numbers


def test_a_cut_name_ends_in_an_ellipsis_within_the_width():
    assert shorten("blue_diamond_stripes", 10) == "blue_diam" + ELLIPSIS  # 9 characters + the ellipsis
    assert len(shorten("blue_diamond_stripes", 10)) == 10
    # a space before the ellipsis is dropped: "monkey…", not "monkey …"
    assert shorten("primate / monkey / macaque / baboon", 18) == "primate / monkey…"
    assert shorten("abc", 2) == "a…"


def test_a_width_without_room_for_the_ellipsis_is_refused():
    with pytest.raises(ValueError, match="width"):
        shorten("bird", 1)
