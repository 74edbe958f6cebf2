"""Distance correlation: the dcor package, a direct formula, properties, and the engine."""

from __future__ import annotations

import dcor
import numpy as np
import pytest
import scipy.spatial.distance as ssd
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

from repsim_cli.compare import compare_stores
from repsim_cli.errors import DataError
from repsim_cli.metrics.dcor import distance_correlation


def direct_dcor(x: np.ndarray, y: np.ndarray) -> float:
    """Székely's V-statistic from exact pairwise differences: √(mean(A∘B)/√(mean(A∘A)mean(B∘B)))."""

    def centred(z: np.ndarray) -> np.ndarray:
        d = ssd.squareform(ssd.pdist(z))
        return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()

    a, b = centred(x), centred(y)
    return float(np.sqrt(np.mean(a * b) / np.sqrt(np.mean(a * a) * np.mean(b * b))))


# ------------------------------------------------------------------ agreement
@pytest.mark.parametrize(
    ("n", "p", "q"), [(50, 4, 7), (12, 30, 20), (2, 3, 1)], ids=["n>p", "n<p", "n=2"]
)
def test_matches_dcor_package_and_direct_formula(n, p, q) -> None:
    x, y = shifted_pair(n, p, q, n + p)
    ours = distance_correlation(x, y)
    assert ours == pytest.approx(float(dcor.distance_correlation(x, y)), abs=1e-8)
    assert ours == pytest.approx(direct_dcor(x, y), abs=1e-10)


def test_duplicate_samples_have_exactly_zero_distance() -> None:
    # Repeated samples far from the origin: a Gram-based distance would be √(round-off) ≈ 1e-5
    # instead of 0 without the round-off floor, which moves dCor visibly.
    rng = np.random.default_rng(4)
    base = rng.standard_normal((10, 5)) + 1e4
    x = np.vstack([base, base, base[:4]])
    y = np.tanh(x - 1e4) + 0.1 * rng.standard_normal(x.shape)
    assert distance_correlation(x, y) == pytest.approx(direct_dcor(x, y), abs=1e-10)


# ------------------------------------------------------------------ properties
@given(pairs())
def test_range_symmetry_identity(xy) -> None:
    x, y = xy
    v = distance_correlation(x, y)
    assert 0.0 <= v <= 1.0 + 1e-12
    assert v == pytest.approx(distance_correlation(y, x), abs=1e-12)
    assert distance_correlation(x, x) == pytest.approx(1.0, abs=1e-12)


@given(activations(max_p=10), st.data())
def test_invariances(x, data) -> None:
    q = data.draw(orthogonal(x.shape[1]))
    y = data.draw(st.floats(0.1, 10)) * (x @ q) + data.draw(st.floats(-100, 100))
    assert distance_correlation(x, y) == pytest.approx(1.0, abs=1e-8)
    stretch = np.ones(x.shape[1])
    stretch[0] = 30.0
    assert distance_correlation(x, x * stretch) < 1 - 1e-4


# ------------------------------------------------------------------ the engine
@pytest.mark.parametrize("chunk_rows", [1, 8, 64])
def test_engine_equals_in_memory(make_store, backend, chunk_rows) -> None:
    layers = engine_layers(31, chunk_rows)
    got = check_engine_equals_in_memory(
        make_store, layers, backend, chunk_rows, ["dcor"], distance_correlation
    )["dcor"]
    flat = {k: v.reshape(len(v), -1) for k, v in layers.items()}
    package = [[float(dcor.distance_correlation(flat[a], flat[b])) for b in flat] for a in flat]
    np.testing.assert_allclose(got, package, atol=1e-8, rtol=0)


def test_each_layer_computed_once(make_store) -> None:
    check_each_layer_computed_once(make_store, ["dcor"], ("prepare('dcor'", "gram"))


# ------------------------------------------------------------------ degenerate input
def test_constant_layer_raises(make_store) -> None:
    # The dcor package returns 0 here; repsim reports the layer (an undefined value is an error, never a silent number).
    x, y = np.full((10, 3), 4.0), shifted_pair(10, 3, 3, 0)[1]
    with pytest.raises(DataError, match="constant"):
        distance_correlation(x, y)
    with pytest.raises(DataError, match="constant"):
        compare_stores(make_store({"x": x, "y": y}), None, ["dcor"])


SPECS_F32 = [("dcor", 1e-6)]


# ------------------------------------------------------------------ float32 store, large means
@pytest.mark.parametrize(("spec", "atol"), SPECS_F32)
def test_float32_store_with_means_1000x_the_spread(make_store, spec, atol) -> None:
    check_float32_offset(make_store, spec, atol)
