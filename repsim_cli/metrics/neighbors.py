"""Nearest-neighbour metrics of Huh et al. (2024): mutual k-NN and CKNNA, on the Gram engine.

Both use each layer's k nearest neighbours by inner product, from the raw (uncentred) linear kernel
K = XXᵀ — the engine's ``gram(ref, "none")`` — or, with ``normalize=true`` (the paper's pipeline,
``measure_alignment.compute_score``), by cosine similarity K_ij/√(K_ii K_jj). A sample is never its
own neighbour. Ties are broken towards the lower sample index, so the neighbour sets are
deterministic (the reference's torch ``argsort``/``topk`` leaves them implementation-defined).
The reference pipeline's optional outlier clamp (``prepare_features``) is not part of the metric.

* ``mutual_knn`` = mean_i |N_X(i) ∩ N_Y(i)| / k, a similarity in [0, 1] (platonic-rep
  ``mutual_knn``). k = n − 1 makes every other sample a neighbour and the score trivially 1 (a
  :class:`RepsimWarning` says so).
* ``cknna``: with M the intersection of the two layers' neighbour masks (row i: the samples that
  are among the k nearest of i in both layers), s(K, L) = HSIC_u(M⊙K, M⊙L) in the explicit form
  of Song et al. (2012) applied to these asymmetric matrices, [Σ_ij A_ij B_ji
  + (1ᵀA1)(1ᵀB1)/((n−1)(n−2)) − 2·1ᵀAB1/(n−2)] / (n(n−3)); and
  CKNNA = s(K, L)/√(s(K, K)·s(L, L)) (platonic-rep ``cknna``, ``unbiased=True``).
  **Deviations**, both small: (1) for these asymmetric matrices the reference's 1ᵀAB1 ≠ 1ᵀBA1,
  so its cknna(X, Y) ≠ cknna(Y, X); repsim uses the mean of the two orders, so its value is
  exactly the mean of the reference's cknna(X, Y) and cknna(Y, X) (and symmetric); (2) the
  reference adds 1e−6 to the denominator; repsim does not (that constant makes the value depend
  on the scale of the features and keeps CKNNA(X, X) from being 1). A self term ≤ 0 gives NaN
  with a :class:`RepsimWarning`. The masked matrices are not symmetric, so s is not an inner
  product and |CKNNA| ≤ 1 is not guaranteed.
* ``cknna:compat=platonic`` reproduces the reference function ``cknna(feats_A, feats_B, topk,
  distance_agnostic=False, unbiased=True)`` itself, for matching published numbers: feats_A is
  the row layer of the matrix (cell (i, j) = cknna(row i, column j)), 1ᵀAB1 in that one order, and
  s(K, L)/(√(s(K, K)·s(L, L)) + 1e-6); the metric is then asymmetric. With ``normalize=true`` it
  equals the reference applied to L2-normalised rows (as the reference's pipeline calls it), with
  ``normalize=false`` the reference on the raw features. A negative s(K, K)·s(L, L) gives NaN (the
  reference's square root of a negative number) with a :class:`RepsimWarning`.

Per layer (once): the neighbour lists (as sorted codes i·n + j) and the kernel values at them, and
for CKNNA the self term. Per pair: one sorted intersection of n·k codes (sparse, O(nk log nk)).

**Copies in a bootstrap replicate** (``prepare_grouped``; the statistics' generic path passes the
replicate's original example indices as ``groups``). Two rows holding one example are at cosine 1,
the nearest possible, in *every* layer, so each is the other's neighbour in both layers (by inner
product too, as a rule): a neighbour shared for free, which inflates mutual k-NN and CKNNA (two
independent layers of 100 examples, k = 10: mutual k-NN 0.089, its replicates averaged 0.168 with
copies kept and 0.084 without; CKNNA 0.069, 0.526 and 0.052). Policy, as rsatoolbox excludes
copy–copy pairs from its bootstrapped RDM comparisons (Nili et al. 2014, PLoS Comput Biol 10(4):
e1003553; rsatoolbox ``inference.bootstrap``): a row's neighbour search skips every row holding
its own example, exactly as it skips the row itself, so each row still gets k neighbours, all
other examples (two copies of *another* example are two candidates, tied exactly — their
similarities are taken from one of them — and ties go to the lower row, as always). CKNNA's mask
M is then 0 between copies as on the diagonal, so the masked kernels A = M⊙K, B = M⊙L carry no
copy–copy term, and HSIC_u is the same formula over the replicate's m rows — the treatment of
copies of the debiased CKA bootstrap (copy–copy kernel entries set to 0, Song et al. 2012's
estimator unchanged). A replicate in which some row has fewer than k rows that are not its
copies has no k-neighbour lists: its cells are NaN. A replicate without copies is computed by
exactly the code of the plain metric.

Degenerate input: a constant layer raises :class:`DataError` (engine); k ≥ n raises
:class:`DataError`; CKNNA needs n ≥ 4 (HSIC_u); with ``normalize=true`` a sample whose features
are all 0 has no direction: as ``torch.nn.functional.normalize`` does, it keeps a zero vector
(cosine 0 with everything), with a :class:`RepsimWarning`.

References
----------
Huh, Cheung, Wang & Isola (2024), "The Platonic Representation Hypothesis", ICML,
arXiv:2405.07987; minyoungg/platonic-rep ``metrics.py`` (``mutual_knn``, ``cknna``,
``hsic_unbiased``). Song et al. (2012), JMLR 13 (HSIC_u). Nili et al. (2014), "A toolbox for
representational similarity analysis", PLoS Comput Biol 10(4): e1003553 (copies in the bootstrap).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._warnings import RepsimWarning
from ..errors import DataError, MetricParameterError
from ._kernels import (
    NOT_POSITIVE_NOTE,
    Float64,
    as_matrix,
    centered_gram_dense,
    ratio_matrix,
    roundoff_rtol,
)
from .contract import Cell, LayerContext, StateCost
from .registry import MetricInfo, Param, register

CITATION_KNN = "Huh et al. 2024, ICML (arXiv:2405.07987), platonic-rep mutual_knn"
CITATION_CKNNA = "Huh et al. 2024, ICML (arXiv:2405.07987), platonic-rep cknna (unbiased HSIC)"
BLOCK_ELEMENTS = 1 << 20  # entries of the similarity matrix ranked at once (bounds temporaries)
Int64 = NDArray[np.int64]


@dataclass(frozen=True)
class Neighbours:
    """A layer's k nearest neighbours: ``codes`` (n·k,) int64 = i·n + j sorted ascending (row i,
    then neighbour j), and ``values`` (n·k,) float64 = the similarity K_ij used to rank them."""

    n: int
    k: int
    codes: Int64
    values: Float64
    # why the lists are undefined (a bootstrap replicate whose rows cannot all get k neighbours
    # that are not their own copies): every cell with them is NaN with this note
    note: str | None = None


def copy_labels(groups: ArrayLike) -> tuple[Int64, Int64]:
    """(labels, representative) of a replicate's rows (n,) int64 from their example ``groups``
    (n,): ``labels`` numbers the distinct examples 0, 1, ... and ``representative[i]`` is the first
    row holding row i's example."""
    g = np.asarray(groups).ravel()
    _, first, labels = np.unique(g, return_index=True, return_inverse=True)
    labels = labels.ravel().astype(np.int64)
    return labels, first[labels].astype(np.int64)


def cosine_rows(gram: Float64, rows: slice, inv_norm: Float64) -> Float64:
    """Cosine similarities of the given rows with all rows, (r, n), from a raw Gram."""
    block = gram[rows] * inv_norm[rows, None]
    block *= inv_norm[None, :]
    return block


def _inverse_norms(gram: Float64, rtol: float, label: str) -> Float64:
    """1/‖x_i‖ per sample, 0 for a zero sample (F.normalize semantics, with a warning)."""
    sq = np.diag(gram).copy()
    zero = ~(sq > rtol * sq.max())
    if np.any(zero):
        warnings.warn(
            f"{label}: {int(zero.sum())} sample(s) are all zeros; with normalize=true they keep a "
            "zero vector (cosine 0 with every sample), as torch's F.normalize does",
            RepsimWarning,
            stacklevel=3,
        )
    inv = np.zeros_like(sq)
    inv[~zero] = 1.0 / np.sqrt(sq[~zero])
    return inv


def top_k(similarity: Float64, first_row: int, k: int, labels: Int64 | None = None) -> Int64:
    """Column indices of the k largest entries of each row, the row's own index excluded.

    ``similarity`` is an (r, n) block whose row t is sample first_row + t. Ties at the k-th value
    go to the lowest column index. With ``labels`` (n,) (equal for copies of one example, see
    :func:`copy_labels`), every column with the row's own label is excluded too; each row must
    keep at least k columns. Returns (r, k) int64, each row sorted ascending.
    """
    s = np.array(similarity, dtype=np.float64, copy=True)
    r, n = s.shape
    if labels is None:
        s[np.arange(r), first_row + np.arange(r)] = -np.inf
    else:
        s[labels[first_row : first_row + r, None] == labels[None, :]] = -np.inf
    kth = np.partition(s, n - k, axis=1)[:, n - k]
    above = s > kth[:, None]
    tied = s == kth[:, None]
    need = k - above.sum(axis=1)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need[:, None]))
    return np.nonzero(chosen)[1].reshape(r, k).astype(np.int64)


def nearest_neighbours(
    gram: Float64, k: int, normalize: bool, rtol: float, label: str,
    groups: ArrayLike | None = None,
) -> Neighbours:
    """The k nearest neighbours of every sample by inner product (or cosine), from a raw Gram.

    ``gram`` is K = XXᵀ (n, n) float64, uncentred; not modified. Requires 1 ≤ k ≤ n − 1.
    ``groups`` (n,) int, for a bootstrap replicate: the example each row holds. A row's
    neighbours then exclude every row holding its example (not only itself), and the copies of
    another example tie exactly (their column is read from the example's first row). When a row
    has fewer than k other examples' rows, the lists are undefined (``note`` set, no codes).
    """
    n = gram.shape[0]
    labels = representative = None
    if groups is not None:
        labels, representative = copy_labels(groups)
        most = int(np.bincount(labels).max())
        if n - most < k:
            note = (f"a bootstrap replicate holds one example {most} times among {n} rows: fewer "
                    f"than k={k} other examples for it to take as neighbours; the value is NaN")
            empty = np.empty(0, dtype=np.int64)
            return Neighbours(n, k, empty, np.empty(0), note=note)
    inv = _inverse_norms(gram, rtol, label) if normalize else None
    codes = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k))
    step = max(1, BLOCK_ELEMENTS // n)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        block = cosine_rows(gram, rows, inv) if inv is not None else gram[rows]
        if representative is not None:
            block = block[:, representative]
        idx = top_k(block, start, k, labels)
        values[rows] = np.take_along_axis(block, idx, axis=1)
        codes[rows] = np.arange(start, rows.stop)[:, None] * n + idx
    return Neighbours(n, k, codes.ravel(), values.ravel())


def _check_k(n: int, k: int, metric: str) -> None:
    if k >= n:
        raise DataError(f"{metric}: k={k} neighbours need more than k samples, got n={n}")
    if metric == "cknna" and n < 4:
        raise DataError(f"cknna needs at least 4 samples (unbiased HSIC), got n={n}")


def _warn_trivial(n: int, k: int) -> None:
    if k == n - 1:
        warnings.warn(
            f"mutual_knn with k = n − 1 = {k}: every other sample is a neighbour, so the score is "
            "trivially 1",
            RepsimWarning,
            stacklevel=3,
        )


def mutual_knn_pair(a: Neighbours, b: Neighbours) -> float:
    """mean_i |N_a(i) ∩ N_b(i)| / k for two layers' neighbour lists (same n and k)."""
    shared = np.intersect1d(a.codes, b.codes, assume_unique=True).size
    return shared / float(a.n * a.k)


def masked_hsic(a: Neighbours, b: Neighbours, symmetric: bool = True) -> float:
    """Symmetrised HSIC_u(M⊙K_a, M⊙K_b), M the intersection of the two neighbour masks (n ≥ 4).

    The explicit U-statistic of Song et al. (2012) as platonic-rep's ``hsic_unbiased`` applies it
    to these asymmetric matrices A, B (zero diagonal): tr(AB) = Σ_ij A_ij B_ji, the sums 1ᵀA1 and
    1ᵀB1, and 1ᵀAB1 = (column sums of A)·(row sums of B), all over the shared entries only —
    except that 1ᵀAB1 is replaced by ½(1ᵀAB1 + 1ᵀBA1), the mean of the reference's two orders.
    With ``symmetric=False``, 1ᵀAB1 itself (A from ``a``): the reference's value for (a, b).
    """
    n = a.n
    codes, pos_a, pos_b = np.intersect1d(a.codes, b.codes, assume_unique=True, return_indices=True)
    va, vb = a.values[pos_a], b.values[pos_b]
    rows, cols = np.divmod(codes, n)
    transposed = cols * n + rows
    where = np.searchsorted(codes, transposed)
    where[where == codes.size] = 0
    mirrored = codes[where] == transposed if codes.size else np.zeros(0, dtype=bool)
    # Both summation orders, added: swapping the layers then gives the same bits (a single order
    # differs from its swap by round-off, which the cancellation below can magnify to ~1e-10).
    partner = where[mirrored]
    trace = 0.5 * (float(va[mirrored] @ vb[partner]) + float(vb[mirrored] @ va[partner]))
    col_a, row_a = np.bincount(cols, va, n), np.bincount(rows, va, n)
    col_b, row_b = np.bincount(cols, vb, n), np.bincount(rows, vb, n)
    # The reference's 1ᵀAB1 is not symmetric in (A, B) for asymmetric masks; the mean of both
    # orders makes s(K, L) = s(L, K) and leaves the self terms s(K, K) unchanged.
    if symmetric:
        cross = 0.5 * (float(col_a @ row_b) + float(col_b @ row_a))
    else:
        cross = float(col_a @ row_b)
    total = (
        trace
        + float(va.sum()) * float(vb.sum()) / ((n - 1.0) * (n - 2.0))
        - 2.0 * cross / (n - 2.0)
    )
    return total / (n * (n - 3.0))


def _dense_pair(
    x: ArrayLike, y: ArrayLike, k: int, normalize: bool, metric: str
) -> tuple[Neighbours, Neighbours]:
    """Both in-memory layers' neighbour lists, after the engine's checks (finite, not constant)."""
    a, b = as_matrix(x), as_matrix(y)
    if a.shape[0] != b.shape[0]:
        raise DataError(f"X has {a.shape[0]} samples but Y has {b.shape[0]}")
    _check_k(a.shape[0], k, metric)
    out = []
    for label, z in (("X", a), ("Y", b)):
        centered_gram_dense(z, label, metric)
        out.append(nearest_neighbours(z @ z.T, k, normalize, roundoff_rtol(np.float64), label))
    return out[0], out[1]


def mutual_knn(x: ArrayLike, y: ArrayLike, k: int = 10, normalize: bool = True) -> float:
    """Mutual k-NN alignment of X (n, p) and Y (n, q), computed in float64.

    Parameters
    ----------
    x, y : (n, p) and (n, q) arrays
        The same n samples (rows) in the same order.
    k : int
        Neighbours per sample, 1 ≤ k ≤ n − 1.
    normalize : bool
        Rank neighbours by cosine similarity (rows L2-normalised) instead of inner product.

    Returns
    -------
    float
        Similarity in [0, 1]: the mean fraction of shared neighbours; 1 for X = Y. Invariant to
        orthogonal maps and isotropic scaling (and, normalised, per-sample positive scaling); not
        to translation. A constant X or Y or k ≥ n raises :class:`DataError`.

    References
    ----------
    Huh et al. (2024), ICML, arXiv:2405.07987; platonic-rep ``mutual_knn``.
    """
    a, b = _dense_pair(x, y, k, normalize, "mutual_knn")
    _warn_trivial(a.n, k)
    return mutual_knn_pair(a, b)


def cknna(
    x: ArrayLike, y: ArrayLike, k: int = 10, normalize: bool = True, compat: str = "symmetric"
) -> float:
    """CKNNA (centred kernel nearest-neighbour alignment) of X (n, p) and Y (n, q), in float64.

    Parameters
    ----------
    x, y : (n, p) and (n, q) arrays
        The same n samples (rows) in the same order; n ≥ 4.
    k : int
        Neighbours per sample, 2 ≤ k ≤ n − 1.
    normalize : bool
        Use cosine similarities (rows L2-normalised) for both the neighbours and the kernel.
    compat : {"symmetric", "platonic"}
        ``symmetric`` (default): the mean of the reference's two argument orders, no constant.
        ``platonic``: platonic-rep's ``cknna(X, Y, k, unbiased=True)`` exactly (one order, 1e-6
        added to the denominator), not symmetric in X and Y.

    Returns
    -------
    float
        Similarity, 1 for X = Y (symmetric); typically in [−1, 1] but not bounded in theory (see
        the module docs). NaN with a :class:`RepsimWarning` when a self term is ≤ 0 (platonic:
        when their product is negative). A constant X or Y, k ≥ n or n < 4 raises
        :class:`DataError`.

    References
    ----------
    Huh et al. (2024), ICML, arXiv:2405.07987; platonic-rep ``cknna``.
    """
    _check_compat(compat)
    a, b = _dense_pair(x, y, k, normalize, "cknna")
    self_a, self_b = masked_hsic(a, a), masked_hsic(b, b)
    if compat == "symmetric":
        h = np.array([[masked_hsic(a, b)]])
        return float(ratio_matrix(h, np.array([self_a]), np.array([self_b]), "cknna")[0, 0])
    cell = _cknna_value(a, b, self_a, self_b, compat, same=False)
    if cell.note:
        warnings.warn(f"cknna: {cell.note}", RepsimWarning, stacklevel=2)
    return cell.value


def _layer_neighbours(
    layer: LayerContext, k: int, normalize: bool, groups: NDArray[np.intp] | None = None
) -> Neighbours:
    """A layer's neighbour lists, shared by mutual k-NN and CKNNA with the same k and normalize
    (``groups``: a bootstrap replicate's examples, see :func:`nearest_neighbours`)."""
    rtol = roundoff_rtol(layer.dtype)
    name = f"knn[k={k},normalize={normalize}" + (",copies excluded]" if groups is not None else "]")
    return layer.shared(
        name,
        lambda: nearest_neighbours(layer.gram("none"), k, normalize, rtol, layer.label, groups),
    )


def prepare_knn(
    layer: LayerContext, params: Mapping[str, Any], groups: NDArray[np.intp] | None = None
) -> Neighbours:
    """The per-layer stage of mutual k-NN: the layer's k nearest neighbours. ``groups`` (n,): a
    bootstrap replicate's example per row, whose copies are then excluded (module docs)."""
    k, normalize = int(params["k"]), bool(params["normalize"])
    _check_k(layer.n, k, "mutual_knn")
    _warn_trivial(layer.n, k)
    return _layer_neighbours(layer, k, normalize, groups)


def knn_pair(a: Neighbours, b: Neighbours, params: Mapping[str, Any]) -> Cell:
    """Mutual k-NN of two layer states: one intersection of the neighbour codes."""
    note = a.note or b.note
    if note:
        return Cell(float("nan"), note=note)
    return Cell(mutual_knn_pair(a, b))


@dataclass(frozen=True)
class KernelNeighbours:
    """The per-layer state of CKNNA: neighbour lists and the layer's masked-HSIC self term."""

    neighbours: Neighbours
    self_term: float


def prepare_cknna(
    layer: LayerContext, params: Mapping[str, Any], groups: NDArray[np.intp] | None = None
) -> KernelNeighbours:
    """The per-layer stage of CKNNA: neighbour lists and the self term. ``groups`` (n,): a
    bootstrap replicate's example per row, whose copies are then excluded (module docs)."""
    k, normalize = int(params["k"]), bool(params["normalize"])
    _check_k(layer.n, k, "cknna")
    nbrs = _layer_neighbours(layer, k, normalize, groups)
    return KernelNeighbours(nbrs, float("nan") if nbrs.note else masked_hsic(nbrs, nbrs))


COMPATS = ("symmetric", "platonic")
# platonic-rep's cknna adds this to √(s(K, K)·s(L, L)) (compat=platonic only).
PLATONIC_EPSILON = 1e-6
NEGATIVE_PRODUCT_NOTE = (
    "the product of the two self terms s(K, K)·s(L, L) is negative; the reference's square root "
    "gives NaN there"
)


def _check_compat(compat: str) -> None:
    if compat not in COMPATS:
        raise MetricParameterError(f"metric 'cknna': compat={compat!r} is not one of "
                                   f"{', '.join(COMPATS)}")  # fmt: skip


def _cknna_value(
    a: Neighbours, b: Neighbours, self_a: float, self_b: float, compat: str, same: bool
) -> Cell:
    """CKNNA of a pair from its neighbour lists and self terms (``same``: a and b are one layer)."""
    denom = self_a * self_b
    if compat == "platonic":
        h = self_a if same else masked_hsic(a, b, symmetric=False)
        if denom < 0:
            return Cell(float("nan"), note=NEGATIVE_PRODUCT_NOTE)
        return Cell(h / (float(np.sqrt(denom)) + PLATONIC_EPSILON))
    h = self_a if same else masked_hsic(a, b)
    if not denom > 0:
        return Cell(float("nan"), note=NOT_POSITIVE_NOTE)
    return Cell(h / float(np.sqrt(denom)))


def cknna_pair(a: KernelNeighbours, b: KernelNeighbours, params: Mapping[str, Any]) -> Cell:
    """CKNNA of two layer states (row layer ``a``, column layer ``b``): one masked HSIC over the
    shared neighbours."""
    note = a.neighbours.note or b.neighbours.note
    if note:
        return Cell(float("nan"), note=note)
    return _cknna_value(a.neighbours, b.neighbours, a.self_term, b.self_term,
                        params.get("compat", "symmetric"), same=a is b)  # fmt: skip


def _state_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    """Neighbour codes and values (n·k each) from an n×n similarity pass."""
    return StateCost(bytes=16.0 * n * int(params["k"]), flops=10.0 * n * n)


def _validate_for(metric: str, min_k: int):  # type: ignore[no-untyped-def]
    def validate(params: dict[str, Any]) -> None:
        if params["k"] < min_k:
            raise MetricParameterError(
                f"metric {metric!r}: k must be at least {min_k}, got {params['k']}"
            )

    return validate


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    nk = n * int(params["k"])
    return float(10.0 * n * n * n_layers + 2.0 * nk * np.log2(max(nk, 2)) * n_pairs)


PARAMS = (
    Param("k", 10, int, doc="neighbours per sample"),
    Param("normalize", True, bool, doc="cosine neighbours (L2-normalise rows first)"),
)

register(
    MetricInfo(
        prepare_grams=3,
        name="mutual_knn",
        kind="similarity",
        symmetric=True,
        bounds=(0.0, 1.0),
        params=PARAMS,
        citation=CITATION_KNN,
        summary="mean fraction of shared k nearest neighbours",
        sides=("sample",),
        prepare=prepare_knn,
        prepare_grouped=prepare_knn,
        pair=knn_pair,
        state_cost=_state_cost,
        identity=1.0,
        invariances=("orthogonal", "isotropic_scaling", "permutation"),
        validate=_validate_for("mutual_knn", 1),
        range_text="[0, 1]",
        cost=_cost,
    )
)

register(
    MetricInfo(
        prepare_grams=3,
        name="cknna",
        kind="similarity",
        symmetric=True,
        symmetric_for=lambda params: params["compat"] != "platonic",
        bounds=(-1.0, 1.0),
        params=(
            *PARAMS,
            Param("compat", "symmetric", str, COMPATS,
                  doc="symmetric: mean of both argument orders, no constant; platonic: "
                      "platonic-rep cknna(row, column) exactly (asymmetric, +1e-6)"),
        ),
        state_key=lambda params: ("cknna", params["k"], params["normalize"]),
        citation=CITATION_CKNNA,
        summary="unbiased-HSIC alignment of the kernels restricted to shared k-NN (uncentred); "
        "default compat=symmetric: the mean of the reference's two argument orders, without its "
        "1e-6; compat=platonic: platonic-rep cknna(row layer, column layer) exactly (asymmetric)",
        sides=("sample",),
        prepare=prepare_cknna,
        prepare_grouped=prepare_cknna,
        pair=cknna_pair,
        state_cost=_state_cost,
        identity=1.0,
        invariances=("orthogonal", "isotropic_scaling", "permutation"),
        validate=_validate_for("cknna", 2),
        range_text="1 for identical layers; typically [−1, 1], not bounded in theory",
        cost=_cost,
    )
)
