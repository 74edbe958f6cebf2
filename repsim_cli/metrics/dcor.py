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

**Copies in a bootstrap replicate** (``prepare_grouped``; the statistics' generic path passes the
replicate's original example indices as ``groups``, g_i for row i, w_k rows holding example k).
Two rows holding one example are at distance 0 in every layer, like a row with itself. The
V-statistic averages over all m² ordered pairs, the m pairs (i, i) included; their terms
A_ii·B_ii ≈ ā·b̄ are positive for any two layers and are the V-statistic's upward bias (which the
U-centred estimator of Székely & Rizzo 2014 removes). A replicate with copies has Σ_k w_k² ≈ 2m
zero-distance pairs instead of m, so its bias is about twice the full sample's and the bootstrap
distribution sits above the estimate. Policy, as rsatoolbox excludes copy–copy pairs from its
bootstrapped RDM comparisons (Nili et al. 2014, PLoS Comput Biol 10(4): e1003553): copy–copy
pairs (i ≠ j, g_i = g_j) are set aside from *every* average, and the diagonal is kept, as the
V-statistic keeps it. With K = {(i, j): i = j or g_i ≠ g_j} the kept pairs and
c_i = |{j: (i, j) ∈ K}| = m − w_{g_i} + 1,

    ā_i = Σ_{j: (i,j)∈K} a_ij / c_i,   ā = Σ_K a_ij / |K|,   A_ij = a_ij − ā_i − ā_j + ā on K,
    dCov²_*(X, Y) = Σ_K A_ij B_ij / |K|,

and dCor from dCov²_* as above (|K| cancels in the ratio; A is stored with 0 on copy pairs). In
terms of the examples, this is the V-statistic of the resampled examples with pair weights
w_k·w_l for k ≠ l and w_k (not w_k²) for k = l: the share of zero-distance pairs is 1/m, as in the
full sample. A replicate without copies is the plain statistic, computed by exactly its code.
Why not the U-statistic (U-centring, diagonal dropped too): it estimates the unbiased dCov², not
the V-statistic this metric reports, so its replicates would be centred on another quantity. The
kernel path's choice for biased CKA (copy–copy entries of the full sample's centred kernel set to
0) gives nearly the same replicates, but needs the full sample's row means, which a replicate
prepared from its own rows does not have. The masked A is not exactly double-centred (its rows
need not sum to 0 over K), so dCov²_*(X, Y) can come out slightly negative: taken as 0 before the
root, as round-off is.

References
----------
Székely, Rizzo & Bakirov (2007), "Measuring and testing dependence by correlation of distances",
Ann. Statist. 35(6), 2769–2794. Székely & Rizzo (2014), "Partial distance correlation with
methods for dissimilarities", Ann. Statist. 42(6), 2382–2412 (U-centring). dcor 0.7
(``dcor.distance_correlation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

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


def centered_distances(gram: Float64, rtol: float, groups: ArrayLike | None = None) -> Float64:
    """Double-centred Euclidean distance matrix of one layer, flattened: (n·n,) float64.

    ``gram`` is any Gram of the rows (the engine's centred Kc), not modified; squared distances
    ≤ rtol·(q_i + q_j) are exact zeros before the square root. ``groups`` (n,) int, for a
    bootstrap replicate: the example each row holds; copy–copy pairs are then set aside from the
    centring's averages and zeroed (:func:`double_center_without_copies`).
    """
    distances = squared_distances(gram, rtol)
    np.sqrt(distances, out=distances)
    if groups is not None:
        return double_center_without_copies(distances, groups).ravel()
    return double_center(distances).ravel()


def double_center_without_copies(distances: Float64, groups: ArrayLike) -> Float64:
    """The distance matrix (n, n) double-centred over the pairs that are not copy–copy pairs, in
    place and returned, with 0 on the copy–copy pairs (module docs: row means over the c_i kept
    pairs of each row, the grand mean over all kept pairs, the diagonal kept). ``groups`` (n,):
    the example of each row. Without copies, exactly :func:`double_center`.
    """
    _, labels, counts = np.unique(np.asarray(groups).ravel(), return_inverse=True, return_counts=True)
    if counts.max(initial=1) == 1:
        return double_center(distances)
    labels = labels.ravel()
    n = distances.shape[0]
    copies = labels[:, None] == labels[None, :]
    np.fill_diagonal(copies, False)
    distances[copies] = 0.0  # copies are at distance 0 already, up to the Gram's round-off
    kept = n + 1.0 - counts[labels]  # c_i: row i's pairs that are not copy–copy pairs
    row = distances.sum(axis=1) / kept
    grand = distances.sum() / kept.sum()
    distances -= row[None, :]
    distances -= row[:, None]
    distances += grand
    distances[copies] = 0.0
    return distances


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


def prepare_dcor(
    layer: LayerContext, params: Mapping[str, Any], groups: NDArray[np.intp] | None = None
) -> VectorState:
    """The per-layer stage: the double-centred distance matrix, flattened. ``groups`` (n,): a
    bootstrap replicate's example per row, whose copy–copy pairs are then set aside (module docs)."""
    rtol = roundoff_rtol(layer.dtype)
    return vector_state(centered_distances(layer.centered_gram(), rtol, groups))


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
        prepare_grouped=prepare_dcor,
        pair=dcor_pair,
        state_cost=vector_cost,
        identity=1.0,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        range_text="[0, 1]",
        cost=_cost,
    )
)
