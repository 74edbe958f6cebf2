"""Gram inner products from packed upper triangles (repsim_cli/engine/triangles.py) and the
engine's ``packed`` mode, against dense formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import repsim_cli.engine.triangles as tri
from repsim_cli.compare import prepare_comparison
from repsim_cli.engine.strategies import Packed, Stacked
from repsim_cli.store import open_store


def symmetric(rng: np.random.Generator, n: int, dtype=np.float64) -> np.ndarray:
    x = rng.standard_normal((n, max(1, n // 2))).astype(dtype)
    return x @ x.T


@given(n=st.integers(1, 400), max_entries=st.integers(1, 5000))
def test_row_chunks_cover_the_triangle_in_order(n, max_entries):
    chunks = tri.row_chunks(n, max_entries)
    offsets = tri.triangle_offsets(n)
    assert offsets[-1] == tri.triangle_size(n) == n * (n - 1) // 2
    rows = [i for first, stop in chunks for i in range(first, stop)]
    assert rows == list(range(n - 1))
    for first, stop in chunks:
        size = offsets[stop] - offsets[first]
        assert size <= max_entries or stop == first + 1  # a long row is a chunk of its own
        if stop < n - 1:  # greedy: the next row would not have fitted
            assert offsets[stop + 1] - offsets[first] > max_entries


@pytest.mark.parametrize("n", [1, 2, 3, 50])
def test_pack_upper_and_upper_rows_agree_with_triu(n):
    g = symmetric(np.random.default_rng(n), n)
    packed = np.empty(tri.triangle_size(n))
    tri.pack_upper(g, packed)
    np.testing.assert_array_equal(packed, g[np.triu_indices(n, 1)])
    for first, stop in tri.row_chunks(n, 7):
        out = np.empty(tri.triangle_offsets(n)[stop] - tri.triangle_offsets(n)[first])
        tri.upper_rows(g, first, stop, out)
        lo, hi = tri.triangle_offsets(n)[[first, stop]]
        np.testing.assert_array_equal(out, packed[lo:hi])


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 15])
@pytest.mark.parametrize("n", [1, 2, 9, 40])
def test_triangle_inner_block_equals_dense_frobenius(monkeypatch, n, chunk):
    monkeypatch.setattr(tri, "CHUNK_ENTRIES", chunk)
    rng = np.random.default_rng(n + chunk)
    grams = [symmetric(rng, n) for _ in range(5)]
    packed = np.empty((5, tri.triangle_size(n)))
    for g, p in zip(grams, packed):
        tri.pack_upper(g, p)
    offsets = tri.triangle_offsets(n)

    def fill(layer, first, stop, out):
        out[:] = packed[layer, offsets[first] : offsets[stop]]

    diag = np.stack([np.diag(g) for g in grams])
    dense = np.array([[np.sum(a * b) for b in grams] for a in grams])
    same = tri.triangle_inner_block(n, range(5), None, fill, diag)
    np.testing.assert_allclose(same, dense, rtol=1e-13)
    cross = tri.triangle_inner_block(n, [0, 1], [2, 3, 4], fill, diag[:2], diag[2:])
    np.testing.assert_allclose(cross, dense[:2, 2:], rtol=1e-13)


def test_float32_triangles_widened_exactly():
    """A float32 SYRK's triangle is kept in float32 and widened to float64 without loss."""
    g32 = symmetric(np.random.default_rng(3), 30, np.float32)
    packed = np.empty(tri.triangle_size(30), dtype=np.float32)
    tri.pack_upper(g32, packed)
    offsets = tri.triangle_offsets(30)
    out = np.empty(tri.triangle_size(30))
    tri.upper_rows(g32.astype(np.float64), 0, 29, out)
    np.testing.assert_array_equal(out, packed[offsets[0] : offsets[29]].astype(np.float64))


def _cka_run(paths, metrics):
    a = open_store(paths[0])
    b = open_store(paths[1])
    try:
        comparison = prepare_comparison(a, b, metrics, side="sample")
        return comparison.engine.plan.strategy.name, comparison.run().get("cka").value
    finally:
        a.close()
        b.close()


def test_packed_mode_is_planned_for_cka_and_matches_the_stacked_mode_bit_for_bit(make_store):
    """CKA alone holds only triangles; with a whole-Gram metric beside it the Grams are held
    whole. Both read the same triangle chunks, so the CKA values are identical bits, and they
    equal the dense formula."""
    rng = np.random.default_rng(0)
    n = 60
    xs = {f"l{i}": 1000.0 + rng.standard_normal((n, 5 + 3 * i)).astype(np.float32) for i in range(4)}
    ys = {f"m{i}": 1000.0 + rng.standard_normal((n, 4 + 2 * i)).astype(np.float32) for i in range(3)}
    paths = (make_store(xs), make_store(ys))
    mode_packed, packed = _cka_run(paths, ["cka"])
    mode_stacked, stacked = _cka_run(paths, ["cka", "rsa"])
    assert (mode_packed, mode_stacked) == ("packed", "stacked")
    np.testing.assert_array_equal(packed, stacked)

    def dense_cka(x, y):
        x = x.astype(np.float64) - x.astype(np.float64).mean(0)
        y = y.astype(np.float64) - y.astype(np.float64).mean(0)
        kx, ky = x @ x.T, y @ y.T
        return np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky))

    expected = np.array([[dense_cka(x, y) for y in ys.values()] for x in xs.values()])
    np.testing.assert_allclose(packed, expected, atol=1e-6)


def test_packed_plan_needs_less_memory_than_whole_grams(make_store):
    rng = np.random.default_rng(1)
    path = make_store({f"l{i}": rng.standard_normal((300, 8)) for i in range(3)})
    with open_store(path) as store:
        packed = prepare_comparison(store, None, ["cka"], side="sample").engine.plan
        whole = prepare_comparison(store, None, ["cka", "rsa"], side="sample").engine.plan
    assert (type(packed.strategy), type(whole.strategy)) == (Packed, Stacked)
    assert packed.peak_bytes < whole.peak_bytes
    assert "side: sample, packed" in packed.describe()
