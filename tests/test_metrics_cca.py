"""CCA family (cca, svcca, pwcca): references, properties, degenerate input, chunked engine."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from metric_checks import (
    check_chunked_engine,
    dense_matrix,
    engine_matrices,
    invertible,
    latent_layers,
    latent_pair,
    well_sampled_pairs,
)
from sklearn.decomposition import PCA
from strategies import pairs

from repsim_cli._warnings import RepsimWarning
from repsim_cli.errors import DataError, MetricParameterError
from repsim_cli.metrics import get_metric, parse_spec
from repsim_cli.metrics._linalg import build_spectrum
from repsim_cli.metrics.cca import (
    cca_similarity,
    pca_dims,
    pwcca_similarity,
    svcca_similarity,
)

ATOL = 1e-8


# ---------------------------------------------------------------- independent dense references
def google_cca(x, y, epsilon=1e-10):
    """google/svcca ``get_cca_similarity`` re-done in plain numpy (inputs are (n, p), as repsim's):
    np.cov, max-entry normalisation, ``remove_small``, ε·I, pinv + eigh square root, SVD."""
    p = x.shape[1]
    cov = np.cov(x.T, y.T)
    sxx, sxy, syy = cov[:p, :p], cov[:p, p:], cov[p:, p:]
    xmax, ymax = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    xi, yi = np.diag(sxx) >= epsilon, np.diag(syy) >= epsilon
    sxx = sxx[xi][:, xi] + epsilon * np.eye(xi.sum())
    syy = syy[yi][:, yi] + epsilon * np.eye(yi.sum())
    sxy = sxy[xi][:, yi]

    def inv_sqrt(m):
        w, v = np.linalg.eigh(np.linalg.pinv(m))
        return v @ np.diag(np.sqrt(w)) @ v.T

    u, rho, vh = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy))
    return u, np.abs(rho), vh, xi, yi


def google_pwcca(x, y, epsilon=1e-10, side="narrower", sign_fix=True):
    """google/svcca ``compute_pwcca`` in numpy, with its Y-branch bug fixed (Y's activations), an
    optional forced side, and repsim's sign convention for the canonical directions. A forced
    wider side keeps its first min(p, q) directions, one per correlation (the reference only ever
    weights the narrower side, where the two counts agree)."""
    u, rho, vh, xi, yi = google_cca(x, y, epsilon)
    if side == "narrower":
        side = "a" if xi.sum() <= yi.sum() else "b"
    if side == "a":
        coef, acts, idx = u.T, x.T, xi
    else:
        coef, acts, idx = vh, y.T, yi
    coef = coef[: len(rho)]
    mean = acts.mean(axis=1, keepdims=True)[idx]
    if sign_fix:
        top = np.argmax(np.abs(coef), axis=1)
        coef = coef * np.sign(coef[np.arange(len(coef)), top])[:, None]
    dirns = coef @ (acts[idx] - mean) + mean[: len(rho)]  # unit i's mean added to direction i
    q, _ = np.linalg.qr(dirns.T)
    weights = np.abs(q.T @ acts[idx].T).sum(axis=1)
    weights /= weights.sum()
    return float(np.sum(weights * rho))


def kornblith_cca_rho2(x, y):
    """Kornblith's QR form ‖Q_xᵀQ_y‖²_F / min(p, q) on centred data = mean ρ²."""
    qx, _ = np.linalg.qr(x - x.mean(0))
    qy, _ = np.linalg.qr(y - y.mean(0))
    return np.linalg.norm(qx.T @ qy) ** 2 / min(x.shape[1], y.shape[1])


def sklearn_svcca(x, y, keep=0.99):
    """sklearn PCA(n_components=keep) on each side, then google/svcca CCA (ε = 1e-10), mean ρ."""
    sx = PCA(n_components=keep, svd_solver="full").fit_transform(x)
    sy = PCA(n_components=keep, svd_solver="full").fit_transform(y)
    return float(np.mean(google_cca(sx, sy)[1]))


# ---------------------------------------------------------------- agreement with references
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(40, 6, 9), (60, 12, 5), (25, 3, 3)])
def test_cca_matches_google_svcca_reference(seed, shape):
    x, y = latent_pair(seed, *shape)
    rho = google_cca(x, y)[1]
    assert cca_similarity(x, y) == pytest.approx(np.mean(rho), abs=ATOL)
    assert cca_similarity(x, y, stat="mean_rho2") == pytest.approx(np.mean(rho**2), abs=ATOL)


@pytest.mark.parametrize("seed", range(3))
def test_cca_rho2_matches_kornblith_qr_on_centred_data(seed):
    x, y = latent_pair(seed, big_mean=False)
    assert cca_similarity(x, y, stat="mean_rho2") == pytest.approx(
        kornblith_cca_rho2(x, y), abs=ATOL
    )


@pytest.mark.parametrize("seed", range(4))
def test_svcca_matches_sklearn_pca_then_google_cca(seed):
    rng = np.random.default_rng(seed)
    x, y = latent_pair(seed, n=80, p=14, q=11)
    x = x * rng.uniform(0.2, 3.0, x.shape[1])  # uneven variances: PCA keeps fewer than p
    assert svcca_similarity(x, y) == pytest.approx(sklearn_svcca(x, y), abs=ATOL)
    assert svcca_similarity(x, y, keep=0.8) == pytest.approx(sklearn_svcca(x, y, 0.8), abs=ATOL)


@pytest.mark.parametrize("keep", [0.3, 0.8, 0.9, 0.99, 0.999])
def test_svcca_pca_dims_follow_sklearn_strict_rule(keep):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((60, 12)) * np.geomspace(5, 0.05, 12)
    xc = x - x.mean(0)
    spec = build_spectrum(xc.T @ xc, side="feature", n=60, width=12)
    assert pca_dims(spec, keep, None)[0] == PCA(n_components=keep).fit(x).n_components_


def test_svcca_dims_uses_exactly_that_many_components():
    x, y = latent_pair(3, n=60, p=10, q=10)
    sx = PCA(n_components=3).fit_transform(x)
    sy = PCA(n_components=3).fit_transform(y)
    assert svcca_similarity(x, y, dims=3) == pytest.approx(np.mean(google_cca(sx, sy)[1]), abs=ATOL)


@pytest.mark.parametrize("seed", range(3))
def test_pwcca_matches_google_on_centred_data_without_any_sign_convention(seed):
    x, y = latent_pair(seed, big_mean=False)
    x, y = x - x.mean(0), y - y.mean(0)
    ref = google_pwcca(x, y, sign_fix=False)
    assert pwcca_similarity(x, y, side="narrower") == pytest.approx(ref, abs=ATOL)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("side", ["a", "b", "narrower"])
def test_pwcca_matches_google_with_raw_activations(seed, side):
    x, y = latent_pair(seed, n=50, p=5, q=8)  # big means: the raw activations matter
    ref = google_pwcca(x, y, side=side)
    assert pwcca_similarity(x, y, side=side) == pytest.approx(ref, abs=ATOL)


def test_pwcca_reference_y_branch_uses_y_activations():
    """The reference picks Y when it is narrower (and then indexes X by Y's mask): repsim weights by Y."""
    x, y = latent_pair(5, n=50, p=9, q=4)
    assert pwcca_similarity(x, y, side="narrower") == pytest.approx(
        pwcca_similarity(x, y, side="b"), abs=1e-14
    )
    assert pwcca_similarity(x, y, side="narrower") == pytest.approx(google_pwcca(x, y), abs=ATOL)
    assert pwcca_similarity(x, y, side="narrower") != pytest.approx(
        pwcca_similarity(x, y, side="a"), abs=1e-6
    )


def test_pwcca_without_sign_convention_depends_on_lapack_signs():
    """Why repsim fixes the sign: with nonzero means the reference changes when a direction flips."""
    x, y = latent_pair(1, n=50, p=5, q=8)
    u, rho, *_ = google_cca(x, y)
    acts, mean = x.T, x.T.mean(axis=1, keepdims=True)

    def weighted(coef):
        q, _ = np.linalg.qr((coef @ (acts - mean) + mean).T)
        w = np.abs(q.T @ acts.T).sum(axis=1)
        return np.sum(w / w.sum() * rho)

    flipped = u.T.copy()
    flipped[0] *= -1
    assert abs(weighted(u.T) - weighted(flipped)) > 1e-6


# ---------------------------------------------------------------- properties
def well_sampled():
    """Pairs with n ≥ 30 and widths ≤ 6, so no canonical correlation is 1 by construction."""
    return well_sampled_pairs(30, 50, max_p=6)


def nonlinear(x):
    z = (x - x.mean(0)) / x.std(0)
    return np.exp(z)


@given(pairs())
def test_cca_family_range(xy):
    x, y = xy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)  # n ≤ p draws are allowed here
        values = [
            cca_similarity(x, y), cca_similarity(x, y, stat="mean_rho2"), svcca_similarity(x, y),
            pwcca_similarity(x, y), pwcca_similarity(x, y, side="b"),
        ]  # fmt: skip
    assert all(0.0 <= v <= 1.0 for v in values)


@given(well_sampled())
def test_cca_and_svcca_are_symmetric_and_pwcca_swaps_sides(xy):
    x, y = xy
    assert cca_similarity(x, y) == pytest.approx(cca_similarity(y, x), abs=1e-12)
    assert svcca_similarity(x, y) == pytest.approx(svcca_similarity(y, x), abs=1e-12)
    assert pwcca_similarity(x, y, side="a") == pytest.approx(
        pwcca_similarity(y, x, side="b"), abs=1e-10
    )


def test_pwcca_is_asymmetric():
    x, y = latent_pair(2, n=50, p=5, q=8)
    assert abs(pwcca_similarity(x, y, side="a") - pwcca_similarity(y, x, side="a")) > 1e-4


@given(well_sampled(), st.integers(0, 2**32 - 1))
def test_cca_identity_and_invariance_to_invertible_linear_maps(xy, seed):
    x, y = xy
    ax, ay = invertible(seed, x.shape[1]), invertible(seed + 1, y.shape[1])
    assert cca_similarity(x, x @ ax + 3.0) == pytest.approx(1.0, abs=1e-9)
    assert pwcca_similarity(x, x @ ax) == pytest.approx(1.0, abs=1e-9)
    for stat in ("mean_rho", "mean_rho2"):
        before = cca_similarity(x, y, stat=stat)
        assert cca_similarity(x @ ax - 7.0, y @ ay, stat=stat) == pytest.approx(before, abs=1e-9)
        assert abs(cca_similarity(nonlinear(x), y, stat=stat) - before) > 1e-6


@given(well_sampled(), st.integers(0, 2**32 - 1))
def test_svcca_identity_and_invariance_to_rotation_and_scale(xy, seed):
    x, y = xy
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((x.shape[1],) * 2))
    assert svcca_similarity(x, 2.5 * x @ q) == pytest.approx(1.0, abs=1e-9)
    before = svcca_similarity(x, y)
    assert svcca_similarity(2.5 * x @ q + 1.0, y) == pytest.approx(before, abs=1e-9)
    assert abs(svcca_similarity(nonlinear(x), y) - before) > 1e-6


# ---------------------------------------------------------------- degenerate input
def test_n_not_above_p_gives_one_with_a_warning():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 15)), rng.standard_normal((10, 12))
    for fn in (cca_similarity, pwcca_similarity):
        with pytest.warns(RepsimWarning, match="1 by construction"):
            assert fn(x, y) == pytest.approx(1.0, abs=1e-10)
    with pytest.warns(RepsimWarning, match="1 by construction"):
        svcca_similarity(x, y, dims=6)


def test_partly_forced_correlations_warn_but_the_rest_are_real():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((12, 7)), rng.standard_normal((12, 6))  # 7 + 6 > 11: ≥ 2 forced
    with pytest.warns(RepsimWarning):
        rho2 = cca_similarity(x, y, stat="mean_rho2")
    rho = google_cca(x, y)[1]
    assert rho2 == pytest.approx(np.mean(rho**2), abs=1e-6)
    assert 2 / 6 <= rho2 < 1.0


def test_dead_units_are_dropped_not_averaged_over():
    x, y = latent_pair(4, n=40, p=6, q=7)
    x_dead = np.insert(x, [0, 3], [0.0, 5.0], axis=1)  # a zero unit and a constant unit
    assert cca_similarity(x_dead, y) == pytest.approx(cca_similarity(x, y), abs=1e-10)
    assert cca_similarity(x_dead, y) == pytest.approx(np.mean(google_cca(x_dead, y)[1]), abs=ATOL)
    assert pwcca_similarity(x_dead, y) == pytest.approx(pwcca_similarity(x, y), abs=1e-10)
    assert svcca_similarity(x_dead, y) == pytest.approx(svcca_similarity(x, y), abs=1e-10)


def test_singular_covariance_uses_the_rank():
    x, y = latent_pair(6, n=40, p=5, q=7)
    rng = np.random.default_rng(6)
    x_collinear = np.hstack([x, x[:, :3] @ rng.standard_normal((3, 4))])  # rank 5, width 9
    assert cca_similarity(x_collinear, y) == pytest.approx(cca_similarity(x, y), abs=1e-9)
    # Ding's width denominator (min(p, q) = 7) would give a different, diluted value.
    assert cca_similarity(x_collinear, y) > np.sum(google_cca(x, y)[1]) / 7 + 1e-3


@pytest.mark.parametrize("fn", [cca_similarity, svcca_similarity, pwcca_similarity])
def test_constant_or_non_finite_layer_is_a_data_error(fn):
    x, _ = latent_pair(0)
    with pytest.raises(DataError, match="constant"):
        fn(x, np.full((40, 3), 2.5))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fn(bad, x)


@pytest.mark.parametrize(
    "text", ["svcca:keep=0.99,dims=3", "svcca:keep=1.5", "svcca:dims=0", "cca:epsilon=1",
             "cca:stat=median", "pwcca:side=c"],
)  # fmt: skip
def test_bad_parameters_are_rejected(text):
    with pytest.raises(MetricParameterError):
        parse_spec(text)


def test_svcca_dims_beyond_rank_is_capped_with_a_warning():
    x, y = latent_pair(0, n=40, p=4, q=6)
    with pytest.warns(RepsimWarning, match="dims exceeds"):
        value = svcca_similarity(x, y, dims=5)  # X has only 4 units
    sx, sy = PCA(n_components=4).fit_transform(x), PCA(n_components=5).fit_transform(y)
    assert value == pytest.approx(np.mean(google_cca(sx, sy)[1]), abs=ATOL)


# ---------------------------------------------------------------- the engine
SPECS = [
    "cca", "cca:stat=mean_rho2", "cca:epsilon=0", "svcca", "svcca:dims=2", "pwcca",
    "pwcca:side=b", "pwcca:side=narrower",
]  # fmt: skip


@pytest.mark.parametrize("chunk_rows", [3, 7, None])
@pytest.mark.parametrize("side", ["sample", "feature"])
def test_chunked_engine_equals_in_memory_function(make_store, backend, chunk_rows, side):
    check_chunked_engine(make_store, backend, chunk_rows, side, SPECS, n=26, atol=1e-10)


def test_engine_wide_layers_warn_with_one_message(make_store):
    rng = np.random.default_rng(2)
    layers = {f"w{i}": rng.standard_normal((12, 15 + 3 * i)) for i in range(3)}
    path = make_store(layers)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("default")  # what the CLI uses: a repeated message is shown once
        values = engine_matrices(path, None, ["cca"], "sample")["cca"]
    assert [type(w.message) for w in record] == [RepsimWarning]
    assert "1 by construction" in str(record[0].message)
    np.testing.assert_allclose(values, 1.0, atol=1e-10)


def test_engine_float32_store_is_close_to_float64(make_store):
    layers = {k: v.astype(np.float32) for k, v in latent_layers(3, 60, (4, 7, 9), "f").items()}
    path = make_store(layers)
    for side in ("sample", "feature"):
        got = engine_matrices(path, None, ["cca", "pwcca"], side)
        for spec in ("cca", "pwcca"):
            np.testing.assert_allclose(got[spec], dense_matrix(spec, layers, layers), atol=1e-4)


def test_constant_layer_in_a_store_is_a_data_error(make_store):
    layers = latent_layers(0, 20, (3, 4), "c")
    layers["dead"] = np.full((20, 3), 0.25)
    path = make_store(layers)
    for side in ("sample", "feature"):
        with pytest.raises(DataError, match="constant"):
            engine_matrices(path, None, ["cca"], side)


def test_registry_entries():
    for name, kind, symmetric in [("cca", "similarity", True), ("svcca", "similarity", True),
                                  ("pwcca", "similarity", False)]:  # fmt: skip
        info = get_metric(name)
        assert (info.kind, info.symmetric, info.bounds) == (kind, symmetric, (0.0, 1.0))
        assert set(info.sides) == {"sample", "feature"}
    assert parse_spec("cca").params == {"stat": "mean_rho", "epsilon": 1e-10}
    assert parse_spec("svcca").params == {"keep": None, "dims": None}  # keep=0.99 unless dims=
    assert "default 0.99" in get_metric("svcca").params[0].describe()
    assert parse_spec("pwcca").params == {"side": "a"}
