"""The coverage simulation the bootstrap interval tests share: Gaussian data sets with a known
population linear CKA, and the binomial acceptance band of a coverage rate."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats as sps

TRIALS = 300
N = 100


def data_sets(seed: int = 123) -> tuple[float, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(population linear CKA, TRIALS data sets (x, y) of N examples): x ~ N(0, Σx) in 3
    dimensions, y = Ax + e with e ~ N(0, I), so the population CKA is
    ‖Σxy‖²_F / (‖Σxx‖_F ‖Σyy‖_F) with Σxy = ΣxAᵀ, Σyy = AΣxAᵀ + I."""
    a = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]])
    sx = np.diag([3.0, 1.0, 0.5])
    syy, sxy = a @ sx @ a.T + np.eye(3), sx @ a.T
    population = float(np.sum(sxy**2) / np.sqrt(np.sum(sx**2) * np.sum(syy**2)))

    def draws() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        for _ in range(TRIALS):
            x = rng.normal(size=(N, 3)) * np.sqrt(np.diag(sx))
            yield x, x @ a.T + rng.normal(size=(N, 3))

    return population, draws()


def within_band(rate: float, nominal: float = 0.95) -> bool:
    """Whether a coverage rate over TRIALS data sets lies in the binomial 99% band around the
    nominal rate (0.95 over 300: [0.918, 0.982])."""
    half = sps.norm.ppf(0.995) * np.sqrt(nominal * (1 - nominal) / TRIALS)
    return bool(nominal - half <= rate <= nominal + half)
