"""Hypothesis strategies for activation matrices."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


@st.composite
def activations(
    draw: st.DrawFn, min_n: int = 6, max_n: int = 40, min_p: int = 2, max_p: int = 30,
    n: int | None = None, big_mean: bool | None = None,
) -> np.ndarray:
    """A float64 (n, p) matrix from a seeded Gaussian with random column scales and an optional
    large offset (column means up to 1000× the spread)."""
    n = n if n is not None else draw(st.integers(min_n, max_n))
    p = draw(st.integers(min_p, max_p))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, size=p)
    offset = draw(st.booleans()) if big_mean is None else big_mean
    if offset:
        x = x + 1000.0 * rng.uniform(-1, 1, size=p)
    return x


@st.composite
def orthogonal(draw: st.DrawFn, p: int) -> np.ndarray:
    """A random p×p orthogonal matrix (QR of a Gaussian, sign-fixed)."""
    seed = draw(st.integers(0, 2**32 - 1))
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((p, p)))
    return q * np.sign(np.diag(r))


def pairs(**kw: object) -> st.SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """Two activation matrices with the same n."""
    return st.integers(8, 40).flatmap(
        lambda n: st.tuples(activations(n=n, **kw), activations(n=n, **kw))  # type: ignore[arg-type]
    )


__all__ = ["activations", "arrays", "orthogonal", "pairs"]
