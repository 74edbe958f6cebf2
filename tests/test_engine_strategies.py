"""The engine's sample-side strategies, one by one: what each holds, how it gives whole Grams and
inner products ⟨Kc_a, Kc_b⟩, and when the planner chooses it.

Every strategy is run on in-memory layers (:class:`repsim_cli.arrays.ArrayStore`) and checked
against Grams computed here with numpy in float64 (Kc = XcXcᵀ, Xc the column-centred layer).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from repsim_cli.arrays import ArrayStore
from repsim_cli.engine import GramEngine, LayerCost, LayerRef, Plan, make_plan
from repsim_cli.engine.plan import choose_sample_strategy
from repsim_cli.engine.strategies import (
    INNER_GROUP,
    MIN_TILE_ROWS,
    Packed,
    SampleStrategy,
    Spilled,
    Stacked,
    Tiled,
)
from repsim_cli.engine.strategies.base import layer_working_set
from repsim_cli.errors import DataError

MiB = 1024**2
N = 50


def make_layers(count: int, n: int = N, dtype: type = np.float64, seed: int = 0) -> dict[str, np.ndarray]:
    """Layers sharing a latent factor, with large offsets (so centring matters)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    return {
        f"l{i}": (z @ rng.standard_normal((3, 4 + i % 5)) + 0.3 * rng.standard_normal((n, 4 + i % 5))
                  + 100.0 * rng.uniform(-1, 1, 4 + i % 5)).astype(dtype)
        for i in range(count)
    }  # fmt: skip


def dense_gram(x: np.ndarray) -> np.ndarray:
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    return xc @ xc.T


def engine_for(layers: dict[str, np.ndarray], strategy: SampleStrategy, tmp_path=None) -> GramEngine:
    """A sample-side engine over ``layers`` running ``strategy`` (planned by hand, not by budget)."""
    store = ArrayStore(layers, "<mem>")
    refs = [LayerRef(f"a:{name}", store, name) for name in layers]
    dtype = "float32" if all(a.dtype == np.float32 for a in layers.values()) else "float64"
    costs = tuple(
        LayerCost(r.key, r.label, r.width, np.dtype(dtype).itemsize, False) for r in refs
    )
    plan = Plan(
        side="sample", n=store.n_samples, compute_dtype=dtype, budget=1 << 40, block_rows=0,
        layers=costs, peak_bytes=0, flops=0.0, bytes_read=0, strategy=strategy,
    )  # fmt: skip
    return GramEngine(refs, plan, cache_dir=tmp_path)


def all_inner(engine: GramEngine) -> np.ndarray:
    return engine.gram_inner_matrix(engine.refs, engine.refs)


def expected_inner(layers: dict[str, np.ndarray]) -> np.ndarray:
    grams = [dense_gram(x) for x in layers.values()]
    return np.array([[float(np.vdot(a, b)) for b in grams] for a in grams])


def gram_counts(engine: GramEngine) -> list[int]:
    return [engine.counts["gram:" + r.key] for r in engine.refs]


def costs_for(widths, itemsize=8, chunk_bytes=0) -> list[LayerCost]:
    return [LayerCost(f"l{i}", f"l{i}", w, itemsize, True, chunk_bytes) for i, w in enumerate(widths)]


# ------------------------------------------------------------------------------------- stacked
def test_stacked_holds_whole_grams_built_once_and_gives_exact_inner_products() -> None:
    # more layers than one inner-product group, so that pairs across two groups are exercised
    layers = make_layers(INNER_GROUP + 3)
    engine = engine_for(layers, Stacked(peak_bytes=0.0, flops=0.0))
    inner = all_inner(engine)
    np.testing.assert_allclose(inner, expected_inner(layers), rtol=1e-10)
    np.testing.assert_array_equal(inner, inner.T)  # a pair and its swap read the same block
    for ref, x in zip(engine.refs, layers.values(), strict=True):
        gram = engine.centered_gram(ref)
        np.testing.assert_allclose(gram, dense_gram(x), rtol=1e-10, atol=1e-8)
        assert np.shares_memory(engine.centered_gram(ref), gram)  # held, not rebuilt
        np.testing.assert_array_equal(engine.row_sqnorms(ref), np.diag(gram))
    assert gram_counts(engine) == [1] * len(layers)  # each Gram built once, whatever was asked


def test_stacked_gram_then_inner_reuses_the_held_gram() -> None:
    layers = make_layers(3)
    engine = engine_for(layers, Stacked(peak_bytes=0.0, flops=0.0))
    first = engine.centered_gram(engine.refs[1]).copy()
    all_inner(engine)
    np.testing.assert_array_equal(engine.centered_gram(engine.refs[1]), first)
    assert gram_counts(engine) == [1, 1, 1]


# -------------------------------------------------------------------------------------- packed
def test_packed_inner_products_are_the_stacked_ones_bit_for_bit() -> None:
    """Packed keeps the triangles in the GEMM dtype; the chunks it reads are those stacked cuts
    from whole Grams, so float32 layers give identical bits."""
    layers = make_layers(INNER_GROUP + 2, dtype=np.float32, seed=1)
    packed = engine_for(layers, Packed(peak_bytes=0.0, flops=0.0))
    stacked = engine_for(layers, Stacked(peak_bytes=0.0, flops=0.0))
    np.testing.assert_array_equal(all_inner(packed), all_inner(stacked))
    np.testing.assert_allclose(all_inner(packed), expected_inner(layers), rtol=1e-5)
    assert gram_counts(packed) == [1] * len(layers)


def test_packed_gives_row_norms_but_never_a_whole_gram() -> None:
    layers = make_layers(2)
    engine = engine_for(layers, Packed(peak_bytes=0.0, flops=0.0))
    ref = engine.refs[0]
    np.testing.assert_allclose(engine.row_sqnorms(ref), np.diag(dense_gram(layers["l0"])), rtol=1e-12)
    with pytest.raises(RuntimeError, match="triangles only"):
        engine.centered_gram(ref)
    assert gram_counts(engine) == [1, 0]


# ------------------------------------------------------------------------------------- spilled
def test_spilled_builds_each_gram_once_and_reads_evicted_ones_back(tmp_path) -> None:
    layers = make_layers(5, seed=2)
    strategy = Spilled(peak_bytes=0.0, flops=0.0, capacity=2)
    engine = engine_for(layers, strategy, tmp_path / "cache")
    first = [engine.centered_gram(r).copy() for r in engine.refs]  # evicts all but two
    inner = all_inner(engine)
    np.testing.assert_allclose(inner, expected_inner(layers), rtol=1e-10)
    for ref, gram in zip(engine.refs, first, strict=True):
        np.testing.assert_array_equal(engine.centered_gram(ref), gram)  # from disk: same bits
    assert gram_counts(engine) == [1] * 5
    assert engine.cache_path is not None
    assert sorted(p.name for p in engine.cache_path.iterdir()) == [f"gram{i}.npy" for i in range(5)]
    engine.close()
    assert list((tmp_path / "cache").iterdir()) == []


def test_spilled_estimate_holds_what_the_budget_leaves() -> None:
    layers = costs_for([10, 20, 30, 15])
    gram = 300 * 300 * 8
    working = layer_working_set(300, layers, 8)
    budget = working + 3 * gram + gram // 2
    strategy = choose_sample_strategy(300, layers, 8, 10, budget, full_gram=True)
    assert isinstance(strategy, Spilled)
    assert strategy.capacity == 3 == strategy.gram_capacity
    assert strategy.peak_bytes == working + 3 * gram <= budget
    assert "3 held in memory" in (strategy.note() or "")


# --------------------------------------------------------------------------------------- tiled
def test_tiled_gives_exact_inner_products_and_row_norms_without_a_gram() -> None:
    layers = make_layers(4, seed=3)
    rows = 16
    engine = engine_for(layers, Tiled(peak_bytes=0.0, flops=0.0, rows=rows))
    inner = all_inner(engine)
    np.testing.assert_allclose(inner, expected_inner(layers), rtol=1e-10)
    blocks = -(-N // rows)
    for ref, x in zip(engine.refs, layers.values(), strict=True):
        np.testing.assert_allclose(engine.row_sqnorms(ref), np.diag(dense_gram(x)), rtol=1e-12)
        # the column-mean pass, then block i read once as held and once per earlier held block
        assert engine.counts["read:" + ref.key] == 1 + blocks * (blocks + 1) // 2
    assert gram_counts(engine) == [1] * 4  # one tiled pass served every pair


def test_tiled_builds_a_whole_gram_only_on_demand() -> None:
    layers = make_layers(2, seed=4)
    engine = engine_for(layers, Tiled(peak_bytes=0.0, flops=0.0, rows=16))
    ref = engine.refs[1]
    gram = engine.centered_gram(ref)
    np.testing.assert_allclose(gram, dense_gram(layers["l1"]), rtol=1e-10, atol=1e-8)
    assert engine.centered_gram(ref) is gram  # the last one is kept
    assert engine.cache_path is None  # nothing spills
    assert gram_counts(engine) == [0, 1]


def test_tiled_estimate_fits_the_budget_and_counts_the_passes() -> None:
    n = 2000
    layers = costs_for([40, 60, 50], itemsize=4, chunk_bytes=64 * 1024)
    budget = 8 * MiB
    strategy = choose_sample_strategy(n, layers, 4, 6, budget, full_gram=False)
    assert isinstance(strategy, Tiled)
    assert MIN_TILE_ROWS <= strategy.tile_rows < n
    assert strategy.peak_bytes <= budget
    t = strategy.tile_rows
    m = -(-n // t)
    # block j (of m) is read j + 1 times; only the last block may be short
    assert strategy.passes == pytest.approx(sum((j + 1) * min(t, n - j * t) for j in range(m)) / n)
    assert (m + 1) / 2 - 1 < strategy.passes <= (m + 1) / 2


# ---------------------------------------------------------------------------- all strategies
STRATEGIES = [
    Stacked(peak_bytes=0.0, flops=0.0),
    Packed(peak_bytes=0.0, flops=0.0),
    Spilled(peak_bytes=0.0, flops=0.0, capacity=1),
    Tiled(peak_bytes=0.0, flops=0.0, rows=20),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
def test_every_strategy_gives_the_same_inner_products(strategy, tmp_path) -> None:
    layers = make_layers(5, seed=5)
    engine = engine_for(layers, strategy, tmp_path)
    np.testing.assert_allclose(all_inner(engine), expected_inner(layers), rtol=1e-10)
    engine.close()


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.name)
def test_every_strategy_refuses_a_constant_layer(strategy, tmp_path) -> None:
    layers = make_layers(2, seed=6)
    layers["l1"] = np.full_like(layers["l1"], 3.5)
    engine = engine_for(layers, strategy, tmp_path)
    with pytest.raises(DataError, match="constant layer"):
        all_inner(engine)
    engine.close()


def test_strategies_are_immutable_values_named_once() -> None:
    names = [type(s).name for s in STRATEGIES]
    assert names == ["stacked", "packed", "spilled", "tiled"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        STRATEGIES[0].peak_bytes = 1.0


# -------------------------------------------------------------------------------------- planner
def test_planner_prefers_whole_grams_in_memory_then_spills() -> None:
    layers = costs_for([10, 20, 30])
    stacked = choose_sample_strategy(300, layers, 8, 6, 1 << 40, full_gram=True)
    assert isinstance(stacked, Stacked)
    assert stacked.peak_bytes == 3 * 300 * 300 * 8 + layer_working_set(300, layers, 8)
    spilled = choose_sample_strategy(300, layers, 8, 6, int(stacked.peak_bytes) - 1, full_gram=True)
    assert isinstance(spilled, Spilled) and spilled.capacity == 2
    # below two Grams and a working set not even spilling fits: stacked, for make_plan to refuse
    tiny = choose_sample_strategy(300, layers, 8, 6, 1024, full_gram=True)
    assert isinstance(tiny, Stacked)


def test_planner_prefers_packed_triangles_then_tiles() -> None:
    layers = costs_for([10, 20, 30], chunk_bytes=4096)
    packed = choose_sample_strategy(1000, layers, 8, 6, 1 << 40, full_gram=False)
    assert isinstance(packed, Packed)
    stacked = Stacked.estimate(1000, layers, 8, 6)
    assert packed.peak_bytes < stacked.peak_bytes and packed.flops < stacked.flops
    tiled = choose_sample_strategy(1000, layers, 8, 6, int(packed.peak_bytes) - 1, full_gram=False)
    assert isinstance(tiled, Tiled)


@pytest.mark.parametrize(
    ("budget", "full_gram", "kind"),
    [(1 << 40, True, Stacked), (1 << 40, False, Packed), (4 * MiB, False, Tiled)],
)
def test_plan_carries_the_chosen_strategy_and_reports_its_name(budget, full_gram, kind) -> None:
    layers = costs_for([10, 20, 30], itemsize=4, chunk_bytes=4096)
    plan = make_plan(1000, layers, n_pairs=6, budget=budget, side="sample", full_gram=full_gram)
    assert type(plan.strategy) is kind
    assert plan.peak_bytes == int(plan.strategy.peak_bytes) and plan.flops == plan.strategy.flops
    out = plan.to_dict()
    assert out["mode"] == kind.name and isinstance(out["mode"], str)
    assert out["tile_rows"] == plan.strategy.tile_rows
    assert out["gram_capacity"] == plan.strategy.gram_capacity
    assert plan.describe().startswith(f"side: sample, {kind.name} ")


def test_plan_adds_the_metrics_reserved_memory_to_the_strategy_peak() -> None:
    layers = costs_for([10, 20, 30])
    bare = make_plan(200, layers, n_pairs=6, budget=1 << 40, side="sample")
    reserved = 3 * 200 * 200 * 8  # one layer's prepare working set and a pair of states
    cached = make_plan(200, layers, n_pairs=6, budget=1 << 40, side="sample", reserved_bytes=reserved)
    assert cached.strategy.peak_bytes == bare.strategy.peak_bytes + reserved
    assert dataclasses.replace(cached.strategy, peak_bytes=bare.strategy.peak_bytes) == bare.strategy
