"""Bayesian linear-readout distances (Schütt 2024, arXiv:2411.08739): exact TV, eigenbasis JS,
closed forms.

References are built here from dense Gaussian formulas and from a direct Monte Carlo estimator on
scipy's multivariate normal log-densities (no eigen tricks), as the reference code samples.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats
from strategies import activations, orthogonal, pairs

from repsim_cli._warnings import RepsimWarning
from repsim_cli.cli import cli
from repsim_cli.compare import compare_stores, prepare_comparison
from repsim_cli.errors import DataError, MetricParameterError, ShapeMismatchError
from repsim_cli.metrics import get_metric, parse_spec
from repsim_cli.metrics import readout as ro
from repsim_cli.store import open_store

CLOSED_FORMS = (ro.bayes_kl_divergence, ro.bayes_hellinger_distance)
ALL_FOUR = (ro.bayes_tv_distance, ro.bayes_js_distance, *CLOSED_FORMS)


def _js_fast(x, y, **kw):
    return ro.bayes_js_distance(x, y, samples=2000, **kw)


FAST_FOUR = (ro.bayes_tv_distance, _js_fast, *CLOSED_FORMS)


# --------------------------------------------------------------------------------------- references
def reference_cov(kernel: np.ndarray, b: float) -> np.ndarray:
    """The reference's Σ = (1 − a)·n·K/tr K + a·I with a = n·b/(1 + n·b) (BayesCompare)."""
    n = kernel.shape[0]
    a = n * b / (1 + n * b)
    return (1 - a) * n * kernel / np.trace(kernel) + a * np.eye(n)


def dense_kl(s1: np.ndarray, s2: np.ndarray) -> float:
    """KL(N(0, Σ1) ‖ N(0, Σ2)) in nats, dense formula."""
    n = s1.shape[0]
    return 0.5 * (
        np.trace(np.linalg.solve(s2, s1)) - n + np.linalg.slogdet(s2)[1] - np.linalg.slogdet(s1)[1]
    )


def dense_bhattacharyya(s1: np.ndarray, s2: np.ndarray) -> float:
    return 0.5 * np.linalg.slogdet((s1 + s2) / 2)[1] - 0.25 * (
        np.linalg.slogdet(s1)[1] + np.linalg.slogdet(s2)[1]
    )


def direct_monte_carlo(k1, k2, b, samples, seed):
    """TV and JS (bits) with standard errors, sampling each Gaussian in the original basis."""
    s1, s2 = reference_cov(k1, b), reference_cov(k2, b)
    p1, p2 = stats.multivariate_normal(cov=s1), stats.multivariate_normal(cov=s2)
    rng = np.random.default_rng(seed)
    x1 = p1.rvs(size=samples, random_state=rng)
    x2 = p2.rvs(size=samples, random_state=rng)
    r1 = p1.logpdf(x1) - p2.logpdf(x1)  # log p1/p2 under P1
    r2 = p2.logpdf(x2) - p1.logpdf(x2)  # log p2/p1 under P2
    tv1, tv2 = -np.expm1(-np.maximum(r1, 0)), -np.expm1(-np.maximum(r2, 0))
    f1, f2 = np.logaddexp(0, -r1), np.logaddexp(0, -r2)
    tv = 0.5 * (tv1.mean() + tv2.mean())
    tv_se = 0.5 * math.sqrt(tv1.var(ddof=1) / samples + tv2.var(ddof=1) / samples)
    js = (math.log(2) - 0.5 * f1.mean() - 0.5 * f2.mean()) / math.log(2)
    js_se = 0.5 * math.sqrt(f1.var(ddof=1) / samples + f2.var(ddof=1) / samples) / math.log(2)
    return tv, tv_se, js, js_se


def _kernels(seed: int, n: int, p: int, q: int, mix: float = 0.0):
    """Two kernels of n stimuli; ``mix`` blends the second towards the first (smaller distances)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 2, p)
    y = rng.standard_normal((n, q))
    y[:, : min(p, q)] += mix * x[:, : min(p, q)]
    return x @ x.T, y @ y.T


# ------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize(
    ("seed", "n", "p", "q", "b"),
    [
        (0, 12, 3, 20, 0.01),
        (1, 30, 30, 5, 0.01),
        (2, 25, 40, 40, 0.2),
        (3, 8, 2, 2, 1.0),
        (4, 40, 10, 12, 1e-3),
    ],
)
def test_closed_forms_match_dense_gaussian_formulas(seed, n, p, q, b):
    k1, k2 = _kernels(seed, n, p, q, mix=0.5)
    s1, s2 = reference_cov(k1, b), reference_cov(k2, b)
    lam = ro.readout_eigenvalues(k1, k2, b=b)
    kl12, kl21 = dense_kl(s1, s2), dense_kl(s2, s1)
    assert ro.kl_divergences(lam) == pytest.approx((kl12, kl21), rel=1e-9)
    assert ro.symmetric_kl(lam) == pytest.approx((kl12 + kl21) / 2, rel=1e-9)
    db = dense_bhattacharyya(s1, s2)
    assert ro.bhattacharyya_distance(lam) == pytest.approx(db, rel=1e-9)
    assert ro.hellinger_from_eigenvalues(lam) == pytest.approx(
        math.sqrt(1 - math.exp(-db)), rel=1e-9
    )
    # the generalised eigenvalues of the reference covariances are the same λ
    dense_lam = np.sort(np.linalg.eigvals(np.linalg.solve(s1, s2)).real)
    np.testing.assert_allclose(lam, dense_lam, rtol=1e-9)


def test_noise_fraction_a_is_the_same_model_as_b():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((50, 7)), rng.standard_normal((50, 9))
    b = 0.01
    a = 50 * b / (1 + 50 * b)  # = 1/3
    for fn in ALL_FOUR:
        assert fn(x, y, a=a) == pytest.approx(fn(x, y, b=b), rel=1e-10, abs=1e-12)
    assert ro.bayes_tv_distance(x, y) == ro.bayes_tv_distance(x, y, b=0.01)  # b defaults to 0.01
    for fn in ALL_FOUR:  # a = 1: all noise, nothing to tell apart
        assert fn(x, y, a=1.0) == 0.0


# -------------------------------------------------------------------------------- against direct MC
@pytest.mark.parametrize(
    ("seed", "n", "p", "q", "mix", "b"),
    [(10, 6, 2, 3, 1.5, 0.05), (11, 9, 4, 4, 0.8, 0.02), (12, 10, 10, 3, 2.0, 0.1)],
)
def test_exact_tv_and_eigenbasis_js_agree_with_direct_monte_carlo(seed, n, p, q, mix, b):
    k1, k2 = _kernels(seed, n, p, q, mix)
    tv_mc, tv_se, js_mc, js_se = direct_monte_carlo(k1, k2, b, samples=30_000, seed=seed)
    lam = ro.readout_eigenvalues(k1, k2, b=b)
    tv = ro.tv_from_eigenvalues(lam)
    assert 0.05 < tv < 0.95, "the case must not sit at a bound"
    assert abs(tv - tv_mc) <= 4 * tv_se
    est = ro.js_from_eigenvalues(lam, samples=30_000, seed=seed)
    assert abs(est.bits - js_mc) <= 4 * math.hypot(est.bits_std_error, js_se)
    assert est.distance == pytest.approx(math.sqrt(est.bits))


@pytest.mark.parametrize("n", [5, 60, 400])
def test_eigenbasis_monte_carlo_tv_agrees_with_imhof(n):
    lam = np.exp(np.random.default_rng(n).normal(0, 3.0 / math.sqrt(n), n))
    exact = ro.tv_from_eigenvalues(lam)
    mu = ro.order_shifts(lam - 1)
    est = ro.monte_carlo([mu], n, 50_000, seed=1, total_variation=True)
    assert 0.05 < exact < 0.95
    assert abs(est.tv[0] - exact) <= 4 * est.tv_std_error[0]


@pytest.mark.parametrize(
    ("w", "t"), [(2.0, 1.0), (2.0, 30.0), (-2.0, -1.0), (-0.5, 3.0), (3.0, -1.0), (0.1, 0.5)]
)
def test_imhof_tail_single_weight_is_chi_square(w, t):
    expected = stats.chi2.sf(t / w, 1) if w > 0 else stats.chi2.cdf(t / w, 1)
    p, err, ok = ro.imhof_tail([w], t)
    assert ok
    assert err < 1e-9
    assert p == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("m", [2, 4, 10])
@pytest.mark.parametrize("t", [0.3, 5.0, 40.0])
def test_imhof_tail_equal_weights_is_chi_square(m, t):
    p, _, ok = ro.imhof_tail(np.full(m, 1.7), t)
    assert ok
    assert p == pytest.approx(stats.chi2.sf(t / 1.7, m), abs=1e-10)


def two_weight_tail(w1: float, w2: float, t: float) -> float:
    """Pr[w1·z1² + w2·z2² > t] by conditioning on z2: a 1-D integral of chi-square tails."""

    def given_z2(z: float) -> float:
        c = t - w2 * z * z
        if w1 > 0:
            return stats.chi2.sf(c / w1, 1) if c > 0 else 1.0
        return stats.chi2.cdf(c / w1, 1) if c < 0 else 0.0

    kink = [math.sqrt(t / w2)] if t / w2 > 0 and t / w2 < 1600 else None
    integral = integrate.quad(
        lambda z: stats.norm.pdf(z) * given_z2(z), 0, 40, points=kink, limit=500,
        epsabs=1e-14, epsrel=1e-13,
    )[0]  # fmt: skip
    return 2 * integral


@pytest.mark.parametrize(
    ("w1", "w2", "t"),
    [(1.0, -0.5, 0.3), (1.0, 1e-5, 0.5), (-1.0, 1e-4, -0.2), (0.7, 0.7, 1e-9), (1.0, -1e-6, 1e-7),
     (-0.3, 2.0, 5.0), (2.0, -3.0, -1e-8), (2.0, -3.0, 1e-12), (2.0, -3.0, 0.0)],
)  # fmt: skip
def test_imhof_tail_two_weights_by_conditioning(w1, w2, t):
    """Weights many decades apart and thresholds near 0 (slow oscillation) included."""
    p, err, ok = ro.imhof_tail([w1, w2], t)
    assert ok
    assert err < 1e-9
    assert p == pytest.approx(two_weight_tail(w1, w2, t), abs=1e-9)


def test_tv_falls_back_to_monte_carlo_with_a_warning(monkeypatch):
    k1, k2 = _kernels(3, 20, 5, 5, mix=1.0)
    lam = ro.readout_eigenvalues(k1, k2)
    exact = ro.tv_from_eigenvalues(lam)
    monkeypatch.setattr(ro.exact_tv, "TV_ABS_TOL", -1.0)  # no integral is accurate enough now
    with pytest.warns(RepsimWarning, match="Imhof's integral .* did not converge"):
        fallback = ro.tv_from_eigenvalues(lam)
    assert fallback != exact
    assert abs(fallback - exact) < 0.01


# --------------------------------------------------------------------------------------- properties
@given(pairs(max_p=12), st.sampled_from(ro.CENTERS), st.sampled_from([0.01, 0.1, 1.0]))
def test_bounds_between_the_distances(xy, center, b):
    x, y = xy
    kx, ky = ro.linear_kernel(x, center), ro.linear_kernel(y, center)
    lam = ro.readout_eigenvalues(kx, ky, b=b)
    tv = ro.tv_from_eigenvalues(lam)
    h = ro.hellinger_from_eigenvalues(lam)
    kl = ro.symmetric_kl(lam)
    js = ro.js_from_eigenvalues(lam, samples=2000, seed=0)
    slack = 1e-9
    assert 0 <= tv <= 1
    assert 0 <= h <= 1
    assert kl >= 0
    assert 0 <= js.distance <= 1
    assert h * h - slack <= tv <= h * math.sqrt(2 - h * h) + slack
    assert tv <= math.sqrt(kl / 2) + slack
    assert js.bits <= tv + 4 * js.bits_std_error + slack


@given(activations(max_p=15), st.sampled_from(ro.CENTERS), st.sampled_from([4.0, 0.37, 1e3]))
def test_zero_when_one_kernel_is_a_multiple_of_the_other(x, center, c):
    for fn in FAST_FOUR:
        assert fn(x, x * c, center=center) <= 1e-9
    assert ro.bayes_tv_distance(x, x * 4.0, center=center) == 0.0  # exact scaling: exactly zero
    lam = ro.readout_eigenvalues(ro.linear_kernel(x, center), ro.linear_kernel(x * c, center))
    np.testing.assert_allclose(lam, 1.0, atol=1e-10)


@given(pairs(max_p=12), st.sampled_from(ro.CENTERS))
def test_symmetric_under_swapping_the_layers(xy, center):
    x, y = xy
    for fn in FAST_FOUR:  # canonical order of the pair: bitwise equal
        assert fn(x, y, center=center) == fn(y, x, center=center)
    lam = ro.readout_eigenvalues(ro.linear_kernel(x, center), ro.linear_kernel(y, center))
    # the formulas themselves are symmetric under λ → 1/λ
    assert ro.tv_from_eigenvalues(1 / lam) == pytest.approx(ro.tv_from_eigenvalues(lam), abs=1e-9)
    assert ro.symmetric_kl(1 / lam) == pytest.approx(ro.symmetric_kl(lam), rel=1e-9, abs=1e-12)
    js, js_swapped = (ro.js_from_eigenvalues(v, samples=2000).bits for v in (lam, 1 / lam))
    assert js_swapped == pytest.approx(js, abs=1e-9)


@given(activations(max_p=10), st.sampled_from(["none", "units"]), st.data())
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(x, center, data):
    q = data.draw(orthogonal(x.shape[1]))
    scale = data.draw(st.sampled_from([0.01, 3.0, 250.0]))
    noise = np.random.default_rng(0).standard_normal(x.shape)
    y = x + 0.5 * noise * x.std(axis=0)  # a genuinely different layer to compare against
    for fn in FAST_FOUR:
        moved = fn(x @ q * scale, y @ q, center=center)
        assert moved == pytest.approx(fn(x, y, center=center), rel=1e-6, abs=1e-8)


def test_stimulus_centring_is_invariant_to_permuting_units_only():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((20, 6)) + 3.0, rng.standard_normal((20, 4))
    perm = rng.permutation(6)
    base = ro.bayes_tv_distance(x, y, center="stimuli")
    assert ro.bayes_tv_distance(x[:, perm], y, center="stimuli") == pytest.approx(base, rel=1e-9)


@pytest.mark.parametrize("center", ro.CENTERS)
def test_non_orthogonal_map_changes_every_distance(center):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((30, 6))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    stretch = q @ np.diag([4.0, 2.0, 1.0, 1.0, 0.5, 0.25]) @ q.T  # not orthogonal
    for fn in FAST_FOUR:
        assert fn(x, x @ q, center="none") <= 1e-9
        assert fn(x, x @ stretch, center=center) > 0.05


# -------------------------------------------------------------------------------------------- seeds
def test_same_seed_same_values_different_seeds_within_the_standard_error():
    k1, k2 = _kernels(20, 40, 8, 8, mix=1.0)
    lam = ro.readout_eigenvalues(k1, k2)
    first = ro.js_from_eigenvalues(lam, samples=20_000, seed=3)
    again = ro.js_from_eigenvalues(lam, samples=20_000, seed=3)
    other = ro.js_from_eigenvalues(lam, samples=20_000, seed=4)
    assert first == again
    assert other.bits != first.bits
    assert abs(other.bits - first.bits) <= 4 * math.hypot(
        first.bits_std_error, other.bits_std_error
    )
    assert abs(other.distance - first.distance) <= 4 * math.hypot(first.std_error, other.std_error)
    assert 0 < first.std_error < 0.01


def test_common_random_numbers_do_not_depend_on_the_other_pairs():
    mus = [
        ro.order_shifts(np.random.default_rng(s).normal(0, 0.3, m)) for s, m in ((1, 5), (2, 30))
    ]
    together = ro.monte_carlo(mus, 30, 5000, seed=9)
    alone = ro.monte_carlo(mus[:1], 30, 5000, seed=9)
    assert together.js_bits[0] == alone.js_bits[0]  # bitwise: shards reproduce a single run


# ------------------------------------------------------------------------------------------- errors
def test_parameter_errors():
    with pytest.raises(MetricParameterError, match="not both"):
        parse_spec("bayes_tv:a=0.5,b=0.01")
    with pytest.raises(MetricParameterError, match="not both"):
        ro.bayes_kl_divergence(np.eye(4), np.eye(4), a=0.5, b=0.01)
    with pytest.raises(MetricParameterError, match="ill-conditioned"):
        parse_spec("bayes_js:b=1e-10")
    with pytest.raises(MetricParameterError, match="ill-conditioned"):
        parse_spec("bayes_hellinger:a=1e-8")
    with pytest.raises(MetricParameterError, match=r"must be in \(0, 1\]"):
        parse_spec("bayes_tv:a=1.5")
    with pytest.raises(MetricParameterError, match="positive"):
        parse_spec("bayes_tv:b=0")
    with pytest.raises(MetricParameterError, match="too few"):
        parse_spec("bayes_js:samples=10")
    with pytest.raises(MetricParameterError, match="not one of"):
        parse_spec("bayes_tv:center=rows")
    # a valid a that becomes ill-conditioned only for this many stimuli
    with pytest.raises(MetricParameterError, match="n=100000 stimuli"):
        ro.resolve_b(100_000, a=1e-4)
    assert ro.resolve_b(100, a=0.5) == pytest.approx(0.01)


def test_data_errors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3))
    with pytest.raises(DataError, match="tr K = 0"):
        ro.bayes_tv_distance(np.zeros((10, 4)), x)
    with pytest.raises(DataError, match="tr K = 0"):
        ro.bayes_js_distance(x, np.ones((10, 5)), center="stimuli")  # every row constant
    with pytest.raises(ShapeMismatchError, match="12"):
        ro.bayes_hellinger_distance(x, rng.standard_normal((12, 3)))
    with pytest.raises(ShapeMismatchError):
        ro.readout_eigenvalues(np.eye(3), np.eye(4))
    with pytest.raises(DataError, match="positive semi-definite"):
        ro.readout_eigenvalues(np.diag([1.0, 1.0, -0.5]), np.eye(3))
    with pytest.raises(DataError, match="not symmetric"):
        ro.readout_eigenvalues(np.eye(3) + np.triu(np.ones((3, 3)), 1), np.eye(3))
    with pytest.raises(DataError, match="NaN"):
        ro.readout_eigenvalues(np.full((3, 3), np.nan), np.eye(3))


def test_dead_layer_in_a_store_is_an_error(make_store):
    rng = np.random.default_rng(0)
    path = make_store({"alive": rng.standard_normal((20, 4)), "dead": np.zeros((20, 3))})
    with pytest.raises(DataError, match="dead"):
        compare_stores(path, None, ["bayes_tv"])


# -------------------------------------------------------------------------------------- engine, CLI
@pytest.fixture
def layers():
    rng = np.random.default_rng(42)
    base = rng.standard_normal((60, 12))
    return {
        "l1": base,
        "l2": base @ rng.standard_normal((12, 30)) + 0.3 * rng.standard_normal((60, 30)),
        "l3": np.tanh(base[:, :6]) + 2.0,
    }


@pytest.mark.parametrize(
    ("backend", "center"), [(".h5", "none"), (".zarr", "units"), (".h5", "stimuli")]
)
def test_compare_stores_equals_the_in_memory_functions(make_store, layers, backend, center):
    path = make_store(layers, suffix=backend, chunk_rows=16)
    specs = [
        f"bayes_tv:center={center}",
        f"bayes_js:center={center},samples=3000,seed=2",
        f"bayes_kl:center={center}",
        f"bayes_hellinger:center={center},a=0.3",
    ]
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, specs)
        res = comparison.run()
        counts = comparison.counts
    names = list(layers)
    for spec in specs:
        parsed = parse_spec(spec)
        m = res.metrics[spec]
        for i, la in enumerate(names):
            for j, lb in enumerate(names[i + 1 :], start=i + 1):
                expected = parsed.info.dense(layers[la], layers[lb], **parsed.params)
                assert m.value[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-11), (spec, la, lb)
        np.testing.assert_array_equal(m.value, m.value.T)
        np.testing.assert_array_equal(np.diag(m.value), 0.0)
    js = res.metrics[specs[1]]
    assert js.std_error is not None
    assert (js.std_error[~np.eye(3, dtype=bool)] > 0).all()
    assert res.metrics[specs[0]].std_error is None
    # per layer once for the three metrics sharing b (the fourth, with a, has a state of its own)
    states = {k.rsplit(":", 2)[0] for k in counts if k.startswith("prepare:")}
    assert len(states) == 2, states
    for state in states:
        assert all(counts[f"{state}:a:{n}"] == 1 for n in names), (state, counts)


def test_shards_reproduce_a_single_run_bit_for_bit(make_store, layers):
    from repsim_cli.schedule import Shard

    path = make_store(layers)
    specs = ["bayes_js:samples=2000", "bayes_tv"]
    whole = compare_stores(path, None, specs)
    parts = [compare_stores(path, None, specs, shard=Shard(k, 3)) for k in (1, 2, 3)]
    for spec in specs:
        merged = np.full((3, 3), np.nan)
        for part in parts:
            done = np.isfinite(part.metrics[spec].value)
            merged[done] = part.metrics[spec].value[done]
        np.testing.assert_array_equal(merged, whole.metrics[spec].value)


def test_two_stores_give_the_transposed_matrix(make_store, layers):
    rng = np.random.default_rng(1)
    other = {"m1": rng.standard_normal((60, 5)), "m2": layers["l1"] @ rng.standard_normal((12, 12))}
    pa, pb = make_store(layers), make_store(other)
    spec = ["bayes_js:samples=2000", "bayes_tv"]
    ab, ba = compare_stores(pa, pb, spec), compare_stores(pb, pa, spec)
    for s in spec:
        np.testing.assert_array_equal(ab.metrics[s].value, ba.metrics[s].value.T)


def test_cli_writes_std_error_only_for_js_and_dry_run_shows_the_cost(make_store, layers, tmp_path):
    path = make_store(layers)
    out = tmp_path / "r.csv"
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "compare",
            str(path),
            "-m",
            "bayes_js:samples=1000",
            "-m",
            "bayes_tv",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    js_rows = [row for row in rows if row["metric"].startswith("bayes_js")]
    tv_rows = [row for row in rows if row["metric"] == "bayes_tv"]
    assert len(js_rows) == len(tv_rows) == 9
    assert all(row["std_error"] != "" for row in js_rows)
    assert all(row["std_error"] == "" for row in tv_rows)
    assert {float(row["std_error"]) for row in js_rows if row["layer_a"] == row["layer_b"]} == {0.0}
    r = runner.invoke(
        cli, ["compare", str(path), "-m", "bayes_tv", "-o", str(tmp_path / "x.csv"), "--dry-run"]
    )
    assert r.exit_code == 0, r.output
    # both sides' estimates and the choice; the pair work of the chosen side, below the n×n bound
    line = next(x for x in r.output.splitlines() if x.startswith("  bayes_tv: sample ≈"))
    assert "feature ≈" in line and "→" in line, line
    pair_flops = float(next(x for x in r.output.splitlines() if x.startswith("  bayes_tv: ")
                            and "cells, about" in x).split("about ")[1].split()[0])
    assert pair_flops <= 60.0**3 * 6 * 10 / 3
    r = runner.invoke(cli, ["compare", str(path), "-m", "bayes_tv:a=0.5,b=0.1", "-o", "-"])
    assert r.exit_code == 2
    assert "not both" in r.output


def test_registry_records():
    for name in ("bayes_tv", "bayes_js", "bayes_kl", "bayes_hellinger"):
        info = get_metric(name)
        assert info.kind == "distance"
        assert info.symmetric
        assert info.sides == ("sample", "feature") and info.own_route  # n×n route, span route
        assert info.param("b").describe().startswith("b=float (default 0.01")
    assert get_metric("bayes_kl").bounds == (0.0, math.inf)
