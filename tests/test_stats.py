"""Per-cell statistics of compare (repsim_cli.stats): bootstrap, jackknife, permutation tests.

Budget: about 30 s on 2 loaded cores. Every random draw is seeded; each statistical check states
its acceptance band.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from repsim_cli._warnings import RepsimWarning
from repsim_cli.arrays import ArrayStore
from repsim_cli.cli import cli
from repsim_cli.compare import CompareOptions, compare_models, prepare_models
from repsim_cli.merge import merge_results
from repsim_cli.metrics.cka import linear_cka
from repsim_cli.results import STAT_FIELDS, read_results
from repsim_cli.schedule import Shard
from repsim_cli.stats.adjust import adjust_pvalues
from repsim_cli.stats.jackknife import jackknife_se
from repsim_cli.stats.loo import loo_cka
from repsim_cli.stats.nulls import gamma_null, gamma_sf, permutation_p, permuted_inner
from repsim_cli.stats.resample import bootstrap_indices, bootstrap_weights, permutations
from repsim_cli.stats.runner import StatsOptions, attach_statistics
from repsim_cli.stats.weighted import weighted_cka


def centred_gram(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc @ xc.T


def related(rng: np.random.Generator, n: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 6))
    return x, x @ rng.normal(size=(6, 5)) + noise * rng.normal(size=(n, 5))


def unbiased_hsic_scaled(k: np.ndarray, l_: np.ndarray) -> float:
    """n(n−3)·HSIC_u (Song et al. 2012, eq. 5) of two zero-diagonal kernels, written out."""
    m = k.shape[0]
    return float(np.sum(k * l_) + k.sum() * l_.sum() / ((m - 1) * (m - 2))
                 - 2 / (m - 2) * (k.sum(0) @ l_.sum(0)))  # fmt: skip


# ---------------------------------------------------------------- the weights path
def centred_hsic_scaled(k: np.ndarray, l_: np.ndarray) -> float:
    """tr(HKHL) of two kernels, written out."""
    h = np.eye(k.shape[0]) - 1.0 / k.shape[0]
    return float(np.sum((h @ k @ h) * l_))


def test_weighted_cka_is_the_resampled_kernel_without_copy_pairs() -> None:
    """Biased CKA of a replicate = CKA of the full sample's centred Gram indexed by the replicate
    with every copy–copy entry set to 0 (each position's own diagonal kept); without copies
    (weights 1) it is linear CKA itself."""
    rng = np.random.default_rng(0)
    x, y = related(rng, 40)
    kc, lc = centred_gram(x), centred_gram(y)
    idx = bootstrap_indices(3, 40, 6)
    got = weighted_cka(kc, lc, bootstrap_weights(idx, 40), unbiased=False)
    want = []
    for i in idx:
        copy_pairs = (i[:, None] == i[None, :]) & ~np.eye(40, dtype=bool)
        assert copy_pairs.any()
        k, l_ = np.where(copy_pairs, 0.0, kc[np.ix_(i, i)]), np.where(copy_pairs, 0.0, lc[np.ix_(i, i)])
        want.append(centred_hsic_scaled(k, l_) / np.sqrt(centred_hsic_scaled(k, k) * centred_hsic_scaled(l_, l_)))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.max(np.abs(got - [linear_cka(x[i], y[i]) for i in idx])) > 1e-4  # the policy matters
    np.testing.assert_allclose(weighted_cka(kc, lc, np.ones((40, 1)), unbiased=False), linear_cka(x, y), rtol=1e-12)


def test_duplicates_policy_for_the_unbiased_estimator() -> None:
    """Debiased CKA of a replicate = the unbiased estimator on the resampled centred Gram with
    every copy–copy pair excluded (zeroed like the diagonal)."""
    rng = np.random.default_rng(1)
    x, y = related(rng, 30)
    kc, lc = centred_gram(x), centred_gram(y)
    idx = bootstrap_indices(5, 30, 5)
    got = weighted_cka(kc, lc, bootstrap_weights(idx, 30), unbiased=True)
    want, kept = [], []
    for i in idx:
        assert len(set(i.tolist())) < 30  # the replicate has copies
        k, l_ = kc[np.ix_(i, i)], lc[np.ix_(i, i)]
        same = i[:, None] == i[None, :]
        k0, l0 = np.where(same, 0.0, k), np.where(same, 0.0, l_)
        want.append(unbiased_hsic_scaled(k0, l0) / np.sqrt(unbiased_hsic_scaled(k0, k0) * unbiased_hsic_scaled(l0, l0)))
        kd, ld = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))  # diagonal only: copies kept
        kept.append(unbiased_hsic_scaled(kd, ld) / np.sqrt(unbiased_hsic_scaled(kd, kd) * unbiased_hsic_scaled(ld, ld)))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert np.max(np.abs(np.array(kept) - got)) > 1e-3  # the policy changes the value


def test_resampling_depends_only_on_seed_and_n() -> None:
    a, b = bootstrap_indices(7, 50, 10), bootstrap_indices(7, 50, 20)
    np.testing.assert_array_equal(a, b[:10])
    assert not np.array_equal(a, bootstrap_indices(8, 50, 10))
    w = bootstrap_weights(a, 50)
    assert w.shape == (50, 10) and np.all(w.sum(axis=0) == 50)
    p = permutations(7, 50, 4)
    assert all(sorted(r.tolist()) == list(range(50)) for r in p)


# ---------------------------------------------------------------- coverage and calibration
def test_bootstrap_coverage_of_population_linear_cka() -> None:
    """300 Gaussian data sets (n = 100, 3 dims) with Y = AX + E: population linear CKA is
    ‖Σxy‖²_F/(‖Σxx‖_F‖Σyy‖_F). 95% percentile intervals (199 replicates) must cover it in a
    fraction inside the binomial 99% band of Binomial(300, 0.95): [0.918, 0.982]."""
    from coverage_sim import TRIALS, N, data_sets, within_band

    population, sets = data_sets()
    w = bootstrap_weights(bootstrap_indices(7, N, 199), N)
    hits = 0
    for x, y in sets:
        lo, hi = np.quantile(weighted_cka(centred_gram(x), centred_gram(y), w, unbiased=False), [0.025, 0.975])
        hits += lo <= population <= hi
    assert within_band(hits / TRIALS), hits / TRIALS


def test_permutation_p_values_are_uniform_under_the_null() -> None:
    """Independent X and Y, 300 data sets, 199 permutations each: KS test against U(0, 1) at
    level 0.01 (the p-values' grid step 1/200 is far below the KS critical distance 0.094)."""
    rng = np.random.default_rng(11)
    n = 24
    perms = permutations(2, n, 199)
    ps = []
    for _ in range(300):
        k, l_ = centred_gram(rng.normal(size=(n, 3))), centred_gram(rng.normal(size=(n, 2)))
        ps.append(permutation_p(float(np.vdot(k, l_)), permuted_inner([k], l_, perms)[0], "similarity"))
    assert sps.kstest(ps, "uniform").pvalue > 0.01


def rbf(z: np.ndarray) -> np.ndarray:
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    return np.exp(-d / np.median(d))


def test_gamma_p_values_agree_with_permutations() -> None:
    """Gamma approximation vs 999 permutations on 24 data sets (n = 100, linear and RBF kernels,
    dependence from none to strong): |p_gamma − p_perm| ≤ 0.06 each (the permutation p-value's own
    Monte Carlo error is ≤ 0.016) and ≤ 0.02 on average."""
    rng = np.random.default_rng(5)
    n = 100
    perms = permutations(3, n, 999)
    h = np.eye(n) - 1.0 / n
    diffs = []
    for d in range(24):
        x = rng.normal(size=(n, 4))
        y = 0.25 * (d % 4) * x[:, :3] @ rng.normal(size=(3, 3)) / 3 + rng.normal(size=(n, 3))
        k, l_ = (rbf(x), rbf(y)) if d % 2 else (x @ x.T, y @ y.T)
        kc, lc = h @ k @ h, h @ l_ @ h
        stat, mean, var = gamma_null(kc, lc)
        p_perm = permutation_p(float(np.vdot(kc, lc)), permuted_inner([kc], lc, perms)[0], "similarity")
        diffs.append(abs(gamma_sf(stat, mean, var, n) - p_perm))
    assert max(diffs) <= 0.06 and float(np.mean(diffs)) <= 0.02, diffs


def test_adjustments() -> None:
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    np.testing.assert_allclose(adjust_pvalues(p, "holm")[[0, 1, 2, 4]], [0.04, 0.09, 0.09, 0.5])
    np.testing.assert_allclose(adjust_pvalues(p, "bh")[[0, 1, 2, 4]], [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert np.isnan(adjust_pvalues(p, "holm")[3])


# ---------------------------------------------------------------- through compare
def run_stats(layers: dict[str, np.ndarray], metric: str, **opts: object):
    store = ArrayStore(layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        comparison = prepare_models([("m", store)], [metric], precision="float64")  # type: ignore[list-item]
        attach_statistics(comparison, StatsOptions(**opts))  # type: ignore[arg-type]
        try:
            return comparison.run().metrics[metric]
        finally:
            comparison.close()


@pytest.mark.parametrize("metric", ["cka", "cka:debiased=true", "procrustes"])
def test_jackknife_std_error_equals_brute_force(metric: str) -> None:
    rng = np.random.default_rng(2)
    x, y = related(rng, 20)
    res = run_stats({"x": x, "y": y}, metric, jackknife=True)
    if metric == "procrustes":
        from repsim_cli.arrays import dense_value

        loo = [dense_value("procrustes", np.delete(x, k, 0), np.delete(y, k, 0), {}) for k in range(20)]
    else:
        debiased = "debiased" in metric
        loo = [linear_cka(np.delete(x, k, 0), np.delete(y, k, 0), debiased=debiased) for k in range(20)]
        np.testing.assert_allclose(loo_cka(centred_gram(x), centred_gram(y), debiased=debiased), loo,
                                   rtol=1e-10)  # fmt: skip
    assert res.std_error is not None
    np.testing.assert_allclose(res.std_error[0, 1], jackknife_se(np.array(loo)), rtol=1e-8)
    assert res.std_error[1, 0] == res.std_error[0, 1]


def test_generic_bootstrap_and_permutations_match_a_direct_computation() -> None:
    """The generic path's replicates are the metric on the resampled (permuted) rows."""
    from repsim_cli.arrays import dense_value

    rng = np.random.default_rng(4)
    x, y = related(rng, 16)
    res = run_stats({"x": x, "y": y}, "procrustes", bootstrap=9, permutations=9, seed=3, adjust="none")
    reps = [dense_value("procrustes", x[i], y[i], {}) for i in bootstrap_indices(3, 16, 9)]
    lo, hi = np.quantile(reps, [0.025, 0.975])
    np.testing.assert_allclose([res.stats["ci_low"][0, 1], res.stats["ci_high"][0, 1]], [lo, hi], rtol=1e-9)
    null = np.array([dense_value("procrustes", x, y[p], {}) for p in permutations(3, 16, 9)])
    observed = dense_value("procrustes", x, y, {})
    assert res.stats["p_value"][0, 1] == pytest.approx((1 + np.sum(null <= observed)) / 10)  # a distance
    assert res.stats["null_mean"][0, 1] == pytest.approx(null.mean(), rel=1e-9)
    np.testing.assert_array_equal(res.stats["p_adjusted"][0, 1], res.stats["p_value"][0, 1])


@pytest.mark.parametrize(("metric", "opts"), [
    # no bootstrap here: the generic path keeps the copy–copy pairs the kernel path excludes
    ("cka", {"jackknife": True, "permutations": 15}),
    ("cka:debiased=true", {"jackknife": True, "permutations": 15}),
    # RBF CKA's kernel path keeps the full sample's bandwidth; the generic path re-estimates it
    # per replicate, so only the permutations (same examples, same bandwidth) compare
    ("cka_rbf", {"permutations": 15}),
    ("cka_rbf:debiased=true", {"permutations": 15}),
])
def test_kernel_path_matches_the_generic_path(metric: str, opts: dict[str, object]) -> None:
    """Kernel-path statistics of linear CKA equal the generic path's (re-prepared layers)."""
    from repsim_cli.stats import runner

    rng = np.random.default_rng(8)
    x, y = related(rng, 18, noise=2.0)
    fast = run_stats({"x": x, "y": y}, metric, seed=1, adjust="none", **opts)
    saved = runner.FAST_METRICS
    runner.FAST_METRICS = ()
    try:
        slow = run_stats({"x": x, "y": y}, metric, seed=1, adjust="none", **opts)
    finally:
        runner.FAST_METRICS = saved
    keys = [k for k in ("ci_low", "ci_high", "p_value", "null_mean", "null_std") if k in fast.stats]
    for k in keys:
        np.testing.assert_allclose(fast.stats[k][0, 1], slow.stats[k][0, 1], rtol=1e-9, err_msg=k)
    if "jackknife" in opts:
        np.testing.assert_allclose(fast.std_error, slow.std_error, rtol=1e-8)


# ---------------------------------------------------------------- reproducibility
OPTS = StatsOptions(bootstrap=15, jackknife=True, permutations=15, seed=9)


@pytest.fixture
def three(make_store):
    rng = np.random.default_rng(6)
    x, y = related(rng, 32)
    layers = {"x": x.astype(np.float32), "y": y.astype(np.float32),
              "z": rng.normal(size=(32, 4)).astype(np.float32)}  # fmt: skip
    return make_store(layers, chunk_rows=32), make_store(layers, chunk_rows=5)


def stats_of(path, tmp_path, metric="cka", opts=OPTS, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        return compare_models([path], [metric], options=CompareOptions(statistics=opts, **kw),
                              out=kw.pop("out", None)).metrics[metric]  # fmt: skip


def assert_same_stats(a, b, exact=True) -> None:
    check = np.testing.assert_array_equal if exact else (lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12))
    check(a.std_error, b.std_error)
    assert set(a.stats) == set(b.stats) == set(STAT_FIELDS)
    for k in STAT_FIELDS:
        check(a.stats[k], b.stats[k])


@pytest.mark.parametrize("metric", ["cka", "procrustes"])
def test_seed_determinism_chunk_sizes_and_sides(three, tmp_path, metric) -> None:
    small_chunks, big_chunks = three
    first = stats_of(big_chunks, tmp_path, metric)
    assert_same_stats(first, stats_of(big_chunks, tmp_path, metric))
    assert_same_stats(first, stats_of(small_chunks, tmp_path, metric))
    other = stats_of(big_chunks, tmp_path, metric, StatsOptions(bootstrap=15, seed=10))
    assert not np.array_equal(other.stats["ci_low"], first.stats["ci_low"])
    if metric == "cka":  # the engine sides differ by round-off in the Gram
        assert_same_stats(first, stats_of(big_chunks, tmp_path, metric, side="feature"), exact=False)


@pytest.mark.parametrize("metric", ["cka", "procrustes"])
def test_shards_merge_to_the_statistics_of_one_run(three, tmp_path, metric) -> None:
    path = three[0]
    whole = stats_of(path, tmp_path, metric)
    parts = []
    for k in (1, 2, 3):
        out = tmp_path / f"part{k}.h5"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepsimWarning)
            compare_models([path], [metric], options=CompareOptions(statistics=OPTS), out=out, shard=Shard(k, 3))
        parts.append(out)
    merged = merge_results(parts).metrics[metric]
    assert_same_stats(whole, merged)


def test_a_resumed_run_has_the_same_statistics(three, tmp_path) -> None:
    from resume_helpers import run_killed_and_resumed

    fresh, resumed = run_killed_and_resumed([three[0]], ["cka"], tmp_path / "r.h5", 2, OPTS)
    assert_same_stats(fresh.metrics["cka"], resumed.metrics["cka"])


# ---------------------------------------------------------------- command line
def test_cli_writes_statistics_and_dry_run_shows_their_cost(three, tmp_path) -> None:
    path = three[0]
    out = tmp_path / "s.csv"
    with warnings.catch_warnings():  # procrustes' bootstrap may be flagged as biased at this n
        warnings.simplefilter("ignore", RepsimWarning)
        r = CliRunner().invoke(cli, ["compare", str(path), "-m", "cka", "-m", "procrustes", "--bootstrap", "10",
                                     "--jackknife", "--permutations", "10", "--seed", "4", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    res = read_results(out)
    assert np.isfinite(res.metrics["cka"].stats["ci_low"][0, 1])
    assert np.isfinite(res.metrics["procrustes"].stats["p_adjusted"][0, 1])
    dry = CliRunner().invoke(cli, ["compare", str(path), "-m", "cka", "-m", "procrustes", "--bootstrap", "10",
                                   "--jackknife", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "kernel path" in dry.output and "WARNING generic path" in dry.output
    bad = CliRunner().invoke(cli, ["compare", str(path), "-m", "procrustes", "--null", "gamma", "-o", str(out)])
    assert bad.exit_code == 1 and "no gamma approximation" in bad.output
    both = CliRunner().invoke(cli, ["compare", str(path), "-m", "cka", "--null", "gamma", "--permutations", "9",
                                    "-o", str(out)])
    assert both.exit_code == 2 and "needs no --permutations" in both.output


def test_gamma_null_through_compare(three, tmp_path) -> None:
    res = stats_of(three[0], tmp_path, "cka", StatsOptions(null="gamma"))
    assert res.std_error is None and 0 < res.stats["p_value"][0, 1] < 0.01  # x and y are related
    assert res.stats["p_value"][0, 2] > 0.01 or res.stats["null_adjusted"][0, 2] < 0.5


def test_jackknife_warns_when_a_few_examples_dominate_a_cell() -> None:
    """Davari et al. (2022): 3 of 400 examples moved 25× the spread along a low-variance direction
    decide linear CKA; --jackknife names the cell and the influence command to run."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(400, 8)) * np.array([5, 4, 3, 2, 1, 1, 1, 0.2])
    y = x @ np.linalg.qr(rng.normal(size=(8, 8)))[0] + 0.3 * rng.normal(size=(400, 8))
    x_moved = x.copy()
    x_moved[:3, 7] += 25 * x.std(axis=0).max()
    def dominance_warnings(layer: np.ndarray) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            comparison = prepare_models([("m", ArrayStore({"x": layer, "y": y}))], ["cka"],  # type: ignore[list-item]
                                        precision="float64")  # fmt: skip
            attach_statistics(comparison, StatsOptions(jackknife=True))
            comparison.run()
            comparison.close()
        return [str(w.message) for w in caught if "dominate" in str(w.message)]

    assert dominance_warnings(x) == []
    lines = dominance_warnings(x_moved)
    assert len(lines) == 1 and "(x, y)" in lines[0] and "repsim influence" in lines[0], lines


@pytest.mark.parametrize("compare", ["spearman", "kendall"])
def test_rsa_bootstrap_excludes_copy_pairs_as_rsatoolbox(compare: str) -> None:
    """RSA replicates compare only the pairs of distinct examples: rsatoolbox's RDMs of the
    resampled rows with copy–copy entries dropped, compared by rsatoolbox itself."""
    rsatoolbox = pytest.importorskip("rsatoolbox")
    rng = np.random.default_rng(13)
    x, y = related(rng, 14)
    res = run_stats({"x": x, "y": y}, f"rsa:compare={compare}", bootstrap=5, seed=2)
    reps = []
    for idx in bootstrap_indices(2, 14, 5):
        rdms = [rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(z[idx]), method="correlation") for z in (x, y)]
        iu, ju = np.triu_indices(14, 1)
        keep = idx[iu] != idx[ju]
        vecs = [r.get_vectors()[0][keep][None, :] for r in rdms]
        a, b = (rsatoolbox.rdm.RDMs(v) for v in vecs)
        reps.append(float(rsatoolbox.rdm.compare(a, b, method="spearman" if compare == "spearman" else "tau-b")[0, 0]))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    np.testing.assert_allclose([res.stats["ci_low"][0, 1], res.stats["ci_high"][0, 1]], [lo, hi], rtol=1e-9)


def test_a_packed_gram_is_rebuilt_whole() -> None:
    """The kernel path rebuilds a packed plan's Gram from its strict upper triangle and row norms
    (the plan that holds no whole Gram raises RuntimeError for it)."""
    from types import SimpleNamespace

    from repsim_cli.stats.runner import engine_gram

    rng = np.random.default_rng(14)
    n = 600  # more than one 256-row tile
    x = rng.normal(size=(n, 7))
    k = centred_gram(x)
    iu = np.triu_indices(n, 1)

    def no_whole_gram(ref: object) -> None:
        raise RuntimeError("the packed plan holds Gram triangles only")

    def triangle_rows(layer: int, first: int, stop: int, out: np.ndarray) -> None:
        assert (layer, first, stop) == (0, 0, n)
        out[:] = k[iu]

    engine = SimpleNamespace(
        n=n, centered_gram=no_whole_gram, index=lambda ref: 0, row_sqnorms=lambda ref: np.diag(k).copy(),
        _grams=SimpleNamespace(triangle_rows=triangle_rows),
    )
    rebuilt = engine_gram(SimpleNamespace(engine=engine), object())  # type: ignore[arg-type]
    np.testing.assert_array_equal(rebuilt, k)
