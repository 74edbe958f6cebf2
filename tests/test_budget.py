"""The memory budget is a promise: tiled and spilled sample sides are exact, and a subprocess
comparing a store several times the budget stays under budget + the interpreter's overhead."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from reference import cka_dense

from repsim_cli.compare import prepare_comparison
from repsim_cli.engine.strategies import Spilled, Tiled
from repsim_cli.metrics import REGISTRY, Cell, MetricInfo, StateCost, register
from repsim_cli.metrics.cka import linear_cka
from repsim_cli.store import open_store

MiB = 1024**2


def related(n: int, widths, seed=0, offset=100.0):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 8))
    return {f"l{i}": (np.hstack([base, rng.standard_normal((n, w - 8))]) @ rng.standard_normal((w, w))
                      + offset * rng.uniform(-1, 1, w)) for i, w in enumerate(widths)}


def dense_matrix(layers, debiased=False):
    names = list(layers)
    return np.array([[cka_dense(layers[a], layers[b], debiased) for b in names] for a in names])


@pytest.mark.parametrize("memory", [3 * MiB, 6 * MiB])
def test_tiled_sample_side_is_exact(make_store, backend, memory) -> None:
    layers = related(500, (20, 30, 40, 25))
    path = make_store(layers, backend, chunk_rows=64)
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, ["cka", "cka:debiased=true"], side="sample",
                                        memory=memory, precision="float64")
        assert isinstance(comparison.plan.strategy, Tiled) and comparison.plan.tile_rows < 500
        res = comparison.run()
        blocks = -(-500 // comparison.plan.tile_rows)
        assert comparison.engine.counts["read:a:l0"] == blocks * (blocks + 1) // 2
        expected = comparison.plan.bytes_read
        assert comparison.engine.bytes_read == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(res.metrics["cka"].value, dense_matrix(layers), atol=1e-10)
    np.testing.assert_allclose(res.metrics["cka:debiased=true"].value, dense_matrix(layers, True),
                               atol=1e-10)


@pytest.fixture
def full_gram_metric():
    """A test metric that needs whole Grams: CKA computed from the n×n Grams themselves."""

    def prepare(layer, params):
        return np.array(layer.centered_gram())  # the whole Gram is this metric's state

    def pair(ka, kb, params):
        ab = float(np.vdot(ka, kb))
        return Cell(ab / np.sqrt(float(np.vdot(ka, ka)) * float(np.vdot(kb, kb))))

    info = register(MetricInfo(
        name="test_gram_cka", kind="similarity", symmetric=True, bounds=(0.0, 1.0), params=(),
        citation="test", summary="test", sides=("sample",), prepare=prepare, pair=pair,
        state_cost=lambda n, width, side, params: StateCost(8.0 * n * n, 0.0), identity=1.0,
        dense=linear_cka,
    ))
    yield info
    del REGISTRY[info.name]


def test_spilled_grams_are_exact_and_cleaned_up(make_store, tmp_path, full_gram_metric) -> None:
    layers = related(300, (10, 20, 30, 15, 12), seed=2)
    path = make_store(layers, ".h5")
    gram = 300 * 300 * 8
    # three Grams in memory, one layer's working set, and the room the state store keeps for a
    # pair of this metric's whole-Gram states
    budget = 3 * gram + 2 * 300 * 30 * 8 + 300 * 300 * 8 + 48 * MiB + 2 * gram
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, ["test_gram_cka"], memory=budget,
                                        precision="float64", cache_dir=tmp_path / "cache")
        assert isinstance(comparison.plan.strategy, Spilled) and comparison.plan.gram_capacity == 3
        res = comparison.run()
        assert comparison.engine.cache_path is not None
        assert len(list(comparison.engine.cache_path.glob("gram*.npy"))) == 5
        assert max(v for k, v in comparison.engine.counts.items() if k.startswith("gram:")) == 1
        assert comparison.states.counts  # whole-Gram states beyond the budget spill too
        comparison.close()
    assert list((tmp_path / "cache").iterdir()) == []
    np.testing.assert_allclose(res.metrics["test_gram_cka"].value, dense_matrix(layers), atol=1e-10)


PEAK = textwrap.dedent("""
    import json, resource, subprocess, sys
    subprocess.run(sys.argv[1:], check=True)
    print(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
""")


def peak_rss(args: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "repsim_cli", *args],
                         capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_peak_rss_within_budget(tmp_path: Path) -> None:
    from repsim_cli.store.importers import import_arrays

    rng = np.random.default_rng(0)
    n, width, n_layers = 6000, 500, 4
    base = rng.standard_normal((n, 16)).astype(np.float32)
    for i in range(n_layers):
        x = base @ rng.standard_normal((16, width)).astype(np.float32)
        x += rng.standard_normal((n, width), dtype=np.float32) + 50 * rng.standard_normal(width).astype(np.float32)
        np.save(tmp_path / f"l{i}.npy", x)
        np.save(tmp_path / f"small{i}.npy", x[:200])
    store, small = tmp_path / "big.h5", tmp_path / "small.h5"
    import_arrays([str(tmp_path / f"l{i}.npy") for i in range(n_layers)], store, chunk_rows=256)
    import_arrays([str(tmp_path / f"small{i}.npy") for i in range(n_layers)], small)

    budget = 16 * MiB
    assert n * width * n_layers * 4 > 2.5 * budget  # the store is several times the budget
    # The fixed overhead: the interpreter, the libraries and BLAS, on the same widths at n = 200.
    overhead = peak_rss(["compare", str(small), "-m", "cka", "-o", str(tmp_path / "s.csv"), "-q"])
    args = ["compare", str(store), "-m", "cka", "--side", "sample", "--memory", "16MiB", "-q"]
    plan = json.loads(subprocess.run([sys.executable, "-m", "repsim_cli", *args, "-o", "-", "--dry-run",
                                      "--json"], capture_output=True, text=True, check=True).stdout)
    assert plan["mode"] == "tiled" and plan["peak_bytes"] <= budget
    peak = peak_rss([*args, "-o", str(tmp_path / "big.csv")])
    assert peak <= overhead + budget, (peak / MiB, overhead / MiB)
    values = np.loadtxt(tmp_path / "big.csv", delimiter=",", skiprows=1, usecols=3).reshape(4, 4)
    layers = [np.load(tmp_path / f"l{i}.npy").astype(np.float64) for i in range(n_layers)]
    expected = [[linear_cka(a, b) for b in layers] for a in layers]
    np.testing.assert_allclose(values, expected, atol=1e-6)
