"""Each requested metric's work per side, from its record, for the planner's choice of side
(:class:`~repsim_cli.engine.plan.MetricDemand`, :func:`~repsim_cli.engine.plan.choose_routes`).

Per side: the flops of every layer's state (``MetricInfo.state_cost``, once per layer the metric's
cells need) and of every cell's pair stage (``MetricInfo.pair_cost``, or the record's ``cost`` for
one pair where the metric declares no per-side pair cost; a layer with itself is not computed when
the identity is exact). A metric that reads its layers itself (``needs_gram=False``) reads each
of them once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..engine import LayerRef
from ..engine.plan import SIDES, MetricDemand, Side
from .registry import MetricSpec


def metric_demands(
    specs: Sequence[MetricSpec],
    cells: Mapping[str, Sequence[tuple[LayerRef, LayerRef]]],
    n: int,
    itemsize: Mapping[str, int],
) -> list[MetricDemand]:
    """One :class:`MetricDemand` per spec. ``cells``: by spec text, the (row layer, column layer)
    of every cell the run computes; ``itemsize``: stored bytes per value, by layer key."""
    out = []
    for spec in specs:
        info, params = spec.info, spec.params
        pairs = [(a, b) for a, b in cells[spec.text] if not (info.identity_exact and a.key == b.key)]
        layers = {r.key: r for ab in cells[spec.text] for r in ab}
        sides: tuple[Side, ...] = tuple(s for s in SIDES if s in info.sides)
        per_layer = {s: {k: float(info.state_cost(n, r.width, s, params).flops) for k, r in layers.items()}
                     for s in sides}  # fmt: skip
        per_pair: dict[Side, float] = {}
        for s in sides:
            if info.pair_cost is not None:
                per_pair[s] = float(sum(info.pair_cost(n, a.width, b.width, s, params).flops for a, b in pairs))
            else:
                per_pair[s] = float(info.cost(n, 0, len(pairs), params)) if info.cost is not None else 0.0
        own = info.own_route or not info.needs_gram
        reads = float(sum(n * r.width * itemsize.get(k, 4) for k, r in layers.items())) if own else 0.0
        group = repr(info.key_of(params)) if own else "engine"
        out.append(MetricDemand(spec.text, group, sides, own, per_layer, per_pair, reads))
    return out
