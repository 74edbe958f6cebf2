"""Linear-regression fit R² between layers (asymmetric: cell (a, b) predicts layer b from layer a).

R²(b ← a) = 1 − min_{W, c}‖Y − XW − 1cᵀ‖²_F / ‖Yc‖²_F = ‖U_aᵀYc‖²_F / ‖Yc‖²_F
          = ‖C·diag(s_b)‖²_F / Σs_b²,   C = U_aᵀU_b,

the variance-weighted R² of least squares with an intercept (sklearn ``LinearRegression`` +
``r2_score(multioutput="variance_weighted")``). Only the predictor's rank matters: its directions
with variance ≤ 1e-10 × the largest are dropped (a relative rank tolerance, as a pseudo-inverse
would), so collinear or dead predictor units are harmless. When layer a has rank n − 1 it spans
every centred vector and R² = 1 for any b — the exact value, reported with a RepsimWarning.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations
Revisited", ICML, §4 (linear regression fit); scikit-learn ``LinearRegression``/``r2_score``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._linalg import (
    RANK_RTOL,
    Float64,
    LayerBasis,
    Spectrum,
    basis_cost,
    basis_coupling,
    basis_pair_cost,
    dense_pair,
    prepare_basis,
    warn_dense,
)
from .contract import Cell
from .registry import MetricInfo, register

CITATION = "Kornblith et al. 2019, ICML §4 (arXiv:1905.00414); sklearn r2_score variance_weighted"
SATURATED_NOTE = (
    "the predictor layer has rank n − 1, so it fits any target exactly and R² = 1 by construction "
    "(too few samples)"
)


def r2_value(c: Float64, a: Spectrum, b: Spectrum, n: int) -> tuple[float, str | None]:
    """R²(b ← a) from the coupling C = U_aᵀU_b over a's rank-truncated directions (rank_a, r_b)."""
    explained = float(np.sum((c * b.s[None, : c.shape[1]]) ** 2))
    value = float(np.clip(explained / b.variance, 0.0, 1.0))
    return value, SATURATED_NOTE if c.shape[0] >= n - 1 else None


def linreg_r2(x: ArrayLike, y: ArrayLike) -> float:
    """R² of predicting Y (n, q) from X (n, p) by least squares with an intercept; float64.

    Similarity in [0, 1], variance-weighted over Y's units (1 − Σ residual SS / Σ total SS).
    Asymmetric (``linreg_r2(x, y)`` is cell (x, y): y ← x). Invariant to invertible linear maps of
    X and to orthogonal maps, isotropic scaling and translation of Y. NaN/Inf or a constant input
    raise DataError; rank(X) = n − 1 gives 1 with a RepsimWarning.

    References
    ----------
    Kornblith et al. (2019), ICML, §4; scikit-learn ``r2_score(multioutput="variance_weighted")``.
    """
    pair = dense_pair(x, y)
    if pair.identical:
        return 1.0
    value, note = r2_value(pair.c[: pair.a.rank(RANK_RTOL)], pair.a, pair.b, pair.n)
    warn_dense("linreg", note)
    return value


def linreg_pair(a: LayerBasis, b: LayerBasis, params: Mapping[str, Any]) -> Cell:
    """R² of predicting layer b's state from layer a's."""
    c = basis_coupling(a, b, a.spectrum.rank(RANK_RTOL), None)
    value, note = r2_value(c, a.spectrum, b.spectrum, a.n)
    return Cell(value, note=note)


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    """Upper bound (sample side, full rank): one n×n eigh per layer, an n×n coupling per pair."""
    return float(n_layers * 4 * n**3 + n_pairs * 2 * n**3)


register(
    MetricInfo(
        prepare_grams=1,
        name="linreg", kind="similarity", symmetric=False, bounds=(0.0, 1.0), params=(),
        citation=CITATION,
        summary="R² of predicting layer b (column) from layer a (row), least squares with intercept",
        sides=("sample", "feature"), needs_gram=False,
        prepare=prepare_basis, pair=linreg_pair, state_cost=basis_cost,
        state_key=lambda params: ("basis",), identity=1.0, identity_exact=True,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        range_text="[0, 1]", cost=_cost, pair_cost=basis_pair_cost,
    )
)  # fmt: skip
