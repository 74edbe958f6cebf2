"""Null distributions of HSIC/CKA under independence: exact permutations and Gretton's gamma fit.

Permuting the examples of one side, P·L·Pᵀ, leaves a centred kernel centred and every self term
unchanged, so the null CKA of a permutation π is ⟨K, L[π][:, π]⟩ over the fixed denominator.

Gamma approximation (Gretton, Fukumizu, Teo, Song, Schölkopf & Smola 2008, "A kernel statistical
test of independence", NIPS 20): n·HSIC_b under independence is approximately Gamma with the
first two moments of HSIC_b,

    E  = (1/n)·(d̄_K − μ_K)(d̄_L − μ_L),      μ = Σ_{i≠j} K_ij / (n(n−1)),  d̄ = tr(K)/n,
    Var = 72(n−4)(n−5) / (n(n−1)(n−2)(n−3)) · Σ_{i≠j} (K̃_ij L̃_ij / 6)² / (n(n−1)),

with K̃ = HKH, shape E²/Var and scale n·Var/E. Gretton's reference code (``hsicTestGamma.m``)
writes the mean for unit-diagonal (Gaussian) kernels as (1 + μ_Kμ_L − μ_K − μ_L)/n; the factored
form with the diagonal mean d̄ is the same for those and also holds for linear kernels (and it is
unchanged by the row/column offsets that centring removes, so the centred Gram may be used).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Float64 = NDArray[np.float64]


ROW_GROUP = 8  # row kernels per GEMM, zero-padded: every cell's null comes from one GEMM shape


def permuted_inner(ks: list[Float64], l_: Float64, perms: NDArray[np.intp], chunk: int = 16) -> Float64:
    """⟨K_r, L[π][:, π]⟩ for every kernel K_r of ``ks`` (R kernels, n×n) and permutation π of
    ``perms`` (P, n): shape (R, P), float64.

    Each permuted L is built once (two row gathers) and shared by the row kernels through one
    GEMM per group of :data:`ROW_GROUP` row kernels and ``chunk`` permutations. Groups are padded
    with zero rows so every GEMM has the same shape, whatever cells share the block: a cell's null
    is then the same in a shard, a resumed run or a whole run.
    """
    n = l_.shape[0]
    out = np.empty((len(ks), perms.shape[0]))
    groups = []
    for g in range(0, len(ks), ROW_GROUP):
        stack = np.zeros((ROW_GROUP, n * n))
        for r, k in enumerate(ks[g : g + ROW_GROUP]):
            stack[r] = np.asarray(k).reshape(-1)
        groups.append((g, min(len(ks) - g, ROW_GROUP), stack))
    lp = np.zeros((chunk, n, n))  # a short last chunk leaves zero rows (never garbage)
    for start in range(0, perms.shape[0], chunk):
        p = perms[start : start + chunk]
        c = p.shape[0]
        for t, pi in enumerate(p):
            np.take(np.take(l_, pi, axis=0), pi, axis=1, out=lp[t])
        lp[c:] = 0.0
        flat = lp.reshape(chunk, -1)
        for g, size, stack in groups:
            # padded to ``chunk`` permutations as well (the last chunk's spare rows are ignored)
            out[g : g + size, start : start + c] = (stack @ flat.T)[:size, :c]
    return out


# The batched form: fixed GEMM shapes (so a cell's null is the same in any block, shard or resumed
# run) over fixed segments of the upper triangle (so memory is bounded whatever n).
BATCH_ROWS = 16  # row kernels per GEMM (zero-padded)
BATCH_COLS = 32  # (permutation, column layer) pairs per GEMM (zero-padded)
SEGMENT = 1 << 19  # upper-triangle entries per segment: a GEMM operand is ≤ 16 × 2¹⁹ float64 = 64 MB


def batch_bytes(n: int) -> int:
    """Working memory of :func:`permuted_inner_batch` beyond the kernels (bytes): the stacked row
    segment, the gathered column segment and the segment's index arrays."""
    seg = min(SEGMENT, n * (n + 1) // 2)
    return (BATCH_ROWS + BATCH_COLS) * seg * 8 + 8 * seg * 8


def permuted_inner_batch(ks: list[Float64], ls: list[Float64], perms: NDArray[np.intp]) -> Float64:
    """⟨K_a, L_b[π][:, π]⟩ for every row kernel K_a of ``ks`` (A), column kernel L_b of ``ls`` (B)
    and permutation π of ``perms`` (P, n), all symmetric n×n: shape (A, B, P), float64.

    All cells of a block at once: for each permutation, each column layer's permuted kernel is
    gathered once, and the stacked row kernels meet all of them in one GEMM per
    :data:`BATCH_ROWS` rows × :data:`BATCH_COLS` (permutation, layer) columns. By symmetry only
    the upper triangle with the diagonal is used (the row side's off-diagonal entries doubled, an
    exact scaling): ⟨K, M⟩ = Σᵢ KᵢᵢMᵢᵢ + 2Σ_{i<j} KᵢⱼMᵢⱼ, with M = L[π][:, π] read as
    L[πᵢ, πⱼ] — half the flops and bytes of the whole matrices. The triangle is taken in
    :data:`SEGMENT`-entry segments whose partial sums are added in order: the working memory is
    :func:`batch_bytes`, and every GEMM has the same shape, so a cell's null does not depend on
    which other cells share its block.
    """
    n_a, n_b, n_p = len(ks), len(ls), perms.shape[0]
    out = np.zeros((n_a, n_b, n_p))
    if not (n_a and n_b and n_p):
        return out
    n = ks[0].shape[0]
    starts = np.concatenate([[0], np.cumsum(np.arange(n, 0, -1))])  # row i's first entry
    total = int(starts[-1])
    flat_ls = [np.ascontiguousarray(x).reshape(-1) for x in ls]
    flat_ks = [np.ascontiguousarray(x).reshape(-1) for x in ks]
    cols = [(t, b) for t in range(n_p) for b in range(n_b)]  # permutation-major: one index per π
    seg_max = min(SEGMENT, total)
    a_stack = np.zeros((BATCH_ROWS, seg_max))
    b_stack = np.zeros((BATCH_COLS, seg_max))
    for s0 in range(0, total, SEGMENT):
        s1 = min(s0 + SEGMENT, total)
        pos = np.arange(s0, s1)
        rows_i = np.searchsorted(starts, pos, side="right") - 1
        cols_j = rows_i + (pos - starts[rows_i])
        own = rows_i * n + cols_j
        weight = np.where(rows_i == cols_j, 1.0, 2.0)
        width = s1 - s0
        for g in range(0, n_a, BATCH_ROWS):
            size = min(n_a - g, BATCH_ROWS)
            a_seg = a_stack[:, :width]
            a_seg.fill(0.0)
            for r in range(size):
                np.take(flat_ks[g + r], own, out=a_seg[r])
                a_seg[r] *= weight
            for c0 in range(0, len(cols), BATCH_COLS):
                chunk = cols[c0 : c0 + BATCH_COLS]
                b_seg = b_stack[:, :width]
                index: tuple[int, NDArray[np.intp]] | None = None
                for q, (t, b) in enumerate(chunk):
                    if index is None or index[0] != t:
                        pi = perms[t]
                        index = (t, pi[rows_i] * n + pi[cols_j])
                    np.take(flat_ls[b], index[1], out=b_seg[q])
                b_seg[len(chunk) :] = 0.0
                part = a_seg @ b_seg.T  # (BATCH_ROWS, BATCH_COLS), the same shape every time
                for q, (t, b) in enumerate(chunk):
                    out[g : g + size, b, t] += part[:size, q]
    return out


def permutation_p(observed: float, null: Float64, kind: str) -> float:
    """p = (1 + #{null ≥ observed}) / (1 + P) for a similarity (≤ for a distance); NaN replicates
    are not counted (nor is P). NaN when the observed value is NaN or no replicate is finite."""
    finite = null[np.isfinite(null)]
    if not np.isfinite(observed) or finite.size == 0:
        return float("nan")
    extreme = finite >= observed if kind == "similarity" else finite <= observed
    return float((1 + int(extreme.sum())) / (1 + finite.size))


def kernel_spread(k: Float64) -> float:
    """d̄ − μ of a kernel (n, n): its diagonal mean minus its off-diagonal mean."""
    n = k.shape[0]
    tr = float(np.trace(k))
    return float(tr / n - (float(k.sum()) - tr) / (n * (n - 1)))


def gamma_null(kc: Float64, lc: Float64, spread_k: float | None = None,
               spread_l: float | None = None) -> tuple[float, float, float]:
    """Gamma fit of the null of HSIC_b = tr(K̃L̃)/n² for two centred kernels (n, n): returns
    (statistic n·HSIC_b, null mean of HSIC_b, null variance of HSIC_b). ``spread_k``/``spread_l``:
    :func:`kernel_spread` of each, when the caller keeps them per layer."""
    n = kc.shape[0]
    prod = kc * lc
    stat = float(prod.sum()) / n
    diag = np.diagonal(prod)
    var = (float(np.einsum("ij,ij->", prod, prod)) - float(diag @ diag)) / 36.0 / (n * (n - 1))
    var *= 72.0 * (n - 4) * (n - 5) / (n * (n - 1) * (n - 2) * (n - 3))
    sk = kernel_spread(kc) if spread_k is None else spread_k
    sl = kernel_spread(lc) if spread_l is None else spread_l
    return stat, sk * sl / n, var


def gamma_sf(stat: float, mean: float, var: float, n: int) -> float:
    """P(T ≥ stat) for T ~ Gamma(shape mean²/var, scale n·var/mean) (Gretton et al. 2008);
    NaN when the moments are not positive."""
    from scipy import stats as sps  # here: scipy.stats costs ~1 s at start-up

    if not (mean > 0 and var > 0):
        return float("nan")

    return float(sps.gamma.sf(stat, mean * mean / var, scale=n * var / mean))
