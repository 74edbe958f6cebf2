"""Helpers shared by the metric test files (test_metrics_*.py): seeded test data, the engine run
on a store, and checks that several metric families make in the same way.

Plain functions, no fixtures: a check takes the ``make_store`` fixture (conftest.py) as an
argument, and each test file keeps its own one-line test that calls it for its own metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st
from strategies import activations

from repsim_cli.compare import compare_stores, prepare_comparison
from repsim_cli.metrics import parse_spec
from repsim_cli.store import open_store

StoreFactory = Callable[..., Path]


# ------------------------------------------------------------------ seeded test data
def shifted_pair(
    n: int, p: int, q: int, seed: int, shift: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """x: an (n, p) Gaussian with column means uniform in ±shift; y: (n, q), a noisy tanh of a
    random linear map of x (related to x, but not by any map a metric is invariant to)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) + rng.uniform(-shift, shift, p)
    y = np.tanh(x @ rng.standard_normal((p, q))) + 0.5 * rng.standard_normal((n, q))
    return x, y


def latent_pair(
    seed: int, n: int = 40, p: int = 6, q: int = 9, big_mean: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Two layers sharing a 4-dim latent, with noise and (optionally) means 1000× the spread."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, p)) + 0.5 * rng.standard_normal((n, p))
    y = np.tanh(z @ rng.standard_normal((4, q))) + 0.5 * rng.standard_normal((n, q))
    if big_mean:
        x, y = x + 1000 * rng.uniform(-1, 1, p), y - 1000 * rng.uniform(-1, 1, q)
    return x, y


def invertible(seed: int, p: int) -> np.ndarray:
    """A random invertible p×p matrix, Q₁ · diag(e^u) · Q₂ with u uniform in [−1, 1]: not
    orthogonal, condition number at most e²."""
    rng = np.random.default_rng(seed)
    q1, _ = np.linalg.qr(rng.standard_normal((p, p)))
    q2, _ = np.linalg.qr(rng.standard_normal((p, p)))
    return q1 @ np.diag(np.exp(rng.uniform(-1, 1, p))) @ q2


def well_sampled_pairs(
    min_n: int, max_n: int, max_p: int
) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Two activation matrices with the same n in [min_n, max_n] and widths ≤ max_p."""
    return st.integers(min_n, max_n).flatmap(
        lambda n: st.tuples(activations(n=n, max_p=max_p), activations(n=n, max_p=max_p))
    )


def engine_layers(
    n: int, seed: int, shift: float = 20.0, c_shape: tuple[int, ...] = (2, 3)
) -> dict[str, np.ndarray]:
    """Three layers for a store: "a", a linear map of a 4-dim base with column means uniform in
    ±shift; "b", a noisy tanh of the same base; "c", unrelated noise of shape (n, *c_shape)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 4))
    return {
        "a": base @ rng.standard_normal((4, 7)) + rng.uniform(-shift, shift, 7),
        "b": np.tanh(base @ rng.standard_normal((4, 5))) + 0.3 * rng.standard_normal((n, 5)),
        "c": rng.standard_normal((n, *c_shape)),
    }


def latent_layers(seed: int, n: int, widths: Iterable[int], prefix: str) -> dict[str, np.ndarray]:
    """Layers ``{prefix}{i}`` of the given widths, each a noisy tanh of one shared 3-dim latent;
    layer 1 has means 1000× the spread."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    out = {}
    for i, w in enumerate(widths):
        layer = np.tanh(z @ rng.standard_normal((3, w))) + 0.4 * rng.standard_normal((n, w))
        out[f"{prefix}{i}"] = layer + (1000 * rng.uniform(-1, 1, w) if i == 1 else 0.0)
    return out


def float32_pair(n: int = 200) -> dict[str, np.ndarray]:
    """Layers "x" (n, 40) and "y" (n, 30) sharing a 12-dim base, stored as float32, with column
    means 1000–2000, i.e. about 1000× the spread."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((n, 12))
    x = base @ rng.standard_normal((12, 40)) + 1000.0 * rng.uniform(1, 2, 40)
    y = base @ rng.standard_normal((12, 30)) + rng.standard_normal((n, 30))
    return {"x": x.astype(np.float32), "y": (y + 1000.0 * rng.uniform(1, 2, 30)).astype(np.float32)}


# ------------------------------------------------------------------ the engine and dense values
def engine_matrices(
    path_a: Path,
    path_b: Path | None,
    specs: Sequence[str],
    side: str,
    block_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Run the engine on store a (against store b, or a itself if ``path_b`` is None) on the
    given side, check that the plan kept that side, and return ``{spec: value matrix}``."""
    with ExitStack() as stack:
        a = stack.enter_context(open_store(path_a))
        b = stack.enter_context(open_store(path_b)) if path_b is not None else None
        comparison = prepare_comparison(a, b, specs, side=side, block_rows=block_rows)
        assert comparison.plan.side == side, (comparison.plan.side, side)
        return {s: m.value for s, m in comparison.run().metrics.items()}


def dense_matrix(
    spec_text: str, layers_a: dict[str, np.ndarray], layers_b: dict[str, np.ndarray]
) -> np.ndarray:
    """The metric's in-memory function on every (a, b) pair of layers, as a matrix."""
    spec = parse_spec(spec_text)
    return np.array(
        [
            [spec.info.dense(xa, xb, **spec.params) for xb in layers_b.values()]
            for xa in layers_a.values()
        ]
    )


# ------------------------------------------------------------------ checks shared by the metric tests
def check_engine_equals_in_memory(
    make_store: StoreFactory,
    layers: dict[str, np.ndarray],
    backend: str,
    chunk_rows: int,
    specs: Sequence[str],
    dense: Callable[..., float] | None = None,
) -> dict[str, np.ndarray]:
    """One store of ``layers`` in ``chunk_rows`` chunks: ``compare_stores`` gives, for every spec,
    the in-memory value on the flattened layers (``dense``, or the spec's own in-memory function
    when None, with the spec's parameters) within atol 1e-10. Returns ``{spec: value matrix}``."""
    res = compare_stores(make_store(layers, backend, chunk_rows=chunk_rows), None, specs)
    flat = {k: v.reshape(len(v), -1) for k, v in layers.items()}
    for text in specs:
        spec = parse_spec(text)
        fn = spec.info.dense if dense is None else dense
        want = [[fn(flat[a], flat[b], **spec.params) for b in flat] for a in flat]
        np.testing.assert_allclose(res.metrics[text].value, want, atol=1e-10, rtol=0, err_msg=text)
    return {text: res.metrics[text].value for text in specs}


def check_chunked_engine(
    make_store: StoreFactory,
    backend: str,
    chunk_rows: int | None,
    side: str,
    specs: Sequence[str],
    n: int,
    atol: float,
) -> None:
    """Stores of ``latent_layers`` (three layers in a, two in b, n samples) in ``chunk_rows``
    chunks, read in blocks of as many rows: on ``side``, the engine's a×a and a×b matrices equal
    the in-memory function's (``dense_matrix``) within ``atol``, for every spec."""
    layers_a = latent_layers(0, n, (3, 5, 8), "a")
    layers_b = latent_layers(1, n, (4, 6), "b")
    path_a = make_store(layers_a, suffix=backend, chunk_rows=chunk_rows)
    path_b = make_store(layers_b, suffix=backend, chunk_rows=chunk_rows)
    own = engine_matrices(path_a, None, specs, side, block_rows=chunk_rows)
    cross = engine_matrices(path_a, path_b, specs, side, block_rows=chunk_rows)
    for spec in specs:
        np.testing.assert_allclose(
            own[spec], dense_matrix(spec, layers_a, layers_a), atol=atol, err_msg=spec
        )
        np.testing.assert_allclose(
            cross[spec], dense_matrix(spec, layers_a, layers_b), atol=atol, err_msg=spec
        )


def check_each_layer_computed_once(
    make_store: StoreFactory, specs: Sequence[str], prefixes: Iterable[str], n: int = 20
) -> None:
    """An all-pairs run of ``specs`` over five layers (n samples, widths 3..7): every per-layer
    stage whose name starts with one of ``prefixes`` (engine statistics such as ``gram``, shared
    intermediates such as ``rdm[correlation]``, metric states ``prepare(...)``) ran exactly once
    for each layer (``comparison.counts``), and each prefix matched something."""
    rng = np.random.default_rng(0)
    layers = {f"l{i}": rng.standard_normal((n, 3 + i)) for i in range(5)}
    with open_store(make_store(layers)) as store:
        comparison = prepare_comparison(store, None, specs)
        comparison.run()
        counts = comparison.counts
    for prefix in prefixes:
        by_stage: dict[str, dict[str, int]] = {}
        for key, count in counts.items():
            if key.startswith("prepare:"):
                stage, scope, name = key[len("prepare:"):].rsplit(":", 2)
                stage = "prepare" + stage
            else:
                stage, scope, name = key.rsplit(":", 2)
            if stage.startswith(prefix):
                by_stage.setdefault(stage, {})[f"{scope}:{name}"] = count
        assert by_stage, (prefix, sorted(counts))
        for stage, done in by_stage.items():
            assert sorted(done) == sorted(f"a:{name}" for name in layers), (stage, done)
            assert set(done.values()) == {1}, (stage, done)


def check_float32_offset(make_store: StoreFactory, spec: str, atol: float) -> None:
    """A float32 store whose column means are 1000× the spread (``float32_pair``): GEMMs run in
    float32 but centring is exact, so the engine's value for ``spec`` stays within ``atol`` of the
    float64 in-memory value on the same (float32-rounded) numbers."""
    layers = float32_pair()
    got = compare_stores(make_store(layers, chunk_rows=64), None, [spec]).metrics[spec].value[0, 1]
    parsed = parse_spec(spec)
    want = parsed.info.dense(
        layers["x"].astype(np.float64), layers["y"].astype(np.float64), **parsed.params
    )
    assert got == pytest.approx(want, abs=atol), f"{spec}: engine {got!r}, in memory {want!r}"
