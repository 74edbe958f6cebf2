"""The per-layer readout factor: a layer's kernel K and the Cholesky factor of its
prior predictive covariance Σ' = I + K/(b·tr K) (Schütt 2024, arXiv:2411.08739)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import DataError, MetricParameterError
from .params import CENTERS

Float64 = NDArray[np.float64]

# A kernel may be indefinite by this fraction of tr K (float32-accumulated Grams), not more.
PSD_RTOL = 1e-6


def linear_kernel(x: ArrayLike, center: str = "none") -> Float64:
    """The linear kernel K = X Xᵀ of activations X (n, p), float64 (n, n).

    ``center="none"`` uses the raw activations (the reference's default); ``"units"`` centres each
    unit (column) over the stimuli first; ``"stimuli"`` centres each stimulus (row) over its units
    (the paper-era reference). Higher-dimensional X is flattened to (n, −1).

    References
    ----------
    Schütt (2024), arXiv:2411.08739; Schuett-lab/BayesCompare ``get_cov`` (centring).
    """
    a = np.asarray(x, dtype=np.float64)
    a = a.reshape(a.shape[0], -1)
    if center == "units":
        a = a - a.mean(axis=0)
    elif center == "stimuli":
        a = a - a.mean(axis=1, keepdims=True)
    elif center != "none":
        raise MetricParameterError(f"center={center!r} is not one of {', '.join(CENTERS)}")
    return a @ a.T


@dataclass(frozen=True)
class ReadoutLayer:
    """One layer's prior predictive: Σ' = I + scale·K with its Cholesky factor.

    ``kernel`` is the layer's (n, n) float64 kernel K (never modified), ``scale`` is 1/(b·tr K),
    and ``chol`` is L (lower triangular, (n, n) float64, Fortran order) with Σ' = L Lᵀ.
    """

    kernel: Float64
    scale: float
    trace: float
    chol: Float64
    label: str

    @property
    def n(self) -> int:
        return int(self.chol.shape[0])

    def load_kernel(self) -> Float64:
        """The layer's kernel K (n, n) float64."""
        return self.kernel


def readout_layer(
    kernel: ArrayLike,
    b: float,
    label: str = "kernel",
    check_psd: bool = True,
) -> ReadoutLayer:
    """Check a kernel and factor its Σ' = I + K/(b·tr K) (the per-layer work, O(n³)).

    Parameters
    ----------
    kernel : array_like, (n, n)
        A symmetric positive semi-definite kernel (any float dtype; used in float64). Asymmetry
        at round-off level is tolerated (the pair computation symmetrises); more is an error.
    b : float
        Signal budget (> 0, may be ``inf``).
    label : str
        Names the layer in error messages.
    check_psd : bool
        Check that K is positive semi-definite up to PSD_RTOL·tr K (one more Cholesky, n³/3);
        the engine's kernels are X Xᵀ by construction and skip it.

    Returns
    -------
    ReadoutLayer
        Raises :class:`DataError` for a non-square, non-finite, asymmetric or indefinite kernel,
        and for tr K = 0 (a dead layer: the trace normalisation is undefined).

    References
    ----------
    Schütt (2024), arXiv:2411.08739 (the prior predictive Σ').
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise DataError(f"{label}: a kernel must be a square (n, n) matrix, got shape {k.shape}")
    if not np.isfinite(k).all():
        raise DataError(f"{label}: kernel contains NaN or Inf values")
    if not np.allclose(k, k.T, rtol=1e-10, atol=1e-12 * float(np.abs(k).max())):
        raise DataError(f"{label}: kernel is not symmetric")
    trace = float(np.trace(k))
    if not trace > 0:
        raise DataError(
            f"{label}: tr K = {trace:g} (all activations zero?); the Bayesian readout distances "
            "need a kernel with positive trace"
        )
    n = k.shape[0]
    if check_psd:
        _check_positive_semidefinite(k, trace, label)
    scale = 0.0 if math.isinf(b) else 1.0 / (b * trace)
    sigma = scale * k
    sigma[np.diag_indices(n)] += 1.0
    # Fortran order, the layout LAPACK's dsygst reads in each pair: no copy per pair
    chol = np.asfortranarray(np.linalg.cholesky(sigma))
    del sigma
    return ReadoutLayer(k, scale, trace, chol, label)


def _check_positive_semidefinite(k: Float64, trace: float, label: str) -> None:
    try:  # Cholesky reads the lower triangle only
        np.linalg.cholesky(k + (PSD_RTOL * trace) * np.eye(k.shape[0]))
    except np.linalg.LinAlgError:
        raise DataError(
            f"{label}: kernel is not positive semi-definite (an eigenvalue below "
            f"−{PSD_RTOL:g}·tr K)"
        ) from None
