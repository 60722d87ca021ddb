"""The Karras/EDM schedule and SVD's preconditioning against hand-computed values."""

from __future__ import annotations

import math

import pytest

from actiondiff.features.sigmas import c_in, c_noise, karras_sigmas


def test_paper_default_timestep_values():
    sigmas = karras_sigmas(30, 0.002, 700.0, 7.0)
    assert len(sigmas) == 30
    assert sigmas[20] == pytest.approx(1.65944, abs=5e-6)
    assert c_in(sigmas[20]) == pytest.approx(0.516141, abs=5e-7)
    assert c_noise(sigmas[20]) == pytest.approx(0.12662, abs=5e-6)


def test_schedule_ends_and_order():
    sigmas = karras_sigmas()
    assert sigmas[0] == pytest.approx(700.0, rel=1e-12)
    assert sigmas[-1] == pytest.approx(0.002, rel=1e-12)
    assert all(a > b for a, b in zip(sigmas, sigmas[1:], strict=False))
    # rho-th roots are evenly spaced
    roots = [s ** (1 / 7) for s in sigmas]
    steps = {round(b - a, 12) for a, b in zip(roots, roots[1:], strict=False)}
    assert len(steps) == 1


def test_preconditioning_formulas():
    assert c_in(0.0) == 1.0
    assert c_in(700.0) == pytest.approx(1 / math.sqrt(490001.0))
    assert c_noise(1.0) == 0.0
    assert c_noise(700.0) == pytest.approx(0.25 * math.log(700.0))


def test_schedule_needs_two_steps():
    with pytest.raises(ValueError, match="num_timesteps"):
        karras_sigmas(1)
