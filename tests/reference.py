"""Dense, obviously-correct formulas used only by the tests (never by the package).

Written from the published definitions (Gram form of Kornblith et al. 2019, ICML): build the
n×n Gram matrices, centre them (HKH, or Székely–Rizzo U-centring for the debiased estimator) and
take the normalised Frobenius inner product.
"""

from __future__ import annotations

import numpy as np


def gram_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x @ x.T


def center_gram(k: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """HKH (biased) or the U-centred Gram with zero diagonal (unbiased), for a symmetric K."""
    k = np.array(k, dtype=np.float64, copy=True)
    n = k.shape[0]
    if not unbiased:
        h = np.eye(n) - np.ones((n, n)) / n
        return h @ k @ h
    np.fill_diagonal(k, 0.0)
    col = k.sum(axis=0) / (n - 2)
    col -= col.sum() / (2 * (n - 1))
    k -= col[:, None] + col[None, :]
    np.fill_diagonal(k, 0.0)
    return k


def cka_dense(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    """Linear CKA from n×n Grams: ⟨K̃, L̃⟩ / (‖K̃‖ ‖L̃‖)."""
    kx = center_gram(gram_linear(x), debiased)
    ky = center_gram(gram_linear(y), debiased)
    return float(np.sum(kx * ky) / (np.linalg.norm(kx) * np.linalg.norm(ky)))


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012, JMLR 13) unbiased HSIC U-statistic, the explicit form."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    term = np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term -= 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return float(term / (n * (n - 3)))
