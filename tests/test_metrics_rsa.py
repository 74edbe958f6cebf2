"""RSA: rsatoolbox 0.3.2, a direct scipy formula, properties, degenerate input, and the engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.spatial.distance as ssd
import scipy.stats
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
from repsim_cli.metrics.rsa import rsa

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import rsatoolbox

RDMS = ("correlation", "euclidean")
COMPARES = ("spearman", "pearson", "kendall", "cosine")
RSATOOLBOX_METHOD = {
    "spearman": "spearman",
    "pearson": "corr",
    "kendall": "kendall",
    "cosine": "cosine",
}


def direct_rsa(x: np.ndarray, y: np.ndarray, rdm: str, compare: str) -> float:
    """pdist RDMs (correlation distance; squared Euclidean / units) and scipy's statistics."""

    def vec(z: np.ndarray) -> np.ndarray:
        if rdm == "correlation":
            return ssd.pdist(z, "correlation")
        return ssd.pdist(z, "sqeuclidean") / z.shape[1]

    u, v = vec(x), vec(y)
    if compare == "spearman":
        return float(scipy.stats.spearmanr(u, v).statistic)
    if compare == "pearson":
        return float(scipy.stats.pearsonr(u, v).statistic)
    if compare == "kendall":
        return float(scipy.stats.kendalltau(u, v, variant="b").statistic)
    return float(u @ v / np.sqrt((u @ u) * (v @ v)))


def rsatoolbox_rsa(x: np.ndarray, y: np.ndarray, rdm: str, compare: str) -> float:
    ra = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), method=rdm)
    rb = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(y), method=rdm)
    return float(rsatoolbox.rdm.compare(ra, rb, method=RSATOOLBOX_METHOD[compare])[0, 0])


# ------------------------------------------------------------------ agreement
@pytest.mark.parametrize("rdm", RDMS)
@pytest.mark.parametrize("compare", COMPARES)
@pytest.mark.parametrize(("n", "p", "q"), [(40, 6, 9), (12, 30, 20)], ids=["n>p", "n<p"])
def test_matches_rsatoolbox_and_direct_formula(n, p, q, rdm, compare) -> None:
    x, y = shifted_pair(n, p, q, n + p)
    ours = rsa(x, y, rdm, compare)
    assert ours == pytest.approx(rsatoolbox_rsa(x, y, rdm, compare), abs=1e-8)
    assert ours == pytest.approx(direct_rsa(x, y, rdm, compare), abs=1e-10)


def test_euclidean_rdm_is_squared() -> None:
    # Pearson sees the squaring: unsquared distances give a clearly different value.
    x, y = shifted_pair(30, 4, 6, 3)
    unsquared = scipy.stats.pearsonr(ssd.pdist(x), ssd.pdist(y)).statistic
    assert abs(rsa(x, y, "euclidean", "pearson") - unsquared) > 1e-3


@pytest.mark.parametrize("compare", ["spearman", "kendall"])
def test_repeated_patterns_are_ties(compare) -> None:
    # Repeated stimulus patterns make RDM entries tie exactly in exact arithmetic; they must be
    # ranked as ties (average ranks / τ-b), not by the round-off of the arithmetic.
    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 4))
    x = np.vstack([base, base[:3]])
    y = rng.standard_normal((9, 5))
    stat = scipy.stats.spearmanr if compare == "spearman" else scipy.stats.kendalltau
    for rdm, dist, units in (("correlation", "correlation", 1), ("euclidean", "sqeuclidean", 4)):
        exact_ties = np.round(ssd.pdist(x, dist) / units, 10)
        want = stat(exact_ties, ssd.pdist(y, dist) / (1 if units == 1 else 5)).statistic
        assert rsa(x, y, rdm, compare) == pytest.approx(want, abs=1e-12)
    # Integer data: rsatoolbox's own arithmetic is exact too, and so are its ties.
    xi = np.vstack([b := rng.integers(-3, 4, (6, 4)), b[:3]]).astype(float)
    assert rsa(xi, y, "euclidean", compare) == pytest.approx(
        rsatoolbox_rsa(xi, y, "euclidean", compare), abs=1e-12
    )


# ------------------------------------------------------------------ properties
@given(pairs(big_mean=False), st.sampled_from(RDMS), st.sampled_from(COMPARES))
def test_range_symmetry_identity(xy, rdm, compare) -> None:
    x, y = xy
    v = rsa(x, y, rdm, compare)
    assert -1 - 1e-12 <= v <= 1 + 1e-12
    assert v == pytest.approx(rsa(y, x, rdm, compare), abs=1e-12)
    assert rsa(x, x, rdm, compare) == pytest.approx(1.0, abs=1e-12)


@given(activations(min_n=8, max_p=10, big_mean=False), st.data(), st.sampled_from(COMPARES))
def test_euclidean_invariances(x, data, compare) -> None:
    # Euclidean RDM: orthogonal maps and translation leave it unchanged; isotropic scaling
    # rescales it, which no comparison sees; an anisotropic stretch changes it.
    q = data.draw(orthogonal(x.shape[1]))
    y = data.draw(st.floats(0.1, 10)) * (x @ q) + data.draw(st.floats(-50, 50))
    assert rsa(x, y, "euclidean", compare) == pytest.approx(1.0, abs=1e-8)
    stretch = np.ones(x.shape[1])
    stretch[0] = 30.0
    assert rsa(x, x * stretch, "euclidean", compare) < 1 - 1e-4


@given(
    activations(min_n=8, min_p=3, max_p=10, big_mean=False), st.data(), st.sampled_from(COMPARES)
)
def test_correlation_rdm_invariances(x, data, compare) -> None:
    # Correlation RDM: invariant to shifting and positively scaling each stimulus pattern;
    # not invariant to an orthogonal map of the units (each pattern is centred across units).
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    y = x * rng.uniform(0.2, 5.0, (len(x), 1)) + rng.uniform(-50, 50, (len(x), 1))
    # Rank comparisons treat RDM entries within round-off of each other as ties; the shifts
    # make Y's round-off larger than X's, so a pair of entries at the edge of that tolerance
    # can be tied in one RDM only (found by hypothesis: Spearman 1 - 1.7e-8). Values compare
    # exactly up to round-off.
    exact = 1e-6 if compare in ("spearman", "kendall") else 1e-8
    assert rsa(x, y, "correlation", compare) == pytest.approx(1.0, abs=exact)
    q = data.draw(orthogonal(x.shape[1]))
    assert rsa(x, x @ q + rng.uniform(-5, 5, x.shape[1]), "correlation", compare) < 1 - 1e-6


# ------------------------------------------------------------------ the engine
SPECS = [f"rsa:rdm={r},compare={c}" for r in RDMS for c in COMPARES]


@pytest.mark.parametrize("chunk_rows", [1, 6, 64])
def test_engine_equals_in_memory(make_store, backend, chunk_rows) -> None:
    layers = engine_layers(33, chunk_rows)
    check_engine_equals_in_memory(make_store, layers, backend, chunk_rows, ["rsa", *SPECS], rsa)


def test_each_layer_computed_once(make_store) -> None:
    prefixes = (
        "rdm[correlation]",
        "prepare('rsa', 'correlation', 'spearman')",
        "prepare('rsa', 'correlation', 'kendall')",
        "gram",
        "row_terms",
    )
    specs = ["rsa", "rsa:compare=pearson", "rsa:compare=kendall"]
    check_each_layer_computed_once(make_store, specs, prefixes)


# ------------------------------------------------------------------ degenerate input
def test_constant_layer_raises(make_store) -> None:
    x, y = np.full((10, 3), 7.0), np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(DataError, match="constant"):
        rsa(x, y)
    with pytest.raises(DataError, match="constant"):
        compare_stores(make_store({"x": x, "y": y}), None, ["rsa"])


def test_constant_pattern_gives_nan_for_correlation_rdm(make_store) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 4))
    x[3] = 2.0  # stimulus 3 is the same on every unit: its correlation distances are undefined
    y = rng.standard_normal((10, 5))
    with pytest.warns(RepsimWarning, match="constant across units"):
        assert np.isnan(rsa(x, y))
    assert np.isfinite(rsa(x, y, rdm="euclidean"))
    with pytest.warns(RepsimWarning, match="constant across units"):
        value = compare_stores(make_store({"x": x, "y": y}), None, ["rsa"]).metrics["rsa"].value
    assert np.isnan(value[0]).all()
    assert value[1, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("compare", ["spearman", "pearson", "kendall"])
def test_constant_rdm_gives_nan(compare) -> None:
    # One-hot patterns are all at the same distance: the RDM has no variance (up to round-off).
    x, y = np.eye(8) * 3.0, np.random.default_rng(2).standard_normal((8, 3))
    with pytest.warns(RepsimWarning, match="RDM is constant"):
        assert np.isnan(rsa(x, y, "euclidean", compare))
    assert rsa(x, y, "euclidean", "cosine") > 0  # cosine is defined for a constant nonzero RDM


def test_two_samples_give_nan() -> None:
    x, y = np.array([[0.0, 1.0], [1.0, 3.0]]), np.array([[2.0], [5.0]])
    with pytest.warns(RepsimWarning, match="RDM is constant"):
        assert np.isnan(rsa(x, y, "euclidean", "pearson"))


def test_bad_parameters() -> None:
    with pytest.raises(MetricParameterError):
        parse_spec("rsa:rdm=cityblock")
    with pytest.raises(MetricParameterError):
        parse_spec("rsa:compare=corr")


SPECS_F32 = [
    (f"rsa:rdm={r},compare={c}", 1e-4 if c == "kendall" else 1e-5) for r in RDMS for c in COMPARES
]


# ------------------------------------------------------------------ float32 store, large means
@pytest.mark.parametrize(("spec", "atol"), SPECS_F32)
def test_float32_store_with_means_1000x_the_spread(make_store, spec, atol) -> None:
    check_float32_offset(make_store, spec, atol)
