"""Imhof's integral stopped early: the tail bound holds, and stopping changes nothing visible."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from repsim_cli.metrics.readout import exact_tv
from repsim_cli.metrics.readout.exact_tv import imhof_tail, tail_bound, tv_from_eigenvalues


def envelope_tail(w: np.ndarray, u: float) -> float:
    """∫_u^∞ 1/(v ρ(v)) dv by quadrature — what :func:`tail_bound` must bound."""

    def env(v: float) -> float:
        return math.exp(-0.25 * float(np.log1p((w * v) ** 2).sum())) / v

    total, edge = 0.0, u
    while edge < 1e12:
        piece = quad(env, edge, 4.0 * edge, epsabs=0.0, epsrel=1e-10, limit=200)[0]
        total += piece
        if piece < 1e-30:
            break
        edge *= 4.0
    return total


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 60), u=st.floats(0.5, 50.0), seed=st.integers(0, 2**31 - 1))
def test_tail_bound_bounds_the_rest_of_the_integral(m, u, seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1.0, 1.0, m)
    w /= np.abs(w).max()
    bound = tail_bound(w, u)
    assert envelope_tail(w, u) <= bound * (1.0 + 1e-9)


def test_tail_bound_is_infinite_when_no_weight_has_switched_on():
    assert math.isinf(tail_bound(np.array([0.01, -0.02]), 1.0))


@pytest.mark.parametrize("m", [3, 40, 400])
@pytest.mark.parametrize("seed", range(3))
def test_stopping_early_changes_the_total_variation_by_less_than_1e12(monkeypatch, m, seed):
    rng = np.random.default_rng(seed)
    lam = np.exp(rng.normal(0.0, 0.2, m))
    early = tv_from_eigenvalues(lam)
    monkeypatch.setattr(exact_tv, "_negligible_from", lambda *a: None)
    full = tv_from_eigenvalues(lam)
    assert early == pytest.approx(full, abs=1e-12)


def test_many_weights_stop_early_and_few_do_not(monkeypatch):
    """Hundreds of weights: the integral stops within a few units of u; two weights: it cannot
    (1/(uρ) decays like u⁻²), so the Fourier tail is integrated as before."""
    stops = []
    real = exact_tv._negligible_from

    def spy(w, start, limit):
        out = real(w, start, limit)
        stops.append(out)
        return out

    monkeypatch.setattr(exact_tv, "_negligible_from", spy)
    rng = np.random.default_rng(5)
    imhof_tail(rng.uniform(-1.0, 1.0, 400), 3.0)
    assert stops[-1] is not None and stops[-1][0] <= 16.0
    imhof_tail(np.array([1.0, -0.5]), 0.7)
    assert stops[-1] is None
