"""The metric registry: one frozen :class:`MetricInfo` per metric, looked up by name (as in
``scipy.spatial.distance``), and :class:`MetricSpec`, a parsed ``NAME[:key=value,...]`` string.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..engine.plan import Side
from ..errors import MetricParameterError, UnknownMetricError
from .contract import Cell, CellBlock, LayerContext, StateCost

Kind = Literal["similarity", "distance"]
PrepareFn = Callable[[LayerContext, Mapping[str, Any]], Any]
PairFn = Callable[[Any, Any, Mapping[str, Any]], Cell]
# prepare_grouped(layer, params, groups) -> state of a bootstrap replicate's rows (see MetricInfo)
GroupedPrepareFn = Callable[[LayerContext, Mapping[str, Any], NDArray[np.intp]], Any]
BlockFn = Callable[[Sequence[Any], Sequence[Any], Mapping[str, Any]], CellBlock]
# pair_row(state_a, states_b, params, scratch) -> one Cell per state of B (see MetricInfo.pair_row)
PairRowFn = Callable[[Any, Sequence[Any], Mapping[str, Any], dict[str, Any]], list[Cell]]
# state_cost(n, width, side, params) -> StateCost
StateCostFn = Callable[[int, int, Side, Mapping[str, Any]], StateCost]
# pair_cost(n, width_a, width_b, side, params) -> StateCost (one cell's pair stage)
PairCostFn = Callable[[int, int, int, Side, Mapping[str, Any]], StateCost]


@dataclass(frozen=True)
class Param:
    """One metric parameter: name, default, and either a Python type or a tuple of choices.

    A default of ``None`` means "unset" (mutually exclusive parameters, checked by the metric's
    ``validate``); ``shown`` then says in listings what unset means.
    """

    name: str
    default: Any
    type: type = str
    choices: tuple[str, ...] = ()
    doc: str = ""
    shown: str = ""

    def parse(self, text: str, metric: str) -> Any:
        """Convert the text of ``key=value`` to this parameter's type, or raise MetricParameterError."""
        if self.choices:
            if text not in self.choices:
                raise MetricParameterError(
                    f"metric {metric!r}: {self.name}={text!r} is not one of {', '.join(self.choices)}"
                )
            return text
        try:
            if self.type is bool:
                low = text.lower()
                if low not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(text)
                return low in {"true", "1", "yes"}
            return self.type(text)
        except ValueError:
            raise MetricParameterError(
                f"metric {metric!r}: {self.name}={text!r} is not a valid {self.type.__name__}"
            ) from None

    def describe(self) -> str:
        if self.shown:
            return f"{self.name}={self.type.__name__} ({self.shown})"
        if self.choices:
            return f"{self.name}={'|'.join(self.choices)} (default {self.default})"
        default = str(self.default).lower() if isinstance(self.default, bool) else self.default
        return f"{self.name}={self.type.__name__} (default {default})"


@dataclass(frozen=True)
class MetricInfo:
    """Everything repsim knows about a metric (see :mod:`repsim_cli.metrics.contract`).

    ``prepare(layer, params)`` builds one layer's state; ``pair(state_a, state_b, params)`` one
    :class:`Cell`; ``block(states_a, states_b, params)``, when given, a whole :class:`CellBlock` with
    the same values as ``pair``. ``state_cost(n, width, side, params)`` declares a state's bytes and
    build flops; ``state_key(params)`` names the state, so metrics (or parameter settings) with the
    same key share one state per layer. ``identity`` is the value of a layer with itself; with
    ``identity_exact`` the comparison writes it for a layer paired with itself without computing.
    ``dense(X, Y, **params)`` is the in-memory function on (n, p) and (n, q) arrays (it runs the
    same prepare/pair code). ``sides`` lists the engine sides that provide what the metric needs.
    """

    name: str
    kind: Kind
    symmetric: bool
    bounds: tuple[float, float]
    params: tuple[Param, ...]
    citation: str
    summary: str
    sides: tuple[Side, ...]
    prepare: PrepareFn
    pair: PairFn
    state_cost: StateCostFn
    identity: float
    dense: Callable[..., float] | None = None
    block: BlockFn | None = None
    state_key: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None
    identity_exact: bool = False
    # Which invariances the metric has (tested by the contract test): any of "orthogonal",
    # "isotropic_scaling", "translation", "permutation" (of features), "invertible_linear".
    invariances: tuple[str, ...] = ()
    # A true metric (distance satisfying the triangle inequality); tested on random triples.
    is_metric: bool = False
    # Largest |float32-GEMM value − float64-GEMM value| promised on well-conditioned data.
    float32_atol: float = 1e-4
    # The invariances when they depend on the parameters (default: ``invariances``).
    invariances_for: Callable[[Mapping[str, Any]], tuple[str, ...]] | None = None
    # The range when it depends on the parameters (default: ``bounds``).
    bounds_for: Callable[[Mapping[str, Any]], tuple[float, float]] | None = None
    # Whether the metric is symmetric when that depends on the parameters (default:
    # ``symmetric``); :func:`parse_spec` gives the spec a record with the value that applies.
    symmetric_for: Callable[[Mapping[str, Any]], bool] | None = None

    def invariances_of(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The transformations (applied to both layers) that leave the value unchanged."""
        return self.invariances if self.invariances_for is None else self.invariances_for(params)

    def bounds_of(self, params: Mapping[str, Any]) -> tuple[float, float]:
        """The metric's range for these parameters."""
        return self.bounds if self.bounds_for is None else self.bounds_for(params)
    aliases: tuple[str, ...] = ()
    validate: Callable[[dict[str, Any]], None] | None = None
    range_text: str = ""
    # True when ``matrix`` is vectorised over pairs (one call for a whole block is much cheaper than
    # per-row calls); other metrics are scheduled row by row so a killed run loses at most a row.
    batched: bool = False
    # True when the metric needs only ⟨Kc_a, Kc_b⟩ and row norms (the sample side may then tile
    # instead of holding n×n Grams); False when it needs whole Grams or covariances.
    inner_products_only: bool = False
    # A metric that asks the run for float64 GEMMs unless --precision says otherwise (none does
    # today: the whitening metrics build their states from the data in float64 themselves, so no
    # metric's value depends on the others requested with it).
    prefers_float64: bool = False
    # False when the metric's prepare stage reads only the layer's data and means, never the
    # engine's Grams or covariances (the planner then reserves no whole Grams for it).
    needs_gram: bool = True
    # Working memory of one layer's prepare stage beside the engine's Gram, in n×n float64
    # matrices (kernels, distances, RDM and ranks being built). Layers are prepared one at a time,
    # so the planner reserves this once; the finished states are budgeted by the state store.
    prepare_grams: float = 0.0
    # Work after the Gram statistics, for --dry-run: cost(n, n_layers, n_pairs, params) -> flops.
    cost: Callable[[int, int, int, Mapping[str, Any]], float] | None = None
    # One cell's pair stage on each side, for the planner's choice of side:
    # pair_cost(n, width_a, width_b, side, params) -> StateCost (flops; bytes it holds). None: the
    # same on both sides, ``cost`` for one pair.
    pair_cost: PairCostFn | None = None
    # True when the metric's side is its own route, chosen apart from the engine's side (its
    # states come from the layer's data, or from a Gram the engine provides on either side);
    # metrics with ``needs_gram=False`` are always so. False: the metric works on the engine's
    # side (it reads the engine's Gram inner products or covariances).
    own_route: bool = False
    # The prepare stage of a bootstrap replicate whose rows hold copies of examples:
    # prepare_grouped(layer, params, groups), ``groups`` (n,) int the original example of each
    # row (equal for copies). Its state leaves copy–copy pairs out as it leaves out a row paired
    # with itself; pair stages are unchanged. None: the replicate's rows are prepared as they are
    # (no pairwise terms between examples, or copies handled elsewhere). See repsim_cli.stats.copies.
    prepare_grouped: GroupedPrepareFn | None = None
    # pair_row(state_a, states_b, params, scratch): the cells of one layer of A with several of
    # B at once (e.g. one GEMM against the B layers side by side), equal to ``pair`` up to
    # round-off. The engine calls it with row groups fixed by the layout (schedule.row_groups),
    # never by the shard or a resume, so a cell's bits do not depend on how the run was split;
    # ``scratch`` persists across the calls of one metric in one run (for a stack of B states
    # that the next row reuses).
    pair_row: PairRowFn | None = None

    def key_of(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The name a state of this metric with these parameters is cached under."""
        if self.state_key is not None:
            return self.state_key(params)
        return (self.name, *sorted((k, repr(v)) for k, v in params.items()))

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        names = ", ".join(p.name for p in self.params) or "none"
        raise UnknownMetricError(f"metric {self.name!r} has no parameter {name!r} (parameters: {names})")


@dataclass(frozen=True)
class MetricSpec:
    """A metric with its parameters as requested on the command line (``text`` kept verbatim)."""

    text: str
    info: MetricInfo
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name


# Family modules in the order `repsim metrics` lists them, and the family of every metric name and
# alias: a command imports only the families of the metrics it runs (a test checks the map
# against what the families register).
FAMILIES = (
    "cka", "cka_rbf", "cka_minibatch", "cca", "procrustes", "rsa", "regression", "neighbors", "dcor",
    "readout",
)  # fmt: skip
FAMILY_OF = {
    "cka": "cka", "cka_linear": "cka", "linear_cka": "cka", "cka_rbf": "cka_rbf",
    "cka_minibatch": "cka_minibatch", "cca": "cca", "svcca": "cca", "pwcca": "cca",
    "procrustes": "procrustes", "shape": "procrustes", "rsa": "rsa", "linreg": "regression",
    "mutual_knn": "neighbors", "cknna": "neighbors", "dcor": "dcor", "bayes_tv": "readout",
    "bayes_js": "readout", "bayes_kl": "readout", "bayes_hellinger": "readout",
}  # fmt: skip


def import_family(family: str) -> None:
    """Import one family module (it registers its metrics)."""
    import importlib

    importlib.import_module(f"{__package__}.{family}")


class Registry(dict[str, MetricInfo]):
    """The metrics by name, in the order their families register. Reading it as a whole (iterating,
    ``len``, ``in``, ``values`` …) imports every family first; :func:`get_metric` imports only
    the family of the metric asked for."""

    _complete = False

    def load_all(self) -> None:
        """Import every family module not imported yet."""
        if not self._complete:
            for family in FAMILIES:
                import_family(family)
            self._complete = True

    def _ordered(self) -> list[tuple[str, MetricInfo]]:
        """Every metric, families in :data:`FAMILIES` order (whichever was imported first)."""
        self.load_all()
        rank = {family: k for k, family in enumerate(FAMILIES)}
        entries = list(dict.items(self))
        return sorted(entries, key=lambda e: rank.get(FAMILY_OF.get(e[0], ""), len(rank)))

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, _ in self._ordered()])

    def __len__(self) -> int:
        self.load_all()
        return dict.__len__(self)

    def __contains__(self, key: object) -> bool:
        self.load_all()
        return dict.__contains__(self, key)

    def __getitem__(self, key: str) -> MetricInfo:
        self.load_all()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self.load_all()
        return dict.get(self, key, default)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [name for name, _ in self._ordered()]

    def values(self) -> list[MetricInfo]:  # type: ignore[override]
        return [info for _, info in self._ordered()]

    def items(self) -> list[tuple[str, MetricInfo]]:  # type: ignore[override]
        return self._ordered()

    def registered(self, key: str) -> MetricInfo | None:
        """The metric if its family is imported already (imports nothing)."""
        return dict.get(self, key)


REGISTRY = Registry()
_ALIASES: dict[str, str] = {}


def register(info: MetricInfo) -> MetricInfo:
    """Add a metric to the registry (names and aliases must be new). A metric without its own
    ``dense`` gets one that runs its prepare/pair stages on the two arrays."""
    if info.dense is None:
        from ..arrays import dense_function

        info = replace(info, dense=dense_function(info.name))
    for name in (info.name, *info.aliases):
        if REGISTRY.registered(name) is not None or name in _ALIASES:
            raise ValueError(f"metric name {name!r} registered twice")
    dict.__setitem__(REGISTRY, info.name, info)
    for alias in info.aliases:
        _ALIASES[alias] = info.name
    return info


def get_metric(name: str) -> MetricInfo:
    """Look up a metric by name or alias; the error lists every known name."""
    family = FAMILY_OF.get(name)
    if family is not None:
        import_family(family)
    key = _ALIASES.get(name, name)
    info = REGISTRY.registered(key)
    if info is None:
        REGISTRY.load_all()  # a metric missing from the map still resolves
        info = REGISTRY.registered(_ALIASES.get(name, name))
    if info is None:
        raise UnknownMetricError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(REGISTRY))}")
    return info


def parse_spec(text: str) -> MetricSpec:
    """Parse ``NAME[:key=value,...]`` into a :class:`MetricSpec` with every default filled in."""
    name, _, rest = text.strip().partition(":")
    info = get_metric(name.strip())
    params = {p.name: p.default for p in info.params}
    given: set[str] = set()
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise MetricParameterError(f"metric {info.name!r}: expected key=value, got {item!r}")
        param = info.param(key.strip())
        if param.name in given:
            raise MetricParameterError(f"metric {info.name!r}: {param.name} given twice")
        given.add(param.name)
        params[param.name] = param.parse(value.strip(), info.name)
    if info.validate is not None:
        info.validate(params)
    if info.symmetric_for is not None and info.symmetric_for(params) != info.symmetric:
        info = replace(info, symmetric=info.symmetric_for(params))
    return MetricSpec(text=text, info=info, params=params)
