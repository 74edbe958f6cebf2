"""Representational similarity analysis (RSA), as rsatoolbox 0.3.2 computes it, on the Gram engine.

RDM (one per layer, its upper triangle without the diagonal, N = n(n−1)/2 entries, row-major):

* ``rdm=correlation``: 1 − r_ij, with r the Pearson correlation of the *rows* (each stimulus
  pattern centred across units): from the engine's row-centred Gram Ks, r_ij = Ks_ij/√(Ks_ii Ks_jj)
  (rsatoolbox ``calc_rdm(method="correlation")``). Not invariant to orthogonal maps of the units.
* ``rdm=euclidean``: the **squared** Euclidean distance divided by the number of units D
  (rsatoolbox ``calc_rdm(method="euclidean")``), from the centred Gram: (q_i + q_j − 2Kc_ij)/D.

Comparison of two RDM vectors (rsatoolbox ``compare(method=...)``), each a similarity in [−1, 1]:
``spearman`` = Pearson correlation of the average-tie ranks; ``pearson`` (rsatoolbox ``corr``);
``kendall`` = Kendall's τ-b (``scipy.stats.kendalltau``); ``cosine`` = uncentred cosine.

Per layer (once): the RDM vector, and its comparison-ready form (centred ranks, centred values or
the values). Per pair: one dot product (τ-b: one ``kendalltau``, O(N log N)).

Ties: RDM entries equal up to round-off (within a bound on the RDM's round-off, from 64·ε of the
Gram's precision and the layer's norms) are ranked as ties by ``spearman`` and ``kendall``. With repeated stimulus patterns the true distances tie exactly, but
rsatoolbox ranks the round-off of its own arithmetic instead, so its value can differ there.

Degenerate input, reported instead of computed from round-off: a constant layer raises
:class:`DataError` (engine); ``rdm=correlation`` with a stimulus whose pattern is constant across
units (zero norm after row-centring; rsatoolbox gives NaN entries) gives NaN for that layer with a
:class:`RepsimWarning`; an RDM whose entries are all equal up to round-off (e.g. one-hot rows, or
n = 2) gives NaN with a warning for the correlation-type comparisons, and an all-zero RDM gives
NaN for ``cosine``.

References
----------
Kriegeskorte, Mur & Bandettini (2008), "Representational similarity analysis — connecting the
branches of systems neuroscience", Front. Syst. Neurosci. 2:4. Nili et al. (2014), "A toolbox for
representational similarity analysis", PLoS Comput. Biol. 10(4); rsatoolbox 0.3.2
(``rdm.calc_rdm``, ``rdm.compare``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._warnings import RepsimWarning
from ..errors import DataError
from ._kernels import (
    Float64,
    VectorState,
    as_matrix,
    centered_gram_dense,
    ratio_matrix,
    roundoff_rtol,
    squared_distances,
    vector_ratio,
    vector_state,
)  # fmt: skip
from .contract import Cell, LayerContext, StateCost
from .registry import MetricInfo, Param, register

CITATION = (
    "Kriegeskorte et al. 2008, Front. Syst. Neurosci. 2:4; as rsatoolbox 0.3.2 (Nili et al. 2014)"
)
RDMS = ("correlation", "euclidean")
COMPARISONS = ("spearman", "pearson", "kendall", "cosine")


def _upper(matrix: Float64) -> Float64:
    """Strict upper triangle of an (n, n) matrix, row-major (rsatoolbox's vector order)."""
    n = matrix.shape[0]
    return np.asarray(matrix[~np.tri(n, dtype=bool)], dtype=np.float64)


def correlation_rdm(
    stimulus_gram: Float64, centered_gram: Float64, rtol: float, label: str
) -> tuple[Float64 | None, float]:
    """Correlation-distance RDM vector (N,) float64 from the row-centred Gram, and its round-off.

    ``stimulus_gram`` is Ks = X̊X̊ᵀ with every row of X centred across units, ``centered_gram`` the
    unit-centred Kc (both (n, n), not modified), ``rtol`` the relative round-off of Kc's GEMM.
    The engine builds Ks from Kc with exact float64 rank-one terms, so an entry of Ks is off by
    about rtol·√(q_i q_j) (q = diag Kc) plus float64 round-off, and r_ij by that over √(Ks_ii Ks_jj).

    Returns (RDM, tolerance): entries closer than the tolerance are equal up to round-off. A row
    whose Ks_ii is within round-off of 0 is a pattern constant across units: its correlations are
    undefined, and (None, nan) is returned with a :class:`RepsimWarning`.
    """
    norms = np.diag(stimulus_gram).copy()
    q = np.diag(centered_gram)
    eps64 = roundoff_rtol(np.float64)
    zero = ~(norms > rtol * q + eps64 * norms.max())
    if np.any(zero):
        warnings.warn(
            f"{label}: {int(zero.sum())} stimulus pattern(s) are constant across units, so their "
            "correlation distances are undefined; rsa with rdm=correlation is NaN",
            RepsimWarning,
            stacklevel=2,
        )
        return None, float("nan")
    inv = 1.0 / np.sqrt(norms)
    r = stimulus_gram * inv[:, None]
    r *= inv[None, :]
    tolerance = 2.0 * (rtol * float(np.max(q / norms)) + eps64)
    return 1.0 - _upper(r), tolerance


def euclidean_rdm(centered_gram: Float64, width: int, rtol: float) -> tuple[Float64, float]:
    """Squared-Euclidean RDM vector divided by the number of units D, (N,) float64, and its
    round-off: an entry (q_i + q_j − 2Kc_ij)/D is off by about rtol·4·max(q)/D."""
    tolerance = rtol * 4.0 * float(np.max(np.diag(centered_gram))) / width
    return _upper(squared_distances(centered_gram, rtol)) / float(width), tolerance


def comparison_vector(rdm: Float64, compare: str, tolerance: float, label: str) -> Float64 | None:
    """The per-layer vector each comparison needs, or None (with a warning) when undefined.

    ``spearman``: average-tie ranks, centred; ``pearson``: values, centred; ``cosine``: the
    values; ``kendall``: the values with round-off ties made exact. ``tolerance`` is the RDM's
    round-off: entries within it of each other are ties, and an RDM whose spread (or, for cosine,
    whose largest entry) is within it is constant, so its correlations are undefined.
    """
    if compare == "cosine":
        degenerate = not float(np.max(np.abs(rdm), initial=0.0)) > tolerance
        problem = "all its entries are 0"
    else:
        degenerate = rdm.size < 2 or not float(np.ptp(rdm)) > tolerance
        problem = "all its entries are equal"
    if degenerate:
        warnings.warn(
            f"{label}: the RDM is constant ({problem}), so its {compare} comparison is undefined; "
            "rsa is NaN",
            RepsimWarning,
            stacklevel=2,
        )
        return None
    if compare in ("spearman", "kendall"):
        ranks, snapped = tied_ranks(rdm, tolerance)
        return np.asarray(ranks - ranks.mean()) if compare == "spearman" else snapped
    if compare == "pearson":
        return np.asarray(rdm - rdm.mean(), dtype=np.float64)
    return rdm


def tied_ranks(values: Float64, tol: float) -> tuple[Float64, Float64]:
    """Average-tie ranks (1-based) of ``values`` (N,), counting values within ``tol`` as ties.

    Equal RDM entries computed through different round-off (e.g. for repeated stimulus
    patterns) are ties, as they are in exact arithmetic. Sorted values are split where a gap
    exceeds ``tol``; a run that still spans more than ``tol`` is cut into bins of width ``tol``
    from its smallest value, so ties never chain across a wider range. Returns (ranks, values
    with each tie group set to its smallest member), float64.
    """
    order = np.argsort(values)  # order within a tie group does not matter
    ordered = values[order]
    starts = np.ones(ordered.size, dtype=bool)
    starts[1:] = np.diff(ordered) > max(tol, 0.0)
    if tol > 0.0:
        run = np.cumsum(starts) - 1
        bins = np.floor((ordered - ordered[np.flatnonzero(starts)][run]) / tol)
        starts[1:] |= bins[1:] != bins[:-1]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.append(first[1:], ordered.size) - 1
    ranks = np.empty(values.size)
    ranks[order] = ((first + last) / 2.0 + 1.0)[group]
    snapped = np.empty(values.size)
    snapped[order] = ordered[first][group]
    return ranks, snapped


def _layer_rdm(
    gram_units: Float64, gram_stimuli: Float64 | None, width: int, rdm: str, rtol: float, label: str
) -> tuple[Float64 | None, float]:
    """(RDM vector or None, its round-off tolerance) for one layer."""
    if rdm == "correlation":
        assert gram_stimuli is not None
        return correlation_rdm(gram_stimuli, gram_units, rtol, label)
    return euclidean_rdm(gram_units, width, rtol)


def _kendall_matrix(vectors_a: Sequence[Float64 | None], vectors_b: Sequence[Float64 | None],
                    same: bool) -> Float64:  # fmt: skip
    from scipy.stats import kendalltau  # imported here: scipy.stats costs ~1 s at start-up

    out = np.full((len(vectors_a), len(vectors_b)), np.nan)
    for i, u in enumerate(vectors_a):
        for j, v in enumerate(vectors_b):
            if same and j < i:
                out[i, j] = out[j, i]
            elif u is not None and v is not None:
                out[i, j] = float(kendalltau(u, v).statistic)
    return out


def rsa(x: ArrayLike, y: ArrayLike, rdm: str = "correlation", compare: str = "spearman") -> float:
    """RSA between X (n, p) and Y (n, q), any float dtype, computed in float64, as rsatoolbox.

    Parameters
    ----------
    x, y : (n, p) and (n, q) arrays
        The same n stimuli (rows) in the same order; columns are units.
    rdm : {"correlation", "euclidean"}
        1 − Pearson r between stimulus patterns, or squared Euclidean distance / number of units.
    compare : {"spearman", "pearson", "kendall", "cosine"}
        How the two RDM upper triangles are compared (Kendall: τ-b).

    Returns
    -------
    float
        Similarity in [−1, 1]; 1 for X = Y. NaN with a :class:`RepsimWarning` when an RDM is
        undefined or constant (see the module docs). A constant X or Y raises :class:`DataError`.

    References
    ----------
    Kriegeskorte et al. (2008); rsatoolbox 0.3.2 ``calc_rdm`` and ``compare``.
    """
    a, b = as_matrix(x), as_matrix(y)
    if a.shape[0] != b.shape[0]:
        raise DataError(f"X has {a.shape[0]} samples but Y has {b.shape[0]}")
    rtol = roundoff_rtol(np.float64)
    vectors = []
    for label, z in (("X", a), ("Y", b)):
        kc = centered_gram_dense(z, label, "rsa")
        ks = None
        if rdm == "correlation":
            zs = z - z.mean(axis=1, keepdims=True)
            ks = zs @ zs.T
        vec, tolerance = _layer_rdm(kc, ks, z.shape[1], rdm, rtol, label)
        vectors.append(None if vec is None else comparison_vector(vec, compare, tolerance, label))
    u, v = vectors
    if compare == "kendall":
        return float(_kendall_matrix([u], [v], same=False)[0, 0])
    if u is None or v is None:
        return float("nan")
    h = np.array([[float(u @ v)]])
    return float(ratio_matrix(h, np.array([u @ u]), np.array([v @ v]), "rsa")[0, 0])


def prepare_rsa(layer: LayerContext, params: Mapping[str, Any]) -> VectorState:
    """The per-layer stage: the layer's RDM (shared by every comparison method of the run), then
    its comparison vector (ranks for Spearman/Kendall, centred for Pearson)."""
    rdm, compare = str(params["rdm"]), str(params["compare"])
    rtol = roundoff_rtol(layer.dtype)

    def build_rdm() -> tuple[Float64 | None, float]:
        ks = layer.gram("stimuli") if rdm == "correlation" else None
        return _layer_rdm(layer.centered_gram(), ks, layer.width, rdm, rtol, layer.label)

    vec, tolerance = layer.shared(f"rdm[{rdm}]", build_rdm)
    return vector_state(None if vec is None else comparison_vector(vec, compare, tolerance, layer.label))


def rsa_pair(a: VectorState, b: VectorState, params: Mapping[str, Any]) -> Cell:
    """RSA of two layer states: Kendall's τ-b, or one normalised dot product."""
    if params["compare"] == "kendall":
        return Cell(float(_kendall_matrix([a.vector], [b.vector], same=False)[0, 0]))
    value, note = vector_ratio(a, b)
    return Cell(value, note=note)


def _rsa_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    pairs = n * (n - 1) / 2.0
    return StateCost(bytes=8.0 * pairs, flops=float(pairs * (np.log2(max(pairs, 2.0)) + 10)))


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    pairs = n * (n - 1) / 2.0
    per_pair = (
        pairs * np.log2(max(pairs, 2.0)) * 10 if params["compare"] == "kendall" else 2 * pairs
    )
    return float(n_layers * pairs * (np.log2(max(pairs, 2.0)) + 10) + n_pairs * per_pair)


register(
    MetricInfo(
        prepare_grams=4,
        name="rsa",
        kind="similarity",
        symmetric=True,
        bounds=(-1.0, 1.0),
        params=(
            Param(
                "rdm",
                "correlation",
                str,
                RDMS,
                doc="correlation: 1 − r of the patterns; euclidean: squared distance / units",
            ),
            Param(
                "compare",
                "spearman",
                str,
                COMPARISONS,
                doc="RDM comparison (kendall = τ-b; cosine is uncentred)",
            ),
        ),
        citation=CITATION,
        summary="correlation between the two layers' RDMs (upper triangles)",
        sides=("sample",),
        prepare=prepare_rsa,
        state_key=lambda params: ("rsa", params["rdm"], params["compare"]),
        pair=rsa_pair,
        state_cost=_rsa_cost,
        identity=1.0,
        invariances=("isotropic_scaling", "permutation"),
        range_text="[−1, 1]",
        cost=_cost,
    )
)
