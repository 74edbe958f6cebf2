"""``cknna:compat=platonic`` against a dense numpy transcription of platonic-rep's published
``cknna(feats_A, feats_B, topk, distance_agnostic=False, unbiased=True)`` (minyoungg/platonic-rep,
``metrics.py``; Huh et al. 2024, arXiv:2405.07987), written here from that definition: raw linear
kernels, each row's topk largest entries with the diagonal excluded, the intersection of the two
masks, the unbiased HSIC of Song et al. (2012, eq. 5) in its explicit form applied to the masked
matrices as given (1ᵀAB1 in the order A = feats_A), and s(K, L)/(√(s(K, K)·s(L, L)) + 1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from repsim_cli.cli import cli
from repsim_cli.compare import compare_stores
from repsim_cli.metrics import parse_spec
from repsim_cli.metrics.neighbors import cknna


def topk_mask(kernel: np.ndarray, topk: int) -> np.ndarray:
    """1 at the topk largest entries of each row, the diagonal never chosen (unbiased=True)."""
    ranked = kernel.copy()
    np.fill_diagonal(ranked, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")[:, :topk]
    mask = np.zeros_like(kernel)
    np.put_along_axis(mask, order, 1.0, axis=1)
    return mask


def hsic_unbiased_eq5(k: np.ndarray, lm: np.ndarray) -> float:
    """Song et al. (2012) eq. 5 as the reference writes it, for any square K, L."""
    m = k.shape[0]
    kt, lt = k.copy(), lm.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    value = (np.sum(kt * lt.T) + np.sum(kt) * np.sum(lt) / ((m - 1) * (m - 2))
             - 2.0 * np.sum(kt @ lt) / (m - 2))  # fmt: skip
    return float(value / (m * (m - 3)))


def platonic_cknna(feats_a: np.ndarray, feats_b: np.ndarray, topk: int) -> float:
    k, lm = feats_a @ feats_a.T, feats_b @ feats_b.T

    def similarity(first: np.ndarray, second: np.ndarray) -> float:
        mask = topk_mask(first, topk) * topk_mask(second, topk)
        return hsic_unbiased_eq5(mask * first, mask * second)

    return similarity(k, lm) / (np.sqrt(similarity(k, k) * similarity(lm, lm)) + 1e-6)


def l2_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def layer_pair(seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)) + rng.uniform(-1, 1, 6)
    y = np.tanh(x @ rng.standard_normal((6, 9))) + 0.5 * rng.standard_normal((n, 9))
    return x, y


@pytest.mark.parametrize("k", [2, 5, 10, 39])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_equals_the_published_function_in_its_argument_order(k, normalize, seed):
    x, y = layer_pair(seed)
    xr, yr = (l2_rows(x), l2_rows(y)) if normalize else (x, y)
    forward = cknna(x, y, k, normalize, compat="platonic")
    backward = cknna(y, x, k, normalize, compat="platonic")
    assert forward == pytest.approx(platonic_cknna(xr, yr, k), rel=1e-10, abs=1e-12)
    assert backward == pytest.approx(platonic_cknna(yr, xr, k), rel=1e-10, abs=1e-12)
    if k < 39:  # with every neighbour the masks are full and the order no longer matters
        assert abs(forward - backward) > 1e-9  # asymmetric, as the reference is


def test_default_stays_symmetric_and_without_the_constant():
    x, y = layer_pair(3)
    default = cknna(x, y, 5)
    assert default == cknna(y, x, 5)
    assert cknna(x, x, 5) == pytest.approx(1.0, abs=1e-12)
    assert cknna(x, x, 5, compat="platonic") < 1.0  # the reference's +1e-6
    assert parse_spec("cknna").info.symmetric
    assert not parse_spec("cknna:compat=platonic").info.symmetric


def test_compare_cell_is_the_reference_with_the_row_layer_first(make_store):
    rng = np.random.default_rng(9)
    base = rng.standard_normal((50, 5))
    rows = {"r0": base @ rng.standard_normal((5, 7)), "r1": np.tanh(base) + 0.3 * rng.standard_normal((50, 5))}
    cols = {"c0": base + 0.6 * rng.standard_normal((50, 5)), "c1": rng.standard_normal((50, 4)),
            "c2": base[:, :3] ** 2}  # fmt: skip
    pa, pb = make_store(rows), make_store(cols)
    spec = "cknna:compat=platonic,k=6"
    res = compare_stores(pa, pb, [spec, "cknna:k=6"], precision="float64")
    value = res.metrics[spec].value
    for i, ra in enumerate(rows.values()):
        for j, cb in enumerate(cols.values()):
            want = platonic_cknna(l2_rows(ra), l2_rows(cb), 6)
            assert value[i, j] == pytest.approx(want, rel=1e-10, abs=1e-12), (i, j)
    # within one store the matrix is computed in full, not mirrored
    alone = compare_stores(pa, None, [spec], precision="float64").metrics[spec].value
    r = [l2_rows(v) for v in rows.values()]
    assert alone[0, 1] == pytest.approx(platonic_cknna(r[0], r[1], 6), rel=1e-10)
    assert alone[1, 0] == pytest.approx(platonic_cknna(r[1], r[0], 6), rel=1e-10)
    assert alone[0, 1] != alone[1, 0]


def test_metrics_listing_says_which_variant_is_which():
    out = CliRunner().invoke(cli, ["metrics"]).output
    block = out[out.index("cknna:"):].split("\n")[:3]
    text = " ".join(block)
    assert "compat=symmetric|platonic (default symmetric)" in text
    assert "platonic-rep cknna(row layer, column layer) exactly" in text
    assert "mean of the reference's two argument orders" in text
