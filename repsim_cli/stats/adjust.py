"""Multiple-comparison adjustment of the cells' p-values across one metric's matrix.

Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6
(family-wise error); Benjamini & Hochberg (1995), JRSS B 57 (false discovery rate). A symmetric
metric's mirrored cells are one test: each unordered layer pair is counted once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

METHODS = ("holm", "bh", "none")
Float64 = NDArray[np.float64]


def adjust_pvalues(p: Float64, method: str) -> Float64:
    """Adjusted p-values (same shape as the 1-D ``p``; NaN entries stay NaN and are not counted)."""
    if method not in METHODS:
        raise ValueError(f"adjust method must be one of {METHODS}, not {method!r}")
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    vals = p[ok]
    if method == "none":
        out[ok] = vals
        return out
    order = np.argsort(vals, kind="stable")
    sorted_p = vals[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * sorted_p)
    else:
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * sorted_p[::-1])[::-1]
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def adjust_matrix(
    p_value: Float64, layers_a: list[str], layers_b: list[str], symmetric: bool, method: str
) -> Float64:
    """``p_adjusted`` (La, Lb) over every cell with a p-value; with ``symmetric``, a cell and its
    mirror (the same two layers the other way round) are one test and share the adjusted value.
    A layer compared with itself is no test of the family (NaN)."""
    cells: dict[Any, list[tuple[int, int]]] = {}
    for i, j in zip(*np.nonzero(np.isfinite(p_value)), strict=True):
        a, b = layers_a[i], layers_b[j]
        if a == b:
            continue
        key = frozenset((a, b)) if symmetric else (a, b)
        cells.setdefault(key, []).append((int(i), int(j)))
    keys = list(cells)
    flat = np.array([p_value[cells[k][0]] for k in keys], dtype=np.float64)
    adj = adjust_pvalues(flat, method)
    out = np.full(p_value.shape, np.nan)
    for k, v in zip(keys, adj, strict=True):
        for i, j in cells[k]:
            out[i, j] = v
    return out
