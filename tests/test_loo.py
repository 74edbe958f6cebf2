"""Closed-form leave-one-out HSIC/CKA (repsim_cli.stats.loo) against brute-force recomputation.

The brute force deletes example k from the data (or from a kernel built once from the full data,
for RBF CKA with a fixed bandwidth) and recomputes the statistic on the n − 1 examples with its own
centring: an explicit centring matrix H for the biased estimator, Székely–Rizzo U-centring for the
unbiased one, and repsim's in-memory linear CKA (feature-space formulas) for linear CKA.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import activations

from repsim_cli.errors import DataError
from repsim_cli.metrics.cka import linear_cka
from repsim_cli.stats import loo
from repsim_cli.stats.loo import dominated, dominated_many

TOL = 1e-10


def _data(n: int, p: int, q: int, seed: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, p)
    y = x[:, : min(p, q)] @ rng.standard_normal((min(p, q), q)) + rng.standard_normal((n, q))
    if offset:
        x = x + offset * rng.uniform(-1, 1, p)
        y = y + offset * rng.uniform(-1, 1, q)
    return x, y


def _centred_gram(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc @ xc.T


def _hsic_biased(a: np.ndarray, b: np.ndarray) -> float:
    m = a.shape[0]
    h = np.eye(m) - np.ones((m, m)) / m
    return float(np.trace(h @ a @ h @ b)) / (m - 1) ** 2


def _u_centre(a: np.ndarray) -> np.ndarray:
    m = a.shape[0]
    a = a.copy()
    np.fill_diagonal(a, 0.0)
    u = a - a.sum(0)[None, :] / (m - 2) - a.sum(1)[:, None] / (m - 2) + a.sum() / ((m - 1) * (m - 2))
    np.fill_diagonal(u, 0.0)
    return u


def _hsic_unbiased(a: np.ndarray, b: np.ndarray) -> float:
    m = a.shape[0]
    return float(np.sum(_u_centre(a) * _u_centre(b))) / (m * (m - 3))


def _brute(fn, k: np.ndarray, l: np.ndarray) -> np.ndarray:
    keep = [np.delete(np.arange(k.shape[0]), i) for i in range(k.shape[0])]
    return np.array([fn(k[np.ix_(j, j)], l[np.ix_(j, j)]) for j in keep])


def _cka_from(hsic):
    return lambda a, b: hsic(a, b) / np.sqrt(hsic(a, a) * hsic(b, b))


def _rbf_kernel(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    g = xc @ xc.T
    d2 = np.maximum(np.diag(g)[:, None] + np.diag(g)[None, :] - 2 * g, 0.0)
    return np.exp(-d2 / (2.0 * np.median(d2)))


# ------------------------------------------------------------------ equality with brute force


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_equals_recomputation_on_data(debiased: bool) -> None:
    x, y = _data(37, 6, 9, seed=1)
    brute = np.array([
        linear_cka(np.delete(x, k, 0), np.delete(y, k, 0), debiased=debiased) for k in range(37)
    ])
    closed = loo.loo_cka(_centred_gram(x), _centred_gram(y), debiased=debiased)
    np.testing.assert_allclose(closed, brute, rtol=0, atol=TOL)
    assert np.ptp(brute) > 1e-3  # the leave-one-out values differ: the check has teeth
    assert loo.cka(_centred_gram(x), _centred_gram(y), debiased=debiased) == pytest.approx(
        linear_cka(x, y, debiased=debiased), abs=TOL)


@pytest.mark.parametrize("debiased", [False, True])
def test_hsic_equals_recomputation(debiased: bool) -> None:
    x, y = _data(31, 5, 4, seed=2)
    k, l = x @ x.T, _rbf_kernel(y)  # a linear kernel against a fixed RBF one, both uncentred
    ref = _hsic_unbiased if debiased else _hsic_biased
    closed = loo.loo_hsic(k, l, debiased=debiased)
    np.testing.assert_allclose(closed, _brute(ref, k, l), rtol=TOL, atol=0)
    assert loo.hsic(k, l, debiased=debiased) == pytest.approx(ref(k, l), rel=TOL)


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_cka_with_fixed_kernel_equals_recomputation(debiased: bool) -> None:
    x, y = _data(29, 4, 7, seed=3)
    k, l = _rbf_kernel(x), _rbf_kernel(y)  # bandwidth from all 29 examples, held fixed
    ref = _cka_from(_hsic_unbiased if debiased else _hsic_biased)
    np.testing.assert_allclose(loo.loo_cka(k, l, debiased=debiased), _brute(ref, k, l),
                               rtol=0, atol=TOL)


@pytest.mark.parametrize("debiased", [False, True])
def test_mean_1000x_the_spread(debiased: bool) -> None:
    x, y = _data(30, 6, 5, seed=4, offset=1000.0)
    brute = np.array([
        linear_cka(np.delete(x, k, 0), np.delete(y, k, 0), debiased=debiased) for k in range(30)
    ])
    np.testing.assert_allclose(loo.loo_cka(_centred_gram(x), _centred_gram(y), debiased=debiased),
                               brute, rtol=0, atol=TOL)
    # The raw Gram's entries (~10⁶ × the centred ones) carry their own round-off: 1e-9 promised.
    np.testing.assert_allclose(loo.loo_cka(x @ x.T, y @ y.T, debiased=debiased), brute,
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("debiased", [False, True])
def test_centred_flag_skips_only_the_conditioning_step(debiased: bool) -> None:
    x, y = _data(25, 4, 6, seed=6)
    kc, lc = _centred_gram(x), _centred_gram(y)
    np.testing.assert_allclose(loo.loo_hsic(kc, lc, debiased=debiased, centred=True),
                               loo.loo_hsic(kc, lc, debiased=debiased), rtol=1e-12, atol=0)
    # exact for any K in exact arithmetic: a raw kernel of well-scaled data agrees closely too
    k, l = _rbf_kernel(x), x @ x.T
    np.testing.assert_allclose(loo.loo_cka(k, l, debiased=debiased, centred=True),
                               loo.loo_cka(k, l, debiased=debiased), rtol=0, atol=1e-9)


# ------------------------------------------------------------------ properties (hypothesis)


@given(activations(min_n=8, max_n=30), st.integers(0, 2**32 - 1), st.booleans())
def test_symmetric_in_k_and_l(x: np.ndarray, seed: int, debiased: bool) -> None:
    y = np.random.default_rng(seed).standard_normal((x.shape[0], 3))
    k, l = _centred_gram(x), _centred_gram(y)
    np.testing.assert_allclose(loo.loo_hsic(k, l, debiased=debiased),
                               loo.loo_hsic(l, k, debiased=debiased), rtol=1e-12, atol=0)
    np.testing.assert_allclose(loo.loo_cka(k, l, debiased=debiased),
                               loo.loo_cka(l, k, debiased=debiased), rtol=0, atol=1e-12)


@given(activations(min_n=8, max_n=30, big_mean=False), st.integers(0, 2**32 - 1), st.booleans())
def test_linear_kernel_results_do_not_depend_on_centring(
    x: np.ndarray, seed: int, debiased: bool
) -> None:
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((x.shape[0], 4))
    shift = rng.uniform(-5, 5, x.shape[1])
    raw, centred = (x + shift) @ (x + shift).T, _centred_gram(x)
    l = _centred_gram(y)
    scale = np.max(np.abs(loo.loo_hsic(centred, l, debiased=debiased)))
    np.testing.assert_allclose(loo.loo_hsic(raw, l, debiased=debiased),
                               loo.loo_hsic(centred, l, debiased=debiased), rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(loo.loo_cka(raw, l, debiased=debiased),
                               loo.loo_cka(centred, l, debiased=debiased), rtol=0, atol=1e-9)


@given(activations(min_n=8, max_n=30), st.floats(1e-3, 1e3), st.integers(0, 2**32 - 1),
       st.booleans())
def test_cka_is_scale_invariant(x: np.ndarray, c: float, seed: int, debiased: bool) -> None:
    y = np.random.default_rng(seed).standard_normal((x.shape[0], 5))
    k, l = _centred_gram(x), _centred_gram(y)
    np.testing.assert_allclose(loo.loo_cka(c * k, l, debiased=debiased),
                               loo.loo_cka(k, l, debiased=debiased), rtol=0, atol=1e-12)
    np.testing.assert_allclose(loo.loo_hsic(c * k, l, debiased=debiased),
                               c * loo.loo_hsic(k, l, debiased=debiased), rtol=1e-9, atol=0)


# ------------------------------------------------------------------ the dominance rule


def _davari(n: int = 500, moved: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two related representations; ``moved`` examples pushed 25× the spread along y's
    lowest-variance direction (Davari et al. 2022)."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.1, 20)
    x = rng.standard_normal((n, 20)) * scales
    q = np.linalg.qr(rng.standard_normal((20, 20)))[0]
    y = x @ q + 0.9 * scales.mean() * rng.standard_normal((n, 20))
    yc = y - y.mean(0)
    direction = np.linalg.svd(yc, full_matrices=False)[2][-1]
    spread = np.sqrt(np.mean(np.sum(yc**2, axis=1)))
    y[:moved] += 25.0 * spread * direction
    return x, y


def test_dominated_finds_exactly_the_moved_examples() -> None:
    x, y = _davari()
    k, l = _centred_gram(x), _centred_gram(y)
    full = loo.cka(k, l)
    flagged = loo.dominated(full, loo.loo_cka(k, l))
    assert sorted(flagged.tolist()) == [0, 1, 2]
    changes = np.abs(loo.loo_cka(k, l) - full)[flagged]
    assert np.all(np.diff(changes) <= 0)  # sorted by |effect|, largest first


def test_dominated_is_empty_for_clean_data_and_for_a_broad_spread() -> None:
    x, y = _davari(moved=0)
    k, l = _centred_gram(x), _centred_gram(y)
    assert loo.dominated(loo.cka(k, l), loo.loo_cka(k, l)).size == 0
    # 10% of the examples moved: more than a handful exceed the threshold, so no verdict.
    x, y = _davari(moved=50)
    k, l = _centred_gram(x), _centred_gram(y)
    assert loo.dominated(loo.cka(k, l), loo.loo_cka(k, l)).size == 0


def test_dominated_rule_edges() -> None:
    rng = np.random.default_rng(5)
    base = 0.5 + 1e-4 * rng.standard_normal(400)
    assert loo.dominated(0.5, np.full(400, 0.5)).size == 0  # flat: MAD 0, floor applies
    spike = base.copy()
    spike[[7, 300]] = [0.2, 0.9]
    assert loo.dominated(0.5, spike).tolist() == [300, 7]
    # Below the floor (10⁻³ of the value) nothing dominates, however far out in MAD units.
    tiny = np.full(400, 0.5)
    tiny[3] = 0.5 + 1e-5
    assert loo.dominated(0.5, tiny).size == 0
    spike[11] = np.nan
    assert 11 not in loo.dominated(0.5, spike).tolist()
    assert loo.dominated(float("nan"), spike).size == 0


def test_bad_input_is_a_data_error() -> None:
    with pytest.raises(DataError, match="square"):
        loo.loo_hsic(np.ones((3, 4)), np.ones((3, 4)))
    with pytest.raises(DataError, match="same examples"):
        loo.loo_cka(np.eye(5), np.eye(6))
    with pytest.raises(DataError, match="at least 5"):
        loo.loo_cka(np.eye(4), np.eye(4), debiased=True)
    with pytest.raises(DataError, match="NaN"):
        loo.loo_hsic(np.full((5, 5), np.nan), np.eye(5))


@settings(max_examples=60, deadline=None)
@given(cells=st.integers(1, 6), n=st.integers(5, 300), planted=st.integers(0, 5),
       nans=st.booleans(), seed=st.integers(0, 2**31 - 1), flat=st.booleans())
def test_dominated_many_is_dominated_cell_by_cell(cells, n, planted, nans, seed, flat):
    rng = np.random.default_rng(seed)
    full = rng.uniform(0.2, 0.9, cells)
    loo = full[:, None] + (0.0 if flat else 1e-3) * rng.standard_normal((cells, n))
    for c in range(cells):
        loo[c, rng.choice(n, min(planted, n), replace=False)] -= 0.3
    if nans:
        loo[0, 0] = np.nan
    got = dominated_many(full, loo)
    for c in range(cells):
        np.testing.assert_array_equal(got[c], dominated(float(full[c]), loo[c]))
