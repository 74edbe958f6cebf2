"""``compare --scheduler``: the Dask backend equals the single process exactly (bitwise, with the
same BLAS thread count), survives a worker killed mid-run, resumes from the journal, and says
clearly what is wrong (no Dask installed, a store a worker cannot read).

Budget: about 25 s on 2 loaded cores (one shared 2-worker cluster, one ``local:2`` start).
"""

from __future__ import annotations

import gc
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.compare import journal_path, prepare_comparison, prepare_models
from repsim_cli.errors import RepsimError
from repsim_cli.integrity import comparison_content
from repsim_cli.results import read_results
from repsim_cli.schedule import Journal
from repsim_cli.store import open_store

# Sockets that distributed's comms leave for the garbage collector (under load) are its own
# business, not repsim's: their ResourceWarnings are not errors here.
pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)

# The single-process reference runs BLAS on one thread, as each Dask task does by default
# (--threads): another thread count may round the last bits of a product differently.
ONE_THREAD = ("--threads", "1")

METRICS = ["cka", "cka:debiased=true", "cca", "rsa", "procrustes", "cka_rbf", "cka_minibatch", "bayes_js"]
FEATURE_METRICS = ["cka", "cka:debiased=true", "cca", "procrustes", "svcca"]


def run(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 worker processes (1 thread each) for the module; its address."""
    distributed = pytest.importorskip("distributed")
    from repsim_cli.distributed import environment_kept

    with environment_kept(), distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as lc, distributed.Client(lc) as client:  # fmt: skip
        yield lc.scheduler_address, client
    del lc, client
    collect_leftover_sockets()


def collect_leftover_sockets() -> None:
    """Collect the comms' leftover sockets now, their warnings ignored, rather than in whatever
    test the garbage collector next runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(autouse=True)
def _collect_after_each_test():
    yield
    collect_leftover_sockets()


@pytest.fixture
def two_stores(make_store):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((48, 5))
    a = {f"a{i}": np.hstack([base, rng.standard_normal((48, 4 + i))]).astype(np.float32) for i in range(4)}
    b = {f"b{i}": (base @ rng.standard_normal((5, 7)) + rng.standard_normal((48, 7))).astype(np.float32)
         for i in range(3)}  # fmt: skip
    return make_store(a, ".h5", name="A"), make_store(b, ".zarr", name="B")


def assert_same_results(path_a: Path, path_b: Path) -> None:
    """Bitwise equal values, standard errors, computed masks and notes, metric by metric."""
    a, b = read_results(path_a), read_results(path_b)
    assert list(a.metrics) == list(b.metrics)
    assert (a.layers_a, a.layers_b) == (b.layers_a, b.layers_b)
    for spec, ma in a.metrics.items():
        mb = b.metrics[spec]
        assert np.array_equal(ma.value, mb.value, equal_nan=True), spec
        assert (ma.std_error is None) == (mb.std_error is None), spec
        if ma.std_error is not None:
            assert np.array_equal(ma.std_error, mb.std_error, equal_nan=True), spec
        assert ma.notes == mb.notes, spec
        assert np.isfinite(ma.value).any(), spec


def metric_args(metrics: list[str] = METRICS) -> list[str]:
    return [arg for m in metrics for arg in ("-m", m)]


@pytest.mark.parametrize(("n_stores", "side", "mode"), [(1, "auto", "stacked"), (2, "auto", "stacked"),
                                                     (2, "feature", None)])  # fmt: skip
def test_values_equal_the_single_process(cluster, two_stores, tmp_path, n_stores, side, mode) -> None:
    """Sample side: Grams built by layer tasks and shipped; feature side: each block's worker
    makes the joint pass itself. Either way the values are the single process's, bit for bit."""
    import json

    address, _ = cluster
    stores = two_stores[:n_stores]
    single, dask = tmp_path / "single.h5", tmp_path / "dask.h5"
    args = ["compare", *stores, *metric_args(METRICS if side == "auto" else FEATURE_METRICS), "--side", side]
    plan = json.loads(run(*args, "--dry-run", "--json").output)
    assert plan["side"] == ("sample" if side == "auto" else side)
    assert plan.get("mode") == mode or side == "feature"
    r = run(*args, "-o", single, "-q", *ONE_THREAD)
    assert r.exit_code == 0, r.output
    r = run(*args, "-o", dask, "-q", "--scheduler", address)
    assert r.exit_code == 0, r.output
    assert_same_results(single, dask)
    assert not journal_path(dask).exists()
    if side == "auto":  # a Monte Carlo metric's standard errors travel too
        assert read_results(dask).metrics["bayes_js"].std_error is not None


@pytest.mark.parametrize("extra", [("-m", "cka", "--jackknife"),
                                   ("-m", "cka", "-m", "cka_rbf", "-m", "procrustes", "--bootstrap", "6",
                                    "--jackknife", "--permutations", "6", "--seed", "3")])  # fmt: skip
def test_statistics_equal_the_single_process(cluster, two_stores, tmp_path, extra) -> None:
    """Per-cell statistics computed on the workers: the packed plan's jackknife (CKA alone) and
    every statistic on the kernel and generic paths are the single process's, bit for bit."""
    from repsim_cli.results import STAT_FIELDS

    address, _ = cluster
    single, dask = tmp_path / "single.h5", tmp_path / "dask.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small-n bootstrap may be flagged as biased: both runs
        r = run("compare", *two_stores, *extra, "-o", single, "-q", *ONE_THREAD)
        assert r.exit_code == 0, r.output
        r = run("compare", *two_stores, *extra, "-o", dask, "-q", "--scheduler", address)
        assert r.exit_code == 0, r.output
    assert_same_results(single, dask)
    a, b = read_results(single), read_results(dask)
    for spec, ma in a.metrics.items():
        assert ma.std_error is not None and np.isfinite(ma.std_error).any(), spec
        assert set(ma.stats) == set(b.metrics[spec].stats) <= set(STAT_FIELDS)
        for field, values in ma.stats.items():
            assert np.array_equal(values, b.metrics[spec].stats[field], equal_nan=True), (spec, field)
    if "--bootstrap" in extra:
        assert set(a.metrics["cka"].stats) == set(STAT_FIELDS)


def test_three_models_and_a_shard(cluster, two_stores, make_store, tmp_path) -> None:
    """Several model blocks (every layer prepared once) and a shard's share."""
    address, _ = cluster
    rng = np.random.default_rng(1)
    c = make_store({f"c{i}": rng.standard_normal((48, 6)).astype(np.float32) for i in range(2)},
                   ".h5", name="C")  # fmt: skip
    args = ["compare", *two_stores, c, "-m", "cka", "-m", "cca", "--within", "--shard", "2/3", "-q"]
    r = run(*args, "-o", tmp_path / "single.h5", *ONE_THREAD)
    assert r.exit_code == 0, r.output
    r = run(*args, "-o", tmp_path / "dask.h5", "--scheduler", address)
    assert r.exit_code == 0, r.output
    assert_same_results(tmp_path / "single.h5", tmp_path / "dask.h5")


def test_a_worker_killed_mid_run_changes_nothing(cluster, two_stores, tmp_path) -> None:
    """The first block task's worker process exits at once (a lost node): Dask runs the task
    again elsewhere and rebuilds the states that died with the worker from the stores."""
    from repsim_cli.distributed import EXIT_ONCE_ENV

    address, client = cluster
    flag = tmp_path / "worker-exited"
    r = run("compare", *two_stores, *metric_args(), "-o", tmp_path / "single.h5", "-q", *ONE_THREAD)
    assert r.exit_code == 0, r.output
    where = str(flag)
    # lambdas travel by value: they set the variable in each worker process's own environment
    client.run(lambda: os.environ.__setitem__(EXIT_ONCE_ENV, where))
    try:
        r = run("compare", *two_stores, *metric_args(), "-o", tmp_path / "dask.h5", "-q",
                "--scheduler", address)  # fmt: skip
    finally:
        client.run(lambda: os.environ.pop(EXIT_ONCE_ENV, None))
    assert r.exit_code == 0, r.output
    assert flag.exists()  # a worker did die mid-run
    assert_same_results(tmp_path / "single.h5", tmp_path / "dask.h5")
    client.wait_for_workers(2, timeout=30)


def test_store_not_readable_on_a_worker(cluster, two_stores, tmp_path) -> None:
    """A store the client opened but the workers cannot see: one error naming the path, before
    any work is submitted."""
    from repsim_cli.distributed import run_on_dask

    address, _ = cluster
    a, b = two_stores
    with open_store(a) as sa, open_store(b) as sb:
        comparison = prepare_comparison(sa, sb, ["cka"])
        try:
            moved = tmp_path / "elsewhere.zarr"
            b.rename(moved)  # the client's handle stays open; the path is gone for the workers
            expected = f"{b.resolve()}: not readable (no such file or directory) on Dask worker tcp://"
            with pytest.raises(RepsimError, match=re.escape(expected)) as caught:
                run_on_dask(comparison, address)
            assert str(caught.value).endswith("every worker must read the stores at the same path")
        finally:
            comparison.close()


def test_resume_computes_only_the_missing_cells(cluster, two_stores, tmp_path) -> None:
    """A journal holding half of the cells (a killed run): --resume --scheduler computes the rest
    on the workers and writes the same results as one uninterrupted process."""
    address, _ = cluster
    single, out = tmp_path / "single.h5", tmp_path / "dask.h5"
    r = run("compare", *two_stores, "-m", "cka", "-m", "cca", "-o", single, "-q", *ONE_THREAD)
    assert r.exit_code == 0, r.output
    full = read_results(single)
    with open_store(two_stores[0]) as sa, open_store(two_stores[1]) as sb:
        comparison = prepare_models([("A", sa), ("B", sb)], ["cka", "cca"], model_pairs_override=[(0, 1)])
        journal = Journal(journal_path(out), comparison.journal_header(None),
                          content=comparison_content(comparison))  # fmt: skip
        journal.open(resume=False)
        kept = [(s, i, j, float(full.metrics[spec].value[i, j]), None)
                for s, spec in enumerate(full.metrics) for i in range(4) for j in range(3) if i < 2]  # fmt: skip
        journal.write(kept)
        journal.close(remove=False)
        comparison.close()
    r = run("compare", *two_stores, "-m", "cka", "-m", "cca", "-o", out, "--resume", "--scheduler", address)
    assert r.exit_code == 0, r.output
    assert "resuming: 12 of 24 cells done" in r.output
    assert "cells (dask): 12/12" in r.output
    assert_same_results(single, out)


def test_local_cluster_from_the_command_line(two_stores, tmp_path) -> None:
    pytest.importorskip("distributed")
    environment = dict(os.environ)
    r = run("compare", *two_stores, "-m", "cka", "-o", tmp_path / "single.csv", "-q", *ONE_THREAD)
    assert r.exit_code == 0, r.output
    r = run("compare", *two_stores, "-m", "cka", "-o", tmp_path / "dask.csv", "-q", "--scheduler", "local:2")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "single.csv").read_bytes()
    assert dict(os.environ) == environment  # the workers' variables are not left behind
    r = run("compare", *two_stores, "-m", "cka", "-o", tmp_path / "x.csv", "--scheduler", "local:0")
    assert r.exit_code == 1 and "local:W with W ≥ 1" in r.output
    assert not (tmp_path / "x.csv").exists()


def test_without_dask_a_one_line_error(two_stores, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails
    out = tmp_path / "x.h5"
    r = run("compare", *two_stores, "-m", "cka", "-o", out, "--scheduler", "local:2")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "Error: --scheduler needs Dask's distributed scheduler: pip install 'repsim-cli[dask]'"
    ]
    assert not out.exists() and not journal_path(out).exists()


@pytest.mark.parametrize("source", ["packed", "stacked"])
@pytest.mark.parametrize("target", ["packed", "stacked"])
def test_grams_shipped_between_engines_give_the_same_bits(source, target) -> None:
    """What a layer task ships (a Gram's triangle in the GEMM dtype and its diagonal) and a block
    task's engine adopts gives the inner products of the engine that built it, bit for bit, over
    several layer groups, without a SYRK in the adopting engine."""
    from test_engine_strategies import INNER_GROUP, all_inner, engine_for, make_layers

    from repsim_cli.engine.strategies import Packed, Stacked

    kinds = {"packed": Packed(peak_bytes=0.0, flops=0.0), "stacked": Stacked(peak_bytes=0.0, flops=0.0)}
    layers = make_layers(INNER_GROUP + 3, dtype=np.float32, seed=4)
    built, adopting = engine_for(layers, kinds[source]), engine_for(layers, kinds[target])
    for ref_built, ref in zip(built.refs, adopting.refs, strict=True):
        triangle, diag = built._grams.export(ref_built)
        assert triangle.dtype == np.float32 and triangle.shape == (len(diag) * (len(diag) - 1) // 2,)
        adopting._grams.adopt(ref, np.array(triangle), diag)
    np.testing.assert_array_equal(all_inner(adopting), all_inner(built))
    assert not any(adopting.counts["gram:" + r.key] for r in adopting.refs)
    if target == "stacked":  # a whole Gram rebuilt from the triangle is the one a SYRK gives
        reference = engine_for(layers, kinds["stacked"])
        for k in (0, 2, INNER_GROUP + 1):
            np.testing.assert_array_equal(adopting.centered_gram(adopting.refs[k]),
                                          reference.centered_gram(reference.refs[k]))  # fmt: skip


def test_a_worker_keeps_a_few_runs_and_forgets_a_finished_one(two_stores) -> None:
    """A worker's copies of runs (engines, states) are bounded: the oldest goes when a client
    died without saying goodbye; a finished run's copy and its cache directory are removed."""
    from dataclasses import replace

    from repsim_cli import distributed as backend

    with open_store(two_stores[0]) as sa:
        comparison = prepare_comparison(sa, None, ["cka"])
        recipe = backend.make_recipe(comparison, 1)
        comparison.close()
    tokens = [f"test-{k}" for k in range(backend.MAX_WORKER_RUNS + 1)]
    try:
        runs = [backend._open_run(replace(recipe, token=t)) for t in tokens]
        assert list(backend._RUNS) == tokens[1:]  # the oldest dropped
        assert runs[1].comparison.engine.refs[0].name == "a0"
        cache = runs[-1].cache
        assert cache.is_dir()
        backend.forget_run(tokens[-1])
        assert tokens[-1] not in backend._RUNS and not cache.exists()
    finally:
        for t in tokens:
            backend.forget_run(t)
