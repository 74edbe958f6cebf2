"""Shared linear algebra of the CCA, Procrustes/shape and regression families.

Every metric in those families is a function of each layer's *spectrum* and of one per-pair
*coupling* matrix. Write the centred layer as Xc = U diag(s) Vᵀ (thin SVD, s descending):

* per layer (once per run, as the metric's state :class:`LayerBasis`): the squared singular values s² with either the
  left vectors U (n×r, sample side: ``eigh`` of the centred Gram Kc = XcXcᵀ) or the right vectors
  V (p×r, feature side: ``eigh`` of the covariance XcᵀXc) — :class:`Spectrum`;
* per pair: C = U_aᵀU_b (r_a×r_b), from U_aᵀU_b on the sample side and from
  diag(1/s_a)·V_aᵀ(XcᵀYc)V_b·diag(1/s_b) on the feature side (:func:`coupling`). Both give the same
  matrix; the planner picks the side (sample when the widths exceed n, feature otherwise).

Canonical correlations are the singular values of C; the Procrustes nuclear norm is that of
diag(s_a)·C·diag(s_b); the regression fit is ‖C·diag(s_b)‖²_F.

Rank. Eigenvalues at or below the round-off floor eps(dtype)·√max(n, p)·λ_max (``dtype``: the
precision the Gram or covariance was multiplied in) are dropped when the spectrum is built: their
eigenvectors are noise. Metrics then apply their own *relative rank tolerance* on top: a direction
counts when s²_i > rtol·s²_max (``rtol`` = ``epsilon`` for ``cca``, :data:`RANK_RTOL` otherwise).
Forming Kc or XcᵀXc squares the condition number, so directions below ~1e-13 of the top variance
(float64) cannot be resolved by any Gram-based method; in float32 GEMMs the floor is ~1e-5.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._warnings import RepsimWarning
from ..errors import DataError
from .contract import LayerContext, StateCost

Float64 = NDArray[np.float64]

# Default relative rank tolerance on squared singular values (google/svcca's tutorials use 1e-10).
RANK_RTOL = 1e-10
# Units whose variance is below this fraction of the largest unit variance are dead
# (google/svcca ``remove_small`` with the tutorials' epsilon).
DEAD_UNIT_RTOL = 1e-10
# ‖Xc‖²_F ≤ this × ‖X‖²_F: constant up to round-off (the engine uses the same rule).
CONSTANT_RTOL = 1e-20
SPECTRUM = "centred_spectrum"  # shared per-layer intermediate of every metric of these families
# Cost of a symmetric eigendecomposition with vectors, in GEMM-equivalent flops per k³ (LAPACK's
# divide and conquer does ~4k³ flops at a fraction of the GEMM rate).
EIGH_FLOPS = 9.0


@dataclass(frozen=True)
class Spectrum:
    """The leading singular structure of one centred layer Xc (n×p) = U diag(s) Vᵀ.

    ``sq``: (r,) float64 squared singular values s², descending, all above the round-off floor.
    ``left``: (n, r) orthonormal U (sample side) or None; ``right``: (p, r) orthonormal V (feature
    side) or None. ``n`` and ``width`` (p) are the layer's shape.
    """

    sq: Float64
    left: Float64 | None
    right: Float64 | None
    n: int
    width: int

    @property
    def s(self) -> Float64:
        """Singular values (r,), float64, descending."""
        return np.sqrt(self.sq)

    @property
    def variance(self) -> float:
        """‖Xc‖²_F over the resolved directions (float)."""
        return float(self.sq.sum())

    def rank(self, rtol: float = RANK_RTOL) -> int:
        """Number of directions with s²_i > rtol·s²_max (a prefix, since ``sq`` is sorted)."""
        return int(np.count_nonzero(self.sq > rtol * self.sq[0]))


def eigh_descending(sym: Float64) -> tuple[Float64, Float64]:
    """Eigenvalues (k,) and eigenvectors (k, k) of a symmetric float64 matrix, largest first.

    The input is not modified (LAPACK works on a copy; divide-and-conquer driver, through numpy's
    LAPACK like the GEMMs around it: see :func:`singular_values`).
    """
    values, vectors = np.linalg.eigh(sym)
    return values[::-1].copy(), vectors[:, ::-1]


def roundoff_floor(lambda_max: float, n: int, width: int, dtype: Any) -> float:
    """Eigenvalues at or below this are round-off of a Gram/covariance multiplied in ``dtype``."""
    return float(np.finfo(np.dtype(dtype)).eps) * math.sqrt(max(n, width)) * lambda_max


def build_spectrum(
    sym: Float64, *, side: str, n: int, width: int, dtype: Any = np.float64
) -> Spectrum:
    """:class:`Spectrum` from the centred Gram Kc (n×n, ``side="sample"``) or the centred
    covariance XcᵀXc (p×p, ``side="feature"``), float64; ``dtype`` is the GEMM precision used."""
    values, vectors = eigh_descending(sym)
    lam_max = float(values[0])
    if not lam_max > 0:
        raise DataError("layer has zero variance after centring; the metric is undefined")
    keep = int(np.count_nonzero(values > roundoff_floor(lam_max, n, width, dtype)))
    basis = np.ascontiguousarray(vectors[:, :keep])
    return Spectrum(
        sq=values[:keep], left=basis if side == "sample" else None,
        right=basis if side == "feature" else None, n=n, width=width,
    )  # fmt: skip


def coupling(
    a: Spectrum, b: Spectrum, cross: Float64 | None = None, ka: int | None = None,
    kb: int | None = None,
) -> Float64:  # fmt: skip
    """C = U_aᵀU_b over the leading ``ka`` and ``kb`` directions (default: all), shape (ka, kb),
    float64: the cosines between the two column spaces.

    Sample side: from the left vectors. Feature side: ``cross`` = XcᵀYc (p_a, p_b) is required and
    C = diag(1/s_a) V_aᵀ cross V_b diag(1/s_b).
    """
    ka = len(a.sq) if ka is None else ka
    kb = len(b.sq) if kb is None else kb
    if a.left is not None and b.left is not None:
        return a.left[:, :ka].T @ b.left[:, :kb]
    if a.right is None or b.right is None or cross is None:
        raise ValueError(
            "coupling needs two sample-side spectra, or two feature-side ones and XcᵀYc"
        )
    whitened = a.right[:, :ka].T @ cross @ b.right[:, :kb]
    return whitened / np.outer(a.s[:ka], b.s[:kb])


def singular_values(m: Float64) -> Float64:
    """Singular values of a float64 matrix, descending (empty for an empty matrix).

    numpy's LAPACK, the same library as the coupling GEMM before it: alternating between numpy's
    and SciPy's OpenBLAS, each with its own spinning thread pool, halved the pair stage's speed on
    two cores.
    """
    if m.size == 0:
        return np.zeros(0)
    return np.asarray(np.linalg.svd(m, compute_uv=False), dtype=np.float64)


# The fast nuclear norm's acceptance: its first-order error bound must stay below this fraction of
# the value — half the Procrustes/shape contract (1e-10 against a dense float64 SVD). The bound's
# constant is conservative: on the benchmark's products it is ~1e-12 where the error is ~1e-15.
NUCLEAR_RTOL = 5e-11


def nuclear_norm(m: Float64) -> float:
    """‖M‖_* = Σ singular values of a float64 matrix M (p, q); 0 for an empty matrix.

    Fast path: σ = √λ from the eigenvalues λ of the smaller Gram (MᵀM when p ≥ q), about 0.6× the
    SVD's time at p = q = 256. Squaring M loses accuracy in its small singular values: with an
    eigenvalue error |Δλ| ≤ δ = max(p, q)·eps·λ_max (the Gram's rounding and the symmetric
    solver's backward error, a conservative constant), √λ_k moves by at most δ/√λ_k. The fast path
    is kept only when Σ_k δ/√λ_k ≤ :data:`NUCLEAR_RTOL`·Σ_k √λ_k; otherwise (a rank-deficient or
    ill-conditioned product) the singular values come from the SVD (:func:`singular_values`).
    """
    if m.size == 0:
        return 0.0
    p, q = m.shape
    gram = m.T @ m if p >= q else m @ m.T
    lam = np.linalg.eigvalsh(gram)
    delta = max(p, q) * float(np.finfo(np.float64).eps) * float(lam[-1])
    if float(lam[0]) > delta > 0.0:
        s = np.sqrt(lam)
        total = float(s.sum())
        if float((delta / s).sum()) <= NUCLEAR_RTOL * total:
            return total
    return float(singular_values(m).sum())


def forced_ones(rank_a: int, rank_b: int, n: int) -> int:
    """How many canonical correlations are 1 by construction: two subspaces of the (n−1)-dim
    space of centred vectors share at least rank_a + rank_b − (n − 1) dimensions."""
    return max(0, rank_a + rank_b - (n - 1))


FORCED_NOTE = (
    "rank_a + rank_b > n − 1, so some canonical correlations are 1 by construction "
    "(too few samples for CCA; the value is biased towards 1)"
)


# ---------------------------------------------------------------- dense (in-memory) inputs
def centre(x: ArrayLike, label: str) -> tuple[Float64, Float64]:
    """(Xc, column means) in float64 for a 2-D (n, p) array (higher ranks are flattened).

    Raises :class:`DataError` for NaN/Inf or a constant matrix (zero variance up to round-off).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        a = a.reshape(a.shape[0], -1)
    if not np.isfinite(a).all():
        raise DataError(f"{label} contains NaN or Inf values")
    mean = a.mean(axis=0)
    xc = a - mean
    if not float(np.sum(xc * xc)) > CONSTANT_RTOL * float(np.sum(a * a)):
        raise DataError(f"{label} is constant (zero variance); the metric is undefined")
    return xc, mean


@dataclass(frozen=True)
class DensePair:
    """Two centred in-memory layers with their spectra and coupling (the dense code path)."""

    xc: Float64
    yc: Float64
    mean_x: Float64
    mean_y: Float64
    a: Spectrum
    b: Spectrum
    c: Float64

    @property
    def n(self) -> int:
        return int(self.xc.shape[0])

    @property
    def identical(self) -> bool:
        return self.xc.shape == self.yc.shape and bool(np.array_equal(self.xc, self.yc))


def dense_pair(x: ArrayLike, y: ArrayLike) -> DensePair:
    """Centre X (n, p) and Y (n, q), then build both spectra on the cheaper side (feature side when
    both widths are below n, else sample side) and the coupling C = U_xᵀU_y."""
    xc, mx = centre(x, "X")
    yc, my = centre(y, "Y")
    n = xc.shape[0]
    if yc.shape[0] != n:
        raise DataError(f"X has {n} samples but Y has {yc.shape[0]}")
    if max(xc.shape[1], yc.shape[1]) < n:
        a = build_spectrum(xc.T @ xc, side="feature", n=n, width=xc.shape[1])
        b = build_spectrum(yc.T @ yc, side="feature", n=n, width=yc.shape[1])
        c = coupling(a, b, xc.T @ yc)
    else:
        a = build_spectrum(xc @ xc.T, side="sample", n=n, width=xc.shape[1])
        b = build_spectrum(yc @ yc.T, side="sample", n=n, width=yc.shape[1])
        c = coupling(a, b)
    return DensePair(xc, yc, mx, my, a, b, c)


def unit_projection(spec: Spectrum, xc: Float64) -> Float64:
    """G = UᵀXc = diag(s)Vᵀ, shape (r, p), float64: each unit's coordinates in the layer's basis."""
    if spec.right is not None:
        return spec.s[:, None] * spec.right.T
    assert spec.left is not None
    return spec.left.T @ xc


# ---------------------------------------------------------------- per-layer state
@dataclass(frozen=True)
class LayerBasis:
    """The per-layer state of the CCA, Procrustes/shape and regression families.

    ``spectrum``: the layer's :class:`Spectrum` with its left vectors U (n×r) (built once per
    layer per run, in float64, and shared by every metric of these families); ``n``: samples;
    ``width``: p. ``projection`` G = UᵀXc (r, p) and ``mean`` (p,) are kept for PWCCA only. The
    state needs nothing of the engine but the layer's data, whatever the engine's side or
    precision, so a metric's value never depends on the other metrics of the run.
    """

    spectrum: Spectrum
    n: int
    width: int
    mean: Float64 | None = None
    projection: Float64 | None = None


def centred_float64(layer: LayerContext) -> Float64:
    """The whole centred layer Xc (n, p) in float64, read block by block."""
    mean = layer.mean()
    out = np.empty((layer.n, layer.width))
    for start, block in layer.blocks():
        np.subtract(block, mean, out=out[start : start + block.shape[0]])
    return out


def thin_route(layer: LayerContext) -> bool:
    """Whether the layer's spectrum comes from the p×p covariance (feature side) rather than the
    n×n Gram: as the planner chose for the metric, else (no plan) when p < n."""
    route = layer.route
    return route == "feature" if route is not None else layer.width < layer.n


def data_spectrum(layer: LayerContext) -> Spectrum:
    """The layer's :class:`Spectrum` with its left vectors U (n×r), from the centred layer itself
    in float64 whatever the run's GEMM precision: on the feature side a thin factorisation (eigh
    of the p×p covariance, then U = XcV/s: about n·p² flops), on the sample side the eigh of the
    n×n Gram XcXcᵀ (n³); :func:`thin_route` says which.
    """
    xc = centred_float64(layer)
    layer.check_variance(float(np.einsum("ij,ij->", xc, xc)))
    n, width = layer.n, layer.width
    if thin_route(layer):
        thin = build_spectrum(xc.T @ xc, side="feature", n=n, width=width)
        assert thin.right is not None
        left = xc @ thin.right
        left /= thin.s
        return Spectrum(sq=thin.sq, left=left, right=thin.right, n=n, width=width)
    return build_spectrum(xc @ xc.T, side="sample", n=n, width=width)


def layer_spectrum(layer: LayerContext) -> Spectrum:
    """The layer's :class:`Spectrum` (:func:`data_spectrum`), shared by the metrics of a run that
    build it on the same side."""
    side = "feature" if thin_route(layer) else "sample"
    return layer.shared(f"{SPECTRUM}@{side}", lambda: data_spectrum(layer))


def prepare_basis(
    layer: LayerContext, params: Mapping[str, Any], projection: bool = False
) -> LayerBasis:
    """The per-layer stage: spectrum (and, with ``projection``, G = UᵀXc and the column means)."""
    spec = layer_spectrum(layer)
    proj = mean = None
    if projection:
        mean = layer.mean()
        if spec.right is not None:
            proj = spec.s[:, None] * spec.right.T
        else:
            assert spec.left is not None
            proj = np.zeros((spec.left.shape[1], layer.width))
            for start, block in layer.blocks():
                rows = slice(start, start + block.shape[0])
                proj += spec.left[rows].T @ (np.asarray(block, dtype=np.float64) - mean)
    return LayerBasis(spec, layer.n, layer.width, mean, proj)


def basis_coupling(
    a: LayerBasis, b: LayerBasis, ka: int | None = None, kb: int | None = None
) -> Float64:
    """C = U_aᵀU_b (ka, kb) for one pair of layer states."""
    return coupling(a.spectrum, b.spectrum, None, ka, kb)


def basis_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    """One layer's spectrum on ``side``: feature: XcᵀXc (n·p²), its eigh (≈ 9p³ in GEMM-equivalent
    flops: LAPACK's symmetric eigensolver runs far below the GEMM rate) and U = XcV (2n·p·r);
    sample: XcXcᵀ (n²·p) and its eigh (9n³). Either keeps U (n×r), V or s² (r = min(n, p))."""
    r = min(n, width)
    if side == "feature":
        flops = 1.0 * n * width**2 + EIGH_FLOPS * width**3 + 2.0 * n * width * r
    else:
        flops = 1.0 * n * n * width + EIGH_FLOPS * n**3
    return StateCost(bytes=8.0 * (n * r + width * r + r), flops=flops)


def basis_pair_cost(
    n: int, width_a: int, width_b: int, side: str, params: Mapping[str, Any]
) -> StateCost:
    """One pair on either side: C = U_aᵀU_b (2n·r_a·r_b) and its singular values (≈ 6·r_a·r_b·min,
    GEMM-equivalent); the same work whichever side built the bases."""
    ra, rb = min(n, width_a), min(n, width_b)
    return StateCost(bytes=8.0 * ra * rb, flops=2.0 * n * ra * rb + 6.0 * ra * rb * min(ra, rb))


# ---------------------------------------------------------------- warnings
def warn_notes(metric: str, notes: set[str], stacklevel: int = 3) -> None:
    """One :class:`RepsimWarning` per distinct degeneracy note. The text is the same for every
    call, so Python's default filter shows it once however many cells or row blocks it affects."""
    for note in sorted(notes):
        warnings.warn(f"{metric}: {note}", RepsimWarning, stacklevel=stacklevel)


def warn_dense(metric: str, note: str | None) -> None:
    """Emit a dense function's degeneracy note (if any) as a :class:`RepsimWarning`."""
    if note:
        warn_notes(metric, {note}, stacklevel=4)
