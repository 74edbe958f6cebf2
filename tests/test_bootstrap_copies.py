"""The bootstrap's copy–copy policy on the generic path (repsim_cli.stats.copies): in a replicate,
mutual k-NN, CKNNA and dcor leave out the pairs of rows that hold one example, as they leave out a
row paired with itself. Each replicate is checked against a dense computation written here
(neighbour masks by sorting; dcor over the distinct examples with pair weights), a replicate
without copies against the plain metric, and an end-to-end ``compare --bootstrap`` on two
independent layers against the inflation the copies caused. Budget: a few seconds.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from repsim_cli._warnings import RepsimWarning
from repsim_cli.arrays import dense_value
from repsim_cli.cli import cli
from repsim_cli.metrics import parse_spec
from repsim_cli.metrics._kernels import roundoff_rtol
from repsim_cli.metrics.dcor import centered_distances
from repsim_cli.metrics.neighbors import nearest_neighbours
from repsim_cli.results import read_results
from repsim_cli.stats import generic, runner
from repsim_cli.stats.copies import replicate_spec
from repsim_cli.stats.resample import bootstrap_indices

METRICS = ("mutual_knn", "cknna", "dcor")


# ------------------------------------------------------------------ dense references (test-only)
def full_kernel(x: np.ndarray, normalize: bool) -> np.ndarray:
    """The full sample's inner products (cosines with ``normalize``): indexing it by a replicate
    gives copies exactly equal columns."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x
    return z @ z.T


def neighbour_mask(s: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """0/1 (m, m): each row's k largest entries among the rows holding another example (the row
    itself and its copies left out), ties to the lower column (stable sort)."""
    s = s.copy()
    s[groups[:, None] == groups[None, :]] = -np.inf
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    mask = np.zeros_like(s)
    mask[np.arange(len(s))[:, None], idx] = 1.0
    assert np.all(np.isfinite(s[np.arange(len(s))[:, None], idx]))
    return mask


def dense_knn(x: np.ndarray, y: np.ndarray, idx: np.ndarray, k: int = 10, normalize: bool = True,
              exclude: bool = True) -> float:  # fmt: skip
    """Mutual k-NN of replicate ``idx``; ``exclude=False``: copies are neighbours like any row."""
    m = idx.size
    groups = idx if exclude else np.arange(m)
    kx, ky = (full_kernel(z, normalize)[np.ix_(idx, idx)] for z in (x, y))
    shared = (neighbour_mask(kx, groups, k) * neighbour_mask(ky, groups, k)).sum()
    return float(shared / (m * k))


def masked_hsic_dense(a: np.ndarray, b: np.ndarray) -> float:
    """HSIC_u of Song et al. (2012) on asymmetric zero-diagonal A, B, 1ᵀAB1 averaged over both
    orders (repsim's symmetric CKNNA)."""
    m = a.shape[0]
    one = np.ones(m)
    value = (np.sum(a * b.T) + a.sum() * b.sum() / ((m - 1) * (m - 2))
             - (one @ a @ b @ one + one @ b @ a @ one) / (m - 2))  # fmt: skip
    return float(value / (m * (m - 3)))


def dense_cknna(x: np.ndarray, y: np.ndarray, idx: np.ndarray, k: int = 10, normalize: bool = True,
                exclude: bool = True) -> float:  # fmt: skip
    """CKNNA of replicate ``idx``: the masked kernels are 0 between copies, as on the diagonal."""
    m = idx.size
    groups = idx if exclude else np.arange(m)
    same = groups[:, None] == groups[None, :]  # the diagonal, and the copy–copy pairs
    kx, ky = (full_kernel(z, normalize)[np.ix_(idx, idx)] for z in (x, y))
    mx, my = neighbour_mask(kx, groups, k), neighbour_mask(ky, groups, k)

    def masked(kernel: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = mask * kernel
        out[same] = 0.0
        return out

    h = masked_hsic_dense(masked(kx, mx * my), masked(ky, mx * my))
    return h / np.sqrt(masked_hsic_dense(masked(kx, mx), masked(kx, mx))
                       * masked_hsic_dense(masked(ky, my), masked(ky, my)))  # fmt: skip


def dense_dcor(x: np.ndarray, y: np.ndarray, idx: np.ndarray, exclude: bool = True) -> float:
    """dCor of replicate ``idx`` over its distinct examples k with counts w_k: the V-statistic
    with pair weights w_k·w_l, except w_k (its true diagonal positions) for the pair (k, k) when
    copy–copy pairs are excluded; ``exclude=False``: w_k² (the rows as they are)."""
    ex, w = np.unique(idx, return_counts=True)
    weights = np.outer(w, w).astype(np.float64)
    if exclude:
        np.fill_diagonal(weights, w)

    def centred(z: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(z[ex][:, None, :] - z[ex][None, :, :], axis=2)
        row = (weights * d).sum(axis=1) / weights.sum(axis=1)
        return d - row[:, None] - row[None, :] + (weights * d).sum() / weights.sum()

    a, b = centred(x), centred(y)
    ratio = (weights * a * b).sum() / np.sqrt((weights * a * a).sum() * (weights * b * b).sum())
    return float(np.sqrt(max(ratio, 0.0)))


DENSE = {"mutual_knn": dense_knn, "cknna": dense_cknna, "dcor": dense_dcor}


def replicate(metric: str, x: np.ndarray, y: np.ndarray, idx: np.ndarray, **kw: Any) -> float:
    """repsim's bootstrap replicate ``idx`` of one cell (the generic path's own function)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        return float(generic.matrix_on_rows(parse_spec(metric), {"x": x, "y": y}, ["x"], ["y"], idx, **kw)[0, 0])


def independent(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)), rng.normal(size=(n, p))


def related(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    return x, np.tanh(x @ rng.normal(size=(p, p))) + 0.5 * rng.normal(size=(n, p))


# ------------------------------------------------------------------ (1) replicates with copies
@pytest.mark.parametrize(("metric", "params"), [
    ("mutual_knn", {}), ("mutual_knn", {"k": 4, "normalize": False}),
    ("cknna", {}), ("cknna", {"k": 4, "normalize": False}), ("dcor", {}),
])  # fmt: skip
def test_replicates_with_copies_equal_a_dense_computation(metric: str, params: dict[str, Any]) -> None:
    x, y = related(60, 6, seed=1)
    text = metric + "".join(f"{':' if i == 0 else ','}{k}={v}" for i, (k, v) in enumerate(params.items()))
    reps = bootstrap_indices(5, 60, 6)
    assert all(np.unique(i).size < 60 for i in reps)  # every replicate has copies
    for idx in reps:
        got = replicate(text, x, y, idx)
        want = DENSE[metric](x, y, idx, **params)
        if metric == "mutual_knn":
            assert got == want  # the same count over the same n·k
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
        # the copies changed the value (the test can fail): without the exclusion it is another one
        assert replicate(text, x, y, idx, exclude_copies=False) != pytest.approx(got, rel=1e-6)


def test_cknna_platonic_replicate_excludes_copies_too() -> None:
    """compat=platonic has the same neighbour lists; its one-order value with the copies
    excluded is the reference's formula on the copy-excluded masks."""
    x, y = related(40, 5, seed=2)
    idx = bootstrap_indices(1, 40, 1)[0]
    kx, ky = (full_kernel(z, True)[np.ix_(idx, idx)] for z in (x, y))
    mx, my = neighbour_mask(kx, idx, 10), neighbour_mask(ky, idx, 10)
    m, one = idx.size, np.ones(idx.size)

    def hsic(a: np.ndarray, b: np.ndarray) -> float:  # platonic-rep's order: 1ᵀAB1
        return float((np.sum(a * b.T) + a.sum() * b.sum() / ((m - 1) * (m - 2))
                      - 2 * (one @ a @ b @ one) / (m - 2)) / (m * (m - 3)))  # fmt: skip

    want = hsic(mx * my * kx, mx * my * ky) / (np.sqrt(hsic(mx * kx, mx * kx) * hsic(my * ky, my * ky)) + 1e-6)
    np.testing.assert_allclose(replicate("cknna:compat=platonic", x, y, idx), want, rtol=1e-12)


def test_too_few_other_examples_gives_nan() -> None:
    """A row with fewer than k rows of other examples has no k-neighbour list: NaN replicate."""
    x, y = related(8, 3, seed=3)
    idx = np.array([0, 0, 0, 0, 1, 2, 3, 4])  # example 0 sees only 4 other rows
    assert np.isnan(replicate("mutual_knn:k=5", x, y, idx))
    assert np.isnan(replicate("cknna:k=5", x, y, idx))
    assert np.isfinite(replicate("mutual_knn:k=4", x, y, idx))


# ------------------------------------------------------------------ (2) replicates without copies
@pytest.mark.parametrize("metric", METRICS)
def test_replicate_without_copies_is_the_plain_metric(metric: str) -> None:
    x, y = related(50, 5, seed=4)
    perm = np.random.default_rng(0).permutation(50)
    spec = parse_spec(metric)
    assert replicate_spec(spec, perm) is spec  # the plain metric's own prepare stage
    assert replicate_spec(spec, bootstrap_indices(0, 50, 1)[0]) is not spec
    plain = dense_value(metric, x, y, {})
    if metric == "mutual_knn":
        assert replicate(metric, x, y, perm) == plain
    else:
        np.testing.assert_allclose(replicate(metric, x, y, perm), plain, rtol=1e-12)


def test_grouped_states_without_copies_are_the_plain_states_bit_for_bit() -> None:
    x = np.random.default_rng(5).normal(size=(30, 4))
    gram, rtol = x @ x.T, roundoff_rtol(np.float64)
    everyone = np.arange(30) * 7  # distinct example indices, not 0..n-1
    for normalize in (True, False):
        plain = nearest_neighbours(gram, 5, normalize, rtol, "x")
        grouped = nearest_neighbours(gram, 5, normalize, rtol, "x", groups=everyone)
        np.testing.assert_array_equal(plain.codes, grouped.codes)
        np.testing.assert_array_equal(plain.values, grouped.values)
    np.testing.assert_array_equal(centered_distances(gram, rtol), centered_distances(gram, rtol, everyone))


# ------------------------------------------------------------------ (3) end to end
# Two independent 100-example layers of 20 units, 40 replicates (seed 3), 90% intervals. With the
# exclusion the replicates' mean sits within MARGIN_NEAR (about one replicate SD) of the estimate;
# without it, more than MARGIN_ABOVE above it. Measured (estimate → mean with / without the
# exclusion, replicate SD with it): mutual_knn 0.089 → 0.084 / 0.168, SD 0.019; cknna
# 0.069 → 0.052 / 0.526, SD 0.023; dcor 0.669 → 0.675 / 0.785, SD 0.011. (What is left with the
# exclusion is the bootstrap's own bias — a replicate holds about 0.63n distinct examples.)
N, P, B, SEED = 100, 20, 40, 3
MARGIN_NEAR = {"mutual_knn": 0.02, "cknna": 0.03, "dcor": 0.015}
MARGIN_ABOVE = {"mutual_knn": 0.05, "cknna": 0.25, "dcor": 0.07}


def test_compare_bootstrap_replicates_are_no_longer_inflated(make_store, tmp_path, monkeypatch) -> None:
    x, y = independent(N, P, seed=11)
    store = make_store({"x": x, "y": y})

    def run(out: str) -> tuple[Any, str]:
        args = ["compare", str(store), "--bootstrap", str(B), "--seed", str(SEED), "--ci", "0.9",
                "-o", str(tmp_path / out), "-q"]  # fmt: skip
        for m in METRICS:
            args += ["-m", m]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
        return read_results(tmp_path / out), r.output + " ".join(str(w.message) for w in caught)

    res, text = run("excluded.h5")
    assert "bootstrap interval excludes" not in text
    monkeypatch.setattr(runner, "matrix_on_rows", functools.partial(generic.matrix_on_rows, exclude_copies=False))
    kept, kept_text = run("kept.h5")
    for m in METRICS:  # the run's own warning, as it was before the exclusion
        assert f"{m}: the bootstrap interval excludes" in kept_text
    idx = bootstrap_indices(SEED, N, B)
    for m in METRICS:
        value = res.metrics[m].value[0, 1]
        lo, hi = res.metrics[m].stats["ci_low"][0, 1], res.metrics[m].stats["ci_high"][0, 1]
        reps = np.array([DENSE[m](x, y, i) for i in idx])
        np.testing.assert_allclose([lo, hi], np.quantile(reps, [0.05, 0.95]), rtol=1e-10, err_msg=m)
        assert lo <= value <= hi, m
        assert abs(reps.mean() - value) < MARGIN_NEAR[m], m
        with_copies = np.array([DENSE[m](x, y, i, exclude=False) for i in idx])
        assert with_copies.mean() - value > MARGIN_ABOVE[m], m
        assert kept.metrics[m].stats["ci_low"][0, 1] > value, m  # the old interval missed its value


# ------------------------------------------------------------------ (4) properties
@st.composite
def replicates(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two related layers, a bootstrap replicate of their examples and a shuffle of its rows."""
    n = draw(st.integers(12, 30))
    x, y = related(n, draw(st.integers(2, 6)), draw(st.integers(0, 2**16)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    idx = rng.integers(0, n, size=n)
    return x, y, idx, rng.permutation(n)


@given(replicates(), st.sampled_from(METRICS), st.integers(2, 5), st.booleans())
def test_replicate_properties(case, metric: str, k: int, normalize: bool) -> None:
    """Shuffling a replicate's rows changes nothing; swapping the layers changes nothing; a layer
    with itself is the identity value; the value is the dense one."""
    x, y, idx, shuffle = case
    text = "dcor" if metric == "dcor" else f"{metric}:k={k},normalize={str(normalize).lower()}"
    params = {} if metric == "dcor" else {"k": k, "normalize": normalize}
    value = replicate(text, x, y, idx)
    exact = metric == "mutual_knn"
    check = (lambda a, b: a == b) if exact else (lambda a, b: a == pytest.approx(b, rel=1e-9, abs=1e-12))
    assert check(replicate(text, x, y, idx[shuffle]), value)
    assert check(replicate(text, y, x, idx), value)
    assert check(replicate(text, x, x, idx), 1.0)
    assert check(DENSE[metric](x, y, idx, **params), value)
