"""The in-memory functions: the four readout distances of two activation arrays X (n, p) and
Y (n, q), through the same per-layer factor and pair spectrum as a comparison."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import ShapeMismatchError
from .closed_forms import _hellinger, _symmetric_kl
from .exact_tv import _total_variation
from .layer import linear_kernel, readout_layer
from .monte_carlo import JSEstimate, _js
from .params import DEFAULT_SAMPLES, resolve_b
from .spectra import spectral_shifts

Float64 = NDArray[np.float64]


def _dense_shifts(
    x: ArrayLike, y: ArrayLike, b: float | None, a: float | None, center: str
) -> tuple[Float64, int]:
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.shape[0] != ya.shape[0]:
        raise ShapeMismatchError(
            f"X has {xa.shape[0]} stimuli (rows) but Y has {ya.shape[0]}; they must be the same"
        )
    n = xa.shape[0]
    bb = resolve_b(n, b, a)
    layer_x = readout_layer(linear_kernel(xa, center), bb, "X")
    layer_y = readout_layer(linear_kernel(ya, center), bb, "Y")
    return spectral_shifts(layer_x, layer_y), n


def bayes_tv_distance(
    x: ArrayLike, y: ArrayLike, b: float | None = None, a: float | None = None, center: str = "none"
) -> float:
    """Total variation between the linear-readout prior predictives of X (n, p) and Y (n, q).

    Distance in [0, 1], symmetric, 0 iff the trace-normalised kernels agree; invariant to
    orthogonal maps of units and isotropic scaling (and to translation with ``center="units"``).
    Exact (Imhof's integral) up to ~1e-10. ``b`` (default 0.01) or ``a`` (noise fraction) set the
    noise, ``center`` the kernel (``none``, ``units``, ``stimuli``). Computed in float64.

    References
    ----------
    Schütt (2024/2025), arXiv:2411.08739; Imhof (1961).
    """
    mu, n = _dense_shifts(x, y, b, a, center)
    return _total_variation(mu, n)


def bayes_js_estimate(
    x: ArrayLike,
    y: ArrayLike,
    b: float | None = None,
    a: float | None = None,
    center: str = "none",
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> JSEstimate:
    """Jensen–Shannon distance √(JS_bits) of X (n, p) and Y (n, q) with its Monte Carlo error.

    See :func:`bayes_js_distance`; returns a :class:`JSEstimate`.

    References
    ----------
    Schütt (2024/2025), arXiv:2411.08739; Lin (1991).
    """
    mu, n = _dense_shifts(x, y, b, a, center)
    return _js(mu, n, samples, seed)


def bayes_js_distance(
    x: ArrayLike,
    y: ArrayLike,
    b: float | None = None,
    a: float | None = None,
    center: str = "none",
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> float:
    """Jensen–Shannon *distance* √(JS divergence in bits) of the readout prior predictives, [0, 1].

    X (n, p) and Y (n, q), any float dtype. Monte Carlo with ``samples`` draws and ``seed``
    (deterministic); the reference's functions return the divergence, this returns its root.

    References
    ----------
    Schütt (2024/2025), arXiv:2411.08739; Lin (1991).
    """
    return bayes_js_estimate(x, y, b, a, center, samples, seed).distance


def bayes_kl_divergence(
    x: ArrayLike, y: ArrayLike, b: float | None = None, a: float | None = None, center: str = "none"
) -> float:
    """Symmetrised KL divergence (KL_ab + KL_ba)/2 in nats, in [0, ∞), of X (n, p) and Y (n, q).

    Matches the reference's ``kldiv`` (the mean of the two KLs, not their sum).

    References
    ----------
    Schütt (2024), arXiv:2411.08739; Schuett-lab/BayesCompare ``kldiv``.
    """
    mu, _ = _dense_shifts(x, y, b, a, center)
    return _symmetric_kl(mu)


def bayes_hellinger_distance(
    x: ArrayLike, y: ArrayLike, b: float | None = None, a: float | None = None, center: str = "none"
) -> float:
    """Hellinger distance √(1 − e^{−D_B}) of the readout prior predictives, in [0, 1].

    References
    ----------
    Schütt (2024), arXiv:2411.08739; Schuett-lab/BayesCompare ``hellinger``.
    """
    mu, _ = _dense_shifts(x, y, b, a, center)
    return _hellinger(mu)
