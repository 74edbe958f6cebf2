"""BCa bootstrap intervals (``compare --bootstrap B --ci-method bca``): the formula against SciPy's
implementation fed the same replicates (SciPy computes its own brute-force jackknife), its
invariances, what the runner hands it for the closed-form and the recomputed metrics, its
coverage, and the command line.

Budget: about 2 s (the coverage simulation: 300 data sets, closed-form leave-one-out)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from repsim_cli._warnings import RepsimWarning
from repsim_cli.arrays import ArrayStore
from repsim_cli.cli import cli
from repsim_cli.compare import prepare_models
from repsim_cli.metrics.cka import linear_cka
from repsim_cli.metrics.dcor import distance_correlation
from repsim_cli.stats import runner
from repsim_cli.stats.intervals import acceleration, bca_interval, percentile_interval
from repsim_cli.stats.loo import loo_cka
from repsim_cli.stats.resample import bootstrap_indices, bootstrap_weights
from repsim_cli.stats.runner import StatsOptions, attach_statistics
from repsim_cli.stats.weighted import weighted_cka


def centred_gram(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    return xc @ xc.T


def related(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 3)) * np.array([2.0, 1.0, 0.5])
    return x, np.tanh(x @ rng.normal(size=(3, 4))) + 0.5 * rng.normal(size=(n, 4))


def scipy_bca(reps: np.ndarray, statistic, n: int, ci: float) -> tuple[float, float]:
    """SciPy's BCa interval from the replicates ``reps`` (no new resample): it evaluates
    ``statistic`` on all n examples and on each leave-one-out set itself."""
    given_reps = SimpleNamespace(bootstrap_distribution=reps)
    res = sps.bootstrap((np.arange(n),), lambda idx: statistic(idx.astype(int)), n_resamples=0,
                        bootstrap_result=given_reps, method="BCa", confidence_level=ci, vectorized=False)  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@pytest.mark.parametrize("ci", [0.9, 0.95])
def test_bca_equals_scipy_given_the_same_replicates(ci) -> None:
    """Linear CKA of 40 examples: our BCa (acceleration from the closed-form leave-one-out) equals
    scipy.stats.bootstrap(method="BCa") on the same 300 replicates (its jackknife is brute force)."""
    rng = np.random.default_rng(1)
    n = 40
    x, y = related(rng, n)
    k, l_ = centred_gram(x), centred_gram(y)
    reps = weighted_cka(k, l_, bootstrap_weights(bootstrap_indices(3, n, 300), n), unbiased=False)
    estimate = linear_cka(x, y)
    ours = bca_interval(reps, estimate, loo_cka(k, l_), ci)
    theirs = scipy_bca(reps, lambda idx: linear_cka(x[idx], y[idx]), n, ci)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert ours != percentile_interval(reps, ci)  # the corrections do something here


@settings(max_examples=60, deadline=None)
@given(st.floats(-5, 5), st.floats(0.1, 10), st.integers(0, 2**32 - 1))
def test_bca_moves_with_the_data(shift, scale, seed) -> None:
    """Translation and positive scaling of replicates, estimate and leave-one-out values carry
    over to the interval; the interval lies within the replicates' range."""
    rng = np.random.default_rng(seed)
    reps, loo = rng.gamma(2.0, size=200), 1.0 + 0.05 * rng.gamma(2.0, size=30)
    estimate = float(np.median(reps)) + 0.1
    lo, hi = bca_interval(reps, estimate, loo, 0.9)
    moved = bca_interval(shift + scale * reps, shift + scale * estimate, shift + scale * loo, 0.9)
    np.testing.assert_allclose(moved, (shift + scale * lo, shift + scale * hi), rtol=1e-9, atol=1e-9)
    assert reps.min() <= lo <= hi <= reps.max()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 3), min_size=5, max_size=60), st.floats(-2, 2))
def test_without_bias_or_skew_bca_is_the_percentile_interval(half, estimate) -> None:
    """Replicates symmetric about the estimate (z₀ = 0) and equal leave-one-out values (a = 0):
    BCa's levels are the percentile interval's."""
    d = np.array(half)
    reps = np.concatenate([estimate - d, estimate + d])
    assert acceleration(np.full(9, estimate)) == 0.0
    np.testing.assert_allclose(bca_interval(reps, estimate, np.full(9, estimate), 0.9),
                               percentile_interval(reps, 0.9), rtol=1e-12, atol=1e-12)  # fmt: skip


def test_degenerate_cases_are_nan_or_exact() -> None:
    reps = np.array([0.2, 0.3, np.nan, 0.4])
    loo = np.linspace(0.2, 0.4, 10)
    assert np.isnan(bca_interval(reps, 0.1, loo, 0.9)).all()  # every replicate above: z₀ = −∞
    assert np.isnan(bca_interval(reps, 0.3, np.array([0.3, np.nan]), 0.9)).all()
    assert np.isnan(bca_interval(np.full(3, np.nan), 0.3, loo, 0.9)).all()
    assert bca_interval(np.ones(50), 1.0, np.ones(10), 0.95) == (1.0, 1.0)  # a layer with itself


def run_with(layers: dict[str, np.ndarray], metrics: list[str], opts: StatsOptions):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        comparison = prepare_models([("m", ArrayStore(layers))], metrics, precision="float64")  # type: ignore[arg-type]
        attach_statistics(comparison, opts)
        try:
            return comparison.run()
        finally:
            comparison.close()


def test_the_runner_gives_bca_the_cell_its_estimate_and_its_leave_one_out_values(monkeypatch) -> None:
    """For cka (closed form), dcor (closed form) and procrustes (recomputed) the runner passes each
    cell's value and its leave-one-out values — equal to the brute-force ones — and writes the
    interval it gets back."""
    from repsim_cli.metrics.procrustes import procrustes_distance

    rng = np.random.default_rng(5)
    n = 24
    x, y = related(rng, n)
    dense = {"cka": linear_cka, "dcor": distance_correlation, "procrustes": procrustes_distance}
    seen: dict[float, tuple[np.ndarray, tuple[float, float]]] = {}
    real = runner.bca_interval

    def spy(reps, estimate, loo, ci):
        out = real(reps, estimate, loo, ci)
        seen[estimate] = (np.asarray(loo), out)
        return out

    monkeypatch.setattr(runner, "bca_interval", spy)
    res = run_with({"x": x, "y": y}, list(dense), StatsOptions(bootstrap=20, ci_method="bca", seed=2))
    for name, fn in dense.items():
        m = res.metrics[name]
        loo, interval = seen[m.value[0, 1]]
        brute = [fn(np.delete(x, k, 0), np.delete(y, k, 0)) for k in range(n)]
        np.testing.assert_allclose(loo, brute, rtol=1e-9, atol=1e-12)
        assert (m.stats["ci_low"][0, 1], m.stats["ci_high"][0, 1]) == interval
        assert np.isfinite(interval).all() and m.std_error is not None  # the replicates' SD


def test_bca_and_jackknife_share_the_leave_one_out_values(monkeypatch) -> None:
    """With --jackknife too, the kernel path computes the leave-one-out values once."""
    calls = []
    real = runner.CellStatistics._loo_ratios

    def counted(self, spec, wanted, unbiased):
        calls.append(len(wanted))
        return real(self, spec, wanted, unbiased)

    monkeypatch.setattr(runner.CellStatistics, "_loo_ratios", counted)
    rng = np.random.default_rng(6)
    x, y = related(rng, 30)
    res = run_with({"x": x, "y": y}, ["cka:debiased=true"], StatsOptions(bootstrap=10, ci_method="bca", jackknife=True))
    assert calls == [3]  # once, for the cells (x, x), (x, y), (y, y)
    m = res.metrics["cka:debiased=true"]
    assert m.std_error is not None and np.isfinite(m.stats["ci_low"]).all()


def test_bca_coverage_of_population_linear_cka() -> None:
    """The percentile test's 300 Gaussian data sets (n = 100, 3 dims, 199 replicates): 95% BCa
    intervals must cover the population linear CKA in a fraction inside the binomial 99% band of
    Binomial(300, 0.95): [0.918, 0.982]."""
    from coverage_sim import TRIALS, N, data_sets, within_band

    population, sets = data_sets()
    w = bootstrap_weights(bootstrap_indices(7, N, 199), N)
    hits = 0
    for x, y in sets:
        k, l_ = centred_gram(x), centred_gram(y)
        estimate = float(np.vdot(k, l_) / np.sqrt(np.vdot(k, k) * np.vdot(l_, l_)))
        lo, hi = bca_interval(weighted_cka(k, l_, w, unbiased=False), estimate, loo_cka(k, l_), 0.95)
        hits += lo <= population <= hi
    assert within_band(hits / TRIALS), hits / TRIALS


def test_command_line(make_store, tmp_path) -> None:
    rng = np.random.default_rng(8)
    x, y = related(rng, 30)
    path = make_store({"x": x.astype(np.float32), "y": y.astype(np.float32)})
    cli_run = CliRunner().invoke
    r = cli_run(cli, ["compare", str(path), "-m", "cka", "--ci-method", "bca", "-o", str(tmp_path / "a.csv")])
    assert r.exit_code == 2 and "--ci-method sets the method of the bootstrap intervals" in r.output
    r = cli_run(cli, ["compare", str(path), "-m", "cka", "-m", "cca", "--bootstrap", "10", "--ci-method", "bca",
                      "--dry-run"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "bootstrap 10 (0.95 BCa intervals)" in r.output
    assert "leaving each example out, for the BCa acceleration: 30 replicates" in r.output  # cca recomputes
    out = tmp_path / "b.h5"
    r = cli_run(cli, ["compare", str(path), "-m", "cka", "--bootstrap", "10", "--ci-method", "bca", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    r = cli_run(cli, ["info", str(out)])
    assert "95% BCa intervals" in r.output


def test_leave_one_out_values_that_are_not_finite_are_left_out_as_the_jackknife_leaves_them() -> None:
    loo = np.array([0.1, 0.25, np.nan, 0.4, 0.2])
    assert acceleration(loo) == acceleration(loo[np.isfinite(loo)])
    reps = np.linspace(0.0, 0.5, 101)
    assert np.isfinite(bca_interval(reps, 0.24, loo, 0.9)).all()


def test_empty_bca_intervals_are_reported_once_per_metric() -> None:
    """Cells with a value but no BCa interval get one warning line (they would otherwise show as
    a bare value)."""
    nan = np.nan
    result = SimpleNamespace(value=np.array([[1.0, 0.5], [0.5, nan]]),
                             stats={"ci_low": np.array([[1.0, nan], [nan, nan]]),
                                    "ci_high": np.array([[1.0, nan], [nan, nan]])})  # fmt: skip
    with pytest.warns(RepsimWarning, match=r"cca: no BCa interval in 2 of 3 cells"):
        runner.warn_empty_intervals(SimpleNamespace(text="cca"), result)  # type: ignore[arg-type]


def test_percentile_runs_record_their_options_as_before_bca_existed() -> None:
    """A percentile run's settings (results attribute, journal header) carry no ci_method, so
    shards and journals written before --ci-method merge and resume with it; BCa's do."""
    assert "ci_method" not in StatsOptions(bootstrap=5).to_dict()
    assert StatsOptions(bootstrap=5, ci_method="bca").to_dict()["ci_method"] == "bca"


def test_the_kernel_paths_leave_one_out_memory_counts_against_the_budget() -> None:
    from repsim_cli.stats.packed import kernel_working_bytes

    rng = np.random.default_rng(3)
    layers = {f"l{i}": rng.normal(size=(200, 6)) for i in range(3)}
    comparison = prepare_models([("m", ArrayStore(layers))], ["cka:debiased=true"], precision="float64")  # type: ignore[list-item]
    try:
        for opts in (StatsOptions(jackknife=True), StatsOptions(bootstrap=3, ci_method="bca")):
            working = runner.CellStatistics(comparison, opts).memory_need()[2]
            assert working >= kernel_working_bytes(200, [3], 1, 3) > 0
    finally:
        comparison.close()
