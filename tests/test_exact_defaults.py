"""Exact defaults: a metric's value does not depend on the other metrics of a run, and Procrustes
and the shape metric on float32 input equal a float64 dense reference.

The reference here is written from the definitions (Ding et al. 2021; Williams et al. 2021):
columns centred in float64, d²_Procrustes = 2 − 2‖XnᵀYn‖_* with Xn = Xc/‖Xc‖_F, and the angular
shape distance (alpha = 1) arccos(‖XcᵀYc‖_* / (‖Xc‖_F‖Yc‖_F)), the nuclear norm from numpy's SVD.
"""

from __future__ import annotations

import numpy as np
import pytest

from repsim_cli.compare import compare_stores
from repsim_cli.metrics import REGISTRY

N = 48


def float32_layers(seed: int, widths: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Related float32 layers with large per-unit offsets (means ≫ spread), some wider than n."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((N, 6))
    out = {}
    for k, width in enumerate(widths):
        mix = rng.standard_normal((6, width))
        x = np.tanh(base @ mix) + 0.3 * rng.standard_normal((N, width))
        out[f"l{k}"] = (x + 20.0 * rng.standard_normal(width)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    from repsim_cli.store.importers import import_arrays

    paths = []
    for seed, name in ((0, "a"), (1, "b")):
        folder = tmp_path_factory.mktemp(f"src_{name}")
        sources = []
        for layer, arr in float32_layers(seed, (5, 12, 30, 70)).items():
            np.save(folder / f"{layer}.npy", arr)
            sources.append(f"{layer}={folder / f'{layer}.npy'}")
        out = folder / f"{name}.h5"
        import_arrays(sources, out, chunk_rows=16)
        paths.append(out)
    return paths


ALL = sorted(REGISTRY)
# The 70-wide layers make rank_a + rank_b > n − 1 for the CCA family and linreg: warned, expected.
quiet = pytest.mark.filterwarnings("ignore::repsim_cli._warnings.RepsimWarning")


@quiet
def test_each_metric_alone_equals_it_among_all_others(two_stores):
    pa, pb = two_stores
    together = compare_stores(pa, pb, ALL)
    for name in ALL:
        alone = compare_stores(pa, pb, [name]).metrics[name]
        both = together.metrics[name]
        np.testing.assert_array_equal(alone.value, both.value, err_msg=name)
        if alone.std_error is not None or both.std_error is not None:
            assert alone.std_error is not None and both.std_error is not None, name
            np.testing.assert_array_equal(alone.std_error, both.std_error, err_msg=name)


@quiet
def test_each_metric_alone_equals_it_among_all_others_within_one_store(two_stores):
    pa, _ = two_stores
    together = compare_stores(pa, None, ALL)
    for name in ALL:
        alone = compare_stores(pa, None, [name]).metrics[name]
        np.testing.assert_array_equal(alone.value, together.metrics[name].value, err_msg=name)


def nuclear(m: np.ndarray) -> float:
    return float(np.linalg.svd(m, compute_uv=False).sum())


def reference(x32: np.ndarray, y32: np.ndarray) -> tuple[float, float]:
    """(Procrustes d², angular shape distance) of float32 layers, computed densely in float64."""
    xc = x32.astype(np.float64) - x32.astype(np.float64).mean(axis=0)
    yc = y32.astype(np.float64) - y32.astype(np.float64).mean(axis=0)
    cosine = nuclear(xc.T @ yc) / (np.linalg.norm(xc) * np.linalg.norm(yc))
    xn, yn = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    procrustes = min(max(2.0 - 2.0 * nuclear(xn.T @ yn), 0.0), 2.0)
    return procrustes, float(np.arccos(min(max(cosine, 0.0), 1.0)))


@quiet
@pytest.mark.parametrize("extra", [[], ["cka", "bayes_kl", "rsa"]])
def test_procrustes_and_shape_defaults_equal_a_float64_dense_reference(two_stores, extra):
    pa, pb = two_stores
    res = compare_stores(pa, pb, ["procrustes", "shape", *extra])
    a, b = float32_layers(0, (5, 12, 30, 70)), float32_layers(1, (5, 12, 30, 70))
    for i, la in enumerate(a):
        for j, lb in enumerate(b):
            want_p, want_s = reference(a[la], b[lb])
            assert res.metrics["procrustes"].value[i, j] == pytest.approx(want_p, abs=1e-10), (la, lb)
            assert res.metrics["shape"].value[i, j] == pytest.approx(want_s, abs=1e-10), (la, lb)
