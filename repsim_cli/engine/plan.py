"""The planner: from n, each layer's width, the metrics' needs and the memory budget, choose the
engine side, the sample-side strategy, the GEMM precision and the block size, and estimate passes,
bytes, flops and memory.

Sample side: one centred Gram Kc = XcXcᵀ (n×n) per layer, so that all pairs' inner products
⟨Kc_a, Kc_b⟩ come from the Grams (Kornblith et al. 2019, eq. 3); how the Grams are held is a
strategy (:mod:`.strategies`: stacked, packed, spilled or tiled). Cost ≈ Σ_l n²·D_l + L²·n².
Feature side: one pass over all layers together accumulating the blocks of the joint centred
cross-product [X₁…X_L]ᵀ[X₁…X_L] (float64) that the cells need — each compared model pair's cross
block and each layer's own block (:func:`cross_blocks`) — from which ‖XcᵀYc‖²_F = ⟨Kc_a, Kc_b⟩.
Cost ≈ n·(2·Σ_pairs D_i·D_j + Σ_l D_l²), or n·(ΣD)² for the whole joint block. The cheaper side
that fits the budget wins.

Per metric. Each metric declares, per side, the flops of its per-layer stage (``state_cost``)
and of its pair stage (``pair_cost``); :class:`MetricDemand` carries them here. Metrics that read
the engine's Grams or covariances work on the engine's side, which is chosen for the lowest total
of the engine's work, its reads and theirs. Metrics with their own route (their states come from
the layer's data: the CCA family, Procrustes, shape, regression, the readout distances) each get
the side with the lowest total of their own (reads, Grams or covariances, factorisations, pairs);
metrics that share a state share its side, and where a metric's pair stage costs the same on
both sides each layer's state takes its cheaper side (``per layer``). :class:`MetricRoute`
records both sides' estimates and the choice, which ``compare --dry-run`` prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from .._units import format_size
from ..errors import BudgetError
from .strategies import DataOnly, Packed, SampleStrategy, Spilled, Stacked, Tiled
from .strategies.base import layer_working_set

Side = Literal["sample", "feature"]
# One feature-side block: the layer keys of its rows and of its columns (the same keys: symmetric).
FeatureBlock = tuple[tuple[str, ...], tuple[str, ...]]
SIDES: tuple[Side, Side] = ("sample", "feature")
FEATURE_BLOCK_BYTES = 64 * 1024**2
# A byte read from a store costs about the time of this many GEMM flops (one core's ~20 GFLOP/s
# against a page-cache or disk read of ~2.5 GB/s); reads enter the sides' totals this way.
BYTE_FLOPS = 8.0
# The feature pass computes only the cells' blocks when that is under this share of the whole
# joint SYRK's work (below, the smaller GEMMs' lower efficiency would eat the gain).
BLOCKS_WORTH = 0.8


@dataclass(frozen=True)
class MetricDemand:
    """One metric's work on each side it can take, for the planner (built from the metric's
    record by :func:`repsim_cli.metrics.sides.metric_demands`).

    ``group``: metrics with the same group share one state per layer, hence one side.
    ``own_route``: the metric's side is its own, apart from the engine's (else it works on the
    engine's side). ``layers``: per side, each layer key's state flops. ``pairs``: per side, the
    flops of all its cells' pair stage. ``read_bytes``: what its states read of the stores
    themselves (the same on both sides).
    """

    spec: str
    group: str
    sides: tuple[Side, ...]
    own_route: bool
    layers: Mapping[Side, Mapping[str, float]]
    pairs: Mapping[Side, float]
    read_bytes: float = 0.0

    def total(self, side: Side) -> float:
        """The metric's own work on ``side``, reads as :data:`BYTE_FLOPS` flops per byte."""
        return sum(self.layers[side].values()) + self.pairs[side] + BYTE_FLOPS * self.read_bytes


@dataclass(frozen=True)
class MetricRoute:
    """The planner's choice for one metric. ``estimates``: per side, the total (flops, reads at
    :data:`BYTE_FLOPS` per byte; for a metric on the engine's side, the engine's work included);
    ``choice``: ``sample``, ``feature`` or ``per layer``; ``layers``: the side of each layer's
    state; ``state_flops``/``pair_flops``: the chosen option's work; ``engine``: whether the
    metric works on the engine's side."""

    spec: str
    estimates: dict[str, float]
    choice: str
    layers: dict[str, Side]
    state_flops: float
    pair_flops: float
    engine: bool

    def describe(self) -> str:
        both = ", ".join(f"{side} ≈ {value:.3g}" for side, value in self.estimates.items())
        choice = self.choice
        if choice == "per layer":
            counts = {s: sum(1 for v in self.layers.values() if v == s) for s in SIDES}
            choice += " (" + ", ".join(f"{counts[s]} {s}" for s in SIDES if counts[s]) + ")"
        if self.engine:
            choice += ", the engine's side"
        only = " (its only side)" if len(self.estimates) == 1 else ""
        return f"  {self.spec}: {both} → {choice}{only}"


def _side(text: str) -> Side:
    return "feature" if text == "feature" else "sample"


def _pairs_side_free(d: MetricDemand) -> bool:
    values = [d.pairs[s] for s in SIDES if s in d.pairs]
    return len(values) == 2 and abs(values[0] - values[1]) <= 1e-9 * max(1.0, *values)


def choose_routes(
    demands: Sequence[MetricDemand], engine_side: Side, engine_totals: Mapping[Side, float],
    forced: str = "auto",
) -> dict[str, MetricRoute]:
    """Each metric's side (see the module's docstring). ``engine_totals``: the engine's work
    per side (flops, reads at :data:`BYTE_FLOPS`); ``forced``: ``--side`` (``auto`` to choose).
    Raises :class:`BudgetError` when a forced side is not one a metric can take."""
    routes: dict[str, MetricRoute] = {}
    groups: dict[str, list[MetricDemand]] = {}
    for d in demands:
        if d.own_route:
            groups.setdefault(d.group, []).append(d)
            continue
        on_sides: dict[str, float] = {s: engine_totals.get(s, 0.0) + d.total(s) for s in d.sides}
        routes[d.spec] = MetricRoute(
            d.spec, on_sides, engine_side, dict.fromkeys(d.layers[engine_side], engine_side),
            sum(d.layers[engine_side].values()), d.pairs[engine_side], engine=True,
        )  # fmt: skip
    for members in groups.values():
        sides = [s for s in SIDES if all(s in m.sides for m in members) and forced in ("auto", s)]
        if not sides:
            raise BudgetError(f"side {forced!r} cannot compute {members[0].spec} "
                              f"(it works on: {', '.join(members[0].sides)})")  # fmt: skip
        state = members[0].layers  # one state per layer serves the whole group
        pairs = {s: sum(m.pairs[s] for m in members) for s in sides}
        options: dict[str, tuple[float, dict[str, Side]]] = {
            s: (sum(state[s].values()) + pairs[s], dict.fromkeys(state[s], s)) for s in sides
        }
        if len(sides) == 2 and all(_pairs_side_free(m) for m in members):
            mixed: dict[str, Side] = {
                k: "sample" if state["sample"][k] <= state["feature"][k] else "feature"
                for k in state["sample"]
            }
            total = sum(state[s][k] for k, s in mixed.items()) + pairs[SIDES[0]]
            if total < min(options[s][0] for s in sides):
                options["per layer"] = (total, mixed)
        choice = min(options, key=lambda o: options[o][0])
        layers = options[choice][1]
        for m in members:
            estimates: dict[str, float] = {s: m.total(s) for s in sides}
            if "per layer" in options:
                mixed_layers = options["per layer"][1]
                estimates["per layer"] = (sum(state[s][k] for k, s in mixed_layers.items())
                                          + m.pairs[SIDES[0]] + BYTE_FLOPS * m.read_bytes)  # fmt: skip
            routes[m.spec] = MetricRoute(
                m.spec, estimates, choice, dict(layers),
                sum(state[s][k] for k, s in layers.items()),
                m.pairs[SIDES[0]] if choice == "per layer" else m.pairs[_side(choice)],
                engine=False,
            )  # fmt: skip
    return {d.spec: routes[d.spec] for d in demands}


def default_budget() -> int:
    """Half of the machine's physical memory (8 GiB assumed where it cannot be read)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 1024**3
    return int(total // 2)


@dataclass(frozen=True)
class LayerCost:
    """What the planner needs to know about one layer: its key, width D, stored itemsize and size."""

    key: str
    label: str
    width: int
    itemsize: int
    has_stats: bool
    chunk_bytes: int = 0  # one stored chunk: a partial read may pass through a whole chunk


@dataclass(frozen=True)
class Plan:
    """The engine's work plan. ``describe()`` is what ``compare --dry-run`` prints."""

    side: Side
    n: int
    compute_dtype: str
    budget: int
    block_rows: int
    layers: tuple[LayerCost, ...]
    peak_bytes: int
    flops: float
    bytes_read: int
    # How the sample side holds the centred Grams; on the feature side, whole Grams (should a
    # metric ask for one) are held stacked.
    strategy: SampleStrategy
    passes: dict[str, float] = field(default_factory=dict)
    pairs: int = 0
    alternatives: dict[str, dict[str, float]] = field(default_factory=dict)
    metric_flops: dict[str, float] = field(default_factory=dict)
    # Each metric's side, by spec text (empty where the plan was made without metric demands).
    routes: dict[str, MetricRoute] = field(default_factory=dict)
    # The feature side's blocks (row layer keys, column layer keys): the cross-products the cells
    # need; every layer's own block is computed too. Empty: the whole joint block.
    feature_blocks: tuple[FeatureBlock, ...] = ()

    def state_side(self, spec: str, layer_key: str) -> Side | None:
        """The side the planner chose for ``spec``'s state of one layer (None: not planned)."""
        route = self.routes.get(spec)
        return None if route is None else route.layers.get(layer_key)

    @property
    def tile_rows(self) -> int:
        """Rows per tile of the tiled strategy (else 0)."""
        return self.strategy.tile_rows

    @property
    def gram_capacity(self) -> int:
        """Whole Grams held in memory by the spilled strategy (else 0)."""
        return self.strategy.gram_capacity

    def describe(self) -> str:
        lines = [
            f"side: {self.side}" + (f", {self.strategy.name}" if self.side == "sample" else "")
            + f" (n={self.n}, {len(self.layers)} layers, sum of widths={sum(c.width for c in self.layers)})",
            f"precision: GEMMs in {self.compute_dtype}, accumulation in float64",
            f"memory budget: {format_size(self.budget)}; estimated peak: {format_size(self.peak_bytes)}",
            (
                f"bytes read: {format_size(self.bytes_read)}; flops: {self.flops:.3g}; "
                f"block rows: {self.block_rows or self.tile_rows}; layer pairs: {self.pairs}"
            ),
        ]
        note = self.strategy.note() if self.side == "sample" else None
        if note:
            lines.append(note)
        for side, alt in sorted(self.alternatives.items()):
            lines.append(
                f"  {side} side would need: {alt['flops']:.3g} flops, "
                f"peak {format_size(alt['peak_bytes'])}"
            )
        if self.routes:
            lines.append("side per metric (estimated flops, reads included, on each side → chosen):")
            lines += [route.describe() for route in self.routes.values()]
        else:
            for spec, flops in self.metric_flops.items():
                lines.append(f"  metric {spec}: about {flops:.3g} flops after the Gram statistics")
        lines.append("passes per layer:")
        lines += [f"  {c.label}: {self.passes.get(c.key, 0):g}" for c in self.layers]
        return "\n".join(lines)

    def chosen_metric_flops(self) -> dict[str, float]:
        """Each metric's estimated flops on the side the planner chose for it (the engine's side
        for metrics without a route of their own)."""
        out = dict(self.metric_flops)
        for spec, route in self.routes.items():
            if route.choice in route.estimates:
                out[spec] = float(route.estimates[route.choice])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side, "n": self.n, "compute_dtype": self.compute_dtype,
            "budget": self.budget, "block_rows": self.block_rows, "peak_bytes": self.peak_bytes,
            "flops": self.flops, "bytes_read": self.bytes_read, "pairs": self.pairs,
            "passes": dict(self.passes), "metric_flops": self.chosen_metric_flops(),
            "mode": self.strategy.name, "tile_rows": self.tile_rows, "gram_capacity": self.gram_capacity,
            "metric_sides": {spec: {"estimates": dict(r.estimates), "choice": r.choice,
                                    "layers": dict(r.layers)} for spec, r in self.routes.items()},
        }  # fmt: skip


def compute_dtype_for(itemsizes: Sequence[int], precision: str | None) -> str:
    """float64 when asked or when any layer is stored in float64; float32 otherwise."""
    if precision == "float64" or (precision is None and any(s >= 8 for s in itemsizes)):
        return "float64"
    return "float32"


def choose_sample_strategy(
    n: int, layers: Sequence[LayerCost], c: int, n_pairs: int, budget: int, full_gram: bool,
    min_grams: int = 2,
) -> SampleStrategy:
    """The cheapest sample-side strategy that fits ``budget`` bytes, for GEMMs of itemsize ``c``.

    Metrics that need whole Grams (``full_gram``): :class:`Stacked`, else :class:`Spilled`;
    metrics that need only inner products: :class:`Packed`, else :class:`Tiled`. When not even
    spilling fits, :class:`Stacked` is returned and :func:`make_plan` reports that it does not fit.
    ``min_grams``: whole Grams a spilled run must hold at once (2 when a metric takes inner
    products of Gram pairs from them; 1 when Grams are only read by one layer's prepare stage).
    """
    if full_gram:
        stacked = Stacked.estimate(n, layers, c, n_pairs)
        spill_floor = min_grams * n * n * 8 + layer_working_set(n, layers, c)
        if stacked.peak_bytes <= budget or budget < spill_floor:
            return stacked
        return Spilled.estimate(n, layers, c, n_pairs, budget)
    packed = Packed.estimate(n, layers, c, n_pairs)
    if packed.peak_bytes <= budget:
        return packed
    return Tiled.estimate(n, layers, c, n_pairs, budget)


def _feature_row_bytes(layers: Sequence[LayerCost], c: int) -> int:
    """Bytes per block row on the feature side: up to four blocks in the stored dtype (two queued
    by the read-ahead, one being read, one in use), the shifted float64 copy and its GEMM-dtype
    cast, and one layer's float64 slice for the row norms."""
    total = sum(layer.width for layer in layers)
    stored = max(layer.itemsize for layer in layers)
    return total * (4 * stored + 8 + c) + max(layer.width for layer in layers) * 8


def _feature_rows(n: int, layers: Sequence[LayerCost], c: int, budget: int) -> int:
    """Rows per feature-side block: at least 64 MiB of rows, more when the budget allows, so
    that each block's GEMM (k = rows) amortises the float64 accumulation of its (ΣD)² output
    (at most ΣD/2 rows: beyond that the accumulation is no longer the bottleneck)."""
    total_width = sum(layer.width for layer in layers)
    floor = FEATURE_BLOCK_BYTES // max(1, total_width * 8)
    fixed = total_width * total_width * (8 + c) + len(layers) * n * 8
    spare = int(budget * 0.9) - fixed
    fit = spare // _feature_row_bytes(layers, c) if spare > 0 else 0
    return int(max(64, min(n, max(floor, min(fit, max(floor, total_width // 2))))))


def feature_block_entries(
    layers: Sequence[LayerCost], blocks: Sequence[FeatureBlock]
) -> tuple[float, float, float]:
    """(GEMM work in n·entries units, float64 entries held, largest block's entries) of a feature
    pass over ``blocks`` plus each layer's own block where no symmetric block holds it; a
    symmetric block is one SYRK (half its square's work), a cross block one GEMM."""
    width = {layer.key: layer.width for layer in layers}
    work = held = largest = 0.0
    own: set[str] = set()
    for rows, cols in blocks:
        w_r, w_c = sum(width[k] for k in rows), sum(width[k] for k in cols)
        if tuple(rows) == tuple(cols):
            own.update(rows)
            work += w_r * w_r
        else:
            work += 2.0 * w_r * w_c
        held += w_r * w_c
        largest = max(largest, w_r * w_c)
    for layer in layers:
        if layer.key not in own:
            work += layer.width**2
            held += layer.width**2
            largest = max(largest, layer.width**2)
    return work, held, largest


def cross_blocks(
    layers: Sequence[LayerCost], blocks: Sequence[FeatureBlock]
) -> tuple[FeatureBlock, ...]:
    """The blocks a feature pass computes: ``blocks`` (deduplicated; keys not in ``layers``
    dropped) when their GEMM work is under :data:`BLOCKS_WORTH` of the whole joint SYRK's, else
    () — the whole joint block, as one large SYRK runs nearer the GEMM peak than many small ones."""
    known = {layer.key for layer in layers}
    kept: list[FeatureBlock] = []
    for rows, cols in blocks:
        block = (tuple(k for k in rows if k in known), tuple(k for k in cols if k in known))
        if block[0] and block[1] and block not in kept:
            kept.append(block)
    if not kept:
        return ()
    total = sum(layer.width for layer in layers)
    work = feature_block_entries(layers, kept)[0]
    return tuple(kept) if work < BLOCKS_WORTH * total * total else ()


def _feature_side(
    n: int, layers: Sequence[LayerCost], c: int, rows: int, blocks: Sequence[FeatureBlock] = ()
) -> dict[str, float]:
    total = sum(layer.width for layer in layers)
    if blocks:
        work, held, largest = feature_block_entries(layers, blocks)
    else:
        work, held, largest = float(total * total), float(total * total), float(total * total)
    # float64 accumulators + one block's GEMM output; the blocks in flight; the per-layer row norms
    peak = held * 8 + largest * c + rows * _feature_row_bytes(layers, c) + len(layers) * n * 8
    return {"peak_bytes": float(peak), "flops": float(n) * work}


def make_plan(
    n: int,
    layers: Sequence[LayerCost],
    *,
    n_pairs: int,
    budget: int | None = None,
    precision: str | None = None,
    side: str = "auto",
    sides_allowed: Sequence[Side] = ("sample", "feature"),
    block_rows: int | None = None,
    metric_flops: dict[str, float] | None = None,
    full_gram: bool = True,
    reserved_bytes: int = 0,
    min_grams: int = 2,
    engine_work: bool = True,
    demands: Sequence[MetricDemand] = (),
    feature_blocks: Sequence[FeatureBlock] = (),
) -> Plan:
    """Choose the side and block size for computing the Gram statistics of ``layers``.

    ``sides_allowed`` comes from the metrics (a metric that needs n×n Grams allows only the sample
    side). ``full_gram``: some metric needs whole n×n Grams (else the sample side may tile).
    ``reserved_bytes``: memory the metrics' prepare stage needs beside the engine (one layer's
    working set and room for the states of one pair), added to either side's peak.
    ``engine_work`` False: no metric uses the engine's Grams or covariances (they read the layers
    themselves), so the plan is :class:`DataOnly` (on the side asked for; ``auto``: sample).
    ``demands``: each metric's work per side; with them the engine's side is the one with the
    lowest total of the engine's work, its reads and the work of the metrics on its side, and
    every metric gets a :class:`MetricRoute` (without them: the engine's flops alone decide).
    ``feature_blocks``: the (row keys, column keys) cross-products the cells need (a two-store
    run: the cross block of the two stores); the feature side then computes those and each
    layer's own block instead of the whole joint block (see :func:`cross_blocks`).
    Raises :class:`BudgetError` when no allowed side fits ``budget``.
    """
    budget = budget or default_budget()
    dtype = compute_dtype_for([layer.itemsize for layer in layers], precision)
    c = np.dtype(dtype).itemsize
    rows = block_rows or _feature_rows(n, layers, c, budget)
    sample: SampleStrategy
    if engine_work:
        sample = choose_sample_strategy(n, layers, c, n_pairs, budget - reserved_bytes, full_gram,
                                        min_grams)  # fmt: skip
    else:
        sample = DataOnly.estimate(n, layers)
    sample = replace(sample, peak_bytes=sample.peak_bytes + reserved_bytes)
    blocks = cross_blocks(layers, feature_blocks)
    feature = _feature_side(n, layers, c, rows, blocks)
    feature["peak_bytes"] += reserved_bytes
    if not engine_work:  # either side is the same nothing: the metrics read the layers
        feature = {"peak_bytes": sample.peak_bytes, "flops": sample.flops}
    costs = {
        "sample": {"peak_bytes": sample.peak_bytes, "flops": sample.flops},
        "feature": feature,
    }
    candidates = [s for s in sides_allowed if side in ("auto", s)]
    if not candidates:
        raise BudgetError(
            f"side {side!r} cannot compute the requested metrics (they need: {', '.join(sides_allowed)})"
        )
    fitting = [s for s in candidates if costs[s]["peak_bytes"] <= budget]
    if not fitting:
        best = min(candidates, key=lambda s: costs[s]["peak_bytes"])
        raise BudgetError(
            f"the {best} side needs about {format_size(costs[best]['peak_bytes'])} of memory, "
            f"more than the budget of {format_size(budget)}; raise --memory or select fewer layers"
        )
    def reads(side: str) -> float:
        passes = (sample.passes if side == "sample" else 1.0) if engine_work else 0.0
        return float(sum(passes * n * layer.width * layer.itemsize for layer in layers))

    engine_totals: dict[Side, float] = {
        s: costs[s]["flops"] + BYTE_FLOPS * reads(s) if engine_work else 0.0 for s in SIDES
    }
    on_engine = [d for d in demands if not d.own_route]
    chosen: Side
    if on_engine:
        chosen = min(fitting, key=lambda s: engine_totals[s] + sum(d.total(s) for d in on_engine))
    else:
        chosen = min(fitting, key=lambda s: costs[s]["flops"])
    routes = choose_routes(demands, chosen, engine_totals, side) if demands else {}
    data_passes = sample.passes if chosen == "sample" else 1.0
    passes = {layer.key: data_passes + (0 if layer.has_stats else 1) for layer in layers}
    bytes_read = int(sum(passes[layer.key] * n * layer.width * layer.itemsize for layer in layers))
    strategy = sample if chosen == "sample" or not engine_work else Stacked.estimate(n, layers, c, n_pairs)
    return Plan(
        side=chosen, n=n, compute_dtype=dtype, budget=budget,
        block_rows=rows if chosen == "feature" else 0, layers=tuple(layers),
        peak_bytes=int(costs[chosen]["peak_bytes"]), flops=costs[chosen]["flops"],
        bytes_read=int(bytes_read), strategy=strategy, passes=passes, pairs=n_pairs,
        alternatives={s: costs[s] for s in candidates if s != chosen},
        metric_flops=dict(metric_flops or {}), routes=routes, feature_blocks=blocks,
    )  # fmt: skip
