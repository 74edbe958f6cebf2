"""Distance correlation: the dcor package, a direct formula, properties, and the engine."""

from __future__ import annotations

import dcor
import numpy as np
import pytest
import scipy.spatial.distance as ssd
from hypothesis import given
from hypothesis import strategies as st
from strategies import activations, orthogonal, pairs

from repsim_cli.compare import compare_stores, prepare_comparison
from repsim_cli.errors import DataError
from repsim_cli.metrics import parse_spec
from repsim_cli.metrics.dcor import distance_correlation
from repsim_cli.store import open_store


def direct_dcor(x: np.ndarray, y: np.ndarray) -> float:
    """Székely's V-statistic from exact pairwise differences: √(mean(A∘B)/√(mean(A∘A)mean(B∘B)))."""

    def centred(z: np.ndarray) -> np.ndarray:
        d = ssd.squareform(ssd.pdist(z))
        return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()

    a, b = centred(x), centred(y)
    return float(np.sqrt(np.mean(a * b) / np.sqrt(np.mean(a * a) * np.mean(b * b))))


def related(n: int, p: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) + rng.uniform(-3, 3, p)
    y = np.tanh(x @ rng.standard_normal((p, q))) + 0.5 * rng.standard_normal((n, q))
    return x, y


# ------------------------------------------------------------------ agreement
@pytest.mark.parametrize(
    ("n", "p", "q"), [(50, 4, 7), (12, 30, 20), (2, 3, 1)], ids=["n>p", "n<p", "n=2"]
)
def test_matches_dcor_package_and_direct_formula(n, p, q) -> None:
    x, y = related(n, p, q, n + p)
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
def _layers(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 4))
    return {
        "a": base @ rng.standard_normal((4, 7)) + rng.uniform(-20, 20, 7),
        "b": np.tanh(base @ rng.standard_normal((4, 5))) + 0.3 * rng.standard_normal((n, 5)),
        "c": rng.standard_normal((n, 2, 3)),
    }


@pytest.mark.parametrize("chunk_rows", [1, 8, 64])
def test_engine_equals_in_memory(make_store, backend, chunk_rows) -> None:
    layers = _layers(31, chunk_rows)
    got = (
        compare_stores(make_store(layers, backend, chunk_rows=chunk_rows), None, ["dcor"])
        .metrics["dcor"]
        .value
    )
    flat = {k: v.reshape(len(v), -1) for k, v in layers.items()}
    want = [[distance_correlation(flat[a], flat[b]) for b in flat] for a in flat]
    np.testing.assert_allclose(got, want, atol=1e-10, rtol=0)
    package = [[float(dcor.distance_correlation(flat[a], flat[b])) for b in flat] for a in flat]
    np.testing.assert_allclose(got, package, atol=1e-8, rtol=0)


def test_each_layer_computed_once(make_store) -> None:
    rng = np.random.default_rng(0)
    layers = {f"l{i}": rng.standard_normal((20, 3 + i)) for i in range(5)}
    with open_store(make_store(layers)) as store:
        comparison = prepare_comparison(store, None, ["dcor"])
        comparison.run()
        counts = comparison.engine.counts
    for prefix in ("centered_distances", "gram"):
        done = {k: v for k, v in counts.items() if k.startswith(prefix + ":")}
        assert sorted(done) == sorted(f"{prefix}:a:{name}" for name in layers)
        assert set(done.values()) == {1}


# ------------------------------------------------------------------ degenerate input
def test_constant_layer_raises(make_store) -> None:
    # The dcor package returns 0 here; repsim reports the layer (METRICS §0: no silent number).
    x, y = np.full((10, 3), 4.0), related(10, 3, 3, 0)[1]
    with pytest.raises(DataError, match="constant"):
        distance_correlation(x, y)
    with pytest.raises(DataError, match="constant"):
        compare_stores(make_store({"x": x, "y": y}), None, ["dcor"])


SPECS_F32 = [("dcor", 1e-6)]


# ------------------------------------------------------------------ float32 store, large means
def _float32_pair(n: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    base = rng.standard_normal((n, 12))
    x = base @ rng.standard_normal((12, 40)) + 1000.0 * rng.uniform(1, 2, 40)
    y = base @ rng.standard_normal((12, 30)) + rng.standard_normal((n, 30))
    return {"x": x.astype(np.float32), "y": (y + 1000.0 * rng.uniform(1, 2, 30)).astype(np.float32)}


@pytest.mark.parametrize(("spec", "atol"), SPECS_F32)
def test_float32_store_with_means_1000x_the_spread(make_store, spec, atol) -> None:
    # GEMMs in float32, centring exact: the float64 in-memory value on the same numbers holds.
    layers = _float32_pair()
    got = compare_stores(make_store(layers, chunk_rows=64), None, [spec]).metrics[spec].value[0, 1]
    parsed = parse_spec(spec)
    want = parsed.info.dense(
        layers["x"].astype(np.float64), layers["y"].astype(np.float64), **parsed.params
    )
    assert got == pytest.approx(want, abs=atol)
