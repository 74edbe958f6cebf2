"""Readout distances in the span of the two layers' columns (p_a + p_b < n) against the O(n³) route.

The span route (:mod:`repsim_cli.metrics.readout.span`) must give the shifts and distances of the
n × n route (:func:`spectral_shifts` on Cholesky-whitened kernels, and the in-memory functions
``bayes_*_distance``) to ~1e-9 relative; its per-layer state holds n·p floats, not n × n matrices;
and ``bayes_js`` draws its Monte Carlo numbers once per block with per-cell values independent of
the block.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repsim_cli.compare import compare_stores
from repsim_cli.metrics import parse_spec
from repsim_cli.metrics import readout as ro
from repsim_cli.metrics.contract import state_nbytes
from repsim_cli.metrics.readout import span, stages

CENTERS = ("none", "units", "stimuli")


def centred(x: np.ndarray, center: str) -> np.ndarray:
    if center == "units":
        return x - x.mean(axis=0)
    if center == "stimuli":
        return x - x.mean(axis=1, keepdims=True)
    return x


def related_pair(seed: int, n: int, p: int, q: int, mix: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * np.linspace(2.0, 0.2, p) + rng.standard_normal(p)
    y = x[:, : min(p, q)] @ rng.standard_normal((min(p, q), q)) + mix * rng.standard_normal((n, q))
    return x, y


def both_routes(x: np.ndarray, y: np.ndarray, center: str, b: float = ro.DEFAULT_B):
    """(span shifts, n × n shifts) of one pair, each sorted."""
    xa, ya = centred(x, center), centred(y, center)
    fa, fb = span.readout_basis(xa, b, "X"), span.readout_basis(ya, b, "Y")
    assert span.span_applies(fa, fb)
    dense_a = ro.readout_layer(ro.linear_kernel(x, center), b, "X")
    dense_b = ro.readout_layer(ro.linear_kernel(y, center), b, "Y")
    return np.sort(span.span_shifts(fa, fb)), np.sort(ro.spectral_shifts(dense_a, dense_b))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(20, 80),
    st.integers(2, 9),
    st.integers(2, 9),
    st.sampled_from([0.0, 0.05, 1.0, 5.0]),
    st.sampled_from(CENTERS),
    st.sampled_from([0.01, 0.3, 10.0]),
)
def test_span_shifts_equal_the_dense_shifts(seed, n, p, q, mix, center, b):
    x, y = related_pair(seed, n, p, q, mix)
    got, want = both_routes(x, y, center, b)
    assert got.size == want.size
    # Each route puts the pair in its own canonical order: the shifts are those of (Σ'_b, Σ'_a)
    # or of (Σ'_a, Σ'_b), i.e. log λ up to one common sign.
    log_got, log_want = np.sort(np.log1p(got)), np.sort(np.log1p(want))
    if got.size and not np.allclose(log_got, log_want, rtol=1e-9, atol=1e-11):
        log_want = np.sort(-log_want)
    np.testing.assert_allclose(log_got, log_want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("center", CENTERS)
@pytest.mark.parametrize(("n", "p", "q"), [(120, 20, 35), (300, 40, 8), (64, 30, 33)])
def test_pair_stage_equals_the_dense_functions(center, n, p, q):
    """The registered metrics (prepare/pair on an in-memory store: the span route when
    p + q < n) against the in-memory O(n³) functions."""
    x, y = related_pair(n + p, n, p, q, 0.5)
    for name, dense in (
        ("bayes_tv", ro.bayes_tv_distance),
        ("bayes_kl", ro.bayes_kl_divergence),
        ("bayes_hellinger", ro.bayes_hellinger_distance),
    ):
        spec = parse_spec(f"{name}:center={center}")
        got = spec.info.dense(x, y, **spec.params)  # type: ignore[misc]
        assert got == pytest.approx(dense(x, y, center=center), rel=1e-9, abs=1e-12), name
    spec = parse_spec(f"bayes_js:center={center},samples=4000,seed=3")
    got = spec.info.dense(x, y, **spec.params)  # type: ignore[misc]
    want = ro.bayes_js_distance(x, y, center=center, samples=4000, seed=3)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_too_wide_pair_falls_back_to_the_dense_route():
    """p_a + p_b ≥ n with both layers narrower than n: the n × n route from the factored states."""
    x, y = related_pair(7, 40, 25, 30, 0.3)
    fa, fb = span.readout_basis(x, 0.01, "X"), span.readout_basis(y, 0.01, "Y")
    assert not span.span_applies(fa, fb)
    got = stages.pair_shifts(fa, fb)
    want = ro.spectral_shifts(ro.readout_layer(ro.linear_kernel(x), 0.01),
                              ro.readout_layer(ro.linear_kernel(y), 0.01))  # fmt: skip
    assert ro.symmetric_kl(1.0 + got) == pytest.approx(ro.symmetric_kl(1.0 + want), rel=1e-9)
    assert ro.hellinger_from_eigenvalues(1.0 + got) == pytest.approx(
        ro.hellinger_from_eigenvalues(1.0 + want), rel=1e-9
    )


def test_same_kernel_gives_exactly_zero_and_swapping_is_bitwise():
    x, y = related_pair(3, 200, 12, 17, 0.7)
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((12, 12)))[0]
    fx = span.readout_basis(x, 0.01, "X")
    for same in (4.0 * x, x @ rot):  # the same trace-normalised kernel
        assert span.span_shifts(fx, span.readout_basis(same, 0.01, "X'")).size == 0
    fy = span.readout_basis(y, 0.01, "Y")
    np.testing.assert_array_equal(span.span_shifts(fx, fy), span.span_shifts(fy, fx))


def test_narrow_layer_state_holds_no_n_by_n_matrix(make_store):
    rng = np.random.default_rng(0)
    n = 300
    path = make_store({"a": rng.standard_normal((n, 10)), "b": rng.standard_normal((n, 20))})
    from repsim_cli.compare import prepare_comparison
    from repsim_cli.store import open_store

    with open_store(path) as store:
        comparison = prepare_comparison(store, None, ["bayes_kl"])
        comparison.run()
        spec = comparison.specs[0]
        for ref in comparison.refs_a:
            state = comparison.state(spec, ref)
            assert isinstance(state, span.ReadoutBasis)
            assert state_nbytes(state) <= 8 * (n + 1) * ref.width + 64
        comparison.close()


def test_js_block_draws_once_and_each_cell_is_independent_of_the_block(make_store, monkeypatch):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((150, 8))
    layers = {f"l{k}": base @ rng.standard_normal((8, 8)) + 0.4 * k * rng.standard_normal((150, 8))
              for k in range(4)}  # fmt: skip
    other = {f"m{k}": np.tanh(v) for k, v in layers.items()}
    pa, pb = make_store(layers), make_store(other)
    spec = "bayes_js:samples=3000,seed=1"
    calls = []
    real = stages.monte_carlo

    def counting(shifts, *args, **kwargs):
        calls.append(len(shifts))
        return real(shifts, *args, **kwargs)

    monkeypatch.setattr(stages, "monte_carlo", counting)
    whole = compare_stores(pa, pb, [spec]).metrics[spec]
    assert calls == [16]  # one draw for the whole 4 × 4 block
    # each cell alone (a 1 × 1 block) gives the same bits
    info = parse_spec(spec)
    for i, la in enumerate(layers):
        for j, lb in enumerate(other):
            alone = info.info.dense(layers[la], other[lb], **info.params)  # type: ignore[misc]
            assert whole.value[i, j] == alone, (la, lb)
    # a symmetric block computes each unordered pair once
    calls.clear()
    self_block = compare_stores(pa, None, [spec]).metrics[spec]
    assert calls and calls[0] <= 4 * 5 // 2
    np.testing.assert_array_equal(self_block.value, self_block.value.T)
