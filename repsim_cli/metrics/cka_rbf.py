"""RBF-kernel CKA with the median-distance bandwidth (Kornblith et al., 2019), on the Gram engine.

K_ij = exp(−D²_ij / (2σ²)) with σ² = threshold² · median(D²), where the median is ``np.median``
over the **full n×n** squared-distance matrix, its n zero diagonal entries included — exactly as
``gram_rbf`` of the authors' colab does (it is not the median of the off-diagonal pairs). The
kernel is then centred (HKH, or Székely–Rizzo U-centring when ``debiased``) and
CKA = ⟨K̃, L̃⟩ / (‖K̃‖_F ‖L̃‖_F).

Per layer (once, via :meth:`GramEngine.derived`): D² from the engine's centred Gram (distances do
not see the column means), its median, the kernel and its centring. Per pair: one inner product.

Degenerate input: a constant layer raises :class:`DataError` (engine); a layer whose median
squared distance is 0 (more than half of all ordered pairs, diagonal included, coincide) gives NaN
with a :class:`RepsimWarning` — the reference divides by 0 there and then fails its symmetry
check; ``debiased=true`` with n < 4 raises :class:`DataError`.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations Revisited",
ICML, arXiv:1905.00414; google-research/representation_similarity ``Demo.ipynb`` (``gram_rbf``,
``center_gram``, ``cka``). Song et al. (2012), JMLR 13 (unbiased HSIC, ``debiased=true``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._warnings import RepsimWarning
from ..errors import DataError, MetricParameterError
from ._kernels import (
    Float64,
    VectorState,
    centered_gram_dense,
    double_center,
    pair_ratio,
    roundoff_rtol,
    squared_distances,
    u_center,
    vector_cost,
    vector_ratio,
    vector_state,
)  # fmt: skip
from .contract import Cell, LayerContext
from .registry import MetricInfo, Param, register

CITATION = (
    "Kornblith et al. 2019, ICML (arXiv:1905.00414), RBF kernel with σ = threshold × median "
    "distance (colab gram_rbf)"
)
RANGE_TEXT = "[0, 1] (debiased: [−1, 1])"


def rbf_centered_kernel(
    gram: Float64, threshold: float, debiased: bool, rtol: float, label: str
) -> Float64 | None:
    """Centred RBF kernel of one layer, flattened: (n·n,) float64, or None when undefined.

    Parameters
    ----------
    gram : (n, n) float64
        Any Gram matrix of the layer's rows (the engine's centred Kc); not modified.
    threshold : float
        σ = threshold · √median(D²) (the colab's ``threshold``; the paper uses 0.5).
    debiased : bool
        U-centring (unbiased HSIC) instead of HKH.
    rtol : float
        Squared distances ≤ rtol·(q_i + q_j) count as exact zeros (round-off of the Gram).
    label : str
        Names the layer in the warning.

    Returns
    -------
    The centred kernel K̃ raveled, or None (with a :class:`RepsimWarning`) when the median
    squared distance is 0 and the bandwidth is undefined.
    """
    d2 = squared_distances(gram, rtol)
    median = float(np.median(d2))
    if not median > 0.0:
        warnings.warn(
            f"{label}: the median squared distance is 0 (more than half of the sample pairs "
            "coincide), so the RBF bandwidth is undefined; cka_rbf is NaN",
            RepsimWarning,
            stacklevel=2,
        )
        return None
    kernel = d2
    kernel *= -1.0 / (2.0 * threshold**2 * median)
    np.exp(kernel, out=kernel)
    if debiased:
        u_center(kernel)
    else:
        double_center(kernel)
    return kernel.ravel()


def _check_n(n: int, debiased: bool) -> None:
    if debiased and n < 4:
        raise DataError(f"debiased cka_rbf needs at least 4 samples, got n={n}")


def rbf_cka(x: ArrayLike, y: ArrayLike, threshold: float = 1.0, debiased: bool = False) -> float:
    """RBF-kernel CKA of X (n, p) and Y (n, q), any float dtype, computed in float64.

    Parameters
    ----------
    x, y : (n, p) and (n, q) arrays
        The same n samples in the same order (rows); columns are units.
    threshold : float
        Bandwidth factor: σ² = threshold² · median of the full n×n squared-distance matrix.
    debiased : bool
        Unbiased HSIC (U-centring); needs n ≥ 4.

    Returns
    -------
    float
        Similarity in [0, 1] ([−1, 1] when debiased); invariant to orthogonal maps, translation and
        isotropic scaling (the median bandwidth scales with the data), not to other linear maps.
        NaN with a :class:`RepsimWarning` when a median squared distance is 0. A constant X or Y
        raises :class:`DataError`.

    References
    ----------
    Kornblith et al. (2019), ICML, arXiv:1905.00414, colab ``gram_rbf``/``cka``.
    """
    kx = centered_gram_dense(x, "X", "cka_rbf")
    ky = centered_gram_dense(y, "Y", "cka_rbf")
    if kx.shape[0] != ky.shape[0]:
        raise DataError(f"X has {kx.shape[0]} samples but Y has {ky.shape[0]}")
    _check_n(kx.shape[0], debiased)
    rtol = roundoff_rtol(np.float64)
    u = rbf_centered_kernel(kx, threshold, debiased, rtol, "X")
    v = rbf_centered_kernel(ky, threshold, debiased, rtol, "Y")
    return pair_ratio(u, v, "cka_rbf")


def prepare_rbf(layer: LayerContext, params: Mapping[str, Any]) -> VectorState:
    """The per-layer stage: the layer's centred (or U-centred) RBF kernel, flattened."""
    threshold, debiased = float(params["threshold"]), bool(params["debiased"])
    _check_n(layer.n, debiased)
    kernel = rbf_centered_kernel(layer.centered_gram(), threshold, debiased,
                                 roundoff_rtol(layer.dtype), layer.label)  # fmt: skip
    return vector_state(kernel)


def rbf_pair(a: VectorState, b: VectorState, params: Mapping[str, Any]) -> Cell:
    """RBF CKA of two layer states: one inner product."""
    value, note = vector_ratio(a, b)
    return Cell(value, note=note)


def _validate(params: dict[str, Any]) -> None:
    t = params["threshold"]
    if not (math.isfinite(t) and t > 0):
        raise MetricParameterError(
            f"metric 'cka_rbf': threshold must be a positive number, got {t}"
        )


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    # per layer: distances, median (partition), exp, centring ≈ 40 n²; per pair: one dot ≈ 2 n².
    return 40.0 * n * n * n_layers + 2.0 * n * n * n_pairs


register(
    MetricInfo(
        prepare_grams=3,
        name="cka_rbf",
        kind="similarity",
        symmetric=True,
        bounds=(0.0, 1.0),
        bounds_for=lambda p: (-1.0, 1.0) if p["debiased"] else (0.0, 1.0),
        params=(
            Param("threshold", 1.0, float, doc="σ = threshold × median distance (paper: 0.5)"),
            Param("debiased", False, bool, doc="unbiased HSIC (Song et al. 2012) U-centring"),
        ),
        citation=CITATION,
        summary="RBF-kernel CKA, bandwidth from the median squared distance (diagonal included)",
        sides=("sample",),
        prepare=prepare_rbf,
        pair=rbf_pair,
        state_cost=vector_cost,
        identity=1.0,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        validate=_validate,
        range_text=RANGE_TEXT,
        cost=_cost,
    )
)
