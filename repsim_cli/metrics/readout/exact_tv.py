"""The exact total variation: two generalised chi-square tail probabilities, each from Imhof's
integral (Imhof 1961, Biometrika 48, 419–426), with a Monte Carlo fallback."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..._warnings import RepsimWarning
from .monte_carlo import monte_carlo
from .spectra import _shifts_of

Float64 = NDArray[np.float64]

# Imhof's integral is accepted when the two tail probabilities' error estimates sum to at most this.
TV_ABS_TOL = 1e-9
FALLBACK_SAMPLES = 100_000
# Imhof's integral stops where the rest of it is provably below this (see :func:`tail_bound`).
TAIL_TOL = 1e-14


def _quad(
    fn: Callable[[float], float], lo: float, hi: float, **kw: Any
) -> tuple[float, float, bool]:
    from scipy.integrate import IntegrationWarning, quad  # lazy: scipy.integrate is slow to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        out = quad(fn, lo, hi, full_output=1, epsabs=1e-11, **kw)
    ok = len(out) == 3  # a fourth element is quad's message: it did not converge
    return float(out[0]), float(out[1]), ok and math.isfinite(out[0])


def tail_bound(w: Float64, u: float) -> float:
    """An upper bound on ∫_u^∞ |sin θ(v)| / (v ρ(v)) dv, the rest of Imhof's integral past u > 0.

    With S the weights with |wᵢ|u ≥ 1 (s of them) and cᵢ = wᵢ²u²/(1 + wᵢ²u²) ≥ ½, every v ≥ u has
    1 + wᵢ²v² ≥ (1 + wᵢ²u²)·cᵢ·(v/u)² for i ∈ S and ≥ 1 + wᵢ²u² otherwise, so
    ρ(v) ≥ ρ(u)·Π_S cᵢ^{1/4}·(v/u)^{s/2}, and the integral of 1/(vρ(v)) is at most
    2^{s/4}·(2/s)/ρ(u). Infinite when s = 0.
    """
    wu = w * u
    s = int(np.count_nonzero(np.abs(wu) >= 1.0))
    if s == 0:
        return math.inf
    log_rho = 0.25 * float(np.log1p(wu * wu).sum())
    return math.exp(0.25 * s * math.log(2.0) + math.log(2.0 / s) - log_rho)


def _negligible_from(w: Float64, start: float, limit: float) -> tuple[float, float] | None:
    """The first u = start·2^k ≤ ``limit`` whose :func:`tail_bound` is at most ``TAIL_TOL``, with
    that bound; None when there is none (the integrand decays too slowly to stop early)."""
    u = start
    while u <= limit:
        bound = tail_bound(w, u)
        if bound <= TAIL_TOL:
            return u, bound
        u *= 2.0
    return None


def imhof_tail(weights: ArrayLike, threshold: float) -> tuple[float, float, bool]:
    """Pr[Σ wᵢ zᵢ² > t] for iid standard normal zᵢ, by Imhof's integral.

    Pr = ½ + (1/π) ∫₀^∞ sin θ(u) / (u ρ(u)) du, θ(u) = ½Σ arctan(wᵢu) − ½tu,
    ρ(u) = Π(1 + wᵢ²u²)^{1/4} (evaluated in log space). The weights are scaled to max |wᵢ| = 1;
    [0, 1] is integrated with ``quad`` (QAGS), and [1, ∞) as two Fourier integrals (QAWF) of the
    slowly varying amplitudes sin(φ)/(uρ) and cos(φ)/(uρ), φ = ½Σ arctan(wᵢu), so that the
    oscillation −½tu costs nothing even when few weights make the integrand decay slowly. When
    many weights make it decay fast, the integral stops where :func:`tail_bound` says the rest is
    below 1e-14 (that bound joins the error estimate).

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
    Imhof (1961), Biometrika 48, eq. 3.2.
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
    # Many sizeable weights make ρ grow like a high power of u: the integral is then cut where
    # the rest is provably negligible, with that bound added to the error estimate.
    # (searched up to where the Fourier tail would start, or up to 1e29 when there is none)
    cut = _negligible_from(w, 1.0, direct_end if math.isfinite(fourier_start) else 1e29)
    if cut is not None:
        direct_end = cut[0]
    decades = [10.0**k for k in range(1, math.ceil(math.log10(direct_end)))]
    parts = [_quad(integrand, 0.0, 1.0, epsrel=1e-10, limit=500)]
    if direct_end > 1.0:
        parts.append(
            _quad(integrand, 1.0, direct_end, epsrel=1e-10, limit=500, points=decades or None)
        )
    if cut is not None:
        parts.append((0.0, cut[1], True))
    elif math.isinf(fourier_start):
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
    """TV = P_a(A) − P_b(A), A = {p_a > p_b}: two generalised chi-square tails (Imhof 1961)."""
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
    Imhof (1961); Schütt (2024), arXiv:2411.08739.
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
