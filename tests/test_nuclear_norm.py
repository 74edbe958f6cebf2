"""The nuclear norm behind Procrustes and the shape metric: its fast path (eigenvalues of the
smaller Gram) against the SVD, and the shape metric at alpha = 1 keeping every direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repsim_cli.compare import compare_stores
from repsim_cli.metrics import _linalg
from repsim_cli.metrics._linalg import nuclear_norm
from repsim_cli.metrics.procrustes import procrustes_distance, shape_distance


def svd_nuclear(m: np.ndarray) -> float:
    return float(np.linalg.svd(m, compute_uv=False).sum())


def with_spectrum(rng: np.random.Generator, p: int, q: int, s: np.ndarray) -> np.ndarray:
    """A (p, q) matrix with singular values ``s`` (min(p, q) of them) and random singular vectors."""
    u, _ = np.linalg.qr(rng.standard_normal((p, p)))
    v, _ = np.linalg.qr(rng.standard_normal((q, q)))
    k = min(p, q)
    return (u[:, :k] * s) @ v[:, :k].T


@settings(max_examples=60, deadline=None)
@given(p=st.integers(1, 40), q=st.integers(1, 40), decades=st.floats(0.0, 16.0),
       zeros=st.integers(0, 5), seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-6, 1e6))
def test_equals_the_svd_to_1e12_for_any_conditioning(p, q, decades, zeros, seed, scale):
    """Well-conditioned, ill-conditioned and rank-deficient products: within 5e-11 of the SVD's
    sum relative to the value (what the error bound admits; the Procrustes/shape contract is
    1e-10)."""
    rng = np.random.default_rng(seed)
    k = min(p, q)
    s = scale * np.logspace(0.0, -decades, k)
    s[k - min(zeros, k - 1):] = 0.0 if k > 1 else s[k - 1:]
    m = with_spectrum(rng, p, q, s)
    want = svd_nuclear(m)
    assert nuclear_norm(m) == pytest.approx(want, rel=5e-11, abs=1e-300)


def test_fast_path_is_taken_when_well_conditioned_and_the_svd_otherwise(monkeypatch):
    """The SVD runs only for the products whose error bound the fast path cannot meet."""
    calls = []
    real = _linalg.singular_values
    monkeypatch.setattr(_linalg, "singular_values", lambda m: calls.append(m.shape) or real(m))
    rng = np.random.default_rng(0)
    good = with_spectrum(rng, 30, 20, np.linspace(1.0, 0.5, 20))
    assert nuclear_norm(good) == pytest.approx(svd_nuclear(good), rel=1e-14)
    assert calls == []
    singular = with_spectrum(rng, 30, 20, np.r_[np.ones(19), 0.0])
    assert nuclear_norm(singular) == pytest.approx(svd_nuclear(singular), rel=1e-14)
    assert calls == [(30, 20)]
    assert nuclear_norm(np.zeros((0, 3))) == 0.0
    assert nuclear_norm(np.zeros((4, 3))) == 0.0


def netrep_angle(x: np.ndarray, y: np.ndarray) -> float:
    """netrep ``LinearMetric(alpha=1, center_columns=True)`` angle: no whitening, no truncation."""
    a, b = x - x.mean(0), y - y.mean(0)
    cos = svd_nuclear(a.T @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def faint_direction_layers(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Two layers, one with a direction whose variance is 1e-12 of the largest — below the rank
    tolerance 1e-10 that whitening uses, well above round-off."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    x[:, 4] = 1e-6 * rng.standard_normal(n) + x[:, 4] * 0.0
    y = x @ rng.standard_normal((5, 7)) + 0.1 * rng.standard_normal((n, 7))
    return x, y


@pytest.mark.parametrize("seed", range(3))
def test_shape_at_alpha_one_keeps_faint_directions_like_netrep_and_procrustes(seed):
    x, y = faint_direction_layers(seed)
    angle = shape_distance(x, y)
    assert angle == pytest.approx(netrep_angle(x, y), abs=1e-12)
    assert math.cos(angle) == pytest.approx(1.0 - procrustes_distance(x, y) / 2.0, abs=1e-12)


@pytest.mark.parametrize("side", ["sample", "feature"])
def test_shape_and_procrustes_agree_on_either_side_with_a_faint_direction(make_store, side):
    x, y = faint_direction_layers(7)
    layers = {"x": x.astype(np.float64), "y": y.astype(np.float64)}
    path = make_store(layers)
    res = compare_stores(path, None, ["shape", "procrustes"], side=side)
    shape, proc = res.metrics["shape"].value, res.metrics["procrustes"].value
    np.testing.assert_allclose(np.cos(shape), 1.0 - proc / 2.0, atol=1e-10)
    assert shape[0, 1] == pytest.approx(netrep_angle(x, y), abs=1e-10)
