"""The CCA family — mean canonical correlation, SVCCA and PWCCA — on the shared Gram engine.

Canonical correlations of centred X (n×p) and Y (n×q) are the cosines of the principal angles
between their column spaces: the singular values of C = U_xᵀU_y, where U_x, U_y are orthonormal
bases of the centred columns (see :mod:`repsim_cli.metrics._linalg`). Each layer's basis comes
from one eigendecomposition (of Kc when the layers are wider than n, of XcᵀXc otherwise),
computed once per layer and reused for every pair.

How CCA averages. A direction of a layer counts when its variance s²_i exceeds ``epsilon`` times
the layer's largest (a relative rank tolerance; google/svcca's tutorials use the same 1e-10). The
mean is over the min(rank_a, rank_b) canonical correlations of the retained directions, so dead
units and duplicated or collinear units neither crash the metric nor dilute it (Ding et al.'s
``cca_decomp`` divides by min(p_a, p_b) instead; google/svcca crashes on singular covariances).
When rank_a + rank_b > n − 1, at least that excess of correlations is 1 by construction (two
subspaces of the (n−1)-dimensional centred space must intersect); this is the true value for the
data given, not round-off, and is reported with a :class:`~repsim_cli._warnings.RepsimWarning`.

References
----------
Hotelling (1936), "Relations between two sets of variates", Biometrika.
Raghu, Gilmer, Yosinski & Sohl-Dickstein (2017), "SVCCA", NeurIPS (arXiv:1706.05806);
google/svcca ``cca_core.get_cca_similarity``.
Morcos, Raghu & Bengio (2018), "Insights on representational similarity in neural networks with
canonical correlation", NeurIPS (arXiv:1806.05759); google/svcca ``pwcca.compute_pwcca``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import MetricParameterError
from ._linalg import (
    DEAD_UNIT_RTOL,
    FORCED_NOTE,
    RANK_RTOL,
    Float64,
    LayerBasis,
    Spectrum,
    basis_cost,
    basis_coupling,
    basis_pair_cost,
    dense_pair,
    forced_ones,
    prepare_basis,
    singular_values,
    unit_projection,
    warn_dense,
)
from .contract import Cell, LayerContext, StateCost
from .registry import MetricInfo, Param, register

CCA_CITATION = "Hotelling 1936; as google/svcca cca_core (Raghu et al. 2017, arXiv:1706.05806)"
SVCCA_CITATION = "Raghu et al. 2017, NeurIPS (arXiv:1706.05806); PCA step as sklearn PCA"
PWCCA_CITATION = "Morcos, Raghu & Bengio 2018, NeurIPS (arXiv:1806.05759); google/svcca pwcca"
DEFAULT_KEEP = 0.99


# ---------------------------------------------------------------- per-pair formulas
def mean_cca(
    c: Float64, a: Spectrum, b: Spectrum, n: int, stat: str = "mean_rho", epsilon: float = 1e-10
) -> tuple[float, str | None]:
    """Mean canonical correlation from the coupling C = U_aᵀU_b (at least rank_a × rank_b).

    Keeps the directions with s² > ``epsilon``·s²_max on each side and returns mean(ρ) or mean(ρ²)
    over the min(rank_a, rank_b) correlations, with a note when some are 1 by construction.
    """
    ka, kb = a.rank(epsilon), b.rank(epsilon)
    if all_forced(ka, kb, n):
        return 1.0, FORCED_NOTE
    rho = np.clip(singular_values(c[:ka, :kb]), 0.0, 1.0)
    value = float(np.mean(rho**2 if stat == "mean_rho2" else rho))
    return value, FORCED_NOTE if forced_ones(ka, kb, n) else None


def all_forced(rank_a: int, rank_b: int, n: int) -> bool:
    """True when every one of the min(rank_a, rank_b) canonical correlations is 1 by construction
    (one layer spans all n − 1 centred directions), so mean ρ, mean ρ² and PWCCA are exactly 1."""
    return forced_ones(rank_a, rank_b, n) >= min(rank_a, rank_b)


def pca_dims(spec: Spectrum, keep: float, dims: int | None) -> tuple[int, str | None]:
    """Number of leading principal components SVCCA keeps for one layer.

    ``dims`` given: that many, capped at the layer's rank (with a note). Otherwise the smallest k
    whose cumulative explained-variance ratio (squared singular values) is strictly greater than
    ``keep`` — sklearn ``PCA(n_components=keep)``'s rule — also capped at the rank.
    """
    rank = spec.rank(RANK_RTOL)
    if dims is not None:
        if dims > rank:
            return rank, "dims exceeds a layer's rank; that layer keeps only its rank"
        return dims, None
    ratio_cumsum = np.cumsum(spec.sq) / spec.sq.sum()
    k = int(np.searchsorted(ratio_cumsum, keep, side="right")) + 1
    return min(k, rank), None


def svcca_value(
    c: Float64, ka: int, kb: int, n: int, notes: tuple[str | None, ...] = ()
) -> tuple[float, str | None]:
    """Mean canonical correlation of the leading ``ka`` and ``kb`` principal components."""
    rho = np.clip(singular_values(c[:ka, :kb]), 0.0, 1.0)
    note = next((m for m in notes if m), None)
    if forced_ones(ka, kb, n):
        note = FORCED_NOTE
    return float(np.mean(rho)), note


def projection_weighted(
    c: Float64, chosen: Spectrum, projection: Float64, mean: Float64, n: int
) -> float:
    """PWCCA with weights from the *chosen* layer (the rows of ``c``).

    ``c``: (r_chosen, r_other) coupling, ``projection``: G = UᵀXc (≥ r_chosen, p) of the chosen
    layer, ``mean``: its (p,) column means. Follows google/svcca ``compute_pwcca``: units with
    variance < 1e-10 of the largest are dropped; the directions are h_i = Xc·u_i + μ_i·1 (the
    canonical directions u_i in unit space, *not* whitened, with unit i's mean added back); P is
    the Q of their QR; w_i = Σ_j |⟨P_i, x_j⟩| over the raw (uncentred) units x_j; the result is
    Σw_iρ_i / Σw_i over the k = min(r_chosen, r_other) correlations.

    Because the mean is added back, the reference's value depends on the arbitrary sign LAPACK
    gives each canonical direction. repsim fixes it: the largest-magnitude unit coefficient of
    each u_i is positive (sklearn's ``svd_flip`` convention). For centred data the sign is moot.
    """
    r = c.shape[0]
    s = chosen.s[:r]
    g = projection[:r]
    unit_var = np.einsum("ij,ij->j", projection, projection)
    kept = unit_var >= DEAD_UNIT_RTOL * unit_var.max()
    g_kept, mu = g[:, kept], mean[kept]
    k = min(c.shape[0], c.shape[1], int(kept.sum()))
    import scipy.linalg  # deferred: scipy.linalg costs 0.2 s at start-up
    left, rho, _ = scipy.linalg.svd(c, full_matrices=False, check_finite=False)
    left, rho = left[:, :k], np.clip(rho[:k], 0.0, 1.0)
    unit_coef = (g_kept.T / s) @ left  # u_i = V·a_i over the kept units, (p', k)
    top = np.argmax(np.abs(unit_coef), axis=0)
    left = left * np.where(unit_coef[top, np.arange(k)] < 0, -1.0, 1.0)
    # h_i = U·(s∘a_i) + μ_i·1 lies in span[U, 1/√n]; QR in those coordinates.
    root_n = np.sqrt(n)
    directions = np.vstack([s[:, None] * left, root_n * mu[None, :k]])
    q, _ = np.linalg.qr(directions)
    raw_units = np.vstack([g_kept, root_n * mu[None, :]])  # [Uᵀx_j ; 1ᵀx_j/√n] for raw x_j
    weights = np.abs(q.T @ raw_units).sum(axis=1)
    return float(np.clip(weights @ rho / weights.sum(), 0.0, 1.0))


def choose_side(side: str, rank_a: int, rank_b: int) -> str:
    """``a`` or ``b``: ``narrower`` picks the lower-rank layer (ties to a), as google/svcca picks
    the side with fewer kept units (the two agree wherever the reference runs)."""
    if side == "narrower":
        return "a" if rank_a <= rank_b else "b"
    return side


def pwcca_value(
    c: Float64, a: Spectrum, b: Spectrum, proj: Float64, mean: Float64, side: str, n: int
) -> tuple[float, str | None]:
    """PWCCA of a pair from the full coupling C = U_aᵀU_b; ``proj``/``mean`` belong to ``side``."""
    ka, kb = a.rank(RANK_RTOL), b.rank(RANK_RTOL)
    if all_forced(ka, kb, n):
        return 1.0, FORCED_NOTE
    c = c[:ka, :kb]
    chosen, cc = (a, c) if side == "a" else (b, c.T)
    note = FORCED_NOTE if forced_ones(ka, kb, n) else None
    return projection_weighted(cc, chosen, proj, mean, n), note


# ---------------------------------------------------------------- in-memory functions
def cca_similarity(
    x: ArrayLike, y: ArrayLike, stat: str = "mean_rho", epsilon: float = 1e-10
) -> float:
    """Mean canonical correlation of X (n, p) and Y (n, q); any float dtype, computed in float64.

    Similarity in [0, 1]: mean(ρ) (``stat="mean_rho"``) or mean(ρ²) (``"mean_rho2"``) over the
    min(rank_x, rank_y) canonical correlations of the column-centred data, rank counted with the
    relative tolerance ``epsilon`` on squared singular values. Invariant to invertible linear maps
    of either side and to translation. NaN/Inf or a constant input raise DataError; rank_x + rank_y
    > n − 1 (e.g. n ≤ p) returns the exact value (partly or wholly 1) with a RepsimWarning.

    References
    ----------
    Hotelling (1936); Raghu et al. (2017), google/svcca ``cca_core``.
    """
    _check_cca_params({"stat": stat, "epsilon": epsilon})
    pair = dense_pair(x, y)
    if pair.identical:
        return 1.0
    value, note = mean_cca(pair.c, pair.a, pair.b, pair.n, stat, epsilon)
    warn_dense("cca", note)
    return value


def svcca_similarity(
    x: ArrayLike, y: ArrayLike, keep: float | None = None, dims: int | None = None
) -> float:
    """SVCCA of X (n, p) and Y (n, q): mean canonical correlation of their leading principal
    components; float64. Similarity in [0, 1].

    Each side keeps the smallest k with cumulative explained variance (squared singular values)
    > ``keep`` (sklearn ``PCA(n_components=keep)``; 0.99 when neither is given), or exactly
    ``dims`` components (capped at the rank, with a warning); the mean is over min(k_x, k_y)
    correlations. Invariant to orthogonal maps, isotropic scaling, translation.

    References
    ----------
    Raghu et al. (2017), "SVCCA", NeurIPS; nacloos ``svcca-var=0.99-score``.
    """
    _check_svcca_params({"keep": keep, "dims": dims})
    keep = DEFAULT_KEEP if keep is None else keep
    pair = dense_pair(x, y)
    if pair.identical:
        return 1.0
    ka, note_a = pca_dims(pair.a, keep, dims)
    kb, note_b = pca_dims(pair.b, keep, dims)
    value, note = svcca_value(pair.c, ka, kb, pair.n, (note_a, note_b))
    warn_dense("svcca", note)
    return value


def pwcca_similarity(x: ArrayLike, y: ArrayLike, side: str = "a") -> float:
    """Projection-weighted CCA of X (n, p) and Y (n, q), float64; similarity in [0, 1].

    Asymmetric: weights come from ``side`` (``a`` = X, ``b`` = Y, ``narrower`` = the lower-rank
    one, ties to X). See :func:`projection_weighted` for the weighting and its sign convention.
    Where google/svcca raises (Y side chosen: IndexError; singular covariances; n ≤ p) repsim uses
    Y's own activations, the rank-truncated bases and drops dead units.

    References
    ----------
    Morcos, Raghu & Bengio (2018), NeurIPS; google/svcca ``pwcca.compute_pwcca``.
    """
    _check_side(side)
    pair = dense_pair(x, y)
    if pair.identical:
        return 1.0
    chosen = choose_side(side, pair.a.rank(RANK_RTOL), pair.b.rank(RANK_RTOL))
    spec, xc, mean = (
        (pair.a, pair.xc, pair.mean_x) if chosen == "a" else (pair.b, pair.yc, pair.mean_y)
    )
    value, note = pwcca_value(
        pair.c, pair.a, pair.b, unit_projection(spec, xc), mean, chosen, pair.n
    )
    warn_dense("pwcca", note)
    return value


# ---------------------------------------------------------------- pair stage
def cca_pair(a: LayerBasis, b: LayerBasis, params: Mapping[str, Any]) -> Cell:
    """Mean canonical correlation of two layer states."""
    eps = params["epsilon"]
    ka, kb = a.spectrum.rank(eps), b.spectrum.rank(eps)
    if all_forced(ka, kb, a.n):
        return Cell(1.0, note=FORCED_NOTE)
    value, note = mean_cca(basis_coupling(a, b, ka, kb), a.spectrum, b.spectrum, a.n, params["stat"], eps)
    return Cell(value, note=note)


def svcca_pair(a: LayerBasis, b: LayerBasis, params: Mapping[str, Any]) -> Cell:
    """SVCCA of two layer states."""
    keep = DEFAULT_KEEP if params["keep"] is None else params["keep"]
    ka, note_a = pca_dims(a.spectrum, keep, params["dims"])
    kb, note_b = pca_dims(b.spectrum, keep, params["dims"])
    value, note = svcca_value(basis_coupling(a, b, ka, kb), ka, kb, a.n, (note_a, note_b))
    return Cell(value, note=note)


def pwcca_pair(a: LayerBasis, b: LayerBasis, params: Mapping[str, Any]) -> Cell:
    """PWCCA of two layer states (weights from ``params["side"]``)."""
    ka, kb = a.spectrum.rank(RANK_RTOL), b.spectrum.rank(RANK_RTOL)
    if all_forced(ka, kb, a.n):
        return Cell(1.0, note=FORCED_NOTE)
    side = choose_side(params["side"], ka, kb)
    chosen = a if side == "a" else b
    assert chosen.projection is not None
    assert chosen.mean is not None
    value, note = pwcca_value(basis_coupling(a, b, ka, kb), a.spectrum, b.spectrum,
                              chosen.projection, chosen.mean, side, a.n)  # fmt: skip
    return Cell(value, note=note)


def _prepare_weighted(layer: LayerContext, params: Mapping[str, Any]) -> LayerBasis:
    return prepare_basis(layer, params, projection=True)


def _weighted_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    """The basis, plus G = UᵀXc (r×p) and the means (p); G costs a pass on the sample side (on
    the feature side it is diag(s)Vᵀ)."""
    base = basis_cost(n, width, side, params)
    r = min(n, width)
    extra = 2.0 * n * r * width if side == "sample" else 1.0 * r * width
    return StateCost(base.bytes + 8.0 * (r * width + width), base.flops + extra)


# ---------------------------------------------------------------- parameters and registration
def _check_cca_params(params: Mapping[str, Any]) -> None:
    if params["stat"] not in ("mean_rho", "mean_rho2"):
        raise MetricParameterError(
            f"metric 'cca': stat={params['stat']!r} is not mean_rho or mean_rho2"
        )
    if not 0.0 <= params["epsilon"] < 1.0:
        raise MetricParameterError(f"metric 'cca': epsilon={params['epsilon']} must be in [0, 1)")


def _check_svcca_params(params: Mapping[str, Any]) -> None:
    keep, dims = params["keep"], params["dims"]
    if keep is not None and dims is not None:
        raise MetricParameterError("metric 'svcca': give either keep= or dims=, not both")
    if dims is not None and dims < 1:
        raise MetricParameterError(f"metric 'svcca': dims={dims} must be at least 1")
    if keep is not None and not 0.0 < keep < 1.0:
        raise MetricParameterError(f"metric 'svcca': keep={keep} must be in (0, 1)")


def _check_side(side: str) -> None:
    if side not in ("a", "b", "narrower"):
        raise MetricParameterError(f"metric 'pwcca': side={side!r} is not a, b or narrower")


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    """Upper bound (sample side, full rank): one n×n eigh per layer, an n×n coupling + SVD per pair."""
    return float(n_layers * 4 * n**3 + n_pairs * 3 * n**3)


register(
    MetricInfo(
        prepare_grams=1,
        name="cca", kind="similarity", symmetric=True, bounds=(0.0, 1.0),
        params=(
            Param("stat", "mean_rho", choices=("mean_rho", "mean_rho2"),
                  doc="mean of the canonical correlations ρ, or of ρ²"),
            Param("epsilon", 1e-10, float,
                  doc="relative rank tolerance: directions with variance ≤ epsilon × the largest are dropped"),
        ),
        citation=CCA_CITATION,
        summary="mean canonical correlation over min(rank_a, rank_b) directions",
        sides=("sample", "feature"), needs_gram=False,
        prepare=prepare_basis, pair=cca_pair, state_cost=basis_cost,
        state_key=lambda params: ("basis",), identity=1.0, identity_exact=True,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation",
                     "invertible_linear"),
        validate=_check_cca_params, range_text="[0, 1]", cost=_cost, pair_cost=basis_pair_cost,
    )
)  # fmt: skip
register(
    MetricInfo(
        prepare_grams=1,
        name="svcca", kind="similarity", symmetric=True, bounds=(0.0, 1.0),
        params=(
            Param("keep", None, float, shown="default 0.99 unless dims is given",
                            doc="fraction of variance the principal components must exceed"),
            Param("dims", None, int, shown="fixed number of components; instead of keep",
                            doc="fixed number of principal components (instead of keep)"),
        ),
        citation=SVCCA_CITATION,
        summary="mean canonical correlation of the principal components keeping 99% of variance",
        sides=("sample", "feature"), needs_gram=False,
        prepare=prepare_basis, pair=svcca_pair, state_cost=basis_cost,
        state_key=lambda params: ("basis",), identity=1.0, identity_exact=True,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        validate=_check_svcca_params, range_text="[0, 1]", cost=_cost, pair_cost=basis_pair_cost,
    )
)  # fmt: skip
register(
    MetricInfo(
        prepare_grams=1,
        name="pwcca", kind="similarity", symmetric=False, bounds=(0.0, 1.0),
        params=(
            Param("side", "a", choices=("a", "b", "narrower"),
                  doc="layer whose activations weight the correlations (narrower: lower rank)"),
        ),
        citation=PWCCA_CITATION,
        summary="projection-weighted mean canonical correlation (weights from one side)",
        sides=("sample", "feature"), needs_gram=False,
        prepare=_prepare_weighted, pair=pwcca_pair, state_cost=_weighted_cost,
        state_key=lambda params: ("basis", "projection"), identity=1.0, identity_exact=True,
        # google/svcca adds unit i's mean to canonical direction i: no rotation or unit-order
        # invariance survives that (repsim matches the reference; see the module docs)
        invariances=("isotropic_scaling",),
        validate=lambda p: _check_side(p["side"]),
        range_text="[0, 1]", cost=_cost, pair_cost=basis_pair_cost,
    )
)  # fmt: skip
