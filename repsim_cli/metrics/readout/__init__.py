"""Bayesian linear-readout distances (Schütt, "Bayesian comparisons between representations").

A layer with activations X (n stimuli × p units) defines, through a linear readout y = Xw + ε with
Gaussian weights and noise, the prior predictive distribution N(0, Σ) over the n outputs. With the
kernel trace-normalised and the noise variance set to 1,

    Σ' = I + K / (b · tr K),    K = X Xᵀ (n × n),    b = 0.01 by default,

which equals the reference's Σ = (1 − a)·n·K/tr K + a·I up to the factor a both layers share, with
a = n·b / (1 + n·b). Two layers are compared through the distributions P_a = N(0, Σ'_a) and
P_b = N(0, Σ'_b). Every distance here is invariant under a common invertible linear map, so after
whitening with Σ'_a it depends only on the generalised eigenvalues λ of (Σ'_b, Σ'_a). They are
computed as shifts μ = λ − 1, the eigenvalues of L⁻¹(Σ'_b − Σ'_a)L⁻ᵀ, which keeps the directions
where the two layers agree (λ ≈ 1) accurate.

* ``bayes_tv``: total variation, exact, as the difference of two generalised chi-square tail
  probabilities, each from Imhof's integral (with a Monte Carlo fallback).
* ``bayes_js``: the Jensen–Shannon *distance* √(JS divergence in bits), by Monte Carlo in the
  eigenbasis at O(n) per sample, with common random numbers across all pairs; it carries its
  standard error.
* ``bayes_kl``: the symmetrised KL divergence (KL(P_a‖P_b) + KL(P_b‖P_a))/2 in nats, closed form.
* ``bayes_hellinger``: the Hellinger distance √(1 − e^{−D_B}), D_B the Bhattacharyya distance.

Modules, by job: :mod:`.params` (b, a), :mod:`.layer` (the per-layer n × n factor),
:mod:`.spectra` (the pair's shifts, O(n³)), :mod:`.span` (the factor of a layer narrower than n,
and a pair's shifts in the span of its columns when p_a + p_b < n), :mod:`.closed_forms` (KL,
Bhattacharyya, Hellinger), :mod:`.exact_tv` (Imhof's integral), :mod:`.monte_carlo` (the JS/TV estimator), :mod:`.dense` (functions of two
in-memory arrays) and :mod:`.stages` (the metrics' prepare/pair/block stages, registered on import).

References
----------
Schütt, H. H. (2024/2025), "Bayesian comparisons between representations", arXiv:2411.08739 (CCN
2025); reference code github.com/Schuett-lab/BayesCompare (``distances.py``, ``cov_utils.py``).
Imhof, J. P. (1961), "Computing the distribution of quadratic forms in normal variables",
Biometrika 48, 419–426.
Lin, J. (1991), "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37.
"""

from __future__ import annotations

from .closed_forms import (
    bhattacharyya_distance,
    hellinger_from_eigenvalues,
    kl_divergences,
    symmetric_kl,
)
from .dense import (
    bayes_hellinger_distance,
    bayes_js_distance,
    bayes_js_estimate,
    bayes_kl_divergence,
    bayes_tv_distance,
)
from .exact_tv import FALLBACK_SAMPLES, TV_ABS_TOL, imhof_tail, tv_from_eigenvalues
from .exact_tv import _total_variation as _total_variation  # bench/bench_bayes.py times it
from .layer import PSD_RTOL, ReadoutLayer, linear_kernel, readout_layer
from .monte_carlo import (
    LN2,
    JSEstimate,
    MonteCarloEstimate,
    chunk_samples,
    js_from_eigenvalues,
    monte_carlo,
)
from .params import (
    CENTERS,
    DEFAULT_B,
    DEFAULT_SAMPLES,
    MAX_CONDITION,
    MIN_A,
    MIN_B,
    resolve_b,
)
from .span import ReadoutBasis, readout_basis, span_shifts
from .spectra import SNAP_ULPS, order_shifts, readout_eigenvalues, spectral_shifts
from .stages import (
    CITATION,
    hellinger_pair,
    js_block,
    js_pair,
    kl_pair,
    pair_shifts,
    prepare_readout,
    tv_pair,
)

__all__ = [
    "CENTERS", "CITATION", "DEFAULT_B", "DEFAULT_SAMPLES", "FALLBACK_SAMPLES", "LN2",
    "MAX_CONDITION", "MIN_A", "MIN_B", "PSD_RTOL", "SNAP_ULPS", "TV_ABS_TOL", "JSEstimate",
    "MonteCarloEstimate", "ReadoutBasis", "ReadoutLayer", "bayes_hellinger_distance", "bayes_js_distance",
    "bayes_js_estimate", "bayes_kl_divergence", "bayes_tv_distance", "bhattacharyya_distance",
    "chunk_samples", "hellinger_from_eigenvalues", "hellinger_pair", "imhof_tail", "js_block",
    "js_from_eigenvalues", "js_pair", "kl_divergences", "kl_pair", "linear_kernel", "monte_carlo",
    "order_shifts", "pair_shifts", "prepare_readout", "readout_basis", "readout_eigenvalues",
    "readout_layer", "resolve_b", "span_shifts", "spectral_shifts", "symmetric_kl", "tv_from_eigenvalues", "tv_pair",
]  # fmt: skip
