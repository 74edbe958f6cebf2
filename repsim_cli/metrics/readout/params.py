"""Parameters of the Bayesian readout distances: the signal budget b or the noise fraction a.

Σ' = I + K/(b·tr K) (kernel trace-normalised, noise variance 1) equals the reference's
Σ = (1 − a)·n·K/tr K + a·I up to the factor a both layers share, with a = n·b / (1 + n·b)
(Schütt 2024, arXiv:2411.08739; Schuett-lab/BayesCompare ``cov_utils.cov_sigma``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ...errors import MetricParameterError

CENTERS = ("none", "units", "stimuli")
DEFAULT_B = 0.01
DEFAULT_SAMPLES = 100_000
# cond(Σ') ≤ 1 + 1/b: a larger bound makes the whitening lose more than 8 of float64's 16 digits.
MAX_CONDITION = 1e8
MIN_B = 1.0 / (MAX_CONDITION - 1.0)
# a → 0 (no noise) is the only ill-conditioned regime: the noise bounds Σ's smallest eigenvalue.
MIN_A = 1e-6


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
    Schütt (2024), arXiv:2411.08739; Schuett-lab/BayesCompare ``cov_utils.cov_sigma``
    (a = n·b / (1 + n·b)).
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
