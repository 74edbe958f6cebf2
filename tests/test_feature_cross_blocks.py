"""The feature side computes only the blocks a run's cells need: for two stores, the cross block
XaᵀXb of the two stores and each layer's own block XaᵀXa; its values equal the whole joint
computation's, and the planner's flops estimate drops by the work left out. (Budget: ~2 s.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from repsim_cli.arrays import ArrayStore
from repsim_cli.compare import compare_models
from repsim_cli.engine import GramEngine, LayerCost, LayerRef, Plan, make_plan
from repsim_cli.engine import plan as plan_module
from repsim_cli.engine.strategies import Stacked

N = 90


def layers(seed: int, count: int, dtype: type) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N, 3))
    return {
        f"l{i}": (z @ rng.standard_normal((3, 5 + i)) + 0.4 * rng.standard_normal((N, 5 + i))
                  + 50.0 * rng.uniform(-1, 1, 5 + i)).astype(dtype)
        for i in range(count)
    }  # fmt: skip


def two_store_engines(dtype: type, block_rows: int) -> tuple[GramEngine, GramEngine]:
    """The same two-store feature-side engine twice: cross blocks only, and the whole joint."""
    a, b = ArrayStore(layers(1, 3, dtype), "A"), ArrayStore(layers(2, 2, dtype), "B")
    refs = [LayerRef(f"a:{k}", a, k) for k in a.layers] + [LayerRef(f"b:{k}", b, k) for k in b.layers]
    c = np.dtype(dtype).itemsize
    costs = [LayerCost(r.key, r.label, r.width, c, False) for r in refs]
    blocks = ((tuple(r.key for r in refs[:3]), tuple(r.key for r in refs[3:])),)
    planned = make_plan(N, costs, n_pairs=6, side="feature", block_rows=block_rows,
                        feature_blocks=blocks)  # fmt: skip
    assert planned.side == "feature" and planned.feature_blocks == blocks
    whole = dataclasses.replace(planned, feature_blocks=())
    return GramEngine(refs, planned), GramEngine(refs, whole)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_blocks_equal_the_whole_joint(dtype: type) -> None:
    crossed, whole = two_store_engines(dtype, block_rows=32)  # several row blocks
    refs = crossed.refs
    for ra in refs[:3]:
        for rb in refs[3:]:
            got, want = crossed.cross_product(ra, rb), whole.cross_product(ra, rb)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
            back = crossed.cross_product(rb, ra)
            np.testing.assert_allclose(back, want.T, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    for r in refs:  # each layer's own block, its row norms
        want = whole.cross_product(r, r)
        np.testing.assert_allclose(crossed.cross_product(r, r), want, rtol=1e-12,
                                   atol=1e-12 * np.abs(want).max())  # fmt: skip
        np.testing.assert_allclose(crossed.row_sqnorms(r), whole.row_sqnorms(r), rtol=1e-12)
    # CKA's statistics: ⟨Kc_a, Kc_b⟩ for the cross cells and each layer with itself
    for pick_a, pick_b in ((refs[:3], refs[3:]), (refs, refs)):
        got = crossed.gram_inner_matrix(pick_a, pick_b) if pick_a is not refs else np.diag(
            [crossed.gram_inner(r, r) for r in refs])
        want = whole.gram_inner_matrix(pick_a, pick_b) if pick_a is not refs else np.diag(
            [whole.gram_inner(r, r) for r in refs])
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert crossed.counts["feature_fallback"] == 0
    # a block spanning pairs that are no cell (two layers of A): NaN there, nothing recomputed
    h = crossed.gram_inner_matrix(refs[:2], refs[1:4])
    assert np.isnan(h[0, :2]).all() and np.isnan(h[1, 1]) and np.isfinite(h[1, 0]) and np.isfinite(h[:, 2]).all()
    assert crossed.counts["feature_fallback"] == 0
    # a pair the plan did not name (two layers of A) falls back to the whole joint block
    np.testing.assert_allclose(crossed.cross_product(refs[0], refs[1]),
                               whole.cross_product(refs[0], refs[1]), rtol=1e-12)  # fmt: skip
    assert crossed.counts["feature_fallback"] == 1


def test_planner_flops_drop_to_the_cross_blocks() -> None:
    """The benchmark's tall shape: two stores × 6 layers of 256, n = 2000."""
    n, width = 2000, 256
    costs = [LayerCost(f"{s}:l{i}", f"{s}:l{i}", width, 4, True) for s in "ab" for i in range(6)]
    keys_a, keys_b = tuple(c.key for c in costs[:6]), tuple(c.key for c in costs[6:])
    whole = make_plan(n, costs, n_pairs=36, side="feature")
    crossed = make_plan(n, costs, n_pairs=36, side="feature", feature_blocks=[(keys_a, keys_b)])
    total = 12 * width
    assert whole.flops == pytest.approx(n * total**2)
    # one GEMM 1536×1536 (2·n·1536²) and twelve SYRKs of 256 columns (n·256² each)
    assert crossed.flops == pytest.approx(n * (2 * (6 * width) ** 2 + 12 * width**2))
    assert crossed.flops / whole.flops == pytest.approx(0.5833, abs=1e-3)
    assert crossed.peak_bytes < whole.peak_bytes
    # within: the stores' own blocks are needed too; all of it is the whole joint block
    within = make_plan(n, costs, n_pairs=36, side="feature",
                       feature_blocks=[(keys_a, keys_b), (keys_a, keys_a), (keys_b, keys_b)])  # fmt: skip
    assert within.feature_blocks == () and within.flops == whole.flops
    assert isinstance(crossed.strategy, Stacked) and isinstance(crossed, Plan)


def test_two_store_run_equals_the_whole_joint_run(make_store, monkeypatch) -> None:
    a = make_store(layers(3, 3, np.float64), name="A")
    b = make_store(layers(4, 3, np.float64), name="B")
    metrics = ["cka", "cka:debiased=true"]
    planned: list[tuple[object, ...]] = []
    real = plan_module.cross_blocks

    def spy(*args):  # type: ignore[no-untyped-def]
        planned.append(real(*args))
        return planned[-1]

    monkeypatch.setattr(plan_module, "cross_blocks", spy)
    crossed = compare_models([a, b], metrics, side="feature", block_rows=40)
    assert crossed.attrs["side"] == "feature"
    assert len(planned) == 1 and len(planned[0]) == 1  # the A×B block only
    monkeypatch.setattr(plan_module, "BLOCKS_WORTH", 0.0)  # the whole joint block, as before
    whole = compare_models([a, b], metrics, side="feature", block_rows=40)
    for spec in metrics:
        np.testing.assert_allclose(crossed.get(spec).value, whole.get(spec).value, rtol=1e-12)
    assert planned[-1] == ()
