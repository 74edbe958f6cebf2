"""Minibatch linear CKA (Nguyen, Raghu & Kornblith, 2021), on the Gram engine.

The n samples are split into batches by a seeded permutation (``numpy.random.default_rng(seed)
.permutation(n)``, consecutive runs of ``batch_size``). For each batch k the linear kernels
K_k = X_k X_kᵀ and L_k = Y_k Y_kᵀ give the unbiased HSIC estimate HSIC_u (Song et al., 2012), and

    CKA_mb = mean_k HSIC_u(K_k, L_k) / √(mean_k HSIC_u(K_k, K_k) · mean_k HSIC_u(L_k, L_k)),

the averages being taken **before** the ratio (so this is not a mean of per-batch CKAs).

Batching, decided here: every batch has ``batch_size`` samples except the last, which keeps the
remainder and counts with the same weight as the others (as a sum over a data loader does) when it
has at least 4 samples; a remainder of 1–3 samples is dropped (HSIC_u needs 4). ``batch_size ≥ n``
gives one batch of all n samples, i.e. debiased linear CKA. n < 4 raises :class:`DataError`.

Per layer (once): the U-centred batch kernels, each scaled by 1/√(m_k(m_k − 3)) and concatenated
into one vector u (length Σ m_k² ≈ n·batch_size), so that Σ_k HSIC_u(K_k, L_k) = ⟨u_a, u_b⟩. The
batch kernels are built from the engine's centred rows (``centered_data``: one read of the layer,
≈ n·batch_size·D flops, no n×n Gram, on either engine side); HSIC_u ignores a common shift of the
features, so centring with the full-data means changes nothing. Per pair: one dot product of
length ≈ n·batch_size.

References
----------
Nguyen, Raghu & Kornblith (2021), "Do Wide and Deep Networks Learn the Same Things? Uncovering How
Neural Network Representations Vary with Width and Depth", ICLR, arXiv:2010.15327.
Song, Smola, Gretton, Bedo & Borgwardt (2012), "Feature Selection via Dependence Maximization",
JMLR 13 (HSIC_u). Kornblith et al. (2019), colab ``center_gram(unbiased=True)`` (U-centring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..engine.gram import CONSTANT_RTOL
from ..errors import DataError, MetricParameterError
from ._kernels import (
    Float64,
    VectorState,
    as_matrix,
    ratio_matrix,
    u_center,
    vector_ratio,
    vector_state,
)
from .contract import Cell, LayerContext, StateCost
from .registry import MetricInfo, Param, register

CITATION = "Nguyen, Raghu & Kornblith 2021, ICLR (arXiv:2010.15327); HSIC_u: Song et al. 2012"
RANGE_TEXT = "[−1, 1] (unbiased HSIC; ≈[0, 1] in practice)"
MIN_BATCH = 4
Index = NDArray[np.intp]


def minibatches(n: int, batch_size: int, seed: int) -> list[Index]:
    """Sample indices of each minibatch: consecutive runs of a seeded permutation of range(n).

    The last batch keeps the remainder when it has ≥ 4 samples and is dropped otherwise;
    ``batch_size ≥ n`` gives a single batch. Raises :class:`DataError` for n < 4.
    """
    if n < MIN_BATCH:
        raise DataError(f"cka_minibatch needs at least {MIN_BATCH} samples, got n={n}")
    order = np.random.default_rng(seed).permutation(n)
    batches = [order[start : start + batch_size] for start in range(0, n, batch_size)]
    return [b for b in batches if b.size >= MIN_BATCH]


def batch_kernel_vector(
    batch_gram: Callable[[Index], Float64], batches: Sequence[Index]
) -> Float64:
    """Concatenated U-centred batch kernels, each scaled by 1/√(m(m − 3)): (Σ m_k²,) float64.

    ``batch_gram(idx)`` returns the (m, m) float64 linear kernel of the rows ``idx`` (any common
    shift of the features allowed); ⟨u_a, u_b⟩ = Σ_k HSIC_u(K_k, L_k).
    """
    parts = []
    for idx in batches:
        m = idx.size
        k = u_center(np.array(batch_gram(idx), dtype=np.float64, copy=True))
        k *= 1.0 / np.sqrt(m * (m - 3.0))
        parts.append(k.ravel())
    return np.concatenate(parts)


def _rows_gram(xc: NDArray[np.floating]) -> Callable[[Index], Float64]:
    """Batch kernels from centred rows; the product runs in xc's dtype (the engine's GEMM
    precision: float32 for float32 stores), the result is float64."""

    def gram(idx: Index) -> Float64:
        rows = xc[idx]
        return np.asarray(rows @ rows.T, dtype=np.float64)

    return gram


def minibatch_cka(x: ArrayLike, y: ArrayLike, batch_size: int = 256, seed: int = 0) -> float:
    """Minibatch linear CKA of X (n, p) and Y (n, q), any float dtype, computed in float64.

    Parameters
    ----------
    x, y : (n, p) and (n, q) arrays
        The same n samples (rows) in the same order.
    batch_size : int
        Samples per batch (≥ 4); the remainder batch is kept when it has ≥ 4 samples.
    seed : int
        Seed of ``numpy.random.default_rng`` for the permutation that forms the batches.

    Returns
    -------
    float
        Similarity in [−1, 1] (Cauchy–Schwarz over the concatenated U-centred kernels); 1 for
        X = Y; invariant to orthogonal maps, isotropic scaling and translation. A constant X or Y
        raises :class:`DataError`.

    References
    ----------
    Nguyen, Raghu & Kornblith (2021), ICLR, arXiv:2010.15327.
    """
    a, b = as_matrix(x), as_matrix(y)
    if a.shape[0] != b.shape[0]:
        raise DataError(f"X has {a.shape[0]} samples but Y has {b.shape[0]}")
    batches = minibatches(a.shape[0], batch_size, seed)
    vectors = []
    for label, z in (("X", a), ("Y", b)):
        _check_not_constant(z, label)
        vectors.append(batch_kernel_vector(_rows_gram(z - z.mean(axis=0)), batches))
    h = np.array([[float(vectors[0] @ vectors[1])]])
    hx, hy = np.array([vectors[0] @ vectors[0]]), np.array([vectors[1] @ vectors[1]])
    return float(ratio_matrix(h, hx, hy, "cka_minibatch")[0, 0])


def _check_not_constant(z: Float64, label: str) -> None:
    """The engine's tests for a stored layer, on an in-memory one: finite and not constant."""
    if not np.isfinite(z).all():
        raise DataError(f"{label} contains NaN or Inf values")
    zc = z - z.mean(axis=0)
    if not float(np.sum(zc * zc)) > CONSTANT_RTOL * float(np.sum(z * z)):
        raise DataError(f"{label} is constant (zero variance); cka_minibatch is undefined")


def minibatch_cka_all_pairs(
    layers: Sequence[ArrayLike], batch_size: int = 256, seed: int = 0
) -> Float64:
    """Minibatch CKA between every pair of in-memory layers: (L, L) float64.

    Each layer's batch kernels are built once (≈ n·batch_size·D flops, no n×n Gram) and all
    pairs come from one product of the stacked per-layer vectors.
    """
    mats = [as_matrix(x) for x in layers]
    batches = minibatches(mats[0].shape[0], batch_size, seed)
    for i, z in enumerate(mats):
        _check_not_constant(z, f"layer {i}")
    stack = np.stack([batch_kernel_vector(_rows_gram(z - z.mean(axis=0)), batches) for z in mats])
    h = stack @ stack.T
    diag = np.diag(h).copy()
    return ratio_matrix(h, diag, diag, "cka_minibatch")


def prepare_minibatch(layer: LayerContext, params: Mapping[str, Any]) -> VectorState:
    """The per-layer stage: the layer's stacked U-centred batch kernels (no n×n Gram)."""
    batches = minibatches(layer.n, int(params["batch_size"]), int(params["seed"]))
    xc = layer.centered_data()
    mean = layer.mean()
    _check_centered_layer(xc, layer.n * float(mean @ mean), layer.label)
    return vector_state(batch_kernel_vector(_rows_gram(xc), batches))


def minibatch_pair(a: VectorState, b: VectorState, params: Mapping[str, Any]) -> Cell:
    """Minibatch CKA of two layer states: one dot product."""
    value, note = vector_ratio(a, b)
    return Cell(value, note=note)


def _state_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    m = min(int(params["batch_size"]), n)
    return StateCost(bytes=8.0 * n * m, flops=10.0 * n * m * width)


def _check_centered_layer(xc: NDArray[np.floating], n_mean_sq: float, label: str) -> None:
    """The engine's constant-layer test from the centred layer: ‖Xc‖² ≤ 1e-20·(‖Xc‖² + n‖μ‖²)."""
    centred = float(np.einsum("ij,ij->", xc, xc, dtype=np.float64))
    if not centred > CONSTANT_RTOL * (centred + n_mean_sq):
        raise DataError(f"{label}: constant layer (zero variance); similarity is undefined")


def _validate(params: dict[str, Any]) -> None:
    if params["batch_size"] < MIN_BATCH:
        raise MetricParameterError(
            f"metric 'cka_minibatch': batch_size must be at least {MIN_BATCH} (HSIC_u needs 4 "
            f"samples per batch), got {params['batch_size']}"
        )


def _cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
    m = min(int(params["batch_size"]), n)
    return 10.0 * n * m * n_layers + 2.0 * n * m * n_pairs


register(
    MetricInfo(
        name="cka_minibatch",
        kind="similarity",
        symmetric=True,
        bounds=(-1.0, 1.0),
        params=(
            Param("batch_size", 256, int, doc="samples per minibatch (≥ 4)"),
            Param("seed", 0, int, doc="seed of the permutation that forms the batches"),
        ),
        citation=CITATION,
        summary="linear CKA from unbiased HSIC averaged over seeded minibatches",
        sides=("sample", "feature"),
        prepare=prepare_minibatch,
        pair=minibatch_pair,
        state_cost=_state_cost,
        identity=1.0,
        invariances=("orthogonal", "isotropic_scaling", "translation", "permutation"),
        validate=_validate,
        range_text=RANGE_TEXT,
        cost=_cost,
    )
)
