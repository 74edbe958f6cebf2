"""Bayesian linear-readout distances (Schütt, "Bayesian comparisons between representations").

A layer with activations X (n stimuli × p units) defines, through a linear readout y = Xw + ε with
Gaussian weights and noise, the prior predictive distribution N(0, Σ) over the n outputs. With the
kernel trace-normalised and the noise variance set to 1 (METRICS §9, B1),

    Σ' = I + K / (b · tr K),    K = X Xᵀ (n × n),    b = 0.01 by default,

which equals the reference's Σ = (1 − a)·n·K/tr K + a·I up to the factor a both layers share, with
a = n·b / (1 + n·b). Two layers are compared through the distributions P_a = N(0, Σ'_a) and
P_b = N(0, Σ'_b). Every distance here is invariant under a common invertible linear map, so after
whitening with Σ'_a it depends only on the generalised eigenvalues λ of (Σ'_b, Σ'_a) (METRICS §9,
B3). They are computed as shifts μ = λ − 1, the eigenvalues of L⁻¹(Σ'_b − Σ'_a)L⁻ᵀ, which keeps the
directions where the two layers agree (λ ≈ 1) accurate.

* ``bayes_tv``: total variation, exact, as the difference of two generalised chi-square tail
  probabilities, each from Imhof's integral (with a Monte Carlo fallback).
* ``bayes_js``: the Jensen–Shannon *distance* √(JS divergence in bits), by Monte Carlo in the
  eigenbasis at O(n) per sample, with common random numbers across all pairs; it carries its
  standard error.
* ``bayes_kl``: the symmetrised KL divergence (KL(P_a‖P_b) + KL(P_b‖P_a))/2 in nats, closed form.
* ``bayes_hellinger``: the Hellinger distance √(1 − e^{−D_B}), D_B the Bhattacharyya distance.

References
----------
Schütt, H. H. (2024/2025), "Bayesian comparisons between representations", arXiv:2411.08739 (CCN
2025); reference code github.com/Schuett-lab/BayesCompare (``distances.py``, ``cov_utils.py``).
Imhof, J. P. (1961), "Computing the distribution of quadratic forms in normal variables",
Biometrika 48, 419–426.
Lin, J. (1991), "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._warnings import RepsimWarning
from ..errors import DataError, MetricParameterError, ShapeMismatchError
from .contract import Cell, CellBlock, LayerContext, StateCost
from .registry import MetricInfo, Param, register

Float64 = NDArray[np.float64]

CITATION = "Schütt 2024/2025, 'Bayesian comparisons between representations' (arXiv:2411.08739)"
CENTERS = ("none", "units", "stimuli")
DEFAULT_B = 0.01
DEFAULT_SAMPLES = 100_000
# cond(Σ') ≤ 1 + 1/b: a larger bound makes the whitening lose more than 8 of float64's 16 digits.
MAX_CONDITION = 1e8
MIN_B = 1.0 / (MAX_CONDITION - 1.0)
MIN_A = 1e-6  # METRICS §9 B3: a → 0 is the only ill-conditioned regime
# A kernel may be indefinite by this fraction of tr K (float32-accumulated Grams), not more.
PSD_RTOL = 1e-6
# Shifts |λ − 1| below this many ulps of the bound 1 + 1/b on cond(Σ') are round-off (measured:
# at most 0.4 ulps for scaled and rotated copies of a layer, n = 20 to 1000).
SNAP_ULPS = 1024.0
# Imhof's integral is accepted when the two tail probabilities' error estimates sum to at most this.
TV_ABS_TOL = 1e-9
FALLBACK_SAMPLES = 100_000
LN2 = math.log(2.0)


# ------------------------------------------------------------------------------------------- params

def _check_b(b: float, prefix: str) -> None:
    if not (math.isfinite(b) and b > 0):
        raise MetricParameterError(f"{prefix}b={b!r} must be a positive finite number")
    if b < MIN_B:
        raise MetricParameterError(
            f"{prefix}b={b:g} makes Σ' = I + K/(b·tr K) ill-conditioned (condition "
            f"number up to {1 + 1 / b:.3g}, limit {MAX_CONDITION:.0e}); use b ≥ {MIN_B:.3g}"
        )


def _check_a(a: float, prefix: str) -> None:
    if not (0.0 < a <= 1.0):
        raise MetricParameterError(f"{prefix}a={a!r} (the noise fraction) must be in (0, 1]")
    if a < MIN_A:
        raise MetricParameterError(
            f"{prefix}a={a:g} makes Σ' ill-conditioned (the noise no longer bounds "
            f"its smallest eigenvalue); use a ≥ {MIN_A:g}"
        )


def _check_params(params: dict[str, Any], prefix: str = "") -> None:
    """Check the parameters and fill in b = 0.01 when neither a nor b is given."""
    a, b = params.get("a"), params.get("b")
    if a is not None and b is not None:
        raise MetricParameterError(
            f"{prefix}give either b= (signal budget) or a= (noise fraction), not both"
        )
    if a is not None:
        _check_a(float(a), prefix)
    else:
        params["b"] = DEFAULT_B if b is None else b
        _check_b(float(params["b"]), prefix)
    if "samples" in params and params["samples"] < 100:
        raise MetricParameterError(f"{prefix}samples={params['samples']} is too few (at least 100)")
    if "seed" in params and params["seed"] < 0:
        raise MetricParameterError(f"{prefix}seed={params['seed']} must be ≥ 0")


def _validator(metric: str) -> Callable[[dict[str, Any]], None]:
    def validate(params: dict[str, Any]) -> None:
        _check_params(params, f"metric {metric!r}: ")

    return validate


def resolve_b(n: int, b: float | None = None, a: float | None = None) -> float:
    """The signal budget b of Σ' = I + K/(b·tr K) for n stimuli, from ``b`` or the noise fraction.

    Parameters
    ----------
    n : int
        Number of stimuli.
    b : float, optional
        Signal budget per stimulus set (default 0.01 when ``a`` is not given).
    a : float, optional
        Noise fraction of each stimulus's predictive variance, in (0, 1]; b = a / ((1 − a)·n).
        ``a = 1`` gives b = ∞ (pure noise: every distance is 0).

    Returns
    -------
    float
        b > 0 (possibly ``inf``). Raises :class:`MetricParameterError` when both are given or when
        the implied Σ' would be ill-conditioned (1 + 1/b > 1e8).

    References
    ----------
    METRICS §9 B1–B3; Schuett-lab/BayesCompare ``cov_utils.cov_sigma`` (a = n·b / (1 + n·b)).
    """
    params: dict[str, Any] = {"a": a, "b": b}
    _check_params(params)
    if a is None:
        return float(params["b"])
    if a == 1.0:
        return math.inf
    implied = a / ((1.0 - a) * n)
    if implied < MIN_B:
        raise MetricParameterError(
            f"a={a:g} with n={n} stimuli gives b={implied:.3g}: Σ' = I + K/(b·tr K) would have a "
            f"condition number up to {1 + 1 / implied:.3g} (limit {MAX_CONDITION:.0e}); "
            "use a larger a"
        )
    return implied


# ------------------------------------------------------------------------------------------- layers
def linear_kernel(x: ArrayLike, center: str = "none") -> Float64:
    """The linear kernel K = X Xᵀ of activations X (n, p), float64 (n, n).

    ``center="none"`` uses the raw activations (the reference's default); ``"units"`` centres each
    unit (column) over the stimuli first; ``"stimuli"`` centres each stimulus (row) over its units
    (the paper-era reference). Higher-dimensional X is flattened to (n, −1).

    References
    ----------
    METRICS §9 B1 (centring); Schuett-lab/BayesCompare ``get_cov``.
    """
    a = np.asarray(x, dtype=np.float64)
    a = a.reshape(a.shape[0], -1)
    if center == "units":
        a = a - a.mean(axis=0)
    elif center == "stimuli":
        a = a - a.mean(axis=1, keepdims=True)
    elif center != "none":
        raise MetricParameterError(f"center={center!r} is not one of {', '.join(CENTERS)}")
    return a @ a.T


@dataclass(frozen=True)
class ReadoutLayer:
    """One layer's prior predictive: Σ' = I + scale·K with its inverse Cholesky factor.

    ``kernel`` is the layer's (n, n) float64 kernel K (never modified), ``scale`` is 1/(b·tr K),
    and ``chol_inv`` is L⁻¹ (lower triangular, (n, n) float64, Fortran order) with Σ' = L Lᵀ.
    """

    kernel: Float64
    scale: float
    trace: float
    chol_inv: Float64
    label: str

    @property
    def n(self) -> int:
        return int(self.chol_inv.shape[0])

    def load_kernel(self) -> Float64:
        """The layer's kernel K (n, n) float64."""
        return self.kernel


def readout_layer(
    kernel: ArrayLike,
    b: float,
    label: str = "kernel",
    check_psd: bool = True,
) -> ReadoutLayer:
    """Check a kernel and factor its Σ' = I + K/(b·tr K) (the per-layer work, O(n³)).

    Parameters
    ----------
    kernel : array_like, (n, n)
        A symmetric positive semi-definite kernel (any float dtype; used in float64). Asymmetry
        at round-off level is tolerated (the pair computation symmetrises); more is an error.
    b : float
        Signal budget (> 0, may be ``inf``).
    label : str
        Names the layer in error messages.
    check_psd : bool
        Check that K is positive semi-definite up to PSD_RTOL·tr K (one more Cholesky, n³/3);
        the engine's kernels are X Xᵀ by construction and skip it.

    Returns
    -------
    ReadoutLayer
        Raises :class:`DataError` for a non-square, non-finite, asymmetric or indefinite kernel,
        and for tr K = 0 (a dead layer: the trace normalisation is undefined).

    References
    ----------
    METRICS §9 B3 steps 1–2.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise DataError(f"{label}: a kernel must be a square (n, n) matrix, got shape {k.shape}")
    if not np.isfinite(k).all():
        raise DataError(f"{label}: kernel contains NaN or Inf values")
    if not np.allclose(k, k.T, rtol=1e-10, atol=1e-12 * float(np.abs(k).max())):
        raise DataError(f"{label}: kernel is not symmetric")
    trace = float(np.trace(k))
    if not trace > 0:
        raise DataError(
            f"{label}: tr K = {trace:g} (all activations zero?); the Bayesian readout distances "
            "need a kernel with positive trace"
        )
    n = k.shape[0]
    if check_psd:
        _check_positive_semidefinite(k, trace, label)
    scale = 0.0 if math.isinf(b) else 1.0 / (b * trace)
    sigma = scale * k
    sigma[np.diag_indices(n)] += 1.0
    chol = np.linalg.cholesky(sigma)
    del sigma
    import scipy.linalg  # deferred: scipy.linalg costs 0.2 s at start-up
    chol_inv, info = scipy.linalg.lapack.dtrtri(chol, lower=1)
    if info != 0:  # cannot happen for Σ' ≥ I; kept so that a failure is never silent
        raise DataError(f"{label}: Cholesky factor of Σ' is singular")
    # dtrtri leaves the zero upper triangle of ``chol`` as it is and returns Fortran order, the
    # layout dtrmm wants: no copy per pair
    return ReadoutLayer(k, scale, trace, chol_inv, label)


def _check_positive_semidefinite(k: Float64, trace: float, label: str) -> None:
    try:  # Cholesky reads the lower triangle only
        np.linalg.cholesky(k + (PSD_RTOL * trace) * np.eye(k.shape[0]))
    except np.linalg.LinAlgError:
        raise DataError(
            f"{label}: kernel is not positive semi-definite (an eigenvalue below "
            f"−{PSD_RTOL:g}·tr K)"
        ) from None


def _snap_tolerance(layer: ReadoutLayer) -> float:
    """Round-off level of the shifts μ: SNAP_ULPS ulps of the bound 1 + ‖K̂‖ on cond(Σ')."""
    return SNAP_ULPS * float(np.finfo(np.float64).eps) * (1.0 + layer.scale * layer.trace)


def spectral_shifts(layer_a: ReadoutLayer, layer_b: ReadoutLayer) -> Float64:
    """Shifts μ = λ − 1 of the generalised eigenvalues of a pair, in canonical order.

    Per pair: D = Σ'_b − Σ'_a, two triangular multiplies M = L⁻¹ D L⁻ᵀ and ``eigvalsh`` (O(n³)).
    The pair is put in a canonical order first (by the sign of the first non-zero entry of D), so
    that swapping the layers gives bitwise the same result. The shifts are therefore those of
    (Σ'_b, Σ'_a) or of (Σ'_a, Σ'_b) (λ ↔ 1/λ), which every symmetric distance here treats alike;
    :func:`readout_eigenvalues` gives the directed ones.

    Returns
    -------
    ndarray, (m,) float64
        The m ≤ n shifts with |μ| above round-off, ordered by |log λ| descending (the order the
        Monte Carlo estimator assigns random numbers in). λ is 1 in the other n − m directions.

    References
    ----------
    METRICS §9 B3 step 3 (option 1, in shifted form).
    """
    return _canonical_shifts(layer_a, layer_b)[0]


def _canonical_shifts(layer_a: ReadoutLayer, layer_b: ReadoutLayer) -> tuple[Float64, bool]:
    """The shifts and whether the pair was swapped into canonical order."""
    if layer_a.n != layer_b.n:
        raise ShapeMismatchError(
            f"{layer_b.label}: {layer_b.n} stimuli, but {layer_a.label} has {layer_a.n}; the two "
            "kernels must cover the same stimuli"
        )
    diff = layer_b.scale * layer_b.load_kernel() - layer_a.scale * layer_a.load_kernel()
    # Exactly symmetric afterwards (a no-op for symmetric kernels), and exactly negated by a swap.
    diff = diff + diff.T
    diff *= 0.5
    nonzero = np.flatnonzero(diff)
    if nonzero.size == 0:
        return np.zeros(0), False
    first = layer_a
    swapped = bool(diff.flat[nonzero[0]] < 0)
    if swapped:  # canonical order: x − y = −(y − x) exactly in IEEE arithmetic
        first = layer_b
        np.negative(diff, out=diff)
    diff = diff.T  # the Fortran-order view of the same symmetric matrix: no copy
    import scipy.linalg  # deferred: scipy.linalg costs 0.2 s at start-up
    from scipy.linalg.blas import dtrmm  # deferred: scipy.linalg costs 0.2 s at start-up
    half = dtrmm(1.0, first.chol_inv, diff, side=0, lower=1, overwrite_b=1)
    whitened = dtrmm(1.0, first.chol_inv, half, side=1, lower=1, trans_a=1, overwrite_b=1)
    del diff, half
    mu = scipy.linalg.eigh(whitened, eigvals_only=True, lower=True, overwrite_a=True, driver="evd")
    tol = max(_snap_tolerance(layer_a), _snap_tolerance(layer_b))
    return order_shifts(mu[np.abs(mu) > tol]), swapped


def order_shifts(mu: ArrayLike) -> Float64:
    """Drop zero shifts, clip to λ > 0 and order by |log λ| descending (stable), float64 (m,)."""
    m = np.asarray(mu, dtype=np.float64).ravel()
    m = np.maximum(m[m != 0.0], np.nextafter(-1.0, 0.0))
    order = np.argsort(-np.abs(np.log1p(m)), kind="stable")
    return np.asarray(m[order], dtype=np.float64)


def readout_eigenvalues(
    kernel_a: ArrayLike, kernel_b: ArrayLike, b: float | None = None, a: float | None = None
) -> Float64:
    """Generalised eigenvalues λ of (Σ'_b, Σ'_a), Σ'_k = I + K_k/(b·tr K_k); (n,) float64, sorted.

    λ lies in [1/(1 + 1/b), 1 + 1/b]; round-off-level departures from 1 are set to exactly 1.
    Every distance of this module is a function of λ alone (see the ``*_from_eigenvalues``
    functions). Kernels of different sizes raise :class:`ShapeMismatchError`.

    References
    ----------
    METRICS §9 B3.
    """
    ka = np.asarray(kernel_a, dtype=np.float64)
    kb = np.asarray(kernel_b, dtype=np.float64)
    if ka.shape != kb.shape:
        raise ShapeMismatchError(f"kernels differ in shape: {ka.shape} vs {kb.shape}")
    bb = resolve_b(ka.shape[0], b, a)
    mu, swapped = _canonical_shifts(
        readout_layer(ka, bb, "kernel_a"), readout_layer(kb, bb, "kernel_b")
    )
    if swapped:  # the shifts of (Σ'_a, Σ'_b): 1/λ − 1 = −μ/(1 + μ)
        mu = -mu / (1.0 + mu)
    lam = np.ones(ka.shape[0])
    lam[: mu.size] = 1.0 + mu
    return np.sort(lam)


def _shifts_of(lam: ArrayLike) -> Float64:
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.size and not (np.isfinite(lam).all() and lam.min() > 0):
        raise DataError("generalised eigenvalues must be finite and positive")
    return order_shifts(lam - 1.0)


# ------------------------------------------------------------------------------------- closed forms
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
    METRICS §9 B3 step 4.
    """
    return _kl_pair(_shifts_of(lam))


def symmetric_kl(lam: ArrayLike) -> float:
    """Symmetrised KL (KL_ab + KL_ba)/2 = ¼Σ(λ − 1)²/λ in nats, in [0, ∞) (the reference ``kldiv``).

    References
    ----------
    METRICS §9 B2 (``kldiv``) and B3 step 4.
    """
    return _symmetric_kl(_shifts_of(lam))


def bhattacharyya_distance(lam: ArrayLike) -> float:
    """Bhattacharyya distance D_B = ½Σ log((1 + λ)/(2√λ)) in nats, in [0, ∞).

    References
    ----------
    METRICS §9 B3 step 4.
    """
    return _bhattacharyya(_shifts_of(lam))


def hellinger_from_eigenvalues(lam: ArrayLike) -> float:
    """Hellinger distance H = √(1 − e^{−D_B}), in [0, 1], from the eigenvalues λ.

    References
    ----------
    METRICS §9 B3 step 4; Schuett-lab/BayesCompare ``hellinger``.
    """
    return _hellinger(_shifts_of(lam))


# -------------------------------------------------------------------------------------------- Imhof
def _quad(
    fn: Callable[[float], float], lo: float, hi: float, **kw: Any
) -> tuple[float, float, bool]:
    from scipy.integrate import IntegrationWarning, quad  # lazy: scipy.integrate is slow to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        out = quad(fn, lo, hi, full_output=1, epsabs=1e-11, **kw)
    ok = len(out) == 3  # a fourth element is quad's message: it did not converge
    return float(out[0]), float(out[1]), ok and math.isfinite(out[0])


def imhof_tail(weights: ArrayLike, threshold: float) -> tuple[float, float, bool]:
    """Pr[Σ wᵢ zᵢ² > t] for iid standard normal zᵢ, by Imhof's integral.

    Pr = ½ + (1/π) ∫₀^∞ sin θ(u) / (u ρ(u)) du, θ(u) = ½Σ arctan(wᵢu) − ½tu,
    ρ(u) = Π(1 + wᵢ²u²)^{1/4} (evaluated in log space). The weights are scaled to max |wᵢ| = 1;
    [0, 1] is integrated with ``quad`` (QAGS), and [1, ∞) as two Fourier integrals (QAWF) of the
    slowly varying amplitudes sin(φ)/(uρ) and cos(φ)/(uρ), φ = ½Σ arctan(wᵢu), so that the
    oscillation −½tu costs nothing even when few weights make the integrand decay slowly.

    Parameters
    ----------
    weights : array_like, (m,)
        Non-zero real weights (zeros are dropped).
    threshold : float
        t.

    Returns
    -------
    (probability, error estimate, converged)
        The probability (not clipped), quad's absolute error estimate, and whether every piece
        converged.

    References
    ----------
    Imhof (1961), Biometrika 48, eq. 3.2; METRICS §9 B3 step 5.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    w = w[w != 0.0]
    if w.size == 0:
        return (1.0 if threshold < 0 else 0.0), 0.0, True
    scale = float(np.abs(w).max())
    w = w / scale
    t = float(threshold) / scale

    def phase_envelope(u: float) -> tuple[float, float]:
        """φ(u) = ½Σ arctan(wᵢu) and 1/(u ρ(u)), ρ in log space."""
        wu = w * u
        log_rho = 0.25 * float(np.log1p(wu * wu).sum())
        return 0.5 * float(np.arctan(wu).sum()), math.exp(-log_rho) / u

    def integrand(u: float) -> float:
        if u == 0.0:
            return 0.5 * (float(w.sum()) - t)
        phase, envelope = phase_envelope(u)
        return math.sin(phase - 0.5 * t * u) * envelope

    def sin_amplitude(u: float) -> float:
        phase, envelope = phase_envelope(u)
        return math.sin(phase) * envelope

    def cos_amplitude(u: float) -> float:
        phase, envelope = phase_envelope(u)
        return math.cos(phase) * envelope

    omega = 0.5 * abs(t)
    # The Fourier integrals need amplitudes that change little over a cycle: integrate the first
    # 50 cycles directly (a breakpoint per decade, where the smaller weights switch on at
    # u ≈ 1/|wᵢ|). Without oscillation (or one too slow to matter: the envelope is below
    # u^{-3/2} and ∫ u^{-3/2} beyond 1e29 is < 1e-14) the direct integral runs to ∞.
    fourier_start = 100.0 * math.pi / omega if omega > 0 else math.inf
    if fourier_start > 1e29:
        fourier_start = math.inf
    knee = max(1.0, min(fourier_start, 10.0 / float(np.abs(w).min())))
    direct_end = knee if math.isinf(fourier_start) else max(1.0, fourier_start)
    decades = [10.0**k for k in range(1, math.ceil(math.log10(direct_end)))]
    parts = [_quad(integrand, 0.0, 1.0, epsrel=1e-10, limit=500)]
    if direct_end > 1.0:
        parts.append(
            _quad(integrand, 1.0, direct_end, epsrel=1e-10, limit=500, points=decades or None)
        )
    if math.isinf(fourier_start):
        parts.append(_quad(integrand, direct_end, math.inf, epsrel=1e-10, limit=500))
    else:
        # sin(φ − ½tu) = sin φ·cos(ωu) − sign(t)·cos φ·sin(ωu)
        sign = 1.0 if t > 0 else -1.0
        fourier = {"wvar": omega, "limlst": 200, "limit": 500}
        parts.append(_quad(sin_amplitude, direct_end, math.inf, weight="cos", **fourier))
        cos_part = _quad(cos_amplitude, direct_end, math.inf, weight="sin", **fourier)
        parts.append((-sign * cos_part[0], cos_part[1], cos_part[2]))
    total = sum(p[0] for p in parts)
    total_err = sum(p[1] for p in parts)
    converged = all(p[2] for p in parts)
    return 0.5 + total / math.pi, total_err / math.pi, converged


def _tv_imhof(mu: Float64) -> tuple[float, float, bool]:
    """TV = P_a(A) − P_b(A), A = {p_a > p_b}: two generalised chi-square tails (METRICS §9 B3.5)."""
    threshold = -float(np.sum(np.log1p(mu)))
    p_a, err_a, ok_a = imhof_tail(-mu / (1.0 + mu), threshold)  # weights 1/λ − 1 under P_a
    p_b, err_b, ok_b = imhof_tail(-mu, threshold)  # weights 1 − λ under P_b
    err = err_a + err_b
    return p_a - p_b, err, ok_a and ok_b and err <= TV_ABS_TOL


def _total_variation(mu: Float64, n: int, label: str = "") -> float:
    if mu.size == 0:
        return 0.0
    tv, err, ok = _tv_imhof(mu)
    if not ok:
        est = monte_carlo([mu], n, FALLBACK_SAMPLES, seed=0, total_variation=True)
        tv = float(est.tv[0])
        warnings.warn(
            f"{label + ': ' if label else ''}Imhof's integral for the total variation did not "
            f"converge (error estimate {err:.2g}); using a Monte Carlo estimate from "
            f"{FALLBACK_SAMPLES} samples (standard error {est.tv_std_error[0]:.2g})",
            RepsimWarning,
            stacklevel=3,
        )
    return min(max(tv, 0.0), 1.0)


def tv_from_eigenvalues(
    lam: ArrayLike, method: str = "imhof", samples: int = FALLBACK_SAMPLES, seed: int = 0
) -> float:
    """Total variation distance between N(0, I) and N(0, diag λ), in [0, 1].

    ``method="imhof"`` (exact up to ~1e-10; falls back to Monte Carlo with a
    :class:`RepsimWarning` when the integral does not converge) or ``"monte_carlo"`` (the
    eigenbasis estimator with ``samples`` and ``seed``; see :func:`monte_carlo`).

    References
    ----------
    METRICS §9 B3 steps 5–6; Imhof (1961).
    """
    mu = _shifts_of(lam)
    n = max(1, np.asarray(lam).size)
    if method == "imhof":
        return _total_variation(mu, n)
    if method != "monte_carlo":
        raise ValueError(f"method must be 'imhof' or 'monte_carlo', not {method!r}")
    if mu.size == 0:
        return 0.0
    return float(np.clip(monte_carlo([mu], n, samples, seed, total_variation=True).tv[0], 0, 1))


# -------------------------------------------------------------------------------------- Monte Carlo
@dataclass(frozen=True)
class MonteCarloEstimate:
    """Eigenbasis Monte Carlo estimates for P pairs, each (P,) float64.

    ``js_bits`` is the raw (unclipped) JS divergence in bits, ``js_bits_std_error`` its standard
    error; ``tv``/``tv_std_error`` the TV estimate when it was asked for (else NaN).
    """

    js_bits: Float64
    js_bits_std_error: Float64
    tv: Float64
    tv_std_error: Float64

    @property
    def js_distance(self) -> Float64:
        """√(JS_bits) clipped to [0, 1]."""
        return np.sqrt(np.clip(self.js_bits, 0.0, 1.0))

    @property
    def js_distance_std_error(self) -> Float64:
        """Delta-method error SE_bits/(2√JS_bits), capped at √SE_bits (its value where JS ≈ 0)."""
        d = self.js_distance
        se = self.js_bits_std_error
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(d > 0, se / (2.0 * d), np.inf)
        return np.asarray(np.minimum(delta, np.sqrt(se)), dtype=np.float64)


def chunk_samples(n: int) -> int:
    """Samples per Monte Carlo chunk for n stimuli (≈ 32 MB of normals). It depends on n only, so
    every pair of a comparison, and the in-memory functions, draw the same random numbers."""
    return int(min(4096, max(256, 2**22 // max(n, 1))))


def monte_carlo(
    shifts: Sequence[Float64], n: int, samples: int, seed: int, total_variation: bool = False
) -> MonteCarloEstimate:
    """JS (and optionally TV) of P pairs by Monte Carlo in the eigenbasis, common random numbers.

    For one pair with shifts μ (λ = 1 + μ) and z ~ N(0, I), the log ratios are
    R = log p_a/p_b (x = z under P_a) = ½[Σ(1/λ − 1)z² + Σ log λ] and
    R' = log p_b/p_a (x = √λ·z under P_b) = ½[Σ(λ − 1)z² − Σ log λ]. Each sample gives
    f = ½softplus(−R) + ½softplus(−R'), and JS_nats = ln 2 − E f;
    TV = E ½[(1 − e^{−R})₊ + (1 − e^{−R'})₊].
    Both halves use the same z, so swapping the layers (λ → 1/λ) swaps the halves exactly.

    The normals come in chunks of :func:`chunk_samples` (n) samples; chunk c is drawn from
    ``default_rng([seed, c])`` as an (m_max, r) array, so direction i (in the |log λ| order of
    :func:`order_shifts`) always receives the same numbers whatever m_max and the set of pairs.
    Cost O(m·S) per pair plus one shared draw; memory O(m·r).

    Parameters
    ----------
    shifts : sequence of (m_k,) float64 arrays
        Non-zero shifts per pair, ordered by :func:`order_shifts`.
    n : int
        Number of stimuli (sets the chunk size).
    samples, seed : int
        Monte Carlo sample count S ≥ 2 and seed.
    total_variation : bool
        Also estimate TV (the fallback for Imhof's integral and a cross-check).

    Returns
    -------
    MonteCarloEstimate

    References
    ----------
    METRICS §9 B3 step 6; Schuett-lab/BayesCompare ``_jsd`` / ``_tvd`` (which sample in the original
    basis at O(n²) per sample, unseeded).
    """
    pairs = len(shifts)
    m_max = max((s.size for s in shifts), default=0)
    # per pair, columns 1/λ − 1 (the quadratic form under P_a) and λ − 1 (under P_b)
    weights = [np.stack([-mu / (1.0 + mu), mu]) for mu in shifts]
    half_logdet = np.array([[0.5 * float(np.sum(np.log1p(mu)))] for mu in shifts])
    js = _RunningMoments(pairs)
    tv = _RunningMoments(pairs)
    rows = chunk_samples(n)
    for c, start in enumerate(range(0, samples, rows)):
        r = min(rows, samples - start)
        squares = np.random.default_rng([seed, c]).standard_normal((m_max, r))
        np.square(squares, out=squares)
        # One small GEMM per pair on the leading rows (a contiguous block), and reductions along
        # contiguous rows: a pair's value is bitwise the same whichever pairs share the call
        # (shards, resumed runs).
        quad_forms = np.empty((2, pairs, r))
        for k, w in enumerate(weights):
            quad_forms[:, k] = w @ squares[: w.shape[1]]
        log_ratio_a = 0.5 * quad_forms[0] + half_logdet  # (P, r)
        log_ratio_b = 0.5 * quad_forms[1] - half_logdet
        js.add(0.5 * (np.logaddexp(0.0, -log_ratio_a) + np.logaddexp(0.0, -log_ratio_b)))
        if total_variation:
            tv.add(
                0.5
                * (
                    -np.expm1(-np.maximum(log_ratio_a, 0.0))
                    - np.expm1(-np.maximum(log_ratio_b, 0.0))
                )
            )
    mean_f, se_f = js.result()
    tv_mean, tv_se = tv.result() if total_variation else (np.full(pairs, np.nan),) * 2
    return MonteCarloEstimate((LN2 - mean_f) / LN2, se_f / LN2, tv_mean, tv_se)


class _RunningMoments:
    """Per-pair mean and M2 over sample chunks (Chan et al.'s pairwise combination)."""

    def __init__(self, columns: int):
        self.count = 0
        self.mean = np.zeros(columns)
        self.m2 = np.zeros(columns)

    def add(self, values: Float64) -> None:
        """Fold in a (columns, k) chunk (reduced along its contiguous rows)."""
        k = values.shape[1]
        mean = values.mean(axis=1)
        m2 = np.sum((values - mean[:, None]) ** 2, axis=1)
        total = self.count + k
        delta = mean - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * k / total)
        self.count = total

    def result(self) -> tuple[Float64, Float64]:
        var = self.m2 / max(self.count - 1, 1)
        return self.mean, np.sqrt(var / max(self.count, 1))


@dataclass(frozen=True)
class JSEstimate:
    """One pair's JS estimate: the distance √JS_bits and its standard error, and the raw bits."""

    distance: float
    std_error: float
    bits: float
    bits_std_error: float


def js_from_eigenvalues(
    lam: ArrayLike, samples: int = DEFAULT_SAMPLES, seed: int = 0
) -> JSEstimate:
    """Jensen–Shannon distance √(JS in bits) between N(0, I) and N(0, diag λ), in [0, 1].

    Monte Carlo in the eigenbasis (:func:`monte_carlo`, chunk size from n = len(λ)); the estimate
    is unbiased in bits, and clipped to [0, 1] before the square root.

    References
    ----------
    METRICS §9 B2–B3 step 6; Lin (1991).
    """
    mu = _shifts_of(lam)
    return _js(mu, max(1, np.asarray(lam).size), samples, seed)


def _js(mu: Float64, n: int, samples: int, seed: int) -> JSEstimate:
    if mu.size == 0:
        return JSEstimate(0.0, 0.0, 0.0, 0.0)
    est = monte_carlo([mu], n, samples, seed)
    return JSEstimate(
        float(est.js_distance[0]),
        float(est.js_distance_std_error[0]),
        float(est.js_bits[0]),
        float(est.js_bits_std_error[0]),
    )


# ---------------------------------------------------------------------------------------- in memory
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
    Schütt (2024/2025), arXiv:2411.08739; METRICS §9.
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
    Schütt (2024/2025), arXiv:2411.08739; METRICS §9 B2–B3.
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
    Schütt (2024/2025), arXiv:2411.08739; Lin (1991); METRICS §9 B2.
    """
    return bayes_js_estimate(x, y, b, a, center, samples, seed).distance


def bayes_kl_divergence(
    x: ArrayLike, y: ArrayLike, b: float | None = None, a: float | None = None, center: str = "none"
) -> float:
    """Symmetrised KL divergence (KL_ab + KL_ba)/2 in nats, in [0, ∞), of X (n, p) and Y (n, q).

    Matches the reference's ``kldiv`` (the mean of the two KLs, not their sum).

    References
    ----------
    Schuett-lab/BayesCompare ``kldiv``; METRICS §9 B2.
    """
    mu, _ = _dense_shifts(x, y, b, a, center)
    return _symmetric_kl(mu)


def bayes_hellinger_distance(
    x: ArrayLike, y: ArrayLike, b: float | None = None, a: float | None = None, center: str = "none"
) -> float:
    """Hellinger distance √(1 − e^{−D_B}) of the readout prior predictives, in [0, 1].

    References
    ----------
    Schuett-lab/BayesCompare ``hellinger``; METRICS §9 B2–B3.
    """
    mu, _ = _dense_shifts(x, y, b, a, center)
    return _hellinger(mu)


# -------------------------------------------------------------------------------------- two stages
def prepare_readout(layer: LayerContext, params: Mapping[str, Any]) -> ReadoutLayer:
    """The per-layer stage: the layer's kernel (centred as ``params["center"]``) and the inverse
    Cholesky factor of its Σ' (O(n³))."""
    b = resolve_b(layer.n, params.get("b"), params.get("a"))
    kernel = layer.gram(params["center"])
    return readout_layer(kernel, b, layer.label, check_psd=False)


def _pair_shifts(a: ReadoutLayer, b: ReadoutLayer) -> Float64:
    return np.zeros(0) if a is b else spectral_shifts(a, b)


def tv_pair(a: ReadoutLayer, b: ReadoutLayer, params: Mapping[str, Any]) -> Cell:
    """``bayes_tv`` of two layer states (exact, Imhof's integral)."""
    return Cell(_total_variation(_pair_shifts(a, b), a.n, f"{a.label} vs {b.label}"))


def kl_pair(a: ReadoutLayer, b: ReadoutLayer, params: Mapping[str, Any]) -> Cell:
    """``bayes_kl`` of two layer states."""
    return Cell(_symmetric_kl(_pair_shifts(a, b)))


def hellinger_pair(a: ReadoutLayer, b: ReadoutLayer, params: Mapping[str, Any]) -> Cell:
    """``bayes_hellinger`` of two layer states."""
    return Cell(_hellinger(_pair_shifts(a, b)))


def js_block(
    states_a: Sequence[ReadoutLayer], states_b: Sequence[ReadoutLayer], params: Mapping[str, Any]
) -> CellBlock:
    """``bayes_js`` for a block: one Monte Carlo pass serves every pair (common random numbers;
    each pair's value is bitwise the same whichever pairs share the pass)."""
    shifts = [_pair_shifts(a, b) for a in states_a for b in states_b]
    n = states_a[0].n
    est = monte_carlo(shifts, n, int(params["samples"]), int(params["seed"]))
    empty = np.array([s.size == 0 for s in shifts])
    shape = (len(states_a), len(states_b))
    value = np.where(empty, 0.0, est.js_distance).reshape(shape)
    error = np.where(empty, 0.0, est.js_distance_std_error).reshape(shape)
    return CellBlock(value, error)


def js_pair(a: ReadoutLayer, b: ReadoutLayer, params: Mapping[str, Any]) -> Cell:
    """``bayes_js`` of two layer states, with its Monte Carlo standard error."""
    block = js_block([a], [b], params)
    assert block.std_error is not None
    return Cell(float(block.value[0, 0]), float(block.std_error[0, 0]))


def _invariances(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The kernel is trace-normalised (isotropic scaling drops out); centring across units makes it
    translation invariant; centring each stimulus across units depends on the unit basis."""
    center = params["center"]
    if center == "stimuli":
        return ("isotropic_scaling", "permutation")
    if center == "units":
        return ("orthogonal", "isotropic_scaling", "translation", "permutation")
    return ("orthogonal", "isotropic_scaling", "permutation")


def _state_cost(n: int, width: int, side: str, params: Mapping[str, Any]) -> StateCost:
    """The kernel and L⁻¹ (n×n each); Cholesky and its inverse (n³/3 each)."""
    return StateCost(bytes=16.0 * n * n, flops=(2.0 / 3.0) * float(n) ** 3)


def _cost(js: bool) -> Callable[[int, int, int, Mapping[str, Any]], float]:
    def cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
        # per layer: Cholesky and its inverse (n³/3 each); per pair: two triangular multiplies
        # (n³ each) and the tridiagonal reduction of eigvalsh (4n³/3)
        flops = n_layers * (2.0 / 3.0) * float(n) ** 3 + n_pairs * (10.0 / 3.0) * float(n) ** 3
        if js:
            samples = float(params.get("samples", DEFAULT_SAMPLES))
            flops += samples * n * (10.0 + 4.0 * n_pairs)
        return flops

    return cost


_COMMON_PARAMS = (
    Param(
        "b",
        None,
        float,
        doc="signal budget: Σ' = I + K/(b·tr K)",
        shown="default 0.01 unless a is given",
    ),
    Param(
        "a",
        None,
        float,
        doc="noise fraction, b = a/((1 − a)·n)",
        shown="noise fraction in (0, 1]; instead of b",
    ),
    Param("center", "none", str, CENTERS, doc="kernel centring (none: raw X Xᵀ)"),
)
_JS_PARAMS = (
    Param("samples", DEFAULT_SAMPLES, int, doc="Monte Carlo samples"),
    Param("seed", 0, int, doc="random seed (common random numbers across pairs)"),
)


def _register(
    name: str,
    summary: str,
    pair: Any,
    *,
    block: Any = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    range_text: str = "[0, 1]",
    js: bool = False,
) -> None:
    register(
        MetricInfo(
            name=name,
            kind="distance",
            symmetric=True,
            bounds=bounds,
            params=_COMMON_PARAMS + (_JS_PARAMS if js else ()),
            citation=CITATION,
            summary=summary,
            sides=("sample",),
            prepare=prepare_readout,
            pair=pair,
            block=block,
            state_cost=_state_cost,
            state_key=lambda params: ("readout", params["center"], repr(params.get("b")),
                                      repr(params.get("a"))),
            identity=0.0,
            identity_exact=True,
            invariances_for=_invariances,
            validate=_validator(name),
            range_text=range_text,
            # per layer: L⁻¹, and the engine's rebuilt kernel for center=none|stimuli
            layer_cache_grams=2.0,
            cost=_cost(js),
        )
    )


_register(
    "bayes_tv",
    "total variation of linear-readout prior predictives (exact)",
    tv_pair,
)
_register(
    "bayes_js",
    "√(JS divergence, bits) of linear-readout prior predictives (Monte Carlo)",
    js_pair,
    block=js_block,
    range_text="[0, 1] ± standard error",
    js=True,
)
_register(
    "bayes_kl",
    "symmetrised KL divergence of linear-readout prior predictives",
    kl_pair,
    bounds=(0.0, math.inf),
    range_text="[0, ∞) nats",
)
_register(
    "bayes_hellinger",
    "Hellinger distance of linear-readout prior predictives",
    hellinger_pair,
)
