"""mutual_knn and cknna: platonic-rep's formulas (dense, in numpy), properties, and the engine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from metric_checks import (
    check_each_layer_computed_once,
    check_engine_equals_in_memory,
    check_float32_offset,
    engine_layers,
    shifted_pair,
)
from strategies import activations, orthogonal, pairs

from repsim_cli._warnings import RepsimWarning
from repsim_cli.compare import compare_stores
from repsim_cli.errors import DataError, MetricParameterError
from repsim_cli.metrics import parse_spec
from repsim_cli.metrics.cka import linear_cka
from repsim_cli.metrics.neighbors import cknna, mutual_knn, top_k


# ------------------------------------------------------------------ dense references (test-only)
def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def knn_mask(k_matrix: np.ndarray, k: int) -> np.ndarray:
    """platonic-rep: each row's top-k entries of K, diagonal excluded, as a 0/1 mask."""
    s = k_matrix.copy()
    np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(s)
    mask[np.arange(len(s))[:, None], idx] = 1.0
    return mask


def dense_mutual_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    ma, mb = knn_mask(x @ x.T, k), knn_mask(y @ y.T, k)
    return float(((ma * mb).sum(axis=1) / k).mean())


def reference_hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """platonic-rep hsic_unbiased, transcribed: note tr(K̃ L̃ᵀ-elementwise) and 1ᵀK̃L̃1."""
    m = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    value = (
        np.sum(kt * lt.T)
        + kt.sum() * lt.sum() / ((m - 1) * (m - 2))
        - 2 * np.sum(kt @ lt) / (m - 2)
    )
    return float(value / (m * (m - 3)))


def reference_cknna(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """platonic-rep cknna(unbiased=True) without its +1e-6 in the denominator (asymmetric)."""
    kx, ky = x @ x.T, y @ y.T

    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        mask = knn_mask(a, k) * knn_mask(b, k)
        return reference_hsic_unbiased(mask * a, mask * b)

    return similarity(kx, ky) / np.sqrt(similarity(kx, kx) * similarity(ky, ky))


def related(n: int, p: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """This file's pairs: column means in ±1 (small next to the spread, for the uncentred kernels)."""
    return shifted_pair(n, p, q, seed, shift=1.0)


# ------------------------------------------------------------------ agreement
@pytest.mark.parametrize("k", [1, 3, 10, 29])
@pytest.mark.parametrize("normalize", [True, False])
def test_mutual_knn_matches_reference(k, normalize) -> None:
    x, y = related(30, 6, 8, k)
    xr, yr = (normalized(x), normalized(y)) if normalize else (x, y)
    want = dense_mutual_knn(xr, yr, k)
    if k == 29:
        with pytest.warns(RepsimWarning, match="trivially 1"):
            assert mutual_knn(x, y, k, normalize) == want == 1.0
    else:
        assert mutual_knn(x, y, k, normalize) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("k", [2, 5, 10, 29])
@pytest.mark.parametrize("normalize", [True, False])
def test_cknna_is_the_mean_of_the_reference_orders(k, normalize) -> None:
    x, y = related(30, 6, 8, k + 1)
    xr, yr = (normalized(x), normalized(y)) if normalize else (x, y)
    forward, backward = reference_cknna(xr, yr, k), reference_cknna(yr, xr, k)
    assert cknna(x, y, k, normalize) == pytest.approx((forward + backward) / 2, abs=1e-10)


def test_reference_cknna_is_asymmetric() -> None:
    # Why repsim averages the two orders (cknna is registered as symmetric).
    x, y = related(40, 5, 5, 0)
    assert abs(reference_cknna(x, y, 5) - reference_cknna(y, x, 5)) > 1e-5


def test_cknna_with_all_neighbours_is_debiased_linear_cka() -> None:
    # k = n − 1: the mask keeps every off-diagonal entry, and HSIC_u ignores a shift of the
    # features, so the uncentred-kernel CKNNA is debiased linear CKA (an independent check).
    x, y = related(25, 4, 6, 9)
    assert cknna(x, y, 24, normalize=False) == pytest.approx(linear_cka(x, y, True), abs=1e-10)


def test_ties_go_to_the_lower_index() -> None:
    sim = np.array([[0.0, 1.0, 2.0, 2.0, 2.0, 1.0]])
    assert top_k(sim, 0, 2).tolist() == [[2, 3]]
    assert top_k(sim, 0, 4).tolist() == [[1, 2, 3, 4]]
    assert top_k(sim, 2, 2).tolist() == [[3, 4]]  # sample 2 is not its own neighbour


# ------------------------------------------------------------------ properties
@given(pairs(), st.integers(1, 6), st.booleans())  # k < n − 1 (n ≥ 8): not trivially 1
def test_mutual_knn_range_symmetry_identity(xy, k, normalize) -> None:
    x, y = xy
    v = mutual_knn(x, y, k, normalize)
    assert 0.0 <= v <= 1.0
    assert v == mutual_knn(y, x, k, normalize)
    assert mutual_knn(x, x, k, normalize) == 1.0


@given(pairs(), st.integers(2, 7), st.booleans())
def test_cknna_symmetry_identity(xy, k, normalize) -> None:
    x, y = xy
    v = cknna(x, y, k, normalize)
    assert np.isfinite(v)
    assert v == pytest.approx(cknna(y, x, k, normalize), abs=1e-12)
    assert cknna(x, x, k, normalize) == pytest.approx(1.0, abs=1e-12)


@given(activations(min_n=10, max_p=10, big_mean=False), st.data(), st.integers(2, 6), st.booleans())
def test_invariances(x, data, k, normalize) -> None:
    # Both use inner products (or cosines) of the raw rows: orthogonal maps and isotropic scaling
    # keep them; a positive per-sample rescaling keeps the cosine neighbours.
    q = data.draw(orthogonal(x.shape[1]))
    y = data.draw(st.floats(0.1, 10)) * (x @ q)
    assert mutual_knn(x, y, k, normalize) == 1.0
    assert cknna(x, y, k, normalize) == pytest.approx(1.0, abs=1e-8)
    if normalize:
        rows = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).uniform(
            0.2, 5, (len(x), 1)
        )
        assert mutual_knn(x, x * rows, k) == 1.0


def test_not_invariant_to_translation() -> None:
    # Uncentred kernels: adding a constant vector to every sample changes the neighbours.
    x, _ = related(40, 6, 6, 3)
    shifted = x + 3.0 * np.abs(x).max() * np.random.default_rng(1).standard_normal(x.shape[1])
    for normalize in (True, False):
        assert mutual_knn(x, shifted, 5, normalize) < 0.9
        assert cknna(x, shifted, 5, normalize) < 0.9


# ------------------------------------------------------------------ the engine
SPECS = ["mutual_knn", "mutual_knn:k=3,normalize=false", "cknna", "cknna:k=4,normalize=false"]


@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_engine_equals_in_memory(make_store, backend, chunk_rows) -> None:
    layers = engine_layers(35, chunk_rows, shift=2.0)
    check_engine_equals_in_memory(make_store, layers, backend, chunk_rows, SPECS)


def test_neighbours_computed_once_per_layer_for_both_metrics(make_store) -> None:
    prefixes = ("knn[k=10,normalize=True]", "prepare('mutual_knn'", "prepare('cknna'", "gram")
    check_each_layer_computed_once(make_store, ["mutual_knn", "cknna"], prefixes)


# ------------------------------------------------------------------ degenerate input
def test_k_at_least_n_raises(make_store) -> None:
    x, y = related(10, 3, 3, 0)
    for fn in (mutual_knn, cknna):
        with pytest.raises(DataError, match="k=10"):
            fn(x, y, k=10)
    with pytest.raises(DataError, match="k=10"):
        compare_stores(make_store({"x": x, "y": y}), None, ["mutual_knn"])


def test_cknna_needs_four_samples() -> None:
    x, y = related(3, 3, 3, 0)
    with pytest.raises(DataError, match="at least 4 samples"):
        cknna(x, y, k=2)


def test_constant_layer_raises(make_store) -> None:
    x, y = np.full((12, 3), 1.5), related(12, 3, 3, 0)[1]
    for fn in (mutual_knn, cknna):
        with pytest.raises(DataError, match="constant"):
            fn(x, y, k=3)
    with pytest.raises(DataError, match="constant"):
        compare_stores(make_store({"x": x, "y": y}), None, ["cknna:k=3"])


def test_zero_sample_with_normalize_warns(make_store) -> None:
    x, y = related(15, 4, 4, 2)
    x[4] = 0.0
    with pytest.warns(RepsimWarning, match="all zeros"):
        got = mutual_knn(x, y, 3)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # F.normalize
    assert got == pytest.approx(dense_mutual_knn(unit, normalized(y), 3), abs=1e-12)
    with pytest.warns(RepsimWarning, match="all zeros"):
        compare_stores(make_store({"x": x, "y": y}), None, ["mutual_knn:k=3"])


@pytest.mark.parametrize("spec", ["mutual_knn:k=0", "cknna:k=1", "cknna:normalize=maybe"])
def test_bad_parameters(spec) -> None:
    with pytest.raises(MetricParameterError):
        parse_spec(spec)


SPECS_F32 = [
    ("mutual_knn", 1e-3),
    ("cknna", 1e-3),
    ("mutual_knn:normalize=false", 1e-3),
]  # ≤ 2 swaps


# ------------------------------------------------------------------ float32 store, large means
@pytest.mark.parametrize(("spec", "atol"), SPECS_F32)
def test_float32_store_with_means_1000x_the_spread(make_store, spec, atol) -> None:
    check_float32_offset(make_store, spec, atol)
