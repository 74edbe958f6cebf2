"""Linear CKA, biased and debiased (Kornblith et al., 2019), on the shared Gram engine.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations Revisited",
ICML; google-research/representation_similarity ``Demo.ipynb`` (``cka``, ``feature_space_linear_cka``).
Song et al. (2012), the unbiased HSIC estimator used for ``debiased=true``.

Both forms reduce to three per-layer/per-pair quantities the engine provides on either side:
h_ab = ⟨Kc_a, Kc_b⟩ = ‖XcᵀYc‖²_F, the centred row norms q_a = diag(Kc_a) and their sum Q_a.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._warnings import RepsimWarning
from ..engine import GramEngine, LayerRef
from ..errors import DataError
from .contract import Cell, CellBlock, LayerContext, StateCost
from .registry import MetricInfo, Param, register

CITATION = "Kornblith et al. 2019, ICML (arXiv:1905.00414); debiased: Song et al. 2012 / Nguyen et al. 2021"


def debias(hsic: NDArray[np.float64] | float, qa_dot_qb: Any, qa_sum: Any, qb_sum: Any, n: int) -> Any:
    """Unbiased-HSIC numerator from the biased one (Kornblith's feature-space helper):
    h − n/(n−2)·q_aᵀq_b + Q_a·Q_b/((n−1)(n−2)); arrays broadcast."""
    return hsic - n / (n - 2.0) * qa_dot_qb + qa_sum * qb_sum / ((n - 1.0) * (n - 2.0))


def cka_from_hsic(
    h_ab: NDArray[np.float64], h_aa: NDArray[np.float64], h_bb: NDArray[np.float64]
) -> NDArray[np.float64]:
    """CKA = h_ab / √(h_aa·h_bb) elementwise (h_aa: (La, 1), h_bb: (1, Lb) broadcast).

    A non-positive self term (possible for the debiased estimator on tiny or rank-1 data) gives
    NaN with a :class:`RepsimWarning` instead of a number produced by round-off.
    """
    denom = h_aa * h_bb
    bad = ~(denom > 0)
    if np.any(bad):
        warnings.warn(
            "CKA denominator is not positive (debiased HSIC of a layer with itself ≤ 0): value is NaN",
            RepsimWarning,
            stacklevel=3,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(bad, np.nan, h_ab / np.sqrt(np.where(bad, 1.0, denom)))
    return np.asarray(out, dtype=np.float64)


def _center(x: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        a = a.reshape(a.shape[0], -1)
    centred: NDArray[np.float64] = a - a.mean(axis=0)
    return centred


def linear_cka(x: ArrayLike, y: ArrayLike, debiased: bool = False) -> float:
    """Linear CKA of X (n, p) and Y (n, q), any float dtype, computed in float64.

    Similarity in [0, 1] (the debiased estimate may dip below 0); invariant to orthogonal maps,
    isotropic scaling and translation. A constant X or Y raises :class:`DataError`.
    """
    xc, yc = _center(x), _center(y)
    n = xc.shape[0]
    if debiased and n < 4:
        raise DataError(f"debiased CKA needs at least 4 samples, got {n}")
    for name, z, raw in (("X", xc, x), ("Y", yc, y)):
        if not np.sum(z * z) > 1e-20 * np.sum(np.square(np.asarray(raw, dtype=np.float64))):
            raise DataError(f"{name} is constant (zero variance); CKA is undefined")
    h = np.array([[np.sum((xc.T @ yc) ** 2)]])
    hx = np.array([[np.sum((xc.T @ xc) ** 2)]])
    hy = np.array([[np.sum((yc.T @ yc) ** 2)]])
    if debiased:
        qx, qy = np.einsum("ij,ij->i", xc, xc), np.einsum("ij,ij->i", yc, yc)
        h = debias(h, qx @ qy, qx.sum(), qy.sum(), n)
        hx = debias(hx, qx @ qx, qx.sum(), qx.sum(), n)
        hy = debias(hy, qy @ qy, qy.sum(), qy.sum(), n)
    return float(cka_from_hsic(h, hx, hy)[0, 0])


@dataclass(frozen=True)
class GramHandle:
    """A layer's state for the inner-product metrics: a handle to its centred Gram (and row norms
    q = diag(Kc)), which the engine holds — packed, stacked, spilled or tiled within the budget —
    and computes for a whole group of layers at once, reading the next layer while one layer's
    SYRK runs. ``pinned``: it lives with the engine and is never spilled."""

    engine: GramEngine
    ref: LayerRef
    pinned: bool = True

    @property
    def sqnorms(self) -> NDArray[np.float64]:
        """q = diag(Kc) (n,) float64."""
        return self.engine.row_sqnorms(self.ref)


def prepare_gram(layer: LayerContext, params: Mapping[str, Any]) -> GramHandle:
    """The per-layer stage of linear CKA: a handle to the engine's centred Gram (or covariance);
    the engine computes it with the first block that needs it."""
    if params.get("debiased") and layer.n < 4:
        raise DataError(f"debiased CKA needs at least 4 samples, got n={layer.n}")
    return GramHandle(layer.engine, layer.ref)


def cka_block(
    states_a: Sequence[GramHandle], states_b: Sequence[GramHandle], params: Mapping[str, Any]
) -> CellBlock:
    """Every pair's linear CKA from the engine's Gram inner products (one GEMM per group of layers
    on the sample side); each cell's value is the same whatever block it is computed in."""
    engine = states_a[0].engine
    n = engine.n
    refs_a, refs_b = [s.ref for s in states_a], [s.ref for s in states_b]
    h = engine.gram_inner_matrix(refs_a, refs_b)
    h_aa = np.array([engine.gram_inner(r, r) for r in refs_a])
    h_bb = np.array([engine.gram_inner(r, r) for r in refs_b])
    if params["debiased"]:
        qa, qb = [s.sqnorms for s in states_a], [s.sqnorms for s in states_b]
        sa, sb = np.array([q.sum() for q in qa]), np.array([q.sum() for q in qb])
        # Per-pair dot products (not one GEMM) so a cell's value never depends on the block shape.
        qq = np.array([[float(np.dot(x, y)) for y in qb] for x in qa])
        h = debias(h, qq, sa[:, None], sb[None, :], n)
        h_aa = debias(h_aa, np.array([float(np.dot(x, x)) for x in qa]), sa, sa, n)
        h_bb = debias(h_bb, np.array([float(np.dot(x, x)) for x in qb]), sb, sb, n)
    return CellBlock(cka_from_hsic(h, h_aa[:, None], h_bb[None, :]))


def cka_pair(a: GramHandle, b: GramHandle, params: Mapping[str, Any]) -> Cell:
    """One pair's linear CKA (the 1×1 case of :func:`cka_block`)."""
    return Cell(float(cka_block([a], [b], params).value[0, 0]))


def gram_handle_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    """The handle holds the row norms; the Gram itself is the engine's (planned separately)."""
    return StateCost(bytes=8.0 * n, flops=0.0)


register(
    MetricInfo(
        name="cka",
        kind="similarity",
        symmetric=True,
        bounds=(0.0, 1.0),
        bounds_for=lambda p: (-1.0, 1.0) if p["debiased"] else (0.0, 1.0),
        params=(Param("debiased", False, bool, doc="unbiased HSIC (Song et al. 2012) U-centring"),),
        citation=CITATION,
        summary="linear centred kernel alignment",
        sides=("sample", "feature"),
        prepare=prepare_gram,
        pair=cka_pair,
        block=cka_block,
        state_cost=gram_handle_cost,
        state_key=lambda params: ("gram_handle",),
        identity=1.0,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        batched=True,
        inner_products_only=True,
        aliases=("cka_linear", "linear_cka"),
        range_text="[0, 1] (debiased may dip below 0)",
    )
)
