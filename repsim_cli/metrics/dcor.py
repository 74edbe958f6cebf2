"""Distance correlation (Székely, Rizzo & Bakirov, 2007), on the Gram engine.

With a_ij = ‖x_i − x_j‖ (Euclidean, not squared) and A its double-centred matrix (HAH), and B the
same for Y, the V-statistic dCov²(X, Y) = mean(A∘B), and

    dCor(X, Y) = √( dCov²(X, Y) / √(dCov²(X, X) · dCov²(Y, Y)) ),

the **square root**, as ``dcor.distance_correlation`` (dcor 0.7) returns it; a tiny negative
dCov² from round-off is taken as 0 before the root, as dcor does.

Per layer (once): the distances from the engine's centred Gram, √(q_i + q_j − 2Kc_ij), and their
double centring. The square root magnifies the Gram's round-off for identical or nearly identical
samples (≈ √ε·‖x‖ instead of 0 — ReSi's dot-product distances give 0.695 for a constant layer for
this reason), so squared distances within round-off of 0 are set to exactly 0 first. Per pair: one
inner product.

Degenerate input: a constant layer raises :class:`DataError` (engine; the dcor package returns 0
there). dCor is defined for any n ≥ 2.

References
----------
Székely, Rizzo & Bakirov (2007), "Measuring and testing dependence by correlation of distances",
Ann. Statist. 35(6), 2769–2794. dcor 0.7 (``dcor.distance_correlation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError
from ._kernels import (
    Float64,
    VectorState,
    centered_gram_dense,
    double_center,
    ratio_matrix,
    roundoff_rtol,
    squared_distances,
    vector_cost,
    vector_ratio,
    vector_state,
)  # fmt: skip
from .contract import Cell, LayerContext
from .registry import MetricInfo, register

CITATION = (
    "Székely, Rizzo & Bakirov 2007, Ann. Statist. 35(6); as dcor.distance_correlation (V-statistic)"
)


def centered_distances(gram: Float64, rtol: float) -> Float64:
    """Double-centred Euclidean distance matrix of one layer, flattened: (n·n,) float64.

    ``gram`` is any Gram of the rows (the engine's centred Kc), not modified; squared distances
    ≤ rtol·(q_i + q_j) are exact zeros before the square root.
    """
    distances = squared_distances(gram, rtol)
    np.sqrt(distances, out=distances)
    return double_center(distances).ravel()


def _root(ratio: Float64) -> Float64:
    """dCor from dCor²: negative round-off residues become 0; NaN stays NaN."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(ratio < 0.0, 0.0, ratio))


def distance_correlation(x: ArrayLike, y: ArrayLike) -> float:
    """Distance correlation (V-statistic, the square root) of X (n, p) and Y (n, q), in float64.

    Parameters
    ----------
    x, y : (n, p) and (n, q) arrays
        The same n samples (rows) in the same order.

    Returns
    -------
    float
        Similarity in [0, 1]; 1 when Y is a similarity transform of X (rotation, isotropic
        scaling, translation), 0 for independence in the population limit. A constant X or Y
        raises :class:`DataError`.

    References
    ----------
    Székely, Rizzo & Bakirov (2007), Ann. Statist. 35(6); ``dcor.distance_correlation``.
    """
    kx = centered_gram_dense(x, "X", "dcor")
    ky = centered_gram_dense(y, "Y", "dcor")
    if kx.shape[0] != ky.shape[0]:
        raise DataError(f"X has {kx.shape[0]} samples but Y has {ky.shape[0]}")
    rtol = roundoff_rtol(np.float64)
    a, b = centered_distances(kx, rtol), centered_distances(ky, rtol)
    ratio = ratio_matrix(np.array([[a @ b]]), np.array([a @ a]), np.array([b @ b]), "dcor")
    return float(_root(ratio)[0, 0])


def prepare_dcor(layer: LayerContext, params: Mapping[str, Any]) -> VectorState:
    """The per-layer stage: the double-centred distance matrix, flattened."""
    return vector_state(centered_distances(layer.centered_gram(), roundoff_rtol(layer.dtype)))


def dcor_pair(a: VectorState, b: VectorState, params: Mapping[str, Any]) -> Cell:
    """Distance correlation of two layer states: √ of the ratio (NaN below 0)."""
    ratio, note = vector_ratio(a, b)
    return Cell(float(_root(np.array([[ratio]]))[0, 0]), note=note)


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    return 30.0 * n * n * n_layers + 2.0 * n * n * n_pairs


register(
    MetricInfo(
        prepare_grams=3,
        name="dcor",
        kind="similarity",
        symmetric=True,
        bounds=(0.0, 1.0),
        params=(),
        citation=CITATION,
        summary="distance correlation (V-statistic), the square root",
        sides=("sample",),
        prepare=prepare_dcor,
        pair=dcor_pair,
        state_cost=vector_cost,
        identity=1.0,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        range_text="[0, 1]",
        cost=_cost,
    )
)
