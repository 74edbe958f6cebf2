"""Linear CKA: dense reference, the colab's published example, properties, and the engine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import cka_dense, gram_linear, hsic_unbiased
from strategies import activations, orthogonal

from repsim_cli.compare import compare_stores, prepare_comparison
from repsim_cli.errors import DataError
from repsim_cli.metrics.cka import linear_cka
from repsim_cli.store import open_store


def test_published_colab_example() -> None:
    # Kornblith et al.'s Demo.ipynb: np.random.seed(1337); X = randn(100, 10); Y = randn(100, 10) + X.
    legacy = np.random.RandomState(1337)  # the same stream as the notebook's np.random.seed(1337)
    x = legacy.randn(100, 10)
    y = legacy.randn(100, 10) + x
    assert round(linear_cka(x, y), 5) == 0.55761
    assert round(linear_cka(x, y, debiased=True), 5) == 0.51346


@pytest.mark.parametrize(("n", "p", "q"), [(60, 7, 12), (15, 40, 25)], ids=["n>p", "n<p"])
@pytest.mark.parametrize("debiased", [False, True])
def test_in_memory_equals_dense_gram_formula(n: int, p: int, q: int, debiased: bool) -> None:
    rng = np.random.default_rng(n + p)
    x, y = rng.standard_normal((n, p)), rng.standard_normal((n, q))
    y[:, : min(p, q)] += x[:, : min(p, q)]
    assert linear_cka(x, y, debiased) == pytest.approx(cka_dense(x, y, debiased), abs=1e-12)


def test_debiased_matches_song_u_statistic() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 8))
    kx, ky = gram_linear(x - x.mean(0)), gram_linear(y - y.mean(0))
    expected = hsic_unbiased(kx, ky) / np.sqrt(hsic_unbiased(kx, kx) * hsic_unbiased(ky, ky))
    assert linear_cka(x, y, debiased=True) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "widths"), [(80, (6, 9, 13)), (24, (40, 31, 50))], ids=["n>p", "n<p"])
@pytest.mark.parametrize("side", ["sample", "feature"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_engine_equals_dense(make_store, backend, n, widths, side, chunk_rows) -> None:
    rng = np.random.default_rng(sum(widths) + chunk_rows)
    base = rng.standard_normal((n, 6))
    layers = {f"l{i}": np.hstack([base, rng.standard_normal((n, w - 6))]) + rng.uniform(-5, 5, w)
              for i, w in enumerate(widths)}
    path = make_store(layers, backend, chunk_rows=chunk_rows)
    res = compare_stores(path, None, ["cka", "cka:debiased=true"], side=side,
                         block_rows=max(1, chunk_rows // 2))
    names = list(layers)
    for spec, debiased in (("cka", False), ("cka:debiased=true", True)):
        got = res.metrics[spec].value
        want = np.array([[cka_dense(layers[a], layers[b], debiased) for b in names] for a in names])
        np.testing.assert_allclose(got, want, atol=1e-10, rtol=0)


def test_two_stores_equal_dense(make_store, backend) -> None:
    rng = np.random.default_rng(0)
    a = {"x": rng.standard_normal((50, 6)), "y": rng.standard_normal((50, 3, 2))}
    b = {"u": a["x"] @ rng.standard_normal((6, 6)), "v": rng.standard_normal((50, 4))}
    pa, pb = make_store(a, backend), make_store(b, ".h5")
    for side in ("sample", "feature"):
        got = compare_stores(pa, pb, ["cka"], side=side).metrics["cka"].value
        want = [[cka_dense(a[i].reshape(50, -1), b[j]) for j in b] for i in a]
        np.testing.assert_allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("side", ["sample", "feature"])
def test_float32_with_means_1000x_the_spread(make_store, side) -> None:
    rng = np.random.default_rng(7)
    n = 400
    base = rng.standard_normal((n, 20))
    x = (base @ rng.standard_normal((20, 64)) + 1000.0 * rng.uniform(1, 2, 64)).astype(np.float32)
    y = (base @ rng.standard_normal((20, 48)) + rng.standard_normal((n, 48))
         + 1000.0 * rng.uniform(1, 2, 48)).astype(np.float32)
    path = make_store({"x": x, "y": y}, ".h5", chunk_rows=64)
    res = compare_stores(path, None, ["cka", "cka:debiased=true"], side=side)
    for spec, debiased in (("cka", False), ("cka:debiased=true", True)):
        want = cka_dense(x.astype(np.float64), y.astype(np.float64), debiased)
        assert abs(res.metrics[spec].value[0, 1] - want) < 1e-6
        assert 0.05 < want < 0.95  # not a trivial value


def test_each_layer_statistics_computed_once(make_store) -> None:
    rng = np.random.default_rng(1)
    layers = {f"l{i}": rng.standard_normal((30, 4 + i)) for i in range(5)}
    path = make_store(layers)
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, ["cka", "cka:debiased=true"], side="sample")
        comparison.run()
        grams = {k: v for k, v in comparison.engine.counts.items() if k.startswith("gram:")}
    assert len(grams) == 5 and set(grams.values()) == {1}


def test_constant_layer_is_an_error() -> None:
    x = np.ones((10, 3))
    with pytest.raises(DataError, match="constant"):
        linear_cka(x, np.random.default_rng(0).standard_normal((10, 3)))


# ------------------------------------------------------------------ properties (hypothesis)
@given(activations(n=20), activations(n=20), st.booleans())
def test_symmetric_and_in_range(x, y, debiased) -> None:
    v = linear_cka(x, y, debiased)
    assert v == pytest.approx(linear_cka(y, x, debiased), abs=1e-10)
    if not debiased:
        assert -1e-12 <= v <= 1 + 1e-12


@given(activations(n=16), st.booleans())
def test_self_similarity_is_one(x, debiased) -> None:
    assert linear_cka(x, x, debiased) == pytest.approx(1.0, abs=1e-9)


@given(activations(n=18, max_p=12, big_mean=False), st.data())
def test_invariances(x, data) -> None:
    y = data.draw(activations(n=18, big_mean=False))
    base = linear_cka(x, y)
    q = data.draw(orthogonal(x.shape[1]))
    scale = data.draw(st.floats(0.01, 100))
    shift = data.draw(st.floats(-1e3, 1e3))
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-9)
    assert linear_cka(scale * x, y) == pytest.approx(base, abs=1e-9)
    assert linear_cka(x + shift, y) == pytest.approx(base, abs=1e-9)


def test_not_invariant_to_general_linear_maps() -> None:
    # The case that must differ: an anisotropic (non-orthogonal) map changes CKA.
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 5))
    y[:, :2] += x[:, :2]
    stretch = np.diag([10.0, 1.0, 1.0, 0.1, 1.0])
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 1e-3
