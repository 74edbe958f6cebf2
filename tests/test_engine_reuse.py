"""An all-pairs run over L layers does L per-layer computations, not L².

The comparison counts every per-layer stage it runs (``comparison.counts``: the engine's Grams and
covariances, shared intermediates such as the spectrum, and each metric state); the
eigendecomposition itself is instrumented too, so a metric that bypassed its state would be caught.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack

import numpy as np
import pytest

import repsim_cli.metrics._linalg as linalg
from repsim_cli.compare import prepare_comparison
from repsim_cli.store import open_store

SPECS = [
    "cka", "cka:debiased=true", "cca", "cca:stat=mean_rho2", "svcca", "svcca:dims=2", "pwcca",
    "pwcca:side=b", "pwcca:side=narrower", "procrustes", "shape", "shape:alpha=0.5", "linreg",
]  # fmt: skip
PER_LAYER = ("gram", "cov", linalg.SPECTRUM, "prepare")


def layers(seed, n, widths, prefix):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    return {
        f"{prefix}{i}": np.tanh(z @ rng.standard_normal((3, w))) + 0.5 * rng.standard_normal((n, w))
        for i, w in enumerate(widths)
    }


@pytest.fixture
def eigh_calls(monkeypatch):
    """Count the eigendecompositions the metrics perform."""
    calls = Counter()
    original = linalg.eigh_descending

    def counted(sym):
        calls[sym.shape] += 1
        return original(sym)

    monkeypatch.setattr(linalg, "eigh_descending", counted)
    return calls


def run(path_a, path_b, side):
    with ExitStack() as stack:
        a = stack.enter_context(open_store(path_a))
        b = stack.enter_context(open_store(path_b)) if path_b is not None else None
        comparison = prepare_comparison(a, b, SPECS, side=side, block_rows=5)
        results = comparison.run()
        return comparison, results


def per_layer_counts(comparison):
    """{(statistic, layer key): times computed} for the per-layer stages (a metric state counts
    as ``prepare`` plus its state key)."""
    out = {}
    for key, count in comparison.counts.items():
        stat, _, rest = key.partition(":")
        stat = stat.split("@")[0]  # a shared intermediate is named with the side it is built on
        if stat == "prepare":
            state, scope, name = rest.rsplit(":", 2)
            out[(stat + state, f"{scope}:{name}")] = count
        elif stat in PER_LAYER:
            out[(stat, rest)] = count
    return out


@pytest.mark.parametrize("side", ["sample", "feature"])
def test_all_pairs_over_one_store_compute_each_layer_once(make_store, eigh_calls, side):
    n_layers = 5
    path = make_store(layers(0, 24, (3, 4, 5, 6, 7), "l"), chunk_rows=5)
    comparison, results = run(path, None, side)
    counts = per_layer_counts(comparison)
    keys = {f"a:l{i}" for i in range(n_layers)}
    assert all(c == 1 for c in counts.values()), counts
    assert {layer for (stat, layer) in counts if stat == linalg.SPECTRUM} == keys
    assert {layer for (stat, layer) in counts if stat == "prepare('basis', 'projection')"} == keys
    base = "gram" if side == "sample" else "cov"
    assert {layer for (stat, layer) in counts if stat == base} == keys
    assert sum(eigh_calls.values()) == n_layers  # not n_layers² (or one per pair and metric)
    for spec in SPECS:
        assert np.isfinite(results.metrics[spec].value).all()


@pytest.mark.parametrize("side", ["sample", "feature"])
def test_two_stores_compute_each_layer_once(make_store, eigh_calls, side):
    path_a = make_store(layers(1, 24, (3, 5, 6), "a"), chunk_rows=7)
    path_b = make_store(layers(2, 24, (4, 6), "b"), chunk_rows=7)
    comparison, _ = run(path_a, path_b, side)
    counts = per_layer_counts(comparison)
    assert all(c == 1 for c in counts.values()), counts
    assert len({layer for (stat, layer) in counts if stat == linalg.SPECTRUM}) == 5
    assert sum(eigh_calls.values()) == 5


def test_counting_catches_a_metric_that_recomputes_per_pair(make_store, eigh_calls):
    """The instrument can fail: bypassing the cache shows up as more than one eigh per layer."""
    path = make_store(layers(3, 24, (3, 4, 5), "l"))
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, ["cca"], side="feature")
        engine = comparison.engine
        refs = comparison.refs_a
        for ra in refs:
            for rb in refs:
                linalg.build_spectrum(
                    engine.cross_product(ra, ra), side="feature", n=engine.n, width=ra.width
                )
    assert sum(eigh_calls.values()) == len(refs) ** 2
