"""Bayesian readout distances (Schütt 2024, arXiv:2411.08739): one pair of kernels at n = 1000 and n = 2000.

Prints, per n:
- per-layer work of repsim's route (trace normalisation, PSD check, Cholesky of Σ' and its inverse);
- per pair: the generalised eigenvalues (two triangular multiplies + eigvalsh, O(n³)), the exact TV
  (Imhof's integral) and the eigenbasis Monte Carlo JS at S = 10⁴ and 10⁵ (O(n·S));
- the reference's approach, written here: Cholesky of both Σ, S = 10⁴ samples from each Gaussian,
  and both log densities at both sample sets by triangular solves (O(n²·S)); TV and JS from them;
- the ratio reference / repsim for one pair, both counted from the kernels (repsim's per-layer work
  of both layers included).

Run: make bench (or python bench/bench_bayes.py [--sizes 1000 2000] [--threads 1]). On a shared,
busy machine multi-threaded BLAS mostly waits for cores; ``--threads 1`` gives steadier figures.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from _common import cpu_note
from threadpoolctl import threadpool_info, threadpool_limits

from repsim_cli.metrics import readout as ro


def kernels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Kernels of two related layers (n × n/2 units, decaying spectrum), TV well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    p = n // 2
    x = rng.standard_normal((n, p)) * np.linspace(2.0, 0.1, p)
    y = x @ (np.eye(p) + 0.15 * rng.standard_normal((p, p)) / math.sqrt(p))
    y += 0.3 * rng.standard_normal((n, p)) * np.linspace(1.0, 0.1, p)
    return x @ x.T, y @ y.T


def direct_estimator(k1: np.ndarray, k2: np.ndarray, b: float, samples: int, seed: int):
    """The reference's O(n²·S) route: sample each Gaussian through its Cholesky factor and evaluate
    both log densities at both sample sets with triangular solves. Returns TV, its SE, JS_bits."""
    n = k1.shape[0]
    covs = [np.eye(n) + k / (b * np.trace(k)) for k in (k1, k2)]
    chol = [np.linalg.cholesky(c) for c in covs]
    half_logdet = [float(np.sum(np.log(np.diag(c)))) for c in chol]
    rng = np.random.default_rng(seed)

    def log_density(k: int, x: np.ndarray) -> np.ndarray:
        white = scipy.linalg.solve_triangular(chol[k], x, lower=True, check_finite=False)
        return -0.5 * np.einsum("ij,ij->j", white, white) - half_logdet[k]

    tv_terms, js_terms = [], []
    for own, other in ((0, 1), (1, 0)):
        x = chol[own] @ rng.standard_normal((n, samples))
        ratio = log_density(own, x) - log_density(other, x)  # log p_own / p_other
        tv_terms.append(-np.expm1(-np.maximum(ratio, 0.0)))
        js_terms.append(np.logaddexp(0.0, -ratio))
    tv = 0.5 * (tv_terms[0].mean() + tv_terms[1].mean())
    tv_se = 0.5 * math.sqrt(sum(t.var(ddof=1) for t in tv_terms) / samples)
    js_bits = (math.log(2) - 0.5 * (js_terms[0].mean() + js_terms[1].mean())) / math.log(2)
    return float(tv), tv_se, float(js_bits)


@dataclass(frozen=True)
class Seconds:
    """Wall and process CPU seconds (the CPU figure is what survives a busy shared machine)."""

    wall: float
    cpu: float

    def __add__(self, other: Seconds) -> Seconds:
        return Seconds(self.wall + other.wall, self.cpu + other.cpu)

    def __str__(self) -> str:
        return f"{self.wall:7.2f} s wall ({self.cpu:6.2f} s CPU)"


def clock(fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return Seconds(time.perf_counter() - w0, time.process_time() - c0), out


def ratio(slow: Seconds, fast: Seconds) -> str:
    return f"{slow.wall / fast.wall:.1f}x wall, {slow.cpu / fast.cpu:.1f}x CPU"


def bench(n: int, b: float = ro.DEFAULT_B) -> None:
    k1, k2 = kernels(n)
    # as the engine does it: X Xᵀ kernels skip the PSD check
    t_layers, layers = clock(lambda: [ro.readout_layer(k, b, check_psd=False) for k in (k1, k2)])
    t_eig, mu = clock(ro.spectral_shifts, *layers)
    t_tv, tv = clock(ro._total_variation, mu, n)
    print(f"\nn = {n}: {mu.size} non-unit eigenvalues; b = {b}")
    print(f"  per layer, both layers: Cholesky of Σ' and its inverse   {t_layers}")
    print(f"  per pair: generalised eigenvalues (2 trmm + eigvalsh)    {t_eig}")
    print(f"  per pair: exact TV (Imhof's integral)                    {t_tv}   TV = {tv:.6f}")
    js = {}
    for samples in (10_000, 100_000):
        t_js, est = clock(ro.monte_carlo, [mu], n, samples, 0)
        js[samples] = t_js
        print(
            f"  per pair: JS Monte Carlo in the eigenbasis, S = {samples:>6}  {t_js}   "
            f"JS_bits = {est.js_bits[0]:.6f} ± {est.js_bits_std_error[0]:.6f}, "
            f"distance = {est.js_distance[0]:.6f} ± {est.js_distance_std_error[0]:.6f}"
        )
    t_ref, (tv_ref, tv_ref_se, js_ref) = clock(direct_estimator, k1, k2, b, 10_000, 0)
    print(
        f"  reference route, Cholesky sampling O(n²·S), S = 10000 (TV and JS together) {t_ref}\n"
        f"      TV = {tv_ref:.6f} ± {tv_ref_se:.6f} (exact − this = {tv - tv_ref:+.6f}), "
        f"JS_bits = {js_ref:.6f}"
    )
    setup = t_layers + t_eig
    rows = [("TV exact", t_tv)] + [(f"JS, S = {samples:>6}", t) for samples, t in js.items()]
    for title, fixed in (
        ("one pair from its two kernels (repsim: layers + eigenvalues + estimator)", setup),
        ("per extra pair once the layers are cached (eigenvalues + estimator)", t_eig),
    ):
        print(f"  {title}:")
        for label, t in rows:
            total = fixed + t
            print(f"      {label:<15} {total}   reference/repsim {ratio(t_ref, total)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    a = ap.parse_args()
    with threadpool_limits(limits=a.threads):
        threads = threadpool_info()[0]["num_threads"] if threadpool_info() else "?"
        print(
            f"Bayesian readout distances, one pair of float64 kernels ({cpu_note()}, "
            f"BLAS threads {threads})"
        )
        for n in a.sizes:
            bench(n)


if __name__ == "__main__":
    main()
