"""Orthogonal Procrustes distance and the (partially whitened) angular shape metric.

Both compare centred layers after the best orthogonal alignment, whose value is the nuclear norm
‖XcᵀYc‖_* = ‖diag(s_x)·U_xᵀU_y·diag(s_y)‖_* — so each needs only the layer's spectrum (once per
layer) and the pair's coupling (see :mod:`repsim_cli.metrics._linalg`). Widths may differ: the
nuclear norm of the p×q cross matrix needs no padding.

References
----------
Ding, Denain & Steinhardt (2021), "Grounding representation similarity with statistical testing",
NeurIPS (arXiv:2108.01661); js-d/sim_metric ``dists/scoring.py``.
Williams, Kunz, Kornblith & Linderman (2021), "Generalized shape metrics on neural
representations", NeurIPS (arXiv:2110.14739); ahwillia/netrep ``LinearMetric`` and ``whiten``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import MetricParameterError
from ._linalg import (
    RANK_RTOL,
    Float64,
    LayerBasis,
    Spectrum,
    basis_cost,
    basis_coupling,
    basis_pair_cost,
    centred_float64,
    dense_pair,
    nuclear_norm,
    prepare_basis,
)
from .contract import Cell, LayerContext, StateCost
from .registry import MetricInfo, Param, register

PROCRUSTES_CITATION = "Ding, Denain & Steinhardt 2021, NeurIPS (arXiv:2108.01661)"
SHAPE_CITATION = "Williams et al. 2021, NeurIPS (arXiv:2110.14739); as netrep LinearMetric"
# netrep ``whiten``: covariance eigenvalues are clipped at this (absolute) value, and alpha within
# it of 1 means no whitening at all.
NETREP_EIGVAL_TOL = 1e-7


def aligned_inner(c: Float64, scale_a: Float64, scale_b: Float64) -> float:
    """‖diag(scale_a)·C·diag(scale_b)‖_* — the inner product after optimal rotation (float)."""
    return nuclear_norm(c * scale_a[:, None] * scale_b[None, :])


def procrustes_value(c: Float64, a: Spectrum, b: Spectrum) -> float:
    """Ding's squared Procrustes distance 2 − 2‖XnᵀYn‖_* from the coupling, clipped to [0, 2]."""
    cosine = aligned_inner(c, a.s[: c.shape[0]], b.s[: c.shape[1]]) / math.sqrt(
        a.variance * b.variance
    )
    return float(np.clip(2.0 - 2.0 * cosine, 0.0, 2.0))


def whitening_scales(spec: Spectrum, k: int, alpha: float, padded_width: int) -> Float64:
    """Singular values (k,) of netrep's partially whitened layer Xc·Z.

    Z = V diag(d) Vᵀ with d = α + (1 − α)·λ^{−1/2} over all ``padded_width`` eigenvalues λ of
    XcᵀXc after zero-padding to the wider layer (directions beyond the first ``k`` count as 0),
    each clipped below at 1e-7, and d rescaled so that Σd²λ = Σλ (``preserve_variance``).
    """
    s = spec.s[:k]
    if alpha > 1.0 - NETREP_EIGVAL_TOL:
        return s
    lam = np.maximum(spec.sq[:k], NETREP_EIGVAL_TOL)
    d = alpha + (1.0 - alpha) / np.sqrt(lam)
    n_zero = padded_width - k
    d_zero = alpha + (1.0 - alpha) / math.sqrt(NETREP_EIGVAL_TOL)
    total = lam.sum() + n_zero * NETREP_EIGVAL_TOL
    new_var = (d**2 * lam).sum() + n_zero * d_zero**2 * NETREP_EIGVAL_TOL
    return np.asarray(s * d * math.sqrt(total / new_var), dtype=np.float64)


def shape_value(
    c: Float64, a: Spectrum, b: Spectrum, alpha: float, score: str, padded_width: int
) -> float:
    """netrep ``LinearMetric(alpha, center_columns=True, zero_pad=True)`` score from the coupling
    over the rank-truncated directions (``c``: (rank_a, rank_b))."""
    ga = whitening_scales(a, c.shape[0], alpha, padded_width)
    gb = whitening_scales(b, c.shape[1], alpha, padded_width)
    inner = aligned_inner(c, ga, gb)
    norm_a, norm_b = float(ga @ ga), float(gb @ gb)
    if score == "euclidean":
        return math.sqrt(max(norm_a + norm_b - 2.0 * inner, 0.0))
    return float(np.arccos(np.clip(inner / math.sqrt(norm_a * norm_b), 0.0, 1.0)))


# ---------------------------------------------------------------- in-memory functions
def procrustes_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Squared orthogonal Procrustes distance of X (n, p) and Y (n, q), float64.

    Distance in [0, 2]: d² = 2 − 2‖XnᵀYn‖_* with Xn = Xc/‖Xc‖_F (columns centred, whole matrix
    Frobenius-normalised). Invariant to orthogonal maps, isotropic scaling and translation; not to
    general linear maps. cos θ_shape = 1 − d²/2. NaN/Inf or a constant input raise DataError.

    References
    ----------
    Ding, Denain & Steinhardt (2021), NeurIPS; js-d/sim_metric ``procrustes``.
    """
    pair = dense_pair(x, y)
    if pair.identical:
        return 0.0
    return procrustes_value(pair.c, pair.a, pair.b)


def shape_distance(x: ArrayLike, y: ArrayLike, alpha: float = 1.0, score: str = "angular") -> float:
    """Generalised shape metric of X (n, p) and Y (n, q) (Williams et al. 2021), float64.

    Columns are centred, each side is partially whitened by ``alpha`` (1: rotations only; 0: full
    whitening, a CCA-like angle) as netrep's ``whiten(preserve_variance=True)`` with its 1e-7
    eigenvalue clip and zero-padding of the narrower layer, then optimally rotated.
    ``score="angular"``: arccos of the aligned correlation, a distance in [0, π/2] radians;
    ``"euclidean"``: ‖XwU − YwV‖_F, unnormalised, in [0, ∞). With whitening (alpha < 1),
    directions below the relative rank tolerance 1e-10 are treated as absent; at alpha = 1 every
    direction counts, as in netrep and Procrustes. Invariant to orthogonal maps and translation (and, for
    the angle with alpha=1, to isotropic scaling).

    References
    ----------
    Williams, Kunz, Kornblith & Linderman (2021), NeurIPS; ahwillia/netrep ``LinearMetric``.
    """
    _check_shape_params({"alpha": alpha, "score": score})
    pair = dense_pair(x, y)
    if pair.identical:
        return 0.0
    if _unwhitened({"alpha": alpha}):
        ka, kb = pair.a.sq.size, pair.b.sq.size
    else:
        ka, kb = pair.a.rank(RANK_RTOL), pair.b.rank(RANK_RTOL)
    width = max(pair.xc.shape[1], pair.yc.shape[1])
    return shape_value(pair.c[:ka, :kb], pair.a, pair.b, alpha, score, width)


# ---------------------------------------------------------------- per-layer and pair stages
@dataclass(frozen=True)
class CentredLayer:
    """Procrustes' state on the feature side: the centred layer Xc (n, p) in float64 and
    ‖Xc‖²_F. A pair is then the nuclear norm of XcᵀYc (p_a×p_b) itself — no factorisation of
    either layer, the same work per pair as the basis route's coupling when p < n."""

    data: Float64
    sq_norm: float
    n: int
    width: int


ProcrustesState = CentredLayer | LayerBasis


def prepare_procrustes(layer: LayerContext, params: Mapping[str, Any]) -> ProcrustesState:
    """The per-layer stage: the centred layer when the planner chose the feature side for the
    metric, else the layer's basis (:func:`prepare_basis`, shared with the CCA family)."""
    if layer.route != "feature":
        return prepare_basis(layer, params)
    xc = centred_float64(layer)
    sq = float(np.einsum("ij,ij->", xc, xc))
    layer.check_variance(sq)
    return CentredLayer(xc, sq, layer.n, layer.width)


def procrustes_pair(a: ProcrustesState, b: ProcrustesState, params: Mapping[str, Any]) -> Cell:
    """Squared Procrustes distance of two layer states (both of one kind: a run gives all of a
    metric's states one side)."""
    if isinstance(a, CentredLayer) and isinstance(b, CentredLayer):
        cosine = nuclear_norm(a.data.T @ b.data) / math.sqrt(a.sq_norm * b.sq_norm)
        return Cell(float(np.clip(2.0 - 2.0 * cosine, 0.0, 2.0)))
    if not (isinstance(a, LayerBasis) and isinstance(b, LayerBasis)):
        raise TypeError("procrustes: a pair's two states must come from the same side")
    return Cell(procrustes_value(basis_coupling(a, b), a.spectrum, b.spectrum))


def stacked_data(states: Sequence[CentredLayer], scratch: dict[str, Any]) -> Float64:
    """The centred layers side by side (n, Σp), float64 — kept in ``scratch`` while the same
    states come again (the next row of a two-store comparison reuses it)."""
    kept = scratch.get("stacked")
    if kept is not None and len(kept[0]) == len(states) and all(a is b for a, b in zip(kept[0], states, strict=True)):
        return np.asarray(kept[1])
    stacked = np.concatenate([s.data for s in states], axis=1)
    scratch["stacked"] = (tuple(states), stacked)
    return stacked


def row_inner_products(a: ProcrustesState, bs: Sequence[ProcrustesState],
                       scratch: dict[str, Any]) -> list[tuple[float, float, float]] | None:
    """(‖XcᵀYc‖_*, ‖Xc‖²_F, ‖Yc‖²_F) of a centred layer with each of several: one GEMM of Xc
    against the Y's side by side (a wider product runs nearer the GEMM's peak than many p×q
    ones), then each block's nuclear norm. None unless every state is a :class:`CentredLayer`
    (the basis route pairs one at a time)."""
    layers = [b for b in bs if isinstance(b, CentredLayer)]
    if not isinstance(a, CentredLayer) or len(layers) != len(bs):
        return None
    cross = a.data.T @ stacked_data(layers, scratch)
    out, start = [], 0
    for b in layers:
        out.append((nuclear_norm(cross[:, start : start + b.width]), a.sq_norm, b.sq_norm))
        start += b.width
    return out


def procrustes_row(a: ProcrustesState, bs: Sequence[ProcrustesState], params: Mapping[str, Any],
                   scratch: dict[str, Any]) -> list[Cell]:
    """Squared Procrustes distances of one layer with several (see :func:`row_inner_products`)."""
    inners = row_inner_products(a, bs, scratch) if len(bs) > 1 else None
    if inners is None:
        return [procrustes_pair(a, b, params) for b in bs]
    return [Cell(float(np.clip(2.0 - 2.0 * inner / math.sqrt(norm_a * norm_b), 0.0, 2.0)))
            for inner, norm_a, norm_b in inners]


def _procrustes_state_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    """Feature side: the centred float64 layer (n·p). Sample side: the basis through the n×n
    Gram (:func:`basis_cost`)."""
    if side == "feature":
        return StateCost(bytes=8.0 * n * width, flops=2.0 * n * width)
    return basis_cost(n, width, side, params)


def _procrustes_pair_cost(
    n: int, width_a: int, width_b: int, side: str, params: Mapping[str, Any]
) -> StateCost:
    """Feature side: XcᵀYc (2n·p_a·p_b) and its singular values (≈ 6·p_a·p_b·min). Sample side:
    the coupling of the two bases (:func:`basis_pair_cost`, r = min(n, p))."""
    if side == "feature":
        return StateCost(bytes=8.0 * width_a * width_b,
                         flops=2.0 * n * width_a * width_b + 6.0 * width_a * width_b * min(width_a, width_b))  # fmt: skip
    return basis_pair_cost(n, width_a, width_b, side, params)


def _unwhitened(params: Mapping[str, Any]) -> bool:
    """alpha = 1 (within netrep's tolerance): rotations only, no whitening."""
    return bool(params["alpha"] > 1.0 - NETREP_EIGVAL_TOL)


def _shape_ranks(a: LayerBasis, b: LayerBasis, params: Mapping[str, Any]) -> tuple[int, int]:
    """Directions of each basis that the shape metric keeps: all (above the round-off floor) at
    alpha = 1, as netrep (no whitening) and Procrustes; those above the relative rank tolerance
    :data:`RANK_RTOL` when whitening divides by the variances."""
    if _unwhitened(params):
        return a.spectrum.sq.size, b.spectrum.sq.size
    return a.spectrum.rank(RANK_RTOL), b.spectrum.rank(RANK_RTOL)


def prepare_shape(layer: LayerContext, params: Mapping[str, Any]) -> ProcrustesState:
    """The per-layer stage: on the feature side without whitening (alpha = 1) the centred layer
    (:class:`CentredLayer`, as Procrustes); otherwise the layer's basis (:func:`prepare_basis`)."""
    if layer.route == "feature" and _unwhitened(params):
        return prepare_procrustes(layer, params)
    return prepare_basis(layer, params)


def shape_pair(a: ProcrustesState, b: ProcrustesState, params: Mapping[str, Any]) -> Cell:
    """Shape metric of two layer states (both of one kind: a run gives a metric's states one side)."""
    if isinstance(a, CentredLayer) and isinstance(b, CentredLayer):
        inner = nuclear_norm(a.data.T @ b.data)
        return Cell(_shape_value_of(inner, a.sq_norm, b.sq_norm, params["score"]))
    if not (isinstance(a, LayerBasis) and isinstance(b, LayerBasis)):
        raise TypeError("shape: a pair's two states must come from the same side")
    ka, kb = _shape_ranks(a, b, params)
    c = basis_coupling(a, b, ka, kb)
    return Cell(shape_value(c, a.spectrum, b.spectrum, params["alpha"], params["score"],
                            max(a.width, b.width)))  # fmt: skip


def _shape_value_of(inner: float, norm_a: float, norm_b: float, score: str) -> float:
    """The unwhitened shape score from ‖XcᵀYc‖_* and the two squared Frobenius norms."""
    if score == "euclidean":
        return math.sqrt(max(norm_a + norm_b - 2.0 * inner, 0.0))
    return float(np.arccos(np.clip(inner / math.sqrt(norm_a * norm_b), 0.0, 1.0)))


def shape_row(a: ProcrustesState, bs: Sequence[ProcrustesState], params: Mapping[str, Any],
              scratch: dict[str, Any]) -> list[Cell]:
    """Shape metric of one layer with several (alpha = 1 on the feature side: one GEMM)."""
    inners = row_inner_products(a, bs, scratch) if len(bs) > 1 else None
    if inners is None:
        return [shape_pair(a, b, params) for b in bs]
    return [Cell(_shape_value_of(inner, norm_a, norm_b, params["score"])) for inner, norm_a, norm_b in inners]


def _shape_state_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    """Feature side at alpha = 1: the centred layer, as Procrustes. Otherwise the basis
    (:func:`basis_cost`)."""
    if side == "feature" and _unwhitened(params):
        return _procrustes_state_cost(n, width, side, params)
    return basis_cost(n, width, side, params)


def _shape_pair_cost(
    n: int, width_a: int, width_b: int, side: str, params: Mapping[str, Any]
) -> StateCost:
    """As Procrustes' at alpha = 1; otherwise the bases' coupling on either side."""
    if _unwhitened(params):
        return _procrustes_pair_cost(n, width_a, width_b, side, params)
    return basis_pair_cost(n, width_a, width_b, side, params)


def _check_shape_params(params: Mapping[str, Any]) -> None:
    if not 0.0 <= params["alpha"] <= 1.0:
        raise MetricParameterError(f"metric 'shape': alpha={params['alpha']} must be in [0, 1]")
    if params["score"] not in ("angular", "euclidean"):
        raise MetricParameterError(
            f"metric 'shape': score={params['score']!r} is not angular or euclidean"
        )


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    """Upper bound (sample side, full rank): one n×n eigh per layer, an n×n coupling + SVD per pair."""
    return float(n_layers * 4 * n**3 + n_pairs * 3 * n**3)


register(
    MetricInfo(
        prepare_grams=1,
        name="procrustes", kind="distance", symmetric=True, bounds=(0.0, 2.0), params=(),
        citation=PROCRUSTES_CITATION,
        summary="squared orthogonal Procrustes distance of centred, normalised layers",
        sides=("sample", "feature"), needs_gram=False, prepare=prepare_procrustes,
        pair=procrustes_pair, pair_row=procrustes_row, state_cost=_procrustes_state_cost,
        state_key=lambda params: ("procrustes",), identity=0.0, identity_exact=True,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        range_text="[0, 2] (squared distance)", cost=_cost, pair_cost=_procrustes_pair_cost,
    )
)  # fmt: skip
register(
    MetricInfo(
        prepare_grams=1,
        name="shape", kind="distance", symmetric=True, bounds=(0.0, math.pi / 2),
        bounds_for=lambda p: (0.0, math.pi / 2) if p["score"] == "angular" else (0.0, math.inf),
        params=(
            Param("alpha", 1.0, float, doc="1: rotations only; 0: full whitening (CCA-like)"),
            Param("score", "angular", choices=("angular", "euclidean"),
                  doc="angle in radians, or the unnormalised Frobenius distance"),
        ),
        citation=SHAPE_CITATION,
        summary="angular shape metric after partial whitening and optimal rotation",
        sides=("sample", "feature"), needs_gram=False, prepare=prepare_shape, pair=shape_pair,
        pair_row=shape_row,
        state_cost=_shape_state_cost,
        state_key=lambda params: ("shape_data",) if _unwhitened(params) else ("basis",),
        identity=0.0, identity_exact=True,
        invariances=("orthogonal", "translation", "permutation"), is_metric=True,
        validate=_check_shape_params,
        range_text="[0, π/2] radians (score=euclidean: [0, ∞))", cost=_cost, pair_cost=_shape_pair_cost,
    )
)  # fmt: skip
