"""What shard K of N does, by metric: tiles of examples, layer states, or cells.

* every metric a sum over examples (:func:`repsim_cli.partials.tileable`): a share of the tiles
  (sample side) or rows (feature side), written as partial sums;
* ``--stage layers``: a share of the layers' states, balanced by declared cost, into the state
  directory (:mod:`repsim_cli.state_dir`);
* otherwise (``--stage pairs``, or no stage): a contiguous share of the cells, as always.

:func:`describe_share` is what ``--dry-run --shard K/N`` prints: this shard's share and the
balance across the N shards.
"""

from __future__ import annotations

from typing import Any

from .partials import TilePlan, feature_share, sample_share, tileable
from .schedule import Shard, shard_cells
from .state_dir import _engine_state, layer_costs, layer_share

STAGES = ("layers", "pairs")


def share_mode(comparison: Any, shard: Shard | None, stage: str | None) -> str:
    """``tiles``, ``layers`` or ``cells``."""
    if stage == "layers":
        return "layers"
    if getattr(comparison, "statistics", None) is not None:
        return "cells"  # statistics are per cell: shards split the cells, each with its statistics
    if (stage == "pairs" or shard is not None) and tileable(comparison.specs, comparison.plan.side):
        return "tiles"
    return "cells"


def layers_command_hint(state_dir: str, count: int) -> str:
    """The command the pairs stage names when a state is missing."""
    return (f"`repsim compare <the same stores, layers and metrics> --stage layers --shard K/{count} "
            f"--state-dir {state_dir}` for K = 1..{count}")  # fmt: skip


def run_layers_stage(comparison: Any, shard: Shard | None) -> tuple[int, int]:
    """Prepare this shard's share of the layers' states into the comparison's state directory;
    returns (states prepared here, states found already there)."""
    shard = shard or Shard(1, 1)
    mine = set(layer_share(layer_costs(comparison), shard))
    if tileable(comparison.specs, comparison.plan.side):
        # the tile stage needs only the RBF bandwidths and centring terms of each layer
        from .partials import rbf_summaries

        refs = [r for r in comparison.engine.refs if r.key in mine]
        counts = comparison.states.counts
        for spec in comparison.specs:
            if spec.name == "cka_rbf":
                rbf_summaries(comparison, spec, refs)
        return (sum(v for k, v in counts.items() if k.startswith("prepare:")),
                sum(v for k, v in counts.items() if k.startswith("shared:")))  # fmt: skip
    before_prep = sum(v for k, v in comparison.states.counts.items() if k.startswith("prepare:"))
    before_found = sum(v for k, v in comparison.states.counts.items() if k.startswith("shared:"))
    for ref in comparison.engine.refs:
        if ref.key not in mine:
            continue
        seen = set()
        for spec in comparison.specs:
            key = spec.info.key_of(spec.params)
            if _engine_state(spec.info) or key in seen:
                continue
            seen.add(key)
            comparison.state(spec, ref)
        comparison.shared.drop_layer(ref.key)
    prepared = sum(v for k, v in comparison.states.counts.items() if k.startswith("prepare:")) - before_prep
    found = sum(v for k, v in comparison.states.counts.items() if k.startswith("shared:")) - before_found
    return prepared, found


def _balance(values: list[float]) -> str:
    if not values or max(values) == 0:
        return "balance: nothing to do"
    mean = sum(values) / len(values)
    return f"balance across {len(values)} shards: largest {max(values) / mean:.2f}× the mean, smallest {min(values) / mean:.2f}×"


def share_dict(comparison: Any, shard: Shard, stage: str | None) -> dict[str, Any]:
    """This shard's share (what it computes, bytes read or held, flops) and every shard's flops."""
    mode = share_mode(comparison, shard, stage)
    plan = comparison.plan
    every = [Shard(k, shard.count) for k in range(1, shard.count + 1)]
    widths = sum(r.width for r in comparison.engine.refs)
    itemsize = max(r.store.info(r.name).dtype.itemsize for r in comparison.engine.refs)
    out: dict[str, Any] = {"shard": str(shard), "mode": mode}
    if mode == "tiles" and plan.side == "sample":
        def tile_work(s: Shard) -> tuple[int, float, float]:
            _, tiles = sample_share(comparison, s)
            blocks = {t[0] for t in tiles} | {t[2] for t in tiles}
            rows = sum(min(b + (tiles[0][1] - tiles[0][0]), plan.n) - b for b in blocks) if tiles else 0
            flops = sum(2.0 * c * widths for c in TilePlan.costs(tiles))
            return len(tiles), float(rows * widths * itemsize), flops

        works = [tile_work(s) for s in every]
        out.update({"tiles": works[shard.index - 1][0], "bytes_read": works[shard.index - 1][1],
                    "flops": works[shard.index - 1][2], "flops_by_shard": [w[2] for w in works]})  # fmt: skip
    elif mode == "tiles":
        def row_work(s: Shard) -> tuple[int, float, float]:
            _, blocks = feature_share(comparison, s)
            rows = sum(b - a for a, b in blocks)
            return rows, float(rows * widths * itemsize), 2.0 * rows * widths * widths

        works = [row_work(s) for s in every]
        out.update({"rows": works[shard.index - 1][0], "bytes_read": works[shard.index - 1][1],
                    "flops": works[shard.index - 1][2], "flops_by_shard": [w[2] for w in works]})  # fmt: skip
    elif mode == "layers":
        costs = layer_costs(comparison)
        by_key = dict(costs)
        shares = [layer_share(costs, s) for s in every]
        mine = shares[shard.index - 1]
        refs = {r.key: r for r in comparison.engine.refs}
        state_bytes = 0.0
        for key in mine:
            for spec in comparison.specs:
                if not _engine_state(spec.info):
                    state_bytes += spec.info.state_cost(plan.n, refs[key].width, plan.side, spec.params).bytes
        out.update({"layers": [refs[k].name for k in mine], "states_bytes": state_bytes,
                    "flops": sum(by_key[k] for k in mine),
                    "flops_by_shard": [sum(by_key[k] for k in s) for s in shares]})  # fmt: skip
    else:
        per_shard = []
        cells_mine = 0
        for s in every:
            flops = 0.0
            for spec in comparison.specs:
                cells = shard_cells(comparison.layout.cells(spec.info.symmetric), s)
                if spec.info.cost is not None:
                    flops += spec.info.cost(plan.n, 0, len(cells), spec.params)
                if s == shard:
                    cells_mine += len(cells)
            per_shard.append(flops)
        out.update({"cells": cells_mine, "flops": per_shard[shard.index - 1], "flops_by_shard": per_shard})
    return out


def describe_share(comparison: Any, shard: Shard, stage: str | None) -> str:
    """``--dry-run --shard K/N``: a few lines on this shard's share and the balance."""
    from ._units import format_size

    d = share_dict(comparison, shard, stage)
    mode = d["mode"]
    if mode == "tiles" and "tiles" in d:
        what = (f"{d['tiles']} tiles of examples (partial sums of every cell), reads "
                f"{format_size(int(d['bytes_read']))}, about {d['flops']:.3g} flops")  # fmt: skip
    elif mode == "tiles":
        what = (f"{d['rows']} rows of examples (partial sums of every cell), reads "
                f"{format_size(int(d['bytes_read']))}, about {d['flops']:.3g} flops")  # fmt: skip
    elif mode == "layers":
        count = len(d["layers"])
        what = (f"the states of {count} layer{'' if count == 1 else 's'} ({', '.join(d['layers']) or 'none'}), "
                f"{format_size(int(d['states_bytes']))}, about {d['flops']:.3g} flops")  # fmt: skip
    else:
        what = f"{d['cells']} cells, about {d['flops']:.3g} flops"
    return f"shard {shard}: {what}\n{_balance(d['flops_by_shard'])}"
