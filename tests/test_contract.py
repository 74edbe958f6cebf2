"""The metric contract, checked for every registered metric (in the manner of scikit-learn's
estimator checks): each record's declared identity, symmetry, invariances, range, sides, float32
tolerance and state size hold, and the in-memory function, a two-store compare and an N-store
compare give the same values.

Data: small seeded Gaussian layers (hypothesis draws the seeds and shapes), related through a
shared latent so that values are away from their bounds.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repsim_cli._warnings import RepsimWarning
from repsim_cli.arrays import ArrayStore
from repsim_cli.compare import compare_stores, prepare_models
from repsim_cli.metrics import REGISTRY, MetricSpec, parse_spec
from repsim_cli.metrics.contract import LayerContext, SharedCache, state_nbytes
from repsim_cli.store import open_store

# Every metric at its defaults, plus parameter settings that change its state or pair stage.
EXTRA = {
    "cka": ["cka:debiased=true"],
    "cka_rbf": ["cka_rbf:threshold=0.5,debiased=true"],
    "cka_minibatch": ["cka_minibatch:batch_size=8,seed=1"],
    "cca": ["cca:stat=mean_rho2"],
    "svcca": ["svcca:dims=2"],
    "pwcca": ["pwcca:side=b"],
    "shape": ["shape:alpha=0.5", "shape:score=euclidean"],
    "rsa": ["rsa:rdm=euclidean,compare=pearson", "rsa:compare=kendall"],
    "mutual_knn": ["mutual_knn:k=4,normalize=false"],
    "cknna": ["cknna:k=4"],
    "bayes_tv": ["bayes_tv:center=units"],
    "bayes_js": ["bayes_js:samples=2000,center=stimuli"],
    "bayes_kl": ["bayes_kl:a=0.5"],
    "bayes_hellinger": ["bayes_hellinger:center=units"],
}
SPECS = [s for name in REGISTRY if not name.startswith("test_") for s in [name, *EXTRA.get(name, [])]]
# Absolute tolerances: the value's round-off in float64 (arccos near 0 loses half the digits).
ATOL = {"shape": 1e-6}


def atol(spec: MetricSpec) -> float:
    return ATOL.get(spec.name, 1e-9)


def related(seed: int, n: int, widths: tuple[int, ...]) -> list[np.ndarray]:
    """Layers sharing a 3-dim latent, with noise and column means up to 100× the spread."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    return [
        np.tanh(z @ rng.standard_normal((3, w))) + 0.4 * rng.standard_normal((n, w))
        + 100 * rng.uniform(-1, 1, w)
        for w in widths
    ]


def computed(spec: MetricSpec, x: np.ndarray, y: np.ndarray) -> float:
    """The cell of X and Y as two distinct stores give it: never the identity shortcut that
    ``dense`` (and a comparison) take for a layer paired with itself, so the identity is computed."""
    stores = [("X", ArrayStore({"X": x}, "<X>")), ("Y", ArrayStore({"Y": y}, "<Y>"))]
    comparison = prepare_models(stores, [spec], precision="float64")  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        value = float(comparison.run().metrics[spec.text].value[0, 0])
    comparison.close()
    return value


def dense(spec: MetricSpec, x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        return float(spec.info.dense(x, y, **spec.params))


def params_ok(spec: MetricSpec, n: int) -> bool:
    """Settings that need more samples than a draw has (k ≥ n, batch > n) are skipped."""
    return int(spec.params.get("k", 0)) < n - 1 and int(spec.params.get("batch_size", 0) or 0) <= n


data = st.tuples(st.integers(0, 2**31 - 1), st.integers(24, 40), st.integers(3, 7), st.integers(3, 7))
FAST = settings(max_examples=6, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def orthogonal(seed: int, p: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("text", SPECS)
@FAST
@given(data)
def test_identity_symmetry_range(text: str, draw: tuple[int, int, int, int]) -> None:
    seed, n, p, q = draw
    spec = parse_spec(text)
    x, y = related(seed, n, (p, q))
    if not params_ok(spec, n):
        return
    info = spec.info
    assert dense(spec, x, x) == info.identity or not info.identity_exact  # the shortcut
    assert computed(spec, x, x.copy()) == pytest.approx(info.identity, abs=max(atol(spec), 1e-9))
    value = dense(spec, x, y)
    lo, hi = info.bounds_of(spec.params)
    assert lo - 1e-9 <= value <= hi + 1e-9, (text, value)
    if info.symmetric:
        assert dense(spec, y, x) == pytest.approx(value, abs=atol(spec), rel=1e-9)


def transformed(kind: str, x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = x.shape[1]
    if kind == "orthogonal":
        return x @ orthogonal(seed, p)
    if kind == "isotropic_scaling":
        return 3.7 * x
    if kind == "translation":
        return x + 50 * rng.standard_normal(p)
    if kind == "permutation":
        return x[:, rng.permutation(p)]
    if kind == "invertible_linear":
        return x @ (np.eye(p) + 0.3 * rng.standard_normal((p, p)))
    raise AssertionError(kind)


@pytest.mark.parametrize("text", SPECS)
@FAST
@given(data)
def test_declared_invariances(text: str, draw: tuple[int, int, int, int]) -> None:
    seed, n, p, q = draw
    spec = parse_spec(text)
    if not params_ok(spec, n):
        return
    x, y = related(seed, n, (p, q))
    value = dense(spec, x, y)
    for kind in spec.info.invariances_of(spec.params):
        # both sides transformed (the sample order is the shared one): same value
        got = dense(spec, transformed(kind, x, seed), transformed(kind, y, seed + 1))
        assert got == pytest.approx(value, abs=1e-6 if spec.name != "shape" else 1e-5), (text, kind)


@pytest.mark.parametrize("text", SPECS)
def test_sample_order_applied_to_both_sides(text: str) -> None:
    spec = parse_spec(text)
    x, y = related(3, 30, (5, 4))
    perm = np.random.default_rng(0).permutation(30)
    if spec.name in ("cka_minibatch", "bayes_js"):
        return  # seeded batches / Monte Carlo draws follow positions, not samples
    assert dense(spec, x[perm], y[perm]) == pytest.approx(dense(spec, x, y), abs=1e-7)


@pytest.mark.parametrize("text", [s for s in SPECS if parse_spec(s).info.is_metric])
@FAST
@given(st.integers(0, 2**31 - 1))
def test_triangle_inequality(text: str, seed: int) -> None:
    spec = parse_spec(text)
    a, b, c = related(seed, 30, (4, 5, 6))
    ab, bc, ac = dense(spec, a, b), dense(spec, b, c), dense(spec, a, c)
    assert ac <= ab + bc + 1e-9, (ab, bc, ac)


def stores(make_store, layers: list[np.ndarray], chunk_rows: int | None = None, dtype: Any = None):
    """Three stores of the same two-layer shapes (models a, b, c)."""
    cast = (lambda z: z.astype(dtype)) if dtype is not None else (lambda z: z)
    return [make_store({"l0": cast(layers[2 * k]), "l1": cast(layers[2 * k + 1])}, ".h5",
                       chunk_rows=chunk_rows) for k in range(3)]  # fmt: skip


@pytest.mark.parametrize("text", SPECS)
def test_dense_two_store_and_n_store_agree(make_store, text: str) -> None:
    spec = parse_spec(text)
    layers = related(11, 32, (5, 4, 6, 3, 4, 5))
    paths = stores(make_store, layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        two = compare_stores(paths[0], paths[1], [text], precision="float64").metrics[text].value
        with ExitStack() as stack:
            opened = [(f"m{k}", stack.enter_context(open_store(p))) for k, p in enumerate(paths)]
            comparison = prepare_models(opened, [text], precision="float64")
            multi = comparison.run()
            comparison.close()
    block = multi.block("m0", "m1").metrics[text].value
    np.testing.assert_allclose(block, two, rtol=1e-12, atol=1e-13)
    for i in range(2):
        for j in range(2):
            expected = dense(spec, layers[i], layers[2 + j])
            assert two[i, j] == pytest.approx(expected, rel=1e-10, abs=1e-12), (i, j)


@pytest.mark.parametrize("text", SPECS)
def test_sides_and_chunk_sizes_agree(make_store, text: str) -> None:
    spec = parse_spec(text)
    layers = related(5, 30, (5, 4, 6, 3, 4, 5))
    reference = None
    for chunk_rows in (4, 11, 30):
        pa, pb, _ = stores(make_store, layers, chunk_rows=chunk_rows)
        for side in spec.info.sides:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RepsimWarning)
                got = compare_stores(pa, pb, [text], side=side, precision="float64",
                                     block_rows=chunk_rows).metrics[text].value  # fmt: skip
            if reference is None:
                reference = got
            np.testing.assert_allclose(got, reference, rtol=1e-9, atol=max(atol(spec), 1e-11),
                                       err_msg=f"{text} side={side} chunk_rows={chunk_rows}")


@pytest.mark.parametrize("text", SPECS)
def test_float32_agrees_with_float64_to_the_declared_tolerance(make_store, text: str) -> None:
    spec = parse_spec(text)
    layers = related(7, 40, (6, 5, 6, 5, 6, 5))
    pa, pb, _ = stores(make_store, layers, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        single = compare_stores(pa, pb, [text], precision="float32").metrics[text].value
        double = compare_stores(pa, pb, [text], precision="float64").metrics[text].value
    np.testing.assert_allclose(single, double, atol=spec.info.float32_atol, rtol=0)


@pytest.mark.parametrize("text", SPECS)
@pytest.mark.parametrize("side", ["sample", "feature"])
def test_state_size_within_declared_bytes(text: str, side: str) -> None:
    spec = parse_spec(text)
    if side not in spec.info.sides:
        return
    x = related(2, 30, (7,))[0]
    comparison = prepare_models([("x", ArrayStore({"x": x}, "<x>"))], [spec], side=side,
                                precision="float64")  # fmt: skip
    ref = comparison.engine.refs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        route = comparison.plan.state_side(spec.text, ref.key)  # the side chosen for the state
        assert route == side
        state = spec.info.prepare(LayerContext(comparison.engine, ref, SharedCache(), route),
                                  spec.params)  # fmt: skip
    declared = spec.info.state_cost(30, 7, side, spec.params)  # type: ignore[arg-type]
    assert state_nbytes(state) <= declared.bytes, (text, state_nbytes(state), declared)
    assert declared.flops >= 0
    comparison.close()


def test_each_layer_is_prepared_once_in_an_n_store_run(make_store) -> None:
    layers = related(1, 30, (5, 4, 6, 3, 4, 5))
    paths = stores(make_store, layers)
    specs = ["cka", "cca", "procrustes", "rsa"]
    with ExitStack() as stack:
        opened = [(f"m{k}", stack.enter_context(open_store(p))) for k, p in enumerate(paths)]
        comparison = prepare_models(opened, specs, within=True)
        comparison.run()
        counts = comparison.counts
        comparison.close()
    prepares = {k: v for k, v in counts.items() if k.startswith("prepare:")}
    assert set(prepares.values()) == {1}
    # 6 layers × (gram handle, basis, procrustes' centred layer, rsa): each state once, shared
    # across the 3 model pairs
    assert len(prepares) == 6 * 4
