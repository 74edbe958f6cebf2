"""HSIC and CKA of resampled examples from each layer's n×n kernel and resampling *weights*.

A replicate that takes example k w_k times (Σw = m) has the resampled kernel K_r = K[idx][:, idx].
Its centred HSIC never needs K_r: with H = I − 11ᵀ/m,

    tr(H K_r H L_r) = wᵀ(K∘L)w − (2/m)·Σ_k w_k (Kw)_k (Lw)_k + (wᵀKw)(wᵀLw)/m²,

because tr(K_r L_r) = Σ_ij w_i w_j K_ij L_ij, K_r1 = (Kw)[idx] and 1ᵀK_r1 = wᵀKw. Double centring
removes any row and column offsets of K, so the formula holds for the engine's centred Gram Kc
as for the raw kernel. Columns of W (n, B) are replicates, and every term is a GEMM or an
elementwise product over W: one (n×n)·(n×B) GEMM per cell, one per layer.

The unbiased HSIC (Song et al. 2012, JMLR 13, eq. 5) excludes the diagonal of each kernel:
n(n−3)·HSIC_u = tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((m−1)(m−2)) − (2/(m−2))·1ᵀK̃L̃1 with K̃ = K − diag(K).
**Duplicates**: in a replicate, two copies of one example form a pair whose kernel entry is a
diagonal entry K_kk. We treat copy–copy pairs as diagonal terms and exclude them, as rsatoolbox
excludes copy–copy pairs from bootstrapped RDM comparisons: a replicate's kernel is the full
sample's centred kernel indexed by the replicate, K[idx][:, idx], with every copy–copy entry set
to 0. The biased form keeps each position's own diagonal entry (the V-statistic's diagonal), the
unbiased form drops it with the rest of the diagonal. In weights, a copy–copy entry of example k
appears w_k² − w_k times, so the sums above lose (w∘w − w)ᵀdiag(K∘L), (w∘w − w)ᵀdiag(K) and
(w − 1)∘diag(K) in Kw; with a zero diagonal (unbiased) these vanish. Without the exclusion the
copies act as extra diagonal terms and inflate CKA: for 2000 examples of 512 units, biased CKA
0.713 had every replicate near 0.761, outside any interval around the estimate; with it, the
95% interval is [0.712, 0.714].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Float64 = NDArray[np.float64]


def without_diagonal(k: Float64) -> Float64:
    """K with its diagonal set to zero (a copy)."""
    out = np.array(k, dtype=np.float64, copy=True)
    np.fill_diagonal(out, 0.0)
    return out


BLOCK_ROWS = 256  # rows of K∘L formed at a time (the block stays in cache for its GEMM)


def hadamard_forms(k: Float64, l_: Float64, w: Float64, dtype: np.dtype | None = None) -> Float64:
    """wᵀ(K∘L)w for every column w of W (B,), K and L symmetric (n, n).

    By symmetry only the upper block triangle is formed and multiplied: for each block of rows I,
    (K∘L)[I, I:] @ W[I:] (one GEMM), its diagonal block counted once and the rest twice — half
    the flops of the full product, and the Hadamard product never held whole. The blocks depend
    on n only, so a cell's value never depends on the other cells of a run. ``dtype``: the GEMMs'
    precision (the run's, e.g. float32 for float32 stores; default float64); the blocks' sums are
    accumulated in float64, as the engine accumulates its chunks.
    """
    n = k.shape[0]
    gemm = np.dtype(np.float64) if dtype is None else np.dtype(dtype)
    wg = w.astype(gemm, copy=False)
    out = np.zeros(w.shape[1])
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        block = (k[start:stop, start:] * l_[start:stop, start:]).astype(gemm, copy=False)
        prod = (block @ wg[start:]).astype(np.float64, copy=False)
        wi = w[start:stop]
        size = stop - start
        diag = np.einsum("ib,ib->b", wi, (block[:, :size] @ wg[start:stop]).astype(np.float64, copy=False))
        out += 2.0 * np.einsum("ib,ib->b", wi, prod) - diag
    return out


def copies(w: Float64) -> Float64:
    """Copy–copy pairs per example and replicate (n, B): w∘w − w (ordered pairs of distinct
    positions holding the same example)."""
    out: Float64 = w * w - w
    return out


def layer_terms(k: Float64, w: Float64, dtype: np.dtype | None = None) -> tuple[Float64, Float64]:
    """(K_r1 by example (n, B), 1ᵀK_r1 (B,)) for one layer's kernel K (n, n) and weights W (n, B),
    copy–copy entries excluded: Kw − (w − 1)∘diag(K) and wᵀKw − (w∘w − w)ᵀdiag(K). ``dtype``: the
    GEMM's precision (default float64), the result float64."""
    if dtype is None or np.dtype(dtype) == np.float64:
        kw = k @ w
    else:
        kw = (k.astype(dtype) @ w.astype(dtype)).astype(np.float64)
    d = np.diagonal(k)
    kw -= (w - 1.0) * d[:, None]
    # Σ_i w_i (Kw − (w − 1)∘d)_i = wᵀKw − Σ_i w_i(w_i − 1)d_i: the total without copy–copy entries
    return kw, np.einsum("ib,ib->b", w, kw)


def weighted_hsic(
    k: Float64, l_: Float64, w: Float64, kw: Float64, lw: Float64, kk: Float64, ll: Float64,
    *, unbiased: bool, dtype: np.dtype | None = None,
) -> Float64:
    """Scaled HSIC of every replicate (B,): tr(H K_r H L_r) (biased) or n(n−3)·HSIC_u (unbiased,
    K and L must then have zero diagonals — see :func:`without_diagonal`). ``kw``/``kk`` and
    ``lw``/``ll`` are :func:`layer_terms` of K and L with the same W; ``dtype`` the GEMM's
    precision."""
    m = w.sum(axis=0)
    tr = hadamard_forms(k, l_, w, dtype) - copies(w).T @ (np.diagonal(k) * np.diagonal(l_))
    cross = np.einsum("ib,ib,ib->b", w, kw, lw)
    if unbiased:
        out: Float64 = tr + kk * ll / ((m - 1.0) * (m - 2.0)) - 2.0 / (m - 2.0) * cross
    else:
        out = tr - 2.0 / m * cross + kk * ll / (m * m)
    return out


def cka_ratio(h_ab: Float64, h_aa: Float64, h_bb: Float64) -> Float64:
    """h_ab/√(h_aa·h_bb), NaN where the denominator is not positive."""
    denom = h_aa * h_bb
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Float64 = np.where(denom > 0, h_ab / np.sqrt(np.where(denom > 0, denom, 1.0)), np.nan)
    return out


def weighted_cka(k: Float64, l_: Float64, w: Float64, *, unbiased: bool) -> Float64:
    """CKA of every replicate (B,) of two layers' kernels (n, n) under weights W (n, B) (a
    convenience for tests and single cells; the runner reuses each layer's terms)."""
    if unbiased:
        k, l_ = without_diagonal(k), without_diagonal(l_)
    kw, kk = layer_terms(k, w)
    lw, ll = layer_terms(l_, w)
    h_ab = weighted_hsic(k, l_, w, kw, lw, kk, ll, unbiased=unbiased)
    h_aa = weighted_hsic(k, k, w, kw, kw, kk, kk, unbiased=unbiased)
    h_bb = weighted_hsic(l_, l_, w, lw, lw, ll, ll, unbiased=unbiased)
    return cka_ratio(h_ab, h_aa, h_bb)
