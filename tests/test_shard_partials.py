"""Shards of inner-product metrics divide the examples: partial sums per tile (sample side) or rows
(feature side), merged in shard order, equal a single run to 1e-12 relative."""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from repsim_cli.cli import cli
from repsim_cli.partials import balanced_range, tile_plan
from repsim_cli.schedule import Shard

CKA = ["-m", "cka", "-m", "cka:debiased=true"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def values(text: str) -> dict[tuple[str, str, str, str, str], float]:
    rows = list(csv.reader(io.StringIO(text)))[1:]
    return {(r[0], r[1], r[2], r[5], r[6]): float(r[3]) for r in rows}


def assert_close(merged: str, single: str) -> None:
    a, b = values(merged), values(single)
    assert a.keys() == b.keys() and a
    for key, v in b.items():
        assert a[key] == pytest.approx(v, rel=1e-12, abs=0), key


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from repsim_cli.store.importers import import_arrays

    root = tmp_path_factory.mktemp("partials")
    rng = np.random.default_rng(7)
    base = rng.standard_normal((61, 4))
    out = []
    for name, count in (("A", 4), ("B", 2)):
        sources = []
        for i in range(count):
            arr = np.hstack([base, rng.standard_normal((61, 3 + i))]) * (1 + i) + 5.0
            np.save(root / f"{name}{i}.npy", arr)
            sources.append(f"{name.lower()}{i}={root / f'{name}{i}.npy'}")
        import_arrays(sources, root / f"{name}.h5", chunk_rows=16)
        out.append(root / f"{name}.h5")
    return out


def shard_run(inputs, metrics, count, tmp_path, extra=(), tag="p"):
    parts = []
    for k in range(1, count + 1):
        part = tmp_path / f"{tag}{k}.h5"
        r = run("compare", *inputs, *metrics, "-o", part, "--shard", f"{k}/{count}", "-q", *extra)
        assert r.exit_code == 0, r.output
        parts.append(part)
    return parts


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("side", ["sample", "feature"])
def test_partials_merge_to_the_single_run(stores, tmp_path, count, side) -> None:
    inputs = stores if count % 2 else stores[:1]  # two stores and one store with itself
    single = run("compare", *inputs, *CKA, "--side", side, "-o", "-", "-q")
    assert single.exit_code == 0, single.output
    parts = shard_run(inputs, CKA, count, tmp_path, ("--side", side))
    merged = run("merge", *parts, "-o", "-")
    assert merged.exit_code == 0, merged.output
    assert_close(merged.stdout, single.stdout)
    # the same N gives the same bytes run after run
    again = run("merge", *shard_run(inputs, CKA, count, tmp_path, ("--side", side), tag="q"), "-o", "-")
    assert again.stdout == merged.stdout
    for k in range(1, count + 1):
        assert (tmp_path / f"q{k}.h5").read_bytes() == (tmp_path / f"p{k}.h5").read_bytes()


def test_a_missing_or_duplicated_partial_is_named(stores, tmp_path) -> None:
    a = stores[0]
    p1, p2, p3 = shard_run([a], ["-m", "cka"], 3, tmp_path)
    r = run("merge", p1, p3, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "partial sums of shard 2/3 missing" in r.output
    assert not (tmp_path / "m.h5").exists()
    r = run("merge", p1, p2, p3, p2, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and f"{p2}: shard 2/3 is given twice (also {p2})" in r.output
    copy = tmp_path / "copy.h5"
    copy.write_bytes(p3.read_bytes())
    r = run("merge", p1, p2, p3, copy, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and f"{copy}: shard 3/3 is given twice (also {p3})" in r.output
    assert not (tmp_path / "m.h5").exists()


def test_a_partial_of_another_command_is_refused(stores, make_store, tmp_path) -> None:
    a, b = stores
    p1 = shard_run([a], ["-m", "cka"], 2, tmp_path)[0]
    cases = {
        "the metrics or their parameters": (["-m", "cka:debiased=true"], [a]),
        "the stores": (["-m", "cka"], [b]),
        "the number of shards N": (["-m", "cka"], [a], "3"),
    }
    for words, (metrics, inputs, *count) in cases.items():
        n = count[0] if count else "2"
        other = tmp_path / "other.h5"
        assert run("compare", *inputs, *metrics, "-o", other, "--shard", f"2/{n}", "-q").exit_code == 0
        r = run("merge", p1, other, "-o", tmp_path / "m.h5")
        assert r.exit_code == 1 and "a partial of another command" in r.output and words in r.output, r.output
    # the same store path with other content
    rng = np.random.default_rng(1)
    path = make_store({"l0": rng.standard_normal((30, 4)), "l1": rng.standard_normal((30, 5))}, name="C")
    q1 = shard_run([path], ["-m", "cka"], 2, tmp_path, tag="c")[0]
    path.unlink()
    make_store({"l0": rng.standard_normal((30, 4)), "l1": rng.standard_normal((30, 5))}, name="C")
    q2 = tmp_path / "c2new.h5"
    assert run("compare", path, "-m", "cka", "-o", q2, "--shard", "2/2", "-q").exit_code == 0
    r = run("merge", q1, q2, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "the stores' content (fingerprints)" in r.output
    # partial sums and results of cells do not mix
    cells = tmp_path / "cells.h5"
    assert run("compare", a, "-m", "procrustes", "-o", cells, "--shard", "2/2", "-q").exit_code == 0
    r = run("merge", p1, cells, "-o", tmp_path / "m.h5")
    assert r.exit_code == 1 and "cannot merge partial sums" in r.output


def test_a_partial_needs_a_results_store(stores, tmp_path) -> None:
    r = run("compare", stores[0], "-m", "cka", "-o", tmp_path / "p.csv", "--shard", "1/2")
    assert r.exit_code == 1 and "writes partial sums: give -o PART.h5" in r.output


@given(st.lists(st.floats(0.5, 4.0), min_size=1, max_size=60), st.integers(1, 9))
def test_balanced_ranges_partition_the_work(costs, count) -> None:
    ranges = [balanced_range(costs, Shard(k, count)) for k in range(1, count + 1)]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(costs)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    total = sum(costs)
    for lo, hi in ranges:  # each share within one item of its fair share
        assert sum(costs[lo:hi]) <= total / count + max(costs) + 1e-9


def test_tile_plans_give_each_shard_several_tiles() -> None:
    for n, count, max_rows in ((5000, 1, 10**9), (5000, 4, 10**9), (101, 8, 10**9), (101, 2, 7)):
        plan = tile_plan(n, count, max_rows)
        tiles = plan.tiles()
        assert (count == 1 or len(tiles) >= 2.5 * count) and plan.rows <= max_rows
        # tiles and their mirrors cover the n × n Gram exactly once
        cover = np.zeros((n, n), dtype=np.int8)
        for i0, i1, j0, j1 in tiles:
            cover[i0:i1, j0:j1] += 1
            if j0 != i0:
                cover[j0:j1, i0:i1] += 1
        assert (cover == 1).all()


def test_tile_order_is_halves_and_shards_touch_few_rows() -> None:
    from repsim_cli.partials import TilePlan, tile_order, touched_runs

    assert tile_order(4) == [(0, 0), (0, 1), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)]
    for m in range(1, 20):  # every pair (I, J ≥ I) exactly once
        order = tile_order(m)
        assert sorted(order) == [(a, b) for a in range(m) for b in range(a, m)]
    # N = 4: triangle A, the two row halves of A × B, triangle B — equal flops (diagonal tiles as
    # SYRKs), each shard reading half or three quarters of the rows
    plan = tile_plan(5000, 4, 10**9)
    tiles = plan.tiles()
    costs = TilePlan.costs(tiles)
    touched, flops = [], []
    for k in range(1, 5):
        lo, hi = balanced_range(costs, Shard(k, 4))
        touched.append(sum(b - a for a, b in touched_runs(tiles[lo:hi])))
        flops.append(sum(costs[lo:hi]))
    assert touched == [2500, 3750, 3750, 2500]
    assert max(flops) / min(flops) < 1.001
    assert touched_runs([(0, 10, 20, 30), (10, 20, 20, 30)]) == [(0, 30)]
    assert touched_runs([(0, 10, 30, 40)]) == [(0, 10), (30, 40)]


def test_dry_run_shows_the_share_and_balance(stores, tmp_path) -> None:
    a, _ = stores
    r = run("compare", a, *CKA, "--side", "sample", "--shard", "2/3", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "shard 2/3:" in r.output and "tiles of examples" in r.output and "balance across 3 shards" in r.output
    r = run("compare", a, *CKA, "--side", "feature", "--shard", "2/3", "--dry-run")
    assert "rows of examples" in r.output
    r = run("compare", a, "-m", "procrustes", "--shard", "2/3", "--dry-run")
    assert "shard 2/3: 3 cells" in r.output
    r = run("compare", a, "-m", "cca", "--stage", "layers", "--state-dir", tmp_path / "s", "--shard", "1/2",
            "--dry-run")  # fmt: skip
    assert "shard 1/2: the states of 2 layers" in r.output and "balance across 2 shards" in r.output


RBF = ["-m", "cka_rbf", "-m", "cka_rbf:debiased=true,threshold=0.5"]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_rbf_partials_merge_to_the_single_run(stores, tmp_path, count) -> None:
    inputs = stores if count % 2 else stores[:1]
    single = run("compare", *inputs, *RBF, "-o", "-", "-q")
    assert single.exit_code == 0, single.output
    if count % 2:  # two stages: the bandwidths prepared once, shared through the state directory
        states = tmp_path / "states"
        for k in range(1, count + 1):
            r = run("compare", *inputs, *RBF, "--stage", "layers", "--shard", f"{k}/{count}",
                    "--state-dir", states, "-q")  # fmt: skip
            assert r.exit_code == 0, r.output
        assert len(list(states.glob("*.state"))) == 2 * 6  # two parameter sets × six layers
        parts = shard_run(inputs, RBF, count, tmp_path, ("--stage", "pairs", "--state-dir", states))
    else:  # one stage: each shard computes the bandwidths itself
        parts = shard_run(inputs, RBF, count, tmp_path)
    merged = run("merge", *parts, "-o", "-")
    assert merged.exit_code == 0, merged.output
    assert_close(merged.stdout, single.stdout)


def test_rbf_pairs_stage_needs_the_bandwidths(stores, tmp_path) -> None:
    r = run("compare", stores[0], "-m", "cka_rbf", "--stage", "pairs", "--shard", "1/2",
            "--state-dir", tmp_path / "empty", "-o", tmp_path / "p.h5")  # fmt: skip
    assert r.exit_code == 1 and "no prepared cka_rbf bandwidth of layer" in r.output
    assert "--stage layers --shard K/2" in r.output and not (tmp_path / "p.h5").exists()


def test_a_constant_layer_is_refused_at_the_merge(make_store, tmp_path) -> None:
    rng = np.random.default_rng(2)
    path = make_store({"ok": rng.standard_normal((30, 4)), "flat": np.full((30, 3), 2.5)}, name="K")
    parts = shard_run([path], ["-m", "cka"], 2, tmp_path)
    r = run("merge", *parts, "-o", tmp_path / "m.csv")
    assert r.exit_code == 1 and "layer 'flat': constant layer (zero variance)" in r.output
    assert not (tmp_path / "m.csv").exists()


def test_the_pairs_stage_without_a_shard_is_one_partial(stores, tmp_path) -> None:
    a = stores[0]
    r = run("compare", a, *CKA, "--stage", "pairs", "--state-dir", tmp_path / "s", "-o", tmp_path / "p.h5", "-q")
    assert r.exit_code == 0, r.output
    merged = run("merge", tmp_path / "p.h5", "-o", "-")
    assert_close(merged.stdout, run("compare", a, *CKA, "-o", "-", "-q").stdout)


def test_tile_shards_refuse_rows_changed_in_place(make_store, tmp_path) -> None:
    """Every shard checks the digest of each chunk it reads (in its reader thread): rows permuted
    in place (same column sums, stats and digests untouched) are refused by every shard."""
    import h5py

    rng = np.random.default_rng(3)
    data = {"l0": rng.standard_normal((40, 4)), "l1": rng.standard_normal((40, 5))}
    path = make_store(data, name="P", chunk_rows=5)
    with h5py.File(path, "r+") as f:
        f["layers/l1"][...] = data["l1"][::-1]
    for k in range(1, 5):
        r = run("compare", path, *CKA, "--side", "sample", "--shard", f"{k}/4", "-o", tmp_path / f"p{k}.h5")
        assert r.exit_code == 1 and "do not match their content digest" in r.output, r.output
        assert not (tmp_path / f"p{k}.h5").exists()
