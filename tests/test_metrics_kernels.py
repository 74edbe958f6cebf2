"""RBF CKA and minibatch CKA: the colab's formulas, a per-batch loop, properties, and the engine."""

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
from reference import hsic_unbiased
from strategies import activations, orthogonal, pairs

from repsim_cli._warnings import RepsimWarning
from repsim_cli.compare import compare_stores
from repsim_cli.errors import DataError, MetricParameterError
from repsim_cli.metrics import parse_spec
from repsim_cli.metrics.cka import linear_cka
from repsim_cli.metrics.cka_minibatch import minibatch_cka, minibatch_cka_all_pairs, minibatches
from repsim_cli.metrics.cka_rbf import rbf_cka


# ------------------------------------------------------------------ dense references (test-only)
def colab_gram_rbf(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """Kornblith's gram_rbf: distances from the raw X, σ² from np.median of the full matrix."""
    dots = x @ x.T
    sq = np.diag(dots)
    d2 = -2 * dots + sq[:, None] + sq[None, :]
    return np.exp(-d2 / (2 * threshold**2 * np.median(d2)))


def colab_center_gram(k: np.ndarray, unbiased: bool = False) -> np.ndarray:
    k = k.copy()
    n = k.shape[0]
    if unbiased:
        np.fill_diagonal(k, 0)
        means = k.sum(axis=0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        k -= means[:, None] + means[None, :]
        np.fill_diagonal(k, 0)
    else:
        means = k.mean(axis=0)
        means -= means.mean() / 2
        k -= means[:, None] + means[None, :]
    return k


def colab_cka(kx: np.ndarray, ky: np.ndarray, debiased: bool = False) -> float:
    kx, ky = colab_center_gram(kx, debiased), colab_center_gram(ky, debiased)
    return float(kx.ravel() @ ky.ravel() / (np.linalg.norm(kx) * np.linalg.norm(ky)))


def loop_minibatch_cka(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> float:
    """Per-batch loop over the raw (uncentred) batch kernels; the remainder kept if ≥ 4."""
    order = np.random.default_rng(seed).permutation(len(x))
    xy = xx = yy = 0.0
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        if idx.size < 4:
            continue
        kx, ky = x[idx] @ x[idx].T, y[idx] @ y[idx].T
        xy += hsic_unbiased(kx, ky)
        xx += hsic_unbiased(kx, kx)
        yy += hsic_unbiased(ky, ky)
    return xy / np.sqrt(xx * yy)


# ------------------------------------------------------------------ cka_rbf: reference agreement
@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize(("n", "p", "q"), [(60, 5, 8), (20, 30, 45)], ids=["n>p", "n<p"])
def test_rbf_matches_colab(n, p, q, threshold, debiased) -> None:
    x, y = shifted_pair(n, p, q, n + p)
    want = colab_cka(colab_gram_rbf(x, threshold), colab_gram_rbf(y, threshold), debiased)
    assert rbf_cka(x, y, threshold, debiased) == pytest.approx(want, abs=1e-10)


def test_rbf_median_includes_the_diagonal() -> None:
    # With n = 6 the n zeros of the diagonal move np.median a long way; the off-diagonal median
    # would give a clearly different value, so this test fails for that (common) reading.
    x, y = shifted_pair(6, 3, 4, 1)

    def off_diagonal_gram(z: np.ndarray) -> np.ndarray:
        d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * np.median(d2[~np.eye(len(z), dtype=bool)])))

    ours = rbf_cka(x, y)
    assert ours == pytest.approx(colab_cka(colab_gram_rbf(x), colab_gram_rbf(y)), abs=1e-12)
    assert abs(ours - colab_cka(off_diagonal_gram(x), off_diagonal_gram(y))) > 1e-4


# ------------------------------------------------------------------ cka_rbf: properties
@given(pairs(), st.sampled_from([0.5, 1.0]), st.booleans())
def test_rbf_range_and_symmetry(xy, threshold, debiased) -> None:
    x, y = xy
    v = rbf_cka(x, y, threshold, debiased)
    lo = -1.0 if debiased else 0.0
    assert lo - 1e-12 <= v <= 1 + 1e-12
    assert v == pytest.approx(rbf_cka(y, x, threshold, debiased), abs=1e-12)


@given(activations(max_p=12), st.data())
def test_rbf_invariances(x, data) -> None:
    q = data.draw(orthogonal(x.shape[1]))
    shift = data.draw(st.floats(-100, 100))
    scale = data.draw(st.floats(0.1, 10))
    y = scale * (x @ q) + shift
    assert rbf_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(x, y) == pytest.approx(1.0, abs=1e-8)
    assert rbf_cka(x, y, debiased=True) == pytest.approx(1.0, abs=1e-8)
    # Not invariant to an anisotropic rescaling of the units.
    stretch = np.ones(x.shape[1])
    stretch[0] = 30.0
    assert rbf_cka(x, x * stretch) < 1 - 1e-4


# ------------------------------------------------------------------ cka_minibatch: agreement
@pytest.mark.parametrize(
    ("n", "batch_size"),
    [(64, 16), (61, 16), (59, 8), (50, 50), (40, 100)],
    ids=["exact", "remainder13", "remainder3-dropped", "one-batch", "bs>n"],
)
def test_minibatch_equals_per_batch_loop(n, batch_size) -> None:
    x, y = shifted_pair(n, 6, 9, n)
    want = loop_minibatch_cka(x, y, batch_size, seed=3)
    assert minibatch_cka(x, y, batch_size, seed=3) == pytest.approx(want, abs=1e-10)


def test_minibatch_remainder_rule() -> None:
    assert [b.size for b in minibatches(21, 8, 0)] == [8, 8, 5]
    assert [b.size for b in minibatches(19, 8, 0)] == [8, 8]  # 3 left over: dropped
    assert sorted(np.concatenate(minibatches(21, 8, 0)).tolist()) == list(range(21))


def test_minibatch_single_batch_is_debiased_cka() -> None:
    x, y = shifted_pair(30, 5, 7, 2)
    assert minibatch_cka(x, y, batch_size=30) == pytest.approx(linear_cka(x, y, True), abs=1e-12)


def test_minibatch_depends_on_seed_and_is_deterministic() -> None:
    x, y = shifted_pair(64, 5, 7, 4)
    assert minibatch_cka(x, y, 8, seed=0) == minibatch_cka(x, y, 8, seed=0)
    assert minibatch_cka(x, y, 8, seed=0) != pytest.approx(minibatch_cka(x, y, 8, seed=1), abs=1e-6)


def test_minibatch_all_pairs_matches_pairwise() -> None:
    x, y = shifted_pair(48, 5, 7, 5)
    z = x[:, :3] ** 2
    got = minibatch_cka_all_pairs([x, y, z], 12, 1)
    want = [[minibatch_cka(a, b, 12, 1) for b in (x, y, z)] for a in (x, y, z)]
    np.testing.assert_allclose(got, want, atol=1e-12)


# ------------------------------------------------------------------ cka_minibatch: properties
@given(pairs(), st.sampled_from([4, 8, 64]))
def test_minibatch_range_and_symmetry(xy, batch_size) -> None:
    x, y = xy
    v = minibatch_cka(x, y, batch_size)
    assert -1 - 1e-12 <= v <= 1 + 1e-12
    assert v == pytest.approx(minibatch_cka(y, x, batch_size), abs=1e-12)


@given(activations(min_n=12, max_p=12, big_mean=False), st.data())
def test_minibatch_invariances(x, data) -> None:
    q = data.draw(orthogonal(x.shape[1]))
    y = data.draw(st.floats(0.1, 10)) * (x @ q) + data.draw(st.floats(-100, 100))
    assert minibatch_cka(x, x, 6) == pytest.approx(1.0, abs=1e-12)
    assert minibatch_cka(x, y, 6) == pytest.approx(1.0, abs=1e-8)
    stretch = np.ones(x.shape[1])
    stretch[0] = 30.0
    assert minibatch_cka(x, x * stretch, 6) < 1 - 1e-4


# ------------------------------------------------------------------ the engine
def _layers(n: int, seed: int) -> dict[str, np.ndarray]:
    """This file's engine layers: layer "c" is (n, 3, 4)."""
    return engine_layers(n, seed, c_shape=(3, 4))


SPECS = [
    "cka_rbf",
    "cka_rbf:threshold=0.5,debiased=true",
    "cka_minibatch:batch_size=8,seed=2",
    "cka_minibatch:batch_size=64",
]


@pytest.mark.parametrize("chunk_rows", [1, 5, 64])
def test_engine_equals_in_memory(make_store, backend, chunk_rows) -> None:
    check_engine_equals_in_memory(make_store, _layers(37, chunk_rows), backend, chunk_rows, SPECS)


def test_minibatch_feature_side_equals_sample_side(make_store) -> None:
    path = make_store(_layers(40, 9), chunk_rows=6)
    spec = "cka_minibatch:batch_size=8"
    sample = compare_stores(path, None, [spec], side="sample").metrics[spec].value
    feature = compare_stores(path, None, [spec], side="feature", block_rows=7).metrics[spec].value
    np.testing.assert_allclose(feature, sample, atol=1e-12)


def test_two_stores(make_store) -> None:
    a, b = _layers(30, 1), _layers(30, 2)
    pa, pb = make_store(a, ".h5"), make_store(b, ".zarr")
    got = compare_stores(pa, pb, ["cka_rbf"]).metrics["cka_rbf"].value
    want = [[rbf_cka(a[i].reshape(30, -1), b[j].reshape(30, -1)) for j in b] for i in a]
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_each_layer_computed_once(make_store) -> None:
    prefixes = ("prepare('cka_rbf'", "prepare('cka_minibatch'", "gram")
    check_each_layer_computed_once(make_store, SPECS, prefixes, n=24)


# ------------------------------------------------------------------ degenerate input
def test_rbf_median_zero_gives_nan_with_warning(make_store) -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([np.ones((8, 3)), rng.standard_normal((2, 3))])  # 66 of 100 pairs coincide
    y = rng.standard_normal((10, 4))
    with pytest.warns(RepsimWarning, match="median squared distance is 0"):
        assert np.isnan(rbf_cka(x, y))
    with pytest.warns(RepsimWarning, match="median squared distance is 0"):
        value = (
            compare_stores(make_store({"x": x, "y": y}), None, ["cka_rbf"]).metrics["cka_rbf"].value
        )
    assert np.isnan(value[0]).all()
    assert np.isnan(value[:, 0]).all()
    assert value[1, 1] == pytest.approx(1)


def test_constant_layer_raises(make_store) -> None:
    x, y = np.full((10, 3), 2.5), np.random.default_rng(0).standard_normal((10, 3))
    for fn in (rbf_cka, minibatch_cka):
        with pytest.raises(DataError, match="constant"):
            fn(x, y)
    path = make_store({"x": x, "y": y})
    for spec in ("cka_rbf", "cka_minibatch"):
        with pytest.raises(DataError, match="constant"):
            compare_stores(path, None, [spec])


def test_too_few_samples() -> None:
    x, y = shifted_pair(3, 2, 2, 0)
    with pytest.raises(DataError, match="at least 4 samples"):
        rbf_cka(x, y, debiased=True)
    with pytest.raises(DataError, match="at least 4 samples"):
        minibatch_cka(x, y)
    assert 0 <= rbf_cka(x, y) <= 1  # the biased estimator is defined for n = 3


@pytest.mark.parametrize(
    "spec",
    [
        "cka_rbf:threshold=0",
        "cka_rbf:threshold=-1",
        "cka_rbf:threshold=nan",
        "cka_minibatch:batch_size=3",
    ],
)
def test_bad_parameters(spec) -> None:
    with pytest.raises(MetricParameterError):
        parse_spec(spec)


SPECS_F32 = [
    ("cka_rbf", 1e-6),
    ("cka_rbf:debiased=true", 1e-6),
    ("cka_minibatch:batch_size=32", 1e-6),
]


# ------------------------------------------------------------------ float32 store, large means
@pytest.mark.parametrize(("spec", "atol"), SPECS_F32)
def test_float32_store_with_means_1000x_the_spread(make_store, spec, atol) -> None:
    check_float32_offset(make_store, spec, atol)
