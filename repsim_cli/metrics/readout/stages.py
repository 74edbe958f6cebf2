"""Registration of bayes_tv, bayes_js, bayes_kl and bayes_hellinger on the two-stage metric
contract: prepare (the layer's readout factor) and pair (or, for bayes_js, block)."""

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
from .spectra import spectral_shifts

Float64 = NDArray[np.float64]

CITATION = "Schütt 2024/2025, 'Bayesian comparisons between representations' (arXiv:2411.08739)"


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
            prepare_grams=4.0,
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
