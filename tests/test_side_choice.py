"""The planner's side per metric: both sides' estimates and the choice are printed by --dry-run,
and on small cases where the estimates differ at least 5× the chosen side is the faster one when
each side is forced and timed (best of a few repeats; the cases are built so that the measured
gap is large, not noise)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from repsim_cli.compare import prepare_comparison
from repsim_cli.metrics import get_metric
from repsim_cli.store import open_store

REPEATS = 3


def _layers(n: int, width: int, count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 4))
    return {f"l{k}": (base @ rng.standard_normal((4, width)) + rng.standard_normal((n, width)))
            .astype(np.float32) for k in range(count)}  # fmt: skip


def _run_time(path: Any, metric: str, side: str) -> float:
    """Best of REPEATS runs with one BLAS thread (threads contending for a busy machine's cores
    would time the contention, not the work)."""
    from threadpoolctl import threadpool_limits

    best = np.inf
    for _ in range(REPEATS):
        with open_store(path) as store:
            comparison = prepare_comparison(store, None, [metric], side=side)
            with threadpool_limits(1):
                start = time.perf_counter()
                comparison.run()
                best = min(best, time.perf_counter() - start)
            comparison.close()
    return float(best)


CASES = [  # metric, n, width, layers, the side expected to win
    ("procrustes", 500, 8, 2, "feature"),  # no factorisation vs eigh of 500×500
    ("procrustes", 30, 500, 3, "sample"),  # 30×30 couplings vs SVDs of 500×500 XcᵀYc
    ("cka", 2500, 4, 2, "feature"),  # 8×8 joint covariance vs 2500×2500 Grams
    ("cka", 30, 800, 2, "sample"),  # 30×30 Grams vs a 1600×1600 joint covariance
    ("bayes_kl", 600, 6, 3, "feature"),  # spans of 12 columns vs the n×n route
]


@pytest.mark.filterwarnings("ignore::repsim_cli._warnings.RepsimWarning")
@pytest.mark.parametrize(("metric", "n", "width", "count", "winner"), CASES)
def test_chosen_side_is_the_faster(make_store: Any, metric: str, n: int, width: int, count: int,
                                   winner: str) -> None:  # fmt: skip
    path = make_store(_layers(n, width, count, seed=n + width))
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, [metric])
        route = comparison.plan.routes[metric]
        comparison.close()
    assert route.choice == winner, route
    other = "sample" if winner == "feature" else "feature"
    assert route.estimates[other] >= 5 * route.estimates[winner], route  # a case worth measuring
    chosen, rejected = _run_time(path, metric, winner), _run_time(path, metric, other)
    assert chosen < rejected, (metric, winner, chosen, rejected)


def test_dry_run_prints_both_sides_and_the_span_cost(make_store: Any) -> None:
    path = make_store(_layers(300, 20, 3, seed=1) | {"wide": _layers(300, 400, 1, seed=2)["l0"]})
    metrics = ["cka", "cca", "procrustes", "bayes_kl", "dcor"]
    with open_store(path) as store:
        comparison = prepare_comparison(store, None, metrics)
        text = comparison.describe()
        work = comparison.work()
        routes = comparison.plan.routes
        sides = comparison.to_dict()["metric_sides"]
        comparison.close()
    for metric in metrics:
        line = next(line for line in text.splitlines() if line.startswith(f"  {metric}: sample ≈"))
        assert "→" in line and (metric == "dcor" or "feature ≈" in line), line
        assert sides[metric]["choice"] == routes[metric].choice
    # CCA's pairs cost the same either side: three narrow layers take the thin route, the wide
    # one the n×n one; Procrustes' pairs differ by side (XcᵀYc or the bases' coupling): one side
    assert routes["cca"].choice == "per layer"
    assert sorted(routes["cca"].layers.values()) == ["feature"] * 3 + ["sample"]
    assert "per layer (1 sample, 3 feature)" in text
    assert routes["procrustes"].choice in ("sample", "feature")
    assert set(routes["procrustes"].layers.values()) == {routes["procrustes"].choice}
    # readout: the span route's cost (pairs of narrow layers), far below the n×n bound
    assert routes["bayes_kl"].choice == "feature"
    bound = get_metric("bayes_kl").cost
    assert bound is not None
    assert work["bayes_kl"]["pair_flops"] < 0.6 * bound(300, 0, work["bayes_kl"]["cells"], {})
    assert routes["dcor"].estimates.keys() == {"sample"} and routes["dcor"].engine


@pytest.mark.parametrize("metric", ["procrustes", "shape", "shape:score=euclidean"])
def test_both_sides_give_the_same_value(make_store: Any, metric: str) -> None:
    """Procrustes and shape (alpha = 1) take the centred layers on the feature side and the
    bases on the sample side; the values agree, also for a layer with a direction the shape
    metric's rank tolerance drops (variance 1e-12 of the largest: that layer keeps its basis)."""
    layers = _layers(60, 5, 3, seed=3)
    tiny = layers["l2"].astype(np.float64)
    tiny[:, 0] = tiny[:, 1] + 1e-6 * np.random.default_rng(4).standard_normal(60)
    layers["l2"] = tiny
    path = make_store(layers)
    values = []
    for side in ("sample", "feature"):
        with open_store(path) as store:
            comparison = prepare_comparison(store, None, [metric], side=side)
            values.append(comparison.run().metrics[metric].value)
            comparison.close()
    np.testing.assert_allclose(values[1], values[0], rtol=0, atol=1e-10)
