"""Procrustes and shape metrics: references, properties, degenerate input, chunked engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from metric_checks import (
    check_chunked_engine,
    dense_matrix,
    engine_matrices,
    latent_pair,
    well_sampled_pairs,
)
from strategies import activations, pairs

from repsim_cli.errors import DataError, MetricParameterError
from repsim_cli.metrics import get_metric, parse_spec
from repsim_cli.metrics.procrustes import procrustes_distance, shape_distance

ATOL = 1e-8


# ---------------------------------------------------------------- independent dense references
def ding_procrustes(x, y):
    """js-d/sim_metric: centre each unit, divide by ‖·‖_F, ‖A‖² + ‖B‖² − 2‖AᵀB‖_*."""
    a, b = x - x.mean(0), y - y.mean(0)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return np.sum(a * a) + np.sum(b * b) - 2 * np.linalg.norm(a.T @ b, ord="nuc")


def netrep_linear_metric(x, y, alpha=1.0, score="angular", tol=1e-7):
    """ahwillia/netrep ``LinearMetric(alpha, center_columns=True, zero_pad=True, score_method)``:
    zero-pad, centre, partially whiten (eigenvalues clipped at 1e-7, variance preserved), rotate."""
    p = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, p - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, p - y.shape[1])))

    def whiten(z):
        if alpha > 1 - tol:
            return z
        lam, v = np.linalg.eigh(z.T @ z)
        lam = np.maximum(lam, tol)
        d = alpha + (1 - alpha) * lam**-0.5
        d *= np.sqrt(lam.sum() / np.sum(d**2 * lam))
        return z @ ((v * d) @ v.T)

    xw, yw = whiten(x - x.mean(0)), whiten(y - y.mean(0))
    u, _, vt = np.linalg.svd(xw.T @ yw)
    a, b = xw @ u, yw @ vt.T
    if score == "euclidean":
        return np.linalg.norm(a - b)
    return np.arccos(np.clip(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))


SHAPES = [(40, 6, 9), (40, 7, 7), (15, 20, 30), (12, 12, 12)]


# ---------------------------------------------------------------- agreement with references
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES)
def test_procrustes_matches_ding(seed, shape):
    x, y = latent_pair(seed, *shape)
    assert procrustes_distance(x, y) == pytest.approx(ding_procrustes(x, y), abs=ATOL)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("score", ["angular", "euclidean"])
def test_shape_alpha_one_matches_netrep(seed, shape, score):
    x, y = latent_pair(seed, *shape, big_mean=False)
    ref = netrep_linear_metric(x, y, 1.0, score)
    assert shape_distance(x, y, 1.0, score) == pytest.approx(ref, abs=ATOL)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("score", ["angular", "euclidean"])
def test_shape_partial_whitening_matches_netrep_on_equal_widths(seed, alpha, score):
    x, y = latent_pair(seed, n=40, p=7, q=7, big_mean=False)
    ref = netrep_linear_metric(x, y, alpha, score)
    assert shape_distance(x, y, alpha, score) == pytest.approx(ref, abs=ATOL)


def test_shape_partial_whitening_keeps_netreps_zero_padding():
    """netrep pads the narrower layer; with alpha < 1 the padded directions' 1e-7 clip enters the
    variance rescaling, so the euclidean score depends on the padding — repsim reproduces it."""
    x, y = latent_pair(4, n=40, p=5, q=9, big_mean=False)
    for score in ("angular", "euclidean"):
        ref = netrep_linear_metric(x, y, 0.5, score)
        assert shape_distance(x, y, 0.5, score) == pytest.approx(ref, abs=ATOL)


@given(pairs())
def test_angle_and_ding_distance_agree(xy):
    x, y = xy
    assert math.cos(shape_distance(x, y)) == pytest.approx(
        1 - procrustes_distance(x, y) / 2, abs=1e-12
    )


# ---------------------------------------------------------------- properties
def non_orthogonal(x, seed):
    rng = np.random.default_rng(seed)
    return x @ (np.eye(x.shape[1]) + rng.uniform(0.5, 1.0) * rng.standard_normal((x.shape[1],) * 2))


@given(pairs(), st.sampled_from([0.0, 0.5, 1.0]))
def test_range_and_symmetry(xy, alpha):
    x, y = xy
    d = procrustes_distance(x, y)
    assert 0.0 <= d <= 2.0
    assert d == pytest.approx(procrustes_distance(y, x), abs=1e-12)
    theta = shape_distance(x, y, alpha)
    assert 0.0 <= theta <= math.pi / 2
    # Compare cosines: arccos amplifies round-off near θ = 0 (√(2·eps) ≈ 2e-8 rad).
    assert math.cos(theta) == pytest.approx(math.cos(shape_distance(y, x, alpha)), abs=1e-12)
    e = shape_distance(x, y, alpha, "euclidean")
    assert e >= 0.0
    assert e == pytest.approx(shape_distance(y, x, alpha, "euclidean"), rel=1e-9, abs=1e-9)


@given(activations(min_n=6, max_n=30, max_p=12), st.integers(0, 2**32 - 1))
def test_identity_and_orthogonal_invariance(x, seed):
    q = _orthogonal(seed, x.shape[1])
    rotated = x @ q + 5.0
    assert procrustes_distance(x, rotated) == pytest.approx(0.0, abs=1e-9)
    assert shape_distance(x, rotated) == pytest.approx(0.0, abs=2e-6)  # arccos near 1: √(2·eps)
    assert shape_distance(x, rotated, score="euclidean") == pytest.approx(
        0.0, abs=1e-6 * np.linalg.norm(x - x.mean(0))
    )


def _orthogonal(seed, p):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return q * np.sign(np.diag(r))


@given(pairs(), st.integers(0, 2**32 - 1))
def test_rotation_invariance_and_sensitivity_to_other_linear_maps(xy, seed):
    x, y = xy
    q = _orthogonal(seed, x.shape[1])
    before = procrustes_distance(x, y)
    assert procrustes_distance(3.0 * x @ q - 2.0, y) == pytest.approx(before, abs=1e-9)
    assert shape_distance(x @ q, y) == pytest.approx(shape_distance(x, y), abs=1e-7)
    assert abs(procrustes_distance(non_orthogonal(x, seed), y) - before) > 1e-7


@given(well_sampled_pairs(25, 40, max_p=5), st.integers(0, 2**32 - 1))
def test_full_whitening_is_invariant_to_invertible_maps_but_alpha_one_is_not(xy, seed):
    x, y = xy
    mapped = non_orthogonal(x, seed)
    # Cosines again (arccos is ill-conditioned near 0); whitening adds the map's condition number.
    assert math.cos(shape_distance(mapped, y, alpha=0.0)) == pytest.approx(
        math.cos(shape_distance(x, y, alpha=0.0)), abs=1e-9
    )
    assert abs(shape_distance(mapped, y, alpha=1.0) - shape_distance(x, y, alpha=1.0)) > 1e-7


# ---------------------------------------------------------------- degenerate input
@pytest.mark.parametrize("fn", [procrustes_distance, shape_distance])
def test_constant_or_non_finite_layer_is_a_data_error(fn):
    x, _ = latent_pair(0)
    with pytest.raises(DataError, match="constant"):
        fn(np.full((40, 3), -1.0), x)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or Inf"):
        fn(x, bad)


def test_dead_and_duplicate_units_change_nothing_that_should_not_change():
    x, y = latent_pair(1, n=30, p=5, q=6)
    with_dead = np.hstack([x, np.zeros((30, 2))])  # zero-padding, as Ding/netrep would do
    assert procrustes_distance(with_dead, y) == pytest.approx(procrustes_distance(x, y), abs=1e-12)
    assert shape_distance(with_dead, y) == pytest.approx(shape_distance(x, y), abs=1e-9)


def test_n_below_width_is_defined_without_warnings():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 20)), rng.standard_normal((8, 30))
    assert procrustes_distance(x, y) == pytest.approx(ding_procrustes(x, y), abs=ATOL)
    assert shape_distance(x, y) == pytest.approx(netrep_linear_metric(x, y), abs=ATOL)


@pytest.mark.parametrize("text", ["shape:alpha=1.5", "shape:alpha=-0.1", "shape:score=cosine"])
def test_bad_parameters_are_rejected(text):
    with pytest.raises(MetricParameterError):
        parse_spec(text)


# ---------------------------------------------------------------- the engine
SPECS = ["procrustes", "shape", "shape:score=euclidean", "shape:alpha=0.5", "shape:alpha=0"]


@pytest.mark.parametrize("chunk_rows", [3, 7, None])
@pytest.mark.parametrize("side", ["sample", "feature"])
def test_chunked_engine_equals_in_memory_function(make_store, backend, chunk_rows, side):
    check_chunked_engine(make_store, backend, chunk_rows, side, SPECS, n=22, atol=1e-9)


def test_engine_on_layers_wider_than_n(make_store):
    rng = np.random.default_rng(5)
    layers = {"w0": rng.standard_normal((10, 25)), "w1": rng.standard_normal((10, 14)) + 50.0}
    path = make_store(layers, chunk_rows=4)
    got = engine_matrices(path, None, ["procrustes", "shape"], "sample")
    np.testing.assert_allclose(
        got["procrustes"], dense_matrix("procrustes", layers, layers), atol=1e-10
    )
    assert got["procrustes"][0, 1] == pytest.approx(
        ding_procrustes(layers["w0"], layers["w1"]), abs=ATOL
    )
    np.testing.assert_allclose(np.diag(got["shape"]), 0.0)


def test_registry_entries():
    p, s = get_metric("procrustes"), get_metric("shape")
    assert (p.kind, p.symmetric, p.bounds, p.params) == ("distance", True, (0.0, 2.0), ())
    assert (s.kind, s.symmetric, s.bounds) == ("distance", True, (0.0, math.pi / 2))
    assert parse_spec("shape").params == {"alpha": 1.0, "score": "angular"}
