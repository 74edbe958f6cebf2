"""compare's statistics, second round (repsim_cli.stats): the packed jackknife, batched
permutations, the kernels' memory, duplicates on the generic path, dcor's jackknife."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from repsim_cli._warnings import RepsimWarning
from repsim_cli.arrays import ArrayStore
from repsim_cli.compare import prepare_models
from repsim_cli.stats.loo import double_centre
from repsim_cli.stats.packed import group_rowdots
from repsim_cli.stats.runner import StatsOptions, attach_statistics


def run_with(layers: dict[str, np.ndarray], metric: str, opts: StatsOptions, **kw: object):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepsimWarning)
        comparison = prepare_models([("m", ArrayStore(layers))], [metric], precision="float64", **kw)  # type: ignore[arg-type]
        attach_statistics(comparison, opts)
        try:
            return comparison.run().metrics[metric], comparison
        finally:
            comparison.close()


def _centred_grams(rng: np.random.Generator, n: int, count: int, offset: float = 0.5) -> list[np.ndarray]:
    grams = []
    for _ in range(count):
        x = rng.normal(size=(n, 9)) + offset
        xc = x - x.mean(axis=0)
        grams.append(xc @ xc.T)
    return grams


def _stack(grams: list[np.ndarray], dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    iu = np.triu_indices(grams[0].shape[0], 1)
    return np.stack([g[iu] for g in grams]).astype(dtype), np.stack([np.diag(g).copy() for g in grams])


def test_rowdots_from_packed_triangles_are_the_dense_ones() -> None:
    """Every pair's rowdots — within a group, across groups, either orientation, a layer with
    itself — equal (K_a∘K_b)1 of the dense Grams, over several row tiles with a short last one."""
    rng = np.random.default_rng(3)
    n = 203
    grams = _centred_grams(rng, n, 5)
    groups = [_stack(grams[:3]), _stack(grams[3:])]
    place = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    pairs = [(0, 0), (0, 1), (2, 1), (3, 4), (4, 0), (1, 3), (4, 4)]
    hs = group_rowdots([g[0] for g in groups], [g[1] for g in groups],
                       [(place[a], place[b]) for a, b in pairs], n)  # fmt: skip
    for (a, b), h in zip(pairs, hs, strict=True):
        np.testing.assert_allclose(h, np.einsum("ij,ij->i", grams[a], grams[b]), rtol=1e-12)


def test_packed_plan_jackknife_equals_the_whole_kernel_one() -> None:
    """The sample side's packed plan takes the triangle path; its std errors and dominated
    examples are those of the whole-kernel closed form (the feature side builds XcXcᵀ)."""
    rng = np.random.default_rng(5)
    layers = {f"l{i}": rng.normal(size=(150, 20)) + (i + 1) * rng.normal(size=(150, 1)) for i in range(3)}
    opts = StatsOptions(jackknife=True)
    packed, cmp = run_with(layers, "cka", opts, side="sample")
    assert type(cmp.engine._grams).__name__ == "PackedGrams"
    assert cmp.statistics is not None and len(cmp.statistics._packed_loo) == 3  # the triangle path ran
    whole, cmp2 = run_with(layers, "cka", opts, side="feature")
    assert cmp2.statistics is not None and not cmp2.statistics._packed_loo
    assert packed.std_error is not None and whole.std_error is not None
    np.testing.assert_allclose(packed.std_error, whole.std_error, rtol=1e-10)


def test_batched_permutations_are_the_per_column_ones() -> None:
    """All cells of a block from one batched GEMM: the same null inner products as the
    per-column reference (:func:`permuted_inner`) to 1e-12, with the same permutations, over
    several triangle segments and column chunks."""
    from repsim_cli.stats import nulls
    from repsim_cli.stats.resample import permutations

    rng = np.random.default_rng(8)
    n = 60
    ks = [double_centre((x := rng.normal(size=(n, 5))) @ x.T) for _ in range(3)]
    perms = permutations(4, n, 23)
    old_segment = nulls.SEGMENT
    try:
        nulls.SEGMENT = 700  # several segments, the last one short
        new = nulls.permuted_inner_batch(ks, ks[1:], perms)
    finally:
        nulls.SEGMENT = old_segment
    ref = np.stack([nulls.permuted_inner(ks, lb, perms) for lb in ks[1:]], axis=1)
    np.testing.assert_allclose(new, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_permutation_p_values_unchanged_by_batching() -> None:
    """compare --permutations gives the p-values of the per-column computation (same seed)."""
    from repsim_cli.stats import nulls

    rng = np.random.default_rng(12)
    base = rng.normal(size=(40, 6))
    layers = {f"l{i}": base + (i + 1) * rng.normal(size=(40, 6)) for i in range(3)}
    opts = StatsOptions(permutations=49, seed=3)
    res, _ = run_with(layers, "cka", opts)
    # the per-column reference, through the same runner
    real = nulls.permuted_inner_batch

    def per_column(ks, ls, perms):
        return np.stack([nulls.permuted_inner(ks, lb, perms) for lb in ls], axis=1)

    from repsim_cli.stats import runner

    runner.permuted_inner_batch = per_column  # type: ignore[assignment]
    try:
        ref, _ = run_with(layers, "cka", opts)
    finally:
        runner.permuted_inner_batch = real
    np.testing.assert_array_equal(res.stats["p_value"], ref.stats["p_value"])
    np.testing.assert_allclose(res.stats["null_mean"], ref.stats["null_mean"], rtol=1e-12)


def test_kernel_memory_is_counted_against_the_budget() -> None:
    """The kernel path's n×n kernels and its working memory count against --memory: a budget
    the plan alone fits but the kernels do not is refused, naming the budget needed; a larger one
    runs, with the states' budget reduced by what the kernels take."""
    from repsim_cli.errors import RepsimError

    rng = np.random.default_rng(0)
    layers = {f"l{i}": rng.normal(size=(300, 40)) for i in range(3)}
    memory = 8_000_000
    plain = prepare_models([("m", ArrayStore(layers))], ["cka"], precision="float64", memory=memory)
    assert plain.plan.peak_bytes < memory
    plain.close()
    with pytest.raises(RepsimError, match=r"3 kernels of 300×300 float64 .* give --memory \d"):
        prepare_models([("m", ArrayStore(layers))], ["cka"], precision="float64", memory=memory,
                       statistics=StatsOptions(permutations=9))  # fmt: skip
    big = 200_000_000
    base = prepare_models([("m", ArrayStore(layers))], ["cka"], precision="float64", memory=big)
    with_stats = prepare_models([("m", ArrayStore(layers))], ["cka"], precision="float64", memory=big,
                                statistics=StatsOptions(permutations=9))  # fmt: skip
    assert with_stats.statistics is not None
    held, count, working = with_stats.statistics.memory_need()
    assert count == 3 and held == 3 * 300 * 300 * 8
    assert with_stats.states.budget == base.states.budget - held - working
    assert any("kernel-path memory: 3 kernels" in line for line in with_stats.statistics.describe())
    base.close()
    with_stats.close()


def test_dcor_jackknife_is_closed_form_and_equals_brute_force() -> None:
    """--jackknife for dcor from the closed form (no recomputation), equal to the brute-force
    leave-one-out distance correlations to 1e-10."""
    from repsim_cli.metrics.dcor import distance_correlation
    from repsim_cli.stats import runner
    from repsim_cli.stats.jackknife import jackknife_se

    rng = np.random.default_rng(21)
    n = 30
    x = rng.normal(size=(n, 4))
    y = np.tanh(x @ rng.normal(size=(4, 3))) + 0.3 * rng.normal(size=(n, 3))
    real = runner.matrix_on_rows

    def no_recompute(*args: object, **kw: object) -> None:
        raise AssertionError("the generic path recomputed dcor")

    runner.matrix_on_rows = no_recompute  # type: ignore[assignment]
    try:
        res, _ = run_with({"x": x, "y": y}, "dcor", StatsOptions(jackknife=True))
    finally:
        runner.matrix_on_rows = real
    loo = np.array([distance_correlation(np.delete(x, k, 0), np.delete(y, k, 0)) for k in range(n)])
    assert res.std_error is not None
    np.testing.assert_allclose(res.std_error[0, 1], jackknife_se(loo), rtol=1e-10)
    assert res.std_error[1, 0] == res.std_error[0, 1]


def test_generic_bootstrap_keeps_copies_for_cca_as_documented() -> None:
    """The README's duplicates policy for the generic path: cca replicates are the metric on the
    resampled rows as they are (a copy is a row counted twice — no pairwise term to exclude;
    dcor's replicates exclude copy–copy pairs: tests/test_bootstrap_copies.py)."""
    from repsim_cli.arrays import dense_value
    from repsim_cli.stats.resample import bootstrap_indices

    rng = np.random.default_rng(31)
    n = 40
    x = rng.normal(size=(n, 3))
    y = x @ rng.normal(size=(3, 2)) + 0.5 * rng.normal(size=(n, 2))
    opts = StatsOptions(bootstrap=9, seed=6, ci=0.8)
    idx = bootstrap_indices(6, n, 9)
    for metric, direct in (("cca", lambda a, b: dense_value("cca", a, b, {})),):
        res, _ = run_with({"x": x, "y": y}, metric, opts)
        reps = np.array([direct(x[i], y[i]) for i in idx])
        lo, hi = np.quantile(reps, [0.1, 0.9])
        np.testing.assert_allclose([res.stats["ci_low"][0, 1], res.stats["ci_high"][0, 1]], [lo, hi], rtol=1e-8)


def test_float32_triangles_give_exact_products() -> None:
    """Triangles held in float32 (the engine's GEMM dtype for float32 layers) are widened before
    any product: the rowdots are those of the same float32 values in float64 arithmetic."""
    rng = np.random.default_rng(4)
    n = 150
    grams = [g.astype(np.float32).astype(np.float64) for g in _centred_grams(rng, n, 3, offset=1000.0)]
    tri, diag = _stack(grams, np.float32)
    hs = group_rowdots([tri], [diag], [((0, 0), (0, 2)), ((0, 1), (0, 1))], n)
    np.testing.assert_allclose(hs[0], np.einsum("ij,ij->i", grams[0], grams[2]), rtol=1e-13)
    np.testing.assert_allclose(hs[1], np.einsum("ij,ij->i", grams[1], grams[1]), rtol=1e-13)


def test_rowdots_are_bitwise_the_same_for_any_threads_and_any_pairs_asked(monkeypatch) -> None:
    """A pair's rowdots have the same bits whether 1, 2 or 3 threads computed them and whatever
    other pairs were asked with it (a shard or a resumed run asks fewer)."""
    from repsim_cli.stats import packed

    rng = np.random.default_rng(7)
    n = 170
    grams = _centred_grams(rng, n, 6, offset=2.0)
    groups = [_stack(grams[:4]), _stack(grams[4:])]
    place = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    every = [(a, b) for a in range(6) for b in range(a, 6)]

    def rowdots(pairs: list[tuple[int, int]]) -> list[np.ndarray]:
        return group_rowdots([g[0] for g in groups], [g[1] for g in groups],
                             [(place[a], place[b]) for a, b in pairs], n)  # fmt: skip

    results = []
    for workers in (1, 2, 3):
        monkeypatch.setattr(packed, "worker_count", lambda tasks, w=workers: w)
        results.append(rowdots(every))
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other, strict=True))
    for subset in ([(1, 4)], [(5, 2), (0, 0)], [(3, 1)]):
        for (a, b), h in zip(subset, rowdots(subset), strict=True):
            assert np.array_equal(h, results[0][every.index((min(a, b), max(a, b)))])


def test_the_packed_jackknife_reads_the_engines_triangles_in_place(monkeypatch) -> None:
    """The jackknife takes the engine's Grams (of centred data, means 50× the spread) as they
    are held — its packed triangles, not copies — in the engine's groups."""
    from repsim_cli.stats import runner

    seen = []
    real = runner.group_rowdots

    def spy(stacks, diags, pairs, n):
        seen.append(stacks)
        return real(stacks, diags, pairs, n)

    monkeypatch.setattr(runner, "group_rowdots", spy)
    rng = np.random.default_rng(6)
    layers = {f"l{i}": rng.normal(size=(120, 15)) + 50.0 for i in range(3)}
    run_with(layers, "cka", StatsOptions(jackknife=True), side="sample")
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].shape == (3, 120 * 119 // 2)
    assert seen[0][0].base is not None  # a view of what the engine held


def test_jackknife_alone_is_bitwise_the_same_in_shards_and_a_resumed_run(make_store, tmp_path) -> None:
    """The packed jackknife's std errors over 18 layers (two engine groups) are the same bits
    when three shards are merged and when a killed run is resumed."""
    from resume_helpers import run_killed_and_resumed

    from repsim_cli.compare import CompareOptions, compare_models
    from repsim_cli.merge import merge_results
    from repsim_cli.schedule import Shard

    rng = np.random.default_rng(8)
    base = rng.normal(size=(40, 6))
    layers = {f"l{i:02d}": (base + 0.7 * rng.normal(size=(40, 6))).astype(np.float32) for i in range(18)}
    path = make_store(layers)
    opts = StatsOptions(jackknife=True)

    def run(**kw: object):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RepsimWarning)
            return compare_models([path], ["cka"], options=CompareOptions(statistics=opts), **kw)  # type: ignore[arg-type]

    whole = run(out=tmp_path / "whole.h5").metrics["cka"]
    assert whole.std_error is not None and np.isfinite(whole.std_error[np.triu_indices(18)]).all()
    parts = [tmp_path / f"part{k}.h5" for k in (1, 2, 3)]
    for k, part in enumerate(parts, 1):
        run(out=part, shard=Shard(k, 3))
    merged = merge_results(parts).metrics["cka"]
    np.testing.assert_array_equal(merged.std_error, whole.std_error)
    np.testing.assert_array_equal(merged.value, whole.value)

    _, resumed_run = run_killed_and_resumed([path], ["cka"], tmp_path / "r.h5", 2, opts)
    resumed = resumed_run.metrics["cka"]
    np.testing.assert_array_equal(resumed.std_error, whole.std_error)


def test_kernel_path_leave_one_out_is_brute_force_and_the_same_bits_for_any_cells_asked() -> None:
    """The kernel path's leave-one-out values (debiased CKA: row sums and their products too)
    over 18 layers (two engine groups): equal to brute-force recomputation, and bitwise the same
    whether a cell is asked with all the others or alone, by a fresh run (a shard or a resume)."""
    from repsim_cli.metrics.cka import linear_cka
    from repsim_cli.stats.runner import CellStatistics

    rng = np.random.default_rng(9)
    n = 300  # long enough rows that a GEMM's bits would follow its shape (the test can fail)
    base = rng.normal(size=(n, 4))
    layers = {f"l{i:02d}": base @ rng.normal(size=(4, 5)) + rng.normal(size=(n, 5)) for i in range(18)}
    opts = StatsOptions(bootstrap=4, jackknife=True)
    comparison = prepare_models([("m", ArrayStore(layers))], ["cka:debiased=true"], precision="float64")  # type: ignore[list-item]
    try:
        spec = comparison.specs[0]
        cells = [(i, j) for i in range(18) for j in range(i, 18)]
        every = CellStatistics(comparison, opts)._loo_ratios(spec, cells, True)
        for cell in [(2, 17), (5, 5), (16, 17), (0, 3)]:
            alone = CellStatistics(comparison, opts)._loo_ratios(spec, [cell], True)[cell]
            assert np.array_equal(alone, every[cell], equal_nan=True), cell
        names = list(layers)
        for i, j in [(2, 17), (0, 3)]:
            x, y = layers[names[i]], layers[names[j]]
            brute = [linear_cka(np.delete(x, k, 0), np.delete(y, k, 0), debiased=True) for k in range(n)]
            np.testing.assert_allclose(every[(i, j)], brute, rtol=1e-9)
    finally:
        comparison.close()


def test_an_interrupt_stops_the_kernel_rowdots_workers_at_the_next_tile(monkeypatch) -> None:
    """Ctrl-C while the leave-one-out GEMMs run: the interrupt reaches the caller and the worker
    stops at its next tile instead of finishing every row first."""
    import os
    import signal
    import time

    from repsim_cli.stats import packed

    n = packed.ROWS * 40
    fetched: list[int] = []

    class SlowKernel:
        """Rows of a zero kernel, slowly; the first request sends SIGINT to the process."""

        def __getitem__(self, rows: slice) -> np.ndarray:
            if not fetched:
                os.kill(os.getpid(), signal.SIGINT)
            fetched.append(rows.start)
            time.sleep(0.01)
            return np.zeros((rows.stop - rows.start, n))

    monkeypatch.setattr(packed, "worker_count", lambda tasks: 1)
    with pytest.raises(KeyboardInterrupt):
        packed.kernel_rowdots([[SlowKernel()]], [((0, 0), (0, 0))], n)  # type: ignore[list-item]
    assert 1 <= len(fetched) < 40
