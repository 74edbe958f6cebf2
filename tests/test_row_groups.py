"""Row groups: Procrustes and shape pair one layer with several in one GEMM, over groups of cells
that the layout alone fixes — the same values as pair by pair, and the same bits in any shard."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from repsim_cli.compare import compare_stores
from repsim_cli.metrics import procrustes as proc_module
from repsim_cli.metrics.procrustes import procrustes_distance, shape_distance
from repsim_cli.schedule import ROW_GROUP_BYTES, Shard, matrix_cells, row_groups, shard_cells


@given(st.integers(1, 7), st.integers(1, 9), st.booleans(), st.integers(1, 6),
       st.lists(st.integers(1, 40), min_size=9, max_size=9))
def test_groups_are_fixed_by_the_layout_whatever_is_pending(la, lb, upper, count, widths):
    if upper:
        lb = la
    cells = matrix_cells(la, lb, upper)
    col_bytes = [w * ROW_GROUP_BYTES / 100 for w in widths[:lb]]
    whole = row_groups(cells, cells, col_bytes)
    covered = sorted((rows[0], j) for rows, cols in whole for j in cols)
    assert covered == sorted(cells)
    for rows, cols in whole:  # consecutive runs within the byte cap (a single wider column alone)
        assert len(rows) == 1 and cols == sorted(cols)
        assert len(cols) == 1 or sum(col_bytes[j] for j in cols) <= ROW_GROUP_BYTES
    for k in range(1, count + 1):
        share = shard_cells(cells, Shard(k, count))
        groups = row_groups(cells, share, col_bytes)
        assert all(g in whole for g in groups)
        assert set(share) <= {(rows[0], j) for rows, cols in groups for j in cols}


def test_skipped_cells_are_in_no_group():
    cells = matrix_cells(3, 3, True)
    groups = row_groups(cells, cells, [1.0] * 3, skip=[(i, i) for i in range(3)])
    assert groups == [([0], [1, 2]), ([1], [2])]


def layers(seed: int, n: int = 150, width: int = 40) -> dict[str, np.ndarray]:
    """Five related layers (p = 40…44 < n: the feature side), means 300× the spread — wide enough
    that a GEMM's bits depend on how many columns it is given (so the shard test can fail)."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 5))
    return {f"l{k}": base @ rng.standard_normal((5, width + k)) + 0.5 * rng.standard_normal((n, width + k))
            + 300.0 for k in range(5)}  # fmt: skip


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    from repsim_cli.store.importers import import_arrays

    out = []
    for seed in (1, 2):
        folder = tmp_path_factory.mktemp(f"rows{seed}")
        sources = []
        for name, arr in layers(seed).items():
            np.save(folder / f"{name}.npy", arr)
            sources.append(f"{name}={folder / f'{name}.npy'}")
        import_arrays(sources, folder / "s.h5")
        out.append(folder / "s.h5")
    return out


@pytest.mark.parametrize("metric", ["procrustes", "shape", "shape:score=euclidean"])
def test_a_row_in_one_gemm_equals_the_pairwise_definition(two_stores, monkeypatch, metric):
    calls = []
    real = proc_module.row_inner_products

    def spy(a, bs, scratch):
        calls.append(len(bs))
        return real(a, bs, scratch)

    monkeypatch.setattr(proc_module, "row_inner_products", spy)
    res = compare_stores(*two_stores, [metric], side="feature")
    assert calls and max(calls) == 5  # each row of A against all of B at once
    a, b = layers(1), layers(2)
    got = res.metrics[metric].value
    for i, x in enumerate(a.values()):
        for j, y in enumerate(b.values()):
            if metric == "procrustes":
                want = procrustes_distance(x, y)
            else:
                want = shape_distance(x, y, score=metric.partition("=")[2] or "angular")
            assert got[i, j] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("count", [2, 3, 7])
def test_shards_and_one_store_runs_give_the_same_bits(two_stores, count):
    for stores in (two_stores, (two_stores[0], None)):
        whole = compare_stores(*stores, ["procrustes", "shape"], side="feature")
        for name in ("procrustes", "shape"):
            merged = np.full(whole.metrics[name].value.shape, np.nan)
            for k in range(1, count + 1):
                part = compare_stores(*stores, [name], side="feature", shard=Shard(k, count))
                done = part.metrics[name].computed
                done = np.ones_like(merged, dtype=bool) if done is None else done
                merged[done] = part.metrics[name].value[done]
            np.testing.assert_array_equal(merged, whole.metrics[name].value)


@pytest.mark.parametrize("kept", [1, 8, 18, 33])  # 8, 18, 33 leave rows with 2-3 cells to do
def test_a_resumed_run_gives_the_same_bits(two_stores, tmp_path, kept):
    """A feature-side Procrustes/shape run killed after ``kept`` journalled cells and resumed
    computes only the rest — in the layout's row groups, not in groups of what is left — and
    ends with the whole run's bits."""
    from resume_helpers import run_killed_and_resumed

    whole, resumed = run_killed_and_resumed(list(two_stores), ["procrustes", "shape"], tmp_path / "r.h5",
                                            kept, side="feature")  # fmt: skip
    for name in ("procrustes", "shape"):
        np.testing.assert_array_equal(resumed.metrics[name].value, whole.metrics[name].value)
