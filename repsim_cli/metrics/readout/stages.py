"""Registration of bayes_tv, bayes_js, bayes_kl and bayes_hellinger on the two-stage metric
contract: prepare (the layer's readout factor) and pair (or, for bayes_js, block).

A layer narrower than n is factored from its own float64 data (:mod:`.span`: a thin SVD, n·p
floats); a pair of such layers with p_a + p_b < n gets its spectrum in the span of its columns.
Wider layers (and pairs too wide for the span) take the n × n route of :mod:`.layer` and
:mod:`.spectra`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..contract import Cell, CellBlock, LayerContext, StateCost
from ..registry import MetricInfo, Param, register
from .closed_forms import _hellinger, _symmetric_kl
from .exact_tv import _total_variation
from .layer import ReadoutLayer, readout_layer
from .monte_carlo import monte_carlo
from .params import CENTERS, DEFAULT_SAMPLES, _validator, resolve_b
from .span import ReadoutBasis, readout_basis, span_applies, span_shifts
from .spectra import spectral_shifts

ReadoutState = ReadoutLayer | ReadoutBasis

Float64 = NDArray[np.float64]

CITATION = "Schütt 2024/2025, 'Bayesian comparisons between representations' (arXiv:2411.08739)"


def layer_data(layer: LayerContext, center: str) -> Float64:
    """The layer's data (n, p) in float64, centred as ``center`` says: ``none`` (raw), ``units``
    (exact float64 column means removed) or ``stimuli`` (each row's mean removed)."""
    mean = layer.mean()  # the engine's pass: finite values checked, column means exact
    out = np.empty((layer.n, layer.width))
    for start, block in layer.blocks():
        out[start : start + block.shape[0]] = block
    if center == "units":
        out -= mean
    elif center == "stimuli":
        out -= out.mean(axis=1, keepdims=True)
    return out


def prepare_readout(layer: LayerContext, params: Mapping[str, Any]) -> ReadoutState:
    """The per-layer stage. A layer narrower than n (unless the planner chose the sample side for
    the metric): the thin SVD of its float64 data, centred as ``params["center"]``
    (:class:`ReadoutBasis`, n·p floats, ≈ 4n·p² flops). Otherwise: the engine's n × n kernel and
    the Cholesky factor of its Σ' (:class:`ReadoutLayer`, O(n³))."""
    b = resolve_b(layer.n, params.get("b"), params.get("a"))
    if layer.width < layer.n and layer.route != "sample":
        return readout_basis(layer_data(layer, params["center"]), b, layer.label)
    kernel = layer.gram(params["center"])
    return readout_layer(kernel, b, layer.label, check_psd=False)


def _dense(state: ReadoutState) -> ReadoutLayer:
    """The n × n factor of a state (built on the fly for a factored layer in a too-wide pair)."""
    if isinstance(state, ReadoutLayer):
        return state
    b = math.inf if state.scale == 0.0 else 1.0 / (state.scale * state.trace)
    return readout_layer(state.load_kernel(), b, state.label, check_psd=False)


def pair_shifts(a: ReadoutState, b: ReadoutState) -> Float64:
    """The pair's shifts μ = λ − 1 (canonical order, round-off dropped): in the span of the two
    layers' columns when both are factored and p_a + p_b < n, else by the n × n route."""
    if a is b:
        return np.zeros(0)
    if isinstance(a, ReadoutBasis) and isinstance(b, ReadoutBasis) and span_applies(a, b):
        return span_shifts(a, b)
    return spectral_shifts(_dense(a), _dense(b))


_pair_shifts = pair_shifts


def tv_pair(a: ReadoutState, b: ReadoutState, params: Mapping[str, Any]) -> Cell:
    """``bayes_tv`` of two layer states (exact, Imhof's integral)."""
    return Cell(_total_variation(_pair_shifts(a, b), a.n, f"{a.label} vs {b.label}"))


def kl_pair(a: ReadoutState, b: ReadoutState, params: Mapping[str, Any]) -> Cell:
    """``bayes_kl`` of two layer states."""
    return Cell(_symmetric_kl(_pair_shifts(a, b)))


def hellinger_pair(a: ReadoutState, b: ReadoutState, params: Mapping[str, Any]) -> Cell:
    """``bayes_hellinger`` of two layer states."""
    return Cell(_hellinger(_pair_shifts(a, b)))


def js_block(
    states_a: Sequence[ReadoutState], states_b: Sequence[ReadoutState], params: Mapping[str, Any]
) -> CellBlock:
    """``bayes_js`` for a block: one Monte Carlo draw serves every pair of the block (common
    random numbers; each pair's value is bitwise the same whichever pairs share the draw). The
    metric is ``batched``, so a comparison hands whole blocks and draws once per block; a pair
    and its swap (a symmetric block) are computed once (their shifts are bitwise equal)."""
    unique: dict[tuple[int, int], int] = {}
    distinct: list[Float64] = []
    index = []
    for a in states_a:
        for b in states_b:
            key = (min(id(a), id(b)), max(id(a), id(b)))
            if key not in unique:
                unique[key] = len(distinct)
                distinct.append(pair_shifts(a, b))
            index.append(unique[key])
    shifts = [distinct[k] for k in index]
    n = states_a[0].n
    est = monte_carlo(distinct, n, int(params["samples"]), int(params["seed"]))
    est_value = est.js_distance[index] if index else np.zeros(0)
    est_error = est.js_distance_std_error[index] if index else np.zeros(0)
    empty = np.array([s.size == 0 for s in shifts])
    shape = (len(states_a), len(states_b))
    value = np.where(empty, 0.0, est_value).reshape(shape)
    error = np.where(empty, 0.0, est_error).reshape(shape)
    return CellBlock(value, error)


def js_pair(a: ReadoutState, b: ReadoutState, params: Mapping[str, Any]) -> Cell:
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
    """Feature side (the span route) and p < n: U (n×p) and s² from a thin SVD (≈ 4n·p² + 8p³
    flops). Otherwise the kernel (n²·p, or the engine's) and L (n×n each); Cholesky (n³/3)."""
    if side == "feature" and width < n:
        return StateCost(bytes=8.0 * (n + 1) * width, flops=4.0 * n * width**2 + 8.0 * width**3)
    return StateCost(bytes=16.0 * n * n, flops=1.0 * n * n * width + (1.0 / 3.0) * float(n) ** 3)


def _cost(js: bool) -> Callable[[int, int, int, Mapping[str, Any]], float]:
    def cost(n: int, n_layers: int, n_pairs: int, params: Mapping[str, Any]) -> float:
        # An upper bound (layers as wide as n; narrower ones take the span route, far cheaper):
        # per layer: Cholesky and its inverse (n³/3 each); per pair: two triangular multiplies
        # (n³ each) and the tridiagonal reduction of eigvalsh (4n³/3)
        flops = n_layers * (2.0 / 3.0) * float(n) ** 3 + n_pairs * (10.0 / 3.0) * float(n) ** 3
        if js:
            samples = float(params.get("samples", DEFAULT_SAMPLES))
            flops += samples * n * (10.0 + 4.0 * n_pairs)
        return flops

    return cost


def _pair_cost(js: bool) -> Callable[[int, int, int, str, Mapping[str, Any]], StateCost]:
    def cost(n: int, width_a: int, width_b: int, side: str, params: Mapping[str, Any]) -> StateCost:
        """Feature side with p_a + p_b < n (:mod:`.span`): C, R and its QR (≈ 4n·p_a·p_b +
        2n·p_b²) and an eigvalsh of order m = p_a + p_b (≈ 3m³ GEMM-equivalent). Otherwise the n×n
        route: L⁻¹DL⁻ᵀ by dsygst (n³) and the tridiagonal reduction (≈ 3n³
        GEMM-equivalent). bayes_js adds its Monte Carlo samples (≈ 4n each, per pair)."""
        m = width_a + width_b
        if side == "feature" and m < n:
            flops = 4.0 * n * width_a * width_b + 2.0 * n * width_b**2 + 3.0 * float(m) ** 3
            held = 8.0 * (n * width_b + m * m)
        else:
            flops, held = 4.0 * float(n) ** 3, 16.0 * n * n
        if js:
            flops += 4.0 * float(params.get("samples", DEFAULT_SAMPLES)) * min(n, m)
        return StateCost(bytes=held, flops=flops)

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
            # sample: the n × n route; feature: the span route (layers narrower than n
            # factored from their data; pairs with p_a + p_b < n in the span of their columns)
            sides=("sample", "feature"),
            own_route=True,
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
            # per layer: L, and the engine's rebuilt kernel for center=none|stimuli
            prepare_grams=4.0,
            cost=_cost(js),
            pair_cost=_pair_cost(js),
            # bayes_js: whole blocks, so that one Monte Carlo draw serves all of a block's pairs
            batched=js,
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
