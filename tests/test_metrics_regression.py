"""linreg (R² of b ← a): scikit-learn reference, properties, degenerate input, chunked engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from metric_checks import (
    engine_matrices,
    invertible,
    latent_layers,
    latent_pair,
    well_sampled_pairs,
)
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from strategies import pairs

from repsim_cli._warnings import RepsimWarning
from repsim_cli.errors import DataError
from repsim_cli.metrics import get_metric
from repsim_cli.metrics.regression import linreg_r2

ATOL = 1e-8


def sklearn_r2(x, y):
    """The reference: LinearRegression (with intercept) + variance-weighted r2_score."""
    fitted = LinearRegression().fit(x, y).predict(x)
    return r2_score(y, fitted, multioutput="variance_weighted")


def lstsq_r2(x, y):
    """Plain numpy: least squares on [X, 1], then 1 − residual SS / total SS."""
    design = np.hstack([x, np.ones((x.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return 1 - np.sum(resid**2) / np.sum((y - y.mean(0)) ** 2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(40, 6, 9), (40, 9, 6), (30, 20, 3), (25, 1, 4)])
def test_linreg_matches_sklearn_and_lstsq(seed, shape):
    x, y = latent_pair(seed, *shape)
    value = linreg_r2(x, y)
    assert value == pytest.approx(sklearn_r2(x, y), abs=ATOL)
    assert value == pytest.approx(lstsq_r2(x, y), abs=ATOL)


@given(pairs())
def test_range(xy):
    x, y = xy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)  # p ≥ n − 1 draws saturate (tested below)
        value = linreg_r2(x, y)
    assert 0.0 <= value <= 1.0


@given(well_sampled_pairs(25, 45, max_p=8), st.integers(0, 2**32 - 1))
def test_invariances_and_the_documented_asymmetry(xy, seed):
    x, y = xy
    value = linreg_r2(x, y)
    assert linreg_r2(x @ invertible(seed, x.shape[1]) + 4.0, y) == pytest.approx(value, abs=1e-9)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((y.shape[1],) * 2))
    assert linreg_r2(x, 0.3 * y @ q - 1.0) == pytest.approx(value, abs=1e-9)
    z = (x - x.mean(0)) / x.std(0)
    assert abs(linreg_r2(np.exp(z), y) - value) > 1e-7  # not invariant to nonlinear maps of X
    assert linreg_r2(x, x @ invertible(seed + 1, x.shape[1])) == pytest.approx(1.0, abs=1e-9)


def test_asymmetric():
    x, y = latent_pair(0, n=40, p=3, q=9)
    assert linreg_r2(x, y) < linreg_r2(y, x) - 0.05  # the wider layer predicts the narrower better


def test_predictor_of_rank_n_minus_1_saturates_with_a_warning():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 9)), rng.standard_normal((10, 4))
    with pytest.warns(RepsimWarning, match="R² = 1 by construction"):
        assert linreg_r2(x, y) == pytest.approx(1.0, abs=1e-12)
    assert sklearn_r2(x, y) == pytest.approx(1.0, abs=1e-9)


def test_collinear_and_dead_predictor_units_use_the_rank():
    x, y = latent_pair(2, n=40, p=5, q=6)
    rng = np.random.default_rng(2)
    noisy = np.hstack([x, x[:, :2] @ rng.standard_normal((2, 3)), np.full((40, 1), 3.0)])
    assert linreg_r2(noisy, y) == pytest.approx(linreg_r2(x, y), abs=1e-9)
    assert linreg_r2(noisy, y) == pytest.approx(sklearn_r2(noisy, y), abs=1e-7)
    dead_target = np.hstack([y, np.zeros((40, 1))])  # a dead target unit has zero weight
    assert linreg_r2(x, dead_target) == pytest.approx(sklearn_r2(x, dead_target), abs=ATOL)


def test_constant_or_non_finite_layer_is_a_data_error():
    x, y = latent_pair(0)
    with pytest.raises(DataError, match="constant"):
        linreg_r2(x, np.ones((40, 2)))
    with pytest.raises(DataError, match="constant"):
        linreg_r2(np.zeros((40, 2)), y)
    bad = y.copy()
    bad[1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        linreg_r2(x, bad)


# ---------------------------------------------------------------- the engine
def engine_matrix(path_a, path_b, side, block_rows=None):
    """The engine's linreg matrix (``engine_matrices`` with the one spec)."""
    return engine_matrices(path_a, path_b, ["linreg"], side, block_rows)["linreg"]


@pytest.mark.parametrize("chunk_rows", [3, 7, None])
@pytest.mark.parametrize("side", ["sample", "feature"])
def test_chunked_engine_equals_in_memory_function_cell_a_b_is_b_from_a(
    make_store, backend, chunk_rows, side
):
    layers_a = latent_layers(0, 22, (2, 5, 8), "a")
    layers_b = latent_layers(1, 22, (4, 6), "b")
    path_a = make_store(layers_a, suffix=backend, chunk_rows=chunk_rows)
    path_b = make_store(layers_b, suffix=backend, chunk_rows=chunk_rows)
    for path_y, layers_y in ((None, layers_a), (path_b, layers_b)):
        got = engine_matrix(path_a, path_y, side, block_rows=chunk_rows)
        want = np.array(
            [[sklearn_r2(xa, xb) for xb in layers_y.values()] for xa in layers_a.values()]
        )
        np.testing.assert_allclose(got, want, atol=1e-9)
    assert not np.allclose(got, got[:, ::-1])  # the orientation matters


def test_engine_wide_predictor_saturates_with_a_warning(make_store):
    rng = np.random.default_rng(3)
    layers = {"wide": rng.standard_normal((12, 20)), "narrow": rng.standard_normal((12, 3))}
    path = make_store(layers)
    with pytest.warns(RepsimWarning, match="R² = 1"):
        got = engine_matrix(path, None, "sample")
    assert got[0, 1] == pytest.approx(1.0, abs=1e-12)
    assert got[1, 0] == pytest.approx(sklearn_r2(layers["narrow"], layers["wide"]), abs=ATOL)


def test_registry_entry():
    info = get_metric("linreg")
    assert (info.kind, info.symmetric, info.bounds, info.params) == (
        "similarity",
        False,
        (0.0, 1.0),
        (),
    )
    assert set(info.sides) == {"sample", "feature"}
