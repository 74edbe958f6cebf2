"""Closed forms from the pair spectrum: KL divergences, Bhattacharyya and Hellinger distances
between N(0, I) and N(0, diag λ) (Schütt 2024, arXiv:2411.08739; Schuett-lab/BayesCompare
``kldiv``, ``hellinger``). Private helpers take the shifts μ = λ − 1; public ones take λ."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .spectra import _shifts_of

Float64 = NDArray[np.float64]


def _kl_pair(mu: Float64) -> tuple[float, float]:
    log_lam = np.log1p(mu)
    # λ − 1 − log λ and 1/λ − 1 + log λ, without cancellation near λ = 1
    kl_ab = 0.5 * float(np.sum(-mu / (1.0 + mu) + log_lam))
    kl_ba = 0.5 * float(np.sum(mu - log_lam))
    return kl_ab, kl_ba


def _symmetric_kl(mu: Float64) -> float:
    return 0.25 * float(np.sum(mu * mu / (1.0 + mu)))


def _bhattacharyya(mu: Float64) -> float:
    # D_B = ½ Σ log cosh(½ log λ) = ½ Σ log1p(2 sinh²(¼ log λ))
    s = np.sinh(0.25 * np.log1p(mu))
    return 0.5 * float(np.sum(np.log1p(2.0 * s * s)))


def _hellinger(mu: Float64) -> float:
    return math.sqrt(-math.expm1(-_bhattacharyya(mu)))


def kl_divergences(lam: ArrayLike) -> tuple[float, float]:
    """(KL(P_a‖P_b), KL(P_b‖P_a)) in nats from the generalised eigenvalues λ of (Σ'_b, Σ'_a).

    KL_ab = ½Σ(1/λ − 1 + log λ), KL_ba = ½Σ(λ − 1 − log λ); each in [0, ∞).

    References
    ----------
    Schütt (2024), arXiv:2411.08739; Kullback & Leibler (1951); Bhattacharyya (1943).
    """
    return _kl_pair(_shifts_of(lam))


def symmetric_kl(lam: ArrayLike) -> float:
    """Symmetrised KL (KL_ab + KL_ba)/2 = ¼Σ(λ − 1)²/λ in nats, in [0, ∞) (the reference ``kldiv``).

    References
    ----------
    Schütt (2024), arXiv:2411.08739; Schuett-lab/BayesCompare ``kldiv``.
    """
    return _symmetric_kl(_shifts_of(lam))


def bhattacharyya_distance(lam: ArrayLike) -> float:
    """Bhattacharyya distance D_B = ½Σ log((1 + λ)/(2√λ)) in nats, in [0, ∞).

    References
    ----------
    Schütt (2024), arXiv:2411.08739; Kullback & Leibler (1951); Bhattacharyya (1943).
    """
    return _bhattacharyya(_shifts_of(lam))


def hellinger_from_eigenvalues(lam: ArrayLike) -> float:
    """Hellinger distance H = √(1 − e^{−D_B}), in [0, 1], from the eigenvalues λ.

    References
    ----------
    Schütt (2024), arXiv:2411.08739; Schuett-lab/BayesCompare ``hellinger``.
    """
    return _hellinger(_shifts_of(lam))
